// The state of one file open in this mount, shared by all its handles: bytes written but not
// yet stored, kept per chunk. A chunk is uploaded whole (through the replication pipeline,
// then CommitChunk) when it fills up, when too many chunks are partly written, and on
// flush/fsync/close — so a sequential writer costs one round trip per chunk, not per write.
// Reads see this mount's unstored bytes first, then the stored ones.
import type { ChunkGrant, FileStat } from '../client/index.js';
import { DirtyChunk } from './dirty-chunk.js';
import type { ReadCache, StoredBytes } from './read-cache.js';

/** The SDK calls an open file makes (Strata provides them). */
export interface FileBackend {
  readAt(file: Pick<FileStat, 'ino' | 'size' | 'chunkSize'>, start: number, end: number): AsyncIterable<Buffer>;
  writeChunkAt(file: Pick<FileStat, 'ino'>, index: number, data: Buffer, options?: { grant?: ChunkGrant }): Promise<FileStat>;
  /** `ino` names the same file as `path` (an inode-based backend uses it instead). */
  setattr(path: string, changes: { size: number }, ino: number): Promise<FileStat>;
}

export interface WriteLimits {
  /** Partly written chunks kept before the oldest is completed and uploaded. */
  maxDirtyChunks: number;
  /** Chunk uploads in flight; a writer waits for one to finish beyond this. */
  writeConcurrency: number;
}

interface Upload {
  chunk: DirtyChunk;
  /** Settles (never rejects) once the upload succeeded or failed. */
  done: Promise<void>;
}

export class OpenFile implements StoredBytes {
  readonly ino: number;
  readonly chunkSize: number;
  storedSize: number;
  version = 0;
  /** Handles open on this file in this mount. */
  handles = 0;
  /** When this mount last wrote to the file (shown as mtime until the commit's own shows). */
  modifiedMs: number | undefined;
  private readonly dirty = new Map<number, DirtyChunk>();
  private readonly uploads = new Map<number, Upload>();
  /** The first upload failure not yet reported to a writer, flush or fsync. */
  private failure: unknown;
  private lastWriteEnd = -1;
  private queue: Promise<unknown> = Promise.resolve();
  /** Chunk 0's placement from the create that made this file: its first upload skips AllocateChunk. */
  private firstChunkGrant: ChunkGrant | undefined;

  constructor(
    private readonly backend: FileBackend,
    stat: FileStat,
    private readonly limits: WriteLimits,
    grant?: ChunkGrant,
  ) {
    this.firstChunkGrant = grant;
    this.ino = stat.ino;
    this.chunkSize = stat.chunkSize;
    this.storedSize = stat.size;
  }

  /** The size this mount sees: stored bytes, grown by unstored writes. */
  get size(): number {
    let size = this.storedSize;
    for (const chunk of this.inMemory()) if (chunk.end > 0) size = Math.max(size, chunk.index * this.chunkSize + chunk.end);
    return size;
  }

  get hasUnstoredData(): boolean {
    return this.dirty.size > 0 || this.uploads.size > 0;
  }

  /**
   * Another open of a file already open here: cached stored bytes are dropped (close-to-open),
   * but the size only grows — the stat may predate a commit of this mount's that just landed.
   */
  refresh(stat: FileStat): void {
    this.storedSize = Math.max(this.storedSize, stat.size);
    this.version++;
  }

  /** Reads up to `length` bytes at `position` into a new buffer (shorter at end of file). */
  async read(cache: ReadCache, position: number, length: number): Promise<Buffer> {
    const end = Math.min(position + length, this.size);
    if (position >= end) return Buffer.alloc(0);
    // The common case, stored bytes within one chunk: the cached bytes themselves, no copy.
    const sameChunk = Math.floor(position / this.chunkSize) === Math.floor((end - 1) / this.chunkSize);
    if (sameChunk && end <= this.storedSize && !this.inMemoryAt(Math.floor(position / this.chunkSize))) return cache.read(this, position, end);
    const out = Buffer.allocUnsafe(end - position);
    for (let offset = position; offset < end; ) {
      const index = Math.floor(offset / this.chunkSize);
      const chunkStart = index * this.chunkSize;
      const pieceEnd = Math.min(end, chunkStart + this.chunkSize);
      const at = offset - position;
      // Taken before any wait: bytes written before this read began must show in it.
      const memory = this.inMemoryAt(index);
      memory?.pin();
      try {
        if (!memory?.covers(offset - chunkStart, pieceEnd - chunkStart)) {
          const storedEnd = Math.min(pieceEnd, this.storedSize);
          if (offset < storedEnd) (await cache.read(this, offset, storedEnd)).copy(out, at);
          out.fill(0, at + Math.max(0, storedEnd - offset), at + pieceEnd - offset);
        }
        memory?.overlay(out, at, offset - chunkStart, pieceEnd - chunkStart);
      } finally {
        memory?.unpin();
      }
      offset = pieceEnd;
    }
    return out;
  }

