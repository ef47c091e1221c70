// Master key rotation of one chunk (chunk-rewrap.ts) and key ring files (master-key.ts).
import { randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { encodeChunk, readChunk } from '../test/harness/chunk-files.js';
import { newChunkSeal, readChunkHead, bufferSource } from './chunk-codec.js';
import { rewrapEncoding } from './chunk-rewrap.js';
import { KeyRing, LocalKeyWrapper, parseKeyRing } from './master-key.js';

const oldKey = new LocalKeyWrapper(randomBytes(32));
const newKey = new LocalKeyWrapper(randomBytes(32));
const raw = Buffer.concat([randomBytes(300_000), Buffer.alloc(300_000, 7)]); // a raw block and lz4 ones

describe('re-wrapping a chunk under a new master key', () => {
  test('format 3: the same blocks, a new key section; the new ring alone reads it', async () => {
    const file = await encodeChunk('c1', raw, await newChunkSeal(oldKey));
    const { outcome, encoding } = await rewrapEncoding('c1', file, new KeyRing(newKey, [oldKey]), 'test');
    expect(outcome).toBe('rewrapped');
    const before = await readChunkHead('c1', bufferSource(file, 'test'));
    const after = await readChunkHead('c1', bufferSource(encoding!, 'test'));
    expect(after.layout.keyId).toBe(newKey.keyId);
    expect(encoding!.subarray(after.headerBytes).equals(file.subarray(before.headerBytes))).toBe(true);
    expect((await readChunk('c1', encoding!, new KeyRing(newKey))).equals(raw)).toBe(true);
    await expect(readChunk('c1', encoding!, new KeyRing(oldKey))).rejects.toMatchObject({ kind: 'KeyUnavailable' });
  });

  test('format 2 (tags over the key section): sealed again as format 3 under a fresh data key', async () => {
    const file = await encodeChunk('c2', raw, await newChunkSeal(oldKey), 100_003, 2);
    expect(file.readUInt16LE(4)).toBe(2);
    expect((await readChunk('c2', file, new KeyRing(oldKey))).equals(raw)).toBe(true); // still reads
    const { outcome, encoding } = await rewrapEncoding('c2', file, new KeyRing(newKey, [oldKey]), 'test');
    expect(outcome).toBe('resealed');
    expect(encoding!.readUInt16LE(4)).toBe(3);
    expect((await readChunk('c2', encoding!, new KeyRing(newKey))).equals(raw)).toBe(true);
  });

  test('already under the writing key, plain, or under a key the ring lacks', async () => {
    const ring = new KeyRing(newKey, [oldKey]);
    expect((await rewrapEncoding('c3', await encodeChunk('c3', raw, await newChunkSeal(newKey)), ring, 'test')).outcome).toBe('current');
    expect((await rewrapEncoding('c4', await encodeChunk('c4', raw), ring, 'test')).outcome).toBe('plain');
    const stranger = await encodeChunk('c5', raw, await newChunkSeal(new LocalKeyWrapper(randomBytes(32))));
    await expect(rewrapEncoding('c5', stranger, ring, 'test')).rejects.toMatchObject({ kind: 'KeyUnavailable' });
  });
});

describe('key ring files', () => {
  const hex = () => randomBytes(32).toString('hex');
  test('one key per line, comments and blank lines skipped, the last one writes; a bad line is named, never shown', () => {
    const [a, b] = [hex(), hex()];
    const ring = parseKeyRing(Buffer.from(`# keys\n${a}\n\n${Buffer.from(b, 'hex').toString('base64')}  # newest\n`), 'ring');
    expect(ring.current.keyId).toBe(new LocalKeyWrapper(Buffer.from(b, 'hex')).keyId);
    expect(ring.ids()).toEqual([new LocalKeyWrapper(Buffer.from(b, 'hex')).keyId, new LocalKeyWrapper(Buffer.from(a, 'hex')).keyId]);
    expect(parseKeyRing(randomBytes(32), 'raw').ids()).toHaveLength(1);
    expect(parseKeyRing(Buffer.from(`# one\n${a}\n`), 'one').ids()).toHaveLength(1);
    const bad = a.slice(0, 50);
    expect(() => parseKeyRing(Buffer.from(`${a}\n${bad}\n`), 'ring')).toThrow(/^invalid config: ring line 2: a master key is 32 bytes/);
    try {
      parseKeyRing(Buffer.from(`${a}\n${bad}\n`), 'ring');
    } catch (err) {
      expect((err as Error).message).not.toContain(bad);
    }
    const swapped = new KeyRing(new LocalKeyWrapper(randomBytes(32)));
    swapped.replaceWith(ring);
    expect(swapped.current.keyId).toBe(ring.current.keyId);
  });
});
