// What the self-healing jobs decide, as pure functions over plain data, so every rule is unit
// tested without a cluster (planner.test.ts): how healthy a chunk is, what repairing it takes and
// how urgent that is, whether a listed copy is garbage, and which moves even out usage.
import type { ChunkRecord } from '../meta/types.js';
import { allocatedAtMs } from './chunk-id.js';

/** Liveness and admin facts the decisions depend on. */
export interface ClusterView {
  live: Set<string>;
  /** Draining or drained: their copies are kept as sources but do not count. */
  leaving: Set<string>;
  /** nodeId -> chunk ids it reported corrupt (quarantined). */
  corrupt: Map<string, Set<string>>;
  /** Live nodes that may take new copies. */
  placeable: number;
}

export interface Assessment {
  /** Live, uncorrupted copies on nodes that stay: what counts towards the replication. */
  good: string[];
  /** Live, uncorrupted copies anywhere, good ones first: where a new copy can come from. */
  sources: string[];
  corruptOn: string[];
  dead: string[];
  leaving: string[];
  /** Copies wanted: the file's replication, capped by the nodes that could hold one. */
  target: number;
  replication: number;
  /** The bytes are in an object tier: no local copy is wanted (the tiering job owns the chunk). */
  tiered: boolean;
}

export function assess(record: Pick<ChunkRecord, 'chunkId' | 'nodes' | 'tier'>, replication: number, view: ClusterView): Assessment {
  const tiered = record.tier !== undefined;
  // A tiered chunk wants no local copy; any left on nodes are garbage for GC, not repair sources.
  const wanted = tiered ? 0 : replication;
  const a: Assessment = { good: [], sources: [], corruptOn: [], dead: [], leaving: [], target: Math.min(wanted, view.placeable), replication: wanted, tiered };
  const leavingSources: string[] = [];
  for (const nodeId of new Set(record.nodes)) {
    if (!view.live.has(nodeId)) a.dead.push(nodeId);
    else if (view.corrupt.get(nodeId)?.has(record.chunkId)) a.corruptOn.push(nodeId);
    else if (view.leaving.has(nodeId)) {
      a.leaving.push(nodeId);
      leavingSources.push(nodeId);
    } else a.good.push(nodeId);
  }
  a.sources = [...a.good, ...leavingSources];
  return a;
}

export interface ChunkHealth {
  healthy: boolean;
  underReplicated: boolean;
  missing: boolean;
  corrupt: boolean;
  overReplicated: boolean;
}

/** Health against the file's replication factor itself (not capped: too few nodes is a finding). */
export function chunkHealth(a: Assessment, replication: number): ChunkHealth {
  if (a.tiered) return { missing: false, corrupt: false, underReplicated: false, overReplicated: false, healthy: true };
  const missing = a.sources.length === 0;
  const corrupt = a.corruptOn.length > 0;
  return {
    missing,
    corrupt,
    underReplicated: !missing && a.good.length < replication,
    overReplicated: a.good.length > replication,
    healthy: !corrupt && a.good.length >= replication,
  };
}

export interface ChunkPlan {
  /** New copies to make. */
  copies: number;
  sources: string[];
  /** Never a target: every node in the record, and nodes holding a corrupt copy. */
  exclude: string[];
  /** Leaving copies, dropped from the record in the transaction that adds the new copies... */
  drop: string[];
  /** ...but only if at least this many good copies result (else the record keeps them). */
  dropNeedsGood: number;
  /**
   * Corrupt copies serve nobody: dropped whenever a good copy remains. Deleting one frees its
   * node to take a fresh copy (with as many nodes as the replication, it is the only place).
   */
  dropCorrupt: string[];
  /**
   * Dead copies, dropped only once the file's full replication is met without them: with too
   * few nodes to place on, a dead node's copy is worth keeping in case it comes back.
   */
  dropDead: string[];
  dropDeadNeedsGood: number;
  /** Surplus good copies to drop (the executor picks the fullest nodes). */
  trim: number;
  /** Lower runs first: the fewest good copies left is the most endangered. */
  priority: number;
}

/**
 * What to do about one chunk, or undefined when nothing is to be done (healthy, or missing: with
 * no live uncorrupted copy there is nothing to copy from). Corrupt copies are dropped from the
 * record while a good one remains; leaving ones once the chunk has its target of good copies
 * without them; dead ones once it has the file's whole replication.
 */
export function planChunk(a: Assessment): ChunkPlan | undefined {
  if (a.sources.length === 0 || a.tiered) return undefined;
  const copies = Math.max(0, a.target - a.good.length);
  const drop = a.leaving;
  const trim = Math.max(0, a.good.length - a.target);
  const dropDeadNeedsGood = a.replication;
  // Reachable only when enough nodes remain to hold the full replication.
  const deadDroppable = a.dead.length > 0 && a.target >= dropDeadNeedsGood;
  if (copies === 0 && drop.length === 0 && a.corruptOn.length === 0 && trim === 0 && !deadDroppable) return undefined;
  return {
    copies,
    sources: a.sources,
    exclude: [...a.good, ...drop, ...a.corruptOn, ...a.dead],
    drop,
    dropNeedsGood: Math.max(1, a.target),
    dropCorrupt: a.corruptOn,
    dropDead: a.dead,
    dropDeadNeedsGood,
    trim,
    // 1 good copy before 2; copy work before clean-up work.
    priority: copies > 0 ? a.good.length : 1000 + a.good.length,
  };
}

