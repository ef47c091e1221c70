// Chunk ids carry their allocation time, so the collector can tell a chunk that a client may
// still commit from one that no commit can ever reference again (see gc.ts).
//
//   <20 hex random>-<allocation ms, base 36>
//
// Random first: data nodes shard chunk files by a hash of the id, so the order does not matter,
// and the prefix keeps ids unique across coordinators. Ids from before this scheme (32 hex) have
// no time: allocatedAtMs() says undefined and callers treat them as old.
import { randomBytes } from 'node:crypto';

const TIMED_ID = /^[0-9a-f]{20}-([0-9a-z]{1,11})$/;

export function newChunkId(nowMs: number): string {
  return `${randomBytes(10).toString('hex')}-${Math.floor(nowMs).toString(36)}`;
}

/** When the id was allocated, or undefined for an id without a time. */
export function allocatedAtMs(chunkId: string): number | undefined {
  const match = TIMED_ID.exec(chunkId);
  if (!match) return undefined;
  const ms = parseInt(match[1]!, 36);
  return Number.isSafeInteger(ms) ? ms : undefined;
}
