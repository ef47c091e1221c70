// The data node's side of tiering, on real parts: data node servers on loopback with real chunk
// stores in temp dirs, a real S3-protocol server (s3rver), and a stand-in coordinator that only
// answers heartbeats (with the tier list). Uploads, read-through with its cache, a corrupted
// object, an outage, LRU eviction, and a recall (ReplicateChunk from the tier).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { readFile, readdir, rm, writeFile, mkdtemp } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { pino } from 'pino';
import { DataNodeClients, type NodeAddress } from '../client/datanode-client.js';
import { CHANNEL_OPTIONS, bindServer, callUnary, fromServiceError, strataProto } from '../common/grpc.js';
import type { NodeInfo } from '../common/node-info.js';
import { PART_SIZE_BYTES, chunkObjectKey, type TierCopy } from '../common/object-tier.js';
import type { StrataError } from '../common/errors.js';
import { chunkFilePath } from './chunk-store.js';
import type { ReplicateChunkReply } from './healing-service.js';
import { runDataNode, type DataNodeConfig, type RunningDataNode } from './run.js';
import { RANGED_MIN_OBJECT_BYTES, TIER_CACHE_DIR } from './tier-cache.js';
import { S3Server } from '../test/harness/s3.js';
import { freePort } from '../test/harness/ports.js';
import { waitFor } from '../test/harness/wait.js';
import { flipChunkFileByte } from '../test/harness/disk-rot.js';

const DEAD_COORDINATOR = '127.0.0.1:1';
const BUCKET = 'cold-bucket';
const TIER = 'cold';
const MIB = 1024 * 1024;
/** Random bytes this long are stored as a file and go up in more than one part. */
const MULTIPART_BYTES = PART_SIZE_BYTES + 4 * MIB;
/** Random chunks of this size encode to a little more: three of them overflow SMALL_BUDGET. */
const LRU_CHUNK_BYTES = 300_000;
const SMALL_BUDGET = 700_000;
/** At least RANGED_MIN_OBJECT_BYTES stored: a miss of it is served from ranged GETs meanwhile. */
const RANGED_CHUNK_BYTES = 8 * MIB;

