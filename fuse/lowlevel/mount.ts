// `strata mount` on strata's libfuse 3 binding (native/fuse3.cc): serves the mount until
// SIGINT/SIGTERM/SIGHUP or an outside unmount, then stores what open files still buffer and
// unmounts. The binding also unmounts (lazily) if the process exits while mounted, and the
// mount uses libfuse's auto_unmount, so even a killed process leaves no dead mount behind.
// This process serves its own mount: it must never do synchronous I/O on the mount point.
import { tokenProviderFrom } from '../../client/auth/token-sources.js';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Strata } from '../../client/index.js';
import { StrataError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { MountConfig } from '../config.js';
import { kernelChecksPermissions } from '../permissions.js';
import { HandleTable } from '../handles.js';
import type { ForgettingInodeOps } from '../inode-ops.js';
import { checkMountpoint, flushOpenFiles, reportUnmount, stopSignals, unmountOnCrash, watchUnmount } from '../lifecycle.js';
import { isMounted, unmountWithFallbacks } from '../unmount.js';
import { type Fuse3Binding, loadFuse3 } from './binding.js';
import { LowLevelOps } from './ops.js';
import { PathInodes } from './path-inodes.js';
import { RoleMetrics } from '../../common/metrics.js';
import { startMetricsServer, type MetricsServer } from '../../common/metrics-server.js';
import { fuseOpLatency, mountGauges, mountReadiness } from '../metrics.js';

/** The largest request the kernel may send: 256 pages. */
const MAX_WRITE = 1024 * 1024;
/** How long an unmount may take for the kernel to end the session. */
const END_WAIT_MS = 5000;

export async function runLowLevelMount(config: MountConfig, log: Logger): Promise<number> {
  const fuse = loadFuse3();
  const mountpoint = path.resolve(config.mountpoint);
  await checkMountpoint(mountpoint);
  // Without a token file or STRATA_TOKEN: strata login's stored token (found under $HOME), if any.
  const tokenProvider = tokenProviderFrom({ tokenFile: config.tokenFile, token: config.token, env: process.env });
  const strata = Strata.connect({
    coordinators: config.coordinator,
    callTimeoutMs: config.callTimeoutMs,
    failoverTimeoutMs: config.callTimeoutMs,
    transferTimeoutMs: config.transferTimeoutMs,
    writeConcurrency: config.writeConcurrency,
    tokenProvider,
    tls: { ca: config.tlsCa, cert: config.tlsCert, key: config.tlsKey },
  });
  let rootIno: number;
  try {
    const root = await strata.stat(config.path);
    if (!root.isDirectory()) throw new StrataError('NotDir', `${config.path}: not a directory`);
    rootIno = root.ino;
  } catch (err) {
    strata.close();
    throw err;
  }
  const inodes = inodeSource(strata, config.path, rootIno);
  const handles = new HandleTable(
    {
      readAt: (file, start, end) => strata.readAt(file, start, end),
      writeChunkAt: (file, index, data, options) => strata.writeChunkAt(file, index, data, options),
      setattr: (_path, changes, ino) => inodes.setattr(ino, changes),
    },
    config,
  );
  const leased = !(inodes instanceof PathInodes);
  // Only when served: with metrics off requests are not timed.
  const metrics = config.metricsListen && config.metricsListen !== 'off' ? new RoleMetrics('mount') : undefined;
  const opLatency = metrics && fuseOpLatency(metrics);
  const ops = new LowLevelOps({ inodes, statfs: (ino) => strata.statfs({ ino }), config, handles, log, fuse, rootIno, leased, opLatency });
  const signals = stopSignals();
  let ended!: () => void;
  const sessionEnded = new Promise<void>((resolve) => (ended = resolve));
  const handler = (req: Parameters<LowLevelOps['handle']>[0]) => {
    if (req.op === 'ended') {
      ended();
      signals.stop('unmounted from outside');
    }
    ops.handle(req);
  };
  try {
    fuse.mount(mountpoint, mountOptions(config, tokenProvider !== undefined), handler, { writeback: config.writebackCache, maxWrite: MAX_WRITE, onNotified: ops.notified });
  } catch (err) {
    strata.close();
    throw new StrataError('Internal', `cannot mount at ${mountpoint}: ${(err as Error).message}`, { cause: err });
  }
  const stopInvalidations = inodes.onInvalidate((ev) => ops.invalidate(ev));
  // Diagnostics: which requests reach this process (the kernel answers the others itself), and
  // which of them went on to a coordinator (the metadata cache answers the others), and the mean
  // µs each took here (arrival to answer) and on its way to a coordinator and back.
  const dumpCounts = () =>
    log.info({ requests: ops.requestCounts(), coordinatorRequests: strata.metadataRequestsByOp, requestMicros: ops.requestMicros(), coordinatorMicros: strata.metadataMicrosByOp }, 'requests so far');
  process.on('SIGUSR2', dumpCounts);
  await raiseReadAhead(mountpoint, log);
  const stopCrashGuard = unmountOnCrash(mountpoint, log);
  let metricsServer: MetricsServer | undefined;
  if (metrics) {
    mountGauges(metrics, strata);
    // A port already taken is said, and the mount keeps serving: unmounting over it would be worse.
    metricsServer = await startMetricsServer({ listen: config.metricsListen!, metrics, ready: mountReadiness(mountpoint, strata, config.path), log }).catch((err) => {
      log.error({ err: (err as Error).message }, `metrics not served: ${(err as Error).message}`);
      return undefined;
    });
    if (metricsServer) log.info({ metrics: metricsServer.address }, 'serving /metrics, /healthz, /readyz');
  }
  log.info({ mountpoint, remote: config.path, binding: 'fuse3' }, 'mounted');
  console.log(`strata: mounted ${config.path} at ${mountpoint} (Ctrl-C or SIGTERM unmounts)`);

  watchUnmount(mountpoint, signals);
  const reason = await signals.stopped;
  log.info({ reason }, 'unmounting');
  await metricsServer?.close();
  stopInvalidations();
  process.off('SIGUSR2', dumpCounts);
  dumpCounts();
  await flushOpenFiles(handles, log, config.opTimeoutMs, signals.secondSignal);
  const failures = await unmount(fuse, mountpoint, sessionEnded, log);
  await ops.removeAllHidden();
  strata.close();
  stopCrashGuard();
  return reportUnmount(mountpoint, failures);
}

/**
 * The kernel reads ahead at most the mount's read_ahead_kb (128 KiB by default), whatever
 * max_pages allows: raising it to MAX_WRITE makes sequential reads arrive in 1 MiB requests.
 * Only root may; elsewhere reads stay at 128 KiB. Found through /proc/self/mountinfo, never by
 * touching the mount.
 */
async function raiseReadAhead(mountpoint: string, log: Logger): Promise<void> {
  try {
    const line = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === mountpoint);
    const device = line?.split(' ')[2];
    if (device) await writeFile(`/sys/class/bdi/${device}/read_ahead_kb`, String(MAX_WRITE / 1024));
  } catch (err) {
    log.debug({ err }, 'read-ahead stays at the kernel default');
  }
}

