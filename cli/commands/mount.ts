// `strata mount [--path REMOTE_DIR] MOUNTPOINT`: parses and wires; fuse/ does the work.
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { StrataError } from '../../common/errors.js';
import { createLogger } from '../../common/log.js';
import { type MountConfig, loadMountConfig } from '../../fuse/config.js';
import { runMount } from '../../fuse/mount.js';
import { isMounted } from '../../fuse/unmount.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../main.js');
const DETACHED_READY_TIMEOUT_MS = 30_000;

export function registerMountCommand(program: Command): void {
  program
    .command('mount')
    .description('mount a strata directory on a local directory (FUSE); SIGINT/SIGTERM unmounts')
    .argument('<mountpoint>', 'local directory to mount on')
    .option('-c, --coordinator <host:port,...>', 'coordinator address(es), comma-separated (default 127.0.0.1:7400, or STRATA_COORDINATOR)')
    .option('--path <remote-dir>', 'remote directory shown at the mount point (default /)')
    .option('--attr-timeout-ms <ms>', 'how long attributes and directory entries are trusted (default 1000)')
    .option('--call-timeout-ms <ms>', 'deadline of one metadata call: an unreachable cluster fails with EIO after it (default 5000)')
    .option('--transfer-timeout-ms <ms>', 'deadline of one chunk transfer (default 30000)')
    .option('--op-timeout-ms <ms>', 'backstop for any one file system operation, then EIO (default 60000)')
    .option('--max-dirty-chunks <n>', 'partly written chunks buffered per open file (default 2)')
    .option('--write-concurrency <n>', 'chunk uploads in flight per open file (default 3)')
    .option('--foreground', 'stay in the foreground until unmounted (the default)')
    .option('--no-foreground', 'detach once mounted; logs go to --log-file')
    .option('--log-file <file>', 'log file of a detached mount (default: in the temp directory)')
    .option('--allow-other', 'let other users in (root, or user_allow_other in /etc/fuse.conf); the kernel then checks permission bits')
    .option('--read-only', 'mount read-only: every change fails with EROFS')
    .option('--uid <uid>', 'owner shown for every file (default: the stored owner)')
    .option('--gid <gid>', 'group shown for every file (default: the stored group)')
    .option('--binding <name>', 'fuse3 (the default: libfuse 3 low-level, native/) | fuse2 (fuse-native on libfuse 2, the fallback)')
    .option('--writeback-cache', 'kernel writeback cache (fuse3): faster small writes; only when no other client writes these files')
    .option('--token-file <file>', 'a file holding an OIDC access token (else STRATA_TOKEN, else strata login\'s)')
    .option('--tls-ca <file>', 'PEM CA that signed the cluster\'s servers: turns TLS on (or STRATA_TLS_CA)')
    .option('--tls-cert <file>', 'PEM client certificate, optional (or STRATA_TLS_CERT)')
    .option('--tls-key <file>', 'PEM key of --tls-cert (or STRATA_TLS_KEY)')
    .option('--metrics-listen <host:port|off>', 'serve GET /metrics (Prometheus: FUSE op latencies), /healthz and /readyz over HTTP on this address; default off (or STRATA_METRICS_LISTEN)')
    .option('--log-level <level>', 'trace | debug | info | warn | error (default info)')
    .option('--config <file>', 'JSON config file (flags and STRATA_* env override it)')
    .action(async (mountpoint: string, options) => {
      const { config: file, logFile, ...flags } = options;
      const config = loadMountConfig({ ...flags, mountpoint }, file);
      if (!config.foreground) return detach(config, logFile);
      process.exitCode = await runMount(config, createLogger('mount', config.logLevel));
      // The binding's FUSE thread may keep the event loop alive after the unmount.
      setTimeout(() => process.exit(), 2000).unref();
    });
}

/** Runs the mount as a detached child and returns once it is mounted. */
async function detach(config: MountConfig, logFile: string | undefined): Promise<void> {
  const mountpoint = path.resolve(config.mountpoint);
  const log = path.resolve(logFile ?? path.join(os.tmpdir(), `strata-mount-${process.pid}.log`));
  // Logs are written synchronously: into its own mount, the process would wait on itself.
  if (log.startsWith(mountpoint + path.sep)) throw new StrataError('Invalid', `--log-file ${log} is inside the mount point`);
  const args = [...process.argv.slice(2).filter((arg) => arg !== '--no-foreground'), '--foreground'];
  const child = spawn(process.execPath, [MAIN, ...args], { detached: true, stdio: ['ignore', openSync(log, 'a'), openSync(log, 'a')] });
  let exitCode: number | null | undefined;
  child.once('exit', (code) => (exitCode = code));
  const giveUpAt = Date.now() + DETACHED_READY_TIMEOUT_MS;
  while (exitCode === undefined && Date.now() < giveUpAt) {
    if (await isMounted(mountpoint)) {
      child.unref();
      console.log(`strata: mounted ${config.path} at ${mountpoint} (pid ${child.pid}, log ${log}); unmount: kill ${child.pid} or fusermount -u ${mountpoint}`);
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (exitCode === undefined) child.kill('SIGTERM');
  throw new StrataError('Unavailable', `the mount did not come up${exitCode !== undefined ? ` (exit code ${exitCode})` : ''}; see ${log}`);
}
