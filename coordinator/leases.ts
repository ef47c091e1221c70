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
   * its push precedes the change's reply on its stream.
   */
  invalidate(events: Invalidation[], except?: LeaseSession): Promise<void> {
    // A lease covers a whole directory or inode: every event on a revoked item goes to its holders.
    const byKey = new Map<string, Invalidation[]>();
    for (const event of events) {
      const key = eventKey(event);
      const list = byKey.get(key);
      if (list) list.push(event);
      else byKey.set(key, [event]);
    }
    const bySession = new Map<LeaseSession, Invalidation[]>();
    for (const [key, keyEvents] of byKey) {
      const holding = this.holders.get(key);
      if (!holding) continue;
      this.holders.delete(key);
      for (const session of holding) {
        if (!session.revoke(key)) continue;
        const list = bySession.get(session);
        if (list) list.push(...keyEvents);
        else bySession.set(session, [...keyEvents]);
      }
    }
    const waits: Promise<void>[] = [];
    for (const [session, list] of bySession) {
      const acked = session.sendPush({ events: list });
      if (session !== except) waits.push(acked);
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
  private expiryTimer: { cancel(): void } | undefined;
  private closed = false;

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
    this.extend();
    return { epoch: this.epoch, validForMs: Math.max(0, this.expiresAtMs - this.table.clock.now()) };
  }

  ack(pushId: number): void {
    const waiters = this.unacked.get(pushId);
    if (!waiters) return;
    this.unacked.delete(pushId);
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
      if (this.granted.delete(key) && !this.pending.has(key)) this.table.unregister(key, this);
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

  // ---- for LeaseTable and LeaseRead

  /** @internal */ settle(read: LeaseRead, grant: boolean): LeaseGrant | undefined {
    this.reads.delete(read);
    const ok =
      grant && !read.revoked && !this.closed && read.epoch === this.epoch && this.table.clock.now() < this.expiresAtMs && this.table.mayGrant();
    for (const key of read.keys) {
      const reads = this.pending.get(key);
      if (reads?.delete(read) && reads.size === 0) this.pending.delete(key);
      if (ok) this.granted.add(key);
      else if (!this.pending.has(key) && !this.granted.has(key)) this.table.unregister(key, this);
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

  /** @internal Pushes; resolves on ack or lapse. A closed stream cannot take it: only the lapse. */
  sendPush(message: Omit<LeasePush, 'pushId'>): Promise<void> {
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
    return acked;
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
