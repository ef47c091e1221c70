// Ranged file reads: chunk locations come from a coordinator in batches; each chunk range
// is read from the first healthy replica, falling back to the next when a node is down or
// its copy fails a checksum, resuming where the failed one stopped. The next chunk is
// fetched while the current one drains (read-ahead), so at most `readAhead + 1` chunks
// are held in memory.
import { crc32c } from '@node-rs/crc32';
import { GRANT_MAX_CHUNKS } from '../common/chunk-grants.js';
import { StrataError, asStrataError } from '../common/errors.js';
import type { CoordinatorClient } from './coordinator-client.js';
import type { DataNodeClients, NodeAddress } from './datanode-client.js';

interface ChunkLocation {
  index: number;
  chunkId: string;
  length: number;
  crc32c: number;
  replicas: NodeAddress[];
  /** Set when the bytes are in an object tier: passed on so a node without a copy reads it through. */
  tier?: unknown;
  /** The read grant of the reply it came in (common/chunk-grants.ts). */
  grant?: string;
}

interface GetChunksReply {
  chunks: ChunkLocation[];
  grant?: string;
}

/** Each location with its reply's grant, which covers them all. */
const withGrants = (reply: GetChunksReply) => reply.chunks.map((chunk) => ({ ...chunk, grant: reply.grant ?? '' }));

/** The server answers at most one grant's worth per GetChunks: ask for no more (a read past it would skip chunks). */
const LOCATIONS_PER_CALL = GRANT_MAX_CHUNKS;
const ZEROS = Buffer.alloc(1024 * 1024);

export interface RangeReadOptions {
  ino: number;
  /** The file's size and chunk size, from the stat that opened it (close-to-open). */
  size: number;
  chunkSize: number;
  start: number;
  /** Exclusive end; clamped to the file size. */
  end: number;
  readAhead: number;
  /** Leave the file's atime alone (GetChunksRequest.keep_atime). */
  keepAtime?: boolean;
}

export async function* readRange(coordinator: CoordinatorClient, datanodes: DataNodeClients, options: RangeReadOptions): AsyncGenerator<Buffer> {
  const { chunkSize, size } = options;
  const end = Math.min(options.end, size);
  if (options.start >= end) return;
  const firstIndex = Math.floor(options.start / chunkSize);
  const lastIndex = Math.floor((end - 1) / chunkSize);

  const locations = new Map<number, ChunkLocation>();
  let fetchedThrough = firstIndex - 1;
  // Where a chunk is now: its copies can move (repair, tiering, recall) after we asked.
  const relocate = async (index: number): Promise<ChunkLocation | undefined> => {
    const reply = await coordinator.call<GetChunksReply>('GetChunks', { ino: options.ino, fromIndex: index, count: 1, keepAtime: options.keepAtime });
    return withGrants(reply).find((chunk) => Number(chunk.index) === index);
  };
  const locate = async (index: number): Promise<ChunkLocation | undefined> => {
    if (index > fetchedThrough) {
      // No more than the range needs: a one-chunk read (the mount's) asks for one location.
      const count = Math.min(LOCATIONS_PER_CALL, lastIndex - index + 1);
      const reply = await coordinator.call<GetChunksReply>('GetChunks', { ino: options.ino, fromIndex: index, count, keepAtime: options.keepAtime });
      for (const chunk of withGrants(reply)) locations.set(Number(chunk.index), chunk);
      fetchedThrough = index + count - 1;
    }
    const found = locations.get(index);
    locations.delete(index);
    return found;
  };

  const fetchPart = async (index: number): Promise<Buffer[]> => {
    const chunkStart = index * chunkSize;
    const from = Math.max(options.start, chunkStart) - chunkStart;
    const to = Math.min(end, chunkStart + chunkSize) - chunkStart;
    const location = await locate(index);
    const pieces: Buffer[] = [];
    const stored = location ? Math.min(Number(location.length), to) : 0;
    if (location && from < stored) {
      let read: Buffer[];
      try {
        read = await readChunkRange(datanodes, location, from, stored - from);
      } catch (err) {
        // Retry once where the chunk is now; never another chunk id (that is a newer write). A
        // refused grant (it expired while the location waited) is retried with a fresh one.
        const moved = await relocate(index).catch(() => undefined);
        const refused = err instanceof StrataError && err.kind === 'PermissionDenied';
        if (!moved || moved.chunkId !== location.chunkId || (sameLocation(moved, location) && !refused)) throw err;
        read = await readChunkRange(datanodes, moved, from, stored - from);
      }
      pieces.push(...read);
    }
    // A hole, or bytes past a chunk's stored length (after a truncate), read as zeros.
    for (let zeroFrom = Math.max(from, stored); zeroFrom < to; zeroFrom += ZEROS.length) {
      pieces.push(ZEROS.subarray(0, Math.min(ZEROS.length, to - zeroFrom)));
    }
    return pieces;
  };

  const pending: Promise<Buffer[]>[] = [];
  let nextToFetch = firstIndex;
  const fill = () => {
    while (nextToFetch <= lastIndex && pending.length <= options.readAhead) {
      const part = fetchPart(nextToFetch++);
      part.catch(() => undefined); // awaited in order below; avoid an unhandled rejection meanwhile
      pending.push(part);
    }
  };
  fill();
  while (pending.length > 0) {
    const pieces = await pending.shift()!;
    fill();
    yield* pieces;
  }
}

