// Self-healing on real processes, faults injected (kill -9, restarts, abandoned writes): repair
// after node loss, re-admission, GC racing writes, drain, rm, rebalance, health through the CLI,
// and the leader dying in the middle of a repair, another coordinator finishing it. Short
// grace periods; polls are bounded, nothing asserts on time.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Strata, type HealthReport } from '../client/index.js';
import { CoordinatorClient } from '../client/coordinator-client.js';
import { DataNodeClients } from '../client/datanode-client.js';
import { DataNodeChannels, callUnary } from '../common/grpc.js';
import { chunkFilePath } from '../datanode/chunk-store.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { waitFor } from './harness/wait.js';
import { readGrantFor } from './harness/grants.js';

const KiB = 1024;
const CHUNK = 128 * KiB; // random 128 KiB chunks encode past the inline limit: each copy is a file
const GC_GRACE_MS = 6000;
const HEALING_FLAGS = ['--scan-interval-ms', '300', '--gc-grace-ms', String(GC_GRACE_MS), '--repair-concurrency', '4', '--leader-ttl-ms', '2000'];

/** Writes `count` random files of `chunks` chunks each (a fraction: a short last chunk), `parallel` at a time; returns path -> content. */
async function writeFiles(client: Strata, prefix: string, count: number, chunks: number, options: { chunkSize?: number; replication?: number; parallel?: number } = {}): Promise<Map<string, Buffer>> {
  const { chunkSize = CHUNK, replication = 3, parallel = 1 } = options;
  const files = new Map<string, Buffer>();
  await client.mkdir(prefix, { parents: true });
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const data = randomBytes(Math.round(chunks * chunkSize));
      await client.writeFile(`${prefix}/f${i}`, data, { replication, chunkSize });
      files.set(`${prefix}/f${i}`, data);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return files;
}

async function expectReadsBack(client: Strata, files: Map<string, Buffer>): Promise<void> {
  for (const [path, data] of files) expect((await client.readFile(path)).equals(data), path).toBe(true);
}

const nodeIndex = (nodeId: string) => Number(nodeId.slice(2)) - 1;
const copyOnDisk = (cluster: TestCluster, nodeId: string, chunkId: string) => existsSync(chunkFilePath(cluster.dataDir(nodeIndex(nodeId)), chunkId));

/** Every chunk of every file: records list `replication` distinct nodes, each holding the copy. */
async function expectFullyReplicated(cluster: TestCluster, client: Strata, files: Iterable<string>, replication: number, liveIds: string[]): Promise<void> {
  for (const path of files) {
    for (const chunk of await client.locate(path)) {
      expect(new Set(chunk.nodes).size, `${path} chunk ${chunk.index}`).toBeGreaterThanOrEqual(replication);
      for (const nodeId of chunk.nodes.filter((n) => liveIds.includes(n))) expect(copyOnDisk(cluster, nodeId, chunk.chunkId), `${chunk.chunkId} on ${nodeId}`).toBe(true);
    }
  }
}

const settled = (h: HealthReport) => h.underReplicated === 0 && h.missing === 0 && h.corrupt === 0 && h.queue.running === 0;

// The size: 300 MiB in 200 files of 1.5 MiB, 1 MiB chunks: 400 chunks, 900 MiB stored.
const SPEC_FILES = 200;
const SPEC_CHUNK = 1024 * KiB;
const SPEC_CHUNKS = 2 * SPEC_FILES;
const SPEC_WAIT_MS = 300_000;
const SPEC_TEST_MS = 2 * SPEC_WAIT_MS;

