// Garbage collection of chunk copies, on the leader: copies of chunks no file references
// (deleted or overwritten files, writes abandoned half way) and copies on nodes their record no
// longer lists (a dead node that came back, a trimmed or moved copy whose delete failed).
//
// Why a referenced chunk is never deleted, even racing a write (gcVerdict in planner.ts holds
// the rules; the unit tests replay the races):
//
// 1. A chunk id carries its allocation time A (chunk-id.ts). CommitChunk refuses an id allocated
//    more than gcGraceMs/2 before it (retryable: the client allocates afresh), so every record
//    naming the id was written before A + grace/2. Rebuilding a record (repair, trim, move,
//    truncate) keeps its key, so a referenced id never moves to a key a scan already passed.
// 2. Each pass lists a node's copies first, then reads every chunk record, starting at S.
//    An unreferenced copy is deleted only if A + grace < S: any commit naming the id came before
//    A + grace/2 < S and is in the read, so "no record names it" is final. The spare half grace
//    absorbs clock skew between coordinators and a commit transaction slow to apply.
//    It must also have been seen unreferenced for a whole grace (this leader's memory: a new
//    leader starts over, which only delays deletion).
// 3. A copy on a node its record does not list is deleted only if the node stored it more than
//    a grace ago (a fresh copy may be a repair whose record update is on its way) and no repair
//    or move into that node for that chunk is running here; only the leader adds nodes to
//    records, and its updates compare the leader fence, so a deposed leader's cannot land. Just
//    before deleting, one transaction re-checks the record's revision and the fence, under the
//    chunk lock that repairs also take.
// 4. A listing that fails or a scan that fails skips the node or the whole pass: a partial view
//    never makes a copy look unreferenced.
// 5. Objects in the object tiers are copies too, on a pseudo node `tier:<name>`, and the same
//    rules hold: an object no record names (a deleted or overwritten file's, an upload whose
//    record update lost a race) goes by rule 2; one a record no longer names (the chunk was
//    recalled) by rule 3, its age being the object's LastModified.
import type { Logger } from '../../common/log.js';
import { chunkIdOfObjectKey, type ObjectTier } from '../../common/object-tier.js';
import type { Leadership } from '../leader.js';
import type { Kv } from '../meta/kv.js';
import type { NodeRegistry } from '../nodes.js';
import { allocatedAtMs } from './chunk-id.js';
import type { DataNodeOps } from './datanode-ops.js';
import type { ChunkLocks } from './limits.js';
import { gcVerdict, type ListedCopy } from './planner.js';
import { scanChunks } from './scan.js';
import type { HealStatus } from './status.js';

export interface GcDeps {
  kv: Kv;
  registry: NodeRegistry;
  leadership: Leadership;
  ops: DataNodeOps;
  locks: ChunkLocks;
  status: HealStatus;
  log: Logger;
  graceMs: number;
  isInFlight(chunkId: string, nodeId: string): boolean;
  /** The configured object tiers, whose chunk objects are collected too. */
  tiers?: readonly ObjectTier[];
  /** Told of every tier object deleted (the tiering job counts them for `strata tier status`). */
  onTierObjectDeleted?: (tier: string, chunkId: string) => void;
  now?: () => number;
}

/** The pseudo node id of an object tier's copies (records name them in `tier`, not `nodes`). */
export const tierNodeId = (tierName: string) => `tier:${tierName}`;

interface Reference {
  key: string;
  modRevision: number;
  nodes: string[];
}

export class GarbageCollector {
  /** Chunk id -> when this leader first saw it unreferenced. */
  private readonly firstSeenUnreferenced = new Map<string, number>();

