import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { KeyRing, LocalKeyWrapper } from './master-key.js';
import { OpeningStream, SEGMENT_BYTES, SealingStream, isSealedStream, openBuffer, sealBuffer } from './sealed-stream.js';
import { StrataError } from './errors.js';

const ring = new KeyRing(new LocalKeyWrapper(randomBytes(32)));
const other = new KeyRing(new LocalKeyWrapper(randomBytes(32)));

/** Pushes `input` through `stream` in pieces of `pieceBytes`; the output bytes. */
async function through(stream: SealingStream | OpeningStream, input: Buffer, pieceBytes: number): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let at = 0; at < input.length; at += pieceBytes) pieces.push(input.subarray(at, at + pieceBytes));
  const out: Buffer[] = [];
  await pipeline(Readable.from(pieces), stream, async function* (source) {
    for await (const piece of source) out.push(piece as Buffer);
  });
  return Buffer.concat(out);
}

async function failure(promise: Promise<unknown>): Promise<StrataError> {
  const err = await promise.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(StrataError);
  return err as StrataError;
}

describe('sealed streams (encrypted export objects)', () => {
  it('round-trip any length in any pieces; no plaintext in the sealed bytes', async () => {
    const marker = Buffer.from('EXPORT-PLAINTEXT-MARKER');
    for (const size of [0, 1, SEGMENT_BYTES - 1, SEGMENT_BYTES, SEGMENT_BYTES + 1, 2 * SEGMENT_BYTES + 12345]) {
      const plain = Buffer.alloc(size, marker);
      const sealed = await through(new SealingStream(ring), plain, 100_003);
      expect(isSealedStream(sealed)).toBe(true);
      if (size >= marker.length) expect(sealed.includes(marker)).toBe(false);
      expect((await through(new OpeningStream(ring, 'obj'), sealed, 65_537)).equals(plain), `${size} bytes`).toBe(true);
    }
    const manifest = Buffer.from('{"format":"strata-export"}');
    expect((await openBuffer(ring, await sealBuffer(ring, manifest), 'm')).equals(manifest)).toBe(true);
  });

  it('refuse a missing or wrong key (KeyUnavailable) and any damage, cut or dropped segment (Corrupt)', async () => {
    const plain = randomBytes(2 * SEGMENT_BYTES + 100);
    const sealed = await sealBuffer(ring, plain);
    expect(await failure(openBuffer(undefined, sealed, 's3://b/x'))).toMatchObject({ kind: 'KeyUnavailable', message: expect.stringMatching(/^s3:\/\/b\/x: encrypted with master key 'local-/) });
    expect(await failure(openBuffer(other, sealed, 's3://b/x'))).toMatchObject({ kind: 'KeyUnavailable' });
    for (const at of [40, 200, SEGMENT_BYTES + 300, sealed.length - 1]) {
      const damaged = Buffer.from(sealed);
      damaged[at] ^= 1;
      expect((await failure(openBuffer(ring, damaged, 'x'))).kind, `byte ${at}`).toMatch(/Corrupt|KeyUnavailable/);
    }
    // Cut after a whole segment: the tag of a non-final segment does not pass as the final one.
    const headerBytes = sealed.length - (plain.length + 3 * 16);
    const cut = sealed.subarray(0, headerBytes + SEGMENT_BYTES + 16);
    expect(await failure(openBuffer(ring, cut, 'x'))).toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('failed authentication') });
    expect(await failure(openBuffer(ring, sealed.subarray(0, sealed.length - 1), 'x'))).toMatchObject({ kind: 'Corrupt' });
    expect(await failure(openBuffer(ring, Buffer.from('STRE'), 'x'))).toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('cut short') });
  });
});
