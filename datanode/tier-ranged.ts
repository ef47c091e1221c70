// A tiered chunk's object read by ranged GETs, as a ChunkSource: what a cache miss serves its
// first bytes from while the whole object is still on its way into the cache (tier-cache.ts).
// This module only moves bytes; ChunkReader over it verifies the header, the block table and
// every block it reads (stored crc, then raw crc after LZ4) exactly as for a cached file, so no
// unchecked byte is served. The head (header + table) is fetched once, in the first GET, and
// kept in memory for every reader of the source; concurrent reads of one range share one GET.
import { BLOCK_SIZE_BYTES, MAX_CHUNK_BYTES, MAX_KEY_SECTION_BYTES, SEAL_TAG_BYTES, headSizeBytes, type ChunkSource } from '../common/chunk-codec.js';
import type { ObjectTier, TierCopy } from '../common/object-tier.js';
import { fetchRange, type FetchLimits } from './tier-fetch.js';

/**
 * Bytes the first GET asks for: the largest head a chunk of this id can have (the table's size
 * depends on the raw length, unknown until the header is read: fetching the most saves a round
 * trip; and the largest key section, for an encrypted chunk), plus the first block when the read lies inside it. Every block's stored bytes are at
 * most its raw bytes, so head + one block size covers block 0 for every writer so far; a chunk
 * laid out otherwise is still read correctly, by further GETs.
 */
export function firstRangeBytes(chunkId: string, copy: TierCopy, readEndBytes: number): number {
  // An encrypted chunk's head has a key section, and its blocks a tag each.
  const head = headSizeBytes(chunkId, MAX_CHUNK_BYTES, BLOCK_SIZE_BYTES, MAX_KEY_SECTION_BYTES);
  const wanted = readEndBytes <= BLOCK_SIZE_BYTES ? head + BLOCK_SIZE_BYTES + SEAL_TAG_BYTES : head;
  return Math.min(wanted, copy.storedBytes);
}

/**
 * The object as a ChunkSource of `copy.storedBytes` bytes (the size the request names: readLayout
 * fails Corrupt when the head disagrees). Its first GET is [0, firstBytes), made on first use.
 */
export function rangedSource(tier: ObjectTier, chunkId: string, copy: TierCopy, firstBytes: number, limits: FetchLimits): ChunkSource {
  const get = (start: number, end: number) => fetchRange(tier, chunkId, copy, { start, end }, limits);
  let first: Promise<Buffer> | undefined;
  const inFlight = new Map<string, Promise<Buffer>>();
  const readAt = async (at: number, n: number): Promise<Buffer> => {
    const end = Math.min(at + n, copy.storedBytes);
    if (end <= at) return Buffer.alloc(0);
    if (end <= firstBytes) {
      first ??= get(0, firstBytes);
      return (await first).subarray(at, end);
    }
    // Readers of one chunk that arrive together mostly want the same block: one GET for them.
    const key = `${at}-${end}`;
    let pending = inFlight.get(key);
    if (!pending) {
      pending = get(at, end);
      inFlight.set(key, pending);
      const forget = () => inFlight.delete(key);
      pending.then(forget, forget);
    }
    return pending;
  };
  return { readAt, sizeBytes: copy.storedBytes, location: `object ${copy.key} in tier '${copy.tier}'` };
}
