// Leases across coordinators on one etcd: a change committed through coordinator A at revision R
// is acknowledged only when every other coordinator B has revoked its own clients' leases on what
// R touched (B learns R from the etcd watch it already keeps), or when B's leases are provably gone.
//
// Each coordinator B keeps a stream to every peer A and reports on it how far it has invalidated:
// `through` = every watch event up to that revision has been turned into pushes that its clients
// acked or let lapse. A waits until B's `through` >= R.
//
// Bounded when B is dead, cut off or lagging (fencing, as with leases on a lock service): B grants
// a lease only while each registered peer answered one of its pings within `fenceMs`, and only
// once its `through` has reached what that peer knew when it answered. So B's grants stop within
// `fenceMs` of A's last answer to B, and lapse a TTL later. A stops answering a peer whose report
// is `overdueMs` late. A change therefore waits at most about overdueMs + fenceMs + TTL.
import * as grpc from '@grpc/grpc-js';
import type { Etcd3, Lease } from 'etcd3';
import { CHANNEL_OPTIONS, strataProto, type ChannelOptionsFor } from '../common/grpc.js';
import type { Logger } from '../common/log.js';
import { channelCredentials, type TlsContext } from '../common/tls.js';
import { invalidationOfKey } from './lease-kv.js';
import type { Invalidation, LeaseClock, LeaseTable } from './leases.js';
import type { Kv } from './meta/kv.js';
import { MEMBER_PREFIX, memberKey } from './meta/keys.js';
import { StrataError } from '../common/errors.js';

const shuttingDown = () => new StrataError('Unavailable', 'coordinator shutting down before the other coordinators confirmed the change reached their caches');

export interface LeasePeerTimings {
  pingMs: number;
  fenceMs: number;
  overdueMs: number;
  pollMs: number;
}

export const LEASE_PEER_TIMINGS: LeasePeerTimings = { pingMs: 250, fenceMs: 1500, overdueMs: 2000, pollMs: 1000 };
/** etcd lease of a coordinator's membership key: a dead one drops out of the list this fast. */
const MEMBER_TTL_S = 5;
const RECONNECT_MS = 300;
/** Longest a watch batch waits for this coordinator's own txns in flight to say their revisions. */
const OWN_TXN_WAIT_MS = 1000;
/**
 * Peers tracked from inbound links at most: each is waited for and walked on every message, so
 * links naming ever new `from` addresses would otherwise grow both without bound.
 */
const TRACKED_PEERS_MAX = 1024;
const PEER_ADDRESS = /^[^\s/]{1,250}:\d{1,5}$/;

interface PeerMessage {
  from?: string;
  through?: number;
  ping?: number;
  pong?: number;
  known?: number;
  holding?: boolean;
}

interface OutLink {
  call?: grpc.ClientDuplexStream<PeerMessage, PeerMessage>;
  pings: Map<number, number>;
  nextPing: number;
  /** Send time of the newest ping the peer answered; the peer's revision then. */
  answeredSentAtMs: number;
  answeredKnown: number;
  /** Whether that ping announced that we may grant leases (so the peer knows to wait for us). */
  answeredHolding: boolean;
  answeredPing: number;
  /** The newest ping that said we do not grant: no grant until a later one is answered. */
  lastNotHoldingPing: number;
  timer?: NodeJS.Timeout;
}

interface Wait {
  revision: number;
  startedAtMs: number;
  resolve(): void;
  reject(err: Error): void;
}

export interface LeasePeersDeps {
  self: string;
  table: LeaseTable;
  kv: Kv;
  etcd: Etcd3;
  log: Logger;
  clock: LeaseClock;
  timings?: Partial<LeasePeerTimings>;
  /** TLS to the other coordinators (common/tls.ts); absent = plain text. */
  tls?: TlsContext;
  /** Channel options of the links to peers: with a node secret, they carry its credential; absent = CHANNEL_OPTIONS. */
  channelOptions?: ChannelOptionsFor;
}

