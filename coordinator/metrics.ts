// The coordinator's metrics and readiness (common/metrics.ts, common/metrics-server.ts): gauges
// read at scrape time from the leader's jobs and the node registry, and /readyz's check.
import { withDeadline, type ReadinessCheck } from '../common/metrics-server.js';
import type { RoleMetrics } from '../common/metrics.js';
import type { Healer } from './healing/healer.js';
import type { Leadership } from './leader.js';
import type { Kv, KvTimer } from './meta/kv.js';
import { etcdEngineOf } from './meta/open-kv.js';
import type { NodeRegistry } from './nodes.js';
import type { TieringJob } from './tiering/job.js';

/** A key no one writes: reading it is a real round trip to the store that changes nothing. */
const READY_PROBE_KEY = 'ready-probe';
/** Each of the two reads gets this long (within /readyz's own bound). */
const READ_DEADLINE_MS = 900;

/** The metadata store's request timer: one series per engine and op, made once. */
export function metaStoreTimer(metrics: RoleMetrics): (engine: string) => KvTimer {
  const family = metrics.latency('strata_meta_request_duration_seconds', 'Metadata store (etcd or LevelDB) request latency, by engine and op, retries included');
  return (engine) => {
    const byOp = new Map<string, ReturnType<typeof family.of>>();
    return (op) => {
      let series = byOp.get(op);
      if (!series) byOp.set(op, (series = family.of({ engine, op })));
      return series;
    };
  };
}

export function coordinatorGauges(metrics: RoleMetrics, deps: { leadership: Leadership; healer: Healer; tiering: TieringJob; nodes: NodeRegistry }): void {
  const { leadership, healer, tiering, nodes } = deps;
  metrics.gauge('strata_leader', '1 while this coordinator is the elected leader (runs repair, GC, tiering), else 0', () => (leadership.isLeader() ? 1 : 0));
  metrics.gauge('strata_datanodes_live', 'Data nodes this coordinator sees live', () => nodes.liveNodes().length);
  // The leader's queues and findings; 0 on the others (dashboards take the max over coordinators).
  metrics.gauge('strata_repair_queue_length', 'Chunk repairs and moves queued on the leader', () => (healer.isLeading ? healer.snapshot().queue.queued : 0));
  metrics.gauge('strata_repair_running', 'Chunk repairs and moves under way on the leader', () => (healer.isLeading ? healer.snapshot().queue.running : 0));
  metrics.gauge('strata_tiering_queue_length', 'Chunks queued on the leader to move to an object tier or back', () => {
    if (!tiering.isLeading) return 0;
    const status = tiering.snapshot();
    return status.queued + status.recallQueued;
  });
  metrics.gauge('strata_chunks', 'Chunks in the leader\'s last scan', () => healer.lastScan?.chunks ?? 0);
  metrics.gauge('strata_chunks_under_replicated', 'Chunks with fewer good copies than their replication, at the leader\'s last scan', () => healer.lastScan?.underReplicated ?? 0);
  metrics.gauge('strata_chunks_missing', 'Chunks with no live, uncorrupted copy, at the leader\'s last scan', () => healer.lastScan?.missing ?? 0);
  metrics.gauge('strata_chunks_corrupt', 'Chunks with a copy reported corrupt, at the leader\'s last scan', () => healer.lastScan?.corrupt ?? 0);
}

/** Ready: the metadata store answers a real read, and a leader is known (etcd: read from the election). */
export function coordinatorReadiness(kv: Kv, leadership: Leadership): ReadinessCheck {
  // Under the etcd engine's cache: the read must reach etcd itself.
  const store: Kv = etcdEngineOf(kv) ?? kv;
  return async () => {
    try {
      await withDeadline(store.getMany([READY_PROBE_KEY]), READ_DEADLINE_MS, 'the read');
    } catch (err) {
      return `metadata store unreachable: ${(err as Error).message}`;
    }
    const leader = await withDeadline(leadership.currentLeader(), READ_DEADLINE_MS, 'the election').catch((err: Error) => `error: ${err.message}`);
    if (leader.startsWith('error: ')) return `no leader known: ${leader.slice(7)}`;
    if (!leader) return 'no leader known: no coordinator holds the election yet';
    return undefined;
  };
}
