// Data node registry and chunk placement. Every data node heartbeats every coordinator, so
// each coordinator knows liveness first-hand; records are also persisted in the KV (at most
// every persistIntervalMs per node) so `strata nodes` lists nodes this coordinator has not
// heard from since it started, and shows them dead. Corrupt-chunk reports and scrub status
// ride on heartbeats and stay in memory (every coordinator hears them within an interval).
// Admin states (draining, drained, removed) live under their own keys, which heartbeats never
// overwrite; refreshAdmin() re-reads them so placement on every coordinator honours a drain.
// Fast death: each data node also holds a NodeLink stream open to every coordinator. When the
// last one drops without a goodbye, the coordinator probes the node's ports at once; if every one
// refuses connections the process is gone and the node is dead now, not after the grace. Nothing
// else shortens the grace: a frozen or partitioned node still accepts (or times out) connections,
// and a node that said it is stopping (a restart) keeps the whole grace to come back in.
import { EventEmitter } from 'node:events';
import { StrataError, invalid } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { ScrubStatus } from '../common/node-info.js';
import { newChunkId } from './healing/chunk-id.js';
import { probePorts, type PortState } from './healing/probe.js';
import type { Kv, KvCompare, KvOp } from './meta/kv.js';
import * as k from './meta/keys.js';
import type { AdminState, NodeAdmin, NodeRecord } from './meta/types.js';

export type AckPolicy = 'one' | 'quorum' | 'all';

export type { ScrubStatus };

export type NodeState = 'live' | 'dead' | 'draining' | 'drained';

/** A heartbeat: the node's NodeInfo plus what its scrubber found. */
export type NodeReport = Omit<NodeRecord, 'lastHeartbeatMs'> & { corruptChunks?: string[]; scrub?: ScrubStatus };

export interface NodeView extends NodeRecord {
  live: boolean;
  state: NodeState;
  admin?: AdminState;
  corruptChunks: string[];
  scrub?: ScrubStatus;
}

export interface Placement {
  chunkId: string;
  pipeline: NodeRecord[];
  requiredAcks: number;
}

const MAX_NODES_LISTED = 10_000;
/** Probes of a node whose link dropped, at most, before leaving it to the heartbeat grace. */
const LINK_PROBES = 5;
const LINK_PROBE_RETRY_MS = 500;
/** Corrupt chunk ids kept per node: a heartbeat is bounded, and so is what we hold. */
const MAX_CORRUPT_REPORTED = 10_000;

export class NodeRegistry {
  private readonly seen = new Map<string, NodeRecord>();
  private readonly persistedMs = new Map<string, number>();
  private readonly warnedShortfall = new Set<number>();
  private readonly corrupt = new Map<string, string[]>();
  private readonly scrub = new Map<string, ScrubStatus>();
  private admin = new Map<string, NodeAdmin>();
  /** Nodes found gone (connections refused) since their last heartbeat: that heartbeat's time, and why. */
  private readonly goneSince = new Map<string, { heartbeatMs: number; why: string }>();
  /**
   * Each node's newest NodeLink (a token per stream) and the byte-path address it named. Only the
   * newest counts: a node opens a link only after its previous one ended on its side, so an older
   * stream still open here is a leftover whose end says nothing (and must not shield a death).
   */
  private readonly links = new Map<string, { token: number; open: boolean; dataAddress: string }>();
  private nextLinkToken = 1;
  /** Nodes whose last link ended with a goodbye: no early death for them until they are heard again. */
  private readonly stopping = new Set<string>();
  /** Ends every open NodeLink call (this coordinator is stopping: its server then drains at once). */
  private readonly linkEnders = new Set<() => void>();
  private closingLinks = false;
  private readonly events = new EventEmitter();

  constructor(
    private readonly kv: Kv,
    private readonly options: {
      deadAfterMs: number;
      persistIntervalMs: number;
      log: Logger;
      now?: () => number;
      /** Whether these addresses refuse connections (all), accept (any) or neither (default: a TCP connect to each). */
      probePorts?: (addresses: string[]) => Promise<PortState>;
      /** Pause between probes that proved nothing (a timeout, a heartbeat meanwhile). */
      probeRetryMs?: number;
    },
  ) {}

  /** Called (synchronously, no arguments) when a node is found dead early, or heard from again. */
  onLivenessChange(listener: () => void): () => void {
    this.events.on('change', listener);
    return () => this.events.off('change', listener);
  }

  /** Seeds liveness from stored records, so a restarted coordinator can place and locate at once. */
  async load(): Promise<void> {
    await this.refreshAdmin();
    for (const view of await this.list()) {
      if (this.seen.has(view.nodeId)) continue;
      const { live: _l, state: _s, admin: _a, corruptChunks: _c, scrub: _sc, ...record } = view;
      this.seen.set(view.nodeId, record);
    }
  }

