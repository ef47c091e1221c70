// Chunks on local disk plus a LevelDB index. The index is the source of visibility: a chunk exists
// once its record is in a synced index batch. A large chunk's bytes are a file, fsynced and renamed
// into chunks/ before that batch; a small one's bytes (INLINE_MAX_BYTES) go in the batch itself.
// So a crash never shows a torn chunk. A file in chunks/ without a record saying 'file' may be torn
// (a crash mid-commit); it is never read.
import { mkdir, open, rm, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Level } from 'level';
import { ChunkEncoder, ChunkReader, type ChunkSource } from '../common/chunk-codec.js';
import { StrataError, asStrataError } from '../common/errors.js';
import {
  RECORD_PREFIX,
  RECORD_PREFIX_END,
  WAVE_INLINE_MAX_BYTES,
  chunkFilePath,
  chunkRecordKey,
  decodeRecord,
  deleteChanges,
  inlineBytesOf,
  inlineChunkKey,
  putChanges,
  shardName,
  validateChunkId,
  type ChunkRecord,
  type ChunkStat,
  type IndexChange,
  type StoredChunkRecord,
} from './chunk-layout.js';
import { LocalChunkWriter, ignoreMissing, mapFsError, type ChunkWriter, type WriterHost } from './chunk-writer.js';
import { CommitWave, DirSync, fsyncDir, settleAll } from './commit-wave.js';

export { INLINE_MAX_BYTES, chunkFilePath, inlineChunkKey, validateChunkId } from './chunk-layout.js';
export type { ChunkPlacement, ChunkRecord, ChunkStat } from './chunk-layout.js';
export type { ChunkWriter } from './chunk-writer.js';

export interface ChunkUsage {
  usedBytes: number;
  chunks: number;
}

export interface ChunkStore {
  readonly dir: string;
  createWriter(chunkId: string, lengthBytes: number): Promise<ChunkWriter>;
  /** Verified raw bytes of [offset, offset+length) clamped to the chunk, one block at a time. */
  read(chunkId: string, offsetBytes: number, lengthBytes: number): AsyncIterable<Buffer>;
  stat(chunkId: string): Promise<ChunkRecord>;
  has(chunkId: string): Promise<boolean>;
  /** Idempotent: deleting a missing chunk succeeds. */
  delete(chunkId: string): Promise<void>;
  list(): AsyncIterable<string>;
  usage(): ChunkUsage;
  close(): Promise<void>;
}

/**
 * The index holds inline chunks' bytes, up to WAVE_INLINE_MAX_BYTES per batch, so it is tuned for
 * data, not just records. With LevelDB's defaults (4 MiB memtable, 2 MiB tables), 12,000 chunks of
 * 60 KB from 16 writers stalled on level-0 compactions: p99 commit latency 380-550 ms, and fewer
 * chunks/s than as files; with these, p99 ~60 ms. The cost: up to two memtables (64 MiB) in memory
 * and up to 32 MiB of log replayed at open.
 */
const INDEX_TUNING = { writeBufferSize: 32 * 1024 * 1024, maxFileSize: 16 * 1024 * 1024 } as const;

export class LocalChunkStore implements ChunkStore, WriterHost {
  private readonly writers = new Map<string, LocalChunkWriter>();
  private readonly deletions = new Map<string, Promise<void>>();
  private totals: ChunkUsage = { usedBytes: 0, chunks: 0 };
  private closed = false;
  readonly dirSync = new DirSync();
  /**
   * Index changes: each wave is one LevelDB batch with one sync, however many commits it holds.
   * A member is every change of one chunk, so a record and its inline bytes never land apart.
   */
  private readonly indexWave = new CommitWave<IndexChange[]>(
    (members) => this.index.batch<string, StoredChunkRecord | Buffer>(members.flat(), { sync: true }),
    1024,
    { weigh: inlineBytesOf, maxWeight: WAVE_INLINE_MAX_BYTES },
  );
  /** Named in Corrupt messages about inline chunks: their bytes are in the index. */
  private readonly indexDir: string;

  private constructor(
    readonly dir: string,
    private readonly index: Level<string, StoredChunkRecord>,
  ) {
    this.indexDir = path.join(dir, 'index');
  }

