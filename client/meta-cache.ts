// The client's metadata cache: directory entries (absent names included), full listings and
// attributes, each answered locally while the session's lease holds (coordinator/leases.ts).
//
// Why it never answers stale after another client's change was acknowledged:
// - The coordinator revokes the lease and waits for our ack (or our lease's lapse) before it
//   acknowledges a change; `applyPush` drops what the lease covered before we ack.
// - Validity is measured on our monotonic clock from the *send* time of the request that got the
//   grant, minus a margin: the coordinator counts the same TTL from its receipt, later.
// - An answer is cached only if no invalidation that could cover it arrived since its request
//   was sent (a `ReadTicket`): the reply may have been read before the push was applied.
// - A grant in another epoch means the coordinator forgot our old leases (or it is another
//   session: a reconnect, a failover): everything goes. Epochs are random per session, so
//   "another" is judged by the ticket: a reply to a request sent before the last switch is
//   not cached, whatever its epoch.
// - Our own changes (applyOwn*): the coordinator keeps our leases on what the reply lets us
//   update (common/lease-messages.ts ownChangeEvents) and pushes what it does not keep before
//   the reply; so a fact from the reply is installed only if no push covering its item arrived
//   since the request was sent, and not when another of our own changes of the same entry was in
//   flight at the same time (their order at the coordinator is unknown).
// - A directory we made: when the mkdir's reply says its listing is leased to us (the coordinator
//   began that lease's read before the mkdir committed, so any change there by anyone since
//   revokes it), it goes in as a whole, empty listing, unless a push covering it came first.
import type { FileStat } from './types.js';
import type { Invalidation, LeaseGrant, LeasePush } from '../common/lease-messages.js';

export type { Invalidation, LeasePush, LeaseGrant } from '../common/lease-messages.js';

/**
 * What listeners hear: one entry or one inode's attributes (as pushed; an evicted directory as
 * its entry ''), or `{ all: true }` when everything cached went at once (an `all` push, a new
 * epoch, the lease's lapse, a reset).
 */
export type CacheEvent = Invalidation | { all: true };

/** What remainingMs may be asked about: `{ dir, name }` an entry, `{ dir }` a whole listing, `{ attr }` attributes. */
export type CoveredItem = { dir: number; name?: string } | { attr: number };

/** Taken when a request is sent; proves later which pushes came after it. */
export interface ReadTicket {
  seq: number;
  sentAtMs: number;
}

/** Taken when one of our own changes is sent (beginOwn); settled by an applyOwn* or endOwn. */
export interface OwnTicket extends ReadTicket {
  /** Entries (`parent/name`) and attributes (`attr:ino`) the change updates. */
  keys: string[];
  /** Those of them another own change in flight at the same time also updates. */
  conflicts: Set<string>;
  /** Sent as a change the coordinator keeps our leases for (we held a lease when sending). */
  keep: boolean;
}

export interface MetaCacheOptions {
  /** Cached directories and attributes kept at most (oldest first out). Default 100,000. */
  maxEntries?: number;
  /** Monotonic milliseconds. */
  now?: () => number;
}

interface DirCache {
  /** name -> child inode, or null for a name known absent. */
  names: Map<string, number | null>;
  /** The names in order, when a full listing was read under one lease. */
  listing?: string[];
}

/** Pushes remembered, to judge replies that were in flight when they came. */
const RECENT_PUSHES_MAX = 4096;
/** Lease time given up to timers firing late and clocks running at slightly different rates. */
export const leaseMarginMs = (validForMs: number) => 100 + validForMs / 50;

