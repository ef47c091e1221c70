// ReadCache over a fake stored file whose bytes arrive in pieces of odd sizes (so reads
// straddle pieces and chunk boundaries), fetched at a pace the test controls.
import { describe, expect, test } from 'vitest';
import { ReadCache, type StoredBytes } from './read-cache.js';

class FakeStored implements StoredBytes {
  version = 0;
  readonly fetches: [number, number][] = [];
  /** Held back until released: lets a test see what a read waits for. */
  private gate: Promise<void> = Promise.resolve();

  constructor(
    readonly bytes: Buffer,
    readonly chunkSize: number,
    private readonly pieceBytes: number,
  ) {}

  get storedSize(): number {
    return this.bytes.length;
  }

  hold(): () => void {
    let release!: () => void;
    this.gate = new Promise((resolve) => (release = resolve));
    return release;
  }

  async *stream(start: number, end: number): AsyncGenerator<Buffer> {
    this.fetches.push([start, end]);
    for (let at = start; at < end; at += this.pieceBytes) {
      // The first piece comes at once; the rest wait for the gate.
      if (at > start) await this.gate;
      yield this.bytes.subarray(at, Math.min(end, at + this.pieceBytes));
    }
  }
}

function pattern(length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 7 + (i >> 8)) & 0xff;
  return out;
}

describe('ReadCache', () => {
  test('a sequential reader gets identical bytes across pieces and chunk boundaries, each chunk fetched once', async () => {
    const bytes = pattern(10 * 1000 + 333);
    const file = new FakeStored(bytes, 1000, 97);
    const cache = new ReadCache();
    // 128-byte reads, split at chunk boundaries as OpenFile splits them.
    for (let from = 0; from < bytes.length; ) {
      const to = Math.min(bytes.length, from + 128, (Math.floor(from / 1000) + 1) * 1000);
      const got = await cache.read(file, from, to);
      expect(got.equals(bytes.subarray(from, to)), `[${from}, ${to})`).toBe(true);
      from = to;
    }
    const starts = file.fetches.map(([start]) => start);
    expect(new Set(starts).size).toBe(starts.length);
    expect(file.fetches.every(([start, end]) => start % 1000 === 0 && (end - start === 1000 || end === bytes.length))).toBe(true);
  });

  test('a read is answered once its bytes arrived, before the rest of the chunk', async () => {
    const bytes = pattern(4000);
    const file = new FakeStored(bytes, 1000, 100);
    const release = file.hold();
    const cache = new ReadCache();
    // Bytes of the first piece only: answered while the rest of the chunk is held back.
    expect((await cache.read(file, 0, 100)).equals(bytes.subarray(0, 100))).toBe(true);
    let later: Buffer | undefined;
    const pending = cache.read(file, 100, 900).then((b) => (later = b));
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(later).toBeUndefined();
    release();
    await pending;
    expect(later!.equals(bytes.subarray(100, 900))).toBe(true);
  });

  test('random reads get their own windows and the same bytes', async () => {
    const bytes = pattern(4 * 1024 * 1024);
    const file = new FakeStored(bytes, 1024 * 1024, 5000);
    const cache = new ReadCache();
    // Far apart (more than the out-of-order slack of a sequential stream).
    for (const [from, to] of [
      [3_500_000, 3_504_096],
      [10, 20],
      [1_500_000, 1_501_000],
      [2_621_439, 2_621_441],
    ]) {
      expect((await cache.read(file, from, to)).equals(bytes.subarray(from, to))).toBe(true);
    }
    // Aligned 128 KiB windows (two for a read crossing a window boundary), not whole chunks.
    expect(file.fetches.every(([start, end]) => start % (128 * 1024) === 0 && end - start <= 256 * 1024)).toBe(true);
  });

  test('a failed fetch is reported to its reader and not cached', async () => {
    const bytes = pattern(2000);
    let failures = 1;
    const file: StoredBytes = {
      version: 0,
      chunkSize: 1000,
      storedSize: bytes.length,
      async *stream(start, end) {
        yield bytes.subarray(start, start + 10);
        if (failures-- > 0) throw new Error('replica gone');
        yield bytes.subarray(start + 10, end);
      },
    };
    const cache = new ReadCache();
    await expect(cache.read(file, 0, 500)).rejects.toThrow('replica gone');
    expect((await cache.read(file, 0, 500)).equals(bytes.subarray(0, 500))).toBe(true);
  });
});
