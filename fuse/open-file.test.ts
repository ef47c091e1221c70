// OpenFile against an in-memory model: random writes, truncates, reads and flushes over a fake
// backend with the cluster's rules (immutable chunks replaced whole, commit grows the size to
// cover the chunk, truncate cuts chunks), with slow and failing uploads. Seeded; the seed is
// printed on failure so a run replays exactly.
import { describe, expect, test } from 'vitest';
import type { FileStat } from '../client/index.js';
import { type FileBackend, OpenFile } from './open-file.js';
import { ReadCache } from './read-cache.js';

function prng(seed: number): (n: number) => number {
  let state = seed >>> 0 || 1;
  return (n) => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
}

const stat = (ino: number, size: number, chunkSize: number) => ({ ino, size, chunkSize, type: 'file' }) as FileStat;

class FakeCluster implements FileBackend {
  readonly chunks = new Map<number, Buffer>();
  size = 0;
  failRate = 0;
  uploads = 0;

  constructor(
    readonly chunkSize: number,
    private readonly random: (n: number) => number,
  ) {}

  async *readAt(file: { size: number }, start: number, end: number): AsyncGenerator<Buffer> {
    await this.pause();
    const out = Buffer.alloc(Math.max(0, Math.min(end, file.size) - start));
    for (let at = start; at < start + out.length; at++) {
      const chunk = this.chunks.get(Math.floor(at / this.chunkSize));
      const within = at % this.chunkSize;
      if (chunk && within < chunk.length) out[at - start] = chunk[within];
    }
    yield out;
  }

  async writeChunkAt(_file: { ino: number }, index: number, data: Buffer): Promise<FileStat> {
    this.uploads++;
    await this.pause();
    if (this.random(100) < this.failRate) throw new Error('injected upload failure');
    this.chunks.set(index, Buffer.from(data));
    this.size = Math.max(this.size, index * this.chunkSize + data.length);
    return stat(1, this.size, this.chunkSize);
  }

  async setattr(_path: string, { size }: { size: number }): Promise<FileStat> {
    await this.pause();
    if (size < this.size) {
      for (const index of [...this.chunks.keys()]) if (index * this.chunkSize >= size) this.chunks.delete(index);
      const cut = this.chunks.get(Math.floor(size / this.chunkSize));
      if (cut) this.chunks.set(Math.floor(size / this.chunkSize), cut.subarray(0, size % this.chunkSize));
    }
    this.size = size;
    return stat(1, size, this.chunkSize);
  }

  private pause(): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, this.random(3)));
  }
}

async function runModel(seed: number, steps: number, failRate: number): Promise<void> {
  const random = prng(seed);
  const chunkSize = 1000;
  const cluster = new FakeCluster(chunkSize, random);
  const file = new OpenFile(cluster, stat(1, 0, chunkSize), { maxDirtyChunks: 2, writeConcurrency: 2 });
  const cache = new ReadCache();
  let model = Buffer.alloc(0);
  cluster.failRate = failRate;
  for (let step = 0; step < steps; step++) {
    const op = random(11);
    const context = `seed ${seed}, step ${step}, op ${op}`;
    if (op < 5) {
      const position = random(op === 0 ? 9000 : model.length + 1);
      const data = Buffer.alloc(1 + random(op === 1 ? 2500 : 300), 1 + random(255));
      const written = await file.write(position, data).catch(() => undefined);
      // A write answered with an (earlier upload's) error was not applied.
      if (written !== undefined) {
        if (position + data.length > model.length) model = Buffer.concat([model, Buffer.alloc(position + data.length - model.length)]);
        data.copy(model, position);
      }
    } else if (op < 7) {
      const size = random(model.length + 2000);
      if ((await file.truncate('/f', size).then(() => true, () => false)) === true) {
        model = size <= model.length ? model.subarray(0, size) : Buffer.concat([model, Buffer.alloc(size - model.length)]);
      }
    } else if (op < 9) {
      const position = random(model.length + 100);
      const got = await file.read(cache, position, 1 + random(3000));
      expect(file.size, context).toBe(model.length);
      expect(got.equals(model.subarray(position, position + got.length)), context).toBe(true);
      expect(got.length, context).toBe(Math.max(0, Math.min(model.length - position, got.length)));
    } else if (op < 10) {
      await file.flush().catch(() => undefined);
    } else {
      // A read racing a write must see every byte written before it, wherever that byte is
      // (dirty, being completed from its old bytes, uploading, stored).
      const position = model.length + random(3000);
      const data = Buffer.alloc(1 + random(2000), 1 + random(255));
      const before = Buffer.from(model);
      const writing = file.write(position, data).catch(() => undefined);
      const got = await file.read(cache, 0, before.length);
      expect(got.equals(before), `${context}: a read racing a write past the end`).toBe(true);
      if ((await writing) !== undefined) model = Buffer.concat([model, Buffer.alloc(position - model.length), data]);
    }
  }
  cluster.failRate = 0;
  await file.flush().catch(() => undefined); // reports a failure left from before, if any
  await file.flush();
  const stored = Buffer.alloc(cluster.size);
  for (const piece of [cluster.readAt({ size: cluster.size }, 0, cluster.size)]) for await (const b of piece) b.copy(stored);
  expect(stored.equals(model), `seed ${seed}: stored bytes differ from the model`).toBe(true);
}

