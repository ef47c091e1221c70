// bench/mount-ops.ts (npm run bench:mount-ops -- MOUNTPOINT [N]): µs per metadata op through an
// already mounted file system, one op after another in fresh directories (mkdir, rename, rmdir,
// create+write+close of 4 KiB, unlink), as fsbench does them but short enough to run between two
// changes. Prints `name value unit` lines. With MOUNT_PID set (a strata mount's process), it
// sends SIGUSR2 before and after each op kind, so the mount's log shows which requests each one
// made and how long they took (requests so far: counts and mean µs).
import { closeSync, mkdirSync, openSync, renameSync, rmSync, rmdirSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

const [mountpoint, count] = process.argv.slice(2);
if (!mountpoint) {
  console.error('usage: node dist/bench/mount-ops.js MOUNTPOINT [N]   (MOUNT_PID=pid: SIGUSR2 the mount around each op)');
  process.exit(2);
}
const N = Number(count ?? 500);
const mountPid = Number(process.env.MOUNT_PID ?? 0);
const base = path.join(mountpoint, `mount-ops.${process.pid}`);
const dirs = path.join(base, 'dirs');
const moves = path.join(base, 'moves');
const files = path.join(base, 'files');
const block = randomBytes(4096); // not zeros: some file systems store zero blocks sparsely

/** This process does not serve the mount: synchronous calls are one op each, as a shell's are. */
function timed(name: string, op: (i: number) => void): void {
  if (mountPid) process.kill(mountPid, 'SIGUSR2');
  const started = performance.now();
  for (let i = 0; i < N; i++) op(i);
  const micros = ((performance.now() - started) * 1000) / N;
  if (mountPid) process.kill(mountPid, 'SIGUSR2');
  console.log(`mount_${name} ${micros.toFixed(0)} us/op`);
}

for (const dir of [dirs, moves, files]) mkdirSync(dir, { recursive: true });
try {
  timed('mkdir', (i) => mkdirSync(path.join(dirs, `d${i}`)));
  for (let i = 0; i < N; i++) closeSync(openSync(path.join(moves, `f${i}`), 'w'));
  timed('rename', (i) => renameSync(path.join(moves, `f${i}`), path.join(moves, `g${i}`)));
  timed('rmdir', (i) => rmdirSync(path.join(dirs, `d${i}`)));
  timed('create', (i) => {
    const fd = openSync(path.join(files, `f${i}`), 'w');
    writeSync(fd, block);
    closeSync(fd);
  });
  timed('unlink', (i) => unlinkSync(path.join(files, `f${i}`)));
} finally {
  rmSync(base, { recursive: true, force: true });
}
