// One chunk being written. Encoded payloads stay in memory while the whole encoding may still fit
// INLINE_MAX_BYTES; then the chunk commits as a value in the index batch that records it (no file
// at all). Past that size they go to a temp file that commit() fsyncs and renames into chunks/.
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { BLOCK_SIZE_BYTES, type ChunkEncoder } from '../common/chunk-codec.js';
import { StrataError, asStrataError } from '../common/errors.js';
import { INLINE_MAX_BYTES, chunkFilePath, type ChunkRecord } from './chunk-layout.js';
import { settleAll, type DirSync } from './commit-wave.js';

/** Append pieces in order, each awaited before the next; then commit() or abort(). */
export interface ChunkWriter {
  readonly chunkId: string;
  write(piece: Buffer): Promise<void>;
  commit(): Promise<ChunkRecord>;
  /**
   * Instead of write()s and commit(): stores `encoding`, a whole stored encoding (FORMAT.md) of
   * this chunk that the caller already verified (as another node sent it), byte for byte.
   */
  commitEncoding(encoding: Buffer, blocks: number): Promise<ChunkRecord>;
  /**
   * Hands `listener` every payload as it is encoded, in file order, and at commit() the head
   * (before this node's fsync): what an encode-once head forwards to the other replicas.
   */
  tap(listener: EncodingListener): void;
  abort(): Promise<void>;
}

/** Called in order, within the writer's steps; must not throw and must not change the buffers. */
export type EncodingListener = (payloads: Buffer[], head?: Buffer) => void;

/** What a writer needs from its store. */
export interface WriterHost {
  readonly dir: string;
  /** Shard directory fsyncs, shared by commits that renamed into one meanwhile. */
  readonly dirSync: DirSync;
  /** Makes the chunk visible in one synced index batch; an inline chunk's bytes go in that batch. */
  record(chunkId: string, record: ChunkRecord, inlineBytes?: Buffer): Promise<void>;
  /** The chunk id is free for another writer. */
  release(writer: LocalChunkWriter): void;
}

// Held payloads never alias a caller's piece: the only payload that does is a whole raw block,
// and one of those alone is past the inline size, so it goes to the file before write() returns.
if (BLOCK_SIZE_BYTES <= INLINE_MAX_BYTES) throw new Error('chunk-writer: a raw block must not fit inline');

export class LocalChunkWriter implements ChunkWriter {
  private state: 'open' | 'committing' | 'done' | 'aborted' = 'open';
  private handle: FileHandle | null = null;
  /** Payloads not in the file yet; while the file has none, the chunk may still go inline. */
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** Next payload offset in the file; past payloadOffsetBytes once payloads went there. */
  private positionBytes: number;
  private running: Promise<unknown> = Promise.resolve();
  /** Where the file is, once created: in tmp/ until commit() renames it into chunks/. */
  private filePath = '';
  /** Set once the index write of a file chunk starts: from then on a failure keeps the file. */
  private keepFile = false;
  private listener: EncodingListener | null = null;

  constructor(
    private readonly host: WriterHost,
    readonly chunkId: string,
    private readonly encoder: ChunkEncoder,
  ) {
    // Payloads go after the reserved head; the head is written last, at offset 0.
    this.positionBytes = encoder.payloadOffsetBytes;
  }

  /**
   * The temp file, created now unless the chunk surely fits inline (payloads are never larger than
   * the raw bytes), so its creation overlaps the store's existence check.
   */
  async start(): Promise<void> {
    if (this.encoder.payloadOffsetBytes + this.encoder.rawLengthBytes > INLINE_MAX_BYTES) await this.file();
  }

  tap(listener: EncodingListener): void {
    this.listener = listener;
  }

  write(piece: Buffer): Promise<void> {
    return this.step(async () => {
      const payloads = await this.encoder.push(piece);
      if (payloads.length > 0) this.listener?.(payloads);
      this.hold(payloads);
      if (this.spilled() || this.encoder.payloadOffsetBytes + this.heldBytes > INLINE_MAX_BYTES) await this.spill();
    });
  }

  // Each step below waits on the libuv threadpool, and under load every round trip there costs far
  // more than the syscall: so independent steps overlap and a small chunk is one write.
  commit(): Promise<ChunkRecord> {
    return this.step(async () => {
      // An abort() that came after this commit() was queued but before it ran wins.
      if (this.state !== 'open') throw new StrataError('Invalid', `chunk ${this.chunkId}: writer is already ${this.state}`);
      this.state = 'committing';
      // Payloads already in the file make it too big to go inline. Renamed before it is complete: a
      // file without an index entry is invisible, and a torn one left by a crash is replaced by the
      // next write of this id. So the rename overlaps the last block's encoding.
      const moving = this.spilled() ? this.moveIntoPlace() : null;
      const finishing = this.encoder.finish();
      await settleAll(moving ? [moving, finishing] : [finishing]);
      const { payloads, head, fileSizeBytes, blocks } = await finishing;
      this.listener?.(payloads, head);
      this.hold(payloads);
      const record: ChunkRecord = {
        length: this.encoder.rawLengthBytes,
        storedBytes: fileSizeBytes,
        blocks,
        createdMs: Date.now(),
        placement: !moving && fileSizeBytes <= INLINE_MAX_BYTES ? 'inline' : 'file',
      };
      if (record.placement === 'inline') await this.commitInline(head, record);
      else await this.commitFile(head, record, moving);
      this.state = 'done';
      this.host.release(this);
      return record;
    });
  }

