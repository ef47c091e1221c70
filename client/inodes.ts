// `strata.inodes`: the namespace by inode and (parent inode, name), for the FUSE mount, over
// the session stream. lookup, getattr and readdirplus
// are leased reads: answered from client/meta-cache.ts while the coordinator's lease holds (no
// request at all), their answers cached when granted; pushes drop what they cover, fire
// onInvalidate, and are acked on the stream that pushed them.
import { StrataError, notFound } from '../common/errors.js';
import { validateName } from '../common/paths.js';
import { MetaCache, type CacheEvent, type CoveredItem, type LeaseGrant, type LeasePush, type OwnTicket, type ReadTicket } from './meta-cache.js';
import type { CoordinatorClient } from './coordinator-client.js';
import type { AttrChanges, FileStat, SpecialFileType } from './types.js';
import { WIRE_SPECIAL_TYPES, toFileStat } from './wire.js';
import { processOwner } from './owner.js';
import type { AllocateReply, CommitChunkRequest } from './writer.js';

/** A placement for one chunk write, granted by create: pass it to Strata.writeChunkAt. */
type ChunkGrant = AllocateReply;

/**
 * `{ ino, name }`: the entry `name` in directory `ino` changed; `{ ino }`: the inode's attributes
 * or content changed; `{ all: true }`: everything this client cached is gone at once (an `all`
 * push, a new lease epoch after a reconnect or failover, the lease's lapse).
 */
export type InvalidateEvent = CacheEvent;
export type { CoveredItem };

/** Who creates an entry: the mount passes its caller's uid and gid; absent = this process's (client/owner.ts). */
export type Owner = { uid: number; gid: number };

export interface InodeOps {
  lookup(parent: number, name: string): Promise<FileStat>;
  getattr(ino: number): Promise<FileStat>;
  readdirplus(ino: number, opts?: { after?: string; limit?: number }): Promise<{ entries: Array<{ name: string; stat: FileStat }>; more: boolean }>;
  mkdir(parent: number, name: string, mode: number, owner?: Owner): Promise<FileStat>;
  create(parent: number, name: string, opts?: { mode?: number; exclusive?: boolean; allocateFirstChunk?: boolean; owner?: Owner }): Promise<{ stat: FileStat; grant?: ChunkGrant }>;
  symlink(parent: number, name: string, target: string, owner?: Owner): Promise<FileStat>;
  /** A fifo, socket or device node (metadata only); `rdev` is the device number of a device. */
  mknod(parent: number, name: string, type: SpecialFileType, mode: number, rdev?: number, owner?: Owner): Promise<FileStat>;
  /** Another name for inode `ino` (not a directory); resolves to the inode with its new link count. */
  link(ino: number, newParent: number, newName: string): Promise<FileStat>;
  readlink(ino: number): Promise<string>;
  unlink(parent: number, name: string): Promise<void>;
  rmdir(parent: number, name: string): Promise<void>;
  rename(srcParent: number, srcName: string, dstParent: number, dstName: string, opts?: { noReplace?: boolean }): Promise<void>;
  setattr(ino: number, changes: AttrChanges): Promise<FileStat>;
  /**
   * Pushed by the coordinator when another client changes what this client may have cached.
   * { ino, name } = the entry `name` in directory `ino` changed; { ino } alone = the inode's
   * attributes/content changed. Fired before the push is acked, so before that change is
   * acknowledged to the client that made it. `{ all: true }` = forget everything cached from
   * this client (fired on a lapse too, when nothing is pushed).
   */
  onInvalidate(listener: (ev: InvalidateEvent) => void | Promise<unknown>): () => void;
  /**
   * Milliseconds from now that answers given so far stay valid (0 = no lease: believe nothing).
   * A kernel cache of entries/attributes must not outlive this: cap its timeouts to it. Note
   * the lease is renewed only while requests reach this client: answers a kernel serves from its
   * own cache do not count as use, so once the kernel answers everything the lease lapses (an
   * `{ all: true }` event) and the next request takes a new one. With `item`, 0 unless the lease covers that item: `{ dir, name }` the
   * entry, `{ dir }` a whole listing, `{ attr }` the attributes of an inode. A listener may
   * return a promise (a kernel taking its invalidations): the push is acked once it settled.
   */
  leaseRemainingMs(item?: CoveredItem): number;
  /** Counts as use of the lease (answers a mount served from what it keeps): the next renewal keeps it. */
  keepLeaseAlive?(): void;
}

