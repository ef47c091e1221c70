import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtemp, readdir, rm, rmdir, stat, writeFile, open } from 'node:fs/promises';
import { existsSync } from 'node:fs';
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

  it('commits concurrent writers in shared waves: all visible, all durable across a reopen', async () => {
    const chunks = new Map<string, Buffer>();
    for (let n = 0; n < 48; n++) chunks.set(`many-${n}`, randomBytes(n % 8 === 0 ? 300_000 : 4096 + n));
    await Promise.all([...chunks].map(([chunkId, data]) => put(store, chunkId, data, 100_000)));
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
    for (const chunkId of doomed) expect(existsSync(chunkFilePath(dir, chunkId))).toBe(false);
    await expectUsage();
  });

  it('a failing member of a wave neither loses nor exposes the others', async () => {
    // One shard directory vanishes: the rename of a chunk that hashes there fails.
    const brokenShard = path.dirname(chunkFilePath(dir, 'broken'));
    await rmdir(brokenShard);
    const good = Array.from({ length: 64 }, (_, n) => `good-${n}`).filter((id) => path.dirname(chunkFilePath(dir, id)) !== brokenShard);
    const data = randomBytes(4096);
    const short = async (chunkId: string) => {
      const writer = await store.createWriter(chunkId, data.length + 1);
      await writer.write(data);
      return writer.commit(); // one byte short: fails while the others commit
    };
    const outcomes = await Promise.allSettled([
      ...good.map((chunkId) => put(store, chunkId, data)),
      put(store, 'broken', data),
      short('short-1'),
      short('short-2'),
    ]);
    expect(outcomes.slice(0, good.length).every((o) => o.status === 'fulfilled')).toBe(true);
    expect(outcomes.slice(good.length).map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected']);
    const check = async () => {
      expect((await collect(store.list())).sort()).toEqual([...good].sort());
      for (const chunkId of good) expect((await get(store, chunkId)).equals(data)).toBe(true);
      expect(store.usage().chunks).toBe(good.length);
      for (const chunkId of ['short-1', 'short-2']) expect(existsSync(chunkFilePath(dir, chunkId))).toBe(false);
      expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
    };
    await check();
    await store.close();
    store = await LocalChunkStore.open(dir); // recreates the shard directory
    await check();
    await put(store, 'broken', data);
    expect((await get(store, 'broken')).equals(data)).toBe(true);
  });

  it('a failed index wave fails its own members only, and makes none of them visible', async () => {
    const data = randomBytes(4096);
    const index = (store as unknown as { index: { batch: (...args: unknown[]) => Promise<void> } }).index;
    vi.spyOn(index, 'batch').mockRejectedValueOnce(new Error('injected: index write failed'));
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
    await Promise.all(failed.map((chunkId) => put(store, chunkId, data))); // over the kept files
    for (const chunkId of ids) expect((await get(store, chunkId)).equals(data)).toBe(true);
  });

  it('an abort racing a commit: what commit() answered is what the index holds, before and after a reopen', async () => {
    const data = randomBytes(4096);
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
    const data = randomBytes(4096);
    const writers = await Promise.all(Array.from({ length: 8 }, (_, n) => store.createWriter(`closing-${n}`, data.length)));
    await Promise.all(writers.map((writer) => writer.write(data)));
    const commits = writers.map((writer) => writer.commit().then(() => true, () => false));
    await new Promise((resolve) => setImmediate(resolve));
    await store.close();
    const committed = await Promise.all(commits);
    store = await LocalChunkStore.open(dir);
    expect(await Promise.all(writers.map((writer) => store.has(writer.chunkId)))).toEqual(committed);
  });

  it('a chunk written again while its delete runs is not unlinked by that delete', async () => {
    const [before, after] = [randomBytes(5000), randomBytes(6000)];
    await put(store, 'again', before);
    const deleting = store.delete('again');
    await put(store, 'again', after); // waits for the delete instead of racing its unlink
    await deleting;
    expect((await get(store, 'again')).equals(after)).toBe(true);
    await store.close();
    store = await LocalChunkStore.open(dir);
    expect((await get(store, 'again')).equals(after)).toBe(true);
  });

  it('measures small-chunk commit rate (4 KiB, 1 and 16 writers, 1 and 3 stores)', async () => {
    const extraDirs = await Promise.all([1, 2].map(() => mkdtemp(path.join(tmpdir(), 'strata-store-'))));
    const extra = await Promise.all(extraDirs.map((d) => LocalChunkStore.open(d)));
    try {
      const data = randomBytes(4096);
      let seq = 0;
      for (const [stores, writers, total] of [[[store], 1, 100], [[store], 16, 320], [[store, ...extra], 1, 60], [[store, ...extra], 16, 192]] as const) {
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
        console.log(`chunk_store_commit_4KiB_${stores.length}stores_${writers}writers ${perSecond.toFixed(0)} chunks/s (each on ${stores.length} store(s), one disk)`);
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
