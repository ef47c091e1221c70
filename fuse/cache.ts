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
  /**
   * While prefetches run: when each path (or tree) was last changed by this mount, so a
   * prefetched stat older than that change is not stored over it. Cleared when none runs.
   */
  private readonly changed = new Map<string, number>();
  private readonly changedTrees: { prefix: string; epoch: number }[] = [];
  private epoch = 0;
  private prefetches = 0;

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
    this.noteChange(path);
    this.store(path, stat);
  }

  /** Starts a prefetch: its stats go in through `fill` with the epoch returned here. */
  beginPrefetch(): number {
    this.prefetches++;
    return this.epoch;
  }

  /** Stores a stat fetched since `epoch`, unless this mount changed the path after that. */
  fill(epoch: number, path: string, stat: FileStat): void {
    if ((this.changed.get(path) ?? -1) > epoch) return;
    if (this.changedTrees.some((tree) => tree.epoch > epoch && path.startsWith(tree.prefix))) return;
    this.store(path, stat);
  }

  endPrefetch(): void {
    if (--this.prefetches > 0) return;
    this.changed.clear();
    this.changedTrees.length = 0;
  }

  private noteChange(path: string): void {
    this.epoch++;
    if (this.prefetches > 0) this.changed.set(path, this.epoch);
  }

  private store(path: string, stat: FileStat): void {
    if (this.ttlMs <= 0) return;
    // Re-inserting moves the key to the end, so the first key is the oldest.
    this.entries.delete(path);
    if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(path, { stat, expiresAtMs: this.now() + this.ttlMs });
  }

  /** A change through this mount: the path itself and its directory (whose mtime moved). */
  invalidate(path: string): void {
    this.noteChange(path);
    this.noteChange(parentOf(path));
    this.entries.delete(path);
    this.entries.delete(parentOf(path));
  }

  /** The path, its directory and everything below it (a removed or renamed directory). */
  invalidateTree(path: string): void {
    this.invalidate(path);
    const prefix = path === '/' ? '/' : path + '/';
    if (this.prefetches > 0) this.changedTrees.push({ prefix, epoch: this.epoch });
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