export class LeasePeers {
  private readonly t: LeasePeerTimings;
  private members = new Set<string>();
  private readonly out = new Map<string, OutLink>();
  /** What each peer reported to us, and when we last answered it (kept after its stream ends). */
  private readonly reported = new Map<string, number>();
  private readonly answeredAtMs = new Map<string, number>();
  /** Whether the newest ping we answered from each peer said it grants (false: nothing to wait for). */
  private readonly answeredHolding = new Map<string, boolean>();
  private readonly waits = new Set<Wait>();
  private through = 0;
  private known = 0;
  /** Revisions this coordinator committed (and invalidated for) itself: their watch events need no second pass. */
  private readonly own = new Set<number>();
  /** Own txns in flight, and the watch batches waiting for them (see ownTxnStarted). */
  private ownTxnSeq = 0;
  private readonly ownTxns = new Set<number>();
  private readonly held: { events: { key: string; revision: number }[]; waitFor: number[] }[] = [];
  private watchLive = true;
  private chain: Promise<void> = Promise.resolve();
  private readonly startedAtMs: number;
  private membership: Lease | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private closed = false;
  private readonly clients = new Map<string, grpc.Client>();
  private readonly inbound = new Set<grpc.ServerDuplexStream<PeerMessage, PeerMessage>>();

  constructor(private readonly deps: LeasePeersDeps) {
    this.t = { ...LEASE_PEER_TIMINGS, ...deps.timings };
    this.startedAtMs = deps.clock.now();
  }

  async start(): Promise<void> {
    await this.register();
    await this.poll();
    this.timers.push(setInterval(() => void this.poll().catch(() => undefined), this.t.pollMs));
    this.timers.push(setInterval(() => this.checkWaits(), this.t.pingMs));
  }

  // ------------------------------------------------------------ this coordinator as a grantor

  /** May this coordinator hand out leases now? (see the header: fencing) */
  mayGrant(): boolean {
    if (!this.watchLive) return false;
    const now = this.deps.clock.now();
    for (const member of this.members) {
      const link = this.out.get(member);
      if (!link || !link.answeredHolding || link.answeredPing <= link.lastNotHoldingPing) return false;
      if (link.answeredSentAtMs + this.t.fenceMs <= now || this.through < link.answeredKnown) return false;
    }
    return true;
  }

  /** A batch of the etcd watch, after the read cache learned it. */
  /**
   * Before a txn of this coordinator's own: its watch event may arrive before the txn's reply
   * says its revision (so before `waitThrough` marks it ours), and would then be invalidated as
   * another coordinator's change, revoking what the writer keeps (correct, but its next read
   * costs a request). So watch batches that arrive while own txns are in flight wait for those
   * txns to settle (at most OWN_TXN_WAIT_MS); `through` advances only after them anyway.
   */
  ownTxnStarted(): number {
    const id = ++this.ownTxnSeq;
    this.ownTxns.add(id);
    return id;
  }

  /** After the txn settled and, if it committed, `waitThrough` was called with its revision. */
  ownTxnSettled(id: number): void {
    this.ownTxns.delete(id);
    this.releaseHeld(false);
  }

  watchEvents(events: { key: string; revision: number }[]): void {
    if (this.ownTxns.size === 0 && this.held.length === 0) return this.applyWatchEvents(events);
    this.held.push({ events, waitFor: [...this.ownTxns] });
    const timer = setTimeout(() => this.releaseHeld(true), OWN_TXN_WAIT_MS);
    timer.unref();
    this.releaseHeld(false);
  }

  private releaseHeld(force: boolean): void {
    while (this.held.length > 0 && (force || !this.held[0]!.waitFor.some((id) => this.ownTxns.has(id)))) {
      this.applyWatchEvents(this.held.shift()!.events);
    }
  }

  private applyWatchEvents(events: { key: string; revision: number }[]): void {
    const invalidations: Invalidation[] = [];
    let revision = 0;
    for (const { key, revision: r } of events) {
      revision = Math.max(revision, r);
      if (this.own.has(r)) continue;
      const event = invalidationOfKey(key);
      if (event) invalidations.push(event);
    }
    for (const r of this.own) if (r <= revision) this.own.delete(r);
    this.known = Math.max(this.known, revision);
    // Revoked now (synchronously, so no grant slips between the cache learning and this), and
    // reported once it and everything before it settled.
    const settled = this.deps.table.invalidate(invalidations);
    this.chain = Promise.all([this.chain, settled]).then(() => this.advance(revision));
  }

