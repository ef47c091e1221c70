// The lease table: which client sessions may cache which directories (their entries, absent
// names included) and inodes (their attributes), and the revocation of those leases when the
// namespace changes.
//
// The guarantee (CephFS capabilities, NFSv4 delegations): a change is acknowledged to its writer
// only after every other session that held a lease on what it touched has acknowledged the
// invalidation, or that session's lease has expired. We invalidate before acking rather than
// just letting leases run out: waiting out a TTL on every change would make each one take
// seconds, while a push on an open stream costs one round trip, and only when someone caches.
// Expiry is the fallback that bounds the wait when a holder is stopped or cut off.
//
// Leases are per session (one expiry, renewed by the session's renewals and grants), and per item
// only in what they cover. A session with an unacknowledged push cannot extend its expiry, so a
// holder that never acks (stopped, wedged) holds a change up for at most one TTL. An expired
// session loses everything it held and its epoch moves on; grants carry the epoch, so the client
// learns that its cache must go.
//
// Ordering rule for callers: a grant and the pushes of one session must reach the client in the
// order they were made (one ordered stream writer), and a reply with a grant must be written
// right after `LeaseRead.grant()` returned it, before control goes back to the event loop.
import type { Invalidation, LeaseGrant, LeasePush } from '../common/lease-messages.js';

export type LeaseKind = 'dir' | 'attr';

export interface LeaseItem {
  kind: LeaseKind;
  ino: number;
}

export type { Invalidation, LeasePush, LeaseGrant } from '../common/lease-messages.js';

export interface LeaseClock {
  /** Monotonic milliseconds. */
  now(): number;
  setTimer(fn: () => void, ms: number): { cancel(): void };
}

export const realClock: LeaseClock = {
  now: () => performance.now(),
  setTimer(fn, ms) {
    const timer = setTimeout(fn, Math.max(0, ms));
    timer.unref?.();
    return { cancel: () => clearTimeout(timer) };
  },
};

export const LEASE_TTL_MS_DEFAULT = 5000;
export const LEASE_ITEMS_PER_SESSION_MAX = 100_000;

export interface LeaseTableOptions {
  ttlMs?: number;
  /** Leases a session may hold at once; past it, reads are answered without a lease. */
  maxItemsPerSession?: number;
  clock?: LeaseClock;
  /** False while this coordinator may not hand out leases (lease-peers.ts: fencing). */
  mayGrant?(): boolean;
  /** Told when a session's leases lapse with pushes unacknowledged or unrenewed (for logs). */
  onExpired?(sessionId: string, leases: number): void;
}

const itemKey = (kind: LeaseKind, ino: number) => `${kind}:${ino}`;
const eventKey = (event: Invalidation) => itemKey(event.name === undefined ? 'attr' : 'dir', event.ino);

export class LeaseTable {
  readonly ttlMs: number;
  private readonly maxItems: number;
  readonly clock: LeaseClock;
  private readonly holders = new Map<string, Set<LeaseSession>>();
  private readonly sessions = new Map<string, LeaseSession>();
  private sweepTimer: { cancel(): void } | undefined;

  constructor(private readonly options: LeaseTableOptions = {}) {
    this.ttlMs = options.ttlMs ?? LEASE_TTL_MS_DEFAULT;
    if (!Number.isFinite(this.ttlMs) || this.ttlMs < 100) throw new RangeError(`lease ttlMs ${this.ttlMs} is below 100`);
    this.maxItems = options.maxItemsPerSession ?? LEASE_ITEMS_PER_SESSION_MAX;
    this.clock = options.clock ?? realClock;
    this.scheduleSweep();
  }

  /** A session that will hold leases; `push` writes an invalidation to its stream. */
  openSession(sessionId: string, push: (message: LeasePush) => void): LeaseSession {
    const session = new LeaseSession(this, sessionId, push);
    this.sessions.get(sessionId)?.close();
    this.sessions.set(sessionId, session);
    return session;
  }

  /** @internal Push ids unique across this table's sessions, and unlikely to match another coordinator's. */
  nextPushId(): number {
    return this.pushIds++;
  }
  private pushIds = Math.floor(Math.random() * 2 ** 20) * 2 ** 32 + 1;

