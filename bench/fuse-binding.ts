// bench/fuse-binding.ts (npm run bench:fuse-binding): what a FUSE binding itself costs. A trivial
// in-memory file system (one directory of empty files, answered at once, no caching in the
// kernel: every call crosses into the process) is mounted with fuse-native (libfuse 2,
// high-level) and with strata's libfuse 3 binding; a Python child then creates, stats and
// removes N files through each. Prints `name value unit` lines.
/// <reference path="../fuse/fuse-native.d.ts" />
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadFuse3 } from '../fuse/lowlevel/binding.js';
import { isMounted, unmountWithFallbacks } from '../fuse/unmount.js';

const N = Number(process.env.N ?? 5000);
const WORKLOAD = `import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
def timed(name, f):
    t = time.perf_counter(); f(); dt = time.perf_counter() - t
    print('%s %.0f ops/s' % (name, n / dt))
timed('create', lambda: [os.close(os.open('%s/f%d' % (d, i), os.O_CREAT | os.O_WRONLY, 0o644)) for i in range(n)])
timed('stat', lambda: [os.stat('%s/f%d' % (d, i)) for i in range(n)])
timed('unlink', lambda: [os.unlink('%s/f%d' % (d, i)) for i in range(n)])
`;

/** Async: this process serves the mount, a synchronous child would deadlock it. */
async function run(binding: string, dir: string): Promise<void> {
  const { stdout: out } = await promisify(execFile)('python3', ['-c', WORKLOAD, dir, String(N)], { encoding: 'utf8', timeout: 300_000 });
  for (const line of out.trim().split('\n')) {
    const [name, value, unit] = line.split(' ');
    console.log(`${binding}_${name} ${value} ${unit}`);
  }
}

async function waitMounted(dir: string): Promise<void> {
  while (!(await isMounted(dir))) await new Promise((r) => setTimeout(r, 20));
}

const now = Date.now();
const fileAttr = (ino: number) => ({ ino, mode: 0o100644, nlink: 1, uid: 0, gid: 0, size: 0, blksize: 4096, blocks: 0, atimeMs: now, mtimeMs: now, ctimeMs: now });

async function fuse3(dir: string): Promise<void> {
  const fuse = loadFuse3();
  const files = new Map<string, number>();
  let nextIno = 2;
  const entry = (ino: number) => ({ ino, attr: fileAttr(ino), attrTimeout: 0, entryTimeout: 0 });
  fuse.mount(dir, ['fsname=bench'], (r) => {
    const ino = r.name !== undefined ? files.get(r.name) : undefined;
    switch (r.op) {
      case 'forget':
      case 'ended':
        return;
      case 'getattr':
        return r.ino === 1 ? fuse.replyAttr(r.id, { ...fileAttr(1), mode: 0o40755 }, 0) : fuse.replyAttr(r.id, fileAttr(r.ino), 0);
      case 'lookup':
        return ino ? fuse.replyEntry(r.id, entry(ino)) : fuse.replyErr(r.id, 2);
      case 'create': {
        const made = nextIno++;
        files.set(r.name!, made);
        return fuse.replyCreate(r.id, entry(made), { fh: 1 });
      }
      case 'unlink':
        files.delete(r.name!);
        return fuse.replyErr(r.id, 0);
      default:
        return fuse.replyErr(r.id, r.op === 'flush' || r.op === 'release' ? 0 : 38);
    }
  }, { writeback: false, maxWrite: 1 << 20 });
  await waitMounted(dir);
  await run('fuse3', dir);
  await unmountWithFallbacks(dir);
}

async function fuse2(dir: string): Promise<void> {
  const { default: Fuse } = await import('fuse-native');
  const files = new Set<string>();
  const stat = (mode: number) => ({ mode, uid: 0, gid: 0, size: 0, nlink: 1, atime: now, mtime: now, ctime: now });
  class NoCache extends Fuse {
    protected override _fuseOptions(): string {
      return `${super._fuseOptions()},attr_timeout=0,entry_timeout=0,negative_timeout=0`.replace(/^,/, '-o');
    }
  }
  const fuse = new NoCache(dir, {
    getattr: (p, cb) => (p === '/' ? cb(0, stat(0o40755)) : files.has(p) ? cb(0, stat(0o100644)) : cb(-2)),
    create: (p, _mode, cb) => (files.add(p), cb(0, 1)),
    release: (_p, _fd, cb) => cb(0),
    flush: (_p, _fd, cb) => cb(0),
    unlink: (p, cb) => (files.delete(p), cb(0)),
  }, { timeout: false });
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
  await run('fuse2', dir);
  await new Promise<void>((resolve) => fuse.unmount(() => resolve()));
}

const base = mkdtempSync(path.join(os.tmpdir(), 'strata-fusebind-'));
try {
  for (const [name, bench] of [['fuse2', fuse2], ['fuse3', fuse3]] as const) {
    const dir = path.join(base, name);
    execFileSync('mkdir', ['-p', dir]);
    try {
      await bench(dir);
    } catch (err) {
      console.error(`${name}: ${(err as Error).message}`);
    } finally {
      if (await isMounted(dir)) await unmountWithFallbacks(dir);
    }
  }
} finally {
  rmSync(base, { recursive: true, force: true });
}
process.exit(0);
