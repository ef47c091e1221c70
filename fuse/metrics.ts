// The mount's metrics and readiness (common/metrics.ts, common/metrics-server.ts): each FUSE op's
// latency (arrival in this process to its answer), the metadata requests that went on to a
// coordinator, and /readyz's check: mounted, and a coordinator session open.
import type { Strata } from '../client/index.js';
import type { ReadinessCheck } from '../common/metrics-server.js';
import type { LatencySeries, RoleMetrics } from '../common/metrics.js';
import { isMounted } from './unmount.js';

/** The latency series of each FUSE op, made on an op's first request and kept. */
export function fuseOpLatency(metrics: RoleMetrics): (op: string) => LatencySeries {
  const family = metrics.latency('strata_fuse_op_duration_seconds', 'FUSE requests from their arrival in the mount process to their answer, by op');
  const byOp = new Map<string, LatencySeries>();
  return (op) => {
    let series = byOp.get(op);
    if (!series) byOp.set(op, (series = family.of({ op })));
    return series;
  };
}

export function mountGauges(metrics: RoleMetrics, strata: Strata): void {
  metrics.counter('strata_client_coordinator_requests_total', 'Metadata requests this mount sent to coordinators (the cache answers the rest)', () => strata.metadataRequests);
  metrics.gauge('strata_mount_session_open', '1 while a session stream to a coordinator is open, else 0', () => (strata.sessionOpen ? 1 : 0));
}

/** Ready: the kernel shows the mount, and a session to a coordinator is open (one is opened if none is). */
export function mountReadiness(mountpoint: string, strata: Strata, rootPath: string): ReadinessCheck {
  return async () => {
    // /proc/self/mountinfo, never the mount itself: this process serves it.
    if (!(await isMounted(mountpoint))) return `not mounted at ${mountpoint}`;
    if (strata.sessionOpen) return undefined;
    // An idle client may have let its stream go: a real request opens one, or says why it cannot.
    try {
      await strata.stat(rootPath);
    } catch (err) {
      return `no coordinator session: ${(err as Error).message}`;
    }
    return strata.sessionOpen ? undefined : 'no coordinator session open';
  };
}