  /**
   * Revokes every lease covering the events, pushes the invalidations, and resolves once each
   * holder acked or lapsed. `except` (the writer's own session) is pushed to but not waited for:
   * its push precedes the change's reply on its stream. With `own` (a change whose reply the
   * writer applies to its cache, OwnChange), the writer's leases are not revoked here at all:
   * `own.finish` decides what it keeps once the reply is known.
   */
  invalidate(events: Invalidation[], except?: LeaseSession, own?: OwnChange): Promise<void> {
    // A lease covers a whole directory or inode: every event on a revoked item goes to its holders.
    const byKey = new Map<string, Invalidation[]>();
    for (const event of events) {
      const key = eventKey(event);
      const list = byKey.get(key);
      if (list) list.push(event);
      else byKey.set(key, [event]);
    }
    const bySession = new Map<LeaseSession, Invalidation[]>();
    const waits: Promise<void>[] = [];
    for (const [key, keyEvents] of byKey) {
      const holding = this.holders.get(key);
      if (!holding) continue;
      this.holders.delete(key);
      for (const session of holding) {
        if (own && session === except) {
          own.committed(key, keyEvents);
          this.register(key, session); // it keeps what it holds (OwnChange.finish decides)
          continue;
        }
        if (!session.revoke(key)) {
          // Not held, but maybe still answered from (a push to its writer, unacked): wait for that.
          // Not the writer itself: that push was written before this change's reply, so it has
          // dropped the item by the time it is answered.
          const acked = session.revokingAck(key);
          if (acked) {
            if (session !== except) waits.push(acked);
            this.register(key, session);
          }
          continue;
        }
        const list = bySession.get(session);
        if (list) list.push(...keyEvents);
        else bySession.set(session, [...keyEvents]);
      }
    }
    for (const [session, list] of bySession) {
      if (session === except) session.sendPushUnwaited(list);
      else waits.push(session.sendPush({ events: list }));
    }
    return Promise.all(waits).then(() => undefined);
  }

  /** Revokes every lease of every session (the change feed may have missed events). */
  invalidateAll(): Promise<void> {
    this.holders.clear();
    const waits: Promise<void>[] = [];
    for (const session of this.sessions.values()) {
      if (session.revokeAll()) waits.push(session.sendPush({ events: [], all: true }));
    }
    return Promise.all(waits).then(() => undefined);
  }

  /** Whether some session holds leases or asked for one within a TTL (lease-peers.ts tells peers to wait for us). */
  get granting(): boolean {
    if (this.clock.now() - this.lastBeginMs < this.ttlMs) return true;
    for (const session of this.sessions.values()) if (session.leaseCount > 0) return true;
    return false;
  }
  private lastBeginMs = -Infinity;

  /** @internal */ noteBegin(): void {
    this.lastBeginMs = this.clock.now();
  }

  stats(): { sessions: number; leases: number; holders: number } {
    let leases = 0;
    for (const session of this.sessions.values()) leases += session.leaseCount;
    return { sessions: this.sessions.size, leases, holders: [...this.sessions.values()].filter((s) => s.leaseCount > 0).length };
  }

  close(): void {
    this.sweepTimer?.cancel();
    for (const session of [...this.sessions.values()]) session.close();
  }

  // ---- for LeaseSession

  /** @internal */ register(key: string, session: LeaseSession): void {
    let holding = this.holders.get(key);
    if (!holding) this.holders.set(key, (holding = new Set()));
    holding.add(session);
  }

  /** @internal */ unregister(key: string, session: LeaseSession): void {
    const holding = this.holders.get(key);
    if (!holding) return;
    holding.delete(session);
    if (holding.size === 0) this.holders.delete(key);
  }

  /** @internal */ forget(session: LeaseSession): void {
    if (this.sessions.get(session.sessionId) === session) this.sessions.delete(session.sessionId);
  }

  /** @internal */ get itemsMax(): number {
    return this.maxItems;
  }

  /** @internal */ mayGrant(): boolean {
    return this.options.mayGrant?.() ?? true;
  }

  /** @internal */ expired(session: LeaseSession, leases: number): void {
    this.options.onExpired?.(session.sessionId, leases);
  }

  private scheduleSweep(): void {
    // Sessions that stopped renewing without closing (a paused or partitioned client): forget
    // their leases so the table does not grow with the dead.
    this.sweepTimer = this.clock.setTimer(() => {
      for (const session of this.sessions.values()) session.expireIfDue();
      this.scheduleSweep();
    }, this.ttlMs);
  }
}

