// Tiering end to end on real processes and a real S3-protocol server (s3rver): a policy moves
// a file's chunks to the tier and the local copies go, reads stay byte-identical (SDK, FUSE),
// recall brings them back and the objects are collected after the grace, deleting or
// overwriting a tiered file deletes its objects, S3 going away (before and during uploads)
// pauses tiering without losing anything and fails tiered reads with a retryable error, and a
// corrupted object fails the read with a checksum error naming the chunk. No timing asserts.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ChunkPlacement, Strata } from '../client/index.js';
import { chunkFilePath } from '../datanode/chunk-store.js';
import type { S3ObjectTier } from '../common/object-tier.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { fuseUnavailableReason, startMount } from './harness/mount.js';
import { tempDir, type TempDir } from './harness/ports.js';
import { S3Server, s3Env } from './harness/s3.js';
import { waitFor } from './harness/wait.js';

const KiB = 1024;

async function collect(stream: AsyncIterable<Buffer | Uint8Array>): Promise<Buffer[]> {
  const pieces: Buffer[] = [];
  for await (const piece of stream) pieces.push(Buffer.from(piece));
  return pieces;
}
const CHUNK = 256 * KiB; // random chunks this size are files on the data nodes, not inline
const BUCKET = 'strata-tier';
const GC_GRACE_MS = 3000;
const REPLICATION = 2;

