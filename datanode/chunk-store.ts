// Chunk files on local disk plus a LevelDB index. The index is the source of visibility: a chunk
// exists once its fsynced, renamed file has been recorded there, so a crash never shows a torn chunk.
// A file in chunks/ without an index entry may be torn (a crash mid-commit); it is never read.
import { mkdir, open, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Level } from 'level';
import { crc32c } from '@node-rs/crc32';
import { ChunkEncoder, ChunkReader } from '../common/chunk-codec.js';
import { StrataError, asStrataError, invalid } from '../common/errors.js';
import { CommitWave, DirSync, fsyncDir, settleAll } from './commit-wave.js';

export interface ChunkStat {
  length: number; // raw bytes
  storedBytes: number; // bytes of the file on disk
  blocks: number;
}

export interface ChunkRecord extends ChunkStat {
  createdMs: number;
}

export interface ChunkUsage {
  usedBytes: number;
  chunks: number;
}

/** Append pieces in order, each awaited before the next; then commit() or abort(). */
export interface ChunkWriter {
  readonly chunkId: string;
  write(piece: Buffer): Promise<void>;
  commit(): Promise<ChunkRecord>;
  abort(): Promise<void>;
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

const CHUNK_ID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;
const INDEX_PREFIX = 'c/';
// '/' + 1: the upper bound of every key under INDEX_PREFIX.
const INDEX_PREFIX_END = 'c0';

type IndexChange = { type: 'put'; key: string; value: ChunkRecord } | { type: 'del'; key: string };

export function validateChunkId(chunkId: unknown): string {
  if (typeof chunkId !== 'string' || !CHUNK_ID_PATTERN.test(chunkId)) {
    throw invalid(`invalid chunk id '${String(chunkId).slice(0, 140)}': use 1..128 of A-Z a-z 0-9 _ -`);
  }
  return chunkId;
}

/** `<dataDir>/chunks/<2 hex of crc32c(id)>/<id>`: a hash spreads any id scheme evenly over 256 dirs. */
export function chunkFilePath(dataDir: string, chunkId: string): string {
  return path.join(path.resolve(dataDir), 'chunks', hex2(crc32c(validateChunkId(chunkId)) & 0xff), chunkId);
}

export class LocalChunkStore implements ChunkStore {
  private readonly writers = new Map<string, LocalChunkWriter>();
  private readonly deletions = new Map<string, Promise<void>>();
  private totals: ChunkUsage = { usedBytes: 0, chunks: 0 };
  private closed = false;
  /** Writer-internal: shard directory fsyncs, shared by commits that renamed into one meanwhile. */
  readonly dirSync = new DirSync();
  /** Index changes: each wave is one LevelDB batch with one sync, however many commits it holds. */
  private readonly indexWave = new CommitWave<IndexChange>((changes) => this.index.batch(changes, { sync: true }));

  private constructor(
    readonly dir: string,
    private readonly index: Level<string, ChunkRecord>,
  ) {}

  static async open(dir: string): Promise<LocalChunkStore> {
    const root = path.resolve(dir);
    await mkdir(path.join(root, 'chunks'), { recursive: true });
    // The index lock comes first: cleaning tmp/ must never race another process on the same dir.
    const index = new Level<string, ChunkRecord>(path.join(root, 'index'), { valueEncoding: 'json' });
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
      for (let shard = 0; shard < 256; shard++) await mkdir(path.join(root, 'chunks', hex2(shard)), { recursive: true });
      await fsyncDir(path.join(root, 'chunks'));
      await fsyncDir(root);
      // One scan at start keeps usage() free afterwards (about a second per million chunks).
      for await (const record of index.values({ gte: INDEX_PREFIX, lt: INDEX_PREFIX_END })) store.account(record, 1);
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
    const tmpPath = path.join(this.dir, 'tmp', `${chunkId}.${randomBytes(6).toString('hex')}`);
    const writer = new LocalChunkWriter(this, chunkId, encoder, tmpPath);
    this.writers.set(chunkId, writer); // claimed before any await, so concurrent creates see it
    try {
      // A running delete of this id unlinks the file after its index entry is gone: wait for it,
      // or it could unlink the file this writer is about to rename into place.
      await this.deletions.get(chunkId)?.catch(() => {});
      // The lookup and the temp file's creation overlap: one round trip less per small chunk.
      const exists = this.has(chunkId);
      await settleAll([exists, writer.start()]);
      if (await exists) throw new StrataError('Exists', `chunk ${chunkId}: already exists (chunks are immutable)`);
      return writer;
    } catch (err) {
      await writer.abort().catch(() => {});
      throw mapFsError(err);
    }
  }

