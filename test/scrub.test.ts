// The background scrub end to end, on real processes: one byte of one chunk file rots on one data
// node's disk while nobody reads it; that node's scrubber finds it and quarantines the copy, the
// heartbeat reports it, the leader replaces it from a good copy, `strata health --json` shows what
// happened, and the file reads back byte-identical. Polls are bounded; nothing asserts on time.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { HealthReport, Strata } from '../client/index.js';
import { DataNodeClients } from '../client/datanode-client.js';
import { chunkFilePath, INLINE_MAX_BYTES } from '../datanode/chunk-store.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { waitFor } from './harness/wait.js';
import { readGrantFor } from './harness/grants.js';

const KiB = 1024;
const CHUNK = 512 * KiB; // two 256 KiB codec blocks per chunk; random bytes: stored raw, as a file
const FILES = 4;

describe('scrub finds a rotted copy nobody read; the leader replaces it (embedded, 4 data nodes, RF 3)', () => {
  let cluster: TestCluster;
  let client: Strata;
  const files = new Map<string, Buffer>();

  beforeAll(async () => {
    cluster = await startCluster({
      datanodes: 4,
      deadAfterMs: 2000,
      coordinatorArgs: ['--scan-interval-ms', '300', '--gc-grace-ms', '6000', '--leader-ttl-ms', '2000'],
      // A pass every second, fast enough that a pass over this test's few MiB is short.
      datanodeArgs: ['--scrub-interval-ms', '1000', '--scrub-bytes-per-sec', '64MiB'],
    });
    client = cluster.client();
    await client.mkdir('/scrub', { parents: true });
    for (let i = 0; i < FILES; i++) {
      const data = randomBytes(2 * CHUNK);
      await client.writeFile(`/scrub/f${i}`, data, { replication: 3, chunkSize: CHUNK });
      files.set(`/scrub/f${i}`, data);
    }
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  test('flip one byte in a chunk file on disk: scrub reports it, the leader repairs it, health shows it, the file reads back', async () => {
    const path = '/scrub/f1';
    const chunk = (await client.locate(path))[1]!;
    const victim = chunk.nodes[0]!;
    const victimIndex = Number(victim.slice(2)) - 1;
    const file = chunkFilePath(cluster.dataDir(victimIndex), chunk.chunkId);
    expect(statSync(file).size).toBeGreaterThan(INLINE_MAX_BYTES);
    const scrubbedBefore = (await client.nodes()).find((n) => n.nodeId === victim)!.scrub?.corruptFound ?? 0;
    expect(scrubbedBefore).toBe(0);

    // No read through the cluster before or after: only the scrubber can find this.
    const bytes = readFileSync(file);
    bytes[bytes.length - 1000] ^= 0x01; // inside the second block's payload
    writeFileSync(file, bytes);

    // The node's scrub counter is cumulative, so this poll cannot miss a report the leader
    // cleared quickly (the corrupt list empties once the copy is deleted).
    await waitFor('the victim to report a corrupt chunk found by scrub', async () => {
      const node = (await client.nodes()).find((n) => n.nodeId === victim)!;
      return (node.scrub?.corruptFound ?? 0) >= 1;
    }, 120_000);
    // Scrub quarantined the copy: it is no longer where chunk files are served from.
    expect(existsSync(file) && readFileSync(file).equals(bytes)).toBe(false);

    const report = await waitFor('the corrupt copy replaced', async () => {
      const h = await client.health();
      const reporter = (await client.nodes()).find((n) => n.nodeId === victim)!;
      const settled = h.healthy === h.chunks && h.underReplicated === 0 && h.missing === 0 && h.corrupt === 0 && h.queue.running === 0;
      return settled && (reporter.corruptChunks ?? []).length === 0 && h;
    }, 120_000);
    expect(report.chunks).toBe(2 * FILES);
    expect(report.queue.repaired).toBeGreaterThanOrEqual(1);

    // The record lists three good copies: either without the victim, or with a fresh copy on it.
    const after = (await client.locate(path))[1]!;
    expect(after.chunkId).toBe(chunk.chunkId);
    expect(new Set(after.nodes).size).toBe(3);
    const nodes = await client.nodes();
    const datanodes = new DataNodeClients({ writeTimeoutMs: 10_000, readTimeoutMs: 10_000 });
    const grant = await readGrantFor(cluster, client, path, 1);
    try {
      for (const nodeId of after.nodes) {
        const parts: Buffer[] = [];
        for await (const part of datanodes.readChunk(nodes.find((n) => n.nodeId === nodeId)!, chunk.chunkId, 0, 0, undefined, { grant })) parts.push(part);
        expect(Buffer.concat(parts).equals(files.get(path)!.subarray(CHUNK)), `${chunk.chunkId} on ${nodeId}`).toBe(true);
      }
    } finally {
      datanodes.close();
    }

    // The CLI shows the event (found by scrub, reported, repaired).
    const cli = await cluster.cli(['health', '--json']);
    expect(cli.stderr).toBe('');
    expect(cli.code).toBe(0);
    const shown = JSON.parse(cli.stdout) as HealthReport;
    const corruptEvents = shown.events.filter((e) => e.kind === 'corrupt');
    expect(corruptEvents.map((e) => e.message)).toContainEqual(expect.stringContaining(`${victim} reports chunk ${chunk.chunkId} corrupt`));
    expect(shown.events.filter((e) => e.kind === 'repaired').map((e) => e.message)).toContainEqual(expect.stringContaining(chunk.chunkId));

    for (const [p, data] of files) expect((await client.readFile(p)).equals(data), p).toBe(true);
  });
});
