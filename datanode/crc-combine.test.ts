import { randomBytes } from 'node:crypto';
import { crc32c } from '@node-rs/crc32';
import { describe, expect, test } from 'vitest';
import { crc32cCombine } from './crc-combine.js';

describe('crc32cCombine', () => {
  test('equals the crc32c of the concatenation, for parts of any length (empty ones too)', () => {
    for (const [a, b] of [[0, 0], [0, 7], [5, 0], [1, 1], [3, 65_536], [65_536, 65_536], [100_000, 12_345], [8 << 20, 1]] as const) {
      const first = randomBytes(a);
      const second = randomBytes(b);
      expect(crc32cCombine(crc32c(first), crc32c(second), b), `${a}+${b}`).toBe(crc32c(Buffer.concat([first, second])) >>> 0);
    }
  });

  test('folds a chunk of blocks into the whole chunk crc32c', () => {
    const chunk = randomBytes(300_000);
    let crc = 0;
    for (let at = 0; at < chunk.length; at += 65_536) {
      const block = chunk.subarray(at, at + 65_536);
      crc = crc32cCombine(crc, crc32c(block), block.length);
    }
    expect(crc).toBe(crc32c(chunk) >>> 0);
  });
});