/** strata.inodes once the SDK has it; until then the path-based adapter. */
function inodeSource(strata: Strata, rootPath: string, rootIno: number): ForgettingInodeOps {
  const sdk = (strata as unknown as { inodes?: ForgettingInodeOps }).inodes;
  return sdk ?? new PathInodes(strata, rootPath, rootIno);
}

function mountOptions(config: MountConfig, authenticated: boolean): string[] {
  // auto_unmount: libfuse's fusermount3 unmounts even after a kill -9 of this process.
  const options = ['auto_unmount', `fsname=${`strata:${config.path}`.replace(/[,\s]/g, '_')}`, 'subtype=strata'];
  if (config.allowOther) options.push('allow_other');
  if (kernelChecksPermissions(config, authenticated)) options.push('default_permissions');
  // With auth on, other callers (SDK, CLI, other mounts) choose modes and owners: a set-uid file
  // or a device node one of them made must not work here.
  if (authenticated) options.push('nosuid', 'nodev');
  if (config.readOnly) options.push('ro');
  return options;
}

/**
 * Unmounts (a plain unmount first, lazy ones after: unmountWithFallbacks); once the kernel ended
 * the session the binding lets it go. A lazy unmount with files still open ends the session
 * only when they close: then the process exit ends it.
 */
async function unmount(fuse: Fuse3Binding, mountpoint: string, sessionEnded: Promise<void>, log: Logger): Promise<string[]> {
  const failures = (await isMounted(mountpoint)) ? await unmountWithFallbacks(mountpoint) : [];
  const timer = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), END_WAIT_MS).unref());
  if (await Promise.race([sessionEnded.then(() => true), timer])) fuse.close();
  else log.warn('the kernel has not ended the FUSE session (files still open on a lazily unmounted mount?)');
  return failures;
}
