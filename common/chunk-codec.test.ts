import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { BLOCK_SIZE_BYTES, ChunkEncoder, ChunkReader, type ChunkSource } from './chunk-codec.js';
import { StrataError } from './errors.js';
import { chunkSource, encodeChunk, readChunk } from '../test/harness/chunk-files.js';

/** Log-like text: compressible the way real text is, not a repeated constant. */
function textBytes(sizeBytes: number, seed = 1): Buffer {
  const words = ['GET', 'PUT', '/api/v1/files', '/api/v1/chunks', 'status=200', 'status=404', 'user=alice', 'user=bob'];
  let state = seed;
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31);
  const lines: string[] = [];
  let total = 0;
  while (total < sizeBytes) {
    const line = `2024-05-0${next() % 9 + 1}T12:${next() % 60}:${next() % 60}Z INFO ${words[next() % 8]} ${words[next() % 8]} id=${next().toString(16)} durationMs=${next() % 500}\n`;
    lines.push(line);
    total += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, sizeBytes);
}

const encode = (chunkId: string, raw: Buffer, pieceBytes?: number) => encodeChunk(chunkId, raw, undefined, pieceBytes);
const sourceOf = chunkSource;
const readAll = (chunkId: string, file: Buffer, offset?: number, length?: number) => readChunk(chunkId, file, undefined, offset, length);

async function expectCorrupt(promise: Promise<unknown>, chunkId: string): Promise<void> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StrataError);
  expect((err as StrataError).kind).toBe('Corrupt');
  expect((err as StrataError).message).toContain(`chunk ${chunkId}`);
  expect((err as StrataError).message).toContain('/test/node-a');
}

