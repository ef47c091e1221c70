// The self-healing RPCs of the Coordinator service. Any coordinator answers them: Health scans
// and reads the leader's published status; DrainNode, RemoveNode and Rebalance record what was
// asked in the KV, where the leader's loop picks it up.
import { StrataError, invalid } from '../../common/errors.js';
import { unaryHandler } from '../../common/grpc.js';
import type { Leadership } from '../leader.js';
import type { Kv } from '../meta/kv.js';
import * as k from '../meta/keys.js';
import type { NodeRegistry, NodeView } from '../nodes.js';
import type { Healer } from './healer.js';
import { computeHealth, resolvePaths } from './health.js';
import { nodeLinkHandler } from './node-link.js';
import { assess } from './planner.js';
import { REBALANCE_THRESHOLD_DEFAULT, planRebalanceNow, type RebalanceRequest } from './rebalance.js';
import { currentView, scanChunks } from './scan.js';
import { readStatus, type PublishedStatus } from './status.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire requests are validated field by field below */
type Req = any;

const MAX_FILES_DEFAULT = 100;
const MAX_FILES_LIMIT = 10_000;
const IDLE_QUEUE: PublishedStatus['queue'] = { queued: 0, running: 0, repaired: 0, failed: 0, bytesCopied: 0, trimmed: 0, gcDeleted: 0, rebalance: 'idle' };

export interface HealingDeps {
  kv: Kv;
  registry: NodeRegistry;
  leadership: Leadership;
  healer: Healer;
}

export function healingService({ kv, registry, leadership, healer }: HealingDeps) {
  const knownNode = async (nodeId: unknown): Promise<NodeView> => {
    if (typeof nodeId !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(nodeId)) throw invalid(`invalid node id '${String(nodeId)}'`);
    const node = (await registry.list()).find((n) => n.nodeId === nodeId);
    if (!node) throw new StrataError('NotFound', `no data node '${nodeId}' (strata nodes lists them)`);
    return node;
  };

  return {
    NodeLink: nodeLinkHandler(registry),
    Health: unaryHandler(async (req: Req) => {
      const maxFiles = Math.min(Number(req.maxFiles) || MAX_FILES_DEFAULT, MAX_FILES_LIMIT);
      await registry.refreshAdmin();
      const { view } = await currentView(registry);
      const [counts, leader] = await Promise.all([computeHealth(kv, view, maxFiles), leadership.currentLeader().catch(() => '')]);
      // The leader's own status is current; others read what it last published (if it is the
      // leader's: a dead leader's status says nothing about its successor's queue).
      const published = healer.isLeading ? healer.snapshot() : await readStatus(kv);
      const status = published && published.leader === leader ? published : undefined;
      return {
        ...counts,
        queue: status?.queue ?? IDLE_QUEUE,
        leader,
        events: status?.events ?? [],
      };
    }),

    DrainNode: unaryHandler(async (req: Req) => {
      const node = await knownNode(req.nodeId);
      if (node.admin !== 'draining' && node.admin !== 'drained') {
        await registry.setAdminState(node.nodeId, 'draining');
        healer.poke();
      }
      return toWireNode(await knownNode(node.nodeId));
    }),

    RemoveNode: unaryHandler(async (req: Req) => {
      const node = await knownNode(req.nodeId);
      const { view } = await currentView(registry);
      let onlyCopies = 0;
      const examples: number[] = [];
      for await (const chunk of scanChunks(kv)) {
        if (!chunk.record.nodes.includes(node.nodeId)) continue;
        const elsewhere = assess(chunk.record, chunk.replication, view).sources.filter((id) => id !== node.nodeId);
        if (elsewhere.length > 0) continue;
        onlyCopies++;
        if (examples.length < 3 && !examples.includes(chunk.ino)) examples.push(chunk.ino);
      }
      if (onlyCopies > 0) {
        const paths = [...(await resolvePaths(kv, new Set(examples))).values()];
        throw new StrataError(
          'NotEmpty',
          `data node ${node.nodeId} holds the only copy of ${onlyCopies} chunk(s) (of ${paths.join(', ') || 'files'}${examples.length < onlyCopies ? ', ...' : ''}); ` +
            `drain it first (strata node drain ${node.nodeId}) and wait until it is drained`,
        );
      }
      await registry.setAdminState(node.nodeId, 'removed');
      healer.poke();
      return {};
    }),

    Rebalance: unaryHandler(async (req: Req) => {
      const threshold = req.thresholdPercent === undefined || Number(req.thresholdPercent) === 0 ? REBALANCE_THRESHOLD_DEFAULT : Number(req.thresholdPercent);
      if (!Number.isFinite(threshold) || threshold <= 0 || threshold > 100) throw invalid(`invalid threshold ${req.thresholdPercent}%: use more than 0 and at most 100`);
      await registry.refreshAdmin();
      const moves = await planRebalanceNow(kv, registry, threshold);
      if (moves.length === 0) return { movesPlanned: 0, message: `balanced: every node is within ${threshold}% of the mean usage` };
      const request: RebalanceRequest = { thresholdPercent: threshold, requestedAtMs: Date.now() };
      await kv.txn({ compares: [], ops: [{ type: 'put', key: k.REBALANCE_KEY, value: Buffer.from(JSON.stringify(request)) }] });
      healer.poke();
      const leader = await leadership.currentLeader().catch(() => '');
      return {
        movesPlanned: moves.length,
        message: `${moves.length} chunk moves planned; the leader${leader ? ` (${leader})` : ''} runs them: see strata health`,
      };
    }),
  };
}

/** NodeInfo on the wire (fields the proto does not name, such as `live`, are not sent). */
export function toWireNode(n: NodeView) {
  return { ...n, scrub: n.scrub ?? null };
}
