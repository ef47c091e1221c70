import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { runDataNode, type RunningDataNode } from './run.js';
import { chunkFilePath } from './chunk-store.js';
import { STAR_MAX_BYTES, type NodeAddress, type WriteChunkReply } from './service.js';
import { DataNodeClients } from '../client/datanode-client.js';
import type { CoordinatorClient } from '../client/coordinator-client.js';
import { uploadChunk } from '../client/writer.js';
import { freePort } from '../test/harness/ports.js';
import { newMasterKeyText } from '../common/master-key.js';
import { MAX_CHUNK_BYTES } from '../common/chunk-codec.js';
import { CHANNEL_OPTIONS, ERROR_KIND_METADATA_KEY, bindServer, callUnary, strataProto } from '../common/grpc.js';

const MIB = 1024 * 1024;
const PIECE_BYTES = 1 * MIB;
const DEAD_COORDINATOR = '127.0.0.1:1';

type Client = grpc.Client & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function writeChunk(
  client: Client,
  chunkId: string,
  data: Buffer,
  pipeline: NodeAddress[] = [],
  options: { header?: boolean; declaredBytes?: number } = {},
): Promise<WriteChunkReply> {
  return new Promise((resolve, reject) => {
    const call: grpc.ClientWritableStream<unknown> = client.writeChunk(
      { deadline: Date.now() + 60_000 },
      (err: grpc.ServiceError | null, reply: WriteChunkReply) => (err ? reject(err) : resolve(reply)),
    );
    const send = async () => {
      if (options.header !== false) call.write({ header: { chunkId, length: options.declaredBytes ?? data.length, pipeline } });
      for (let at = 0; at < data.length; at += PIECE_BYTES) {
        if (!call.write({ data: data.subarray(at, at + PIECE_BYTES) })) {
          await new Promise((drained) => {
            call.once('drain', drained);
            call.once('status', drained); // the server answered early (an error): stop waiting
          });
        }
      }
      call.end();
    };
    void send();
  });
}

function readChunk(client: Client, chunkId: string, offset = 0, length = 0): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const pieces: Buffer[] = [];
    const call = client.readChunk({ chunkId, offset, length }, { deadline: Date.now() + 60_000 });
    call.on('data', (reply: { data: Buffer }) => {
      expect(reply.data.length).toBeLessThanOrEqual(MIB);
      pieces.push(reply.data);
    });
    call.on('error', reject);
    call.on('end', () => resolve(Buffer.concat(pieces)));
  });
}

