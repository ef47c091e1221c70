import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, rm, stat, writeFile, open } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LocalChunkStore, chunkFilePath } from './chunk-store.js';

const MIB = 1024 * 1024;

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

async function put(store: LocalChunkStore, chunkId: string, data: Buffer, pieceBytes = 1 * MIB): Promise<void> {
  const writer = await store.createWriter(chunkId, data.length);
  for (let at = 0; at < data.length; at += pieceBytes) await writer.write(data.subarray(at, at + pieceBytes));
  await writer.commit();
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
    await put(store, 'torn', randomBytes(1000)); // the id is free to write again, over the orphan
    expect((await get(store, 'torn')).length).toBe(1000);
  });

  it('refuses to rewrite an existing chunk', async () => {
    await put(store, 'once', randomBytes(100));
    await expect(store.createWriter('once', 100)).rejects.toMatchObject({ kind: 'Exists' });
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
    expect(await store.has('long')).toBe(false);
    expect(await store.has('short')).toBe(false);
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
    expect(store.usage()).toEqual({ usedBytes: 0, chunks: 0 });
  });

  it('deletes idempotently', async () => {
    await put(store, 'gone', randomBytes(1000));
    await Promise.all([store.delete('gone'), store.delete('gone')]);
    await store.delete('gone');
    await store.delete('never-existed');
    expect(await store.has('gone')).toBe(false);
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
