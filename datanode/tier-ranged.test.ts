// A cache miss of a large tiered chunk is served from ranged GETs while the whole object is still
// being fetched: against a real S3-protocol server (s3rver), with the whole-object GET held back
// so a read that completes proves it didn't wait for it. Damaged blocks fail Corrupt, a store
// that is down fails Unavailable, and the cache still gets (only) the checked whole object.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { crc32c } from '@node-rs/crc32';
import { pino } from 'pino';
import { BLOCK_SIZE_BYTES, ChunkEncoder, ChunkReader } from '../common/chunk-codec.js';
import type { StrataError } from '../common/errors.js';
import type { ObjectTier, RequestOptions, TierCopy, TierTarget } from '../common/object-tier.js';
import { TierCache } from './tier-cache.js';
import { TierRegistry } from './tier-registry.js';
import { firstRangeBytes, rangedSource } from './tier-ranged.js';
import { S3Server } from '../test/harness/s3.js';
import { tempDir, type TempDir } from '../test/harness/ports.js';

const BUCKET = 'ranged';
const TIER = 'cold';
const MIB = 1024 * 1024;
const LIMITS = { answerTimeoutMs: 2000, idleTimeoutMs: 2000 };

type Range = { start: number; end: number } | undefined;

/** An ObjectTier that records every GET and can hold whole-object GETs back until released. */
class WatchedTier implements ObjectTier {
  static gets: Array<{ key: string; range: Range }> = [];
  static held: Promise<void> | undefined;
  constructor(private readonly inner: ObjectTier) {}
  get target(): TierTarget {
    return this.inner.target;
  }
  async get(key: string, range?: Range, options?: RequestOptions): Promise<Readable> {
    WatchedTier.gets.push({ key, range });
    if (!range) await WatchedTier.held;
    return this.inner.get(key, range, options);
  }
  put = (...args: Parameters<ObjectTier['put']>) => this.inner.put(...args);
  head = (...args: Parameters<ObjectTier['head']>) => this.inner.head(...args);
  delete = (key: string) => this.inner.delete(key);
  list = (prefix: string) => this.inner.list(prefix);
  check = () => this.inner.check();
  close = () => this.inner.close();
}

/** A chunk's stored encoding, as a tier object holds it. */
async function encode(chunkId: string, data: Buffer): Promise<Buffer> {
  const encoder = new ChunkEncoder(chunkId, data.length);
  const payloads = await encoder.push(data);
  const last = await encoder.finish();
  return Buffer.concat([last.head, ...payloads, ...last.payloads]);
}