describe('DataNode service', () => {
  const log = pino({ level: 'silent' });
  const nodes: RunningDataNode[] = [];
  const clients: Client[] = [];
  const dirs: string[] = [];
  const hops = (...indexes: number[]): NodeAddress[] => indexes.map((i) => ({ nodeId: nodes[i].nodeId, address: nodes[i].address }));

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) {
      const dataDir = await mkdtemp(path.join(tmpdir(), `strata-dn${i}-`));
      dirs.push(dataDir);
      const port = await freePort();
      const node = await runDataNode(
        { nodeId: `dn${i}`, dataDir, listen: `127.0.0.1:${port}`, coordinators: [DEAD_COORDINATOR], heartbeatIntervalMs: 200, grants: 'off' },
        log,
      );
      nodes.push(node);
      clients.push(new strataProto.DataNode(node.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) as Client);
    }
  });

  afterAll(async () => {
    for (const client of clients) client.close();
    await Promise.all(nodes.map((node) => node.stop()));
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('writes through a 3-node pipeline and reads back identical bytes from each node', async () => {
    const data = randomBytes(5 * MIB + 12345);
    const reply = await writeChunk(clients[0], 'chunk-a', data, hops(1, 2));
    expect(reply).toEqual({ storedOn: ['dn0', 'dn1', 'dn2'], failed: [], errors: [] });
    for (const client of clients) {
      expect((await readChunk(client, 'chunk-a')).equals(data)).toBe(true);
      expect((await readChunk(client, 'chunk-a', 3 * MIB - 7, 100_000)).equals(data.subarray(3 * MIB - 7, 3 * MIB + 99_993))).toBe(true);
      const chunkStat = await callUnary(client, 'statChunk', { chunkId: 'chunk-a' }, 5000);
      expect(chunkStat).toMatchObject({ chunkId: 'chunk-a', length: data.length, blocks: 21 });
    }
    const info = await callUnary<Record<string, unknown>>(clients[2], 'nodeStatus', {}, 5000);
    expect(info).toMatchObject({ nodeId: 'dn2', address: nodes[2].address, chunks: 1 });
    expect(info.capacityBytes as number).toBeGreaterThan(0);
    expect(info.usedBytes as number).toBeGreaterThan(data.length);
  });

  it('sends a small chunk from the head to every other node at once (a star)', async () => {
    const data = randomBytes(STAR_MAX_BYTES); // the largest chunk that goes by star
    const reply = await writeChunk(clients[0], 'chunk-star', data, hops(1, 2));
    expect(reply).toEqual({ storedOn: ['dn0', 'dn1', 'dn2'], failed: [], errors: [] });
    for (const client of clients) expect((await readChunk(client, 'chunk-star')).equals(data)).toBe(true);
    // A star, not a chain: an unreachable second node keeps nothing from the third.
    const ghost: NodeAddress = { nodeId: 'ghost', address: 'no such host:??' };
    const small = randomBytes(4096);
    const partial = await writeChunk(clients[0], 'chunk-star-ghost', small, [ghost, ...hops(2)]);
    expect(partial).toMatchObject({ storedOn: ['dn0', 'dn2'], failed: ['ghost'] });
    expect(partial.errors).toHaveLength(1);
    expect(partial.errors[0]).toContain('ghost');
    expect((await readChunk(clients[2], 'chunk-star-ghost')).equals(small)).toBe(true);
  });

  it('stores the head\'s encoding byte for byte on every replica, by chain and by star', async () => {
    // Compressible and random blocks: both lz4 and raw payloads are forwarded.
    const big = Buffer.concat([Buffer.alloc(3 * MIB, 'encode once at the head '), randomBytes(2 * MIB + 999)]);
    const small = Buffer.concat([Buffer.alloc(300_000, 'small '), randomBytes(100_000)]);
    for (const [chunkId, data] of [['same-chain', big], ['same-star', small]] as const) {
      expect(await writeChunk(clients[0], chunkId, data, hops(1, 2))).toEqual({ storedOn: ['dn0', 'dn1', 'dn2'], failed: [], errors: [] });
      const files = await Promise.all(dirs.map((dir) => readFile(chunkFilePath(dir, chunkId))));
      expect(files[1].equals(files[0]), chunkId).toBe(true);
      expect(files[2].equals(files[0]), chunkId).toBe(true);
      for (const client of clients) expect((await readChunk(client, chunkId)).equals(data)).toBe(true);
    }
    // What every node announces, and so what makes the head forward its encoding.
    expect(await callUnary(clients[1], 'nodeStatus', {}, 5000)).toMatchObject({ encodedWrites: 'plain' });
  });

  it('refuses an encode-once header that does not declare the marker length', async () => {
    const header = { chunkId: 'enc-bad', length: 10, rawLength: 10, encoded: true, pipeline: [] };
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      const call = clients[1].writeChunk({ deadline: Date.now() + 10_000 }, (e: grpc.ServiceError) => resolve(e));
      call.write({ header });
      call.end();
    });
    expect(err?.metadata.get(ERROR_KIND_METADATA_KEY)).toEqual(['Invalid']);
  });

  it('refuses encode-once writes Busy past its memory budget, stays up, stores none of them, and takes more once they end', async () => {
    // Each declares a whole 64 MiB chunk and sends nothing: the budget (about four such) is reserved up front.
    const open = (chunkId: string) => {
      const header = { chunkId, length: MAX_CHUNK_BYTES + 1, rawLength: MAX_CHUNK_BYTES, encoded: true, pipeline: [] };
      let settled = false;
      let call!: grpc.ClientWritableStream<unknown>;
      const error = new Promise<grpc.ServiceError>((resolve) => {
        call = clients[1].writeChunk({ deadline: Date.now() + 60_000 }, (e: grpc.ServiceError) => {
          settled = true;
          resolve(e);
        });
      });
      call.on('error', () => {}); // arrives through the callback
      call.write({ header });
      return { call, error, settled: () => settled };
    };
    const kindOf = (e: grpc.ServiceError) => e.metadata.get(ERROR_KIND_METADATA_KEY)[0];
    const ids = Array.from({ length: 10 }, (_, i) => `enc-flood-${i}`);
    const calls = ids.map(open);
    // The refused ones answer at once; the held ones wait for data.
    for (let tries = 0; calls.filter((c) => c.settled()).length < 6 && tries < 600; tries++) await new Promise((r) => setTimeout(r, 50));
    const refused = calls.filter((c) => c.settled());
    expect(refused.length).toBe(6);
    for (const c of refused) expect(kindOf(await c.error)).toBe('Busy');
    expect(await callUnary(clients[1], 'nodeStatus', {}, 5000)).toMatchObject({ nodeId: 'dn1' });
    // Ending the held ones without a trailer: refused as corrupt, and their reservations return.
    const held = calls.filter((c) => !c.settled());
    for (const c of held) c.call.end();
    for (const c of held) expect(kindOf(await c.error)).toBe('Corrupt');
    const again = ids.slice(0, 4).map((id) => open(`${id}-again`));
    for (const c of again) c.call.end();
    for (const c of again) expect(kindOf(await c.error)).toBe('Corrupt');
    for (const id of ids) await expect(stat(chunkFilePath(dirs[1], id))).rejects.toMatchObject({ code: 'ENOENT' });
    // Raw writes were never held to it.
    const data = randomBytes(2 * MIB);
    expect(await writeChunk(clients[1], 'enc-flood-after', data, [])).toEqual({ storedOn: ['dn1'], failed: [], errors: [] });
  });

  it('answers NOT_FOUND for an unknown chunk', async () => {
    const err = await readChunk(clients[0], 'no-such-chunk').catch((e) => e);
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.metadata.get(ERROR_KIND_METADATA_KEY)).toEqual(['NotFound']);
    await expect(callUnary(clients[0], 'statChunk', { chunkId: 'no-such-chunk' }, 5000)).rejects.toMatchObject({ kind: 'NotFound' });
  });

  it('rejects a stream without a header, and malformed writes, and keeps serving', async () => {
    const err = await writeChunk(clients[0], 'x', randomBytes(1000), [], { header: false }).catch((e) => e);
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    const malformed: Array<[string, NodeAddress[], number]> = [
      ['../etc', [], 10],
      ['loop', hops(0), 10],
      ['huge', [], 65 * MIB],
      ['bad-hop', [{ nodeId: '', address: '' }], 10],
      ['long', hops(1), 5], // more data than declared: fails on every node, stored nowhere
      ['short', hops(1), 20], // less data than declared
    ];
    for (const [chunkId, pipeline, declaredBytes] of malformed) {
      const failure = await writeChunk(clients[0], chunkId, randomBytes(10), pipeline, { declaredBytes }).catch((e) => e);
      expect(failure.code).toBe(grpc.status.INVALID_ARGUMENT);
    }
    for (const chunkId of ['long', 'short']) {
      for (const client of clients.slice(0, 2)) {
        await expect(callUnary(client, 'statChunk', { chunkId }, 5000)).rejects.toMatchObject({ kind: 'NotFound' });
      }
    }
    expect(await callUnary(clients[0], 'nodeStatus', {}, 5000)).toMatchObject({ nodeId: 'dn0' });
  });

  it('refuses to overwrite a chunk and deletes idempotently', async () => {
    await writeChunk(clients[0], 'chunk-d', randomBytes(1000));
    const err = await writeChunk(clients[0], 'chunk-d', randomBytes(1000)).catch((e) => e);
    expect(err.code).toBe(grpc.status.ALREADY_EXISTS);
    await callUnary(clients[0], 'deleteChunk', { chunkId: 'chunk-d' }, 5000);
    await callUnary(clients[0], 'deleteChunk', { chunkId: 'chunk-d' }, 5000);
    await expect(callUnary(clients[0], 'statChunk', { chunkId: 'chunk-d' }, 5000)).rejects.toMatchObject({ kind: 'NotFound' });
  });

  it('answers DATA_LOSS naming the chunk when a file is damaged', async () => {
    await writeChunk(clients[0], 'chunk-c', randomBytes(600_000));
    const file = chunkFilePath(dirs[0], 'chunk-c');
    const handle = await open(file, 'r+');
    await handle.write(Buffer.from([0x42]), 0, 1, (await stat(file)).size - 1);
    await handle.close();
    const err = await readChunk(clients[0], 'chunk-c').catch((e) => e);
    expect(err.code).toBe(grpc.status.DATA_LOSS);
    expect(err.metadata.get(ERROR_KIND_METADATA_KEY)).toEqual(['Corrupt']);
    expect(err.details).toContain('chunk chunk-c: block 2 checksum mismatch');
  });

  it('measures 3-node pipeline write throughput (64 MiB random, 8 MiB chunks)', async () => {
    const chunks = Array.from({ length: 8 }, () => randomBytes(8 * MIB));
    let started = performance.now();
    for (const [i, data] of chunks.entries()) await writeChunk(clients[0], `bench-seq-${i}`, data, hops(1, 2));
    const sequentialMs = performance.now() - started;
    started = performance.now();
    await Promise.all(chunks.map((data, i) => writeChunk(clients[0], `bench-par-${i}`, data, hops(1, 2))));
    const parallelMs = performance.now() - started;
    const mbps = (ms: number) => ((64 * MIB) / 1e6 / (ms / 1000)).toFixed(0);
    console.log(`pipeline_write_3x_64MiB_sequential ${mbps(sequentialMs)} MB/s`);
    console.log(`pipeline_write_3x_64MiB_8_concurrent ${mbps(parallelMs)} MB/s`);
    expect((await readChunk(clients[2], 'bench-par-7')).equals(chunks[7])).toBe(true);
  }, 120_000);

  it('reports a stopped third node as failed and still stores on the other two', async () => {
    await nodes[2].stop();
    const data = randomBytes(3 * MIB);
    const reply = await writeChunk(clients[0], 'chunk-b', data, hops(1, 2));
    expect(reply.storedOn).toEqual(['dn0', 'dn1']);
    expect(reply.failed).toEqual(['dn2']);
    expect(reply.errors).toHaveLength(1);
    expect(reply.errors[0]).toContain('dn2');
    expect((await readChunk(clients[1], 'chunk-b')).equals(data)).toBe(true);
    const ghost = await writeChunk(clients[0], 'chunk-g', data, [{ nodeId: 'ghost', address: 'no such host:??' }, ...hops(1)]);
    expect(ghost).toMatchObject({ storedOn: ['dn0'], failed: ['ghost', 'dn1'] });
  });

  it('by star, reports each stopped node as failed, and the client commits only with the required acks', async () => {
    // nodes[2] was stopped by the test above.
    const data = randomBytes(64 * 1024);
    const reply = await writeChunk(clients[0], 'chunk-star-down', data, hops(2, 1));
    expect(reply).toMatchObject({ storedOn: ['dn0', 'dn1'], failed: ['dn2'] });
    expect(reply.errors[0]).toContain('dn2');
    expect((await readChunk(clients[1], 'chunk-star-down')).equals(data)).toBe(true);

    // The SDK's upload against a scripted coordinator: placements always put dn2 in the middle.
    const datanodes = new DataNodeClients({ writeTimeoutMs: 30_000, readTimeoutMs: 30_000 });
    const upload = async (requiredAcks: number) => {
      const calls: Array<{ method: string; request: Record<string, unknown> }> = [];
      let placements = 0;
      const coordinator = {
        async call(method: string, request: Record<string, unknown>) {
          calls.push({ method, request });
          if (method === 'AllocateChunk') return { chunkId: `ack-${requiredAcks}-${placements++}`, pipeline: hops(0, 2, 1), requiredAcks };
          return { attr: { ino: 7, type: 'FILE', size: data.length } };
        },
      } as unknown as CoordinatorClient;
      const failedNodes = new Set<string>();
      const result = await uploadChunk(coordinator, datanodes, { ino: 7, index: 0, data, maxAttempts: 2, failedNodes }).catch((err) => err);
      return { result, calls, failedNodes };
    };
    try {
      const all = await upload(3);
      expect(all.result).toMatchObject({ kind: 'Unavailable' });
      expect(all.calls.map((call) => call.method)).toEqual(['AllocateChunk', 'AllocateChunk']); // never committed
      expect(all.calls[1].request.excludeNodes).toEqual(['dn2']); // the failed node, not the head
      const quorum = await upload(2);
      expect(quorum.result).toMatchObject({ copies: 2 });
      expect(quorum.calls.map((call) => call.method)).toEqual(['AllocateChunk', 'CommitChunk']);
      expect(quorum.calls[1].request).toMatchObject({ chunkId: 'ack-2-0', nodes: ['dn0', 'dn1'] });
    } finally {
      datanodes.close();
    }
  });

  it('heartbeats every coordinator on its own, at the pace the coordinator asks for', async () => {
    const beats: Array<Record<string, unknown>> = [];
    const coordinator = new grpc.Server();
    coordinator.addService(strataProto.Coordinator.service, {
      heartbeat: (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        beats.push(call.request);
        callback(null, { intervalMs: 100 });
      },
    });
    const port = await bindServer(coordinator, '127.0.0.1:0');
    const dataDir = await mkdtemp(path.join(tmpdir(), 'strata-dnhb-'));
    dirs.push(dataDir);
    const coordinators = [DEAD_COORDINATOR, `127.0.0.1:${port}`];
    const config = { nodeId: 'dn-hb', dataDir, listen: '127.0.0.1:0', coordinators, heartbeatIntervalMs: 60_000, zone: 'z1', capacityBytes: 10 * MIB };
    const node = await runDataNode(config, log);
    try {
      // 60 s configured, 100 ms asked for: three beats within seconds prove the reply sets the pace.
      for (let waitedMs = 0; beats.length < 3 && waitedMs < 5000; waitedMs += 20) await new Promise((r) => setTimeout(r, 20));
      expect(beats.length).toBeGreaterThanOrEqual(3);
      expect(beats[0]).toMatchObject({ nodeId: 'dn-hb', address: node.address, zone: 'z1', capacityBytes: 10 * MIB, chunks: 0 });
    } finally {
      await node.stop();
      coordinator.forceShutdown();
    }
  });

  it('seals a chunk once at the head: every keyed replica stores the same ciphertext', async () => {
    // A coordinator that accepts every key: keyed nodes write only once one did.
    const coordinator = new grpc.Server();
    coordinator.addService(strataProto.Coordinator.service, {
      heartbeat: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, { intervalMs: 100 }),
    });
    const port = await bindServer(coordinator, '127.0.0.1:0');
    const masterKey = newMasterKeyText();
    const keyed: RunningDataNode[] = [];
    const keyedDirs: string[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const dataDir = await mkdtemp(path.join(tmpdir(), `strata-dnkey${i}-`));
        dirs.push(dataDir);
        keyedDirs.push(dataDir);
        const config = { nodeId: `dk${i}`, dataDir, listen: '127.0.0.1:0', coordinators: [`127.0.0.1:${port}`], heartbeatIntervalMs: 100, grants: 'off' as const, masterKey };
        keyed.push(await runDataNode(config, log));
      }
      const keyedClients = keyed.map((node) => new strataProto.DataNode(node.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) as Client);
      const pipeline = keyed.slice(1).map((node) => ({ nodeId: node.nodeId, address: node.address }));
      const data = Buffer.concat([Buffer.alloc(2 * MIB, 'sealed once '), randomBytes(MIB + 77)]);
      const small = Buffer.concat([Buffer.alloc(200_000, 'sealed small '), randomBytes(400_000)]); // by star, and not inline
      for (const [chunkId, bytes] of [['sealed-chain', data], ['sealed-star', small]] as const) {
        // Until each node's key was accepted (its first heartbeat reply), it refuses writes.
        let reply: WriteChunkReply | undefined;
        for (let tries = 0; !reply && tries < 100; tries++) {
          reply = await writeChunk(keyedClients[0], chunkId, bytes, pipeline).then(
            (r) => (r.failed.length === 0 ? r : undefined),
            () => undefined,
          );
          if (!reply) await new Promise((r) => setTimeout(r, 100));
        }
        expect(reply).toEqual({ storedOn: ['dk0', 'dk1', 'dk2'], failed: [], errors: [] });
        const files = await Promise.all(keyedDirs.map((dir) => readFile(chunkFilePath(dir, chunkId))));
        expect(files[0].readUInt16LE(4)).toBeGreaterThanOrEqual(2); // sealed (format 2 or later)
        expect(files[1].equals(files[0]), chunkId).toBe(true);
        expect(files[2].equals(files[0]), chunkId).toBe(true);
      }
      keyedClients.forEach((client) => client.close());
    } finally {
      await Promise.all(keyed.map((node) => node.stop()));
      coordinator.forceShutdown();
    }
  });

  it('keeps its node id and chunks across a restart', async () => {
    expect((await readFile(path.join(dirs[2], 'node-id'), 'utf8')).trim()).toBe('dn2');
    const listen = `127.0.0.1:${await freePort()}`;
    nodes[2] = await runDataNode({ dataDir: dirs[2], listen, coordinators: [DEAD_COORDINATOR], heartbeatIntervalMs: 200, grants: 'off' }, log);
    expect(nodes[2].nodeId).toBe('dn2');
    const client = new strataProto.DataNode(nodes[2].address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) as Client;
    clients.push(client);
    expect(await callUnary(client, 'statChunk', { chunkId: 'chunk-a' }, 5000)).toMatchObject({ length: 5 * MIB + 12345 });
    await expect(
      runDataNode({ nodeId: 'other', dataDir: dirs[2], listen: '127.0.0.1:0', coordinators: [], heartbeatIntervalMs: 200 }, log),
    ).rejects.toMatchObject({ kind: 'Invalid' });
  });
});