  /** Re-reads admin states (another coordinator may have drained or removed a node). */
  async refreshAdmin(): Promise<void> {
    const rows = await this.kv.range({ ...k.rangeOf(k.ADMIN_PREFIX), limit: MAX_NODES_LISTED });
    this.admin = new Map(rows.map((row) => [row.key.slice(k.ADMIN_PREFIX.length), k.decodeAdmin(row.value)]));
    for (const [nodeId, admin] of this.admin) {
      const record = this.seen.get(nodeId);
      if (admin.state === 'removed' && record && record.lastHeartbeatMs <= admin.sinceMs) this.seen.delete(nodeId);
    }
  }

  adminState(nodeId: string): AdminState | undefined {
    const admin = this.admin.get(nodeId);
    if (admin?.state !== 'removed') return admin?.state;
    // A removed node that heartbeats again is back.
    const record = this.seen.get(nodeId);
    return record && record.lastHeartbeatMs > admin.sinceMs ? undefined : 'removed';
  }

  /**
   * Records an admin state; `compares` guard it (the leader passes its fence and the key's
   * revision when it marks a drain done). False when a compare failed.
   */
  async setAdminState(nodeId: string, state: AdminState, compares: KvCompare[] = []): Promise<boolean> {
    const admin: NodeAdmin = { state, sinceMs: this.now() };
    const ops: KvOp[] = [{ type: 'put', key: k.adminKey(nodeId), value: k.encodeAdmin(admin) }];
    if (state === 'removed') ops.push({ type: 'delete', key: k.nodeKey(nodeId) });
    const ok = await this.kv.txn({ compares, ops });
    if (ok) {
      this.admin.set(nodeId, admin);
      if (state === 'removed') {
        this.seen.delete(nodeId);
        this.corrupt.delete(nodeId);
        this.scrub.delete(nodeId);
      }
    }
    return ok;
  }