  /** The watch may have missed events: revoke everything, grant nothing until it is back. */
  watchReset(): void {
    this.releaseHeld(true);
    this.watchLive = false;
    const settled = this.deps.table.invalidateAll();
    this.chain = Promise.all([this.chain, settled]).then(() => undefined);
  }

  watchReady(): void {
    this.watchLive = true;
  }

  // ------------------------------------------------------------ this coordinator as a writer

  /** Resolves once every peer invalidated through `revision`, or its leases are provably gone. */
  waitThrough(revision: number): Promise<void> {
    this.known = Math.max(this.known, revision);
    if (revision > this.through && this.own.size < 100_000) this.own.add(revision);
    if (this.pendingPeers(revision, this.deps.clock.now()).length === 0) return Promise.resolve();
    if (this.closed) return Promise.reject(shuttingDown());
    return new Promise((resolve, reject) => this.waits.add({ revision, startedAtMs: this.deps.clock.now(), resolve, reject }));
  }

  /** The server side of a peer's stream (service LeasePeers.Link). */
  acceptLink(call: grpc.ServerDuplexStream<PeerMessage, PeerMessage>): void {
    if (this.closed) return void call.end();
    this.inbound.add(call);
    call.on('close', () => this.inbound.delete(call));
    let peer: string | undefined;
    call.on('data', (message: PeerMessage) => {
      const from = typeof message.from === 'string' ? message.from : '';
      // A link speaks for one peer, named by a host:port; new peers are bounded in number.
      if (from && from !== peer) {
        if (peer !== undefined || !PEER_ADDRESS.test(from)) return void call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'lease peers: a link names one peer, by host:port' });
        if (!this.reported.has(from) && !this.members.has(from) && this.reported.size >= TRACKED_PEERS_MAX) {
          return void call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: `lease peers: more than ${TRACKED_PEERS_MAX} peers` });
        }
        peer = from;
      }
      if (!peer) return;
      const through = Number(message.through) || 0;
      this.reported.set(peer, Math.max(this.reported.get(peer) ?? 0, through));
      if (message.ping && !this.isOverdue(peer)) {
        if (message.holding) this.answeredAtMs.set(peer, this.deps.clock.now());
        else if (!this.answeredAtMs.has(peer)) this.answeredAtMs.set(peer, -Infinity);
        this.answeredHolding.set(peer, !!message.holding);
        call.write({ pong: message.ping, known: this.known });
      }
      this.checkWaits();
    });
    call.on('error', () => undefined);
    call.on('end', () => call.end());
  }

  stats(): { through: number; known: number; peers: string[]; mayGrant: boolean } {
    return { through: this.through, known: this.known, peers: [...this.members], mayGrant: this.mayGrant() };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    for (const link of this.out.values()) {
      clearInterval(link.timer);
      link.call?.end();
    }
    for (const call of this.inbound) call.end();
    for (const client of this.clients.values()) client.close();
    // Not confirmed by the peers: the change is not acknowledged (the writer sees Unavailable and
    // retries elsewhere, under the ambiguous-retry rules).
    for (const wait of this.waits) wait.reject(shuttingDown());
    this.waits.clear();
    await this.membership?.revoke().catch(() => undefined);
  }

  // ------------------------------------------------------------ internals

  private advance(revision: number): void {
    if (revision <= this.through) return;
    this.through = revision;
    for (const link of this.out.values()) link.call?.write({ from: this.deps.self, through: this.through });
  }

  /** Peers that have neither reported `revision` nor can still hold leases. */
  private pendingPeers(revision: number, now: number): string[] {
    const peers = new Set([...this.members, ...this.reported.keys()]);
    peers.delete(this.deps.self);
    const pending: string[] = [];
    for (const peer of peers) {
      if ((this.reported.get(peer) ?? 0) >= revision) continue;
      // A peer grants only while we answer its pings that say it may (fencing). One we never
      // answered may have granted until it saw us in the member list.
      // Its newest answered ping said it holds no lease and grants none until we answer a later
      // one (which would carry our revision, >= this one): nothing of it to wait for.
      if (this.answeredHolding.get(peer) === false) continue;
      const lastAnswered = this.answeredAtMs.get(peer) ?? this.startedAtMs + this.t.pollMs;
      if (now >= lastAnswered + this.t.fenceMs + this.deps.table.ttlMs) continue;
      pending.push(peer);
    }
    return pending;
  }

  private isOverdue(peer: string): boolean {
    const now = this.deps.clock.now();
    const reported = this.reported.get(peer) ?? 0;
    for (const wait of this.waits) if (wait.revision > reported && now - wait.startedAtMs > this.t.overdueMs) return true;
    return false;
  }

  private checkWaits(): void {
    const now = this.deps.clock.now();
    for (const wait of this.waits) {
      if (this.pendingPeers(wait.revision, now).length > 0) continue;
      this.waits.delete(wait);
      wait.resolve();
    }
  }

  private async register(): Promise<void> {
    const lease = this.deps.etcd.lease(MEMBER_TTL_S, { autoKeepAlive: true });
    this.membership = lease;
    lease.on('lost', () => {
      if (this.closed) return;
      this.deps.log.warn('lease peers: membership lease lost; registering again');
      void this.register().catch(() => undefined);
    });
    await lease.put(memberKey(this.deps.self)).value(this.deps.self);
  }

  private async poll(): Promise<void> {
    const rows = await this.deps.kv.range({ start: MEMBER_PREFIX, end: MEMBER_PREFIX.slice(0, -1) + '0', limit: 1000 });
    const members = new Set(rows.map((row) => row.value.toString()).filter((a) => a !== this.deps.self));
    this.members = members;
    for (const member of members) if (!this.out.has(member)) this.connect(member);
    for (const [address, link] of this.out) {
      if (members.has(address)) continue;
      clearInterval(link.timer);
      link.call?.end();
      this.out.delete(address);
    }
  }

  private connect(address: string): void {
    const link: OutLink = {
      pings: new Map(), nextPing: 1, answeredSentAtMs: -Infinity, answeredKnown: 0, answeredHolding: false, answeredPing: 0, lastNotHoldingPing: 0,
    };
    const holdingOf = new Map<number, boolean>();
    this.out.set(address, link);
    const open = () => {
      if (this.closed || this.out.get(address) !== link) return;
      let client = this.clients.get(address);
      if (!client) {
        client = new strataProto.LeasePeers(address, channelCredentials(this.deps.tls), this.deps.channelOptions?.(address) ?? CHANNEL_OPTIONS);
        this.clients.set(address, client);
      }
      const call = (client as unknown as { Link(): grpc.ClientDuplexStream<PeerMessage, PeerMessage> }).Link();
      link.call = call;
      call.on('data', (message: PeerMessage) => {
        const sentAt = link.pings.get(Number(message.pong));
        if (sentAt === undefined) return;
        for (const id of link.pings.keys()) if (id <= Number(message.pong)) link.pings.delete(id);
        if (sentAt > link.answeredSentAtMs) {
          link.answeredSentAtMs = sentAt;
          link.answeredKnown = Number(message.known) || 0;
          link.answeredHolding = holdingOf.get(Number(message.pong)) ?? false;
          link.answeredPing = Number(message.pong);
        }
        for (const id of holdingOf.keys()) if (id <= Number(message.pong)) holdingOf.delete(id);
      });
      const retry = () => {
        if (link.call !== call) return;
        link.call = undefined;
        setTimeout(open, RECONNECT_MS).unref();
      };
      call.on('error', retry);
      call.on('end', retry);
      call.write({ from: this.deps.self, through: this.through });
    };
    link.timer = setInterval(() => {
      if (!link.call) return;
      const id = link.nextPing++;
      link.pings.set(id, this.deps.clock.now());
      const holding = this.deps.table.granting;
      holdingOf.set(id, holding);
      if (!holding) link.lastNotHoldingPing = id;
      if (link.pings.size > 100) {
        const oldest = link.pings.keys().next().value!;
        link.pings.delete(oldest);
        holdingOf.delete(oldest);
      }
      link.call.write({ from: this.deps.self, through: this.through, ping: id, holding });
    }, this.t.pingMs);
    open();
  }
}
