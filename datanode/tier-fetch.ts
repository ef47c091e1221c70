// Fetching one tiered chunk's object: GetObject of the whole object, streamed into a file or into
// memory while its size and crc32c are computed, then checked against the TierCopy the request
// named; or a byte range of it (for tier-ranged.ts), checked by the chunk codec instead. A store
// that is down or stalls fails Unavailable within bounded time (never a hung read); an object
// that is not the bytes uploaded fails Corrupt. A failed fetch leaves nothing.
import { open, unlink } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { crc32c } from '@node-rs/crc32';
import { StrataError, asStrataError, invalid } from '../common/errors.js';
import type { ObjectTier, TierCopy } from '../common/object-tier.js';

export interface FetchLimits {
  /** Longest wait for the store to answer GetObject (its headers), SDK retries included. */
  answerTimeoutMs: number;
  /** Longest pause between two pieces of the body: a big object may take long, but never stall. */
  idleTimeoutMs: number;
}

/**
 * The SDK alone may take 3 attempts of 30 s on a store that accepts connections but never answers;
 * a reader gives up sooner and the client moves on (another replica, or a retry later).
 */
export const DEFAULT_FETCH_LIMITS: FetchLimits = { answerTimeoutMs: 10_000, idleTimeoutMs: 10_000 };

/** Largest object a fetch accepts: a 64 MiB chunk's encoding plus its head, with room to spare. */
const MAX_OBJECT_BYTES = 65 * 1024 * 1024;

/** A TierCopy as it arrives in a request, checked: tier and key named, a plausible size. */
export function checkTierCopy(chunkId: string, copy: Partial<TierCopy> | null | undefined): TierCopy {
  if (!copy?.tier || !copy.key) throw invalid(`chunk ${chunkId}: a tier copy needs a tier name and an object key`);
  const storedBytes = Number(copy.storedBytes);
  if (!Number.isSafeInteger(storedBytes) || storedBytes <= 0 || storedBytes > MAX_OBJECT_BYTES) {
    throw invalid(`chunk ${chunkId}: tier copy size ${copy.storedBytes} is not a chunk's stored size`);
  }
  return { tier: copy.tier, key: copy.key, storedBytes, crc32c: Number(copy.crc32c ?? 0) >>> 0 };
}

/** The object into a new file at `path` (created, never overwritten); removed again on failure. */
export async function fetchToFile(tier: ObjectTier, chunkId: string, copy: TierCopy, path: string, limits = DEFAULT_FETCH_LIMITS): Promise<void> {
  const handle = await open(path, 'wx');
  try {
    await fetchObject(tier, chunkId, copy, (piece) => handle.write(piece), limits);
    await handle.close();
  } catch (err) {
    await handle.close().catch(() => {});
    await unlink(path).catch(() => {});
    throw err;
  }
}

/** The object in memory (for a node without a cache): at most one chunk's encoding. */
export async function fetchToMemory(tier: ObjectTier, chunkId: string, copy: TierCopy, limits = DEFAULT_FETCH_LIMITS): Promise<Buffer> {
  const pieces: Buffer[] = [];
  await fetchObject(tier, chunkId, copy, (piece) => void pieces.push(piece), limits);
  return Buffer.concat(pieces);
}

/**
 * Bytes [start, end) of the object, in memory: one ranged GET under the same time limits as a
 * whole fetch, failing the same ways. Nothing is checked here but the length: the chunk codec
 * checks what it reads of them (header, table and block checksums).
 */
export async function fetchRange(
  tier: ObjectTier,
  chunkId: string,
  copy: TierCopy,
  range: { start: number; end: number },
  limits = DEFAULT_FETCH_LIMITS,
): Promise<Buffer> {
  const what = `chunk ${chunkId}: object ${copy.key} in tier '${copy.tier}'`;
  const wanted = range.end - range.start;
  const pieces: Buffer[] = [];
  let received = 0;
  await streamObject(tier, chunkId, copy, range, limits, (piece) => {
    received += piece.length;
    // A store that ignores Range sends the whole object: stop before it fills memory.
    if (received > wanted) throw new StrataError('Corrupt', `${what} answered more than the ${wanted} bytes asked at ${range.start}`);
    pieces.push(piece);
  });
  return Buffer.concat(pieces, received);
}

/** The whole object to `sink`, checked against the size and crc32c the TierCopy names. */
async function fetchObject(
  tier: ObjectTier,
  chunkId: string,
  copy: TierCopy,
  sink: (piece: Buffer) => Promise<unknown> | void,
  limits: FetchLimits,
): Promise<void> {
  const what = `chunk ${chunkId}: object ${copy.key} in tier '${copy.tier}'`;
  let received = 0;
  let crc = 0;
  await streamObject(tier, chunkId, copy, undefined, limits, async (piece) => {
    received += piece.length;
    // Stop at once: a wrong object must not fill the disk or memory first.
    if (received > copy.storedBytes) throw new StrataError('Corrupt', `${what} has more than the expected ${copy.storedBytes} bytes`);
    crc = crc32c(piece, crc);
    await sink(piece);
  });
  if (received !== copy.storedBytes) throw new StrataError('Corrupt', `${what} has ${received} bytes, expected ${copy.storedBytes}`);
  if (crc >>> 0 !== copy.crc32c) {
    throw new StrataError('Corrupt', `${what} failed its checksum (crc32c ${crc >>> 0}, expected ${copy.crc32c})`);
  }
}

/**
 * One GetObject (of a range, or of the whole object) piece by piece to `onPiece`, bounded in time:
 * Unavailable when the store doesn't answer or stalls; errors name the chunk.
 */
async function streamObject(
  tier: ObjectTier,
  chunkId: string,
  copy: TierCopy,
  range: { start: number; end: number } | undefined,
  limits: FetchLimits,
  onPiece: (piece: Buffer) => Promise<void> | void,
): Promise<void> {
  const what = `chunk ${chunkId}: object ${copy.key} in tier '${copy.tier}'`;
  const abort = new AbortController();
  let stalled: string | undefined;
  const giveUp = (why: string) => {
    stalled = why;
    abort.abort();
  };
  let timer = setTimeout(() => giveUp(`no answer within ${limits.answerTimeoutMs / 1000} s`), limits.answerTimeoutMs);
  let body: Readable | undefined;
  try {
    body = await tier.get(copy.key, range, { signal: abort.signal });
    const stream = body;
    abort.signal.addEventListener('abort', () => stream.destroy(), { once: true });
    const armIdle = () => {
      clearTimeout(timer);
      timer = setTimeout(() => giveUp(`no bytes for ${limits.idleTimeoutMs / 1000} s`), limits.idleTimeoutMs);
    };
    armIdle();
    for await (const chunk of stream) {
      await onPiece(chunk as Buffer);
      armIdle();
    }
  } catch (err) {
    if (stalled) throw new StrataError('Unavailable', `${what}: the store stalled (${stalled}); retry later`, { cause: err });
    const error = asStrataError(err);
    if (error.message.startsWith(`chunk ${chunkId}:`)) throw error;
    // The body broke off mid-way (a reset connection, the store going down): retryable.
    const kind = error.kind === 'Internal' ? 'Unavailable' : error.kind;
    throw new StrataError(kind, `chunk ${chunkId}: ${error.message}`, { cause: err });
  } finally {
    clearTimeout(timer);
    body?.destroy();
  }
}