  /** Corrupt chunk ids each live node reports (quarantined there, awaiting a good copy). */
  corruptReports(): Map<string, Set<string>> {
    const reports = new Map<string, Set<string>>();
    for (const [nodeId, chunkIds] of this.corrupt) if (this.isLive(nodeId) && chunkIds.length > 0) reports.set(nodeId, new Set(chunkIds));
    return reports;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  async heartbeat(report: NodeReport): Promise<void> {
    const { corruptChunks = [], scrub, ...node } = report;
    if (!node.nodeId || !/^[A-Za-z0-9_.-]{1,64}$/.test(node.nodeId)) throw invalid(`invalid node id '${node.nodeId}'`);
    if (!/^[^\s/]+:\d{1,5}$/.test(node.address)) throw invalid(`invalid node address '${node.address}'`);
    const now = this.now();
    const record: NodeRecord = { ...node, lastHeartbeatMs: now };
    const isNew = !this.seen.has(node.nodeId);
    const wasGone = this.goneSince.delete(node.nodeId);
    this.seen.set(node.nodeId, record);
    this.stopping.delete(node.nodeId);
    this.corrupt.set(node.nodeId, corruptChunks.slice(0, MAX_CORRUPT_REPORTED));
    if (scrub) this.scrub.set(node.nodeId, scrub);
    if (isNew) this.options.log.info({ nodeId: node.nodeId, address: node.address }, 'data node joined');
    if (wasGone) {
      this.options.log.info({ nodeId: node.nodeId }, 'data node found dead is heartbeating again: live');
      this.events.emit('change');
    }
    if (now - (this.persistedMs.get(node.nodeId) ?? 0) >= this.options.persistIntervalMs) {
      this.persistedMs.set(node.nodeId, now);
      await this.kv.txn({ compares: [], ops: [{ type: 'put', key: k.nodeKey(node.nodeId), value: k.encodeNode(record) }] });
    }
  }

  /** Every known node, live first-hand or from the KV, newest heartbeat wins. */
  async list(): Promise<NodeView[]> {
    const stored = await this.kv.range({ ...k.rangeOf(k.NODE_PREFIX), limit: MAX_NODES_LISTED });
    const merged = new Map<string, NodeRecord>();
    for (const row of stored) {
      const record = k.decodeNode(row.value);
      merged.set(record.nodeId, record);
    }
    for (const [nodeId, record] of this.seen) {
      const other = merged.get(nodeId);
      // A node this coordinator found gone stays dead here until it hears from the node again,
      // whatever heartbeat another coordinator stored for it before the death.
      if (!other || other.lastHeartbeatMs <= record.lastHeartbeatMs || this.goneReason(nodeId)) merged.set(nodeId, record);
    }
    const now = this.now();
    return [...merged.values()]
      .filter((record) => {
        const admin = this.admin.get(record.nodeId);
        return admin?.state !== 'removed' || record.lastHeartbeatMs > admin.sinceMs;
      })
      .map((record) => this.view(record, now))
      .sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  }

  /** Heard from within the grace period, and not found gone since. A heartbeat revives a node. */
  private alive(record: NodeRecord, now: number): boolean {
    return now - record.lastHeartbeatMs <= this.options.deadAfterMs && this.goneSince.get(record.nodeId)?.heartbeatMs !== record.lastHeartbeatMs;
  }

  /**
   * Declares a node dead before its grace period ends, because its ports refused connections (a
   * crashed process, not a slow one). `sinceHeartbeatMs`: the last heartbeat the caller knew of
   * before it probed; a heartbeat since then (the node came back meanwhile) wins. False if not marked.
   */
  markGone(nodeId: string, why: string, sinceHeartbeatMs?: number): boolean {
    const record = this.seen.get(nodeId);
    if (!record || (sinceHeartbeatMs !== undefined && record.lastHeartbeatMs !== sinceHeartbeatMs)) return false;
    if (this.goneSince.get(nodeId)?.heartbeatMs === record.lastHeartbeatMs) return false;
    const wasAlive = this.alive(record, this.now());
    this.goneSince.set(nodeId, { heartbeatMs: record.lastHeartbeatMs, why });
    if (wasAlive) {
      this.options.log.info({ nodeId, why }, 'data node is dead');
      this.events.emit('change');
    }
    return wasAlive;
  }

  /** Why a node was found dead early; undefined when it is live or simply missed heartbeats. */
  goneReason(nodeId: string): string | undefined {
    const record = this.seen.get(nodeId);
    const gone = this.goneSince.get(nodeId);
    return record && gone?.heartbeatMs === record.lastHeartbeatMs ? gone.why : undefined;
  }

  /** Live nodes not heard from for `lateAfterMs` and not stopping cleanly: worth a probe. */
  lateNodes(lateAfterMs: number): NodeRecord[] {
    const now = this.now();
    return [...this.seen.values()].filter((n) => this.alive(n, now) && now - n.lastHeartbeatMs > lateAfterMs && !this.stopping.has(n.nodeId));
  }

  /** Ends every NodeLink this coordinator holds, without probing anyone (it is stopping). */
  closeLinks(): void {
    this.closingLinks = true;
    for (const end of this.linkEnders) end();
    this.linkEnders.clear();
  }

  /**
   * Keeps `end` (which ends one NodeLink call) for closeLinks(); the returned function forgets it.
   * A link arriving after closeLinks() is ended at once.
   */
  holdLink(end: () => void): () => void {
    if (this.closingLinks) {
      end();
      return () => undefined;
    }
    this.linkEnders.add(end);
    return () => this.linkEnders.delete(end);
  }

  /**
   * A NodeLink stream from the node opened (NodeLink's first message named it). Returns the
   * stream's token, for linkClosed.
   */
  linkOpened(nodeId: string, dataAddress: string): number {
    const token = this.nextLinkToken++;
    this.links.set(nodeId, { token, open: true, dataAddress });
    this.stopping.delete(nodeId);
    // The hello came from a running process: a node found gone is back (its heartbeat may come
    // a whole interval later).
    if (this.goneSince.delete(nodeId)) {
      this.options.log.info({ nodeId }, 'data node found dead opened a link again: live');
      this.events.emit('change');
    }
    return token;
  }

  /** A link newer than `token` opened since (the node reconnected or restarted). */
  private linkReplaced(nodeId: string, token: number): boolean {
    const link = this.links.get(nodeId);
    return !link || link.token !== token;
  }

  /**
   * A NodeLink stream closed. Without a goodbye, and unless a newer link from the node opened, its
   * ports are probed now; if every one refuses, the node is dead at once. A probe that proves
   * nothing is tried again a few times: a timeout on a loaded host, a heartbeat that landed
   * meanwhile, or a port still open (a killed process's kernel closes its sockets one by one, so
   * a listener can outlive the link by a moment; a live node instead reopens its link, which ends
   * the probing). Resolves when decided (true: marked dead), for tests; callers need not wait.
   */
  async linkClosed(nodeId: string, goodbye: boolean, token: number): Promise<boolean> {
    const link = this.links.get(nodeId);
    if (!link || this.linkReplaced(nodeId, token)) return false;
    link.open = false;
    if (goodbye) this.stopping.add(nodeId);
    if (goodbye || !this.seen.has(nodeId) || this.closingLinks) return false;
    this.options.log.info({ nodeId }, 'data node link lost: probing its ports');
    const probe = this.options.probePorts ?? ((addresses: string[]) => probePorts(addresses));
    for (let attempt = 0; attempt < LINK_PROBES; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, this.options.probeRetryMs ?? LINK_PROBE_RETRY_MS));
      const record = this.seen.get(nodeId);
      // A link opened meanwhile (the node restarted), or this coordinator is stopping: not gone.
      if (!record || this.linkReplaced(nodeId, token) || this.closingLinks) return false;
      const sinceHeartbeatMs = record.lastHeartbeatMs;
      const state = await probe([record.address, link.dataAddress].filter(Boolean)).catch((): PortState => 'unknown');
      if (state !== 'refused' || this.linkReplaced(nodeId, token)) continue;
      if (this.markGone(nodeId, 'its link dropped and its ports refuse connections', sinceHeartbeatMs)) return true;
      if (this.goneReason(nodeId)) return false; // found gone already (the late-node probe)
    }
    this.options.log.info({ nodeId }, 'data node link lost, but its ports never all refused: left to heartbeats');
    return false;
  }

  private view(record: NodeRecord, now: number): NodeView {
    const live = this.alive(record, now);
    const admin = this.adminState(record.nodeId);
    const state: NodeState = admin === 'drained' ? 'drained' : !live ? 'dead' : admin === 'draining' ? 'draining' : 'live';
    return { ...record, live, state, admin, corruptChunks: this.corrupt.get(record.nodeId) ?? [], scrub: this.scrub.get(record.nodeId) };
  }

  /** Live nodes this coordinator heard from itself: cheap, for the write path. */
  liveNodes(): NodeRecord[] {
    const now = this.now();
    return [...this.seen.values()].filter((n) => this.alive(n, now));
  }

  addressOf(nodeId: string): string | undefined {
    return this.seen.get(nodeId)?.address;
  }

  isLive(nodeId: string): boolean {
    const record = this.seen.get(nodeId);
    return !!record && this.alive(record, this.now());
  }

  /** Live nodes that may take new copies (not draining, drained or removed). */
  placeableNodes(): NodeRecord[] {
    return this.liveNodes().filter((n) => this.adminState(n.nodeId) === undefined);
  }

  /**
   * Picks `replication` distinct live nodes, most free space first, distinct zones first
   * when nodes are labelled. Fewer live nodes than asked caps the pipeline (with a warning).
   */
  place(replication: number, ackPolicy: AckPolicy, excludeNodeIds: string[]): Placement {
    const excluded = new Set(excludeNodeIds);
    const candidates = this.placeableNodes().filter((n) => !excluded.has(n.nodeId));
    if (candidates.length === 0) {
      throw new StrataError('Unavailable', 'no live data node can take the chunk; start data nodes or check their logs');
    }
    const pipeline = pickNodes(candidates, replication, new Set());
    if (pipeline.length < replication && !this.warnedShortfall.has(pipeline.length)) {
      this.warnedShortfall.add(pipeline.length);
      this.options.log.warn({ replication, live: pipeline.length }, 'fewer live data nodes than the replication factor; writing fewer copies');
    }
    return { chunkId: newChunkId(this.now()), pipeline, requiredAcks: requiredAcks(pipeline.length, ackPolicy) };
  }
}

