// Moving one chunk to an object tier, and back. Both run on the leader, under the chunk lock the
// healing jobs take too, and end in one transaction that compares the record's revision and the
// leader fence, so the order of steps is the whole safety argument:
//
//  to a tier:  upload from a good copy (the node verifies its blocks first) -> the node checks
//              the object's size -> record := { nodes: [], tier: object } -> delete local copies.
//              A crash before the record changes leaves the local copies referenced (the object
//              is garbage, GC rule 5); after, the verified object is referenced. Never neither.
//  back:       copy from the object onto nodes (each verifies the bytes on arrival) ->
//              record := { nodes: copies, no tier } -> the object is GC'd after the grace.
import type { Logger } from '../../common/log.js';
import { StrataError } from '../../common/errors.js';
import { chunkObjectKey, type ObjectTier, type TierCopy } from '../../common/object-tier.js';
import { tierNodeId } from '../healing/gc.js';
import type { DataNodeOps, NodeAddress } from '../healing/datanode-ops.js';
import type { ChunkLocks } from '../healing/limits.js';
import { assess } from '../healing/planner.js';
import { currentView, readChunk, type ScannedChunk } from '../healing/scan.js';
import type { Leadership } from '../leader.js';
import type { Kv } from '../meta/kv.js';
import * as k from '../meta/keys.js';
import type { ChunkRecord } from '../meta/types.js';
import { pickNodes, type NodeRegistry, type NodeView } from '../nodes.js';

export interface ChunkMoveDeps {
  kv: Kv;
  registry: NodeRegistry;
  leadership: Leadership;
  ops: DataNodeOps;
  locks: ChunkLocks;
  log: Logger;
  tiers: ReadonlyMap<string, ObjectTier>;
}

export type MoveOutcome = 'done' | 'skipped';

/** The tier itself failed (not a data node): the job backs off that tier. */
export class TierUnreachable extends StrataError {
  constructor(
    readonly tier: string,
    message: string,
  ) {
    super('Unavailable', message);
  }
}

export class ChunkMover {
  /** chunk id -> nodes (or `tier:<name>`) a copy is being made into, until the record says so. */
  private readonly inFlight = new Map<string, Set<string>>();

  constructor(private readonly deps: ChunkMoveDeps) {}

  isInFlight(chunkId: string, nodeId: string): boolean {
    return this.inFlight.get(chunkId)?.has(nodeId) ?? false;
  }

  /** Moves one chunk's bytes to `tierName`; 'skipped' when its record changed or another job holds it. */
  async toTier(key: string, chunkId: string, tierName: string): Promise<MoveOutcome> {
    const tier = this.deps.tiers.get(tierName);
    if (!tier) throw new StrataError('Invalid', `no tier '${tierName}' is configured on this coordinator`);
    return this.locked(chunkId, async () => {
      const fresh = await readChunk(this.deps.kv, key);
      if (!fresh || fresh.record.chunkId !== chunkId || fresh.record.tier || fresh.record.nodes.length === 0) return 'skipped';
      const { nodes, view } = await currentView(this.deps.registry);
      const byId = new Map(nodes.map((n) => [n.nodeId, n]));
      const sources = assess(fresh.record, fresh.replication, view).good.map((id) => byId.get(id)!);
      // No good copy to upload from: repair comes first; the next pass tries again.
      if (sources.length === 0) return 'skipped';
      const objectKey = chunkObjectKey(tier.target, chunkId);
      const copy = await this.tracked(chunkId, [tierNodeId(tierName)], () => this.upload(tier, sources, chunkId, objectKey));
      if (!(await this.updateRecord(fresh, { ...fresh.record, nodes: [], tier: copy }))) return 'skipped';
      await this.deleteCopies(fresh.record, byId);
      return 'done';
    });
  }