/* eslint-disable @typescript-eslint/no-explicit-any -- replies are plain proto-loader objects */
type StatReply = { attr: any };

/** A retried removal that finds the name gone was applied by the attempt whose outcome was unknown. */
const goneMeansDone = (error: StrataError) => (error.kind === 'NotFound' ? {} : undefined);

/** Entries of the largest directory listed whole to answer lookups in it (and half the cache at most). */
const LISTING_MAX = 100_000;
/**
 * Names looked up in a leased directory before it is listed: two lookups per change (a rename,
 * its target's lookup) must not list the directory for each change.
 */
const LISTING_AFTER_NAMES = 2;
/** The coordinator's largest readdir page (coordinator/meta/store.ts READDIR_MAX_LIMIT): a bigger limit is read in pages of it. */
const SERVER_PAGE_MAX = 10_000;

/** The longest close() waits for its leases' release (a coordinator that does not answer lets them lapse). */
const RELEASE_TIMEOUT_MS = 1000;

/** Renewals start when this much of the lease is left (of its length). */
const RENEW_AT_FRACTION = 0.5;

export class SessionInodes implements InodeOps {
  private readonly cache: MetaCache;
  private stopPushes: (() => void) | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private usedSinceRenew = false;
  /** Left to lapse (unused for half a lease): the renewal timer waits for the lapse. */
  private idle = false;
  private lastValidForMs = 0;
  /** Directories found too big to list for a lookup. */
  private readonly bigDirs = new Set<number>();
  /** Listings in progress for lookups (lookupByListing), by directory. */
  private readonly listings = new Map<number, Promise<{ name: string; stat: FileStat }[] | undefined>>();

  private readonly listingPage: number;

  constructor(
    private readonly coordinator: CoordinatorClient,
    options: { listingPage?: number; cacheEntries?: number } = {},
  ) {
    this.listingPage = options.listingPage ?? SERVER_PAGE_MAX;
    this.cache = new MetaCache({ maxEntries: options.cacheEntries });
  }

  async lookup(parent: number, name: string): Promise<FileStat> {
    // Before the cache: a whole listing would answer a name no directory can hold as absent.
    validateName(name);
    const cached = this.cache.lookup(parent, name);
    if (cached === null) return this.used(Promise.reject(notFound(name)));
    if (cached) return this.used(Promise.resolve(cached));
    const listed = await this.lookupByListing(parent, name);
    if (listed !== undefined) return listed;
    const ticket = this.leasedRead();
    const reply = await this.coordinator.session<{ attr: any; absent: boolean; lease: any }>('leasedLookup', { parent, name });
    const grant = this.granted(reply.lease);
    if (reply.absent) {
      this.cache.putLookup(ticket, grant, parent, name, null);
      throw notFound(name);
    }
    const stat = toFileStat(reply.attr);
    this.cache.putLookup(ticket, grant, parent, name, stat);
    return stat;
  }

  /**
   * A second name looked up in a directory still leased to us (stat of each file, ls -l, a
   * build's many opens): one leased listing answers it and every later lookup there, absent
   * names included, while one lookup each would cost a request per name. A big directory is
   * listed in pages (of the coordinator's size), up to a bound set by the cache's size; past it,
   * one request per name. Concurrent lookups share one listing. undefined = ask for the name.
   */
  private async lookupByListing(parent: number, name: string): Promise<FileStat | undefined> {
    if (!this.cache.partlyCached(parent, LISTING_AFTER_NAMES) || this.bigDirs.has(parent)) return undefined;
    let listing = this.listings.get(parent);
    if (!listing) {
      listing = this.listWhole(parent).finally(() => this.listings.delete(parent));
      this.listings.set(parent, listing);
    }
    const entries = await listing;
    if (!entries) return undefined;
    const cached = this.cache.lookup(parent, name);
    if (cached === null) throw notFound(name);
    return cached ?? entries.find((e) => e.name === name)?.stat;
  }

