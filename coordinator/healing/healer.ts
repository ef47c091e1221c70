// The leader's background loop. While this coordinator leads, every scan interval it rescans the
// chunk records and rebuilds the repair queue (so a new leader loses no work: the work is
// whatever metadata says is wrong), finishes drains, runs GC passes and asked-for rebalances,
// and publishes its status for `strata health`. When leadership is lost it stops taking work;
// anything still running is fenced (see leader.ts).
import type { CoordinatorConfig } from '../../common/config.js';
import type { Logger } from '../../common/log.js';
import type { ObjectTier } from '../../common/object-tier.js';
import type { Leadership } from '../leader.js';
import type { Kv } from '../meta/kv.js';
import * as k from '../meta/keys.js';
import type { NodeRegistry, NodeView } from '../nodes.js';
import type { DataNodeOps } from './datanode-ops.js';
import { GarbageCollector } from './gc.js';
import { ChunkLocks } from './limits.js';
import { assess, chunkHealth, planChunk, type ClusterView } from './planner.js';
import { planRebalanceNow, type RebalanceRequest } from './rebalance.js';
import { Repairer, type RepairItem } from './repairer.js';
import { currentView, scanChunks } from './scan.js';
import { HealStatus, publishStatus, type PublishedStatus } from './status.js';

export interface HealerDeps {
  kv: Kv;
  registry: NodeRegistry;
  leadership: Leadership;
  ops: DataNodeOps;
  config: HealerConfig;
  log: Logger;
  /** Shared with the tiering job, so one job at a time works on a chunk. */
  locks?: ChunkLocks;
  /** Object tiers: GC collects their chunk objects too. */
  tiers?: readonly ObjectTier[];
  /** Copies another job (tiering) is making: GC spares them like repairs in flight. */
  otherInFlight?: (chunkId: string, nodeId: string) => boolean;
  onTierObjectDeleted?: (tier: string, chunkId: string) => void;
}

export type HealerConfig = Pick<CoordinatorConfig, 'scanIntervalMs' | 'repairConcurrency' | 'repairBandwidth' | 'gcGraceMs' | 'heartbeatIntervalMs'>;

const VIEW_MAX_AGE_MS = 1000;
/** How often the leader checks, from memory, whether a node died or came back or reported a corrupt copy. */
const LIVENESS_CHECK_MS = 250;
const PUBLISH_INTERVAL_MS = 2000;
/** GC lists every node's chunks: a few times per grace is plenty, and never more than every 10 min. */
const GC_INTERVAL_MAX_MS = 10 * 60_000;

export class Healer {
  private status = new HealStatus();
  private readonly locks: ChunkLocks;
  private repairer: Repairer | undefined;
  private gc: GarbageCollector | undefined;
  private loop: Promise<void> | undefined;
  private leading = false;
  private wake: (() => void) | undefined;
  private wakeAgain = false;
  private cachedView: { atMs: number; value: { nodes: NodeView[]; view: ClusterView } } | undefined;
  private lastLive: Set<string> | undefined;
  private corruptSeen = new Set<string>();
  private lastGcMs = 0;
  private lastPublishMs = 0;
  private rebalance: { request: RebalanceRequest; modRevision: number; planned: number } | undefined;
  /** What the last full scan found (metrics); undefined until this coordinator led one. */
  lastScan: { chunks: number; underReplicated: number; missing: number; corrupt: number } | undefined;

  constructor(private readonly deps: HealerDeps) {
    this.locks = deps.locks ?? new ChunkLocks();
  }

  start(): void {
    this.deps.leadership.onChange((leading) => (leading ? this.lead() : void this.stepDown()));
  }

  get isLeading(): boolean {
    return this.leading && this.deps.leadership.isLeader();
  }

  snapshot(): PublishedStatus {
    return this.status.snapshot(this.deps.leadership.selfId);
  }

  /** Runs a scan soon (after a drain or rebalance was asked for here). */
  poke(): void {
    this.wake?.();
  }

  async close(): Promise<void> {
    await this.stepDown();
  }

