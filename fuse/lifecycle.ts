// What every binding's mount shares around serving requests: checking the mount point, the stop
// signals, and storing what open files still buffer before the mount goes.
import { stat } from 'node:fs/promises';
import { StrataError, invalid } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { HandleTable } from './handles.js';
import { isMounted, unmountWithFallbacks } from './unmount.js';

const UNMOUNTED_POLL_MS = 1000;

export async function checkMountpoint(mountpoint: string): Promise<void> {
  try {
    if (!(await stat(mountpoint)).isDirectory()) throw invalid(`mount point ${mountpoint} is not a directory`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw invalid(`mount point ${mountpoint} does not exist`);
    // A mount whose process died ("transport endpoint is not connected"): clear it, go on.
    if (code !== 'ENOTCONN') throw err;
    const failures = await unmountWithFallbacks(mountpoint);
    if (failures.length > 0) throw new StrataError('Exists', `${mountpoint} holds a stale mount that cannot be removed: ${failures.join('; ')}`);
  }
  if (await isMounted(mountpoint)) throw new StrataError('Exists', `${mountpoint} is already a mount point (unmount it with fusermount -u ${mountpoint})`);
}

export interface StopSignals {
  stopped: Promise<string>;
  secondSignal: Promise<void>;
  stop: (reason: string) => void;
}

/**
 * `stopped` resolves on the first SIGINT/SIGTERM/SIGHUP (or `stop()`), `secondSignal` on the
 * next. Installed before mounting, so a signal during start-up still unmounts.
 */
export function stopSignals(): StopSignals {
  let signals = 0;
  let stop!: (reason: string) => void;
  let hurry!: () => void;
  const stopped = new Promise<string>((resolve) => (stop = resolve));
  const secondSignal = new Promise<void>((resolve) => (hurry = resolve));
  for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(name, () => (++signals === 1 ? stop(name) : hurry()));
  return { stopped, secondSignal, stop };
}

/** Stops the mount when something else unmounted it (fusermount -u from a shell). */
export function watchUnmount(mountpoint: string, signals: StopSignals): void {
  const poll = setInterval(() => {
    isMounted(mountpoint).then((mounted) => mounted || signals.stop('unmounted from outside'), () => undefined);
  }, UNMOUNTED_POLL_MS);
  void signals.stopped.then(() => clearInterval(poll));
}

/** Stores buffered bytes of open files before the mount goes; a second signal cuts it short. */
export async function flushOpenFiles(handles: HandleTable, log: Logger, timeoutMs: number, secondSignal: Promise<void>): Promise<void> {
  const files = handles.openFiles().filter((f) => f.hasUnstoredData);
  if (files.length === 0) return;
  log.info({ files: files.length }, 'storing buffered writes of open files');
  const flushes = Promise.allSettled(files.map((f) => f.flush()));
  const deadline = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref());
  await Promise.race([flushes, secondSignal, deadline]);
}

/** Unmounts (then exits 1) on an uncaught error, so a crash never leaves a dead mount; returns the undo. */
export function unmountOnCrash(mountpoint: string, log: Logger): () => void {
  const onCrash = (err: unknown) => {
    log.fatal({ err }, 'unexpected failure; unmounting');
    void unmountWithFallbacks(mountpoint).finally(() => process.exit(1));
  };
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  return () => {
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
  };
}

/** The mount command's last line and exit code, from what the unmount could not do. */
export function reportUnmount(mountpoint: string, failures: string[]): number {
  if (failures.length > 0) {
    console.error(`strata: ${mountpoint} is still mounted: ${failures.join('; ')}`);
    return 1;
  }
  console.log(`strata: unmounted ${mountpoint}`);
  return 0;
}