  /**
   * Every entry of `dir` with its attributes, cached as one whole listing (readdirplus reads it
   * in pages under the first page's ticket). undefined: too big (half the cache at most), or failed.
   */
  private async listWhole(dir: number): Promise<{ name: string; stat: FileStat }[] | undefined> {
    const bound = Math.min(LISTING_MAX, Math.floor(this.cache.maxEntries / 2));
    const page = await this.readdirplus(dir, { limit: bound }).catch(() => undefined);
    if (page?.more) {
      if (this.bigDirs.size >= 10_000) this.bigDirs.clear();
      this.bigDirs.add(dir);
      return undefined;
    }
    return page?.entries;
  }

  async getattr(ino: number): Promise<FileStat> {
    const cached = this.cache.getattr(ino);
    if (cached) return this.used(Promise.resolve(cached));
    const ticket = this.leasedRead();
    const reply = await this.coordinator.session<{ attr: any; lease: any }>('leasedGetAttr', { ino });
    const stat = toFileStat(reply.attr);
    this.cache.putAttr(ticket, this.granted(reply.lease), stat);
    return stat;
  }

  async readdirplus(ino: number, opts: { after?: string; limit?: number } = {}) {
    const cached = this.cache.readdirplus(ino, opts.after ?? '', opts.limit || 1000);
    if (cached) return this.used(Promise.resolve(cached));
    const ticket = this.leasedRead();
    const limit = opts.limit ?? 0;
    const entries: Array<{ name: string; stat: FileStat }> = [];
    let grant: LeaseGrant | undefined;
    let leased = true;
    let more = false;
    // Pages of the coordinator's size, all under the first page's ticket: any push about the
    // directory or its entries after that one was sent keeps the whole from the cache.
    for (let after = opts.after ?? ''; ; ) {
      const want = limit > 0 ? Math.min(limit - entries.length, this.listingPage) : 0;
      const reply = await this.coordinator.session<{ entries: any[]; more: boolean; lease: any }>('leasedReadDirPlus', { ino, after, limit: want });
      for (const e of reply.entries) entries.push({ name: String(e.name), stat: toFileStat(e.attr) });
      grant = this.granted(reply.lease);
      leased &&= grant !== undefined;
      more = !!reply.more;
      if (!more || reply.entries.length === 0 || limit <= this.listingPage || entries.length >= limit) break;
      after = entries[entries.length - 1].name;
    }
    if (!leased) grant = undefined;
    // A whole listing answers later listings; a page only answers lookups of its names.
    if (!opts.after && !more) this.cache.putListing(ticket, grant, ino, entries);
    else this.cache.putEntries(ticket, grant, ino, entries);
    return { entries, more };
  }

  /** Answers from the cache so far (the requests they saved). */
  get cacheHits(): number {
    return this.cache.hits;
  }

  // Changes: the coordinator keeps our leases on what the reply tells us (common/lease-messages.ts
  // ownChangeEvents), so the reply goes into the cache and a lookup of a name we just created,
  // removed or renamed costs no request (meta-cache.ts says why that stays coherent).

  async mkdir(parent: number, name: string, mode: number, owner?: Owner): Promise<FileStat> {
    type MkdirReply = StatReply & { listingLeased?: boolean };
    return this.own([[parent, name]], [], (hook, ownCache) => this.coordinator.session<MkdirReply>('mkdirAt', { parent, name, mode, owner: owner ?? processOwner(), ownCache }, hook), (own, reply) => {
      const stat = toFileStat(reply.attr);
      // Its listing leased to us (empty): lookups in it (each create's, mkdir's, rename's first) cost no request.
      this.cache.applyOwnEntry(own, parent, name, stat, !!reply.listingLeased);
      return stat;
    });
  }

