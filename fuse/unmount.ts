// Whether a path is a mount point (from /proc/mounts, never by touching the mount itself,
// which may be ours and would deadlock a synchronous call), and unmounting with fallbacks.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';

/** /proc/mounts escapes space, tab, newline and backslash as octal (\040 ...). */
function decodeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export async function isMounted(mountpoint: string): Promise<boolean> {
  return (await mountEntry(mountpoint)) !== undefined;
}

/** What is mounted at `mountpoint` (the last mount there, the one seen): its source (a strata mount's is strata:<remote dir>) and whether it is read-only. */
export async function mountEntry(mountpoint: string): Promise<{ source: string; type: string; readOnly: boolean } | undefined> {
  const mounts = await readFile('/proc/mounts', 'utf8');
  let found: { source: string; type: string; readOnly: boolean } | undefined;
  for (const line of mounts.split('\n')) {
    const [source, target, type, options] = line.split(' ');
    if (target === undefined || decodeMountField(target) !== mountpoint) continue;
    found = { source: decodeMountField(source), type, readOnly: (options ?? '').split(',').includes('ro') };
  }
  return found;
}

function run(command: string, args: string[], timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs }, (err, _stdout, stderr) => resolve(err ? `${command} ${args.join(' ')}: ${stderr.trim() || err.message}` : undefined));
  });
}

/**
 * Unmounts whatever is mounted at `mountpoint`: a plain unmount first (fusermount from FUSE 2
 * or 3, whichever is installed), then a lazy one, which detaches even while files are open.
 * Returns the failures seen; empty when the mount point is free at the end.
 */
export async function unmountWithFallbacks(mountpoint: string, timeoutMs = 10_000): Promise<string[]> {
  const attempts: [string, string[]][] = [
    ['fusermount', ['-u', mountpoint]],
    ['fusermount3', ['-u', mountpoint]],
    ['fusermount', ['-uz', mountpoint]],
    ['fusermount3', ['-uz', mountpoint]],
    ['umount', ['-l', mountpoint]],
  ];
  const failures: string[] = [];
  for (const [command, args] of attempts) {
    if (!(await isMounted(mountpoint))) return [];
    const failure = await run(command, args, timeoutMs);
    if (failure) failures.push(failure);
  }
  return (await isMounted(mountpoint)) ? failures : [];
}