  static async open(dir: string): Promise<LocalChunkStore> {
    const root = path.resolve(dir);
    await mkdir(path.join(root, 'chunks'), { recursive: true });
    // The index lock comes first: cleaning tmp/ must never race another process on the same dir.
    const index = new Level<string, StoredChunkRecord>(path.join(root, 'index'), { valueEncoding: 'json', ...INDEX_TUNING });
    try {
      await index.open();
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') throw new StrataError('Unavailable', `${root} is in use by another process`, { cause: err });
      throw asStrataError(err);
    }
    const store = new LocalChunkStore(root, index);
    try {
      await rm(path.join(root, 'tmp'), { recursive: true, force: true });
      await mkdir(path.join(root, 'tmp'));
      for (let shard = 0; shard < 256; shard++) await mkdir(path.join(root, 'chunks', shardName(shard)), { recursive: true });
      await fsyncDir(path.join(root, 'chunks'));
      await fsyncDir(root);
      // One scan of the records (not the inline bytes, under their own prefix) at start keeps
      // usage() free afterwards (about a second per million chunks). A record that fails to decode
      // still counts: it fails the reads of its own chunk, not the start of the node.
      for await (const stored of index.values({ gte: RECORD_PREFIX, lt: RECORD_PREFIX_END })) store.account(stored, 1);
    } catch (err) {
      await index.close();
      throw mapFsError(err);
    }
    return store;
  }

  async createWriter(chunkId: string, lengthBytes: number): Promise<ChunkWriter> {
    this.checkOpen();
    validateChunkId(chunkId);
    const encoder = new ChunkEncoder(chunkId, lengthBytes); // validates the length
    if (this.writers.has(chunkId)) throw new StrataError('Conflict', `chunk ${chunkId}: a write is already in progress`);
    const writer = new LocalChunkWriter(this, chunkId, encoder);
    this.writers.set(chunkId, writer); // claimed before any await, so concurrent creates see it
    try {
      // A running delete of this id unlinks the file after its index entry is gone: wait for it,
      // or it could unlink the file this writer is about to rename into place.
      await this.deletions.get(chunkId)?.catch(() => {});
      // A synchronous lookup: reading one small key costs microseconds, while a threadpool round
      // trip costs milliseconds on a busy machine, and every replica of every chunk pays it.
      if (this.index.getSync(chunkRecordKey(chunkId)) !== undefined) {
        throw new StrataError('Exists', `chunk ${chunkId}: already exists (chunks are immutable)`);
      }
      await writer.start();
      return writer;
    } catch (err) {
      await writer.abort().catch(() => {});
      throw mapFsError(err);
    }
  }