describe('300 MiB in 200 files: repair after node loss, re-admission, health and its exit codes (embedded, 4 data nodes, RF 3)', () => {
  let cluster: TestCluster;
  let client: Strata;
  let files: Map<string, Buffer>;

  beforeAll(async () => {
    cluster = await startCluster({ datanodes: 4, deadAfterMs: 2000, coordinatorArgs: HEALING_FLAGS });
    client = cluster.client();
    files = await writeFiles(client, '/heal', SPEC_FILES, 1.5, { chunkSize: SPEC_CHUNK, parallel: 4 });
  }, 600_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  test('health --json on a healthy cluster: the shape, counts, exit 0', async () => {
    const result = await cluster.cli(['health', '--json']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as HealthReport;
    expect(report).toMatchObject({ chunks: SPEC_CHUNKS, healthy: SPEC_CHUNKS, underReplicated: 0, missing: 0, corrupt: 0, overReplicated: 0, files: [] });
    expect(report.leader).toBe(cluster.coordinators[0].address);
    expect(Object.keys(report.queue).sort()).toEqual(['bytesCopied', 'failed', 'gcDeleted', 'queued', 'rebalance', 'repaired', 'running', 'trimmed']);
    expect(Array.isArray(report.events)).toBe(true);
    expect(report.scannedAtMs).toBeGreaterThan(0);
    const fsck = await cluster.cli(['fsck']);
    expect(fsck.code).toBe(0);
    expect(fsck.stdout).toMatch(/HEALTHY/);
  });

  test('a corrupt copy, found on a read and quarantined, is replaced from a good copy and deleted', async () => {
    const [path] = files.keys();
    const [chunk] = await client.locate(path!);
    const victim = chunk!.nodes[0]!;
    const file = chunkFilePath(cluster.dataDir(nodeIndex(victim)), chunk!.chunkId);
    const bytes = readFileSync(file);
    bytes[bytes.length - 100] ^= 0xff; // inside the last block's payload
    writeFileSync(file, bytes);
    const datanodes = new DataNodeClients({ writeTimeoutMs: 10_000, readTimeoutMs: 10_000 });
    const node = (await client.nodes()).find((n) => n.nodeId === victim)!;
    const grant = await readGrantFor(cluster, client, path!, 0);
    const read = async () => {
      for await (const _ of datanodes.readChunk(node, chunk!.chunkId, 0, 0, undefined, { grant })) void _;
    };
    await expect(read()).rejects.toMatchObject({ kind: 'Corrupt' });
    datanodes.close();
    await waitFor('the corrupt copy reported', async () => (await client.nodes()).find((n) => n.nodeId === victim)!.corruptChunks?.includes(chunk!.chunkId));
    const report = await waitFor('the corrupt copy replaced', async () => {
      const h = await client.health();
      const reporter = (await client.nodes()).find((n) => n.nodeId === victim)!;
      return h.healthy === SPEC_CHUNKS && settled(h) && (reporter.corruptChunks ?? []).length === 0 && h;
    }, SPEC_WAIT_MS);
    expect(report.events.map((e) => e.kind)).toContain('corrupt');
    const [after] = await client.locate(path!);
    expect(after!.nodes).not.toContain(victim);
    expect(new Set(after!.nodes).size).toBe(3);
    await expectReadsBack(client, files);
  }, SPEC_TEST_MS);

  test('kill -9 a data node: its chunks are re-replicated from survivors; every file reads back identical', async () => {
    cluster.datanodes[0].kill9();
    await waitFor('dn1 dead', async () => (await client.nodes()).find((n) => n.nodeId === 'dn1')?.state === 'dead');
    const report = await waitFor('repair after dn1 died', async () => {
      const h = await client.health();
      return h.chunks === SPEC_CHUNKS && h.healthy === SPEC_CHUNKS && settled(h) && h;
    }, SPEC_WAIT_MS);
    expect(report.events.map((e) => e.kind)).toContain('node-dead');
    await expectReadsBack(client, files);
    // Repaired records no longer list the dead node.
    for (const path of files.keys()) for (const chunk of await client.locate(path)) expect(chunk.nodes).not.toContain('dn1');
    await expectFullyReplicated(cluster, client, files.keys(), 3, ['dn2', 'dn3', 'dn4']);
  }, SPEC_TEST_MS);

  test('the dead node comes back: re-admitted, its stale copies are collected after the grace', async () => {
    const before = new Map<string, string[]>();
    for (const path of files.keys()) for (const chunk of await client.locate(path)) before.set(chunk.chunkId, chunk.nodes);
    const stale = [...before.keys()].filter((chunkId) => copyOnDisk(cluster, 'dn1', chunkId));
    expect(stale.length).toBeGreaterThan(0);
    cluster.datanodes[0].start();
    await cluster.waitForLiveNodes(4);
    await waitFor('stale copies on dn1 deleted', async () => stale.every((chunkId) => !copyOnDisk(cluster, 'dn1', chunkId) || before.get(chunkId)!.includes('dn1')), SPEC_WAIT_MS);
    await expectReadsBack(client, files);
  }, SPEC_TEST_MS);

  test('then kill a second node: nothing is lost', async () => {
    cluster.datanodes[1].kill9();
    await waitFor('dn2 dead', async () => (await client.nodes()).find((n) => n.nodeId === 'dn2')?.state === 'dead');
    await waitFor('repair after dn2 died', async () => {
      const h = await client.health();
      return h.healthy === SPEC_CHUNKS && settled(h) && h;
    }, SPEC_WAIT_MS);
    await expectReadsBack(client, files);
    const result = await cluster.cli(['health']);
    expect(result.code).toBe(0);
  }, SPEC_TEST_MS);

  test('chunks with no live copy: health lists the file as missing and exits 11 until the node is back', async () => {
    await client.writeFile('/heal/single', randomBytes(CHUNK), { replication: 1, chunkSize: CHUNK });
    const [chunk] = await client.locate('/heal/single');
    const holder = cluster.datanodes[nodeIndex(chunk!.nodes[0]!)]!;
    holder.kill9();
    const report = await waitFor('the single copy reported missing', async () => {
      const h = await client.health();
      return h.missing === 1 && h;
    });
    expect(report.files).toContainEqual({ path: '/heal/single', ino: expect.any(Number), state: 'missing', chunks: 1 });
    const result = await cluster.cli(['health', '--json']);
    expect(result.code).toBe(11);
    expect(JSON.parse(result.stdout).missing).toBe(1);
    holder.start();
    await waitFor('the single copy back', async () => (await client.health()).missing === 0);
    expect((await cluster.cli(['health'])).code).toBe(0);
  });
});

describe('GC, rm, drain and rebalance (embedded, 4 data nodes, RF 3)', () => {
  let cluster: TestCluster;
  let client: Strata;
  let files: Map<string, Buffer>;

  beforeAll(async () => {
    cluster = await startCluster({ datanodes: 4, deadAfterMs: 2000, coordinatorArgs: HEALING_FLAGS, datanodeArgs: ['--capacity-bytes', '16MiB'] });
    client = cluster.client();
    files = await writeFiles(client, '/keep', 6, 2);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  test('GC: deleted, overwritten and abandoned chunks vanish from every node; files written meanwhile all read back', async () => {
    const doomed = await writeFiles(client, '/doomed', 4, 2);
    const garbage: string[] = [];
    for (const path of doomed.keys()) for (const chunk of await client.locate(path)) garbage.push(chunk.chunkId);
    // Deleted files, and overwritten ones (their old chunks become garbage).
    await client.rm('/doomed/f0');
    await client.rm('/doomed/f1');
    doomed.set('/doomed/f2', randomBytes(2 * CHUNK));
    await client.writeFile('/doomed/f2', doomed.get('/doomed/f2')!, { chunkSize: CHUNK });
    doomed.delete('/doomed/f0');
    doomed.delete('/doomed/f1');
    // A write abandoned half way: stored on nodes, never committed.
    const coordinator = new CoordinatorClient({ addresses: [cluster.coordinatorList], callTimeoutMs: 5000, failoverTimeoutMs: 5000 });
    const datanodes = new DataNodeClients({ writeTimeoutMs: 10_000, readTimeoutMs: 10_000 });
    const scratch = await client.create('/doomed/abandoned', { chunkSize: CHUNK });
    const placement = await coordinator.call<{ chunkId: string; pipeline: { nodeId: string; address: string }[]; grant: string }>('AllocateChunk', { ino: scratch.ino, index: 0 });
    const stored = await datanodes.writeChunk(placement.pipeline, placement.chunkId, randomBytes(CHUNK), placement.grant);
    expect(stored.storedOn.length).toBe(3);
    garbage.push(placement.chunkId);
    const live = new Set<string>();
    for (const path of doomed.keys()) for (const chunk of await client.locate(path)) live.add(chunk.chunkId);
    const collectable = garbage.filter((chunkId) => !live.has(chunkId));
    expect(collectable.length).toBe(2 * 2 + 2 + 1);

    // The race: files written while GC runs; each must read back whole afterwards.
    const concurrent = new Map<string, Buffer>();
    const writing = (async () => {
      for (let i = 0; i < 12; i++) {
        const data = randomBytes(CHUNK * (1 + (i % 2)));
        await client.writeFile(`/keep/during-${i}`, data, { chunkSize: CHUNK });
        concurrent.set(`/keep/during-${i}`, data);
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    const onAnyNode = (chunkId: string) => cluster.datanodes.some((_, i) => copyOnDisk(cluster, `dn${i + 1}`, chunkId));
    await waitFor('garbage collected on every node', async () => collectable.every((chunkId) => !onAnyNode(chunkId)));
    await writing;
    // A commit after the chunk's window is refused (retryable), so GC can never race it.
    await new Promise((r) => setTimeout(r, GC_GRACE_MS / 2 + 500));
    const late = coordinator.call('CommitChunk', { ino: scratch.ino, index: 0, chunkId: placement.chunkId, length: CHUNK, nodes: stored.storedOn, grant: placement.grant });
    await expect(late).rejects.toMatchObject({ kind: 'Conflict' });
    coordinator.close();
    datanodes.close();
    await expectReadsBack(client, concurrent);
    await expectReadsBack(client, doomed);
    await expectReadsBack(client, files);
    for (const path of [...concurrent.keys(), ...doomed.keys(), ...files.keys()]) {
      for (const chunk of await client.locate(path)) for (const nodeId of chunk.nodes) expect(copyOnDisk(cluster, nodeId, chunk.chunkId)).toBe(true);
    }
    for (const [path, data] of concurrent) files.set(path, data);
    for (const [path, data] of doomed) files.set(path, data);
  });

  test('node rm refuses while the node holds the only copy; drain moves everything off; then rm succeeds', async () => {
    await client.writeFile('/keep/single', randomBytes(2 * CHUNK), { replication: 1, chunkSize: CHUNK });
    files.set('/keep/single', (await client.readFile('/keep/single')));
    const victim = (await client.locate('/keep/single'))[0]!.nodes[0]!;
    const refused = await cluster.cli(['node', 'rm', victim]);
    expect(refused.code).toBe(5);
    expect(refused.stderr).toMatch(new RegExp(`^strata: data node ${victim} holds the only copy of \\d+ chunk\\(s\\) \\(of /keep/single.*drain it first`));
    expect(refused.stderr.split('\n').filter(Boolean)).toHaveLength(1);

    const drain = await cluster.cli(['node', 'drain', victim]);
    expect(drain.code).toBe(0);
    expect(drain.stdout).toMatch(/draining/);
    await waitFor(`${victim} drained`, async () => {
      const nodes = JSON.parse((await cluster.cli(['nodes', '--json'])).stdout) as { nodeId: string; state: string }[];
      return nodes.find((n) => n.nodeId === victim)?.state === 'drained';
    });
    for (const path of files.keys()) for (const chunk of await client.locate(path)) expect(chunk.nodes).not.toContain(victim);
    const others = ['dn1', 'dn2', 'dn3', 'dn4'].filter((n) => n !== victim);
    await expectFullyReplicated(cluster, client, [...files.keys()].filter((p) => p !== '/keep/single'), 3, others);
    await expectReadsBack(client, files);
    cluster.datanodes[nodeIndex(victim)]!.kill9();
    const rm = await cluster.cli(['node', 'rm', victim]);
    expect(rm.stderr).toBe('');
    expect(rm.code).toBe(0);
    const nodes = JSON.parse((await cluster.cli(['nodes', '--json'])).stdout) as { nodeId: string }[];
    expect(nodes.map((n) => n.nodeId)).not.toContain(victim);
  });

  test('rebalance after adding an empty node evens usage, never below the replication factor', async () => {
    const added = await cluster.addDatanode();
    const threshold = 5;
    const result = await cluster.cli(['rebalance', '--threshold', String(threshold), '--json']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const reply = JSON.parse(result.stdout) as { movesPlanned: number; message: string };
    expect(reply.movesPlanned).toBeGreaterThan(0);
    const replicated = [...files.keys()].filter((p) => p !== '/keep/single');
    await waitFor('rebalance done', async () => {
      // Never below RF at any point we look.
      for (const path of replicated) for (const chunk of await client.locate(path)) expect(new Set(chunk.nodes).size).toBeGreaterThanOrEqual(3);
      const h = await client.health();
      return h.queue.rebalance.startsWith('idle') && h.queue.queued === 0 && h.queue.running === 0;
    });
    const onAdded = new Set<string>();
    const usage = new Map<string, number>();
    for (const path of files.keys()) {
      for (const chunk of await client.locate(path)) {
        for (const nodeId of chunk.nodes) usage.set(nodeId, (usage.get(nodeId) ?? 0) + chunk.length);
        if (chunk.nodes.includes(added.name)) onAdded.add(chunk.chunkId);
      }
    }
    expect(onAdded.size).toBeGreaterThan(0);
    const pcts = [...usage.values()].map((u) => (100 * u) / (16 * 1024 * KiB));
    const mean = pcts.reduce((s, p) => s + p, 0) / pcts.length;
    for (const pct of pcts) expect(Math.abs(pct - mean)).toBeLessThanOrEqual(threshold + 1);
    await expectFullyReplicated(cluster, client, replicated, 3, ['dn1', 'dn2', 'dn3', 'dn4', 'dn5'].filter((id) => cluster.datanodes[nodeIndex(id)]?.running));
    await expectReadsBack(client, files);
    const again = await cluster.cli(['rebalance', '--threshold', String(threshold + 2)]);
    expect(again.stdout).toMatch(/^balanced/);
  });
});

describe('the leader dies in the middle of a repair: another coordinator takes over and finishes (etcd, 2 coordinators)', () => {
  let cluster: TestCluster;
  let client: Strata;
  // One copy at a time at 512 KiB/s: ~36 chunks of 128 KiB to repair take several seconds, long
  // enough to kill the leader while its queue is part done.
  const SLOW_REPAIR_FLAGS = ['--scan-interval-ms', '300', '--gc-grace-ms', String(GC_GRACE_MS), '--repair-concurrency', '1', '--repair-bandwidth', '512KiB', '--leader-ttl-ms', '2000'];

  beforeAll(async () => {
    cluster = await startCluster({ meta: 'etcd', coordinators: 2, datanodes: 4, deadAfterMs: 2000, coordinatorArgs: SLOW_REPAIR_FLAGS });
    client = cluster.client();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  test('kill -9 a data node, then the leader while it repairs: the survivor leads and finishes the repair', async () => {
    const files = await writeFiles(client, '/ha', 12, 4);
    const chunks = 12 * 4;
    await waitFor('a leader', async () => (await client.health()).leader || undefined);
    cluster.datanodes[3]!.kill9();
    // Whichever coordinator leads the repair then is the one killed: on a loaded machine a
    // 2 s leader lease can change hands before the repair starts (the queue then restarts
    // with the new leader), and that is not this test's subject.
    let last: unknown;
    const midway = await waitFor('the leader part way through the repair', async () => {
      const h = await client.health();
      last = { leader: h.leader, queue: h.queue, underReplicated: h.underReplicated, healthy: h.healthy };
      return h.leader && h.queue.repaired + h.queue.running > 0 && h.underReplicated > 0 && h;
    }, 120_000).catch((err: Error) => {
      throw new Error(`${err.message}; last health: ${JSON.stringify(last)}`);
    });
    const leaderIndex = cluster.coordinators.findIndex((c) => c.address === midway.leader);
    expect(leaderIndex).toBeGreaterThanOrEqual(0);
    cluster.coordinators[leaderIndex]!.kill9();
    expect(midway.missing).toBe(0);

    const survivor = cluster.coordinators[1 - leaderIndex]!.address;
    const report = await waitFor('the survivor leads and finishes the repair', async () => {
      const h = await client.health();
      return h.leader === survivor && h.chunks === chunks && h.healthy === chunks && settled(h) && h;
    }, 180_000);
    // Its counters start at its takeover: it did part of this repair itself.
    expect(report.queue.repaired).toBeGreaterThan(0);
    expect(report.events.map((e) => e.kind)).toContain('leader');
    await expectReadsBack(client, files);
    for (const path of files.keys()) for (const chunk of await client.locate(path)) expect(chunk.nodes).not.toContain('dn4');
    await expectFullyReplicated(cluster, client, files.keys(), 3, ['dn1', 'dn2', 'dn3']);
  }, 300_000);
});

describe('a killed data node is found dead from its dropped link, long before the heartbeat grace (etcd, 2 coordinators, 4 data nodes, RF 3)', () => {
  let cluster: TestCluster;
  let client: Strata;
  let files: Map<string, Buffer>;
  // Heartbeats every 60 s and a 10 min grace: within these tests' bounds (60 s a wait) missed
  // heartbeats cannot reveal a death (the late-node probe waits for two missed beats, the grace for
  // ten minutes). Only the NodeLink path can: its drop, then a probe that finds the ports closed.
  const SLOW_HEARTBEAT_FLAGS = [...HEALING_FLAGS, '--heartbeat-interval-ms', '60000'];
  const LINK_WAIT_MS = 60_000;

  const stateOn = async (coordinator: string, nodeId: string) => {
    const one = Strata.connect({ coordinators: coordinator, failoverTimeoutMs: 5000 });
    try {
      return (await one.nodes()).find((n) => n.nodeId === nodeId)?.state;
    } finally {
      one.close();
    }
  };
  const placements = async () => {
    const byChunk = new Map<string, string[]>();
    for (const path of files.keys()) for (const chunk of await client.locate(path)) byChunk.set(chunk.chunkId, [...chunk.nodes].sort());
    return byChunk;
  };
  const serves = async (node: TestCluster['datanodes'][number]) => {
    const channels = new DataNodeChannels();
    try {
      await callUnary(channels.get(node.address), 'NodeStatus', {}, 2000, node.name);
      return true;
    } catch {
      return false;
    } finally {
      channels.close();
    }
  };
  const exited = (node: TestCluster['datanodes'][number]) => new Promise<void>((resolve) => (node.running ? node.process.once('exit', () => resolve()) : resolve()));

  beforeAll(async () => {
    cluster = await startCluster({ meta: 'etcd', coordinators: 2, datanodes: 4, deadAfterMs: 600_000, coordinatorArgs: SLOW_HEARTBEAT_FLAGS });
    client = cluster.client();
    files = await writeFiles(client, '/link', 12, 2);
    await waitFor('a leader and a healthy start', async () => {
      const h = await client.health();
      return h.leader && h.healthy === h.chunks && settled(h) && h;
    });
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  test('a clean restart (SIGTERM, then start again) keeps every registration: no node found dead, nothing repaired', async () => {
    const before = await placements();
    expect([...before.values()].some((nodes) => nodes.includes('dn2'))).toBe(true);
    await cluster.datanodes[1]!.stop();
    cluster.datanodes[1]!.start();
    await cluster.waitForLiveNodes(4);
    // Its registration never lapsed, so "live" says nothing about the new process: wait until it
    // serves (it takes seconds on a loaded machine), or the next test would kill a node meanwhile.
    await waitFor('dn2 serving again', async () => serves(cluster.datanodes[1]!), LINK_WAIT_MS);
    const h = await waitFor('settled after the restart', async () => {
      const report = await client.health();
      return report.healthy === report.chunks && settled(report) && report;
    });
    expect(h.events.filter((e) => e.kind === 'node-dead')).toEqual([]);
    expect(h.queue.repaired).toBe(0);
    expect(await placements()).toEqual(before);
    await expectReadsBack(client, files);
  }, 120_000);

  test('kill -9 and an immediate restart: the node is live again, every copy it is listed for is on its disk, every file reads back', async () => {
    const node = cluster.datanodes[2]!;
    const gone = exited(node);
    node.kill9();
    await gone;
    node.start(); // at once: the probe of its dropped link may or may not find it back already
    await cluster.waitForLiveNodes(4);
    await waitFor('settled with dn3 back', async () => {
      const h = await client.health();
      return h.healthy === h.chunks && settled(h) && h;
    }, LINK_WAIT_MS);
    // Each coordinator sees it live once its link to that coordinator is up again.
    for (const coordinator of cluster.coordinators) {
      await waitFor(`dn3 live on ${coordinator.address}`, async () => (await stateOn(coordinator.address, 'dn3')) === 'live', LINK_WAIT_MS);
    }
    await expectReadsBack(client, files);
    await expectFullyReplicated(cluster, client, files.keys(), 3, ['dn1', 'dn2', 'dn3', 'dn4']);
  }, 120_000);

  test('kill -9: dead at once on every coordinator; the leader re-replicates its chunks; every file reads back', async () => {
    const killedAtMs = Date.now();
    cluster.datanodes[0]!.kill9();
    for (const coordinator of cluster.coordinators) {
      await waitFor(`dn1 dead on ${coordinator.address}`, async () => (await stateOn(coordinator.address, 'dn1')) === 'dead', LINK_WAIT_MS);
    }
    // The leader says why in its status (published every 2 s, so it may lag the repair), unless
    // leadership changed hands since the kill (a 2 s lease on a loaded machine): a new leader's
    // status starts afresh and saw no transition.
    const deathOf = (h: HealthReport) => h.events.filter((e) => e.kind === 'node-dead' && e.message.includes('dn1'));
    const ledSince = (h: HealthReport) => Math.min(...h.events.filter((e) => e.kind === 'leader').map((e) => e.atMs));
    const report = await waitFor('repair after dn1 died, in the leader\'s published status', async () => {
      const h = await client.health();
      return h.healthy === h.chunks && settled(h) && (deathOf(h).length > 0 || !(ledSince(h) < killedAtMs)) && h;
    }, LINK_WAIT_MS);
    if (ledSince(report) < killedAtMs) {
      expect(deathOf(report).map((e) => e.message)).toEqual([expect.stringMatching(/dn1 is dead \(its link dropped and its ports refuse connections\)/)]);
    }
    await expectReadsBack(client, files);
    for (const nodes of (await placements()).values()) expect(nodes).not.toContain('dn1');
    await expectFullyReplicated(cluster, client, files.keys(), 3, ['dn2', 'dn3', 'dn4']);
  }, 120_000);
});