  /**
   * Buffers `data` at `position`; uploads the chunks it completes. Returns bytes written.
   * `data` may be borrowed (the kernel's request buffer, no copy of it made first): it is read
   * only while `loan` is not aborted, and a write whose loan ended before its bytes were
   * copied stops there (its caller was already answered).
   */
  write(position: number, data: Buffer, loan?: AbortSignal): Promise<number> {
    return this.exclusive(async () => {
      this.throwFailure();
      for (let offset = 0; offset < data.length; ) {
        const at = position + offset;
        const index = Math.floor(at / this.chunkSize);
        const within = at % this.chunkSize;
        const count = Math.min(this.chunkSize - within, data.length - offset);
        // Stored chunks are immutable: a chunk being uploaded is rewritten only after it lands.
        await this.uploads.get(index)?.done;
        if (loan?.aborted) throw new Error('write abandoned: answered before its bytes were buffered');
        let chunk = this.dirty.get(index);
        if (!chunk) this.dirty.set(index, (chunk = new DirtyChunk(index, this.chunkSize)));
        const streaming = within === 0 && at > 0 && at === this.lastWriteEnd;
        chunk.write(within, data.subarray(offset, offset + count), streaming);
        this.lastWriteEnd = at + count;
        offset += count;
        if (chunk.full) await this.startUpload(chunk);
      }
      this.modifiedMs = Date.now();
      // Bound the memory of a random writer: complete the oldest partly written chunks.
      while (this.dirty.size > this.limits.maxDirtyChunks) await this.startUpload(this.dirty.values().next().value!);
      return data.length;
    });
  }

  /** Stores every unstored byte; resolves once committed on the replicas (flush, fsync). */
  flush(): Promise<void> {
    return this.exclusive(async () => {
      for (const chunk of [...this.dirty.values()]) await this.startUpload(chunk);
      await this.drain();
      this.throwFailure();
    });
  }

  /** Sets the size in the cluster and drops unstored bytes past it. */
  truncate(path: string, size: number): Promise<FileStat> {
    return this.exclusive(async () => {
      // A commit landing after the truncate would resurrect bytes past the new end.
      await this.drain();
      const stat = await this.backend.setattr(path, { size }, this.ino);
      for (const chunk of [...this.dirty.values()]) {
        const chunkStart = chunk.index * this.chunkSize;
        if (chunkStart >= size) this.dirty.delete(chunk.index);
        else chunk.truncate(size - chunkStart);
      }
      this.storedSize = stat.size;
      this.version++;
      return stat;
    });
  }

  /** Drops unstored bytes (the last handle closed and they could not be stored). */
  discard(): void {
    this.dirty.clear();
    this.failure = undefined;
  }

  /** Stored bytes [start, end) as they arrive: StoredBytes for the read cache. */
  stream(start: number, end: number): AsyncIterable<Buffer> {
    return this.backend.readAt({ ino: this.ino, size: this.storedSize, chunkSize: this.chunkSize }, start, end);
  }

  /** Stored bytes [start, end) in one buffer (the old bytes under a partly written chunk). */
  private async fetch(start: number, end: number): Promise<Buffer> {
    const pieces: Buffer[] = [];
    for await (const piece of this.stream(start, end)) pieces.push(piece);
    return pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
  }

  /** Completes a dirty chunk (read-modify-write) and starts its upload in the background. */
  private async startUpload(chunk: DirtyChunk): Promise<void> {
    if (chunk.end === 0) {
      this.dirty.delete(chunk.index); // everything written to it was truncated away
      return;
    }
    while (this.uploads.size >= this.limits.writeConcurrency) await Promise.race([...this.uploads.values()].map((u) => u.done));
    const chunkStart = chunk.index * this.chunkSize;
    const storedExtent = Math.min(this.chunkSize, Math.max(0, this.storedSize - chunkStart));
    const length = Math.max(chunk.end, storedExtent);
    // The old bytes are needed only under gaps that lie over stored data.
    const needsBase = chunk.gaps(length).some(([from]) => from < storedExtent);
    const base = needsBase ? await this.fetch(chunkStart, chunkStart + storedExtent) : undefined;
    const bytes = chunk.seal(length, base);
    // From dirty to uploading in one step: a read during the waits above still found it in dirty.
    this.dirty.delete(chunk.index);
    const grant = chunk.index === 0 ? this.firstChunkGrant : undefined;
    if (grant) this.firstChunkGrant = undefined;
    const upload: Upload = { chunk, done: Promise.resolve() };
    const forget = () => {
      if (this.uploads.get(chunk.index) === upload) this.uploads.delete(chunk.index);
    };
    upload.done = this.backend.writeChunkAt({ ino: this.ino }, chunk.index, bytes, { grant }).then(
      (stat) => {
        this.storedSize = Math.max(this.storedSize, stat.size);
        this.version++;
        // Unreachable in the same step as it is recycled: no later read can find it.
        forget();
        chunk.retire();
      },
      (err) => {
        this.failure ??= err;
        // Keep the bytes so a later flush can retry (writers to this chunk wait for `done`).
        chunk.unseal();
        if (!this.dirty.has(chunk.index)) this.dirty.set(chunk.index, chunk);
        forget();
      },
    );
    this.uploads.set(chunk.index, upload);
  }

  private async drain(): Promise<void> {
    while (this.uploads.size > 0) await Promise.all([...this.uploads.values()].map((u) => u.done));
  }

  private throwFailure(): void {
    const failure = this.failure;
    this.failure = undefined;
    if (failure !== undefined) throw failure;
  }

  private inMemoryAt(index: number): DirtyChunk | undefined {
    return this.uploads.get(index)?.chunk ?? this.dirty.get(index);
  }

  private *inMemory(): Iterable<DirtyChunk> {
    yield* this.dirty.values();
    for (const upload of this.uploads.values()) yield upload.chunk;
  }

  /** Writes, flushes and truncates run one at a time: each sees the last one's chunk map. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work);
    this.queue = result.catch(() => undefined);
    return result;
  }
}