  constructor(private readonly deps: GcDeps) {}

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  /** One pass over every live node; resolves to the number of copies deleted. */
  async pass(): Promise<number> {
    const { registry, graceMs } = this.deps;
    const listedAtMs = this.now();
    const nodes = (await registry.list()).filter((n) => n.live);
    const quarantined = registry.corruptReports();
    const copies: ListedCopy[] = [];
    for (const node of nodes) {
      if (!this.deps.leadership.isLeader()) return 0;
      let listed: ListedCopy[];
      try {
        listed = await this.deps.ops.list(node);
      } catch (err) {
        this.deps.log.info({ nodeId: node.nodeId, err: (err as Error).message }, 'GC: cannot list node; skipping it this pass');
        continue;
      }
      // Quarantined copies are no longer listed but still on disk until deleted: old by definition.
      for (const chunkId of quarantined.get(node.nodeId) ?? []) listed.push({ chunkId, nodeId: node.nodeId, storedAtMs: 0 });
      // Only copies old enough for either rule matter (a copy is stored after its allocation).
      copies.push(...listed.filter((c) => (allocatedAtMs(c.chunkId) ?? 0) + graceMs < listedAtMs));
    }
    const objectKeys = new Map<string, string>();
    for (const tier of this.deps.tiers ?? []) {
      if (!this.deps.leadership.isLeader()) return 0;
      try {
        copies.push(...(await this.listTier(tier, listedAtMs, objectKeys)));
      } catch (err) {
        this.deps.log.info({ tier: tier.target.name, err: (err as Error).message }, 'GC: cannot list tier; skipping it this pass');
      }
    }
    const candidates = new Set(copies.map((c) => c.chunkId));
    const scanStartedMs = this.now();
    const references = new Map<string, Reference>();
    for await (const chunk of scanChunks(this.deps.kv)) {
      if (candidates.has(chunk.record.chunkId)) {
        const { nodes, tier } = chunk.record;
        references.set(chunk.record.chunkId, { key: chunk.key, modRevision: chunk.modRevision, nodes: tier ? [...nodes, tierNodeId(tier.tier)] : nodes });
      }
    }
    const now = this.now();
    for (const chunkId of this.firstSeenUnreferenced.keys()) if (!candidates.has(chunkId) || references.has(chunkId)) this.firstSeenUnreferenced.delete(chunkId);
    for (const chunkId of candidates) if (!references.has(chunkId) && !this.firstSeenUnreferenced.has(chunkId)) this.firstSeenUnreferenced.set(chunkId, now);

    const byId = new Map(nodes.map((n) => [n.nodeId, n]));
    let deleted = 0;
    const kept = { unreferencedYoung: 0, staleYoung: 0, inFlight: 0, skipped: 0 };
    for (const copy of copies) {
      const reference = references.get(copy.chunkId);
      const verdict = gcVerdict(copy, {
        nowMs: now,
        graceMs,
        scanStartedMs,
        referencedOn: reference?.nodes,
        firstSeenUnreferencedMs: this.firstSeenUnreferenced.get(copy.chunkId) ?? now,
        inFlight: this.deps.isInFlight(copy.chunkId, copy.nodeId),
      });
      if (verdict === 'keep') {
        if (!reference) kept.unreferencedYoung++;
        else if (!reference.nodes.includes(copy.nodeId)) kept[this.deps.isInFlight(copy.chunkId, copy.nodeId) ? 'inFlight' : 'staleYoung']++;
        continue;
      }
      if (!this.deps.leadership.isLeader()) break;
      const objectKey = objectKeys.get(`${copy.nodeId} ${copy.chunkId}`);
      const tier = this.tierOf(copy.nodeId);
      const remove = objectKey && tier
        ? async () => {
            await tier.delete(objectKey);
            this.deps.onTierObjectDeleted?.(tier.target.name, copy.chunkId);
          }
        : () => this.deps.ops.delete(byId.get(copy.nodeId)!, copy.chunkId);
      if (await this.deleteCopy(copy, reference, remove)) deleted++;
      else kept.skipped++;
    }
    if (deleted > 0 || kept.unreferencedYoung + kept.staleYoung + kept.inFlight + kept.skipped > 0) {
      this.deps.log.info({ listed: copies.length, nodes: nodes.map((n) => n.nodeId).join(','), deleted, kept }, 'GC pass');
    }
    this.deps.status.queue.gcDeleted += deleted;
    if (deleted > 0) this.deps.status.event('gc', `deleted ${deleted} unreferenced or stale chunk copies`);
    return deleted;
  }

  /** A tier's chunk objects old enough to matter, as copies; records each one's key. Throws rather than return part. */
  private async listTier(tier: ObjectTier, listedAtMs: number, objectKeys: Map<string, string>): Promise<ListedCopy[]> {
    const nodeId = tierNodeId(tier.target.name);
    const copies: ListedCopy[] = [];
    const keys: [string, string][] = [];
    for await (const page of tier.list(`${tier.target.prefix}chunks/`)) {
      for (const object of page) {
        const chunkId = chunkIdOfObjectKey(tier.target, object.key);
        if (!chunkId || (allocatedAtMs(chunkId) ?? 0) + this.deps.graceMs >= listedAtMs) continue;
        copies.push({ chunkId, nodeId, storedAtMs: object.lastModifiedMs });
        keys.push([`${nodeId} ${chunkId}`, object.key]);
      }
    }
    for (const [id, key] of keys) objectKeys.set(id, key);
    return copies;
  }

  private tierOf(nodeId: string): ObjectTier | undefined {
    return this.deps.tiers?.find((t) => tierNodeId(t.target.name) === nodeId);
  }

  private async deleteCopy(copy: ListedCopy, reference: Reference | undefined, remove: () => Promise<void>): Promise<boolean> {
    if (!this.deps.locks.tryLock(copy.chunkId)) return false; // a repair is on it: next pass
    try {
      if (reference) {
        // Rule (b): the record must still be as read (so it still does not list this node) and
        // we must still lead, checked in one transaction right before the delete.
        const unchanged = await this.deps.kv.txn({ compares: [{ key: reference.key, modRevision: reference.modRevision }, ...this.deps.leadership.fence()], ops: [] });
        if (!unchanged) return false;
      }
      await remove();
      return true;
    } catch (err) {
      this.deps.log.info({ chunkId: copy.chunkId, nodeId: copy.nodeId, err: (err as Error).message }, 'GC: delete failed; retrying next pass');
      return false;
    } finally {
      this.deps.locks.unlock(copy.chunkId);
    }
  }
}
