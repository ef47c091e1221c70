// Runs repair and move work on the leader, a bounded number of chunks at a time, most endangered
// first. Each item re-reads its chunk record and re-plans on fresh facts (a queued item may be
// stale). Order per chunk: copy onto the target (the data node verifies the checksum on arrival),
// then one transaction updating the record, comparing its revision and the leader fence, then
// delete copies the record no longer lists. A failed compare leaves the new copy unreferenced on
// that node, for GC: nothing is lost, and nothing is done twice.
import type { Logger } from '../../common/log.js';
import type { Leadership } from '../leader.js';
import type { Kv } from '../meta/kv.js';
import * as k from '../meta/keys.js';
import type { ChunkRecord } from '../meta/types.js';
import { pickNodes, type NodeRegistry, type NodeView } from '../nodes.js';
import type { DataNodeOps, NodeAddress } from './datanode-ops.js';
import { ByteBudget, ByteRate, ChunkLocks } from './limits.js';
import { assess, nodesAfterRepair, planChunk, type ClusterView } from './planner.js';
import { readChunk, type ScannedChunk } from './scan.js';
import type { HealStatus } from './status.js';

export interface RepairItem {
  key: string;
  chunkId: string;
  priority: number;
}

export interface MoveItem {
  key: string;
  chunkId: string;
  from: string;
  to: string;
}

export interface RepairerDeps {
  kv: Kv;
  registry: NodeRegistry;
  leadership: Leadership;
  ops: DataNodeOps;
  status: HealStatus;
  locks: ChunkLocks;
  log: Logger;
  concurrency: number;
  bandwidthBytesPerSec: number;
  /** Cluster facts, refreshed by the caller at most every second or so. */
  view(): Promise<{ nodes: NodeView[]; view: ClusterView }>;
}

/** Items kept queued at most: the most endangered win. A rescan finds the rest later. */
const QUEUE_MAX = 100_000;
/** An idle worker looks again this often even unwoken (work is normally handed over at once). */
const IDLE_POLL_MS = 1000;
/**
 * Copies written into one node at once, at most, while another node could take the copy: the
 * work spreads over every target instead of queueing on the emptiest (all on one disk here, and
 * each copy an fsync).
 */
export const COPIES_PER_TARGET = 4;
/** Chunk bytes being copied at once, at most (16 copies of 8 MiB chunks; 2 of 64 MiB ones). */
export const COPY_BYTES_IN_FLIGHT = 128 * 1024 * 1024;

export class Repairer {
  private repairs: RepairItem[] = [];
  private moves: MoveItem[] = [];
  /** Chunk -> nodes a copy is being made into, until the record update is decided: GC spares those. */
  private readonly inFlight = new Map<string, Set<string>>();
  private readonly busyNodes = new Map<string, number>();
  private running = 0;
  private active = false;
  private workers: Promise<void>[] = [];
  private readonly rate: ByteRate;
  private readonly budget = new ByteBudget(COPY_BYTES_IN_FLIGHT);
  /** Idle workers waiting for items: woken as soon as some arrive. */
  private waiting: (() => void)[] = [];
  movesDone = 0;

  constructor(private readonly deps: RepairerDeps) {
    this.rate = new ByteRate(deps.bandwidthBytesPerSec);
  }

  /** Replaces the pending repairs with a fresh scan's findings. */
  setRepairs(items: RepairItem[]): void {
    this.repairs = [...items].sort((a, b) => a.priority - b.priority).slice(0, QUEUE_MAX);
    this.deps.status.queue.queued = this.repairs.length + this.moves.length;
    this.wakeWorkers();
  }

  addMoves(moves: MoveItem[]): void {
    this.moves.push(...moves);
    this.deps.status.queue.queued = this.repairs.length + this.moves.length;
    this.wakeWorkers();
  }