/** A read in progress whose answer may be cached if no change touched it meanwhile. */
export class LeaseRead {
  revoked = false;
  private done = false;

  constructor(
    private readonly session: LeaseSession,
    readonly keys: string[],
    readonly epoch: number,
  ) {}

  /** The lease to send with the reply, or undefined (answer it uncached). Call once. */
  grant(): LeaseGrant | undefined {
    if (this.done) return undefined;
    this.done = true;
    return this.session.settle(this, true);
  }

  /** The read failed: nothing to cache. */
  abandon(): void {
    if (this.done) return;
    this.done = true;
    this.session.settle(this, false);
  }
}

/**
 * One lease for an answer built from several reads (a lookup reads the entry, then leases and
 * reads the child's attributes): granted only if none of them was revoked.
 */
export function grantAll(reads: LeaseRead[]): LeaseGrant | undefined {
  if (reads.some((read) => read.revoked)) {
    for (const read of reads) read.abandon();
    return undefined;
  }
  const grants = reads.map((read) => read.grant());
  return grants.every((grant) => grant !== undefined) ? grants[grants.length - 1] : undefined;
}

interface Waiter {
  resolve(): void;
}

/**
 * A change by a session that applies the change's reply to its own cache (client/inodes.ts),
 * so its leases on what the change touched need not go: the writer keeps them, and reads the
 * answer from its reply instead of asking again. Why this never leaves the writer stale:
 * - Before each txn (`beforeCommit`) the writer registers a read on every item the txn touches,
 *   so any other change of them from then on revokes that read (or pushes, once granted).
 * - At commit the writer's own leases stay (`committed`), but its other reads of those items in
 *   flight are revoked: they may have read the state before.
 * - Once the reply is known (`finish`), each item the writer will update from it (`expected`,
 *   common/lease-messages.ts ownChangeEvents, the same function on both sides) is granted if no
 *   other change touched it meanwhile; every other item (or every one, on failure) is revoked.
 *   What the writer may have cached and does not keep is pushed to it, before the reply on the
 *   same stream: the client takes nothing from a reply after a push covering the item.
 * - A mkdir (`makesDir`) may also lease the writer the new directory's whole listing, empty, so
 *   its client answers every name in it absent with no request (newDirs below).
 */
export class OwnChange {
  private readonly reads: LeaseRead[] = [];
  /** Items the change's txns touched, with their events. */
  private readonly touched = new Map<string, Invalidation[]>();
  /**
   * mkdir: a read of the listing of each directory one of its txns may make, begun before that
   * txn. The directory exists only from the commit on, so every change in it comes after this
   * read began and revokes it (here, or through lease-peers.ts for another coordinator's): no
   * change can slip in between the commit and the lease.
   */
  private readonly newDirs = new Map<number, LeaseRead>();
  private finished = false;

  constructor(
    readonly session: LeaseSession,
    private readonly makesDir = false,
  ) {}

  /** Before a txn with these events: registers the writer on what it touches. */
  beforeCommit(events: Invalidation[]): void {
    if (this.finished) return;
    const items = new Map<string, LeaseItem>();
    for (const event of events) {
      const kind: LeaseKind = event.name === undefined ? 'attr' : 'dir';
      const key = itemKey(kind, event.ino);
      items.set(key, { kind, ino: event.ino });
      const list = this.touched.get(key);
      if (list) list.push(event);
      else this.touched.set(key, [event]);
    }
    this.reads.push(this.session.begin([...items.values()]));
    if (this.makesDir) this.beginNewDirs(events);
  }

  /**
   * The directory a mkdir's txn makes is the inode whose attributes it writes (i/, t/) that holds
   * none of the entries it writes (the parent does). A wrong guess only costs the lease: it is
   * granted (finish) only on the reply's inode, and only if its read began here, before the commit.
   */
  private beginNewDirs(events: Invalidation[]): void {
    const parents = new Set(events.filter((e) => e.name !== undefined).map((e) => e.ino));
    for (const event of events) {
      if (event.name !== undefined || parents.has(event.ino) || this.newDirs.has(event.ino)) continue;
      this.newDirs.set(event.ino, this.session.begin([{ kind: 'dir', ino: event.ino }]));
    }
  }

  /** @internal The txn committed (or may have) and touched `key`, which the writer holds or reads. */
  committed(key: string, _events: Invalidation[]): void {
    // Its other reads of the item in flight may have read the state before the change.
    this.session.revokeReadsExcept(key, this.reads);
  }