  async create(parent: number, name: string, opts: { mode?: number; exclusive?: boolean; allocateFirstChunk?: boolean; owner?: Owner } = {}) {
    const request = { parent, name, mode: opts.mode ?? 0, exclusive: !!opts.exclusive, allocateFirstChunk: !!opts.allocateFirstChunk, owner: opts.owner ?? processOwner() };

    type CreateReply = { attr: any; firstChunk?: ChunkGrant | null };
    return this.own([[parent, name]], [], (hook, ownCache) => this.coordinator.session<CreateReply>('createAt', { ...request, ownCache }, hook), (own, reply) => {
      const stat = toFileStat(reply.attr);
      this.cache.applyOwnEntry(own, parent, name, stat);
      const grant = reply.firstChunk?.pipeline?.length ? reply.firstChunk : undefined;
      return grant ? { stat, grant } : { stat };
    });
  }

  async symlink(parent: number, name: string, target: string, owner?: Owner): Promise<FileStat> {
    return this.own([[parent, name]], [], (hook, ownCache) => this.coordinator.session<StatReply>('symlinkAt', { parent, name, target, owner: owner ?? processOwner(), ownCache }, hook), (own, reply) => {
      const stat = toFileStat(reply.attr);
      this.cache.applyOwnEntry(own, parent, name, stat);
      return stat;
    });
  }

  // Special files and links change what this client caches the ordinary way: the coordinator's
  // push drops it (no own-cache reply), so a link's new count is read afresh.
  async mknod(parent: number, name: string, type: SpecialFileType, mode: number, rdev = 0, owner?: Owner): Promise<FileStat> {
    const wireType = WIRE_SPECIAL_TYPES[type];
    if (!wireType) throw new StrataError('Invalid', `mknod: '${type}' is not fifo, char-device, block-device or socket`);
    return this.stat('mknodAt', { parent, name, type: wireType, mode, rdev, owner: owner ?? processOwner() });
  }

  async link(ino: number, newParent: number, newName: string): Promise<FileStat> {
    return this.stat('linkAt', { ino, newParent, newName });
  }

  async readlink(ino: number): Promise<string> {
    return (await this.coordinator.session<{ target: string }>('readlink', { ino })).target;
  }

  async unlink(parent: number, name: string): Promise<void> {
    return this.removal('unlink', parent, name);
  }

  async rmdir(parent: number, name: string): Promise<void> {
    return this.removal('rmdir', parent, name);
  }

  async rename(srcParent: number, srcName: string, dstParent: number, dstName: string, opts: { noReplace?: boolean } = {}): Promise<void> {
    const request = { srcParent, srcName, dstParent, dstName, noReplace: !!opts.noReplace };
    const entries: [number, string][] = [[srcParent, srcName], [dstParent, dstName]];
    // The moved inode, when cached: the reply's attributes of it (its new ctime) are kept then.
    const moved = this.cache.childOf(srcParent, srcName);
    return this.own(entries, moved === undefined ? [] : [moved], (hook, ownCache) => this.coordinator.session<Partial<StatReply>>('renameAt', { ...request, ownCache }, hook), (own, reply) => {
      const movedStat = reply?.attr ? toFileStat(reply.attr) : undefined;
      if (srcParent === dstParent && srcName === dstName) this.cache.endOwn(own);
      else this.cache.applyOwnRenamed(own, srcParent, srcName, dstParent, dstName, movedStat);
    });
  }

  async setattr(ino: number, changes: AttrChanges): Promise<FileStat> {
    return this.own([], [ino], (hook, ownCache) => this.coordinator.session<StatReply>('setAttrIno', { ino, ...changes, ownCache }, hook), (own, reply) => {
      const stat = toFileStat(reply.attr);
      if (stat.ino === ino) this.cache.applyOwnAttr(own, stat);
      else this.cache.endOwn(own);
      return stat;
    });
  }

