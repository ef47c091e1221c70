// Encrypted chunks (format version 2): round trips, no plaintext in the encoding, every flipped
// byte caught, and a missing or wrong master key refused as KeyUnavailable (never Corrupt).
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { crc32c } from '@node-rs/crc32';
import { BLOCK_SIZE_BYTES, ChunkEncoder, ChunkReader, SEAL_TAG_BYTES, maxEncodingBytes, newChunkSeal } from './chunk-codec.js';
import { KeyRing, LocalKeyWrapper, loadKeyRing, parseMasterKey } from './master-key.js';
import { StrataError } from './errors.js';
import { chunkSource, encodeChunk, readChunk } from '../test/harness/chunk-files.js';

const ring = new KeyRing(new LocalKeyWrapper(randomBytes(32)));
const otherRing = new KeyRing(new LocalKeyWrapper(randomBytes(32)));
const PATTERN = 'STRATA-SECRET-PATTERN-0123456789 ';

const encode = async (chunkId: string, raw: Buffer, keys: KeyRing | null = ring, pieceBytes?: number) =>
  encodeChunk(chunkId, raw, keys && (await newChunkSeal(keys.current)), pieceBytes);
const sourceOf = chunkSource;
const readAll = (chunkId: string, file: Buffer, keys: KeyRing | null = ring, offset?: number, length?: number) => readChunk(chunkId, file, keys ?? undefined, offset, length);

async function failure(promise: Promise<unknown>): Promise<StrataError> {
  const err = await promise.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(StrataError);
  return err as StrataError;
}