export class MetaCache {
  private readonly dirs = new Map<number, DirCache>();
  private readonly attrs = new Map<number, FileStat>();
  readonly maxEntries: number;
  private readonly now: () => number;
  private epoch = 0;
  /** `seq` when the epoch last changed: replies to requests sent before it are not cached. */
  private epochSeq = 0;
  /** Own changes in flight (their entry/attribute keys), to find concurrent ones of the same entry. */
  private readonly ownInFlight = new Set<OwnTicket>();
  private validUntilMs = -Infinity;
  private seq = 0;
  /** seq -> what the push covered (item keys), or 'all'. */
  private readonly recent: { seq: number; keys: Set<string> | 'all' }[] = [];
  private readonly listeners = new Set<(event: CacheEvent) => void | Promise<unknown>>();
  /** While a push is applied: what its listeners returned. */
  private pending: Promise<unknown>[] | undefined;
  /** Items dropped from the cache (evicted) that the coordinator may release. */
  private released: { kind: 'dir' | 'attr'; ino: number }[] = [];
  hits = 0;

  constructor(options: MetaCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 100_000;
    this.now = options.now ?? (() => performance.now());
  }

  ticket(): ReadTicket {
    return { seq: this.seq, sentAtMs: this.now() };
  }

  get valid(): boolean {
    return this.now() < this.validUntilMs;
  }

  get size(): number {
    return this.dirs.size + this.attrs.size;
  }

  /** Until when (monotonic ms) the lease holds. */
  get validUntil(): number {
    return this.validUntilMs;
  }

  // ---- answers (undefined = not cached: ask the coordinator)

  /** A cached entry: the child's attributes, `null` for a name known absent. */
  lookup(parent: number, name: string): FileStat | null | undefined {
    if (!this.fresh()) return undefined;
    const dir = this.dirs.get(parent);
    const child = dir?.names.get(name);
    // A whole listing read under the lease names every entry: a name not in it is absent.
    if (child === undefined) return dir?.listing ? this.hit(null) : undefined;
    if (child === null) return this.hit(null);
    const stat = this.attrs.get(child);
    return stat ? this.hit(stat) : undefined;
  }

  /**
   * Whether the lease covers some of directory `ino` (at least `minNames` names of it) but not a
   * whole listing of it.
   */
  partlyCached(ino: number, minNames = 1): boolean {
    if (!this.fresh()) return false;
    const dir = this.dirs.get(ino);
    return !!dir && !dir.listing && dir.names.size >= minNames;
  }

  getattr(ino: number): FileStat | undefined {
    if (!this.fresh()) return undefined;
    const stat = this.attrs.get(ino);
    return stat ? this.hit(stat) : undefined;
  }

  readdirplus(ino: number, after = '', limit = 1000): { entries: { name: string; stat: FileStat }[]; more: boolean } | undefined {
    if (!this.fresh()) return undefined;
    const dir = this.dirs.get(ino);
    if (!dir?.listing) return undefined;
    // The coordinator's order (bytewise), kept as it came: resume right after `after`.
    const start = after === '' ? 0 : indexOfName(dir.listing, after) + 1;
    if (start === 0 && after !== '') return undefined; // a name not in the listing: ask the coordinator
    const names = dir.listing.slice(start, start + limit);
    const entries: { name: string; stat: FileStat }[] = [];
    for (const name of names) {
      const stat = this.attrs.get(dir.names.get(name) ?? -1);
      if (!stat) return undefined;
      entries.push({ name, stat });
    }
    return this.hit({ entries, more: start + limit < dir.listing.length });
  }

  // ---- learning (each returns false when the answer may not be cached)

  /** Records a lease grant; false if the reply predates what we know (not cacheable). */
  granted(ticket: ReadTicket, grant: LeaseGrant | undefined): boolean {
    if (!grant) return false;
    if (grant.epoch !== this.epoch) {
      if (ticket.seq < this.epochSeq) return false;
      this.seq++;
      this.remember('all'); // replies still in flight may be from the old session
      this.dropEverything();
      this.epoch = grant.epoch;
      this.epochSeq = this.seq;
      this.validUntilMs = -Infinity;
    } else {
      this.fresh();
    }
    this.validUntilMs = Math.max(this.validUntilMs, ticket.sentAtMs + grant.validForMs - leaseMarginMs(grant.validForMs));
    return this.valid;
  }