describe('OpenFile against a model', () => {
  test.each([1, 2, 3, 4, 5])('random writes, truncates, reads, flushes (seed %i)', (seed) => runModel(seed, 400, 0));
  test.each([11, 12, 13])('with failing uploads (seed %i): nothing acknowledged is lost', (seed) => runModel(seed, 300, 15));

  test('a sequential writer uploads whole chunks only, and each once', async () => {
    const cluster = new FakeCluster(1000, prng(7));
    const file = new OpenFile(cluster, stat(1, 0, 1000), { maxDirtyChunks: 2, writeConcurrency: 3 });
    for (let position = 0; position < 10_000; position += 128) await file.write(position, Buffer.alloc(128, 7));
    await file.flush();
    expect(cluster.uploads).toBe(11); // 10 whole chunks of 1000 bytes, then the last 240 bytes
    expect(cluster.size).toBe(10_112);
  });

  test("the create's chunk 0 grant goes with chunk 0's first upload only, never twice", async () => {
    const cluster = new FakeCluster(1000, prng(6));
    const grants: unknown[] = [];
    const upload = cluster.writeChunkAt.bind(cluster);
    cluster.writeChunkAt = async (f, index, data, options) => {
      grants.push([index, options?.grant]);
      return upload(f, index, data);
    };
    const grant = { chunkId: 'granted', pipeline: [], requiredAcks: 1 };
    const file = new OpenFile(cluster, stat(1, 0, 1000), { maxDirtyChunks: 2, writeConcurrency: 1 }, grant);
    await file.write(1500, Buffer.alloc(10, 1)); // chunk 1 first: it must not take chunk 0's grant
    await file.flush();
    await file.write(0, Buffer.alloc(10, 2));
    await file.flush();
    await file.write(0, Buffer.alloc(10, 3)); // a rewrite of chunk 0 needs a fresh chunk id
    await file.flush();
    expect(grants).toEqual([[1, undefined], [0, grant], [0, undefined]]);
  });

  test('a borrowed buffer is not read after its loan ended (the write was answered by timeout)', async () => {
    const cluster = new FakeCluster(1000, prng(8));
    const file = new OpenFile(cluster, stat(1, 0, 1000), { maxDirtyChunks: 2, writeConcurrency: 1 });
    await file.write(0, Buffer.alloc(1000, 1)); // fills chunk 0: its upload starts
    // Chunk 0 is uploading: a write to it waits for the upload, and meanwhile its loan ends.
    const loan = new AbortController();
    const kernelBuffer = Buffer.alloc(10, 2);
    const waiting = file.write(5, kernelBuffer, loan.signal);
    loan.abort();
    kernelBuffer.fill(9); // the kernel reuses its memory
    await expect(waiting).rejects.toThrow(/abandoned/);
    await file.flush();
    expect(cluster.chunks.get(0)!.equals(Buffer.alloc(1000, 1))).toBe(true);
  });

  test('a read waiting on stored bytes keeps the unstored bytes it overlays, though their chunk is stored and its buffer reused meanwhile', async () => {
    const cluster = new FakeCluster(1000, prng(12));
    cluster.chunks.set(0, Buffer.alloc(1000, 3));
    cluster.chunks.set(1, Buffer.alloc(1000, 3));
    cluster.size = 2000;
    const file = new OpenFile(cluster, stat(1, 2000, 1000), { maxDirtyChunks: 2, writeConcurrency: 2 });
    await file.write(0, Buffer.alloc(100, 7)); // chunk 0 partly written: a read must fetch the rest
    const readAt = cluster.readAt.bind(cluster);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    cluster.readAt = async function* (f, start, end) {
      const old: Buffer[] = [];
      for await (const piece of readAt(f, start, end)) old.push(Buffer.from(piece));
      await held; // the old bytes (read before the commit) arrive only after the steps below
      yield* old;
    };
    const reading = file.read(new ReadCache(), 0, 1000);
    cluster.readAt = readAt;
    await file.flush(); // chunk 0 stored while the read waits for the old bytes
    await file.write(5000, Buffer.alloc(1000, 9)); // a new whole chunk: may take chunk 0's buffer
    release();
    const got = await reading;
    expect(got.equals(Buffer.concat([Buffer.alloc(100, 7), Buffer.alloc(900, 3)]))).toBe(true);
  });

  test('many concurrent writes buffer at most maxDirtyChunks + writeConcurrency chunks', async () => {
    let inFlight = 0;
    let peakBufferedChunks = 0;
    const cluster = new FakeCluster(1000, prng(9));
    const upload = cluster.writeChunkAt.bind(cluster);
    cluster.writeChunkAt = async (f, index, data) => {
      inFlight++;
      try {
        await new Promise((resolve) => setTimeout(resolve, 2));
        return await upload(f, index, data);
      } finally {
        inFlight--;
      }
    };
    const limits = { maxDirtyChunks: 2, writeConcurrency: 2 };
    const file = new OpenFile(cluster, stat(1, 0, 1000), limits);
    const random = prng(10);
    const writes: Promise<number>[] = [];
    // Scattered writes, all issued at once (as a multi-threaded caller would).
    for (let i = 0; i < 200; i++) {
      writes.push(file.write(random(50) * 1000 + random(900), Buffer.alloc(100, 1 + (i % 250))));
      peakBufferedChunks = Math.max(peakBufferedChunks, (file as unknown as { dirty: Map<number, unknown> }).dirty.size + inFlight);
    }
    const probe = setInterval(() => {
      peakBufferedChunks = Math.max(peakBufferedChunks, (file as unknown as { dirty: Map<number, unknown> }).dirty.size + inFlight);
    }, 0);
    await Promise.all(writes);
    await file.flush();
    clearInterval(probe);
    expect(inFlight).toBe(0);
    // A write may start two chunks (it can cross a boundary) before the bound applies to them.
    expect(peakBufferedChunks).toBeLessThanOrEqual(limits.maxDirtyChunks + 2 + limits.writeConcurrency);
  });
});
