// Where a chunk's bytes live on a data node, and the LevelDB index's key layout (FORMAT.md,
// "Where the bytes live"). A chunk's encoding is a file under chunks/ or, when it is small, a value
// in the index itself, written in the same synced batch as its record; the record says which, so a
// reader never looks in both places.
import path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { StrataError, invalid } from '../common/errors.js';

/**
 * Chunks whose encoding (head + payloads, the bytes a file would hold) is at most this many bytes
 * are stored inline in the index: one synced batch instead of a temp file, its fsync, a rename and a
 * directory fsync. Small enough that a wave of them stays a modest LevelDB write.
 */
export const INLINE_MAX_BYTES = 64 * 1024;

/** Inline bytes in one index batch at most (beyond one chunk): bounds a wave's LevelDB write. */
export const WAVE_INLINE_MAX_BYTES = 4 * 1024 * 1024;

export type ChunkPlacement = 'file' | 'inline';

export interface ChunkStat {
  length: number; // raw bytes
  storedBytes: number; // encoded bytes: the file's size, or the inline value's
  blocks: number;
}

export interface ChunkRecord extends ChunkStat {
  createdMs: number;
  placement: ChunkPlacement;
}

/** A record as stored: written before inline chunks existed, it has no placement (a file). */
export type StoredChunkRecord = Omit<ChunkRecord, 'placement'> & { placement?: ChunkPlacement };

const CHUNK_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
export const RECORD_PREFIX = 'c/';
// '/' + 1: the upper bound of every key under RECORD_PREFIX.
export const RECORD_PREFIX_END = 'c0';
const INLINE_PREFIX = 'i/';
export const QUARANTINE_PREFIX = 'q/';
export const QUARANTINE_PREFIX_END = 'q0';

/**
 * A chunk found corrupt and no longer served: its record as it was, why, and when. Kept under
 * `quarantineKey(id)` until DeleteChunk, so the node reports it in every heartbeat, across restarts.
 */
export interface QuarantineRecord extends StoredChunkRecord {
  reason: string;
  quarantinedMs: number;
}

/** One operation of an index batch: a record (JSON) or an inline chunk's bytes (raw). */
export type IndexChange =
  | { type: 'put'; key: string; value: StoredChunkRecord }
  | { type: 'put'; key: string; value: Buffer; valueEncoding: 'buffer' }
  | { type: 'del'; key: string };

export function validateChunkId(chunkId: unknown): string {
  if (typeof chunkId !== 'string' || !CHUNK_ID_PATTERN.test(chunkId)) {
    throw invalid(`invalid chunk id '${String(chunkId).slice(0, 140)}': use 1..128 of A-Z a-z 0-9 _ -`);
  }
  return chunkId;
}

/**
 * `<dataDir>/chunks/<2 hex of crc32c(id)>/<id>`: a hash spreads any id scheme evenly over 256 dirs.
 * Only chunks whose record says placement 'file' live there; inline chunks live in the index under
 * `inlineChunkKey(id)`, and a file at this path for such a chunk is an orphan, never read.
 */
export function chunkFilePath(dataDir: string, chunkId: string): string {
  return path.join(path.resolve(dataDir), 'chunks', shardName(crc32c(validateChunkId(chunkId)) & 0xff), chunkId);
}

export function chunkRecordKey(chunkId: string): string {
  return RECORD_PREFIX + chunkId;
}

/** The index key holding an inline chunk's encoded bytes (tests and tools locate them with it). */
export function inlineChunkKey(chunkId: string): string {
  return INLINE_PREFIX + chunkId;
}

/** The index key marking a chunk as quarantined (its value a QuarantineRecord). */
export function quarantineKey(chunkId: string): string {
  return QUARANTINE_PREFIX + chunkId;
}

/** Where a quarantined chunk's bytes are kept for inspection: never read, removed by DeleteChunk. */
export function quarantineFilePath(dataDir: string, chunkId: string): string {
  return path.join(path.resolve(dataDir), 'quarantine', validateChunkId(chunkId));
}

/**
 * Stops serving a chunk: its record and any inline bytes go, the quarantine record comes, in one
 * batch. Both deletes are unconditional: a record too damaged to say its placement is quarantined too.
 */
export function quarantineChanges(chunkId: string, record: QuarantineRecord): IndexChange[] {
  return [
    { type: 'del', key: chunkRecordKey(chunkId) },
    { type: 'del', key: inlineChunkKey(chunkId) },
    { type: 'put', key: quarantineKey(chunkId), value: record },
  ];
}

/** A visible chunk: its record and, when inline, its bytes, in one batch. */
export function putChanges(chunkId: string, record: ChunkRecord, inlineBytes?: Buffer): IndexChange[] {
  if ((record.placement === 'inline') !== (inlineBytes !== undefined) || (inlineBytes && inlineBytes.length !== record.storedBytes)) {
    throw new Error(`chunk ${chunkId}: inline bytes and record disagree`); // a programmer error
  }
  const put: IndexChange = { type: 'put', key: chunkRecordKey(chunkId), value: record };
  return inlineBytes ? [put, { type: 'put', key: inlineChunkKey(chunkId), value: inlineBytes, valueEncoding: 'buffer' }] : [put];
}

/** Removes a chunk from the index: its record and, when inline, its bytes, in one batch. */
export function deleteChanges(chunkId: string, record: ChunkRecord): IndexChange[] {
  const del: IndexChange = { type: 'del', key: chunkRecordKey(chunkId) };
  return record.placement === 'inline' ? [del, { type: 'del', key: inlineChunkKey(chunkId) }] : [del];
}

/** Inline bytes a batch carries: what a wave's size cap counts. */
export function inlineBytesOf(changes: IndexChange[]): number {
  return changes.reduce((sum, change) => sum + (change.type === 'put' && Buffer.isBuffer(change.value) ? change.value.length : 0), 0);
}

export function decodeRecord(chunkId: string, stored: StoredChunkRecord, location: string): ChunkRecord {
  const placement = stored.placement ?? 'file';
  if (placement !== 'file' && placement !== 'inline') {
    throw new StrataError('Corrupt', `chunk ${chunkId}: index record has unknown placement '${String(placement)}' on ${location}`);
  }
  return { ...stored, placement };
}

/** The directory name of shard 0..255 under chunks/: two lowercase hex digits. */
export function shardName(shard: number): string {
  return shard.toString(16).padStart(2, '0');
}