/** Copies the executor can actually place decide whether drops happen: never below the target. */
export function nodesAfterRepair(record: Pick<ChunkRecord, 'nodes'>, plan: ChunkPlan, goodBefore: number, added: string[], trimmed: string[]): string[] {
  const goodAfter = goodBefore + added.length - trimmed.length;
  const dropping = new Set([
    ...trimmed,
    ...(goodAfter >= 1 ? plan.dropCorrupt : []),
    ...(goodAfter >= plan.dropNeedsGood ? plan.drop : []),
    ...(goodAfter >= plan.dropDeadNeedsGood ? plan.dropDead : []),
  ]);
  return [...record.nodes.filter((n) => !dropping.has(n)), ...added.filter((n) => !record.nodes.includes(n))];
}

// ------------------------------------------------------------------ garbage collection

export interface ListedCopy {
  chunkId: string;
  nodeId: string;
  /** When the node stored this copy (0 = unknown, e.g. a quarantined copy: treated as old). */
  storedAtMs: number;
}

export interface GcFacts {
  nowMs: number;
  graceMs: number;
  /** When the metadata read that found the references began (after the listing ended). */
  scanStartedMs: number;
  /** Nodes the chunk's record lists, or undefined when no record references the chunk. */
  referencedOn: string[] | undefined;
  /** When the leader first saw this chunk unreferenced (this pass, if never before). */
  firstSeenUnreferencedMs: number;
  /** A repair or move into this node for this chunk is running. */
  inFlight: boolean;
}

export type GcVerdict = 'delete-unreferenced' | 'delete-stale-copy' | 'keep';

/**
 * Whether a listed copy is garbage. The argument for safety is in gc.ts; in short: (a) an
 * unreferenced chunk allocated more than the grace before the metadata read can no longer be
 * committed (CommitChunk refuses ids older than half the grace), so no reference can appear
 * later; (b) a copy on a node its record does not list, older than the grace, is a leftover
 * unless a repair is putting it there now.
 */
export function gcVerdict(copy: ListedCopy, facts: GcFacts): GcVerdict {
  const { nowMs, graceMs } = facts;
  if (facts.referencedOn === undefined) {
    const allocated = allocatedAtMs(copy.chunkId) ?? 0;
    const oldEnough = allocated + graceMs < facts.scanStartedMs;
    const unreferencedLongEnough = facts.firstSeenUnreferencedMs + graceMs <= nowMs;
    return oldEnough && unreferencedLongEnough ? 'delete-unreferenced' : 'keep';
  }
  if (facts.referencedOn.includes(copy.nodeId)) return 'keep';
  return copy.storedAtMs + graceMs < nowMs && !facts.inFlight ? 'delete-stale-copy' : 'keep';
}

// ------------------------------------------------------------------ rebalance

export interface BalanceNode {
  nodeId: string;
  capacityBytes: number;
}

export interface BalanceChunk {
  key: string;
  chunkId: string;
  length: number;
  nodes: string[];
}

export interface Move {
  key: string;
  chunkId: string;
  from: string;
  to: string;
  length: number;
}

/** Used bytes per node as the chunk records count them (copies on the given nodes only). */
export function usageOf(nodes: BalanceNode[], chunks: BalanceChunk[]): Map<string, number> {
  const used = new Map(nodes.map((n) => [n.nodeId, 0]));
  for (const chunk of chunks) for (const nodeId of chunk.nodes) if (used.has(nodeId)) used.set(nodeId, used.get(nodeId)! + chunk.length);
  return used;
}

/**
 * Moves from the fullest node (used/capacity) to the emptiest until every node is within
 * `thresholdPercent` of the mean. A move never puts a second copy on a node, and never makes
 * the target fuller than the source was: each one narrows the spread.
 */
export function planRebalance(nodes: BalanceNode[], chunks: BalanceChunk[], thresholdPercent: number, maxMoves: number): Move[] {
  const eligible = nodes.filter((n) => n.capacityBytes > 0);
  if (eligible.length < 2) return [];
  const used = usageOf(eligible, chunks);
  const capacity = new Map(eligible.map((n) => [n.nodeId, n.capacityBytes]));
  const pct = (nodeId: string, extra = 0) => (100 * (used.get(nodeId)! + extra)) / capacity.get(nodeId)!;
  const totalUsed = [...used.values()].reduce((s, v) => s + v, 0);
  const mean = (100 * totalUsed) / eligible.reduce((s, n) => s + n.capacityBytes, 0);
  const onNode = new Map<string, BalanceChunk[]>(eligible.map((n) => [n.nodeId, []]));
  for (const chunk of chunks) for (const nodeId of chunk.nodes) onNode.get(nodeId)?.push(chunk);
  for (const list of onNode.values()) list.sort((a, b) => b.length - a.length);
  const holders = new Map(chunks.map((c) => [c.key, new Set(c.nodes)]));
  const moves: Move[] = [];
  while (moves.length < maxMoves) {
    const byPct = eligible.map((n) => n.nodeId).sort((a, b) => pct(b) - pct(a));
    const fullest = byPct[0]!;
    const emptiest = byPct[byPct.length - 1]!;
    if (pct(fullest) - mean <= thresholdPercent && mean - pct(emptiest) <= thresholdPercent) break;
    const list = onNode.get(fullest)!;
    // The largest chunk that leaves the target below where the source was: the spread narrows
    // with every move, so planning ends.
    const index = list.findIndex((c) => !holders.get(c.key)!.has(emptiest) && pct(emptiest, c.length) < pct(fullest));
    if (index < 0) break;
    const [chunk] = list.splice(index, 1);
    holders.get(chunk!.key)!.delete(fullest);
    holders.get(chunk!.key)!.add(emptiest);
    onNode.get(emptiest)!.push(chunk!);
    used.set(fullest, used.get(fullest)! - chunk!.length);
    used.set(emptiest, used.get(emptiest)! + chunk!.length);
    moves.push({ key: chunk!.key, chunkId: chunk!.chunkId, from: fullest, to: emptiest, length: chunk!.length });
  }
  return moves;
}
