// Chunk grants on real processes (common/chunk-grants.ts): clients read and write through the
// grants coordinators hand out with placements and locations; a direct data node call, over gRPC
// or the byte path, without a grant, with a forged, tampered or expired one, with one for another
// chunk, or with a read grant used to write, is refused PermissionDenied and changes nothing
// stored; the leader's own grants still let repair heal after a data node's kill -9.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Strata } from '../client/index.js';
import { CoordinatorClient } from '../client/coordinator-client.js';
import { ByteClient } from '../common/byte-client.js';
import { peekGrant, signGrant } from '../common/chunk-grants.js';
import { DataNodeChannels, callUnary, fromServiceError } from '../common/grpc.js';
import { STAR_MAX_BYTES } from '../datanode/forward.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { waitFor } from './harness/wait.js';

const KiB = 1024;
const CHUNK = 128 * KiB;
/** Short, so an expired grant is seen within the test; every flow asks for fresh grants anyway. */
const GRANT_TTL_MS = 4000;
const FLAGS = ['--scan-interval-ms', '300', '--repair-concurrency', '4', '--grant-ttl-ms', String(GRANT_TTL_MS)];
const DENIED = { kind: 'PermissionDenied' };

interface Node {
  nodeId: string;
  address: string;
  dataAddress: string;
}

/* eslint-disable @typescript-eslint/no-explicit-any -- the generated DataNode client is untyped */