describe('tier cache: a miss served from ranged GETs', () => {
  const log = pino({ level: 'silent' });
  let s3: S3Server;
  let tiers: TierRegistry;
  let plain: ObjectTier;
  const dirs: TempDir[] = [];
  const caches: TierCache[] = [];

  beforeAll(async () => {
    s3 = await S3Server.start();
    await s3.createBucket(BUCKET);
    tiers = new TierRegistry(log, (target) => new WatchedTier(s3.tier(target.name, target.bucket)));
    tiers.update([s3.target(TIER, BUCKET)]);
    plain = s3.tier('check', BUCKET);
  });

  afterAll(async () => {
    plain?.close();
    tiers?.close();
    await s3?.stop();
  });

  afterEach(async () => {
    WatchedTier.held = undefined;
    WatchedTier.gets = [];
    for (const cache of caches.splice(0)) cache.close();
    await Promise.all(dirs.splice(0).map((dir) => dir.cleanup()));
  });

  async function openCache(): Promise<TierCache> {
    const dir = await tempDir('tier-ranged');
    dirs.push(dir);
    const cache = await TierCache.open({ dataDir: dir.path, budgetBytes: 64 * MIB, tiers, log, limits: LIMITS });
    caches.push(cache);
    return cache;
  }

  /** `data` as chunk `chunkId`'s object in the tier, optionally damaged after encoding. */
  async function tiered(chunkId: string, data: Buffer, damage?: (object: Buffer) => void): Promise<{ copy: TierCopy; object: Buffer }> {
    const object = await encode(chunkId, data);
    const copy = { tier: TIER, key: `chunks/${chunkId}`, storedBytes: object.length, crc32c: crc32c(object) >>> 0 };
    const stored = Buffer.from(object);
    damage?.(stored);
    await plain.put(copy.key, stored, stored.length);
    return { copy, object };
  }

  async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
    const pieces: Buffer[] = [];
    for await (const piece of stream) pieces.push(piece);
    return Buffer.concat(pieces);
  }

  const failure = (promise: Promise<unknown>) => promise.then(() => expect.unreachable('expected a failure'), (err: StrataError) => err);

  /** Holds whole-object GETs back until the returned function is called. */
  function holdWholeGets(): () => void {
    let release!: () => void;
    WatchedTier.held = new Promise((resolve) => (release = resolve));
    return release;
  }

  const cacheFiles = async (cache: TierCache) => (await readdir(cache.dir)).filter((name) => name !== 'tmp');
  const rangedGets = () => WatchedTier.gets.filter((get) => get.range).map((get) => get.range!);

  it('serves a small read from the head and one block before the whole object arrives, then caches it', async () => {
    const data = randomBytes(8 * MIB);
    const { copy } = await tiered('big', data);
    const cache = await openCache();
    const release = holdWholeGets();
    const offset = 12_345;
    // Completes while the whole-object GET is held: it never waited for it.
    expect((await collect(cache.read('big', copy, offset, 4096))).equals(data.subarray(offset, offset + 4096))).toBe(true);
    expect(WatchedTier.gets.filter((get) => !get.range)).toHaveLength(1); // the whole fetch is under way
    // Inside the first block: one GET of the head and that block, no more.
    expect(rangedGets()).toEqual([{ start: 0, end: firstRangeBytes('big', copy, offset + 4096) }]);
    expect(cache.status()).toMatchObject({ misses: 1, hits: 0, chunks: 0 });

    // Further in, across a block boundary: the head again (kept), then just the two blocks.
    const far = 5 * BLOCK_SIZE_BYTES - 1000;
    expect((await collect(cache.read('big', copy, far, 3000))).equals(data.subarray(far, far + 3000))).toBe(true);
    const later = rangedGets().slice(1);
    expect(later).toHaveLength(2);
    for (const range of later) expect(range.end - range.start).toBe(BLOCK_SIZE_BYTES); // random data: raw blocks

    release();
    await waitForEntry(cache, 'big');
    expect(cache.status()).toMatchObject({ misses: 2, hits: 0, chunks: 1, bytes: copy.storedBytes, fetchErrors: 0 });
    // Now a hit: from the cache, no GET at all.
    const before = WatchedTier.gets.length;
    expect((await collect(cache.read('big', copy, 0, 0 + 8 * MIB))).equals(data)).toBe(true);
    expect(WatchedTier.gets.length).toBe(before);
    expect(cache.status()).toMatchObject({ hits: 1 });
    expect(await cacheFiles(cache)).toEqual(['big']);
  });

  it('goes on from the cache once the whole object is in', async () => {
    const data = randomBytes(6 * MIB + 17);
    const { copy } = await tiered('whole', data);
    const cache = await openCache();
    const release = holdWholeGets();
    const read = cache.read('whole', copy, 0, data.length);
    const first = await read.next();
    expect(first.done).toBe(false);
    release();
    await waitForEntry(cache, 'whole');
    const rest = await collect({ [Symbol.asyncIterator]: () => read });
    expect(Buffer.concat([first.value as Buffer, rest]).equals(data)).toBe(true);
    // The head, block 0 and the block read ahead of it; the other 22 blocks came from the cache.
    expect(rangedGets()).toHaveLength(3);
    expect(cache.status()).toMatchObject({ misses: 1, hits: 0, chunks: 1, fetchErrors: 0 });
  });

  it('fails Corrupt, naming chunk, tier and key, for a damaged block: no byte of it served, nothing cached', async () => {
    const data = randomBytes(8 * MIB);
    const damagedBlock = 17;
    const { copy, object } = await tiered('rotten', data, (stored) => {
      stored[stored.length - (32 - damagedBlock) * BLOCK_SIZE_BYTES + 100] ^= 0x01; // random data: raw blocks
    });
    // The ranged source itself, under ChunkReader: the block's stored crc fails.
    const reader = await ChunkReader.open('rotten', rangedSource(tiers.get(TIER), 'rotten', copy, firstRangeBytes('rotten', copy, 0), LIMITS));
    const blockErr = await failure(collect(reader.read(damagedBlock * BLOCK_SIZE_BYTES, 10)));
    expect(blockErr.kind).toBe('Corrupt');
    expect(blockErr.message).toBe(`chunk rotten: block ${damagedBlock} checksum mismatch on object ${copy.key} in tier '${TIER}'`);
    expect(object.length).toBe(copy.storedBytes);

    // Through the cache: the read fails as a whole fetch of it fails (its error names all three).
    const cache = await openCache();
    WatchedTier.gets = [];
    const served: Buffer[] = [];
    const err = await failure(
      (async () => {
        for await (const piece of cache.read('rotten', copy, (damagedBlock - 1) * BLOCK_SIZE_BYTES, 2 * BLOCK_SIZE_BYTES)) served.push(piece);
      })(),
    );
    expect(err.kind).toBe('Corrupt');
    expect(err.message).toContain('chunk rotten');
    expect(err.message).toContain(`tier '${TIER}'`);
    expect(err.message).toContain(copy.key);
    expect(Buffer.concat(served).length).toBeLessThanOrEqual(BLOCK_SIZE_BYTES); // the good block before it at most
    expect(rangedGets().length).toBeGreaterThan(0); // it was a ranged read that met the damage
    expect(cache.status()).toMatchObject({ misses: 1, chunks: 0, fetchErrors: 1 });
    expect(await cacheFiles(cache)).toEqual([]);
    expect(await readdir(path.join(cache.dir, 'tmp'))).toEqual([]);
  });

  it('fails Unavailable within its limits while the store is down', async () => {
    const data = randomBytes(5 * MIB);
    const { copy } = await tiered('outage', data);
    const cache = await openCache();
    await s3.pause();
    try {
      const started = Date.now();
      const err = await failure(collect(cache.read('outage', copy, 1000, 4096)));
      expect(err.kind).toBe('Unavailable');
      expect(err.message).toContain('chunk outage');
      expect(err.message).toMatch(/retry later/);
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      await s3.resume();
    }
    expect((await collect(cache.read('outage', copy, 1000, 4096))).equals(data.subarray(1000, 5096))).toBe(true);
  }, 60_000);

  it('reads of a small object take the whole fetch, as before', async () => {
    const data = randomBytes(MIB);
    const { copy } = await tiered('small', data);
    const cache = await openCache();
    expect((await collect(cache.read('small', copy, 0, 4096))).equals(data.subarray(0, 4096))).toBe(true);
    expect(rangedGets()).toEqual([]);
    expect(await cacheFiles(cache)).toEqual(['small']);
  });
});

async function waitForEntry(cache: TierCache, chunkId: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if ((await readdir(path.join(cache.dir))).includes(chunkId) && cache.status().chunks > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`${chunkId} never entered the cache`);
}