describe('chunk codec', () => {
  it('round-trips random data and stores it raw', async () => {
    const raw = randomBytes(3 * BLOCK_SIZE_BYTES + 12345);
    const file = await encode('rand1', raw);
    expect((await readAll('rand1', file)).equals(raw)).toBe(true);
    const reader = await ChunkReader.open('rand1', sourceOf(file));
    expect(reader.layout.blocks.map((b) => b.codec)).toEqual(['raw', 'raw', 'raw', 'raw']);
    expect(file.length - raw.length).toBeLessThan(200);
  });

  it('round-trips text and compresses it', async () => {
    const raw = textBytes(2 * BLOCK_SIZE_BYTES + 777);
    const file = await encode('text1', raw, 4096);
    expect((await readAll('text1', file)).equals(raw)).toBe(true);
    const reader = await ChunkReader.open('text1', sourceOf(file));
    expect(reader.layout.blocks.every((b) => b.codec === 'lz4')).toBe(true);
    expect(file.length).toBeLessThan(raw.length * 0.6);
  });

  it('handles empty chunks and exact block multiples', async () => {
    expect((await readAll('empty', await encode('empty', Buffer.alloc(0)))).length).toBe(0);
    const raw = randomBytes(2 * BLOCK_SIZE_BYTES);
    expect((await readAll('exact', await encode('exact', raw, BLOCK_SIZE_BYTES))).equals(raw)).toBe(true);
  });

  it('serves ranged reads across block boundaries', async () => {
    const raw = Buffer.concat([textBytes(BLOCK_SIZE_BYTES + 1000), randomBytes(2 * BLOCK_SIZE_BYTES)]);
    const file = await encode('range1', raw);
    const cases: Array<[number, number]> = [
      [0, 1],
      [BLOCK_SIZE_BYTES - 10, 20],
      [BLOCK_SIZE_BYTES - 1, BLOCK_SIZE_BYTES + 2],
      [5, 2 * BLOCK_SIZE_BYTES + 500],
      [raw.length - 3, 100], // clamped at the end
      [raw.length, 10],
    ];
    for (const [offset, length] of cases) {
      const got = await readAll('range1', file, offset, length);
      expect(got.equals(raw.subarray(offset, offset + length))).toBe(true);
    }
  });

  it('reads only the blocks covering a range', async () => {
    const raw = randomBytes(4 * BLOCK_SIZE_BYTES);
    const file = await encode('few', raw);
    const touched: number[] = [];
    const source = sourceOf(file);
    const counting: ChunkSource = { ...source, readAt: (at, n) => (touched.push(n), source.readAt(at, n)) };
    const reader = await ChunkReader.open('few', counting);
    touched.length = 0;
    for await (const piece of reader.read(BLOCK_SIZE_BYTES + 5, 10)) expect(piece.length).toBe(10);
    expect(touched).toEqual([BLOCK_SIZE_BYTES]);
  });

  it('keeps as many block reads in flight as its source asks, never more, in order', async () => {
    const raw = randomBytes(10 * BLOCK_SIZE_BYTES);
    const file = await encode('ahead', raw);
    const source = sourceOf(file);
    let pending = 0;
    let most = 0;
    let started = 0;
    const slow: ChunkSource = {
      ...source,
      readAheadBlocks: 3,
      readAt: async (at, n) => {
        started++;
        most = Math.max(most, ++pending);
        await new Promise((resolve) => setTimeout(resolve, 2));
        pending--;
        return source.readAt(at, n);
      },
    };
    const reader = await ChunkReader.open('ahead', slow);
    [started, most] = [0, 0];
    const pieces: Buffer[] = [];
    for await (const piece of reader.read(0, raw.length)) pieces.push(piece);
    expect(Buffer.concat(pieces).equals(raw)).toBe(true);
    expect(most).toBe(4);
    // A consumer that stops after one block leaves at most the blocks already read ahead.
    started = 0;
    for await (const piece of reader.read(0, raw.length)) {
      expect(piece.length).toBe(BLOCK_SIZE_BYTES);
      break;
    }
    expect(started).toBe(4);
    // By default (a tier's ranged GETs, an encoding in memory) one block ahead.
    const single = await ChunkReader.open('ahead', { ...slow, readAheadBlocks: undefined });
    [started, most] = [0, 0];
    for await (const piece of single.read(0, raw.length)) expect(piece.length).toBe(BLOCK_SIZE_BYTES);
    expect(most).toBe(2);
  });

  it('detects every flipped byte of a compressed chunk (head, table and payload)', async () => {
    // Three lz4 blocks in a few KiB of file, so flipping every byte stays quick.
    const raw = Buffer.concat([Buffer.alloc(BLOCK_SIZE_BYTES, 'strata '), Buffer.alloc(BLOCK_SIZE_BYTES, 'chunk '), textBytes(3000)]);
    const file = await encode('flip1', raw);
    const reader = await ChunkReader.open('flip1', sourceOf(file));
    expect(reader.layout.blocks.map((b) => b.codec)).toEqual(['lz4', 'lz4', 'lz4']);
    for (let at = 0; at < file.length; at++) {
      file[at] ^= 0x5a;
      await expectCorrupt(readAll('flip1', file), 'flip1');
      file[at] ^= 0x5a;
    }
    expect((await readAll('flip1', file)).equals(raw)).toBe(true);
  });

  it('detects flipped bytes in raw payloads and names the block', async () => {
    const raw = randomBytes(2 * BLOCK_SIZE_BYTES);
    const file = await encode('flip2', raw);
    const payloadStart = file.length - raw.length;
    for (let at = payloadStart; at < file.length; at += 4099) {
      const damaged = Buffer.from(file);
      damaged[at] ^= 0x01;
      const block = Math.floor((at - payloadStart) / BLOCK_SIZE_BYTES);
      await expect(readAll('flip2', damaged)).rejects.toThrow(`block ${block} checksum mismatch on /test/node-a`);
    }
  });

  it('detects truncated and extended files', async () => {
    const raw = textBytes(BLOCK_SIZE_BYTES * 2);
    const file = await encode('trunc', raw);
    for (const keepBytes of [0, 10, 40, 100, file.length - 1]) {
      await expectCorrupt(readAll('trunc', file.subarray(0, keepBytes)), 'trunc');
    }
    await expectCorrupt(readAll('trunc', Buffer.concat([file, Buffer.from([0])])), 'trunc');
  });

  it('rejects a file that holds another chunk', async () => {
    const file = await encode('abc', textBytes(1000));
    await expectCorrupt(readAll('abd', file), 'abd');
  });

  it('rejects more or fewer bytes than declared', async () => {
    const encoder = new ChunkEncoder('len1', 10);
    await expect(encoder.push(Buffer.alloc(11))).rejects.toMatchObject({ kind: 'Invalid' });
    const short = new ChunkEncoder('len2', 10);
    await short.push(Buffer.alloc(9));
    await expect(short.finish()).rejects.toMatchObject({ kind: 'Invalid' });
  });
});
