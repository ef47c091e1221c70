// Directory listings this mount gave the kernel, and the attribute prefetch they drive.
// readdir answers with names and types only: getdents needs no more, and attributes cost the
// coordinator a lookup per entry that a plain `ls` or readdir() never uses. When the kernel then
// looks the names up one by one in listing order (ls -l, find, du), each lookup would be a Stat;
// instead, a miss that continues that order fetches the attributes of the next WINDOW names in
// one ReadDir. Lookups in any other order find no window and stat one by one, as without this.
// A window only ever holds what the coordinator returned at fetch time: no negative entries.
import type { FileStat } from '../client/index.js';
import { type AttrCache, childPath, parentOf } from './cache.js';

/** Names per prefetch: one ReadDir page, big enough to beat per-name Stats by far. */
const WINDOW = 1000;
/** Bounds on memory: listings remembered, and names kept per listing. */
const MAX_LISTINGS = 64;
const MAX_NAMES = 100_000;
/**
 * A listing unused this long is dropped. Its positions only pick what to prefetch (whatever the
 * coordinator returns is what gets cached), so it may outlive the attribute timeout: a walk
 * through a big directory on a busy machine takes longer than that.
 */
const LISTING_IDLE_MS = 10_000;

/** Entries of `dir` past the name `after` (bytewise order), with attributes; at most `count`. */
export type WindowFetch = (dir: string, after: string, count: number) => Promise<{ name: string; stat: FileStat }[]>;

interface Listing {
  names: string[];
  positions: Map<string, number>;
  expiresAtMs: number;
  /** Position of the previous miss without a window: two adjacent misses start one. */
  lastMiss: number;
  /** Positions [from, to) of the latest window, and when its fetch is done. */
  window?: { from: number; to: number; done: Promise<void> };
}

export class DirListings {
  private readonly listings = new Map<string, Listing>();

  constructor(
    private readonly cache: AttrCache,
    private readonly fetchWindow: WindowFetch,
    /** The attribute timeout: 0 caches nothing, so nothing is prefetched either. */
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The names of `dir` just given to the kernel, in the order given. */
  listed(dir: string, names: string[]): void {
    this.listings.delete(dir);
    if (this.ttlMs <= 0 || names.length > MAX_NAMES) return;
    if (this.listings.size >= MAX_LISTINGS) this.listings.delete(this.listings.keys().next().value!);
    const positions = new Map<string, number>();
    names.forEach((name, i) => positions.set(name, i));
    this.listings.set(dir, { names, positions, expiresAtMs: this.now() + LISTING_IDLE_MS, lastMiss: -2 });
  }

  /**
   * For an attribute cache miss on `path`: resolves once a window covering it is fetched (the
   * cache may hold it then), or at once when no window covers it. Never rejects.
   */
  prefetch(path: string): Promise<void> | undefined {
    const dir = parentOf(path);
    const listing = this.listings.get(dir);
    if (!listing) return undefined;
    if (listing.expiresAtMs <= this.now()) {
      this.listings.delete(dir);
      return undefined;
    }
    const position = listing.positions.get(path.slice(path.lastIndexOf('/') + 1));
    if (position === undefined) return undefined;
    listing.expiresAtMs = this.now() + LISTING_IDLE_MS;
    const window = listing.window;
    if (window && position >= window.from && position < window.to) return window.done;
    const continues = position === listing.lastMiss + 1 || position === window?.to;
    listing.lastMiss = position;
    if (!continues) return undefined;
    const to = Math.min(position + WINDOW, listing.names.length);
    const after = position === 0 ? '' : listing.names[position - 1];
    listing.window = { from: position, to, done: this.fill(dir, after, to - position) };
    return listing.window.done;
  }

  private async fill(dir: string, after: string, count: number): Promise<void> {
    const epoch = this.cache.beginPrefetch();
    try {
      for (const { name, stat } of await this.fetchWindow(dir, after, count)) this.cache.fill(epoch, childPath(dir, name), stat);
    } catch {
      // Only an optimisation: each lookup then stats for itself and reports its own error.
    } finally {
      this.cache.endPrefetch();
    }
  }
}