describe('chunk grants (embedded, 4 data nodes, RF 3)', () => {
  let cluster: TestCluster;
  let client: Strata;
  let coordinator: CoordinatorClient;
  const channels = new DataNodeChannels();
  const bytes = new ByteClient();
  const files = new Map<string, Buffer>();
  let nodes: Node[];

  const grpcRead = async (node: Node, chunkId: string, grant?: string): Promise<Buffer> => {
    const call = (channels.get(node.address) as any).ReadChunk({ chunkId, offset: 0, length: 0, grant: grant ?? '' }, { deadline: Date.now() + 10_000 }) as grpc.ClientReadableStream<{ data: Buffer }>;
    const pieces: Buffer[] = [];
    try {
      for await (const reply of call) pieces.push(reply.data);
    } catch (err) {
      throw fromServiceError(err, node.nodeId);
    }
    return Buffer.concat(pieces);
  };
  /** `pipeline`: where `node` forwards the chunk (it passes the grant on; every hop checks it). */
  const grpcWrite = (node: Node, chunkId: string, data: Buffer, grant?: string, pipeline: Node[] = []): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const call = (channels.get(node.address) as any).WriteChunk({ deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, reply: unknown) =>
        err ? reject(fromServiceError(err, node.nodeId)) : resolve(reply),
      ) as grpc.ClientWritableStream<unknown>;
      call.on('error', () => undefined);
      call.write({ header: { chunkId, length: data.length, pipeline: pipeline.map(({ nodeId, address }) => ({ nodeId, address })), grant: grant ?? '' } });
      for (let at = 0; at < data.length; at += 256 * KiB) call.write({ data: data.subarray(at, at + 256 * KiB) });
      call.end();
    });
  const byteRead = async (node: Node, chunkId: string, grant?: string): Promise<Buffer> => {
    const pieces: Buffer[] = [];
    const request = { op: 'read' as const, nodeId: node.nodeId, timeoutMs: 10_000, chunkId, offset: 0, length: 0, ...(grant === undefined ? {} : { grant }) };
    for await (const piece of bytes.read(node.dataAddress, request, node.nodeId)) pieces.push(Buffer.from(piece));
    return Buffer.concat(pieces);
  };
  const byteWrite = (node: Node, chunkId: string, data: Buffer, grant?: string, pipeline: Node[] = []): Promise<unknown> =>
    bytes.write(
      node.dataAddress,
      { op: 'write', nodeId: node.nodeId, timeoutMs: 10_000, chunkId, length: data.length, pipeline: pipeline.map(({ nodeId, address }) => ({ nodeId, address })), ...(grant === undefined ? {} : { grant }) },
      data,
      node.nodeId,
    );
  const transports = {
    grpc: { read: grpcRead, write: grpcWrite },
    bytes: { read: byteRead, write: byteWrite },
  };

  /** Where a file's chunk is, and the read grant a client gets for it. */
  const located = async (path: string, index = 0) => {
    const { ino } = await client.stat(path);
    const reply = await coordinator.call<{ chunks: Array<{ chunkId: string; replicas: Array<{ nodeId: string }> }>; grant: string }>('GetChunks', { ino, fromIndex: index, count: 1 });
    const [chunk] = reply.chunks;
    return { chunkId: chunk!.chunkId, holders: chunk!.replicas.map((r) => nodes.find((n) => n.nodeId === r.nodeId)!), grant: reply.grant };
  };
  /** A placement's write grant for a fresh chunk of a scratch file (never written or committed). */
  const writeGrant = async () => {
    const scratch = await client.create(`/scratch/${randomBytes(4).toString('hex')}`, { chunkSize: CHUNK });
    const placement = await coordinator.call<{ chunkId: string; grant: string; pipeline: Array<{ nodeId: string }> }>('AllocateChunk', { ino: scratch.ino, index: 0 });
    return { ...placement, pipeline: placement.pipeline.map((p) => nodes.find((n) => n.nodeId === p.nodeId)!) };
  };
  const chunkCounts = async () => Promise.all(nodes.map(async (n) => Number((await callUnary<{ chunks: number | string }>(channels.get(n.address), 'NodeStatus', {}, 5000)).chunks)));
  const statChunk = (node: Node, chunkId: string) => callUnary(channels.get(node.address), 'StatChunk', { chunkId }, 5000);

  beforeAll(async () => {
    cluster = await startCluster({ datanodes: 4, replication: 3, deadAfterMs: 2000, coordinatorArgs: FLAGS });
    client = cluster.client();
    coordinator = new CoordinatorClient({ addresses: [cluster.coordinatorList], callTimeoutMs: 5000, failoverTimeoutMs: 10_000, session: false });
    await client.mkdir('/g', { parents: true });
    await client.mkdir('/scratch', { parents: true });
    nodes = await Promise.all(
      cluster.datanodes.map(async (p) => {
        const info = await callUnary<Node>(channels.get(p.address), 'NodeStatus', {}, 5000);
        return { nodeId: info.nodeId, address: p.address, dataAddress: info.dataAddress };
      }),
    );
    for (const node of nodes) expect(node.dataAddress).toMatch(/:\d+$/);
  }, 120_000);
  afterAll(async () => {
    coordinator?.close();
    bytes.close();
    channels.close();
    await cluster?.stop();
  });

  test('clients write and read through the grants that come with placements and locations (SDK, big and small files)', async () => {
    files.set('/g/big', randomBytes(3 * CHUNK + 1234)); // a chain per chunk
    files.set('/g/other', randomBytes(CHUNK));
    files.set('/g/small', randomBytes(4 * KiB)); // a star to every replica
    for (const [path, data] of files) await client.writeFile(path, data, { chunkSize: CHUNK });
    for (const [path, data] of files) expect((await client.readFile(path)).equals(data), path).toBe(true);
    // A read grant covers the reply's chunks, for reading only, for whoever asked.
    const { ino } = await client.stat('/g/big');
    const reply = await coordinator.call<{ chunks: Array<{ chunkId: string }>; grant: string }>('GetChunks', { ino, fromIndex: 0, count: 0 });
    const claims = peekGrant(reply.grant)!;
    expect(claims).toMatchObject({ o: 'r', s: 'anonymous' });
    expect(claims.c).toEqual(reply.chunks.map((c) => c.chunkId));
    expect(claims.c).toHaveLength(4);
    const placement = await writeGrant();
    expect(peekGrant(placement.grant)).toMatchObject({ o: 'w', c: [placement.chunkId] });
  });

  test.each(['grpc', 'bytes'] as const)('a direct data node call over %s with the grant a client got is served', async (transport) => {
    const { read, write } = transports[transport];
    const { chunkId, holders, grant } = await located('/g/big', 1);
    expect((await read(holders[0]!, chunkId, grant)).equals(files.get('/g/big')!.subarray(CHUNK, 2 * CHUNK))).toBe(true);
    // A placement's grant lets its chunk be stored (an uncommitted copy: garbage for GC later).
    const placement = await writeGrant();
    const data = randomBytes(2 * KiB);
    await write(nodes[0]!, placement.chunkId, data, placement.grant);
    expect(await statChunk(nodes[0]!, placement.chunkId)).toMatchObject({ length: data.length });
    // Past the star limit the head forwards down a chain: each hop is shown, and checks, the client's grant.
    const chained = await writeGrant();
    const [head, ...rest] = chained.pipeline;
    expect(rest.length).toBe(2);
    const big = randomBytes(STAR_MAX_BYTES + 64 * KiB);
    const stored = (await write(head!, chained.chunkId, big, chained.grant, rest)) as { storedOn: string[]; failed: string[] };
    expect([...stored.storedOn].sort()).toEqual(chained.pipeline.map((n) => n.nodeId).sort());
    expect(stored.failed).toEqual([]);
    for (const node of chained.pipeline) expect(await statChunk(node, chained.chunkId), node.nodeId).toMatchObject({ length: big.length });
  });

  test.each(['grpc', 'bytes'] as const)(
    'over %s: no grant, forged, tampered, expired, another chunk\'s, or a read grant used to write: PermissionDenied, nothing stored changes',
    async (transport) => {
      const { read, write } = transports[transport];
      // Taken first: they expire while the other cases run.
      const aging = { read: await located('/g/big', 0), write: await writeGrant() };
      const target = await located('/g/big', 0);
      const other = await located('/g/other', 0);
      const holder = target.holders[0]!;
      const fresh = `${randomBytes(10).toString('hex')}-${Date.now().toString(36)}`; // a chunk id no one allocated
      const real = peekGrant(target.grant)!;
      const forged = signGrant({ id: real.k, privateKey: generateKeyPairSync('ed25519').privateKey }, { s: 'mallory', t: '', o: 'rwd', c: [target.chunkId, fresh], x: Date.now() + 3_600_000 });
      const widened = Buffer.from(JSON.stringify({ ...real, o: 'rwd', c: [target.chunkId, fresh] })).toString('base64url');
      const tampered = `${widened}.${target.grant.split('.')[1]}`;
      const countsBefore = await chunkCounts();
      const original = files.get('/g/big')!.subarray(0, CHUNK);
      const junk = randomBytes(CHUNK);

      const refusals: Array<[string, () => Promise<unknown>]> = [
        ['read without a grant', () => read(holder, target.chunkId)],
        ['read with an empty grant', () => read(holder, target.chunkId, '')],
        ['read with a garbled grant', () => read(holder, target.chunkId, 'not-a-grant')],
        ['read with a forged grant', () => read(holder, target.chunkId, forged)],
        ['read with a tampered grant', () => read(holder, target.chunkId, tampered)],
        ["read with another chunk's grant", () => read(holder, target.chunkId, other.grant)],
        ['read with a write grant', () => read(holder, target.chunkId, aging.write.grant)],
        ['overwrite without a grant', () => write(holder, target.chunkId, junk)],
        ['overwrite with the read grant', () => write(holder, target.chunkId, junk, target.grant)],
        ['overwrite with a forged grant', () => write(holder, target.chunkId, junk, forged)],
        ['write a new chunk without a grant', () => write(holder, fresh, junk)],
        ["write a new chunk with another chunk's write grant", () => write(holder, fresh, junk, aging.write.grant)],
        ['write a new chunk with a tampered grant', () => write(holder, fresh, junk, tampered)],
        ['write a new chunk down a pipeline with a forged grant', () => write(holder, fresh, junk, forged, nodes.filter((n) => n !== holder))],
      ];
      for (const [what, attempt] of refusals) await expect(attempt(), what).rejects.toMatchObject(DENIED);

      // The grants taken first, once past their expiry: refused too (and they were good before).
      const expiry = Math.max(peekGrant(aging.read.grant)!.x, peekGrant(aging.write.grant)!.x);
      await new Promise((r) => setTimeout(r, Math.max(0, expiry - Date.now()) + 500));
      await expect(read(aging.read.holders[0]!, aging.read.chunkId, aging.read.grant), 'read with an expired grant').rejects.toMatchObject(DENIED);
      await expect(write(nodes[0]!, aging.write.chunkId, junk, aging.write.grant), 'write with an expired grant').rejects.toMatchObject(DENIED);

      // Nothing changed: the same chunks everywhere, the chunk intact, no new ids stored.
      expect(await chunkCounts()).toEqual(countsBefore);
      const { grant } = await located('/g/big', 0);
      for (const node of target.holders) expect((await read(node, target.chunkId, grant)).equals(original), node.nodeId).toBe(true);
      for (const node of nodes) {
        for (const chunkId of [fresh, aging.write.chunkId]) await expect(statChunk(node, chunkId), `${chunkId} on ${node.nodeId}`).rejects.toMatchObject({ kind: 'NotFound' });
      }
      expect((await client.readFile('/g/big')).equals(files.get('/g/big')!)).toBe(true);
    },
    60_000,
  );

  test('the control calls that move or drop chunks need the leader\'s grant too (DeleteChunk, ReplicateChunk, TierUpload)', async () => {
    const target = await located('/g/other', 0);
    const holder = target.holders[0]!;
    const stranger = nodes.find((n) => !target.holders.includes(n))!;
    const refusals: Array<[string, () => Promise<unknown>]> = [
      ['delete without a grant', () => callUnary(channels.get(holder.address), 'DeleteChunk', { chunkId: target.chunkId }, 5000)],
      ['delete with a read grant', () => callUnary(channels.get(holder.address), 'DeleteChunk', { chunkId: target.chunkId, grant: target.grant }, 5000)],
      ['replicate without a grant', () => callUnary(channels.get(stranger.address), 'ReplicateChunk', { chunkId: target.chunkId, length: CHUNK, crc32c: 0, sources: [holder] }, 5000)],
      ['replicate with a read grant', () => callUnary(channels.get(stranger.address), 'ReplicateChunk', { chunkId: target.chunkId, length: CHUNK, crc32c: 0, sources: [holder], grant: target.grant }, 5000)],
      ['tier upload without a grant', () => callUnary(channels.get(holder.address), 'TierUpload', { chunkId: target.chunkId, tier: 't', key: 'k' }, 5000)],
      ['tier upload with a read grant', () => callUnary(channels.get(holder.address), 'TierUpload', { chunkId: target.chunkId, tier: 't', key: 'k', grant: target.grant }, 5000)],
    ];
    for (const [what, attempt] of refusals) await expect(attempt(), what).rejects.toMatchObject(DENIED);
    await expect(statChunk(stranger, target.chunkId)).rejects.toMatchObject({ kind: 'NotFound' });
    expect(await statChunk(holder, target.chunkId)).toMatchObject({ length: CHUNK });
    expect((await client.readFile('/g/other')).equals(files.get('/g/other')!)).toBe(true);
  });

  test('kill -9 a data node: the leader\'s grants let repair copy its chunks from survivors; every file reads back', async () => {
    const { holders } = await located('/g/big', 0);
    const victim = holders[0]!;
    cluster.datanodes[nodes.indexOf(victim)]!.kill9();
    await waitFor(`${victim.nodeId} dead`, async () => (await client.nodes()).find((n) => n.nodeId === victim.nodeId)?.state === 'dead');
    await waitFor('repaired', async () => {
      const h = await client.health();
      return h.chunks > 0 && h.healthy === h.chunks && h.underReplicated === 0 && h.missing === 0 && h.queue.running === 0;
    }, 180_000);
    for (const [path, data] of files) {
      expect((await client.readFile(path)).equals(data), path).toBe(true);
      for (const chunk of await client.locate(path)) {
        expect(chunk.nodes, `${path} chunk ${chunk.index}`).not.toContain(victim.nodeId);
        expect(new Set(chunk.nodes).size).toBe(3);
      }
    }
    // And the repaired copies are served, with a client's grant, by the nodes now holding them.
    const { chunkId, holders: now, grant } = await located('/g/big', 0);
    for (const node of now) expect((await byteRead(node, chunkId, grant)).equals(files.get('/g/big')!.subarray(0, CHUNK)), node.nodeId).toBe(true);
  }, 240_000);
});