  /**
   * The change is done: `expected` = what the writer updates from the reply (undefined = it
   * failed: nothing kept); `dropped` = attributes it drops on the reply, of inodes the change
   * removed for good (common/lease-messages.ts ownChangeDrops): released without a push.
   * Pushes (not waited for) what the writer does not keep; call before the reply is written.
   * `newDir`: the directory a mkdir made (common/lease-messages.ts ownChangeListing); true when
   * its whole, empty listing is now leased to the writer (the reply says so: listing_leased).
   */
  finish(expected: Invalidation[] | undefined, dropped: Invalidation[] = [], newDir?: number): boolean {
    if (this.finished) return false;
    this.finished = true;
    // Its read is its own (no revocation below touches it); nothing is pushed when it is not
    // granted: the client installs the listing only on the reply's word.
    const newDirRead = expected && newDir !== undefined ? this.newDirs.get(newDir) : undefined;
    const listed = newDirRead !== undefined && this.session.grantOwn(itemKey('dir', newDir!), [newDirRead]);
    const gone = new Set(expected ? dropped.filter((e) => e.name === undefined).map(eventKey) : []);
    const keep = new Map<string, Invalidation[]>();
    for (const event of expected ?? []) {
      const key = eventKey(event);
      const list = keep.get(key);
      if (list) list.push(event);
      else keep.set(key, [event]);
    }
    // Every grant is decided before any revocation: the change's reads cover all its items at
    // once, and revoking one item (revokeOwn) marks those reads revoked for the others too.
    const notKept = [...new Set([...this.touched.keys(), ...keep.keys()])].filter((key) => {
      if (gone.has(key)) return false;
      // Kept only if the writer's update from the reply covers each change the txns made to it.
      const covered = keep.has(key) && (this.touched.get(key) ?? []).every((t) => keep.get(key)!.some((e) => e.name === t.name));
      return !(covered && this.session.grantOwn(key, this.reads));
    });
    for (const key of gone) this.session.revokeOwn(key);
    const push: Invalidation[] = [];
    for (const key of notKept) {
      // Pushed if the writer may have it cached (held), or would take it from the reply.
      if (this.session.revokeOwn(key) || keep.has(key)) push.push(...(this.touched.get(key) ?? keep.get(key)!));
    }
    for (const read of this.reads) read.abandon();
    for (const read of this.newDirs.values()) read.abandon();
    if (push.length > 0) this.session.sendPushUnwaited(push);
    return listed;
  }
}

export class LeaseSession {
  /**
   * Which incarnation of this session's leases a grant belongs to: random at open, so a client
   * that reconnects (or fails over) sees a new one and drops what the old session covered; one
   * more each time the leases lapse.
   */
  epoch = Math.floor(Math.random() * 2 ** 40) + 1;
  private expiresAtMs: number;
  private readonly granted = new Set<string>();
  /** Reads in progress per item: they hold the item registered until they settle. */
  private readonly pending = new Map<string, Set<LeaseRead>>();
  private readonly reads = new Set<LeaseRead>();
  private readonly unacked = new Map<number, Waiter[]>();
  /**
   * Items revoked by a push nobody waits for (to the writer of the change): until it is acked
   * the client may still answer from them, so a later change of them waits for that ack.
   */
  private readonly revoking = new Map<string, { pushId: number; acked: Promise<void> }>();
  private expiryTimer: { cancel(): void } | undefined;
  private closed = false;
  /** Its client took a lease in this epoch (so it listens for pushes until it lapses). */
  private leasing = false;

  constructor(
    private readonly table: LeaseTable,
    readonly sessionId: string,
    private readonly push: (message: LeasePush) => void,
  ) {
    this.expiresAtMs = table.clock.now() + table.ttlMs;
  }

  get leaseCount(): number {
    return this.granted.size;
  }

  /** Starts a read whose answer would be cached under leases on `items`. Call before reading. */
  begin(items: LeaseItem[]): LeaseRead {
    this.expireIfDue();
    this.table.noteBegin();
    const refused = this.closed || this.granted.size + items.length > this.table.itemsMax;
    const keys = refused ? [] : items.map((i) => itemKey(i.kind, i.ino));
    const read = new LeaseRead(this, keys, this.epoch);
    if (refused) read.revoked = true;
    for (const key of keys) {
      let reads = this.pending.get(key);
      if (!reads) this.pending.set(key, (reads = new Set()));
      reads.add(read);
      this.table.register(key, this);
    }
    this.reads.add(read);
    return read;
  }