  async *read(chunkId: string, offsetBytes: number, lengthBytes: number): AsyncGenerator<Buffer> {
    await this.stat(chunkId);
    let handle: FileHandle;
    try {
      handle = await open(chunkFilePath(this.dir, chunkId), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new StrataError('Corrupt', `chunk ${chunkId}: file missing on ${this.dir}`);
      }
      throw mapFsError(err);
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
    this.checkOpen();
    const record = await this.index.get(INDEX_PREFIX + validateChunkId(chunkId));
    if (!record) throw new StrataError('NotFound', `chunk ${chunkId}: not found on this node`);
    return record;
  }

  async has(chunkId: string): Promise<boolean> {
    this.checkOpen();
    return (await this.index.get(INDEX_PREFIX + validateChunkId(chunkId))) !== undefined;
  }

  async delete(chunkId: string): Promise<void> {
    this.checkOpen();
    validateChunkId(chunkId);
    // Concurrent deletes of one chunk share the work, so usage is subtracted once.
    const running = this.deletions.get(chunkId);
    if (running) return running;
    const deletion = (async () => {
      const record = await this.index.get(INDEX_PREFIX + chunkId);
      if (!record) return;
      // Index first: once the entry is gone the chunk is invisible; a crash before the unlink
      // leaves an orphan file, never an index entry without its file.
      await this.indexWave.submit({ type: 'del', key: INDEX_PREFIX + chunkId });
      this.account(record, -1);
      await unlink(chunkFilePath(this.dir, chunkId)).catch(ignoreMissing);
    })()
      .catch((err) => Promise.reject(mapFsError(err)))
      .finally(() => this.deletions.delete(chunkId));
    this.deletions.set(chunkId, deletion);
    return deletion;
  }

  async *list(): AsyncGenerator<string> {
    this.checkOpen();
    for await (const key of this.index.keys({ gte: INDEX_PREFIX, lt: INDEX_PREFIX_END })) yield key.slice(INDEX_PREFIX.length);
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

  /** Writer-internal: the file is durable in chunks/; make it visible. */
  async record(chunkId: string, record: ChunkRecord): Promise<void> {
    // A synced batch: an acknowledged chunk must not vanish from the index in a crash.
    await this.indexWave.submit({ type: 'put', key: INDEX_PREFIX + chunkId, value: record });
    this.account(record, 1);
  }

  /** Writer-internal: the chunk id is free for another writer. */
  release(writer: LocalChunkWriter): void {
    if (this.writers.get(writer.chunkId) === writer) this.writers.delete(writer.chunkId);
  }

  private account(record: ChunkStat, sign: 1 | -1): void {
    this.totals = { usedBytes: this.totals.usedBytes + sign * record.storedBytes, chunks: this.totals.chunks + sign };
  }

  private checkOpen(): void {
    if (this.closed) throw new StrataError('Unavailable', `chunk store ${this.dir} is closed`);
  }
}

class LocalChunkWriter implements ChunkWriter {
  private state: 'open' | 'committing' | 'done' | 'aborted' = 'open';
  private handle: FileHandle | null = null;
  private positionBytes: number;
  private running: Promise<unknown> = Promise.resolve();
  /** Where the file is: in tmp/ until commit() renames it into chunks/. */
  private filePath: string;
  /** Set once the index write starts: from then on a failure keeps the file (see commit). */
  private keepFile = false;

  constructor(
    private readonly store: LocalChunkStore,
    readonly chunkId: string,
    private readonly encoder: ChunkEncoder,
    tmpPath: string,
  ) {
    // Payloads go after the reserved head; the head is written last, at offset 0.
    this.positionBytes = encoder.payloadOffsetBytes;
    this.filePath = tmpPath;
  }

  async start(): Promise<void> {
    this.handle = await open(this.filePath, 'wx');
  }

  write(piece: Buffer): Promise<void> {
    return this.step(async () => {
      await this.append(await this.encoder.push(piece));
    });
  }

  // Each step below waits on the libuv threadpool, and under load every round trip there costs far
  // more than the syscall: so independent steps overlap and a small chunk is one write.
  commit(): Promise<ChunkRecord> {
    return this.step(async () => {
      // An abort() that came after this commit() was queued but before it ran wins.
      if (this.state !== 'open') throw new StrataError('Invalid', `chunk ${this.chunkId}: writer is already ${this.state}`);
      this.state = 'committing';
      const handle = this.handle!;
      // Renamed before it is complete: a file without an index entry is invisible, and a torn one
      // left by a crash is replaced by the next write of this id. So the rename overlaps the last
      // block's encoding, and the file's fsync overlaps its directory's.
      const finalPath = chunkFilePath(this.store.dir, this.chunkId);
      const moving = rename(this.filePath, finalPath).then(() => void (this.filePath = finalPath));
      const finishing = this.encoder.finish();
      await settleAll([moving, finishing]);
      const { payloads, head, fileSizeBytes, blocks } = await finishing;
      if (this.positionBytes === this.encoder.payloadOffsetBytes) {
        await writeFully(handle, [head, ...payloads], 0); // a small chunk: the whole file at once
      } else {
        await this.append(payloads);
        await writeFully(handle, [head], 0);
      }
      await settleAll([handle.sync(), this.store.dirSync.sync(path.dirname(finalPath))]);
      const record: ChunkRecord = { length: this.encoder.rawLengthBytes, storedBytes: fileSizeBytes, blocks, createdMs: Date.now() };
      // A failed index write keeps the file: LevelDB may still replay the record at the next open
      // (it says so of a failed sync), and then the durable file must be there for it.
      this.keepFile = true;
      this.handle = null;
      // Closing a file already fsynced cannot lose it: that overlaps the index write.
      await settleAll([handle.close().catch(() => {}), this.store.record(this.chunkId, record)]);
      this.state = 'done';
      this.store.release(this);
      return record;
    });
  }

  async abort(): Promise<void> {
    if (this.state === 'done' || this.state === 'aborted') return;
    // A commit past its first step may already be durable; it finishes or discards on its own.
    if (this.state === 'committing') return void (await this.running);
    this.state = 'aborted';
    await this.running.catch(() => {});
    await this.discard();
  }

  // One operation at a time; any failure discards the temp file, so nothing partial is kept.
  private step<T>(operation: () => Promise<T>): Promise<T> {
    if (this.state !== 'open') {
      return Promise.reject(new StrataError('Invalid', `chunk ${this.chunkId}: writer is already ${this.state}`));
    }
    const result = this.running.then(operation).catch(async (err) => {
      this.state = 'aborted';
      await this.discard();
      throw mapFsError(err);
    });
    this.running = result.catch(() => {});
    return result;
  }

  private async append(payloads: Buffer[]): Promise<void> {
    if (payloads.length === 0) return;
    this.positionBytes += await writeFully(this.handle!, payloads, this.positionBytes);
  }

  private async discard(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    await handle?.close().catch(() => {});
    if (!this.keepFile) await unlink(this.filePath).catch(ignoreMissing);
    this.store.release(this);
  }
}

async function writeFully(handle: FileHandle, buffers: Buffer[], positionBytes: number): Promise<number> {
  const totalBytes = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
  let written = (await handle.writev(buffers, positionBytes)).bytesWritten;
  // A short writev is rare on regular files but legal: finish the rest with plain writes.
  const whole = written < totalBytes ? Buffer.concat(buffers) : null;
  while (whole && written < totalBytes) {
    const { bytesWritten } = await handle.write(whole, written, totalBytes - written, positionBytes + written);
    if (bytesWritten === 0) throw new StrataError('NoSpace', 'short write');
    written += bytesWritten;
  }
  return totalBytes;
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

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}

function hex2(value: number): string {
  return value.toString(16).padStart(2, '0');
}

function mapFsError(err: unknown): StrataError {
  if (err instanceof StrataError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new StrataError('NoSpace', 'data disk is full', { cause: err });
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new StrataError('PermissionDenied', (err as Error).message, { cause: err });
  }
  return asStrataError(err);
}
