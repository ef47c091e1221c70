// The data node's metrics and readiness (common/metrics.ts, common/metrics-server.ts): what it
// stores and has free, the scrubber's progress, chunk bytes in and out per transport, and
// /readyz's check: its disk takes a write, and a coordinator accepted a recent heartbeat.
import { open, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { ReadinessCheck } from '../common/metrics-server.js';
import type { CountSeries, RoleMetrics } from '../common/metrics.js';
import type { NodeInfo, ScrubStatus } from '../common/node-info.js';
import type { ByteServerMetrics } from './byte-server.js';
import type { ChunkStore } from './chunk-store.js';

/** A disk probe's answer is reused this long: /readyz polled often costs at most one fsync per interval. */
const DISK_PROBE_INTERVAL_MS = 2_000;

export interface DataNodeMetrics {
  byte: ByteServerMetrics;
  grpcBytes: { bytesIn: CountSeries; bytesOut: CountSeries };
}

/** The request and byte series the data paths add to (byte-server.ts, service.ts). */
export function dataPathMetrics(metrics: RoleMetrics): DataNodeMetrics {
  const received = metrics.counter('strata_data_received_bytes_total', 'Chunk bytes received from clients and peers, by transport (byte, grpc)');
  const sent = metrics.counter('strata_data_sent_bytes_total', 'Chunk bytes sent to clients and peers, by transport (byte, grpc)');
  return {
    byte: {
      requests: { read: metrics.requests('byte', 'read'), write: metrics.requests('byte', 'write'), readEncoding: metrics.requests('byte', 'readEncoding') },
      bytesIn: received.of({ transport: 'byte' }),
      bytesOut: sent.of({ transport: 'byte' }),
    },
    grpcBytes: { bytesIn: received.of({ transport: 'grpc' }), bytesOut: sent.of({ transport: 'grpc' }) },
  };
}

export function dataNodeGauges(metrics: RoleMetrics, deps: { store: ChunkStore; nodeInfo: () => Promise<NodeInfo>; scrub: () => ScrubStatus; registered: () => boolean }): void {
  const { store, scrub } = deps;
  metrics.gauge('strata_datanode_chunks', 'Chunks stored on this node', () => store.usage().chunks);
  metrics.gauge('strata_datanode_stored_bytes', 'Bytes of chunks stored on this node', () => store.usage().usedBytes);
  metrics.gauge('strata_datanode_quarantined_chunks', 'Copies found corrupt and set aside on this node', () => store.quarantined().length);
  metrics.gauge('strata_datanode_capacity_bytes', 'Capacity this node reports (--capacity-bytes, else its disk\'s)', async () => (await deps.nodeInfo()).capacityBytes);
  metrics.gauge('strata_datanode_free_bytes', 'Bytes free for chunks on this node (disk free, within its capacity)', async () => (await deps.nodeInfo()).freeBytes);
  metrics.gauge('strata_datanode_registered', '1 while a coordinator accepted a recent heartbeat, else 0', () => (deps.registered() ? 1 : 0));
  metrics.counter('strata_scrub_passes_total', 'Full scrub passes completed', () => scrub().passes);
  metrics.counter('strata_scrub_chunks_checked_total', 'Chunks the scrubber verified', () => scrub().chunksChecked);
  metrics.counter('strata_scrub_checked_bytes_total', 'Raw bytes the scrubber verified', () => scrub().bytesChecked);
  metrics.counter('strata_scrub_corrupt_found_total', 'Corrupt copies the scrubber found', () => scrub().corruptFound);
  metrics.gauge('strata_scrub_last_pass_timestamp_seconds', 'When the last full scrub pass ended (Unix seconds; 0 = none yet)', () => scrub().lastPassMs / 1000);
}

/** Ready: a file can be created, written and fsynced where chunks are written, and a coordinator accepts heartbeats. */
export function dataNodeReadiness(dataDir: string, registered: () => boolean): ReadinessCheck {
  // Chunks are written in tmp/ and renamed into place (chunk-store.ts): that is the directory to prove.
  const probeFile = path.join(dataDir, 'tmp', 'ready-probe');
  let last: { atMs: number; reason: string | undefined } | undefined;
  let running: Promise<string | undefined> | undefined;
  const probe = async (): Promise<string | undefined> => {
    try {
      const file = await open(probeFile, 'w');
      try {
        await file.write('ready\n');
        await file.sync();
      } finally {
        await file.close();
      }
      await unlink(probeFile);
      return undefined;
    } catch (err) {
      return `data dir not writable: ${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`.trim();
    }
  };
  return async () => {
    if (!last || Date.now() - last.atMs >= DISK_PROBE_INTERVAL_MS) {
      running ??= probe().then((reason) => {
        last = { atMs: Date.now(), reason };
        running = undefined;
        return reason;
      });
      await running;
    }
    if (last!.reason) return last!.reason;
    if (!registered()) return 'not registered: no coordinator accepted a recent heartbeat';
    return undefined;
  };
}