  /** Extends the session's leases (unless a push is unacknowledged); says how long they last. */
  renew(): LeaseGrant {
    this.expireIfDue();
    this.leasing = true;
    this.extend();
    return { epoch: this.epoch, validForMs: Math.max(0, this.expiresAtMs - this.table.clock.now()) };
  }

  ack(pushId: number): void {
    const waiters = this.unacked.get(pushId);
    if (!waiters) return;
    this.unacked.delete(pushId);
    for (const [key, revoking] of this.revoking) {
      if (revoking.pushId !== pushId) continue;
      this.revoking.delete(key);
      this.unregisterIfIdle(key);
    }
    for (const waiter of waiters) waiter.resolve();
    if (this.unacked.size === 0) {
      this.expiryTimer?.cancel();
      this.expiryTimer = undefined;
    }
  }

  /** The client dropped these from its cache: no push needed for them any more. */
  release(items: LeaseItem[]): void {
    for (const item of items) {
      const key = itemKey(item.kind, item.ino);
      if (this.granted.delete(key)) this.unregisterIfIdle(key);
    }
  }

  /**
   * The stream ended. Its client may not know yet (a half-open connection) and may answer from
   * its cache until its lease lapses on its own clock: so what it held stays held, and changes
   * to it wait, until the lease expires here. Then the session is forgotten.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const read of this.reads) read.revoked = true;
    if (this.granted.size === 0 && this.unacked.size === 0) return this.forgetNow();
    this.armExpiry(true);
  }

  /** The client says it dropped its whole cache (it is closing): nothing to wait for. */
  releaseAll(): void {
    this.dropAll();
    if (this.closed) this.forgetNow();
  }

  /** A change whose reply this session's client applies to its cache (see OwnChange); `makesDir` for a mkdir. */
  ownChange(makesDir = false): OwnChange {
    return new OwnChange(this, makesDir);
  }

  // ---- for LeaseTable, LeaseRead and OwnChange

  /** @internal Revokes this session's reads of `key` in flight, but `except`. */
  revokeReadsExcept(key: string, except: LeaseRead[]): void {
    for (const read of this.pending.get(key) ?? []) if (!except.includes(read)) read.revoked = true;
  }

  /**
   * @internal Grants `key` after the session's own change, if no other change touched it since
   * its reads began (or, untouched by the change, if it was held all along). Extends the lease
   * as a grant does: the client counts on it for as long as its earlier grants said.
   */
  grantOwn(key: string, reads: LeaseRead[]): boolean {
    this.expireIfDue();
    const covering = reads.filter((read) => read.keys.includes(key));
    const untouched = covering.length > 0 ? covering.every((read) => !read.revoked && read.epoch === this.epoch) : this.granted.has(key);
    // Only to a client that listens for pushes: one that took a lease (a grant or a renewal) in this epoch.
    // A push still unacknowledged does not stop it: the lease is then not extended (extend), so
    // what is granted here lapses with the rest if that ack never comes. (Refusing made each own
    // change that followed another's push, unacked yet, drop the writer's whole directory.)
    if (!untouched || !this.leasing || this.closed || !this.table.mayGrant()) return false;
    if (this.table.clock.now() >= this.expiresAtMs) return false;
    this.granted.add(key);
    this.table.register(key, this);
    this.extend();
    return true;
  }

  /** @internal Drops `key` after the session's own change; true if it was held. */
  revokeOwn(key: string): boolean {
    for (const read of this.pending.get(key) ?? []) read.revoked = true;
    const held = this.granted.delete(key);
    // Still registered while reads of it are pending (they settle, then unregister).
    if (held) this.unregisterIfIdle(key);
    return held;
  }

  /** @internal */ settle(read: LeaseRead, grant: boolean): LeaseGrant | undefined {
    this.reads.delete(read);
    const ok =
      grant && !read.revoked && !this.closed && read.epoch === this.epoch && this.table.clock.now() < this.expiresAtMs && this.table.mayGrant();
    for (const key of read.keys) {
      const reads = this.pending.get(key);
      if (reads?.delete(read) && reads.size === 0) this.pending.delete(key);
      if (ok) this.granted.add(key);
      else this.unregisterIfIdle(key);
    }
    if (!ok) return undefined;
    return this.renew();
  }

