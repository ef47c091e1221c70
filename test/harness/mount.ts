// Real FUSE mounts for tests: `strata mount` as a child process (never inside the test
// process, which must not serve a file system it also uses), shell commands against it with
// deadlines, and teardown that leaves no mount behind whatever happened.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, openSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { loadFuse3 } from '../../fuse/lowlevel/binding.js';
import { isMounted, unmountWithFallbacks } from '../../fuse/unmount.js';
import { STRATA_MAIN, type TestCluster } from './cluster.js';

/** Why FUSE tests cannot run here, or undefined when they can. */
export function fuseUnavailableReason(): string | undefined {
  if (!existsSync('/dev/fuse')) return '/dev/fuse is missing';
  const fusermount = ['fusermount', 'fusermount3'].some((cmd) => spawnSync('which', [cmd]).status === 0);
  if (!fusermount) return 'neither fusermount nor fusermount3 is installed (apt-get install fuse3)';
  // The binding the mounts will use (fuse/config.ts: fuse3 unless STRATA_BINDING says fuse2).
  if (process.env.STRATA_BINDING === 'fuse2') {
    try {
      createRequire(import.meta.url)('fuse-native');
    } catch (err) {
      return `fuse-native does not load (libfuse.so.2 missing? apt-get install libfuse2): ${(err as Error).message}`;
    }
    return undefined;
  }
  try {
    loadFuse3();
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}

export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a bash script with a deadline; the whole process group is killed past it. */
export function sh(script: string, options: { timeoutMs?: number; cwd?: string } = {}): Promise<ShResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', script], { cwd: options.cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (d) => stdout.push(d));
    child.stderr.on('data', (d) => stderr.push(d));
    const timer = setTimeout(() => {
      stderr.push(Buffer.from(`\n[sh: killed after ${timeoutMs} ms]`));
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() });
    });
  });
}

export class MountProcess {
  constructor(
    readonly dir: string,
    readonly process: ChildProcess,
    readonly logFile: string,
  ) {}

  get running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  log(): Promise<string> {
    return readFile(this.logFile, 'utf8').catch(() => '');
  }

  /** SIGTERM (a clean unmount), then SIGKILL and fusermount if it came to that. */
  async stop(timeoutMs = 20_000): Promise<void> {
    if (this.running) {
      const exited = new Promise<void>((resolve) => this.process.once('exit', () => resolve()));
      this.process.kill('SIGTERM');
      const timer = setTimeout(() => this.process.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(timer);
    }
    if (await isMounted(this.dir)) await unmountWithFallbacks(this.dir);
  }
}

/** Mounts the cluster's root (or `--path`) at `dir`; resolves once the kernel shows the mount. */
export async function startMount(cluster: TestCluster, dir: string, args: string[] = [], timeoutMs = 20_000): Promise<MountProcess> {
  await mkdir(dir, { recursive: true });
  const logFile = `${dir}.log`;
  const fd = openSync(logFile, 'a');
  const tls = cluster.tls ? ['--tls-ca', cluster.tls.ca] : [];
  const child = spawn(process.execPath, [STRATA_MAIN, 'mount', '--coordinator', cluster.coordinatorList, '--log-level', 'warn', ...tls, ...args, dir], {
    stdio: ['ignore', fd, fd],
  });
  const mount = new MountProcess(dir, child, logFile);
  const giveUpAt = Date.now() + timeoutMs;
  while (!(await isMounted(dir))) {
    if (!mount.running || Date.now() > giveUpAt) {
      await mount.stop();
      throw new Error(`strata mount ${dir} did not come up:\n${await mount.log()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return mount;
}