describe('tiering to S3 (s3rver), embedded metadata, 3 data nodes, RF 2', () => {
  let s3: S3Server;
  let bucket: S3ObjectTier;
  let cluster: TestCluster;
  let client: Strata;
  let work: TempDir;

  const tierGet = (p: string) => client.tierGet(p);
  const allTiered = async (p: string) => {
    const info = await tierGet(p);
    return info.chunksLocal === 0 && info.chunksTiered > 0 ? info : undefined;
  };
  // Only chunks that encode past the inline limit are files; the short last chunk is not.
  const fileChunks = (chunks: ChunkPlacement[]) => chunks.filter((c) => c.length >= CHUNK);
  const nodeHolds = (nodeId: string, chunkId: string) => existsSync(chunkFilePath(cluster.dataDir(Number(nodeId.slice(2)) - 1), chunkId));
  const anyNodeHolds = (chunkId: string) => ['dn1', 'dn2', 'dn3'].some((n) => nodeHolds(n, chunkId));

  async function writeRandom(p: string, bytes: number): Promise<Buffer> {
    const data = randomBytes(bytes);
    await client.mkdir(path.posix.dirname(p), { parents: true });
    await client.writeFile(p, data);
    return data;
  }

  async function tierAndWait(dir: string): Promise<ChunkPlacement[]> {
    const set = await cluster.cli(['tier', 'set', dir, '--tier', 'cold']);
    expect(set.code, set.stderr).toBe(0);
    await waitFor(`${dir} tiered`, () => allTiered(dir), 60_000);
    const placements: ChunkPlacement[] = [];
    for (const entry of await client.readdir(dir)) placements.push(...(await client.locate(`${dir}/${entry.name}`)));
    return placements;
  }

  beforeAll(async () => {
    work = await tempDir('tiering');
    s3 = await S3Server.start();
    await s3.createBucket(BUCKET);
    bucket = s3.tier('check', BUCKET, 'strata/');
    cluster = await startCluster({
      datanodes: 3,
      replication: REPLICATION,
      chunkSize: '256KiB',
      env: s3Env,
      coordinatorArgs: [
        '--tier', s3.tierSpec('cold', BUCKET, 'strata/'),
        '--tier-interval-ms', '300',
        '--scan-interval-ms', '300',
        '--gc-grace-ms', String(GC_GRACE_MS),
      ],
    });
    client = cluster.client();
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    bucket?.close();
    await s3?.stop();
    await work?.cleanup();
  });

  test('a policy moves a file\'s chunks to S3, local copies go, and reads stay identical (SDK and FUSE)', async () => {
    const big = await writeRandom('/cold/big.bin', 5 * CHUNK + 1234);
    await client.writeFile('/cold/small.txt', 'a small file: its one chunk is inline on the data nodes\n');
    const hot = await writeRandom('/hot/keep.bin', 2 * CHUNK);
    const before = await client.locate('/cold/big.bin');
    expect(fileChunks(before)).toHaveLength(5);
    for (const chunk of fileChunks(before)) for (const nodeId of chunk.nodes) expect(nodeHolds(nodeId, chunk.chunkId)).toBe(true);

    const placements = await tierAndWait('/cold');
    expect(placements).toHaveLength(7);
    for (const chunk of placements) {
      expect(chunk.nodes).toEqual([]);
      expect(chunk.tier?.tier).toBe('cold');
      const object = await bucket.head(chunk.tier!.key);
      expect(object?.sizeBytes, chunk.tier!.key).toBe(chunk.tier!.storedBytes);
    }
    // The mover deletes the local copies once the record names the object.
    await waitFor('local copies of tiered chunks deleted', async () => fileChunks(before).every((c) => !anyNodeHolds(c.chunkId)), 30_000);

    expect((await client.readFile('/cold/big.bin')).equals(big)).toBe(true);
    expect((await client.readFile('/cold/small.txt')).toString()).toMatch(/^a small file/);
    const ranged = Buffer.concat(await collect(await client.createReadStream('/cold/big.bin', { start: CHUNK - 10, end: 3 * CHUNK + 9 })));
    expect(ranged.equals(big.subarray(CHUNK - 10, 3 * CHUNK + 10))).toBe(true);
    expect(await tierGet('/hot')).toMatchObject({ chunksLocal: 2, chunksTiered: 0 });
    expect((await client.readFile('/hot/keep.bin')).equals(hot)).toBe(true);
    const status = await client.tierStatus();
    expect(status.tiers[0]).toMatchObject({ name: 'cold', chunks: 7, state: 'ok' });

    if (fuseUnavailableReason()) return;
    const mount = await startMount(cluster, path.join(work.path, 'mnt'));
    try {
      expect((await readFile(path.join(mount.dir, 'cold/big.bin'))).equals(big)).toBe(true);
    } finally {
      await mount.stop();
    }
  }, 180_000);

  test('recall brings the chunks back to local replicas and pins; the objects are collected after the grace', async () => {
    const big = await client.readFile('/cold/big.bin');
    const tiered = await client.locate('/cold/big.bin');
    const recall = await cluster.cli(['tier', 'recall', '/cold', '--timeout', '2m']);
    expect(recall.code, recall.stderr).toBe(0);
    const info = await tierGet('/cold');
    expect(info).toMatchObject({ chunksTiered: 0, chunksLocal: 7, pinned: true, pinnedFrom: '/cold' });
    const recalled = await client.locate('/cold/big.bin');
    for (const chunk of recalled) {
      expect(chunk.tier).toBeUndefined();
      expect(new Set(chunk.nodes).size).toBe(REPLICATION);
    }
    for (const chunk of fileChunks(recalled)) for (const nodeId of chunk.nodes) expect(nodeHolds(nodeId, chunk.chunkId)).toBe(true);
    expect((await client.readFile('/cold/big.bin')).equals(big)).toBe(true);
    await waitFor('recalled chunks\' objects deleted by GC', async () => {
      for (const chunk of tiered) if (await bucket.head(chunk.tier!.key)) return false;
      return true;
    }, 60_000);
    // Pinned: the passes that ran while GC waited out the grace left it local, although its
    // policy still says cold.
    expect(await tierGet('/cold')).toMatchObject({ chunksTiered: 0, chunksLocal: 7 });
  }, 180_000);

  test('deleting or overwriting a tiered file deletes its objects after the grace', async () => {
    await writeRandom('/del/gone.bin', 3 * CHUNK);
    await writeRandom('/del/over.bin', 2 * CHUNK);
    const placements = await tierAndWait('/del');
    const keys = placements.map((c) => c.tier!.key);
    for (const key of keys) expect(await bucket.head(key)).toBeDefined();
    await client.rm('/del/gone.bin');
    const fresh = randomBytes(CHUNK + 7);
    await client.writeFile('/del/over.bin', fresh);
    await waitFor('objects of deleted and overwritten chunks collected', async () => {
      for (const key of keys) if (await bucket.head(key)) return false;
      return true;
    }, 60_000);
    expect((await client.readFile('/del/over.bin')).equals(fresh)).toBe(true);
  }, 180_000);

  test('S3 down: local reads unaffected, tiered reads fail retryably, tiering pauses and resumes; nothing is lost', async () => {
    await writeRandom('/outage/already.bin', 2 * CHUNK);
    await tierAndWait('/outage');
    const local = await writeRandom('/pending/local.bin', 24 * CHUNK);

    // Down before the policy: nothing can move, the tier shows unreachable, every byte reads back.
    await s3.pause();
    try {
      expect((await cluster.cli(['tier', 'set', '/pending', '--tier', 'cold'])).code).toBe(0);
      await waitFor('tier reported unreachable', async () => /unreachable/.test((await client.tierStatus()).tiers[0]!.state), 60_000);
      expect(await tierGet('/pending')).toMatchObject({ chunksTiered: 0, chunksLocal: 24 });
      expect((await client.readFile('/pending/local.bin')).equals(local)).toBe(true);
      // A tiered chunk no node has cached cannot be read: a clear, retryable error, not a hang.
      const failure = await client.readFile('/outage/already.bin').then(
        () => undefined,
        (err: Error & { kind?: string }) => err,
      );
      expect(failure?.kind).toBe('Unavailable');
      expect(failure?.message).toMatch(/unreachable|tier/);
      const cli = await cluster.cli(['cat', '/outage/already.bin']);
      expect(cli.code).not.toBe(0);
      expect(cli.stderr.trim().split('\n')).toHaveLength(1);
      if (!fuseUnavailableReason()) {
        const mount = await startMount(cluster, path.join(work.path, 'mnt-outage'));
        try {
          const viaFuse = await readFile(path.join(mount.dir, 'outage/already.bin')).then(() => undefined, (err: NodeJS.ErrnoException) => err);
          expect(viaFuse?.code).toBe('EIO');
          expect((await readFile(path.join(mount.dir, 'pending/local.bin'))).equals(local)).toBe(true);
        } finally {
          await mount.stop();
        }
      }
    } finally {
      await s3.resume();
    }
    await waitFor('tiering resumed after the outage', () => allTiered('/pending'), 120_000);
    expect((await client.readFile('/pending/local.bin')).equals(local)).toBe(true);

    // Down in the middle of uploads: whatever was not moved stays local and moves later.
    const more = await writeRandom('/pending/more.bin', 32 * CHUNK);
    await waitFor('uploads under way', async () => (await tierGet('/pending')).chunksTiered > 24 || undefined, 60_000);
    await s3.pause();
    let midway: Awaited<ReturnType<typeof tierGet>>;
    try {
      midway = await tierGet('/pending');
      expect((await client.readFile('/pending/local.bin')).equals(local)).toBe(true); // cached on its gateways by now
    } finally {
      await s3.resume();
    }
    await waitFor('every chunk tiered after the second outage', () => allTiered('/pending'), 120_000);
    expect(midway.chunksTiered + midway.chunksLocal).toBe(56);
    expect((await client.readFile('/pending/more.bin')).equals(more)).toBe(true);
  }, 360_000);

  test('a corrupted object fails the read with a checksum error naming the chunk, never wrong bytes', async () => {
    const data = await writeRandom('/rot/file.bin', 2 * CHUNK);
    const [first, second] = await tierAndWait('/rot');
    // Flip one byte in the middle of chunk 0's object, same size (nobody has read it: not cached).
    const object = Buffer.concat(await collect(await bucket.get(first!.tier!.key)));
    object[Math.floor(object.length / 2)]! ^= 0xff;
    await bucket.put(first!.tier!.key, object);

    const failure = await client.readFile('/rot/file.bin').then(
      () => undefined,
      (err: Error & { kind?: string }) => err,
    );
    expect(failure?.kind).toBe('Corrupt');
    expect(failure?.message).toContain(first!.chunkId);
    expect(failure?.message).toMatch(/checksum/);
    // The intact chunk still reads.
    const tail = Buffer.concat(await collect(await client.createReadStream('/rot/file.bin', { start: CHUNK })));
    expect(tail.equals(data.subarray(CHUNK))).toBe(true);
    expect(second!.tier).toBeDefined();
  }, 120_000);

  test('kill -9 of the coordinator and of a data node in the middle of tiering: nothing lost, and tiering finishes', async () => {
    const data = await writeRandom('/crash/a.bin', 80 * CHUNK);
    expect((await cluster.cli(['tier', 'set', '/crash', '--tier', 'cold'])).code).toBe(0);
    await waitFor('uploads under way', async () => (await tierGet('/crash')).chunksTiered > 0 || undefined, 60_000);
    cluster.coordinators[0]!.kill9();
    await new Promise((resolve) => cluster.coordinators[0]!.process.once('exit', resolve));
    const restartedAtMs = Date.now();
    cluster.coordinators[0]!.start();
    const afterRestart = await waitFor('coordinator back', () => tierGet('/crash'), 30_000);
    // Until a node's first heartbeat to the new process, it is not a read gateway there; that
    // window (seconds) is about availability, not loss, which is what this test is about.
    await waitFor('every data node heard by the restarted coordinator', async () => {
      const nodes = await client.nodes();
      return nodes.length === 3 && nodes.every((n) => n.state === 'live' && Number(n.lastHeartbeatMs) > restartedAtMs) ? true : undefined;
    }, 30_000);
    expect(afterRestart.chunksLocal + afterRestart.chunksTiered).toBe(80);
    if (afterRestart.chunksLocal > 0) {
      await waitFor('uploads under way again', async () => (await tierGet('/crash')).chunksTiered > afterRestart.chunksTiered || undefined, 60_000);
    }
    cluster.datanodes[2]!.kill9();
    await new Promise((resolve) => cluster.datanodes[2]!.process.once('exit', resolve));
    // Every chunk is local or has a verified object; reading it all works with a node down.
    expect((await client.readFile('/crash/a.bin')).equals(data)).toBe(true);
    cluster.datanodes[2]!.start();
    await waitFor('every chunk tiered', () => allTiered('/crash'), 120_000);
    for (const chunk of await client.locate('/crash/a.bin')) {
      expect((await bucket.head(chunk.tier!.key))?.sizeBytes).toBe(chunk.tier!.storedBytes);
    }
    expect((await client.readFile('/crash/a.bin')).equals(data)).toBe(true);
  }, 300_000);

  test('cold-after: only files neither read nor written for that long move; a read is an access unless keepAtime', async () => {
    const LONG_AGO = Date.parse('2020-01-01T00:00:00Z');
    const old = await writeRandom('/aging/old.bin', 2 * CHUNK);
    await writeRandom('/aging/fresh.bin', 2 * CHUNK);
    await writeRandom('/aging/read.bin', 2 * CHUNK);
    for (const name of ['old.bin', 'read.bin']) await client.setattr(`/aging/${name}`, { mtimeMs: LONG_AGO, atimeMs: LONG_AGO });
    // A backup-style read leaves atime alone; an ordinary read records the access.
    await client.readFile('/aging/old.bin', { keepAtime: true });
    await client.readFile('/aging/read.bin');
    await waitFor('atime of the read file updated', async () => (await client.stat('/aging/read.bin')).atimeMs > LONG_AGO, 10_000);
    expect((await client.stat('/aging/old.bin')).atimeMs).toBe(LONG_AGO);

    expect((await cluster.cli(['tier', 'set', '/aging', '--tier', 'cold', '--cold-after', '1h'])).code).toBe(0);
    await waitFor('the cold file tiered', async () => (await tierGet('/aging/old.bin')).chunksTiered === 2, 60_000);
    // The passes that moved old.bin looked at the others too: recently written or read, they stay.
    expect(await tierGet('/aging/fresh.bin')).toMatchObject({ chunksTiered: 0, chunksLocal: 2 });
    expect(await tierGet('/aging/read.bin')).toMatchObject({ chunksTiered: 0, chunksLocal: 2 });
    expect((await client.readFile('/aging/old.bin')).equals(old)).toBe(true);
  }, 120_000);
});

