// The store's self-healing surface: the paged listing, full verification, and quarantine of a
// corrupt chunk (not served, reported, kept across restarts until a delete clears it).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import type { Level } from 'level';
import { LocalChunkStore, chunkFilePath, inlineChunkKey, quarantineFilePath, type ChunkRecord } from './chunk-store.js';
import { chunkRecordKey } from './chunk-layout.js';
import { flipChunkFileByte } from '../test/harness/disk-rot.js';

/** Random bytes this long always encode past INLINE_MAX_BYTES: the chunk is a file. */
const FILE_BYTES = 600_000;

async function put(store: LocalChunkStore, chunkId: string, data: Buffer): Promise<ChunkRecord> {
  const writer = await store.createWriter(chunkId, data.length);
  await writer.write(data);
  return writer.commit();
}

async function get(store: LocalChunkStore, chunkId: string, offset = 0, length = Number.MAX_SAFE_INTEGER): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of store.read(chunkId, offset, length)) pieces.push(piece);
  return Buffer.concat(pieces);
}

function indexOf(store: LocalChunkStore): Level<string, unknown> {
  return (store as unknown as { index: Level<string, unknown> }).index;
}

describe('LocalChunkStore self-healing', () => {
  let dir: string;
  let store: LocalChunkStore;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'strata-heal-'));
    store = await LocalChunkStore.open(dir);
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lists chunks in pages with length, stored bytes and when each became durable', async () => {
    const before = Date.now();
    const ids = Array.from({ length: 25 }, (_, n) => `list-${String(n).padStart(2, '0')}`);
    const records = new Map<string, ChunkRecord>();
    for (const [n, chunkId] of ids.entries()) records.set(chunkId, await put(store, chunkId, randomBytes(n === 3 ? FILE_BYTES : 1000 + n)));
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await store.listChunks(after, 10);
      for (const listed of page) {
        const record = records.get(listed.chunkId)!;
        expect(listed).toEqual({ chunkId: listed.chunkId, length: record.length, storedBytes: record.storedBytes, storedAtMs: record.createdMs });
        expect(listed.storedAtMs).toBeGreaterThanOrEqual(before);
      }
      seen.push(...page.map((listed) => listed.chunkId));
      if (page.length < 10) break;
      after = page[page.length - 1].chunkId;
    }
    expect(seen).toEqual(ids);
    // A record without the time (none is written so, but a tool might) is listed with 0.
    const { createdMs, ...timeless } = records.get('list-00')!;
    expect(createdMs).toBeGreaterThan(0);
    await indexOf(store).put(chunkRecordKey('list-00'), timeless);
    expect((await store.listChunks(undefined, 1))[0]).toMatchObject({ chunkId: 'list-00', storedAtMs: 0 });
  });

  it('verifies every block of file and inline chunks and returns the whole-chunk crc32c', async () => {
    for (const [chunkId, data] of [['v-file', randomBytes(FILE_BYTES)], ['v-inline', randomBytes(2000)], ['v-empty', Buffer.alloc(0)]] as const) {
      const record = await put(store, chunkId, data);
      expect(await store.verify(chunkId)).toEqual({ length: data.length, storedBytes: record.storedBytes, crc32c: crc32c(data) >>> 0 });
    }
    let paced = 0;
    await store.verify('v-file', { pace: async (bytes) => void (paced += bytes) });
    expect(paced).toBe(FILE_BYTES);
    await expect(store.verify('nope')).rejects.toMatchObject({ kind: 'NotFound' });
    expect(store.quarantined()).toEqual([]);
  });

  it('reads a chunk\'s whole stored encoding (file or inline) only once every block checked', async () => {
    for (const [chunkId, data] of [['e-file', randomBytes(FILE_BYTES)], ['e-inline', randomBytes(2000)]] as const) {
      const record = await put(store, chunkId, data);
      const encoding = await store.readEncoding(chunkId);
      expect(encoding.bytes.length).toBe(record.storedBytes);
      expect({ length: encoding.length, crc32c: encoding.crc32c }).toEqual({ length: data.length, crc32c: crc32c(data) >>> 0 });
    }
    expect((await store.readEncoding('e-file')).bytes.equals(await readFile(chunkFilePath(dir, 'e-file')))).toBe(true);
    await expect(store.readEncoding('nope')).rejects.toMatchObject({ kind: 'NotFound' });
    await flipChunkFileByte(dir, 'e-file');
    await expect(store.readEncoding('e-file')).rejects.toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('chunk e-file') });
    expect(store.quarantined()).toEqual(['e-file']);
  });

  it('quarantines a chunk file that fails verification, keeps it quarantined across a restart, and clears it on delete', async () => {
    const good = randomBytes(FILE_BYTES);
    await put(store, 'good', good);
    const record = await put(store, 'rotten', randomBytes(FILE_BYTES));
    const usage = store.usage();
    await flipChunkFileByte(dir, 'rotten');
    const damaged = await readFile(chunkFilePath(dir, 'rotten'));

    const err = await store.verify('rotten').catch((e) => e);
    expect(err).toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('chunk rotten: block 2 checksum mismatch') });
    const check = async () => {
      expect(store.quarantined()).toEqual(['rotten']);
      expect(await store.has('rotten')).toBe(false);
      await expect(get(store, 'rotten')).rejects.toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('quarantined') });
      await expect(store.stat('rotten')).rejects.toMatchObject({ kind: 'Corrupt' });
      expect((await store.listChunks(undefined, 100)).map((listed) => listed.chunkId)).toEqual(['good']);
      expect(store.usage()).toEqual({ usedBytes: usage.usedBytes - record.storedBytes, chunks: usage.chunks - 1 });
      // Set aside, not served: the bytes are kept for inspection under quarantine/.
      expect(existsSync(chunkFilePath(dir, 'rotten'))).toBe(false);
      expect((await readFile(quarantineFilePath(dir, 'rotten'))).equals(damaged)).toBe(true);
      // No new copy may take the id while the corrupt one is reported.
      await expect(store.createWriter('rotten', 10)).rejects.toMatchObject({ kind: 'Conflict' });
      expect((await get(store, 'good')).equals(good)).toBe(true);
    };
    await check();
    await store.close();
    store = await LocalChunkStore.open(dir);
    await check();

    await store.delete('rotten');
    expect(store.quarantined()).toEqual([]);
    expect(existsSync(quarantineFilePath(dir, 'rotten'))).toBe(false);
    await expect(get(store, 'rotten')).rejects.toMatchObject({ kind: 'NotFound' });
    const fresh = randomBytes(FILE_BYTES);
    await put(store, 'rotten', fresh); // the id is free again
    expect((await get(store, 'rotten')).equals(fresh)).toBe(true);
    await store.close();
    store = await LocalChunkStore.open(dir);
    expect(store.quarantined()).toEqual([]);
    expect((await store.verify('rotten')).crc32c).toBe(crc32c(fresh) >>> 0);
  });

  it('a read that hits a bad block quarantines the chunk; one that does not, does not', async () => {
    const data = randomBytes(FILE_BYTES); // 3 blocks: 256 KiB, 256 KiB, the rest
    await put(store, 'ranged', data);
    await flipChunkFileByte(dir, 'ranged'); // in the last block
    expect((await get(store, 'ranged', 0, 1000)).equals(data.subarray(0, 1000))).toBe(true);
    expect(store.quarantined()).toEqual([]);
    await expect(get(store, 'ranged', FILE_BYTES - 100, 100)).rejects.toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('block 2') });
    expect(store.quarantined()).toEqual(['ranged']); // quarantined before the read failed
    await expect(get(store, 'ranged', 0, 1000)).rejects.toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('quarantined') });
  });

  it('quarantines a damaged inline chunk, its bytes set aside, across a restart', async () => {
    await put(store, 'small', randomBytes(3000));
    const bytes = (await indexOf(store).get<string, Buffer>(inlineChunkKey('small'), { valueEncoding: 'buffer' }))!;
    bytes[bytes.length - 1] ^= 0x01;
    await indexOf(store).put<string, Buffer>(inlineChunkKey('small'), bytes, { valueEncoding: 'buffer' });
    await expect(get(store, 'small')).rejects.toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('block 0 checksum mismatch') });
    expect(store.quarantined()).toEqual(['small']);
    expect(await indexOf(store).get(inlineChunkKey('small'))).toBeUndefined(); // not in the index any more
    expect((await readFile(quarantineFilePath(dir, 'small'))).equals(bytes)).toBe(true);
    expect(store.usage()).toEqual({ usedBytes: 0, chunks: 0 });
    await store.close();
    store = await LocalChunkStore.open(dir);
    expect(store.quarantined()).toEqual(['small']);
    await expect(get(store, 'small')).rejects.toMatchObject({ kind: 'Corrupt' });
    await Promise.all([store.delete('small'), store.delete('small')]);
    expect(store.quarantined()).toEqual([]);
    expect(existsSync(quarantineFilePath(dir, 'small'))).toBe(false);
  });

  it('quarantines a chunk whose file is gone, and an intact chunk is never quarantined', async () => {
    await put(store, 'lost', randomBytes(FILE_BYTES));
    await rm(chunkFilePath(dir, 'lost'));
    await expect(get(store, 'lost')).rejects.toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('file missing') });
    expect(store.quarantined()).toEqual(['lost']);
    await put(store, 'fine', randomBytes(FILE_BYTES));
    expect(await store.quarantine('lost', 'again')).toBe(false); // already: nothing to do
    expect(await store.quarantine('absent', 'no such chunk')).toBe(false);
    expect(store.quarantined()).toEqual(['lost']);
    expect((await stat(chunkFilePath(dir, 'fine'))).size).toBe((await store.stat('fine')).storedBytes);
  });
});