  /** A renewal's answer (no data): extends the lease, or starts over in a new epoch. */
  renewed(ticket: ReadTicket, grant: LeaseGrant): void {
    this.granted(ticket, grant);
  }

  putLookup(ticket: ReadTicket, grant: LeaseGrant | undefined, parent: number, name: string, stat: FileStat | null): void {
    if (!this.untouched(ticket, [dirKey(parent), ...(stat ? [attrKey(stat.ino)] : [])]) || !this.granted(ticket, grant)) return;
    this.dir(parent).names.set(name, stat ? stat.ino : null);
    if (stat) this.putStat(stat);
  }

  putAttr(ticket: ReadTicket, grant: LeaseGrant | undefined, stat: FileStat): void {
    if (!this.untouched(ticket, [attrKey(stat.ino)]) || !this.granted(ticket, grant)) return;
    this.putStat(stat);
  }

  /** A whole listing (every page read under the one ticket) with each entry's attributes. */
  putListing(ticket: ReadTicket, grant: LeaseGrant | undefined, ino: number, entries: { name: string; stat: FileStat }[]): void {
    const keys = [dirKey(ino), ...entries.map((e) => attrKey(e.stat.ino))];
    if (!this.untouched(ticket, keys) || !this.granted(ticket, grant)) return;
    const dir = this.dir(ino);
    dir.names.clear();
    dir.listing = entries.map((e) => e.name);
    for (const { name, stat } of entries) {
      dir.names.set(name, stat.ino);
      this.putStat(stat);
    }
  }

  /** Entries of one page of a listing (not the whole of it): cached as lookups. */
  putEntries(ticket: ReadTicket, grant: LeaseGrant | undefined, ino: number, entries: { name: string; stat: FileStat }[]): void {
    const keys = [dirKey(ino), ...entries.map((e) => attrKey(e.stat.ino))];
    if (!this.untouched(ticket, keys) || !this.granted(ticket, grant)) return;
    const dir = this.dir(ino);
    for (const { name, stat } of entries) {
      dir.names.set(name, stat.ino);
      this.putStat(stat);
    }
  }

  // ---- our own changes (see the header)

  /** Before sending one of our changes: `entries` [parent, name] and `attrs` inodes it updates. */
  beginOwn(entries: [number, string][], attrs: number[] = [], keep = true): OwnTicket {
    const keys = [...entries.map(([parent, name]) => entryKey(parent, name)), ...attrs.map(attrKey)];
    const own: OwnTicket = { ...this.ticket(), keys, conflicts: new Set(), keep };
    for (const other of this.ownInFlight) {
      for (const key of keys) {
        if (!other.keys.includes(key)) continue;
        other.conflicts.add(key);
        own.conflicts.add(key);
      }
    }
    this.ownInFlight.add(own);
    return own;
  }

  /** The change failed (or its outcome is unknown): nothing learned from it. */
  endOwn(own: OwnTicket): void {
    this.ownInFlight.delete(own);
  }

  /**
   * We created `name` in `parent` (mkdir, create, symlink); `stat` is the new inode's.
   * `listingLeased`: a mkdir's reply leased us the new directory's whole (empty) listing.
   */
  applyOwnEntry(own: OwnTicket, parent: number, name: string, stat: FileStat, listingLeased = false): void {
    if (!this.settleOwn(own)) return;
    this.attrs.delete(parent); // its mtime and maybe nlink changed
    if (this.ownUsable(own, dirKey(parent), entryKey(parent, name))) this.setName(this.dir(parent), name, stat.ino);
    if (this.untouched(own, [attrKey(stat.ino)])) this.putStat(stat);
    if (listingLeased && stat.type === 'directory' && this.untouched(own, [dirKey(stat.ino)])) {
      const dir = this.dir(stat.ino);
      dir.names.clear();
      dir.listing = [];
    }
  }