describe('tiering on etcd with 2 coordinators: the leader moves chunks; when it dies, the other finishes', () => {
  let s3: S3Server;
  let cluster: TestCluster;
  let client: Strata;

  beforeAll(async () => {
    s3 = await S3Server.start();
    await s3.createBucket(BUCKET);
    cluster = await startCluster({
      meta: 'etcd',
      coordinators: 2,
      datanodes: 3,
      replication: REPLICATION,
      chunkSize: '256KiB',
      env: s3Env,
      coordinatorArgs: ['--tier', s3.tierSpec('cold', BUCKET, 'etcd/'), '--tier-interval-ms', '300', '--leader-ttl-ms', '2000'],
    });
    client = cluster.client();
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    await s3?.stop();
  });

  test('policy set through one coordinator, status from either, leader killed -9 mid-way, recall asked of the survivor', async () => {
    const data = randomBytes(60 * CHUNK);
    await client.mkdir('/e', { parents: true });
    await client.writeFile('/e/f.bin', data);
    expect((await cluster.cli(['tier', 'set', '/e', '--tier', 'cold'])).code).toBe(0);
    const leader = await waitFor('a tiering leader', async () => (await client.tierStatus()).leader || undefined, 30_000);
    const leaderIndex = cluster.coordinators.findIndex((c) => c.address === leader);
    expect(leaderIndex).toBeGreaterThanOrEqual(0);
    await waitFor('uploads under way', async () => (await client.tierGet('/e')).chunksTiered > 0 || undefined, 60_000);
    cluster.coordinators[leaderIndex]!.kill9();
    const survivor = cluster.coordinators[1 - leaderIndex]!.address;
    await waitFor('the survivor leads and finishes', async () => {
      const [status, info] = await Promise.all([client.tierStatus(), client.tierGet('/e')]);
      return status.leader === survivor && info.chunksLocal === 0 && info.chunksTiered === 60;
    }, 120_000);
    expect((await client.readFile('/e/f.bin')).equals(data)).toBe(true);
    const recall = await cluster.cli(['tier', 'recall', '/e', '--timeout', '2m']);
    expect(recall.code, recall.stderr).toBe(0);
    expect(await client.tierGet('/e')).toMatchObject({ chunksTiered: 0, chunksLocal: 60, pinned: true });
    expect((await client.readFile('/e/f.bin')).equals(data)).toBe(true);
  }, 300_000);
});
