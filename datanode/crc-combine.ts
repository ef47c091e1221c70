// crc32c of a concatenation from the crc32c of its parts, without their bytes (zlib's
// crc32_combine, for the Castagnoli polynomial): a copy whose blocks were each checked against
// their own crc32c gets the whole chunk's crc32c, to compare with the metadata, for free.
import type { BlockEntry } from '../common/chunk-codec.js';

/** The Castagnoli polynomial, reflected. */
const POLY = 0x82f63b78;

/** a(x) * b(x) modulo the polynomial (both reflected). */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** X2N[k] = x^(2^k) modulo the polynomial. */
const X2N = new Uint32Array(32);
{
  let p = 0x40000000; // x^1
  X2N[0] = p;
  for (let k = 1; k < 32; k++) X2N[k] = p = multModP(p, p);
}

/** x^(n * 2^k) modulo the polynomial. */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n > 0) {
    if (n % 2 === 1) p = multModP(X2N[k & 31]!, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/** crc32c(A ‖ B) from crc32c(A), crc32c(B) and B's length in bytes. */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  return (multModP(x2nModP(lengthB, 3), crcA >>> 0) ^ crcB) >>> 0;
}

/**
 * Folds one block, as ChunkReader yields it (checked against its table entry's checksums), into a
 * running crc32c of the chunk's raw bytes, by the entry's rawCrc. A raw block is checked by its
 * storedCrc alone, so its rawCrc counts only when equal to that (the encoder writes them equal);
 * a sealed raw block's rawCrc was checked against its decrypted bytes. Null when the block and
 * its entry disagree.
 */
export function foldVerifiedBlock(
  crc: number,
  block: Buffer,
  entry: Pick<BlockEntry, 'codec' | 'rawBytes' | 'storedCrc' | 'rawCrc'> & { sealed?: boolean },
): number | null {
  if (block.length !== entry.rawBytes || (entry.codec === 'raw' && !entry.sealed && entry.rawCrc !== entry.storedCrc)) return null;
  return crc32cCombine(crc, entry.rawCrc, entry.rawBytes);
}