  /**
   * The inode a cached name stands for (no hit counted; undefined = not known): what an own
   * change of that name will update, named in its ticket (beginOwn) before it is sent.
   */
  childOf(parent: number, name: string): number | undefined {
    const child = this.dirs.get(parent)?.names.get(name);
    return typeof child === 'number' ? child : undefined;
  }

  /**
   * We removed `name` from `parent` (unlink, rmdir). `removed`: the inode as the removal left it
   * (from the reply). The coordinator pushes nothing about it to us (it keeps our lease on it, or
   * releases it once gone, nlink 0), counting on this: what we cached of it goes whatever else
   * happens, and its new attributes are kept if the ticket named it.
   */
  applyOwnRemoved(own: OwnTicket, parent: number, name: string, removed?: FileStat): void {
    if (removed) this.attrs.delete(removed.ino);
    if (!this.settleOwn(own)) return;
    this.attrs.delete(parent);
    const dir = this.dirs.get(parent);
    const child = dir?.names.get(name);
    if (typeof child === 'number') this.attrs.delete(child); // its nlink (a push says so too, if leased)
    if (removed && removed.nlink > 0) this.applyOwnInode(own, removed);
    if (this.ownUsable(own, dirKey(parent), entryKey(parent, name))) this.setName(this.dir(parent), name, null);
  }

  /** An inode's attributes from an own change's reply, if its ticket named it (beginOwn attrs) and nothing touched it since. */
  private applyOwnInode(own: OwnTicket, stat: FileStat): void {
    const key = attrKey(stat.ino);
    if (own.keys.includes(key) && this.ownUsable(own, key, key)) this.putStat(stat);
  }

  /** We renamed `srcName` in `srcParent` to `dstName` in `dstParent`; `movedStat`: the moved inode as the reply gives it. */
  applyOwnRenamed(own: OwnTicket, srcParent: number, srcName: string, dstParent: number, dstName: string, movedStat?: FileStat): void {
    // Its ctime moved, and nothing about it is pushed to us (see applyOwnRemoved): dropped whatever happens.
    if (movedStat) this.attrs.delete(movedStat.ino);
    if (!this.settleOwn(own)) return;
    if (movedStat) this.applyOwnInode(own, movedStat);
    this.attrs.delete(srcParent);
    this.attrs.delete(dstParent);
    const moved = this.dirs.get(srcParent)?.names.get(srcName);
    const replaced = this.dirs.get(dstParent)?.names.get(dstName);
    if (typeof replaced === 'number' && replaced !== moved) this.attrs.delete(replaced); // its nlink
    const srcOk = this.ownUsable(own, dirKey(srcParent), entryKey(srcParent, srcName));
    const dstOk = this.ownUsable(own, dirKey(dstParent), entryKey(dstParent, dstName));
    if (srcOk) this.setName(this.dir(srcParent), srcName, null);
    if (!dstOk) return;
    if (typeof moved === 'number' && srcOk) {
      this.setName(this.dir(dstParent), dstName, moved);
    } else {
      // Which inode it holds now is not known here: forget the name (and so the listing's completeness).
      const dst = this.dirs.get(dstParent);
      dst?.names.delete(dstName);
      if (dst) dst.listing = undefined;
    }
  }

  /** We changed an inode's attributes (setattr): `stat` is what the coordinator answered. */
  applyOwnAttr(own: OwnTicket, stat: FileStat): void {
    if (!this.settleOwn(own)) return;
    if (this.ownUsable(own, attrKey(stat.ino), attrKey(stat.ino))) this.putStat(stat);
  }

