import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtemp, readdir, rm, rmdir, stat, writeFile, open } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Level } from 'level';
import { headSizeBytes } from '../common/chunk-codec.js';
import { INLINE_MAX_BYTES, LocalChunkStore, chunkFilePath, inlineChunkKey, type ChunkRecord } from './chunk-store.js';
import { WAVE_INLINE_MAX_BYTES, chunkRecordKey } from './chunk-layout.js';

const MIB = 1024 * 1024;
/** Random bytes this long always encode past INLINE_MAX_BYTES: the chunk is a file. */
const FILE_BYTES = 100_000;

function textBytes(sizeBytes: number): Buffer {
  const lines: string[] = [];
  let total = 0;
  for (let n = 0; total < sizeBytes; n++) {
    const line = `${1_700_000_000_000 + n * 37} INFO chunk=${(n * 2654435761) % 2 ** 32} op=${n % 3 ? 'read' : 'write'} bytes=${(n * 7919) % 65536}\n`;
    lines.push(line);
    total += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, sizeBytes);
}

async function put(store: LocalChunkStore, chunkId: string, data: Buffer, pieceBytes = 1 * MIB): Promise<ChunkRecord> {
  const writer = await store.createWriter(chunkId, data.length);
  for (let at = 0; at < data.length; at += pieceBytes) await writer.write(data.subarray(at, at + pieceBytes));
  return writer.commit();
}

async function get(store: LocalChunkStore, chunkId: string, offset = 0, length = Number.MAX_SAFE_INTEGER): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of store.read(chunkId, offset, length)) pieces.push(piece);
  return Buffer.concat(pieces);
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** The store's own LevelDB handle: tests read and damage inline bytes through it. */
function indexOf(store: LocalChunkStore): Level<string, unknown> {
  return (store as unknown as { index: Level<string, unknown> }).index;
}

async function inlineValue(store: LocalChunkStore, chunkId: string): Promise<Buffer | undefined> {
  return indexOf(store).get<string, Buffer>(inlineChunkKey(chunkId), { valueEncoding: 'buffer' });
}

async function setInlineValue(store: LocalChunkStore, chunkId: string, bytes: Buffer): Promise<void> {
  await indexOf(store).put<string, Buffer>(inlineChunkKey(chunkId), bytes, { valueEncoding: 'buffer' });
}

/** Compresses about 250:1: a 1 MiB chunk of it encodes to a few KiB, so it is stored inline. */
function repetitiveBytes(sizeBytes: number): Buffer {
  return Buffer.from('strata inline chunk test line\n'.repeat(Math.ceil(sizeBytes / 30))).subarray(0, sizeBytes);
}

/** Where a chunk's bytes are, as the files and the index say: for assertions on placement. */
async function placementOf(store: LocalChunkStore, dir: string, chunkId: string): Promise<string> {
  const file = existsSync(chunkFilePath(dir, chunkId));
  const inline = (await inlineValue(store, chunkId)) !== undefined;
  return file && inline ? 'both' : file ? 'file' : inline ? 'inline' : 'none';
}