export function requiredAcks(replicas: number, policy: AckPolicy): number {
  if (policy === 'one') return 1;
  if (policy === 'quorum') return Math.floor(replicas / 2) + 1;
  return replicas;
}

/**
 * Up to `count` of `candidates`, most free space first, zones not in `zonesUsed` first (the
 * placement rule, shared by writes and by repair targets).
 */
export function pickNodes<T extends Pick<NodeRecord, 'freeBytes' | 'zone'>>(candidates: T[], count: number, zonesUsed: Set<string>): T[] {
  const sorted = [...candidates];
  // Shuffle before the stable sort so equal nodes share the load. Free space counts in whole
  // GiB: nodes sharing one disk (or nearly as free) report it a few bytes apart, and an exact
  // order would send every chunk to the same nodes.
  shuffle(sorted);
  sorted.sort((a, b) => freeGiB(b) - freeGiB(a));
  const picked: T[] = [];
  const zones = new Set(zonesUsed);
  for (const pass of [true, false]) {
    for (const node of sorted) {
      if (picked.length >= count) break;
      if (picked.includes(node)) continue;
      if (pass && node.zone && zones.has(node.zone)) continue;
      picked.push(node);
      zones.add(node.zone);
    }
  }
  return picked;
}

const freeGiB = (node: Pick<NodeRecord, 'freeBytes'>) => Math.floor(node.freeBytes / 2 ** 30);

function shuffle<T>(items: T[]): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
}
