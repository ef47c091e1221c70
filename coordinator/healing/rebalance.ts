// Planning a rebalance from live facts: usage per node as the chunk records count it (so a plan
// does not wait on heartbeats to catch up), over live nodes that may take copies.
import type { Kv } from '../meta/kv.js';
import type { NodeRegistry } from '../nodes.js';
import { planRebalance, type BalanceChunk, type Move } from './planner.js';
import { scanChunks } from './scan.js';

export const REBALANCE_THRESHOLD_DEFAULT = 10;
/** Moves per plan at most; a rebalance that needs more plans again when these are done. */
const MOVES_PER_PLAN = 10_000;

export interface RebalanceRequest {
  thresholdPercent: number;
  requestedAtMs: number;
}

export async function planRebalanceNow(kv: Kv, registry: NodeRegistry, thresholdPercent: number): Promise<Move[]> {
  const nodes = registry.placeableNodes();
  const chunks: BalanceChunk[] = [];
  for await (const chunk of scanChunks(kv)) {
    const { chunkId, length, nodes: holders } = chunk.record;
    chunks.push({ key: chunk.key, chunkId, length, nodes: holders });
  }
  return planRebalance(nodes, chunks, thresholdPercent, MOVES_PER_PLAN);
}
