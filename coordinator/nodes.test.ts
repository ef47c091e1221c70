import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { createLogger } from '../common/log.js';
import { tempDir, type TempDir } from '../test/harness/ports.js';
import type { Kv } from './meta/kv.js';
import { encodeNode, nodeKey } from './meta/keys.js';
import { openKv } from './meta/open-kv.js';
import { NodeRegistry, requiredAcks } from './nodes.js';
import { allocatedAtMs } from './healing/chunk-id.js';
import type { PortState } from './healing/probe.js';

const GiB = 1024 ** 3;

describe('NodeRegistry placement and liveness', () => {
  let dir: TempDir;
  let kv: Kv;
  let nowMs = 1_000_000;
  let registry: NodeRegistry;
  /** What the port probe answers, and the addresses it was asked about. */
  let answer: 'refused' | 'open' | 'unknown' = 'refused';
  const probed: string[][] = [];
  const beat = (nodeId: string, freeGiB: number, zone = '') =>
    registry.heartbeat({ nodeId, address: `127.0.0.1:${7500 + Number(nodeId.slice(2))}`, capacityBytes: 100 * GiB, usedBytes: 0, freeBytes: freeGiB * GiB, chunks: 0, zone });

  beforeEach(async () => {
    dir = await tempDir('nodes');
    kv = await openKv(dir.path);
    registry = new NodeRegistry(kv, { deadAfterMs: 5000, persistIntervalMs: 10_000, log: createLogger('test', 'silent'), now: () => nowMs, probeRetryMs: 1, probePorts: async (addresses) => (probed.push(addresses), answer) });
    answer = 'refused';
    probed.length = 0;
  });
  afterEach(async () => {
    await kv.close();
    await dir.cleanup();
  });

  test('replicas go to distinct live nodes, most free space first, never to excluded ones', async () => {
    for (const [id, free] of [['dn1', 10], ['dn2', 50], ['dn3', 30], ['dn4', 20]] as const) await beat(id, free);
    const placement = registry.place(3, 'all', []);
    expect(placement.pipeline.map((n) => n.nodeId)).toEqual(['dn2', 'dn3', 'dn4']);
    expect(placement.requiredAcks).toBe(3);
    expect(placement.chunkId).toMatch(/^[0-9a-f]{20}-[0-9a-z]+$/);
    expect(allocatedAtMs(placement.chunkId)).toBe(nowMs);
    expect(registry.place(3, 'all', []).chunkId).not.toBe(placement.chunkId);
    expect(registry.place(3, 'all', ['dn2']).pipeline.map((n) => n.nodeId)).toEqual(['dn3', 'dn4', 'dn1']);
  });

  test('nodes on one disk (free space a few bytes apart) share the chunks', async () => {
    for (const [id, extraBytes] of [['dn1', 0], ['dn2', 4096], ['dn3', 123], ['dn4', 8192]] as const) {
      await registry.heartbeat({ nodeId: id, address: `127.0.0.1:${7500 + Number(id.slice(2))}`, capacityBytes: 100 * GiB, usedBytes: 0, freeBytes: 50 * GiB + extraBytes, chunks: 0, zone: '' });
    }
    const chosen = new Map<string, number>();
    for (let i = 0; i < 400; i++) for (const node of registry.place(3, 'all', []).pipeline) chosen.set(node.nodeId, (chosen.get(node.nodeId) ?? 0) + 1);
    // Each node is left out of about a quarter of the placements; an exact order would leave dn1 out of all.
    for (const id of ['dn1', 'dn2', 'dn3', 'dn4']) expect(chosen.get(id) ?? 0).toBeGreaterThan(200);
  });

  test('a node found gone (refusing connections) is dead before its grace ends, until it heartbeats again', async () => {
    for (const id of ['dn1', 'dn2', 'dn3']) await beat(id, 10);
    nowMs += 2500; // missed heartbeats, still within the 5 s grace
    await beat('dn2', 10);
    await beat('dn3', 10);
    expect(registry.lateNodes(2000).map((n) => n.nodeId)).toEqual(['dn1']);
    registry.markGone('dn1', 'refuses connections');
    expect(registry.isLive('dn1')).toBe(false);
    expect(registry.lateNodes(2000)).toEqual([]);
    expect((await registry.list()).find((n) => n.nodeId === 'dn1')?.state).toBe('dead');
    expect(registry.place(3, 'all', []).pipeline.map((n) => n.nodeId).sort()).toEqual(['dn2', 'dn3']);
    nowMs += 10;
    await beat('dn1', 10); // restarted
    expect(registry.isLive('dn1')).toBe(true);
  });

  test('a dropped link with refusing ports: dead at once, within the grace; back with its next heartbeat', async () => {
    for (const id of ['dn1', 'dn2', 'dn3']) await beat(id, 10);
    let changes = 0;
    registry.onLivenessChange(() => changes++);
    const link = registry.linkOpened('dn1', '127.0.0.1:9001');
    expect(await registry.linkClosed('dn1', false, link)).toBe(true);
    expect(probed).toEqual([['127.0.0.1:7501', '127.0.0.1:9001']]);
    expect(registry.isLive('dn1')).toBe(false);
    expect(registry.goneReason('dn1')).toMatch(/link dropped/);
    expect(changes).toBe(1);
    // Another coordinator stored a later heartbeat of dn1 than this one heard: dn1 stays dead here.
    await kv.txn({ compares: [], ops: [{ type: 'put', key: nodeKey('dn1'), value: encodeNode({ nodeId: 'dn1', address: '127.0.0.1:7501', capacityBytes: 100 * GiB, usedBytes: 0, freeBytes: 10 * GiB, chunks: 0, zone: '', lastHeartbeatMs: nowMs + 5 }) }] });
    expect((await registry.list()).find((n) => n.nodeId === 'dn1')?.state).toBe('dead');
    nowMs += 10;
    await beat('dn1', 10);
    expect(registry.isLive('dn1')).toBe(true);
    expect(registry.goneReason('dn1')).toBeUndefined();
    expect(changes).toBe(2);
  });

  test('no early death when the ports answer, a newer link is open, a heartbeat came meanwhile, or the node said goodbye', async () => {
    for (const id of ['dn1', 'dn2']) await beat(id, 10);
    answer = 'open'; // a blip: the link dropped, the process is there (and reopens its link)
    let link = registry.linkOpened('dn1', '');
    expect(await registry.linkClosed('dn1', false, link)).toBe(false);
    expect(registry.isLive('dn1')).toBe(true);
    expect(probed).toHaveLength(5);
    answer = 'unknown'; // probes that time out: tried again, then left to the grace
    link = registry.linkOpened('dn1', '');
    expect(await registry.linkClosed('dn1', false, link)).toBe(false);
    expect(registry.isLive('dn1')).toBe(true);
    expect(probed).toHaveLength(10);
    // A port still open on the first probes (a killed process's listener outlives its link by a
    // moment), refusing on the next: dead.
    let answers: PortState[] = ['open', 'open', 'refused'];
    const listenerLingers = new NodeRegistry(kv, { deadAfterMs: 5000, persistIntervalMs: 10_000, log: createLogger('test', 'silent'), now: () => nowMs, probeRetryMs: 1, probePorts: async () => answers.shift() ?? 'refused' });
    await listenerLingers.heartbeat({ nodeId: 'dn1', address: '127.0.0.1:7501', capacityBytes: GiB, usedBytes: 0, freeBytes: GiB, chunks: 0, zone: '' });
    expect(await listenerLingers.linkClosed('dn1', false, listenerLingers.linkOpened('dn1', ''))).toBe(true);
    expect(answers).toEqual([]);
    // A node that reopens its link while being probed is not dead, whatever its ports said.
    answers = ['open', 'open', 'open'];
    const reopens = new NodeRegistry(kv, { deadAfterMs: 5000, persistIntervalMs: 10_000, log: createLogger('test', 'silent'), now: () => nowMs, probeRetryMs: 1, probePorts: async () => {
      if (answers.length === 1) reopens.linkOpened('dn1', '');
      return answers.shift() ?? 'refused';
    } });
    await reopens.heartbeat({ nodeId: 'dn1', address: '127.0.0.1:7501', capacityBytes: GiB, usedBytes: 0, freeBytes: GiB, chunks: 0, zone: '' });
    expect(await reopens.linkClosed('dn1', false, reopens.linkOpened('dn1', ''))).toBe(false);
    expect(reopens.isLive('dn1')).toBe(true);
    answer = 'refused';
    const old = registry.linkOpened('dn1', ''); // a restarted node's new link came before the old one's loss
    link = registry.linkOpened('dn1', '');
    expect(await registry.linkClosed('dn1', false, old)).toBe(false);
    expect(registry.isLive('dn1')).toBe(true);
    expect(await registry.linkClosed('dn1', false, link)).toBe(true); // the newest one
    link = registry.linkOpened('dn1', ''); // restarted: its hello revives it before its next heartbeat
    expect(registry.isLive('dn1')).toBe(true);
    expect(await registry.linkClosed('dn1', false, link)).toBe(true);
    nowMs += 10;
    await beat('dn1', 10);
    // A heartbeat from the restarted process lands while the probe of the old link runs.
    registry.linkOpened('dn1', '');
    let heartbeatsDuringProbes = 0;
    const slow = new NodeRegistry(kv, { deadAfterMs: 5000, persistIntervalMs: 10_000, log: createLogger('test', 'silent'), now: () => nowMs, probeRetryMs: 1, probePorts: async () => {
      nowMs += 10;
      // Each probe races a heartbeat that was in flight; the first probe after the last of them decides.
      if (heartbeatsDuringProbes++ < 5) await slow.heartbeat({ nodeId: 'dn1', address: '127.0.0.1:7501', capacityBytes: GiB, usedBytes: 0, freeBytes: GiB, chunks: 0, zone: '' });
      return 'refused';
    } });
    await slow.heartbeat({ nodeId: 'dn1', address: '127.0.0.1:7501', capacityBytes: GiB, usedBytes: 0, freeBytes: GiB, chunks: 0, zone: '' });
    expect(await slow.linkClosed('dn1', false, slow.linkOpened('dn1', ''))).toBe(false);
    expect(slow.isLive('dn1')).toBe(true);
    // A clean stop: no probe, and no early death from missed heartbeats either, until it is heard again.
    probed.length = 0;
    expect(await registry.linkClosed('dn2', true, registry.linkOpened('dn2', ''))).toBe(false);
    expect(probed).toEqual([]);
    nowMs += 3000;
    expect(registry.lateNodes(2000).map((n) => n.nodeId)).toEqual(['dn1']);
    expect(registry.isLive('dn2')).toBe(true);
    nowMs += 3000;
    expect(registry.isLive('dn2')).toBe(false); // the grace still ends
  });

  test('distinct zones come first when nodes are labelled', async () => {
    await beat('dn1', 50, 'a');
    await beat('dn2', 40, 'a');
    await beat('dn3', 30, 'b');
    await beat('dn4', 20, 'c');
    expect(registry.place(3, 'all', []).pipeline.map((n) => n.nodeId)).toEqual(['dn1', 'dn3', 'dn4']);
    expect(registry.place(4, 'all', []).pipeline.map((n) => n.nodeId)).toEqual(['dn1', 'dn3', 'dn4', 'dn2']);
  });

  test('a silent node turns dead and takes no chunks; too few nodes cap the pipeline; none is Unavailable', async () => {
    await beat('dn1', 10);
    await beat('dn2', 10);
    nowMs += 4000;
    await beat('dn1', 10);
    nowMs += 2000; // dn2 silent for 6 s > 5 s
    expect(registry.isLive('dn2')).toBe(false);
    const placement = registry.place(3, 'all', []);
    expect(placement.pipeline.map((n) => n.nodeId)).toEqual(['dn1']);
    expect(placement.requiredAcks).toBe(1);
    const listed = await registry.list();
    expect(listed.map((n) => [n.nodeId, n.live])).toEqual([['dn1', true], ['dn2', false]]);
    expect(() => registry.place(3, 'all', ['dn1'])).toThrow(/no live data node/);
  });

  test('ack policies', () => {
    expect([requiredAcks(3, 'one'), requiredAcks(3, 'quorum'), requiredAcks(3, 'all')]).toEqual([1, 2, 3]);
    expect([requiredAcks(2, 'quorum'), requiredAcks(5, 'quorum'), requiredAcks(1, 'all')]).toEqual([2, 3, 1]);
  });

  test('bad heartbeats are refused; a restarted coordinator knows the nodes from the store', async () => {
    await expect(registry.heartbeat({ nodeId: '../x', address: '127.0.0.1:1', capacityBytes: 0, usedBytes: 0, freeBytes: 0, chunks: 0, zone: '' })).rejects.toThrow(/invalid node id/);
    await expect(registry.heartbeat({ nodeId: 'dn9', address: 'no port', capacityBytes: 0, usedBytes: 0, freeBytes: 0, chunks: 0, zone: '' })).rejects.toThrow(/invalid node address/);
    await beat('dn1', 10);
    const restarted = new NodeRegistry(kv, { deadAfterMs: 5000, persistIntervalMs: 10_000, log: createLogger('test', 'silent'), now: () => nowMs });
    await restarted.load();
    expect(restarted.addressOf('dn1')).toBe('127.0.0.1:7501');
    expect(restarted.place(1, 'all', []).pipeline[0].nodeId).toBe('dn1');
  });
});
