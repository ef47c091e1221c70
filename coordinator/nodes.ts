// Data node registry and chunk placement. Every data node heartbeats every coordinator, so
// each coordinator knows liveness first-hand; records are also persisted in the KV (at most
// every persistIntervalMs per node) so `strata nodes` lists nodes this coordinator has not
// heard from since it started, and shows them dead.
import { randomBytes } from 'node:crypto';
import { StrataError, invalid } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Kv } from './meta/kv.js';
import * as k from './meta/keys.js';
import type { NodeRecord } from './meta/types.js';

export type AckPolicy = 'one' | 'quorum' | 'all';

export interface NodeView extends NodeRecord {
  live: boolean;
}

export interface Placement {
  chunkId: string;
  pipeline: NodeRecord[];
  requiredAcks: number;
}

const MAX_NODES_LISTED = 10_000;

export class NodeRegistry {
  private readonly seen = new Map<string, NodeRecord>();
  private readonly persistedMs = new Map<string, number>();
  private readonly warnedShortfall = new Set<number>();

  constructor(
    private readonly kv: Kv,
    private readonly options: { deadAfterMs: number; persistIntervalMs: number; log: Logger; now?: () => number },
  ) {}

  /** Seeds liveness from stored records, so a restarted coordinator can place and locate at once. */
  async load(): Promise<void> {
    for (const record of await this.list()) if (!this.seen.has(record.nodeId)) this.seen.set(record.nodeId, record);
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  async heartbeat(node: Omit<NodeRecord, 'lastHeartbeatMs'>): Promise<void> {
    if (!node.nodeId || !/^[A-Za-z0-9_.-]{1,64}$/.test(node.nodeId)) throw invalid(`invalid node id '${node.nodeId}'`);
    if (!/^[^\s/]+:\d{1,5}$/.test(node.address)) throw invalid(`invalid node address '${node.address}'`);
    const now = this.now();
    const record: NodeRecord = { ...node, lastHeartbeatMs: now };
    const isNew = !this.seen.has(node.nodeId);
    this.seen.set(node.nodeId, record);
    if (isNew) this.options.log.info({ nodeId: node.nodeId, address: node.address }, 'data node joined');
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
      if (!other || other.lastHeartbeatMs <= record.lastHeartbeatMs) merged.set(nodeId, record);
    }
    const now = this.now();
    return [...merged.values()]
      .map((record) => ({ ...record, live: now - record.lastHeartbeatMs <= this.options.deadAfterMs }))
      .sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  }

  /** Live nodes this coordinator heard from itself: cheap, for the write path. */
  liveNodes(): NodeRecord[] {
    const now = this.now();
    return [...this.seen.values()].filter((n) => now - n.lastHeartbeatMs <= this.options.deadAfterMs);
  }

  addressOf(nodeId: string): string | undefined {
    return this.seen.get(nodeId)?.address;
  }

  isLive(nodeId: string): boolean {
    const record = this.seen.get(nodeId);
    return !!record && this.now() - record.lastHeartbeatMs <= this.options.deadAfterMs;
  }

  /**
   * Picks `replication` distinct live nodes, most free space first, distinct zones first
   * when nodes are labelled. Fewer live nodes than asked caps the pipeline (with a warning).
   */
  place(replication: number, ackPolicy: AckPolicy, excludeNodeIds: string[]): Placement {
    const excluded = new Set(excludeNodeIds);
    const candidates = this.liveNodes().filter((n) => !excluded.has(n.nodeId));
    if (candidates.length === 0) {
      throw new StrataError('Unavailable', 'no live data node can take the chunk; start data nodes or check their logs');
    }
    // Shuffle before the stable sort so equal nodes share the load.
    shuffle(candidates);
    candidates.sort((a, b) => b.freeBytes - a.freeBytes);
    const pipeline: NodeRecord[] = [];
    const zonesUsed = new Set<string>();
    for (const pass of [true, false]) {
      for (const node of candidates) {
        if (pipeline.length >= replication) break;
        if (pipeline.includes(node)) continue;
        if (pass && node.zone && zonesUsed.has(node.zone)) continue;
        pipeline.push(node);
        zonesUsed.add(node.zone);
      }
    }
    if (pipeline.length < replication && !this.warnedShortfall.has(pipeline.length)) {
      this.warnedShortfall.add(pipeline.length);
      this.options.log.warn({ replication, live: pipeline.length }, 'fewer live data nodes than the replication factor; writing fewer copies');
    }
    return { chunkId: randomBytes(16).toString('hex'), pipeline, requiredAcks: requiredAcks(pipeline.length, ackPolicy) };
  }
}

export function requiredAcks(replicas: number, policy: AckPolicy): number {
  if (policy === 'one') return 1;
  if (policy === 'quorum') return Math.floor(replicas / 2) + 1;
  return replicas;
}

function shuffle<T>(items: T[]): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
}
