// Checks of a whole stored encoding (common/FORMAT.md) that another node sent, before it is stored
// here byte for byte: by a repair copy (decoded: every block opened and decompressed) and by a
// replica of an encode-once write (stored: each block's crc against the head's table, no LZ4, no
// AES, no key needed). Both end with the same whole-chunk checks: raw length and crc32c.
import { crc32c } from '@node-rs/crc32';
import { ChunkReader, bufferSource, readChunkHead, type ChunkLayout } from '../common/chunk-codec.js';
import { StrataError } from '../common/errors.js';
import type { KeyRing } from '../common/master-key.js';
import { crc32cCombine, foldVerifiedBlock } from './crc-combine.js';

export interface ExpectedChunk {
  chunkId: string;
  /** Raw bytes of the chunk. */
  length: number;
  /** crc32c of the raw bytes; 0 = unknown (not checked). */
  crc32c: number;
  /** Who sent it, for messages: "the copy from dn2". */
  from: string;
}

/** Every block opened with `keys` and checked against its raw crc: what a repair copy checks. */
export async function checkEncodingDecoded(bytes: Buffer, expected: ExpectedChunk, keys: KeyRing | undefined): Promise<ChunkLayout> {
  const { chunkId, from } = expected;
  const reader = await ChunkReader.open(chunkId, bufferSource(bytes, from), keys);
  // The reader checks each block against its own checksums (a raw block's stored ones are its
  // raw ones); the whole chunk's crc32c then follows from theirs, with no second pass.
  let crc = 0;
  let received = 0;
  let index = 0;
  for await (const block of reader.read(0, reader.layout.rawLengthBytes)) {
    const folded = foldVerifiedBlock(crc, block, reader.layout.blocks[index++]!);
    if (folded === null) throw new StrataError('Corrupt', `chunk ${chunkId}: block ${index - 1} of ${from} disagrees with its table entry`);
    crc = folded;
    received += block.length;
  }
  checkWhole(expected, received, crc);
  return reader.layout;
}

/**
 * The head (its crcs and table), then each block's stored bytes against its table entry's stored
 * crc, then the raw length and the crc32c the table's raw crcs add up to. Blocks are not opened:
 * the writer computed their raw crcs from the bytes it encoded; a sealed encoding needs no key.
 */
export async function checkEncodingStored(bytes: Buffer, expected: ExpectedChunk): Promise<ChunkLayout> {
  const { chunkId, from } = expected;
  const { layout } = await readChunkHead(chunkId, bufferSource(bytes, from));
  let crc = 0;
  layout.blocks.forEach((entry, index) => {
    const at = layout.blockOffsets[index]!;
    if (crc32c(bytes.subarray(at, at + entry.storedBytes)) !== entry.storedCrc) {
      throw new StrataError('Corrupt', `chunk ${chunkId}: block ${index} checksum mismatch in ${from}`);
    }
    crc = crc32cCombine(crc, entry.rawCrc, entry.rawBytes);
  });
  checkWhole(expected, layout.rawLengthBytes, crc);
  return layout;
}

function checkWhole(expected: ExpectedChunk, received: number, crc: number): void {
  const { chunkId, length, from } = expected;
  if (received !== length) throw new StrataError('Corrupt', `chunk ${chunkId}: ${from} holds ${received} bytes, expected ${length}`);
  const expectedCrc = expected.crc32c >>> 0;
  if (expectedCrc !== 0 && crc >>> 0 !== expectedCrc) {
    throw new StrataError('Corrupt', `chunk ${chunkId}: crc32c ${crc >>> 0} of ${from}, expected ${expectedCrc}`);
  }
}