  /**
   * What the coordinator pushed: drop what its lease covered, tell listeners; then ack, once
   * what the listeners returned has settled (a mount: the kernel dropped its copies too).
   */
  applyPush(push: LeasePush): Promise<void> {
    this.seq++;
    this.pending = [];
    if (push.all) {
      this.remember('all');
      this.dropEverything(true);
    } else {
      const keys = new Set<string>();
      for (const event of push.events) {
        // The lease on the whole directory (or inode) is gone, not just the named entry.
        if (event.name === undefined) {
          keys.add(attrKey(event.ino));
          this.attrs.delete(event.ino);
        } else {
          keys.add(dirKey(event.ino));
          this.dirs.delete(event.ino);
        }
      }
      this.remember(keys);
      for (const event of push.events) this.tell(event);
    }
    const pending = this.pending;
    this.pending = undefined;
    return pending.length === 0 ? Promise.resolve() : Promise.allSettled(pending).then(() => undefined);
  }

  /** The session is gone (stream ended, coordinator switched): nothing cached can be trusted. */
  reset(): void {
    this.seq++;
    this.remember('all');
    this.dropEverything();
    this.validUntilMs = -Infinity;
  }

  /** Milliseconds the lease still holds from now (0 when none): how long anything cached may be believed. */
  remainingMs(item?: CoveredItem): number {
    if (!this.valid) return 0;
    if (item && !this.covers(item)) return 0;
    return this.validUntilMs - this.now();
  }

  /** Whether the lease covers an item (counts no hit): an entry, a whole listing, attributes. */
  private covers(item: CoveredItem): boolean {
    if ('attr' in item) return this.attrs.has(item.attr);
    const dir = this.dirs.get(item.dir);
    if (!dir) return false;
    if (item.name === undefined) return !!dir.listing;
    return dir.names.has(item.name) || !!dir.listing;
  }

  /** Called when the lease may have run out: drops everything (telling listeners) if it did. */
  checkLapse(): void {
    this.fresh();
  }

  /** A listener may return a promise: the push is acked once it settled. */
  onInvalidate(listener: (event: CacheEvent) => void | Promise<unknown>): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Items evicted since the last call (to release on the coordinator). */
  takeReleased(): { kind: 'dir' | 'attr'; ino: number }[] {
    // Cached again since (a later read): not released. And replies to reads sent before this
    // (the coordinator may take the release after granting them) must not cache what goes.
    const released = this.released.filter((r) => !(r.kind === 'dir' ? this.dirs.has(r.ino) : this.attrs.has(r.ino)));
    this.released = [];
    if (released.length > 0) {
      this.seq++;
      this.remember(new Set(released.map((r) => (r.kind === 'dir' ? dirKey(r.ino) : attrKey(r.ino)))));
    }
    return released;
  }

  // ---- internals

  /** Ends an own change's flight; false if nothing may be learned from it (no lease now). */
  private settleOwn(own: OwnTicket): boolean {
    this.ownInFlight.delete(own);
    return own.keep && this.fresh() && own.seq >= this.epochSeq;
  }

  /**
   * Whether an own change's fact about `key` may be installed: no push since it was sent covered
   * the item, and no own change of the same entry ran at the same time. If one did, the item is
   * dropped here (we cannot tell which came last).
   */
  private ownUsable(own: OwnTicket, item: string, key: string): boolean {
    if (!this.untouched(own, [item])) return false;
    if (!own.conflicts.has(key)) return true;
    this.dropItem(item);
    return false;
  }

  /** Drops one directory's entries or one inode's attributes on our own account. */
  private dropItem(item: string): void {
    this.seq++;
    this.remember(new Set([item]));
    const ino = Number(item.slice(item.indexOf(':') + 1));
    if (item.startsWith('dir:')) this.dirs.delete(ino);
    else this.attrs.delete(ino);
  }

  /** Sets (or, null, marks absent) one name, keeping a whole listing whole and in order. */
  private setName(dir: DirCache, name: string, ino: number | null): void {
    const had = dir.names.get(name);
    dir.names.set(name, ino);
    if (!dir.listing) return;
    const present = typeof had === 'number';
    const at = present ? indexOfName(dir.listing, name) : -1;
    if (ino === null && at >= 0) dir.listing.splice(at, 1);
    else if (ino !== null && !present) dir.listing.splice(insertionPoint(dir.listing, name), 0, name);
    if (ino === null && dir.listing) dir.names.delete(name); // absent: the listing says so
  }