/** One chunk range, replica by replica, resuming after the bytes already received. */
async function readChunkRange(datanodes: DataNodeClients, location: ChunkLocation, offset: number, length: number): Promise<Buffer[]> {
  const wholeChunk = offset === 0 && length === Number(location.length) && location.crc32c !== 0;
  const errors: string[] = [];
  let refusals = 0;
  let keyProblems = 0;
  if (location.replicas.length === 0) {
    throw new StrataError('Unavailable', `chunk ${location.chunkId}: no replica is on a known data node`);
  }
  for (const replica of location.replicas) {
    const pieces: Buffer[] = [];
    let received = 0;
    try {
      for await (const piece of datanodes.readChunk(replica, location.chunkId, offset, length, location.tier, { grant: location.grant })) {
        pieces.push(piece);
        received += piece.length;
      }
      if (received !== length) throw new StrataError('Corrupt', `short read: ${received} of ${length} bytes`);
      // End to end: the writer's checksum of the whole chunk must match what came back.
      if (wholeChunk && crc32cOf(pieces) !== location.crc32c >>> 0) {
        throw new StrataError('Corrupt', 'chunk checksum mismatch after transfer');
      }
      return pieces;
    } catch (err) {
      const error = asStrataError(err);
      if (error.kind === 'PermissionDenied') refusals++;
      if (error.kind === 'KeyUnavailable') keyProblems++;
      errors.push(`${replica.nodeId}: ${error.message}`);
    }
  }
  // Every replica refused the grant, or is encrypted under a key its node lacks: that, not an outage, is what to fix.
  const kind =
    refusals === errors.length ? 'PermissionDenied'
    : keyProblems === errors.length ? 'KeyUnavailable'
    : errors.every((e) => /checksum|corrupt/i.test(e)) ? 'Corrupt'
    : 'Unavailable';
  throw new StrataError(kind, `chunk ${location.chunkId}: no replica could be read (${errors.join('; ')})`);
}

function sameLocation(a: ChunkLocation, b: ChunkLocation): boolean {
  const ids = (l: ChunkLocation) => l.replicas.map((r) => r.nodeId).join(',');
  return ids(a) === ids(b) && Boolean(a.tier) === Boolean(b.tier);
}

function crc32cOf(pieces: Buffer[]): number {
  let crc = 0;
  for (const piece of pieces) crc = crc32c(piece, crc);
  return crc >>> 0;
}