describe('LocalChunkStore', () => {
  let dir: string;
  let store: LocalChunkStore;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'strata-store-'));
    store = await LocalChunkStore.open(dir);
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('makes a chunk visible only once committed', async () => {
    const data = randomBytes(600_000);
    const writer = await store.createWriter('c1', data.length);
    await writer.write(data.subarray(0, 300_000));
    expect(await store.has('c1')).toBe(false);
    await expect(store.stat('c1')).rejects.toMatchObject({ kind: 'NotFound' });
    expect(await collect(store.list())).toEqual([]);
    await writer.write(data.subarray(300_000));
    expect(await store.has('c1')).toBe(false);
    const record = await writer.commit();
    expect(record).toMatchObject({ length: data.length, blocks: 3 });
    expect(await store.has('c1')).toBe(true);
    expect((await get(store, 'c1')).equals(data)).toBe(true);
    expect((await get(store, 'c1', 262_000, 1000)).equals(data.subarray(262_000, 263_000))).toBe(true);
    expect(store.usage()).toEqual({ usedBytes: record.storedBytes, chunks: 1 });
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
  });

  it('keeps the index and the data across a restart', async () => {
    const text = textBytes(3 * MIB);
    const random = randomBytes(MIB);
    await put(store, 'text-1', text);
    await put(store, 'rand_1', random);
    const usage = store.usage();
    expect((await store.stat('text-1')).storedBytes).toBeLessThan(text.length / 2);
    await store.close();
    store = await LocalChunkStore.open(dir);
    expect(store.usage()).toEqual(usage);
    expect((await collect(store.list())).sort()).toEqual(['rand_1', 'text-1']);
    expect((await get(store, 'text-1')).equals(text)).toBe(true);
    expect((await get(store, 'rand_1')).equals(random)).toBe(true);
  });

  it('removes leftover temp files at open and never shows an uncommitted chunk', async () => {
    const writer = await store.createWriter('torn', 1000);
    await writer.write(randomBytes(500));
    await store.close(); // a clean close aborts the writer
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
    // What a crash leaves: a partial temp file, and a renamed file whose index entry never landed.
    await writeFile(path.join(dir, 'tmp', 'torn.0123456789ab'), randomBytes(700));
    const orphan = chunkFilePath(dir, 'torn');
    await writeFile(orphan, randomBytes(900));
    store = await LocalChunkStore.open(dir);
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
    expect(await store.has('torn')).toBe(false);
    await put(store, 'torn', randomBytes(FILE_BYTES)); // the id is free to write again, over the orphan
    expect((await get(store, 'torn')).length).toBe(FILE_BYTES);
    // An orphan file never shadows an inline chunk: the record says where the bytes are.
    await writeFile(chunkFilePath(dir, 'small'), randomBytes(900));
    const small = randomBytes(1000);
    await put(store, 'small', small);
    expect((await store.stat('small')).placement).toBe('inline');
    expect((await get(store, 'small')).equals(small)).toBe(true);
  });

  it('refuses to rewrite an existing chunk', async () => {
    await put(store, 'once', randomBytes(100));
    await expect(store.createWriter('once', 100)).rejects.toMatchObject({ kind: 'Exists' });
    await put(store, 'once-file', randomBytes(FILE_BYTES));
    await expect(store.createWriter('once-file', FILE_BYTES)).rejects.toMatchObject({ kind: 'Exists' });
    await expect(store.createWriter('once', FILE_BYTES)).rejects.toMatchObject({ kind: 'Exists' });
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([]); // the temp file made for the check is gone
    const first = await store.createWriter('twice', 10);
    await expect(store.createWriter('twice', 10)).rejects.toMatchObject({ kind: 'Conflict' });
    await first.abort();
  });

  it('rejects invalid chunk ids before touching the disk', async () => {
    for (const bad of ['', '../escape', 'a/b', '..', 'x'.repeat(129), 'sp ace', 'nul\0']) {
      await expect(store.createWriter(bad, 1)).rejects.toMatchObject({ kind: 'Invalid' });
      await expect(store.stat(bad)).rejects.toMatchObject({ kind: 'Invalid' });
      await expect(store.delete(bad)).rejects.toMatchObject({ kind: 'Invalid' });
      await expect(collect(store.read(bad, 0, 1))).rejects.toMatchObject({ kind: 'Invalid' });
    }
    await expect(store.createWriter('ok', -1)).rejects.toMatchObject({ kind: 'Invalid' });
    await expect(store.createWriter('ok', 64 * MIB + 1)).rejects.toMatchObject({ kind: 'Invalid' });
  });

  it('stores nothing when the length does not match', async () => {
    const long = await store.createWriter('long', 10);
    await expect(long.write(Buffer.alloc(11))).rejects.toMatchObject({ kind: 'Invalid' });
    await expect(long.commit()).rejects.toMatchObject({ kind: 'Invalid' });
    const short = await store.createWriter('short', 10);
    await short.write(Buffer.alloc(9));
    await expect(short.commit()).rejects.toMatchObject({ kind: 'Invalid' });
    // The same for chunks that have a temp file, with payloads in it or not yet.
    const bigLong = await store.createWriter('big-long', 300_000);
    await bigLong.write(randomBytes(290_000));
    await expect(bigLong.write(randomBytes(20_000))).rejects.toMatchObject({ kind: 'Invalid' });
    const bigShort = await store.createWriter('big-short', FILE_BYTES);
    await bigShort.write(randomBytes(FILE_BYTES - 1));
    await expect(bigShort.commit()).rejects.toMatchObject({ kind: 'Invalid' });
    for (const chunkId of ['long', 'short', 'big-long', 'big-short']) {
      expect(await store.has(chunkId)).toBe(false);
      expect(await placementOf(store, dir, chunkId)).toBe('none');
    }
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
    expect(store.usage()).toEqual({ usedBytes: 0, chunks: 0 });
  });

  it('deletes idempotently, inline and file chunks alike', async () => {
    for (const [chunkId, sizeBytes] of [['gone', 1000], ['gone-file', FILE_BYTES]] as const) {
      await put(store, chunkId, randomBytes(sizeBytes));
      await Promise.all([store.delete(chunkId), store.delete(chunkId)]);
      await store.delete(chunkId);
      expect(await store.has(chunkId)).toBe(false);
      expect(await placementOf(store, dir, chunkId)).toBe('none');
      await expect(store.stat(chunkId)).rejects.toMatchObject({ kind: 'NotFound' });
      await expect(get(store, chunkId)).rejects.toMatchObject({ kind: 'NotFound' });
    }
    await store.delete('never-existed');
    expect(store.usage()).toEqual({ usedBytes: 0, chunks: 0 });
  });

  it('reports a damaged chunk file as Corrupt, naming chunk and dir', async () => {
    await put(store, 'bad', randomBytes(300_000));
    const file = chunkFilePath(dir, 'bad');
    const handle = await open(file, 'r+');
    await handle.write(Buffer.from([0xff]), 0, 1, (await stat(file)).size - 10);
    await handle.close();
    const err = await get(store, 'bad').catch((e) => e);
    expect(err).toMatchObject({ kind: 'Corrupt' });
    expect(err.message).toContain(`chunk bad: block 1 checksum mismatch on ${dir}`);
  });

  it('commits concurrent writers in shared waves: all visible, all durable across a reopen', async () => {
    const chunks = new Map<string, Buffer>();
    // Inline (random 4 KiB, compressible 1 MiB) and file chunks (random 300 KB, text 200 KB) mixed.
    for (let n = 0; n < 48; n++) {
      const data = [randomBytes(300_000), randomBytes(4096 + n), repetitiveBytes(MIB - n), textBytes(200_000 + n)][n % 4];
      chunks.set(`many-${n}`, data);
    }
    await Promise.all([...chunks].map(([chunkId, data]) => put(store, chunkId, data, 100_000)));
    const placements = async () => Promise.all([...chunks.keys()].map((chunkId) => placementOf(store, dir, chunkId)));
    const expected = [...chunks.keys()].map((_, n) => (n % 4 === 0 || n % 4 === 3 ? 'file' : 'inline'));
    expect(await placements()).toEqual(expected);
    for (const chunkId of chunks.keys()) {
      const record = await store.stat(chunkId);
      expect(record.placement).toBe(record.storedBytes <= INLINE_MAX_BYTES ? 'inline' : 'file');
    }
    const expectUsage = async () => {
      const storedBytes = await Promise.all([...chunks.keys()].map(async (chunkId) => (await store.stat(chunkId)).storedBytes));
      expect(store.usage()).toEqual({ usedBytes: storedBytes.reduce((a, b) => a + b, 0), chunks: chunks.size });
    };
    await expectUsage();
    // Deletes share waves too.
    const doomed = [...chunks.keys()].filter((_, n) => n % 3 === 0);
    await Promise.all(doomed.map((chunkId) => store.delete(chunkId)));
    for (const chunkId of doomed) chunks.delete(chunkId);
    await expectUsage();
    await store.close();
    store = await LocalChunkStore.open(dir);
    expect((await collect(store.list())).sort()).toEqual([...chunks.keys()].sort());
    for (const [chunkId, data] of chunks) expect((await get(store, chunkId)).equals(data)).toBe(true);
    for (const chunkId of doomed) expect(await placementOf(store, dir, chunkId)).toBe('none');
    expect(await placements()).toEqual(expected.filter((_, n) => n % 3 !== 0));
    await expectUsage();
  });

  it('a failing member of a wave neither loses nor exposes the others', async () => {
    // One shard directory vanishes: the rename of a chunk that hashes there fails.
    const brokenShard = path.dirname(chunkFilePath(dir, 'broken'));
    await rmdir(brokenShard);
    const good = Array.from({ length: 64 }, (_, n) => `good-${n}`).filter((id) => path.dirname(chunkFilePath(dir, id)) !== brokenShard);
    // A file chunk (it renames into the broken shard); the others alternate inline and file.
    const data = randomBytes(FILE_BYTES);
    const dataOf = (chunkId: string) => (good.indexOf(chunkId) % 2 === 0 ? data.subarray(0, 4096) : data);
    const short = async (chunkId: string, sizeBytes: number) => {
      const writer = await store.createWriter(chunkId, sizeBytes + 1);
      await writer.write(data.subarray(0, sizeBytes));
      return writer.commit(); // one byte short: fails while the others commit
    };
    const outcomes = await Promise.allSettled([
      ...good.map((chunkId) => put(store, chunkId, dataOf(chunkId))),
      put(store, 'broken', data),
      short('short-1', 4096),
      short('short-2', FILE_BYTES),
    ]);
    expect(outcomes.slice(0, good.length).every((o) => o.status === 'fulfilled')).toBe(true);
    expect(outcomes.slice(good.length).map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected']);
    const check = async () => {
      expect((await collect(store.list())).sort()).toEqual([...good].sort());
      for (const chunkId of good) expect((await get(store, chunkId)).equals(dataOf(chunkId))).toBe(true);
      expect(store.usage().chunks).toBe(good.length);
      for (const chunkId of ['short-1', 'short-2']) expect(await placementOf(store, dir, chunkId)).toBe('none');
      expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
    };
    await check();
    await store.close();
    store = await LocalChunkStore.open(dir); // recreates the shard directory
    await check();
    await put(store, 'broken', data);
    expect((await get(store, 'broken')).equals(data)).toBe(true);
  });

  it.each([
    ['inline', 4096],
    ['file', FILE_BYTES],
  ])('a failed index wave fails its own members only, and makes none of them visible (%s chunks)', async (_, sizeBytes) => {
    const data = randomBytes(sizeBytes);
    vi.spyOn(indexOf(store), 'batch').mockRejectedValueOnce(new Error('injected: index write failed'));
    const ids = Array.from({ length: 16 }, (_, n) => `wave-${n}`);
    const committed = await Promise.all(ids.map((chunkId) => put(store, chunkId, data).then(() => true, () => false)));
    expect(committed).toContain(false);
    const check = async () => {
      expect(await Promise.all(ids.map((chunkId) => store.has(chunkId)))).toEqual(committed);
      expect(store.usage().chunks).toBe(committed.filter(Boolean).length);
    };
    await check();
    await store.close();
    store = await LocalChunkStore.open(dir);
    await check();
    const failed = ids.filter((_, n) => !committed[n]);
    await Promise.all(failed.map((chunkId) => put(store, chunkId, data))); // over any kept files
    for (const chunkId of ids) expect((await get(store, chunkId)).equals(data)).toBe(true);
  });

  it.each([
    ['inline', 4096],
    ['file', FILE_BYTES],
  ])('an abort racing a commit: what commit() answered is what the index holds, before and after a reopen (%s chunks)', async (_, sizeBytes) => {
    const data = randomBytes(sizeBytes);
    // abort() right after commit(): the commit had not started, so the abort wins.
    const early = await store.createWriter('early', data.length);
    await early.write(data);
    const committing = early.commit();
    await early.abort();
    await expect(committing).rejects.toMatchObject({ kind: 'Invalid' });
    expect(await store.has('early')).toBe(false);
    expect(existsSync(chunkFilePath(dir, 'early'))).toBe(false);
    // Aborts landing at every stage of a wave: each commit either finished (abort waited) or failed.
    const ids = Array.from({ length: 24 }, (_, n) => `race-${n}`);
    const writers = await Promise.all(ids.map((chunkId) => store.createWriter(chunkId, data.length)));
    await Promise.all(writers.map((writer) => writer.write(data)));
    const commits = writers.map((writer) => writer.commit().then(() => true, () => false));
    await Promise.all(
      writers.map(async (writer, n) => {
        for (let turn = 0; turn < n % 6; turn++) await new Promise((resolve) => setImmediate(resolve));
        await writer.abort();
      }),
    );
    const committed = await Promise.all(commits);
    const visible = async () => Promise.all(ids.map((chunkId) => store.has(chunkId)));
    expect(await visible()).toEqual(committed);
    expect(committed).toContain(true); // aborts after a commit started wait for it
    await store.close();
    store = await LocalChunkStore.open(dir);
    expect(await visible()).toEqual(committed);
    expect(store.usage().chunks).toBe(committed.filter(Boolean).length);
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
  });

  it('close() lets commits already in a wave finish', async () => {
    const data = randomBytes(FILE_BYTES);
    const sizes = Array.from({ length: 8 }, (_, n) => (n % 2 ? 4096 : FILE_BYTES));
    const writers = await Promise.all(sizes.map((sizeBytes, n) => store.createWriter(`closing-${n}`, sizeBytes)));
    await Promise.all(writers.map((writer, n) => writer.write(data.subarray(0, sizes[n]))));
    const commits = writers.map((writer) => writer.commit().then(() => true, () => false));
    await new Promise((resolve) => setImmediate(resolve));
    await store.close();
    const committed = await Promise.all(commits);
    store = await LocalChunkStore.open(dir);
    expect(await Promise.all(writers.map((writer) => store.has(writer.chunkId)))).toEqual(committed);
  });

  it.each([
    ['file', 'file', FILE_BYTES, FILE_BYTES + 1000],
    ['inline', 'inline', 5000, 6000],
    ['file', 'inline', FILE_BYTES, 6000],
    ['inline', 'file', 5000, FILE_BYTES],
  ])('a chunk written again while its delete runs is not lost to that delete (%s, then %s)', async (_, placement, beforeBytes, afterBytes) => {
    const [before, after] = [randomBytes(beforeBytes), randomBytes(afterBytes)];
    await put(store, 'again', before);
    const deleting = store.delete('again');
    await put(store, 'again', after); // waits for the delete instead of racing its unlink
    await deleting;
    const check = async () => {
      expect((await get(store, 'again')).equals(after)).toBe(true);
      expect(await placementOf(store, dir, 'again')).toBe(placement);
      expect(store.usage()).toEqual({ usedBytes: (await store.stat('again')).storedBytes, chunks: 1 });
    };
    await check();
    await store.close();
    store = await LocalChunkStore.open(dir);
    await check();
  });

  it('stores small chunks inline in the index: same verified bytes, ranged reads, across a reopen', async () => {
    const cases: Array<[string, Buffer]> = [
      ['empty', Buffer.alloc(0)],
      ['one', randomBytes(1)],
      ['rand-4k', randomBytes(4096)],
      ['rand-60k', randomBytes(60_000)],
      ['text-100k', textBytes(100_000)], // raw past the limit, encoded within it
      ['repeat-1m', repetitiveBytes(MIB)], // four blocks
    ];
    const records = new Map<string, ChunkRecord>();
    for (const [chunkId, data] of cases) records.set(chunkId, await put(store, chunkId, data, 4096));
    const check = async () => {
      for (const [chunkId, data] of cases) {
        const record = records.get(chunkId)!;
        expect(record).toMatchObject({ length: data.length, placement: 'inline', blocks: Math.ceil(data.length / (256 * 1024)) });
        expect(record.storedBytes).toBeLessThanOrEqual(INLINE_MAX_BYTES);
        expect(await store.stat(chunkId)).toEqual(record);
        expect(await store.has(chunkId)).toBe(true);
        expect(await placementOf(store, dir, chunkId)).toBe('inline');
        expect((await inlineValue(store, chunkId))!.length).toBe(record.storedBytes);
        expect((await get(store, chunkId)).equals(data)).toBe(true);
        const ranges = [[0, 1], [data.length - 1, 10], [data.length >> 1, 1000], [262_143, 2], [300_000, 600_000], [data.length, 5]];
        for (const [offset, length] of ranges.filter(([offset]) => offset >= 0 && offset <= data.length)) {
          expect((await get(store, chunkId, offset, length)).equals(data.subarray(offset, offset + length))).toBe(true);
        }
        await expect(get(store, chunkId, data.length + 1, 1)).rejects.toMatchObject({ kind: 'Invalid' });
      }
      expect((await collect(store.list())).sort()).toEqual(cases.map(([chunkId]) => chunkId).sort());
      const usedBytes = [...records.values()].reduce((sum, record) => sum + record.storedBytes, 0);
      expect(store.usage()).toEqual({ usedBytes, chunks: cases.length });
      expect(await readdir(path.join(dir, 'tmp'))).toEqual([]); // the compressible chunks' temp files are gone
    };
    await check();
    await store.close();
    store = await LocalChunkStore.open(dir);
    await check();
  });

  it('stores a chunk inline up to exactly INLINE_MAX_BYTES encoded, and as a file from one byte more', async () => {
    // Random data is stored raw: encoded bytes = head + raw bytes (ids of one length, one block).
    const fitsBytes = INLINE_MAX_BYTES - headSizeBytes('edge-0', INLINE_MAX_BYTES);
    for (const [chunkId, sizeBytes, placement] of [['edge-0', fitsBytes, 'inline'], ['edge-1', fitsBytes + 1, 'file']] as const) {
      const data = randomBytes(sizeBytes);
      expect(await put(store, chunkId, data)).toMatchObject({ storedBytes: sizeBytes + headSizeBytes(chunkId, sizeBytes), placement });
      expect(await placementOf(store, dir, chunkId)).toBe(placement);
      expect((await get(store, chunkId)).equals(data)).toBe(true);
    }
    expect((await store.stat('edge-0')).storedBytes).toBe(INLINE_MAX_BYTES);
    expect((await stat(chunkFilePath(dir, 'edge-1'))).size).toBe(INLINE_MAX_BYTES + 1);
    expect(store.usage()).toEqual({ usedBytes: 2 * INLINE_MAX_BYTES + 1, chunks: 2 });
  });

  it('moves payloads to a file once they outgrow the inline size, early or at commit', async () => {
    // Compressible blocks are held in memory, then a random block pushes the chunk past the limit:
    // while writing (spilled) or only when the last block is encoded at commit.
    const spilled = Buffer.concat([repetitiveBytes(512 * 1024), randomBytes(512 * 1024)]);
    const atCommit = Buffer.concat([repetitiveBytes(256 * 1024), randomBytes(80_000)]);
    const justFits = Buffer.concat([repetitiveBytes(256 * 1024), randomBytes(40_000)]);
    for (const [chunkId, data, placement] of [['spilled', spilled, 'file'], ['at-commit', atCommit, 'file'], ['just-fits', justFits, 'inline']] as const) {
      const record = await put(store, chunkId, data, 100_000);
      expect(record.placement).toBe(placement);
      expect(await placementOf(store, dir, chunkId)).toBe(placement);
      if (placement === 'file') expect((await stat(chunkFilePath(dir, chunkId))).size).toBe(record.storedBytes);
      expect((await get(store, chunkId)).equals(data)).toBe(true);
      expect((await get(store, chunkId, 250_000, 20_000)).equals(data.subarray(250_000, 270_000))).toBe(true);
    }
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
  });

  it('reports a damaged or missing inline value as Corrupt, naming the chunk and the index', async () => {
    const indexDir = path.join(dir, 'index');
    const damage: Array<[string, (bytes: Buffer) => Buffer | undefined, string]> = [
      ['flip-head', (b) => (b[5] ^= 0x01, b), 'header checksum mismatch'],
      ['flip-table', (b) => (b[headSizeBytes('flip-table', 4096) - 10] ^= 0x01, b), 'block table checksum mismatch'],
      ['flip-payload', (b) => (b[b.length - 1] ^= 0x80, b), 'block 0 checksum mismatch'],
      ['zeroed', (b) => Buffer.alloc(b.length), 'bad magic'],
      ['shorter', (b) => b.subarray(0, b.length - 1), `inline value has ${4096 + headSizeBytes('shorter', 4096) - 1} bytes`],
      ['missing', () => undefined, 'inline bytes missing'],
    ];
    for (const [chunkId, harm, what] of damage) {
      await put(store, chunkId, randomBytes(4096));
      const harmed = harm((await inlineValue(store, chunkId))!);
      if (harmed) await setInlineValue(store, chunkId, harmed);
      else await indexOf(store).del(inlineChunkKey(chunkId));
      const err = await get(store, chunkId).catch((e) => e);
      expect(err).toMatchObject({ kind: 'Corrupt' });
      expect(err.message).toMatch(new RegExp(`^chunk ${chunkId}: .*${what}.* on ${indexDir}$`));
      // Quarantined: no longer served or listed, reported until a DeleteChunk clears it.
      expect(await store.has(chunkId)).toBe(false);
      expect(store.quarantined()).toContain(chunkId);
      await expect(get(store, chunkId)).rejects.toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('quarantined') });
    }
    // Another chunk's bytes, of the very same size: the id in the head gives them away.
    const [a, b] = [randomBytes(4096), randomBytes(4096)];
    await put(store, 'swap-a', a);
    await put(store, 'swap-b', b);
    await setInlineValue(store, 'swap-b', (await inlineValue(store, 'swap-a'))!);
    await expect(get(store, 'swap-b')).rejects.toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('different chunk') });
    // Ranged reads verify what they touch: a damaged last block fails reads of it, not of block 0.
    const data = repetitiveBytes(MIB);
    await put(store, 'four-blocks', data);
    const bytes = (await inlineValue(store, 'four-blocks'))!;
    bytes[bytes.length - 1] ^= 0xff;
    await setInlineValue(store, 'four-blocks', bytes);
    expect((await get(store, 'four-blocks', 0, 1000)).equals(data.subarray(0, 1000))).toBe(true);
    await expect(get(store, 'four-blocks', MIB - 10, 10)).rejects.toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('block 3 checksum mismatch') });
    // A record naming a placement this version doesn't know is not read as either.
    await indexOf(store).put(chunkRecordKey('future'), { length: 1, storedBytes: 60, blocks: 1, createdMs: 0, placement: 'tape' });
    await expect(store.stat('future')).rejects.toMatchObject({ kind: 'Corrupt' });
    await expect(get(store, 'future')).rejects.toMatchObject({ kind: 'Corrupt' });
    expect((await get(store, 'swap-a')).equals(a)).toBe(true); // the others are untouched
  });

  it('deletes an inline chunk with its bytes in one synced batch', async () => {
    await put(store, 'brief', randomBytes(2000));
    const batch = vi.spyOn(indexOf(store), 'batch');
    await store.delete('brief');
    expect(batch.mock.calls).toHaveLength(1);
    const [operations, options] = batch.mock.calls[0] as unknown as [Array<{ type: string; key: string }>, { sync: boolean }];
    expect(operations.map(({ type, key }) => `${type} ${key}`).sort()).toEqual([`del ${chunkRecordKey('brief')}`, `del ${inlineChunkKey('brief')}`]);
    expect(options).toMatchObject({ sync: true });
    expect(await placementOf(store, dir, 'brief')).toBe('none');
    await store.close();
    store = await LocalChunkStore.open(dir);
    expect(await store.has('brief')).toBe(false);
    expect(store.usage()).toEqual({ usedBytes: 0, chunks: 0 });
  });

  it('a delete landing between the lookup of an inline chunk and the read of its bytes is not corruption', async () => {
    const data = randomBytes(4096);
    await put(store, 'fleeting', data);
    // The delete runs to completion just before the read fetches the bytes: the read, already
    // under way, still returns them (one snapshot); the next read finds nothing.
    const index = indexOf(store);
    const original = index.get.bind(index) as (key: string, options?: object) => Promise<unknown>;
    let deleted: Promise<void> | undefined;
    vi.spyOn(index, 'get').mockImplementation((async (key: string, options?: object) => {
      if (key === inlineChunkKey('fleeting') && !deleted) await (deleted = store.delete('fleeting'));
      return original(key, options);
    }) as never);
    expect((await get(store, 'fleeting')).equals(data)).toBe(true);
    expect(deleted).toBeDefined();
    expect(await placementOf(store, dir, 'fleeting')).toBe('none');
    await expect(get(store, 'fleeting')).rejects.toMatchObject({ kind: 'NotFound' });
  });

  it('puts each record in the same batch as its inline bytes, and caps the bytes of a batch', async () => {
    const batch = vi.spyOn(indexOf(store), 'batch');
    const data = randomBytes(60_000);
    const records = await Promise.all(Array.from({ length: 100 }, (_, n) => put(store, `cap-${n}`, data)));
    const batches = batch.mock.calls.map((call) => (call as unknown[])[0] as Array<{ key: string; value: unknown }>);
    for (const operations of batches) {
      const ids = (prefix: string) => operations.filter(({ key }) => key.startsWith(prefix)).map(({ key }) => key.slice(2)).sort();
      expect(ids('i/')).toEqual(ids('c/'));
      const inlineBytes = operations.reduce((sum, { value }) => sum + (Buffer.isBuffer(value) ? value.length : 0), 0);
      expect(inlineBytes).toBeLessThanOrEqual(WAVE_INLINE_MAX_BYTES);
    }
    expect(batches.flat()).toHaveLength(200);
    expect(store.usage().usedBytes).toBe(records.reduce((sum, record) => sum + record.storedBytes, 0));
  });

  it('reads a record written before inline chunks existed as a file chunk', async () => {
    const data = randomBytes(FILE_BYTES);
    const record = await put(store, 'legacy', data);
    const { placement, ...legacy } = record;
    expect(placement).toBe('file');
    await indexOf(store).put(chunkRecordKey('legacy'), legacy);
    await store.close();
    store = await LocalChunkStore.open(dir);
    expect(await store.stat('legacy')).toEqual(record);
    expect(store.usage()).toEqual({ usedBytes: record.storedBytes, chunks: 1 });
    expect((await get(store, 'legacy')).equals(data)).toBe(true);
    await store.delete('legacy');
    expect(existsSync(chunkFilePath(dir, 'legacy'))).toBe(false);
  });

  it('measures small-chunk commit rate (4 KiB, 1 and 16 writers, 1 and 3 stores)', async () => {
    const extraDirs = await Promise.all([1, 2].map(() => mkdtemp(path.join(tmpdir(), 'strata-store-'))));
    const extra = await Promise.all(extraDirs.map((d) => LocalChunkStore.open(d)));
    try {
      const data = randomBytes(4096);
      let seq = 0;
      for (const [stores, writers, total] of [[[store], 1, 300], [[store], 16, 1600], [[store, ...extra], 1, 150], [[store, ...extra], 16, 800]] as const) {
        const started = performance.now();
        await Promise.all(
          Array.from({ length: writers }, async () => {
            // Each chunk on every store at once, as a replicated write reaches three nodes.
            for (let n = 0; n < total / writers; n++) {
              const chunkId = `small-${seq++}`;
              await Promise.all(stores.map((s) => put(s, chunkId, data)));
            }
          }),
        );
        const perSecond = total / ((performance.now() - started) / 1000);
        // Each chunk goes to every store at once; all stores share one disk.
        console.log(`chunk_store_commit_4KiB_${stores.length}stores_${writers}writers ${perSecond.toFixed(0)} chunks/s`);
      }
    } finally {
      await Promise.all(extra.map((s) => s.close()));
      await Promise.all(extraDirs.map((d) => rm(d, { recursive: true, force: true })));
    }
  });

  it('measures encode+write throughput', async () => {
    for (const [name, data] of [['random', randomBytes(8 * MIB)], ['text', textBytes(8 * MIB)]] as const) {
      const elapsedMs: number[] = [];
      for (let run = 0; run < 3; run++) {
        const started = performance.now();
        await put(store, `bench-${name}-${run}`, data);
        elapsedMs.push(performance.now() - started);
      }
      const medianMs = elapsedMs.sort((a, b) => a - b)[1];
      const { storedBytes } = await store.stat(`bench-${name}-0`);
      console.log(
        `chunk_store_write_8MiB_${name} ${(data.length / 1e6 / (medianMs / 1000)).toFixed(0)} MB/s ` +
          `(median of 3, incl. fsync+rename+index; stored ${((storedBytes / data.length) * 100).toFixed(0)}% of raw)`,
      );
    }
  });
});