  private fresh(): boolean {
    if (this.valid) return true;
    if (this.validUntilMs !== -Infinity) {
      // The lease lapsed: once, everything goes (listeners hear it even if nothing is left).
      this.validUntilMs = -Infinity;
      this.dropEverything(true);
    }
    return false;
  }

  /** Drops everything; tells listeners `{ all: true }` if a lease was held (or `always`). */
  private dropEverything(always = false): void {
    const had = always || this.size > 0 || this.valid;
    this.dropAll();
    if (had) this.tell({ all: true });
  }

  private tell(event: CacheEvent): void {
    for (const listener of this.listeners) {
      try {
        const done = listener(event);
        if (done && this.pending) this.pending.push(done);
      } catch {
        // A listener's failure is its own; the cache and the other listeners go on.
      }
    }
  }

  private hit<T>(value: T): T {
    this.hits++;
    return value;
  }

  /** No push since the ticket could cover these items. */
  private untouched(ticket: ReadTicket, keys: string[]): boolean {
    if (ticket.seq === this.seq) return true;
    const oldest = this.recent[0];
    if (!oldest || oldest.seq > ticket.seq + 1) return false; // forgotten: assume the worst
    for (const push of this.recent) {
      if (push.seq <= ticket.seq) continue;
      if (push.keys === 'all' || keys.some((key) => (push.keys as Set<string>).has(key))) return false;
    }
    return true;
  }

  private remember(keys: Set<string> | 'all'): void {
    this.recent.push({ seq: this.seq, keys });
    if (this.recent.length > RECENT_PUSHES_MAX) this.recent.splice(0, this.recent.length - RECENT_PUSHES_MAX);
  }

  private dir(ino: number): DirCache {
    let dir = this.dirs.get(ino);
    if (!dir) {
      dir = { names: new Map() };
      this.dirs.set(ino, dir);
      this.evict();
    }
    return dir;
  }

  private putStat(stat: FileStat): void {
    this.attrs.delete(stat.ino);
    this.attrs.set(stat.ino, stat);
    this.evict();
  }

  private evict(): void {
    while (this.size > this.maxEntries) {
      const [ino] = this.attrs.size >= this.dirs.size ? this.attrs.keys() : this.dirs.keys();
      if (ino === undefined) return;
      // Listeners hear it as a push: once released, no push about it will come, so whatever
      // they hold of it (a mount's kernel entries) must go now.
      if (this.attrs.size >= this.dirs.size) {
        this.attrs.delete(ino);
        this.released.push({ kind: 'attr', ino });
        this.tell({ ino });
      } else {
        this.dirs.delete(ino);
        this.released.push({ kind: 'dir', ino });
        this.tell({ ino, name: '' });
      }
    }
  }

  private dropAll(): void {
    this.dirs.clear();
    this.attrs.clear();
    this.released = [];
  }
}

const dirKey = (ino: number) => `dir:${ino}`;
const attrKey = (ino: number) => `attr:${ino}`;
const entryKey = (parent: number, name: string) => `${parent}/${name}`;

/** The coordinator's order of names: bytewise over UTF-8 (its keys' order). */
export function compareNames(a: string, b: string): number {
  // UTF-16 order equals UTF-8 byte order except around surrogates (U+D800..U+DFFF vs U+E000..U+FFFF).
  if (!/[\ud800-\udfff]/.test(a) && !/[\ud800-\udfff]/.test(b) && !/[\ue000-\uffff]/.test(a + b)) return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Where `name` goes in a sorted listing (binary search). */
function insertionPoint(listing: string[], name: string): number {
  let lo = 0;
  let hi = listing.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareNames(listing[mid]!, name) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function indexOfName(listing: string[], name: string): number {
  const at = insertionPoint(listing, name);
  return listing[at] === name ? at : listing.indexOf(name);
}