  /** @internal Revokes `key` (the table already dropped its holder set); true if a push is due. */
  revoke(key: string): boolean {
    for (const read of this.pending.get(key) ?? []) read.revoked = true;
    this.pending.delete(key);
    return this.granted.delete(key);
  }

  /** @internal */ revokeAll(): boolean {
    const had = this.granted.size > 0;
    for (const read of this.reads) read.revoked = true;
    this.granted.clear();
    this.pending.clear();
    return had;
  }

  /**
   * @internal A push to the writer of the change (nobody waits for it): what it revokes stays
   * registered, so a later change of it waits for this ack (or the lapse).
   */
  sendPushUnwaited(events: Invalidation[]): void {
    const { pushId, acked } = this.pushWithId({ events });
    for (const event of events) {
      const key = eventKey(event);
      if (this.granted.has(key)) continue;
      this.revoking.set(key, { pushId, acked });
      this.table.register(key, this);
    }
  }

  /** @internal Waits for the push that revoked `key` without anyone waiting, if still unacked. */
  revokingAck(key: string): Promise<void> | undefined {
    return this.revoking.get(key)?.acked;
  }

  /** @internal Pushes; resolves on ack or lapse. A closed stream cannot take it: only the lapse. */
  sendPush(message: Omit<LeasePush, 'pushId'>): Promise<void> {
    return this.pushWithId(message).acked;
  }

  private pushWithId(message: Omit<LeasePush, 'pushId'>): { pushId: number; acked: Promise<void> } {
    const pushId = this.table.nextPushId();
    const acked = new Promise<void>((resolve) => this.unacked.set(pushId, [{ resolve }]));
    if (!this.closed) {
      try {
        this.push({ pushId, ...message });
      } catch {
        this.close(); // the stream is gone; its client's cache lapses on its own
      }
    }
    this.armExpiry();
    return { pushId, acked };
  }

  private unregisterIfIdle(key: string): void {
    if (!this.pending.has(key) && !this.granted.has(key) && !this.revoking.has(key)) this.table.unregister(key, this);
  }

  /** @internal */ expireIfDue(): void {
    if (this.table.clock.now() < this.expiresAtMs) return;
    if (this.closed) {
      if (this.granted.size > 0 || this.unacked.size > 0) this.table.expired(this, this.granted.size);
      return this.forgetNow();
    }
    if (this.granted.size > 0 || this.unacked.size > 0 || this.reads.size > 0) {
      this.table.expired(this, this.granted.size);
      this.dropAll();
      this.epoch++;
    }
    // It holds nothing now: it starts over. Without this, an idle session's expiry stays in the
    // past and no read is ever granted again (and its client, getting no grant, never renews).
    this.expiresAtMs = this.table.clock.now() + this.table.ttlMs;
    this.leasing = false; // until its client takes a lease again (so listens for pushes)
  }

  private extend(): void {
    if (this.closed || this.unacked.size > 0) return;
    this.expiresAtMs = Math.max(this.expiresAtMs, this.table.clock.now() + this.table.ttlMs);
  }

  private armExpiry(evenIfIdle = false): void {
    if (this.expiryTimer || (this.unacked.size === 0 && !evenIfIdle)) return;
    const fire = () => {
      this.expiryTimer = undefined;
      if (this.unacked.size === 0 && !this.closed) return;
      if (this.table.clock.now() >= this.expiresAtMs) this.expireIfDue();
      else this.expiryTimer = this.table.clock.setTimer(fire, this.expiresAtMs - this.table.clock.now());
    };
    this.expiryTimer = this.table.clock.setTimer(fire, this.expiresAtMs - this.table.clock.now());
  }

  private forgetNow(): void {
    this.dropAll();
    this.table.forget(this);
  }

  private dropAll(): void {
    for (const key of this.granted) this.table.unregister(key, this);
    for (const key of this.pending.keys()) this.table.unregister(key, this);
    for (const key of this.revoking.keys()) this.table.unregister(key, this);
    this.revoking.clear();
    this.granted.clear();
    this.pending.clear();
    for (const read of this.reads) read.revoked = true;
    this.expiryTimer?.cancel();
    this.expiryTimer = undefined;
    const waiters = [...this.unacked.values()].flat();
    this.unacked.clear();
    for (const waiter of waiters) waiter.resolve();
  }
}