  async *read(chunkId: string, offsetBytes: number, lengthBytes: number): AsyncGenerator<Buffer> {
    this.checkOpen();
    validateChunkId(chunkId);
    // Record and inline bytes from one snapshot: a delete between the two reads is not corruption.
    const snapshot = this.index.snapshot();
    let record: ChunkRecord | undefined;
    let inline: Buffer | undefined;
    try {
      const stored = await this.index.get(chunkRecordKey(chunkId), { snapshot });
      record = stored && decodeRecord(chunkId, stored, this.indexDir);
      if (record?.placement === 'inline') {
        inline = await this.index.get<string, Buffer>(inlineChunkKey(chunkId), { snapshot, valueEncoding: 'buffer' });
      }
    } finally {
      await snapshot.close();
    }
    if (!record) throw notFound(chunkId);
    if (record.placement === 'inline') {
      yield* (await ChunkReader.open(chunkId, this.inlineSource(chunkId, record, inline))).read(offsetBytes, lengthBytes);
      return;
    }
    let handle: FileHandle;
    try {
      handle = await open(chunkFilePath(this.dir, chunkId), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw mapFsError(err);
      // Deleted since the lookup (the index entry goes first), or lost.
      if (!(await this.has(chunkId))) throw notFound(chunkId);
      throw new StrataError('Corrupt', `chunk ${chunkId}: file missing on ${this.dir}`);
    }
    try {
      const { size } = await handle.stat();
      const source = { readAt: (at: number, n: number) => readFully(handle, at, n), sizeBytes: size, location: this.dir };
      const reader = await ChunkReader.open(chunkId, source);
      yield* reader.read(offsetBytes, lengthBytes);
    } finally {
      await handle.close();
    }
  }

  async stat(chunkId: string): Promise<ChunkRecord> {
    const record = await this.lookup(chunkId);
    if (!record) throw notFound(chunkId);
    return record;
  }

  async has(chunkId: string): Promise<boolean> {
    this.checkOpen();
    return (await this.index.get(chunkRecordKey(validateChunkId(chunkId)))) !== undefined;
  }

  async delete(chunkId: string): Promise<void> {
    this.checkOpen();
    validateChunkId(chunkId);
    // Concurrent deletes of one chunk share the work, so usage is subtracted once.
    const running = this.deletions.get(chunkId);
    if (running) return running;
    const deletion = (async () => {
      const record = await this.lookup(chunkId);
      if (!record) return;
      // Index first: once the record is gone the chunk is invisible; a crash before the unlink
      // leaves an orphan file, never a record without its bytes. Inline bytes go in that batch.
      await this.indexWave.submit(deleteChanges(chunkId, record));
      this.account(record, -1);
      if (record.placement === 'file') await unlink(chunkFilePath(this.dir, chunkId)).catch(ignoreMissing);
    })()
      .catch((err) => Promise.reject(mapFsError(err)))
      .finally(() => this.deletions.delete(chunkId));
    this.deletions.set(chunkId, deletion);
    return deletion;
  }

  async *list(): AsyncGenerator<string> {
    this.checkOpen();
    for await (const key of this.index.keys({ gte: RECORD_PREFIX, lt: RECORD_PREFIX_END })) yield key.slice(RECORD_PREFIX.length);
  }

  usage(): ChunkUsage {
    return { ...this.totals };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Commits past their first step and running deletes finish (their waves with them) first.
    await Promise.allSettled([...this.writers.values()].map((writer) => writer.abort()));
    await Promise.allSettled([...this.deletions.values()]);
    await Promise.all([this.indexWave.idle(), this.dirSync.close()]);
    await this.index.close();
  }

  /** Writer-internal: the chunk's bytes are durable in chunks/, or are `inlineBytes`; make it visible. */
  async record(chunkId: string, record: ChunkRecord, inlineBytes?: Buffer): Promise<void> {
    // A synced batch: an acknowledged chunk must not vanish from the index in a crash.
    await this.indexWave.submit(putChanges(chunkId, record, inlineBytes));
    this.account(record, 1);
  }

  /** Writer-internal: the chunk id is free for another writer. */
  release(writer: LocalChunkWriter): void {
    if (this.writers.get(writer.chunkId) === writer) this.writers.delete(writer.chunkId);
  }

  private async lookup(chunkId: string): Promise<ChunkRecord | undefined> {
    this.checkOpen();
    const stored = await this.index.get(chunkRecordKey(validateChunkId(chunkId)));
    return stored && decodeRecord(chunkId, stored, this.indexDir);
  }

  /** An inline chunk's bytes as a ChunkReader source; missing or mis-sized bytes are Corrupt. */
  private inlineSource(chunkId: string, record: ChunkRecord, bytes: Buffer | undefined): ChunkSource {
    if (!bytes) throw new StrataError('Corrupt', `chunk ${chunkId}: inline bytes missing on ${this.indexDir}`);
    if (bytes.length !== record.storedBytes) {
      throw new StrataError('Corrupt', `chunk ${chunkId}: inline value has ${bytes.length} bytes, its record says ${record.storedBytes}, on ${this.indexDir}`);
    }
    const readAt = async (at: number, n: number) => bytes.subarray(at, at + n);
    return { readAt, sizeBytes: bytes.length, location: this.indexDir };
  }

  private account(record: ChunkStat, sign: 1 | -1): void {
    this.totals = { usedBytes: this.totals.usedBytes + sign * record.storedBytes, chunks: this.totals.chunks + sign };
  }

  private checkOpen(): void {
    if (this.closed) throw new StrataError('Unavailable', `chunk store ${this.dir} is closed`);
  }
}

function notFound(chunkId: string): StrataError {
  return new StrataError('NotFound', `chunk ${chunkId}: not found on this node`);
}

async function readFully(handle: FileHandle, positionBytes: number, lengthBytes: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(lengthBytes);
  let filled = 0;
  while (filled < lengthBytes) {
    const { bytesRead } = await handle.read(buffer, filled, lengthBytes - filled, positionBytes + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled === lengthBytes ? buffer : buffer.subarray(0, filled);
}
