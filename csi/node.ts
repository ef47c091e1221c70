// The CSI Node service: NodePublishVolume mounts a volume's directory at the CO's target path
// with `strata mount --path` (a child process: this process must not serve a FUSE file system it
// also touches), NodeUnpublishVolume unmounts it. What is mounted where is read from
// /proc/mounts, so a restarted driver still knows a publish it did.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readFile, rm, rmdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StrataError, exists, invalid, notFound } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Strata } from '../client/index.js';
import { mountEntry, unmountWithFallbacks } from '../fuse/unmount.js';
import { impliesReadOnly, requireSupported } from './capabilities.js';
import { InFlight } from './in-flight.js';
import type { NodePublishVolumeRequest } from './proto.js';
import { Volumes, isVolumeId } from './volumes.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The CLI beside this file in dist/, or dist/'s from the sources (vitest). */
const STRATA_MAIN = [path.resolve(here, '../cli/main.js'), path.resolve(here, '../dist/cli/main.js')].find((file) => existsSync(file))!;
const MOUNT_READY_TIMEOUT_MS = 30_000;
const MOUNT_EXIT_TIMEOUT_MS = 10_000;
const LOG_TAIL_BYTES = 2000;

/** How the mounts reach the cluster: the driver's own connection settings. */
export interface MountSettings {
  coordinators: string[];
  tokenFile?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  logLevel: string;
}

/** The source a strata mount shows in /proc/mounts (fuse/lowlevel/mount.ts's fsname). */
const mountSource = (remote: string) => `strata:${remote}`.replace(/[,\s]/g, '_');

export class NodeService {
  private readonly volumes: Volumes;
  private readonly inFlight = new InFlight();
  /** Mount processes this driver started, by target path. */
  private readonly mounts = new Map<string, ChildProcess>();

  constructor(
    private readonly client: Strata,
    baseDir: string,
    private readonly nodeId: string,
    private readonly settings: MountSettings,
    private readonly log: Logger,
  ) {
    this.volumes = new Volumes(client, baseDir);
  }

  async nodeGetInfo() {
    return { nodeId: this.nodeId, maxVolumesPerNode: 0 };
  }

  /** No staging (a FUSE mount per target is all there is), no stats, no expansion: none to advertise. */
  async nodeGetCapabilities() {
    return { capabilities: [] };
  }

  async nodePublishVolume(request: NodePublishVolumeRequest) {
    const volumeId = request.volumeId;
    if (!volumeId) throw invalid('volume_id is required');
    const target = requireTargetPath(request.targetPath);
    if (!request.volumeCapability) throw invalid('volume_capability is required');
    requireSupported(request.volumeCapability);
    const readOnly = !!request.readonly || impliesReadOnly(request.volumeCapability);
    return this.inFlight.run(target, target, async () => {
      const remote = this.volumes.pathOf(volumeId);
      const current = await mountEntry(target);
      if (current) {
        if (current.source === mountSource(remote) && current.readOnly === readOnly) return {};
        throw exists(`${target} (published as ${current.source}${current.readOnly ? ', read-only' : ''}; asked: ${mountSource(remote)}${readOnly ? ', read-only' : ''})`);
      }
      if (!isVolumeId(volumeId) || (await this.volumes.capacityOf(volumeId)) === undefined) throw notFound(`volume ${volumeId}`);
      await mkdir(target, { recursive: true });
      await this.mount(remote, target, readOnly);
      return {};
    });
  }

  async nodeUnpublishVolume(request: { volumeId?: string; targetPath?: string }) {
    if (!request.volumeId) throw invalid('volume_id is required');
    const target = requireTargetPath(request.targetPath);
    return this.inFlight.run(target, target, async () => {
      if (await mountEntry(target)) {
        const failures = await unmountWithFallbacks(target);
        if (failures.length) throw new StrataError('Internal', `cannot unmount ${target}: ${failures.join('; ')}`);
      }
      await this.mountExited(target);
      // Its log ends with its mount; a failed one's stays to be read.
      await rm(mountLogFile(target), { force: true });
      // The spec: the plugin removes what it made at the target path.
      await rmdir(target).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw new StrataError('Internal', `cannot remove ${target}: ${err.code ?? err.message}`);
      });
      return {};
    });
  }

  /** The mount processes still running (for a caller that tears everything down). */
  get mountedTargets(): string[] {
    return [...this.mounts.keys()];
  }

  private async mount(remote: string, target: string, readOnly: boolean): Promise<void> {
    const logFile = mountLogFile(target);
    const args = ['mount', '--coordinator', this.settings.coordinators.join(','), '--path', remote, '--allow-other', '--log-level', this.settings.logLevel];
    if (readOnly) args.push('--read-only');
    for (const [flag, value] of [['--token-file', this.settings.tokenFile], ['--tls-ca', this.settings.tlsCa], ['--tls-cert', this.settings.tlsCert], ['--tls-key', this.settings.tlsKey]] as const) {
      if (value) args.push(flag, value);
    }
    // A file, not a pipe: the mount must outlive this process (a restarted driver finds it in /proc/mounts).
    const fd = openSync(logFile, 'w');
    const child = spawn(process.execPath, [STRATA_MAIN, ...args, target], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    // Not a reason for this process to stay up: a driver that stops leaves its mounts serving.
    child.unref();
    let exit: string | undefined;
    child.once('exit', (code, signal) => {
      exit = signal ? `signal ${signal}` : `exit code ${code}`;
      if (this.mounts.get(target) === child) this.mounts.delete(target);
    });
    this.mounts.set(target, child);
    const giveUpAt = Date.now() + MOUNT_READY_TIMEOUT_MS;
    for (;;) {
      const entry = await mountEntry(target);
      if (entry?.source === mountSource(remote)) break;
      if (exit !== undefined || Date.now() > giveUpAt) {
        if (exit === undefined) child.kill('SIGTERM');
        const why = exit ?? `not mounted after ${MOUNT_READY_TIMEOUT_MS} ms`;
        throw new StrataError('Unavailable', `strata mount of ${remote} at ${target} failed (${why}): ${await logTail(logFile)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    this.log.info({ remote, target, readOnly, pid: child.pid, logFile }, 'volume published');
  }

  /** Waits (bounded) for the mount process at `target`, if this driver started one, to end after its unmount. */
  private async mountExited(target: string): Promise<void> {
    const child = this.mounts.get(target);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const timer = setTimeout(() => child.kill('SIGKILL'), MOUNT_EXIT_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
}

/** One log per target path: a publish again at the same target starts it afresh. */
const mountLogFile = (target: string) => path.join(os.tmpdir(), `strata-csi-mount-${createHash('sha256').update(target).digest('hex').slice(0, 16)}.log`);

function requireTargetPath(targetPath: string | undefined): string {
  if (!targetPath) throw invalid('target_path is required');
  if (!path.isAbsolute(targetPath)) throw invalid(`target_path ${targetPath} is not absolute`);
  return path.resolve(targetPath);
}

async function logTail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.slice(-LOG_TAIL_BYTES).trim() || '(no output)';
}