  /**
   * CommitChunk as this client's own change: the file's attributes in the reply go into the
   * cache (kept under its lease), so committing a file this client created costs no push to it,
   * no ack, and no later read of its attributes. Writer.uploadChunk sends it (Strata.writeChunkAt).
   */
  async commitChunk(request: CommitChunkRequest): Promise<{ attr: unknown }> {
    return this.own([], [request.ino], (hook, ownCache) => this.coordinator.session<StatReply>('commitChunk', { ...request, ownCache }, hook), (own, reply) => {
      const stat = toFileStat(reply.attr);
      if (stat.ino === request.ino) this.cache.applyOwnAttr(own, stat);
      else this.cache.endOwn(own);
      return reply;
    });
  }

  private async removal(op: 'unlink' | 'rmdir', parent: number, name: string): Promise<void> {
    // The removed inode, when cached: named in the ticket, so its new link count from the reply is kept.
    const child = this.cache.childOf(parent, name);
    return this.own(
      [[parent, name]],
      child === undefined ? [] : [child],
      (hook, ownCache) => this.coordinator.session<Partial<StatReply>>(op, { parent, name, ownCache }, (error) => hook(error) ?? goneMeansDone(error)),
      (own, reply) => this.cache.applyOwnRemoved(own, parent, name, reply?.attr ? toFileStat(reply.attr) : undefined),
    );
  }

  /**
   * One of our changes, applied to the cache from its reply. If its outcome was ever unknown (a
   * retry after a broken stream: the first attempt may have been applied on a coordinator that
   * can no longer push to us), nothing cached is trusted any more.
   */
  private async own<R, T>(
    entries: [number, string][],
    attrs: number[],
    send: (hook: (error: StrataError) => undefined, ownCache: boolean) => Promise<R>,
    apply: (own: OwnTicket, reply: R) => T,
  ): Promise<T> {
    // Only while we hold a lease: then we listen for pushes (on every session) and ack them.
    const ownCache = this.cache.valid;
    if (ownCache) {
      this.listen();
      this.markUsed();
    }
    const own = this.cache.beginOwn(entries, attrs, ownCache);
    let ambiguous = false;
    const hook = () => {
      ambiguous = true;
      return undefined;
    };
    let reply: R;
    try {
      reply = await send(hook, ownCache);
    } catch (err) {
      this.cache.endOwn(own);
      if (ambiguous || (err instanceof StrataError && (err.kind === 'Unavailable' || err.kind === 'Timeout'))) this.cache.reset();
      throw err;
    }
    if (ambiguous) this.cache.reset(); // then apply learns nothing (no lease left)
    return apply(own, reply);
  }

  onInvalidate(listener: (ev: InvalidateEvent) => void | Promise<unknown>): () => void {
    return this.cache.onInvalidate(listener);
  }

  leaseRemainingMs(item?: CoveredItem): number {
    return this.cache.remainingMs(item);
  }

  /**
   * Gives every lease back (release_all on each open session) after dropping the cache, so
   * nobody's change waits for ours to run out; Strata.close() calls it. Later calls start over.
   */
  async releaseLeases(): Promise<void> {
    if (!this.stopPushes) return; // holding nothing: a lapsed lease is gone on the coordinator too
    clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
    this.idle = false;
    this.cache.reset(); // stops answering from it (listeners hear { all: true })
    this.lapsed();
    await this.coordinator.requestOnOpenSessions('leaseRenew', { releaseAll: true }, RELEASE_TIMEOUT_MS);
  }

  keepLeaseAlive(): void {
    // Only a lease we still listen for pushes on can be renewed (a lapsed one starts over).
    if (this.stopPushes) this.markUsed();
  }

  // ---- leases