  /** Brings one tiered chunk back onto local replicas (the file's replication, as nodes allow). */
  async fromTier(key: string, chunkId: string): Promise<MoveOutcome> {
    return this.locked(chunkId, async () => {
      const fresh = await readChunk(this.deps.kv, key);
      if (!fresh || fresh.record.chunkId !== chunkId) return 'skipped';
      const copy = fresh.record.tier;
      if (!copy) return 'done';
      const { view } = await currentView(this.deps.registry);
      const candidates = this.deps.registry.placeableNodes().filter((n) => !view.corrupt.get(n.nodeId)?.has(chunkId));
      const targets = pickNodes(candidates, fresh.replication, new Set());
      if (targets.length === 0) throw new StrataError('Unavailable', `chunk ${chunkId}: no live data node can take a copy`);
      const chunk = { chunkId, length: fresh.record.length, crc32c: fresh.record.crc32c };
      const results = await this.tracked(
        chunkId,
        targets.map((t) => t.nodeId),
        () => Promise.allSettled(targets.map((t) => this.deps.ops.replicate(address(t), chunk, [], copy))),
      );
      const added = targets.filter((_, i) => results[i]!.status === 'fulfilled').map((t) => t.nodeId);
      if (added.length === 0) {
        const reason = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as Error;
        throw new StrataError('Unavailable', `chunk ${chunkId}: recall from tier '${copy.tier}' failed: ${reason.message}`);
      }
      // Fewer copies than the replication: the record says so, and repair makes the rest.
      const { tier: _dropped, ...local } = fresh.record;
      return (await this.updateRecord(fresh, { ...local, nodes: added })) ? 'done' : 'skipped';
    });
  }

  private async upload(tier: ObjectTier, sources: NodeView[], chunkId: string, objectKey: string): Promise<TierCopy> {
    let lastError: Error | undefined;
    for (const source of sources) {
      if (!this.deps.leadership.isLeader()) break;
      try {
        const copy = await this.deps.ops.tierUpload(address(source), chunkId, tier.target.name, objectKey);
        if (copy.key !== objectKey || copy.tier !== tier.target.name || !(copy.storedBytes > 0)) {
          throw new StrataError('Internal', `data node ${source.nodeId} answered an unexpected object for chunk ${chunkId}`);
        }
        return copy;
      } catch (err) {
        lastError = err as Error;
        // Whose fault: if the tier itself does not answer, every source would fail the same way.
        await tier.check().catch((tierErr: Error) => {
          throw new TierUnreachable(tier.target.name, tierErr.message);
        });
        this.deps.log.info({ chunkId, nodeId: source.nodeId, err: lastError.message }, 'tier upload from this copy failed; trying the next');
      }
    }
    throw lastError ?? new StrataError('Unavailable', `chunk ${chunkId}: no copy could be uploaded`);
  }

  private async updateRecord(fresh: ScannedChunk, next: ChunkRecord): Promise<boolean> {
    const ok = await this.deps.kv.txn({
      compares: [{ key: fresh.key, modRevision: fresh.modRevision }, ...this.deps.leadership.fence()],
      ops: [{ type: 'put', key: fresh.key, value: k.encodeChunk(next) }],
    });
    if (!ok) this.deps.log.info({ chunkId: fresh.record.chunkId }, 'chunk record changed (or leadership lost) during a tier move; left for the next pass');
    return ok;
  }

  /** Local copies the record no longer lists; any left (a node down) are GC'd later. */
  private async deleteCopies(before: ChunkRecord, byId: Map<string, NodeView>): Promise<void> {
    await Promise.all(
      before.nodes.map(async (nodeId) => {
        const node = byId.get(nodeId);
        if (!node?.live) return;
        await this.deps.ops.delete(address(node), before.chunkId).catch((err: Error) => {
          this.deps.log.info({ chunkId: before.chunkId, nodeId, err: err.message }, 'tiered chunk: local copy not deleted yet; GC will');
        });
      }),
    );
  }

  private async locked(chunkId: string, work: () => Promise<MoveOutcome>): Promise<MoveOutcome> {
    if (!this.deps.leadership.isLeader() || !this.deps.locks.tryLock(chunkId)) return 'skipped';
    try {
      return await work();
    } finally {
      this.deps.locks.unlock(chunkId);
    }
  }

  /** Marks copies in the making, so GC spares them until the record update is decided. */
  private async tracked<T>(chunkId: string, nodeIds: string[], work: () => Promise<T>): Promise<T> {
    const set = this.inFlight.get(chunkId) ?? new Set<string>();
    this.inFlight.set(chunkId, set);
    for (const id of nodeIds) set.add(id);
    try {
      return await work();
    } finally {
      // The record update that follows runs under the chunk lock, which GC's deletes take too.
      this.inFlight.delete(chunkId);
    }
  }
}

function address(node: Pick<NodeView, 'nodeId' | 'address'>): NodeAddress {
  return { nodeId: node.nodeId, address: node.address };
}