describe('encrypted chunks', () => {
  it('round-trip compressible and random data, compressed before sealing, no plaintext in the encoding', async () => {
    const text = Buffer.from(PATTERN.repeat(Math.ceil((2 * BLOCK_SIZE_BYTES + 999) / PATTERN.length))).subarray(0, 2 * BLOCK_SIZE_BYTES + 999);
    const file = await encode('sealed-text', text);
    expect((await readAll('sealed-text', file)).equals(text)).toBe(true);
    expect(file.includes(Buffer.from('STRATA-SECRET'))).toBe(false);
    const reader = await ChunkReader.open('sealed-text', sourceOf(file), ring);
    expect(reader.layout.keyId).toBe(ring.current.keyId);
    expect(reader.layout.blocks.map((b) => [b.codec, b.sealed])).toEqual([['lz4', true], ['lz4', true], ['lz4', true]]);
    expect(file.length).toBeLessThan(text.length / 10); // compression happened first
    // Ranged reads across block edges.
    const at = BLOCK_SIZE_BYTES - 7;
    expect((await readAll('sealed-text', file, ring, at, 5000)).equals(text.subarray(at, at + 5000))).toBe(true);

    const random = randomBytes(BLOCK_SIZE_BYTES + 12345);
    const rawFile = await encode('sealed-rand', random);
    expect((await readAll('sealed-rand', rawFile)).equals(random)).toBe(true);
    const blocks = (await ChunkReader.open('sealed-rand', sourceOf(rawFile), ring)).layout.blocks;
    expect(blocks.map((b) => [b.codec, b.storedBytes - b.rawBytes])).toEqual([['raw', SEAL_TAG_BYTES], ['raw', SEAL_TAG_BYTES]]);
    expect(rawFile.length).toBeLessThanOrEqual(maxEncodingBytes('sealed-rand', random.length));
    expect((await readAll('sealed-empty', await encode('sealed-empty', Buffer.alloc(0)))).length).toBe(0);
  });

  it('two encodings of the same bytes differ (a data key per chunk) and plain chunks still read', async () => {
    // Incompressible around the pattern, so a plain encoding keeps it verbatim (stored raw).
    const raw = Buffer.concat([randomBytes(20_000), Buffer.from(PATTERN), randomBytes(20_000)]);
    const [a, b] = [await encode('same', raw), await encode('same', raw)];
    expect(a.equals(b)).toBe(false);
    const plain = await encode('plain', raw, null);
    expect(plain.includes(Buffer.from('STRATA-SECRET'))).toBe(true);
    // A node with a key reads chunks written before encryption was on; one without reads them too.
    expect((await readAll('plain', plain, ring)).equals(raw)).toBe(true);
    expect((await readAll('plain', plain, null)).equals(raw)).toBe(true);
  });

  it('refuses a missing or a wrong master key as KeyUnavailable, naming the key, before reading any block', async () => {
    const file = await encode('keyed', randomBytes(5000));
    const none = await failure(readAll('keyed', file, null));
    expect(none.kind).toBe('KeyUnavailable');
    expect(none.message).toMatch(new RegExp(`^chunk keyed on /test/node-a: encrypted with master key '${ring.current.keyId}', but no master key is configured`));
    const wrong = await failure(readAll('keyed', file, otherRing));
    expect(wrong.kind).toBe('KeyUnavailable');
    expect(wrong.message).toContain(`the configured key is '${otherRing.current.keyId}'`);
    // Same key id, other key material (a KMS-shaped wrapper whose key changed under its name).
    const impostor = new KeyRing({ keyId: ring.current.keyId, wrap: otherRing.current.wrap.bind(otherRing.current), unwrap: otherRing.current.unwrap.bind(otherRing.current) });
    const forged = await failure(readAll('keyed', file, impostor));
    expect(forged.kind).toBe('KeyUnavailable');
    expect(forged.message).toContain('does not open this data key');
  });

  it('detects every flipped byte (head, table, ciphertext, tag) as Corrupt, and a ciphertext change with its crc fixed by the tag', async () => {
    const raw = Buffer.concat([Buffer.alloc(BLOCK_SIZE_BYTES, 'strata '), Buffer.from(PATTERN.repeat(40))]);
    const file = await encode('flip-sealed', raw);
    for (let at = 0; at < file.length; at++) {
      file[at] ^= 0x5a;
      const err = await failure(readAll('flip-sealed', file));
      // A flipped key id byte names another key: refused as a key problem, never served.
      expect(['Corrupt', 'KeyUnavailable']).toContain(err.kind);
      file[at] ^= 0x5a;
    }
    expect((await readAll('flip-sealed', file)).equals(raw)).toBe(true);

    // Rewrite block 1's ciphertext and its stored crc (and the table crc): only the tag catches it.
    const reader = await ChunkReader.open('flip-sealed', sourceOf(file), ring);
    const { blockOffsets, blocks } = reader.layout;
    const forged = Buffer.from(file);
    forged[blockOffsets[1]] ^= 0x01;
    const tableStart = blockOffsets[0] - blocks.length * 20 - 4;
    forged.writeUInt32LE(crc32c(forged.subarray(blockOffsets[1], blockOffsets[1] + blocks[1].storedBytes)), tableStart + 20 + 12);
    forged.writeUInt32LE(crc32c(forged.subarray(tableStart, tableStart + blocks.length * 20)), tableStart + blocks.length * 20);
    const err = await failure(readAll('flip-sealed', forged));
    expect(err.kind).toBe('Corrupt');
    expect(err.message).toContain('block 1 failed authentication');
  });

  it('a seal is used for one chunk only', async () => {
    const seal = await newChunkSeal(ring.current);
    new ChunkEncoder('once', 10, seal);
    expect(() => new ChunkEncoder('twice', 10, seal)).toThrow(/one chunk only/);
  });
});

describe('master keys', () => {
  it('load from hex, base64 or raw bytes; refuse anything else in one line without the key in it', () => {
    const key = randomBytes(32);
    const id = new LocalKeyWrapper(key).keyId;
    for (const form of [key, Buffer.from(key.toString('hex') + '\n'), Buffer.from(key.toString('base64'))]) {
      expect(new LocalKeyWrapper(parseMasterKey(form, 'test')).keyId).toBe(id);
    }
    expect(loadKeyRing({ masterKey: key.toString('hex') })?.current.keyId).toBe(id);
    expect(loadKeyRing({})).toBeUndefined();
    const short = key.toString('hex').slice(0, 60);
    expect(() => loadKeyRing({ masterKey: short })).toThrow(/^invalid config: masterKey \(STRATA_MASTER_KEY\): a master key is 32 bytes/);
    try {
      loadKeyRing({ masterKey: short });
    } catch (err) {
      expect((err as Error).message).not.toContain(short);
    }
    expect(() => loadKeyRing({ encryptKeyFile: '/nonexistent/key' })).toThrow(/^invalid config: encryptKeyFile: cannot read \/nonexistent\/key: ENOENT/);
    expect(() => loadKeyRing({ encryptKeyFile: '/x', masterKey: 'y' })).toThrow(/not both/);
  });
});