  /** Before a leased read: listen for pushes first, so none covering its answer is missed. */
  private leasedRead(): ReadTicket {
    this.markUsed();
    this.listen();
    return this.cache.ticket();
  }

  private listen(): void {
    this.stopPushes ??= this.coordinator.onPushFrom((kind, push, answer) => {
      if (kind !== 'leasePush') return;
      const message = push as { pushId: number; events?: { ino: number; name?: string | null }[]; all?: boolean };
      const leasePush: LeasePush = {
        pushId: Number(message.pushId),
        all: !!message.all,
        events: (message.events ?? []).map((e) => (typeof e.name === 'string' ? { ino: Number(e.ino), name: e.name } : { ino: Number(e.ino) })),
      };
      // Dropped (the mount's kernel copies too) before acked: the change is acknowledged to its
      // writer only after this ack.
      void this.cache.applyPush(leasePush).then(() => answer('leaseAck', { pushId: leasePush.pushId }).catch(() => undefined));
    });
  }

  private granted(wire: { epoch: number | string; validForMs: number } | null | undefined): LeaseGrant | undefined {
    if (!wire) return undefined;
    const grant = { epoch: Number(wire.epoch), validForMs: Number(wire.validForMs) };
    this.lastValidForMs = grant.validForMs;
    queueMicrotask(() => this.scheduleRenew()); // once the cache has taken the grant
    return grant;
  }

  private used<T>(answer: Promise<T>): Promise<T> {
    this.markUsed();
    return answer;
  }

  private markUsed(): void {
    this.usedSinceRenew = true;
    if (!this.idle) return;
    // Used again while left to lapse: renew now, the lease is still ours until it runs out.
    this.idle = false;
    clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
    this.usedSinceRenew = false;
    void this.renew();
  }

  /** Renews while the cache is in use; lets it lapse (and stops listening) once it is not. */
  private scheduleRenew(): void {
    if (this.renewTimer) return;
    const delayMs = Math.max(50, this.cache.validUntil - performance.now() - this.lastValidForMs * RENEW_AT_FRACTION);
    this.renewTimer = setTimeout(() => {
      this.renewTimer = undefined;
      if (!this.cache.valid) return this.lapsed();
      // Nothing cached, or unused: no renewal, but we listen (and ack) until the lease runs
      // out, since the coordinator may still count us as holding what we dropped ourselves.
      if (this.cache.size === 0 || !this.usedSinceRenew) {
        // Idle: no renewal. Pushes are still answered until the lease runs out; a use before
        // then renews at once (markUsed).
        this.idle = true;
        this.renewTimer = setTimeout(() => {
          this.renewTimer = undefined;
          this.idle = false;
          this.lapsed();
        }, Math.max(0, this.cache.validUntil - performance.now()));
        this.renewTimer.unref();
        return;
      }
      this.usedSinceRenew = false;
      void this.renew();
    }, Number.isFinite(delayMs) ? delayMs : 50);
    this.renewTimer.unref();
  }

  private async renew(): Promise<void> {
    const ticket = this.cache.ticket();
    const released = this.cache.takeReleased();
    try {
      const grant = await this.coordinator.session<{ epoch: number | string; validForMs: number }>('leaseRenew', {
        releaseDirs: released.filter((r) => r.kind === 'dir').map((r) => r.ino),
        releaseAttrs: released.filter((r) => r.kind === 'attr').map((r) => r.ino),
      });
      const parsed = this.granted(grant);
      if (parsed) this.cache.renewed(ticket, parsed);
    } catch {
      this.scheduleRenew(); // the lease runs out on its own if renewals keep failing
    }
  }

  private lapsed(): void {
    this.cache.checkLapse(); // listeners hear { all: true } once the lease is gone
    this.stopPushes?.();
    this.stopPushes = undefined;
  }

  private async stat(op: string, request: unknown): Promise<FileStat> {
    return toFileStat((await this.coordinator.session<StatReply>(op, request)).attr);
  }
}