type Client = grpc.Client & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('data node tiering', () => {
  const log = pino({ level: 'silent' });
  let s3: S3Server;
  let coordinator: grpc.Server;
  const nodes: RunningDataNode[] = [];
  const dirs: string[] = [];
  const clients: Client[] = [];
  const bytes = new DataNodeClients({ writeTimeoutMs: 60_000, readTimeoutMs: 60_000 });
  const hop = (i: number): NodeAddress => ({ nodeId: nodes[i].nodeId, address: nodes[i].address });

  async function start(config: Partial<DataNodeConfig> & { nodeId: string }): Promise<void> {
    const dataDir = await mkdtemp(path.join(tmpdir(), `strata-${config.nodeId}-`));
    dirs.push(dataDir);
    const node = await runDataNode({ dataDir, listen: `127.0.0.1:${await freePort()}`, coordinators: [DEAD_COORDINATOR], heartbeatIntervalMs: 200, grants: 'off', ...config }, log);
    nodes.push(node);
    clients.push(new strataProto.DataNode(node.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) as Client);
  }

  const status = (i: number) => callUnary<NodeInfo>(clients[i], 'nodeStatus', {}, 5000);
  const upload = (i: number, chunkId: string, key = chunkObjectKey({ prefix: '' }, chunkId), tier = TIER) =>
    callUnary<TierCopy>(clients[i], 'tierUpload', { chunkId, tier, key }, 60_000);
  const cacheFiles = async (i: number) => (await readdir(path.join(dirs[i], TIER_CACHE_DIR))).filter((name) => name !== 'tmp').sort();

  function read(i: number, chunkId: string, tier?: TierCopy, offset = 0, length = 0): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const pieces: Buffer[] = [];
      const call = clients[i].readChunk({ chunkId, offset, length, tier }, { deadline: Date.now() + 60_000 });
      call.on('data', (reply: { data: Buffer }) => pieces.push(reply.data));
      call.on('error', (err: grpc.ServiceError) => reject(fromServiceError(err)));
      call.on('end', () => resolve(Buffer.concat(pieces)));
    });
  }

  const failure = (promise: Promise<unknown>) =>
    promise.then(
      () => {
        throw new Error('expected a failure');
      },
      (err: StrataError) => err,
    );

  /** A chunk stored on node i, uploaded from there, then deleted there: only the tier has it. */
  async function tiered(i: number, chunkId: string, data: Buffer): Promise<TierCopy> {
    await bytes.writeChunk([hop(i)], chunkId, data);
    const copy = await upload(i, chunkId);
    await callUnary(clients[i], 'deleteChunk', { chunkId }, 5000);
    return copy;
  }

  beforeAll(async () => {
    s3 = await S3Server.start();
    await s3.createBucket(BUCKET);
    // A coordinator that answers heartbeats only, naming the tier: how node 0 learns it.
    coordinator = new grpc.Server(CHANNEL_OPTIONS);
    coordinator.addService(strataProto.Coordinator.service, {
      heartbeat: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, { intervalMs: 200, tiers: [s3.target(TIER, BUCKET)] }),
    });
    const coordinatorPort = await bindServer(coordinator, `127.0.0.1:${await freePort()}`);
    await start({ nodeId: 'dn0', coordinators: [`127.0.0.1:${coordinatorPort}`] });
    await start({ nodeId: 'dn1', tierCacheBytes: SMALL_BUDGET });
    await start({ nodeId: 'dn2', tierCacheBytes: 0 });
    nodes[1].tiers.update([s3.target(TIER, BUCKET)]);
  });

  afterAll(async () => {
    bytes.close();
    for (const client of clients) client.close();
    await Promise.all(nodes.map((node) => node.stop()));
    coordinator?.forceShutdown();
    await s3?.stop();
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('learns tiers from heartbeat replies; an unknown tier is a retryable error', async () => {
    await bytes.writeChunk([hop(2)], 'unknown-tier', randomBytes(1000));
    const err = await failure(upload(2, 'unknown-tier'));
    expect(err.kind).toBe('Unavailable');
    expect(err.message).toContain(`tier '${TIER}' is not known to this data node yet`);
    // Node 0 heartbeats to a coordinator that names the tier.
    await waitFor('node 0 to know the tier', async () => (await upload(0, 'unknown-tier').catch((e: StrataError) => e.kind !== 'Unavailable' && e)) || false);
    expect((await status(0)).tierCache).toMatchObject({ budgetBytes: 1024 * MIB, bytes: 0, chunks: 0 });
  });

  it('refuses bad uploads: invalid ids, an empty key, a chunk it does not hold', async () => {
    expect((await failure(upload(0, 'bad id!'))).kind).toBe('Invalid');
    await bytes.writeChunk([hop(0)], 'no-key', randomBytes(10));
    expect((await failure(upload(0, 'no-key', ''))).kind).toBe('Invalid');
    expect((await failure(upload(0, 'never-written'))).kind).toBe('NotFound');
    // Only the chunk's own object key: another would overwrite another chunk's copy.
    const foreign = await failure(upload(0, 'no-key', chunkObjectKey({ prefix: '' }, 'someone-else')));
    expect(foreign.kind).toBe('Invalid');
    expect(foreign.message).toMatch(/object key must be "chunks\/no-key"/);
  });

  it('uploads a chunk\'s stored encoding, inline and multipart, and answers its size and crc32c', async () => {
    const small = randomBytes(1000);
    const big = randomBytes(MULTIPART_BYTES);
    await bytes.writeChunk([hop(0)], 'up-small', small);
    await bytes.writeChunk([hop(0)], 'up-big', big);
    const s3tier = s3.tier('check', BUCKET);
    try {
      for (const chunkId of ['up-small', 'up-big']) {
        const copy = await upload(0, chunkId);
        const stat = await callUnary<{ storedBytes: number }>(clients[0], 'statChunk', { chunkId }, 5000);
        expect(copy).toEqual({ tier: TIER, key: `chunks/${chunkId}`, storedBytes: stat.storedBytes, crc32c: expect.any(Number) });
        expect((await s3tier.head(copy.key))?.sizeBytes).toBe(stat.storedBytes);
        const object = Buffer.concat(await (await s3tier.get(copy.key)).toArray());
        expect(crc32c(object) >>> 0).toBe(copy.crc32c);
      }
      // The big one is the chunk file, byte for byte, and went up in parts (completed with a POST).
      const object = Buffer.concat(await (await s3tier.get('chunks/up-big')).toArray());
      expect(object.equals(await readFile(chunkFilePath(dirs[0], 'up-big')))).toBe(true);
      const made = (key: string) => s3.objectEvents.filter((event) => event.key === key).map((event) => event.name);
      expect(made('chunks/up-big')).toEqual(['ObjectCreated:Post']);
      expect(made('chunks/up-small')).toEqual(['ObjectCreated:Put']);
    } finally {
      s3tier.close();
    }
  });

  it('never uploads a local copy that fails its checks: it is quarantined instead', async () => {
    await bytes.writeChunk([hop(0)], 'bad-local', randomBytes(600_000));
    await flipChunkFileByte(dirs[0], 'bad-local');
    const err = await failure(upload(0, 'bad-local'));
    expect(err.kind).toBe('Corrupt');
    expect(err.message).toContain('chunk bad-local');
    expect((await status(0)).corruptChunks).toContain('bad-local');
    const s3tier = s3.tier('check', BUCKET);
    try {
      expect(await s3tier.head('chunks/bad-local')).toBeUndefined();
    } finally {
      s3tier.close();
    }
  });

  it('serves from the tier when the local copy turns out bad', async () => {
    const data = randomBytes(MIB);
    await bytes.writeChunk([hop(0)], 'local-rot', data);
    const copy = await upload(0, 'local-rot');
    await flipChunkFileByte(dirs[0], 'local-rot'); // the last block: earlier blocks were already sent
    expect((await read(0, 'local-rot', copy)).equals(data)).toBe(true);
    expect((await status(0)).corruptChunks).toContain('local-rot');
    expect((await read(0, 'local-rot', copy)).equals(data)).toBe(true); // quarantined: straight to the tier
  });

  it('reads a tiered chunk through the cache once the local copy is gone: a miss, then hits', async () => {
    const data = randomBytes(3 * MIB + 123);
    const copy = await tiered(0, 'through', data);
    expect((await failure(read(0, 'through'))).kind).toBe('NotFound'); // no tier named: no read-through
    const before = (await status(0)).tierCache!;
    expect((await read(0, 'through', copy)).equals(data)).toBe(true);
    const afterMiss = (await status(0)).tierCache!;
    expect(afterMiss.misses).toBe(before.misses + 1);
    expect(afterMiss.chunks).toBe(before.chunks + 1);
    expect(afterMiss.bytes).toBe(before.bytes + copy.storedBytes);
    expect(await cacheFiles(0)).toContain('through');
    // A ranged read across a block boundary, then the whole chunk again: both from the cache.
    const offset = 2 * MIB - 1000;
    expect((await read(0, 'through', copy, offset, 300_000)).equals(data.subarray(offset, offset + 300_000))).toBe(true);
    expect((await read(0, 'through', copy)).equals(data)).toBe(true);
    const afterHits = (await status(0)).tierCache!;
    expect(afterHits.hits).toBe(afterMiss.hits + 2);
    expect(afterHits.misses).toBe(afterMiss.misses);
  });

  it('serves a small read of a large uncached chunk (ranged GETs meanwhile), then caches the whole object', async () => {
    const data = randomBytes(RANGED_CHUNK_BYTES);
    const copy = await tiered(0, 'large', data);
    expect(copy.storedBytes).toBeGreaterThanOrEqual(RANGED_MIN_OBJECT_BYTES);
    const before = (await status(0)).tierCache!;
    const offset = 5 * MIB + 12_345;
    expect((await read(0, 'large', copy, offset, 4096)).equals(data.subarray(offset, offset + 4096))).toBe(true);
    // The whole fetch may still be under way: wait for it, so later tests see a settled cache.
    const cached = await waitFor('the whole object in the cache', async () => {
      const now = (await status(0)).tierCache!;
      return now.chunks === before.chunks + 1 && now;
    });
    expect(cached).toMatchObject({ misses: before.misses + 1, hits: before.hits, fetchErrors: before.fetchErrors, bytes: before.bytes + copy.storedBytes });
    expect((await read(0, 'large', copy)).equals(data)).toBe(true);
    expect((await status(0)).tierCache!.hits).toBe(before.hits + 1);
  });

  it('concurrent misses of one chunk share one fetch', async () => {
    const data = randomBytes(MIB);
    const copy = await tiered(0, 'together', data);
    const before = (await status(0)).tierCache!;
    const reads = await Promise.all(Array.from({ length: 4 }, () => read(0, 'together', copy)));
    for (const got of reads) expect(got.equals(data)).toBe(true);
    const after = (await status(0)).tierCache!;
    expect(after.chunks).toBe(before.chunks + 1);
    expect(after.bytes).toBe(before.bytes + copy.storedBytes);
    expect(after.fetchErrors).toBe(before.fetchErrors);
  });

  it('fails Corrupt, naming chunk, tier and key, when the object is not the bytes uploaded; caches nothing', async () => {
    const data = randomBytes(500_000);
    const copy = await tiered(0, 'rotten', data);
    const s3tier = s3.tier('check', BUCKET);
    try {
      const object = Buffer.concat(await (await s3tier.get(copy.key)).toArray());
      object[object.length >> 1] ^= 0x01;
      await s3tier.put(copy.key, object, object.length);
    } finally {
      s3tier.close();
    }
    const before = (await status(0)).tierCache!;
    const err = await failure(read(0, 'rotten', copy));
    expect(err.kind).toBe('Corrupt');
    expect(err.message).toContain('chunk rotten');
    expect(err.message).toContain(`tier '${TIER}'`);
    expect(err.message).toContain(copy.key);
    const after = (await status(0)).tierCache!;
    expect(after.fetchErrors).toBe(before.fetchErrors + 1);
    expect(after.chunks).toBe(before.chunks);
    expect(await cacheFiles(0)).not.toContain('rotten');
    expect(await readdir(path.join(dirs[0], TIER_CACHE_DIR, 'tmp'))).toEqual([]);
    // A wrong size or crc in the request is caught the same way: the object is checked against it.
    const other = await tiered(0, 'asked-wrong', randomBytes(1000));
    expect((await failure(read(0, 'asked-wrong', { ...other, crc32c: (other.crc32c ^ 1) >>> 0 }))).kind).toBe('Corrupt');
    expect((await failure(read(0, 'asked-wrong', { ...other, storedBytes: other.storedBytes + 1 }))).kind).toBe('Corrupt');
  });

  it('fails Unavailable while the store is down, and reads again once it is back', async () => {
    const data = randomBytes(400_000);
    const copy = await tiered(0, 'outage', data);
    await s3.pause();
    try {
      const err = await failure(read(0, 'outage', copy));
      expect(err.kind).toBe('Unavailable');
      expect(err.message).toContain('chunk outage');
      expect(err.message).toMatch(/retry later/);
      expect(await cacheFiles(0)).not.toContain('outage');
    } finally {
      await s3.resume();
    }
    expect((await read(0, 'outage', copy)).equals(data)).toBe(true);
  }, 60_000);

  it('keeps the cache under its budget, evicting the least recently used; reads stay correct', async () => {
    const chunks = [0, 1, 2].map((n) => ({ chunkId: `lru-${n}`, data: randomBytes(LRU_CHUNK_BYTES) }));
    const copies = new Map<string, TierCopy>();
    for (const { chunkId, data } of chunks) copies.set(chunkId, await tiered(1, chunkId, data));
    for (const { chunkId, data } of chunks) expect((await read(1, chunkId, copies.get(chunkId))).equals(data)).toBe(true);
    const full = (await status(1)).tierCache!;
    expect(full.bytes).toBeLessThanOrEqual(SMALL_BUDGET);
    expect(full).toMatchObject({ budgetBytes: SMALL_BUDGET, chunks: 2, misses: 3, hits: 0 });
    expect(await cacheFiles(1)).toEqual(['lru-1', 'lru-2']);
    // lru-1 used again, then lru-0 comes back: lru-2 is now the least recently used.
    expect((await read(1, 'lru-1', copies.get('lru-1'))).equals(chunks[1].data)).toBe(true);
    expect((await read(1, 'lru-0', copies.get('lru-0'))).equals(chunks[0].data)).toBe(true);
    expect(await cacheFiles(1)).toEqual(['lru-0', 'lru-1']);
    const after = (await status(1)).tierCache!;
    expect(after).toMatchObject({ chunks: 2, misses: 4, hits: 1 });
    expect(after.bytes).toBeLessThanOrEqual(SMALL_BUDGET);
  });

  it('drops a cached copy damaged on disk and fetches it again', async () => {
    const data = randomBytes(LRU_CHUNK_BYTES);
    const copy = await tiered(1, 'lru-rot', data);
    expect((await read(1, 'lru-rot', copy)).equals(data)).toBe(true);
    const file = path.join(dirs[1], TIER_CACHE_DIR, 'lru-rot');
    const cached = await readFile(file);
    cached[cached.length - 10] ^= 0x40;
    await writeFile(file, cached);
    const before = (await status(1)).tierCache!;
    expect((await read(1, 'lru-rot', copy)).equals(data)).toBe(true);
    const after = (await status(1)).tierCache!;
    expect(after.misses).toBe(before.misses + 1); // fetched again
    expect((await readFile(file)).equals(cached)).toBe(false);
  });

  it('with no cache (budget 0) reads each time from the tier', async () => {
    nodes[2].tiers.update([s3.target(TIER, BUCKET)]);
    const data = randomBytes(200_000);
    const copy = await tiered(0, 'uncached', data);
    for (let n = 0; n < 2; n++) expect((await read(2, 'uncached', copy)).equals(data)).toBe(true);
    expect((await status(2)).tierCache).toMatchObject({ budgetBytes: 0, bytes: 0, chunks: 0, misses: 2, hits: 0 });
  });

  it('recalls a chunk: ReplicateChunk from the tier stores a normal local chunk', async () => {
    const data = randomBytes(2 * MIB + 5);
    const copy = await tiered(0, 'recall', data);
    const replicate = (request: Record<string, unknown>) =>
      callUnary<ReplicateChunkReply>(clients[1], 'replicateChunk', { chunkId: 'recall', length: data.length, crc32c: crc32c(data) >>> 0, ...request }, 60_000);
    // A wrong crc: nothing stored.
    const wrong = await failure(replicate({ sources: [], crc32c: (crc32c(data) ^ 1) >>> 0, tier: copy }));
    expect(wrong.kind).toBe('Corrupt');
    expect((await failure(read(1, 'recall'))).kind).toBe('NotFound');
    // Node 0 no longer has it: the tier serves.
    const reply = await replicate({ sources: [hop(0)], tier: copy });
    expect(reply.sourceNodeId).toBe(`tier:${TIER}`);
    expect((await read(1, 'recall')).equals(data)).toBe(true); // no tier named: the local copy
    const listed = await callUnary<{ storedBytes: number; length: number }>(clients[1], 'statChunk', { chunkId: 'recall' }, 5000);
    expect(listed.length).toBe(data.length);
    expect(await cacheFiles(1)).not.toContain('recall'); // a recall is not cached
    // Again: already here, intact.
    expect((await replicate({ sources: [], tier: copy })).sourceNodeId).toBe('dn1');
  });
});
