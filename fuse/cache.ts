// Attribute cache of the mount, keyed by path inside the mount. Entries live `ttlMs` (the
// --attr-timeout-ms the kernel also uses), so another client's change shows within that
// time; this mount's own changes drop the entries they touch at once.
import type { FileStat } from '../client/index.js';

interface Entry {
  stat: FileStat;
  expiresAtMs: number;
}

/** A bound on memory: a `find` over millions of files must not keep them all. */
const MAX_ENTRIES = 50_000;

export class AttrCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(path: string): FileStat | undefined {
    const entry = this.entries.get(path);
    if (!entry) return undefined;
    if (entry.expiresAtMs <= this.now()) {
      this.entries.delete(path);
      return undefined;
    }
    return entry.stat;
  }

  set(path: string, stat: FileStat): void {
    if (this.ttlMs <= 0) return;
    // Re-inserting moves the key to the end, so the first key is the oldest.
    this.entries.delete(path);
    if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(path, { stat, expiresAtMs: this.now() + this.ttlMs });
  }

  /** A change through this mount: the path itself and its directory (whose mtime moved). */
  invalidate(path: string): void {
    this.entries.delete(path);
    this.entries.delete(parentOf(path));
  }

  /** The path, its directory and everything below it (a removed or renamed directory). */
  invalidateTree(path: string): void {
    this.invalidate(path);
    const prefix = path === '/' ? '/' : path + '/';
    for (const key of this.entries.keys()) if (key.startsWith(prefix)) this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }
}

export function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash <= 0 ? '/' : path.slice(0, slash);
}

export function childPath(dir: string, name: string): string {
  return dir === '/' ? '/' + name : `${dir}/${name}`;
}