  commitEncoding(encoding: Buffer, blocks: number): Promise<ChunkRecord> {
    return this.step(async () => {
      if (this.state !== 'open') throw new StrataError('Invalid', `chunk ${this.chunkId}: writer is already ${this.state}`);
      if (this.spilled() || this.heldBytes > 0) throw new StrataError('Invalid', `chunk ${this.chunkId}: an encoding cannot follow written pieces`);
      this.state = 'committing';
      const record: ChunkRecord = {
        length: this.encoder.rawLengthBytes,
        storedBytes: encoding.length,
        blocks,
        createdMs: Date.now(),
        // The rule commit() applies: an encoding that fits inline goes in the index batch.
        placement: encoding.length <= INLINE_MAX_BYTES ? 'inline' : 'file',
      };
      if (record.placement === 'inline') await this.commitInline(encoding, record);
      else await this.commitFile(encoding, record, null);
      this.state = 'done';
      this.host.release(this);
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

  private async commitInline(head: Buffer, record: ChunkRecord): Promise<void> {
    const bytes = Buffer.concat([head, ...this.held]); // its length is checked against the record
    this.held = [];
    // A temp file opened for a chunk that compressed this small is not needed. Its removal cannot
    // fail the commit (tmp/ is emptied at every open), so it overlaps the index write.
    await settleAll([this.dropFile(), this.host.record(this.chunkId, record, bytes)]);
  }

  private async commitFile(head: Buffer, record: ChunkRecord, moving: Promise<void> | null): Promise<void> {
    const handle = await this.file();
    const payloads = this.held;
    this.held = [];
    if (moving) {
      await this.append(payloads);
      await writeFully(handle, [head], 0);
    } else {
      // Nothing in the file yet: the whole of it in one write, overlapping the rename.
      await settleAll([this.moveIntoPlace(), writeFully(handle, [head, ...payloads], 0)]);
    }
    // The file's fsync overlaps its directory's.
    await settleAll([handle.sync(), this.host.dirSync.sync(path.dirname(this.filePath))]);
    // A failed index write keeps the file: LevelDB may still replay the record at the next open
    // (it says so of a failed sync), and then the durable file must be there for it.
    this.keepFile = true;
    this.handle = null;
    // Closing a file already fsynced cannot lose it: that overlaps the index write.
    await settleAll([handle.close().catch(() => {}), this.host.record(this.chunkId, record)]);
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

  private hold(payloads: Buffer[]): void {
    for (const payload of payloads) {
      this.held.push(payload);
      this.heldBytes += payload.length;
    }
  }

  private spilled(): boolean {
    return this.positionBytes > this.encoder.payloadOffsetBytes;
  }

  private async spill(): Promise<void> {
    await this.file();
    const payloads = this.held;
    this.held = [];
    this.heldBytes = 0;
    await this.append(payloads);
  }

  private async file(): Promise<FileHandle> {
    if (this.handle) return this.handle;
    this.filePath = path.join(this.host.dir, 'tmp', `${this.chunkId}.${randomBytes(6).toString('hex')}`);
    this.handle = await open(this.filePath, 'wx');
    return this.handle;
  }

  private async moveIntoPlace(): Promise<void> {
    const finalPath = chunkFilePath(this.host.dir, this.chunkId);
    await rename(this.filePath, finalPath);
    this.filePath = finalPath;
  }

  private async append(payloads: Buffer[]): Promise<void> {
    if (payloads.length === 0) return;
    this.positionBytes += await writeFully(this.handle!, payloads, this.positionBytes);
  }

  private async dropFile(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    if (!handle) return;
    await handle.close().catch(() => {});
    await unlink(this.filePath).catch(() => {});
  }

  private async discard(): Promise<void> {
    this.held = [];
    const handle = this.handle;
    this.handle = null;
    await handle?.close().catch(() => {});
    // No handle, no file: either none was created or dropFile() already removed it.
    if (handle && !this.keepFile) await unlink(this.filePath).catch(ignoreMissing);
    this.host.release(this);
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

export function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}

export function mapFsError(err: unknown): StrataError {
  if (err instanceof StrataError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new StrataError('NoSpace', 'data disk is full', { cause: err });
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new StrataError('PermissionDenied', (err as Error).message, { cause: err });
  }
  return asStrataError(err);
}