  private wakeWorkers(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const wake of waiting) wake();
  }

  get movesPending(): number {
    return this.moves.length;
  }

  get idle(): boolean {
    return this.running === 0 && this.repairs.length === 0 && this.moves.length === 0;
  }

  isInFlight(chunkId: string, nodeId: string): boolean {
    return this.inFlight.get(chunkId)?.has(nodeId) ?? false;
  }

  /** Whether a running item involves the node (a drain is not done while one does). */
  involves(nodeId: string): boolean {
    return (this.busyNodes.get(nodeId) ?? 0) > 0;
  }

  start(): void {
    if (this.active) return;
    this.active = true;
    this.workers = Array.from({ length: this.deps.concurrency }, () => this.work());
  }

  /** Stops taking items; running ones finish (their transactions are fenced anyway). */
  async stop(): Promise<void> {
    this.active = false;
    this.repairs = [];
    this.moves = [];
    this.wakeWorkers();
    await Promise.all(this.workers);
    this.workers = [];
  }

  private async work(): Promise<void> {
    while (this.active) {
      const item = this.repairs.shift() ?? this.moves.shift();
      this.deps.status.queue.queued = this.repairs.length + this.moves.length;
      if (!item) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, IDLE_POLL_MS);
          this.waiting.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
        continue;
      }
      if (!this.deps.leadership.isLeader() || !this.deps.locks.tryLock(item.chunkId)) continue;
      this.running++;
      this.deps.status.queue.running = this.running;
      try {
        if ('priority' in item) await this.repair(item);
        else await this.move(item);
      } catch (err) {
        this.deps.status.queue.failed++;
        this.deps.status.event('repair-failed', `chunk ${item.chunkId}: ${(err as Error).message}`);
        this.deps.log.warn({ chunkId: item.chunkId, err: (err as Error).message }, 'repair step failed; the next scan retries');
      } finally {
        this.running--;
        this.deps.status.queue.running = this.running;
        this.inFlight.delete(item.chunkId);
        this.deps.locks.unlock(item.chunkId);
      }
    }
  }

  private async repair(item: RepairItem): Promise<void> {
    const fresh = await readChunk(this.deps.kv, item.key);
    if (!fresh || fresh.record.chunkId !== item.chunkId) return;
    const { nodes, view } = await this.deps.view();
    const a = assess(fresh.record, fresh.replication, view);
    const plan = planChunk(a);
    if (!plan) return;
    const byId = new Map(nodes.map((n) => [n.nodeId, n]));
    const excluded = new Set(plan.exclude);
    for (const [nodeId, chunkIds] of view.corrupt) if (chunkIds.has(item.chunkId)) excluded.add(nodeId);
    const candidates = this.deps.registry.placeableNodes().filter((n) => !excluded.has(n.nodeId));
    const zones = new Set(a.good.map((id) => byId.get(id)?.zone ?? ''));
    // Nodes already taking their share of copies wait their turn, unless no other could.
    const unbusy = candidates.filter((n) => (this.busyNodes.get(n.nodeId) ?? 0) < COPIES_PER_TARGET);
    const targets = pickNodes(unbusy.length >= plan.copies ? unbusy : candidates, plan.copies, zones);
    const sources = spreadSources(plan.sources, a.good.length).map((id) => address(byId.get(id)));
    const copied = await Promise.all(targets.map((target) => this.copy(fresh.record, target, sources)));
    const added = targets.filter((_, i) => copied[i]).map((t) => t.nodeId);
    // Surplus: drop copies on the fullest nodes first.
    const trimmed = [...a.good]
      .sort((x, y) => usedFraction(byId.get(y)) - usedFraction(byId.get(x)))
      .slice(0, plan.trim);
    const nextNodes = nodesAfterRepair(fresh.record, plan, a.good.length, added, trimmed);
    // Nothing could be done this time (no target, copies failed: counted in copy()).
    if (sameNodes(nextNodes, fresh.record.nodes)) return;
    if (!(await this.updateRecord(fresh, nextNodes))) return;
    if (added.length > 0) {
      this.deps.status.queue.repaired++;
      this.deps.status.event('repaired', `chunk ${item.chunkId}: copied to ${added.join(', ')}; ${nextNodes.length} copies`);
    }
    this.deps.status.queue.trimmed += trimmed.length;
    await this.deleteDropped(fresh.record, nextNodes, byId);
  }

  private async move(item: MoveItem): Promise<void> {
    const fresh = await readChunk(this.deps.kv, item.key);
    if (!fresh || fresh.record.chunkId !== item.chunkId) return;
    const { nodes, view } = await this.deps.view();
    const byId = new Map(nodes.map((n) => [n.nodeId, n]));
    const { record } = fresh;
    // The plan may be stale: move only a good copy, only onto a node that may take it.
    if (!record.nodes.includes(item.from) || record.nodes.includes(item.to) || !view.live.has(item.from)) return;
    if (!this.deps.registry.placeableNodes().some((n) => n.nodeId === item.to)) return;
    const sources = [item.from, ...record.nodes.filter((n) => n !== item.from && view.live.has(n))].map((id) => address(byId.get(id)));
    if (!(await this.copy(record, address(byId.get(item.to)), sources))) return;
    const nextNodes = record.nodes.map((n) => (n === item.from ? item.to : n));
    if (!(await this.updateRecord(fresh, nextNodes))) return;
    this.movesDone++;
    await this.deleteDropped(record, nextNodes, byId);
  }

  /** One verified copy onto `target`; false (and an event) when it failed. */
  private async copy(record: ChunkRecord, target: NodeAddress, sources: NodeAddress[]): Promise<boolean> {
    if (!this.deps.leadership.isLeader()) return false;
    await this.rate.take(record.length);
    if (!this.inFlight.has(record.chunkId)) this.inFlight.set(record.chunkId, new Set());
    this.inFlight.get(record.chunkId)!.add(target.nodeId);
    this.busyNodes.set(target.nodeId, (this.busyNodes.get(target.nodeId) ?? 0) + 1);
    await this.budget.take(record.length);
    try {
      await this.deps.ops.replicate(target, { chunkId: record.chunkId, length: record.length, crc32c: record.crc32c }, sources);
      this.deps.status.queue.bytesCopied += record.length;
      return true;
    } catch (err) {
      this.deps.status.queue.failed++;
      this.deps.status.event('repair-failed', `chunk ${record.chunkId} onto ${target.nodeId}: ${(err as Error).message}`);
      return false;
    } finally {
      this.budget.give(record.length);
      this.busyNodes.set(target.nodeId, (this.busyNodes.get(target.nodeId) ?? 1) - 1);
    }
  }

  /** The record's new node list, if nobody changed the record since we read it and we still lead. */
  private async updateRecord(fresh: ScannedChunk, nodes: string[]): Promise<boolean> {
    const ok = await this.deps.kv.txn({
      compares: [{ key: fresh.key, modRevision: fresh.modRevision }, ...this.deps.leadership.fence()],
      ops: [{ type: 'put', key: fresh.key, value: k.encodeChunk({ ...fresh.record, nodes }) }],
    });
    if (!ok) this.deps.log.info({ chunkId: fresh.record.chunkId }, 'chunk record changed (or leadership lost) during repair; left for the next scan');
    return ok;
  }

  /** Deletes copies on live nodes that the record no longer lists (dead ones: GC, once back). */
  private async deleteDropped(before: ChunkRecord, after: string[], byId: Map<string, NodeView>): Promise<void> {
    for (const nodeId of before.nodes.filter((n) => !after.includes(n))) {
      const node = byId.get(nodeId);
      if (!node?.live) continue;
      await this.deps.ops.delete(address(node), before.chunkId).catch((err) => {
        this.deps.log.info({ chunkId: before.chunkId, nodeId, err: (err as Error).message }, 'dropped copy not deleted yet; GC will');
      });
    }
  }
}

/**
 * The sources in the order a target tries them: good copies first, in random order so that
 * concurrent copies read from every holder instead of all from the first one listed.
 */
function spreadSources(sources: string[], good: number): string[] {
  const first = sources.slice(0, good);
  for (let i = first.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [first[i], first[j]] = [first[j]!, first[i]!];
  }
  return [...first, ...sources.slice(good)];
}

function address(node: NodeView | undefined): NodeAddress {
  return { nodeId: node?.nodeId ?? '', address: node?.address ?? '' };
}

function usedFraction(node: NodeView | undefined): number {
  return node && node.capacityBytes > 0 ? node.usedBytes / node.capacityBytes : 0;
}

function sameNodes(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((n) => b.includes(n));
}