  private lead(): void {
    if (this.leading) return;
    this.leading = true;
    this.status = new HealStatus();
    this.status.event('leader', `${this.deps.leadership.selfId} leads: rescanning metadata`);
    const { kv, registry, leadership, ops, config, log } = this.deps;
    this.repairer = new Repairer({
      kv, registry, leadership, ops, log,
      status: this.status,
      locks: this.locks,
      concurrency: config.repairConcurrency,
      bandwidthBytesPerSec: config.repairBandwidth,
      view: () => this.view(),
    });
    const repairer = this.repairer;
    this.gc = new GarbageCollector({
      kv, registry, leadership, ops, log,
      status: this.status,
      locks: this.locks,
      graceMs: config.gcGraceMs,
      isInFlight: (chunkId, nodeId) => repairer.isInFlight(chunkId, nodeId) || (this.deps.otherInFlight?.(chunkId, nodeId) ?? false),
      tiers: this.deps.tiers,
      onTierObjectDeleted: this.deps.onTierObjectDeleted,
    });
    this.lastLive = undefined;
    this.rebalance = undefined;
    this.repairer.start();
    this.loop = this.run();
  }

  private async stepDown(): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    this.lastScan = undefined;
    this.wake?.();
    await this.loop;
    await this.repairer?.stop();
    this.repairer = undefined;
  }

  /**
   * A node that dies (or returns, or reports a corrupt copy) starts a scan at once instead of at
   * the next interval. A node found dead by its dropped link (nodes.ts) wakes the scan the moment
   * the registry marks it; the timer catches the rest (grace ended, corrupt reports).
   */
  private watchLiveness(): () => void {
    const signature = () => {
      const live = this.deps.registry.liveNodes().map((n) => n.nodeId).sort().join(',');
      let corrupt = 0;
      for (const ids of this.deps.registry.corruptReports().values()) corrupt += ids.size;
      return `${live} ${corrupt}`;
    };
    let last = signature();
    const probing = new Set<string>();
    // MooseFS-style fast detection: a node that missed two heartbeats and whose address refuses
    // connections has crashed; waiting out the whole grace would only delay its repair.
    const probeLateNodes = () => {
      for (const node of this.deps.registry.lateNodes(2 * this.deps.config.heartbeatIntervalMs + LIVENESS_CHECK_MS)) {
        if (probing.has(node.nodeId)) continue;
        probing.add(node.nodeId);
        const sinceHeartbeatMs = node.lastHeartbeatMs;
        void this.deps.ops
          .refusesConnections(node)
          .then((gone) => {
            if (gone && this.isLeading) this.deps.registry.markGone(node.nodeId, 'it missed heartbeats and refuses connections', sinceHeartbeatMs);
          })
          .finally(() => probing.delete(node.nodeId));
      }
    };
    const check = () => {
      const now = signature();
      if (now === last) return;
      last = now;
      this.cachedView = undefined;
      if (this.wake) this.wake();
      else this.wakeAgain = true; // a pass is running and may have read the old state
    };
    const timer = setInterval(() => {
      probeLateNodes();
      check();
    }, LIVENESS_CHECK_MS);
    const unsubscribe = this.deps.registry.onLivenessChange(check);
    return () => {
      clearInterval(timer);
      unsubscribe();
    };
  }

  private async run(): Promise<void> {
    const stopWatching = this.watchLiveness();
    try {
      await this.runPasses();
    } finally {
      stopWatching();
    }
  }

  private async runPasses(): Promise<void> {
    const { config, log } = this.deps;
    const gcIntervalMs = Math.max(config.scanIntervalMs, Math.min(config.gcGraceMs / 4, GC_INTERVAL_MAX_MS));
    while (this.isLeading) {
      try {
        await this.deps.registry.refreshAdmin();
        this.cachedView = undefined;
        await this.scan();
        if (Date.now() - this.lastGcMs >= gcIntervalMs && this.isLeading) {
          this.lastGcMs = Date.now();
          await this.gc!.pass();
        }
        await this.stepRebalance();
        await this.publish();
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'healing pass failed; retrying next interval');
      }
      await new Promise<void>((resolve) => {
        if (this.wakeAgain) {
          this.wakeAgain = false;
          return resolve();
        }
        const timer = setTimeout(resolve, config.scanIntervalMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  private async view(): Promise<{ nodes: NodeView[]; view: ClusterView }> {
    if (!this.cachedView || Date.now() - this.cachedView.atMs > VIEW_MAX_AGE_MS) {
      this.cachedView = { atMs: Date.now(), value: await currentView(this.deps.registry) };
    }
    return this.cachedView.value;
  }

  /** Rescans every record: the repair queue, node events, and drains that are done. */
  private async scan(): Promise<void> {
    const { nodes, view } = await this.view();
    this.noteLiveness(nodes);
    const items: RepairItem[] = [];
    const onLeaving = new Map<string, number>([...view.leaving].map((id) => [id, 0]));
    const found = { chunks: 0, underReplicated: 0, missing: 0, corrupt: 0 };
    for await (const chunk of scanChunks(this.deps.kv)) {
      for (const nodeId of chunk.record.nodes) if (onLeaving.has(nodeId)) onLeaving.set(nodeId, onLeaving.get(nodeId)! + 1);
      const assessment = assess(chunk.record, chunk.replication, view);
      const health = chunkHealth(assessment, chunk.replication);
      found.chunks++;
      if (health.underReplicated) found.underReplicated++;
      if (health.missing) found.missing++;
      if (health.corrupt) found.corrupt++;
      const plan = planChunk(assessment);
      if (plan) items.push({ key: chunk.key, chunkId: chunk.record.chunkId, priority: plan.priority });
    }
    if (!this.isLeading) return;
    this.lastScan = found;
    this.repairer!.setRepairs(items);
    for (const node of nodes) {
      const holding = onLeaving.get(node.nodeId) ?? 0;
      if (node.admin === 'draining' && holding === 0 && !this.repairer!.involves(node.nodeId)) await this.markDrain(node.nodeId, 'drained');
      if (node.admin === 'drained' && holding > 0) await this.markDrain(node.nodeId, 'draining');
    }
  }

  private noteLiveness(nodes: NodeView[]): void {
    const live = new Set(nodes.filter((n) => n.live).map((n) => n.nodeId));
    if (this.lastLive) {
      for (const id of this.lastLive) {
        if (live.has(id)) continue;
        const why = this.deps.registry.goneReason(id) ?? 'it missed heartbeats for the whole grace';
        this.status.event('node-dead', `data node ${id} is dead (${why}): re-replicating its chunks`);
      }
      for (const id of live) if (!this.lastLive.has(id)) this.status.event('node-back', `data node ${id} is live`);
    }
    this.lastLive = live;
    // One event per new report; reports stop once the copy is deleted, and so does the memory.
    const reported = new Set<string>();
    for (const node of nodes.filter((n) => n.live)) {
      for (const chunkId of node.corruptChunks) {
        const key = `${node.nodeId} ${chunkId}`;
        reported.add(key);
        if (!this.corruptSeen.has(key)) this.status.event('corrupt', `data node ${node.nodeId} reports chunk ${chunkId} corrupt: replacing it from a good copy`);
      }
    }
    this.corruptSeen = reported;
  }

  private async markDrain(nodeId: string, state: 'drained' | 'draining'): Promise<void> {
    const [entry] = await this.deps.kv.getMany([k.adminKey(nodeId)]);
    if (!entry) return;
    const ok = await this.deps.registry.setAdminState(nodeId, state, [{ key: entry.key, modRevision: entry.modRevision }, ...this.deps.leadership.fence()]);
    if (ok && state === 'drained') this.status.event('drained', `data node ${nodeId} holds no referenced chunk: safe to stop and remove (strata node rm ${nodeId})`);
  }

  /** A rebalance someone asked for (h/rebalance): plan once, feed moves, clear it when done. */
  private async stepRebalance(): Promise<void> {
    const [entry] = await this.deps.kv.getMany([k.REBALANCE_KEY]);
    if (!entry) {
      this.rebalance = undefined;
      return;
    }
    const repairer = this.repairer!;
    if (this.rebalance?.modRevision !== entry.modRevision) {
      const request = JSON.parse(entry.value.toString()) as RebalanceRequest;
      const moves = await planRebalanceNow(this.deps.kv, this.deps.registry, request.thresholdPercent);
      this.rebalance = { request, modRevision: entry.modRevision, planned: moves.length };
      repairer.movesDone = 0;
      repairer.addMoves(moves);
      this.status.event('rebalance', `rebalance to within ${request.thresholdPercent}% of the mean: ${moves.length} moves planned`);
    }
    const left = repairer.movesPending;
    this.status.queue.rebalance = `running: ${left} moves left`;
    if (left === 0 && repairer.idle) {
      const ok = await this.deps.kv.txn({ compares: [{ key: entry.key, modRevision: entry.modRevision }, ...this.deps.leadership.fence()], ops: [{ type: 'delete', key: entry.key }] });
      if (ok) {
        this.status.queue.rebalance = `idle (last: ${repairer.movesDone} of ${this.rebalance.planned} moves done)`;
        this.status.event('rebalance', `rebalance done: ${repairer.movesDone} chunks moved`);
        this.rebalance = undefined;
      }
    }
  }

  private async publish(): Promise<void> {
    if (Date.now() - this.lastPublishMs < PUBLISH_INTERVAL_MS) return;
    this.lastPublishMs = Date.now();
    await publishStatus(this.deps.kv, this.snapshot(), this.deps.leadership.fence());
  }
}
