// Chunk files in memory, for the chunk codec's tests: encoded in uneven pieces (as they arrive
// over the network) into one buffer, and read back through a ChunkSource over it.
import { expect } from 'vitest';
import { ChunkEncoder, ChunkReader, type ChunkSeal, type ChunkSource } from '../../common/chunk-codec.js';
import type { KeyRing } from '../../common/master-key.js';

/** `seal`: encrypt it (format version 3, or `sealedVersion`); without one, a plain chunk. */
export async function encodeChunk(chunkId: string, raw: Buffer, seal?: ChunkSeal | null, pieceBytes = 100_003, sealedVersion?: number): Promise<Buffer> {
  const encoder = new ChunkEncoder(chunkId, raw.length, seal ?? undefined, sealedVersion);
  const payloads: Buffer[] = [];
  for (let at = 0; at < raw.length; at += pieceBytes) payloads.push(...(await encoder.push(raw.subarray(at, at + pieceBytes))));
  const done = await encoder.finish();
  const file = Buffer.concat([done.head, ...payloads, ...done.payloads]);
  expect(file.length).toBe(done.fileSizeBytes);
  return file;
}

export const chunkSource = (file: Buffer): ChunkSource => ({ readAt: async (at, n) => Buffer.from(file.subarray(at, at + n)), sizeBytes: file.length, location: '/test/node-a' });

export async function readChunk(chunkId: string, file: Buffer, keys?: KeyRing, offset = 0, length = Number.MAX_SAFE_INTEGER): Promise<Buffer> {
  const reader = await ChunkReader.open(chunkId, chunkSource(file), keys);
  const pieces: Buffer[] = [];
  for await (const piece of reader.read(offset, length)) pieces.push(piece);
  return Buffer.concat(pieces);
}
