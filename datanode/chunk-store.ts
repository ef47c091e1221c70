// Chunks on local disk plus a LevelDB index. The index is the source of visibility: a chunk exists
// once its record is in a synced index batch. A large chunk's bytes are a file, fsynced and renamed
// into chunks/ before that batch; a small one's bytes (INLINE_MAX_BYTES) go in the batch itself.
// So a crash never shows a torn chunk. A file in chunks/ without a record saying 'file' may be torn
// (a crash mid-commit); it is never read. A chunk found corrupt (by a read or verify) is
// quarantined: no longer served, its id kept in the index until DeleteChunk, its bytes set aside.
import { mkdir, open, readFile, rename, rm, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Level } from 'level';
import { ChunkEncoder, ChunkReader, bufferSource, newChunkSeal, type ChunkSource } from '../common/chunk-codec.js';
import { keyUnavailable, type KeyRing } from '../common/master-key.js';
import { rewrapEncoding, type RewrapOutcome } from '../common/chunk-rewrap.js';
import { randomBytes } from 'node:crypto';
import { crc32c } from '@node-rs/crc32';
import { StrataError, asStrataError } from '../common/errors.js';
import {
  QUARANTINE_PREFIX,
  QUARANTINE_PREFIX_END,
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
  quarantineChanges,
  quarantineFilePath,
  quarantineKey,
  shardName,
  validateChunkId,
  type ChunkRecord,
  type ChunkStat,
  type IndexChange,
  type QuarantineRecord,
  type StoredChunkRecord,
} from './chunk-layout.js';
import { LocalChunkWriter, ignoreMissing, mapFsError, type ChunkWriter, type WriterHost } from './chunk-writer.js';
import { CommitWave, DirSync, fsyncDir } from './commit-wave.js';
import { foldVerifiedBlock } from './crc-combine.js';

export { INLINE_MAX_BYTES, chunkFilePath, inlineChunkKey, quarantineFilePath, validateChunkId } from './chunk-layout.js';
export type { ChunkPlacement, ChunkRecord, ChunkStat } from './chunk-layout.js';
export type { ChunkWriter } from './chunk-writer.js';

export interface ChunkUsage {
  usedBytes: number;
  chunks: number;
}

/** One chunk a node serves, as ListChunks reports it. */
export interface ListedChunk {
  chunkId: string;
  length: number; // raw bytes
  storedBytes: number;
  /** When this copy became durable here (its commit); 0 for a record that lacks the time. */
  storedAtMs: number;
}

/** What a full verification read found: every block's checksums held. */
export interface VerifiedChunk {
  length: number;
  storedBytes: number;
  /** crc32c of the whole chunk's raw bytes (unsigned), as the namespace records it. */
  crc32c: number;
}

/** A chunk's stored encoding (FORMAT.md), every block checked: the bytes a tier upload sends. */
export interface StoredEncoding {
  bytes: Buffer;
  /** Raw length and crc32c of the raw bytes, found while checking. */
  length: number;
  crc32c: number;
}

export interface VerifyOptions {
  /** Awaited after each verified block with its raw bytes: how a background scrub bounds its rate. */
  pace?: (rawBytes: number) => Promise<void>;
}

export interface ChunkStore {
  readonly dir: string;
  /**
   * Encryption at rest: with keys, every chunk written is encrypted under a data key of its own,
   * wrapped by `keys.current`; encrypted chunks read only with their master key (KeyUnavailable
   * otherwise, and never quarantined for it). Plain chunks read either way.
   */
  readonly keys?: KeyRing;
  /**
   * `encoded`: the caller will commitEncoding() an encoding another node made (a copy, or a
   * replica of an encode-once write): no data key is made for it, as none would be used.
   */
  createWriter(chunkId: string, lengthBytes: number, options?: { encoded?: boolean }): Promise<ChunkWriter>;
  /**
   * Verified raw bytes of [offset, offset+length) clamped to the chunk, one block at a time. A
   * checksum failure quarantines the chunk once a full verify() confirms it; reads of a
   * quarantined chunk fail with Corrupt.
   */
  read(chunkId: string, offsetBytes: number, lengthBytes: number): AsyncIterable<Buffer>;
  stat(chunkId: string): Promise<ChunkRecord>;
  has(chunkId: string): Promise<boolean>;
  /** Idempotent: deleting a missing chunk succeeds. Deleting a quarantined chunk clears it. */
  delete(chunkId: string): Promise<void>;
  list(): AsyncIterable<string>;
  /**
   * Up to `limit` served chunks with ids after `afterChunkId`, in id order: a paged listing, not a
   * snapshot. A chunk present throughout a walk appears exactly once; one stored or removed during
   * it may or may not.
   */
  listChunks(afterChunkId: string | undefined, limit: number): Promise<ListedChunk[]>;
  /** Master key rotation: the chunk re-wrapped under `keys.current` (what it found and did). */
  rewrap(chunkId: string): Promise<RewrapOutcome>;
  /** Reads and checks every block. Corrupt (and then quarantined) when any check fails. */
  verify(chunkId: string, options?: VerifyOptions): Promise<VerifiedChunk>;
  /**
   * The chunk's whole stored encoding (file or inline), checked block by block from the very bytes
   * returned, so what a caller uploads is what was verified. Corrupt (and then quarantined, once a
   * full verify() confirms it) when any check fails; NotFound when absent.
   */
  readEncoding(chunkId: string): Promise<StoredEncoding>;
  /** Ids of quarantined chunks, until DeleteChunk clears each. */
  quarantined(): string[];
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

/** A chunk file's blocks read ahead of the network (1 MiB with 256 KiB blocks): the disk reads overlap. */
const FILE_READ_AHEAD_BLOCKS = 3;

export class LocalChunkStore implements ChunkStore, WriterHost {
  private readonly writers = new Map<string, LocalChunkWriter>();
  /** Deletes and quarantines of one chunk run one at a time; a writer of its id waits for them. */
  private readonly removals = new Map<string, Promise<unknown>>();
  private readonly quarantinedIds = new Set<string>();
  private totals: ChunkUsage = { usedBytes: 0, chunks: 0 };
  private closed = false;
  /** Set: new chunks are refused with it (a data node whose master key the cluster has not accepted). */
  private writesRefused: StrataError | undefined;
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
    readonly keys: KeyRing | undefined,
  ) {
    this.indexDir = path.join(dir, 'index');
  }

  static async open(dir: string, options: { keys?: KeyRing } = {}): Promise<LocalChunkStore> {
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
    const store = new LocalChunkStore(root, index, options.keys);
    try {
      await rm(path.join(root, 'tmp'), { recursive: true, force: true });
      await mkdir(path.join(root, 'tmp'));
      await mkdir(path.join(root, 'quarantine'), { recursive: true });
      for (let shard = 0; shard < 256; shard++) await mkdir(path.join(root, 'chunks', shardName(shard)), { recursive: true });
      await fsyncDir(path.join(root, 'chunks'));
      await fsyncDir(root);
      // One scan of the records (not the inline bytes, under their own prefix) at start keeps
      // usage() free afterwards (about a second per million chunks). A record that fails to decode
      // still counts: it fails the reads of its own chunk, not the start of the node.
      for await (const stored of index.values({ gte: RECORD_PREFIX, lt: RECORD_PREFIX_END })) store.account(stored, 1);
      for await (const key of index.keys({ gte: QUARANTINE_PREFIX, lt: QUARANTINE_PREFIX_END })) {
        store.quarantinedIds.add(key.slice(QUARANTINE_PREFIX.length));
      }
    } catch (err) {
      await index.close();
      throw mapFsError(err);
    }
    return store;
  }

  /** Refuses every new chunk with `reason` from now on; undefined: accepts them again. */
  refuseWrites(reason: StrataError | undefined): void {
    this.writesRefused = reason;
  }

  async createWriter(chunkId: string, lengthBytes: number, options: { encoded?: boolean } = {}): Promise<ChunkWriter> {
    this.checkOpen();
    if (this.writesRefused) throw this.writesRefused;
    validateChunkId(chunkId);
    new ChunkEncoder(chunkId, lengthBytes); // validates the length before any await
    if (this.writers.has(chunkId)) throw new StrataError('Conflict', `chunk ${chunkId}: a write is already in progress`);
    // A fresh data key for this one chunk (a KMS wrap may take a round trip: before the claim).
    const seal = this.keys && !options.encoded ? await newChunkSeal(this.keys.current) : undefined;
    if (this.writers.has(chunkId)) throw new StrataError('Conflict', `chunk ${chunkId}: a write is already in progress`);
    const encoder = new ChunkEncoder(chunkId, lengthBytes, seal);
    const writer = new LocalChunkWriter(this, chunkId, encoder);
    this.writers.set(chunkId, writer); // claimed before any await, so concurrent creates see it
    try {
      // A running delete (or quarantine) of this id unlinks (or moves) the file after its index
      // entry is gone: wait for it, or it could take the file this writer is about to rename in.
      await this.removals.get(chunkId)?.catch(() => {});
      if (this.quarantinedIds.has(chunkId)) throw quarantinedConflict(chunkId);
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
    try {
      yield* this.readVerified(chunkId, offsetBytes, lengthBytes);
    } catch (err) {
      // A ranged read saw a bad block. A full verify confirms it before quarantining, so a read
      // racing a delete and rewrite of this id cannot quarantine the new, intact copy.
      if (err instanceof StrataError && err.kind === 'Corrupt' && !this.quarantinedIds.has(chunkId) && !this.closed) {
        await this.verify(chunkId).catch(() => {});
      }
      throw err;
    }
  }

  async verify(chunkId: string, options: VerifyOptions = {}): Promise<VerifiedChunk> {
    let crc = 0;
    let length = 0;
    try {
      const record = await this.stat(chunkId);
      for await (const block of this.readVerified(chunkId, 0, Number.MAX_SAFE_INTEGER)) {
        crc = crc32c(block, crc);
        length += block.length;
        await options.pace?.(block.length);
      }
      if (length !== record.length) {
        throw new StrataError('Corrupt', `chunk ${chunkId}: ${length} bytes read, its record says ${record.length}, on ${this.dir}`);
      }
      return { length, storedBytes: record.storedBytes, crc32c: crc >>> 0 };
    } catch (err) {
      // If quarantining fails (the store closing, an index error) the next read or scrub retries it;
      // the caller still learns the chunk is corrupt.
      if (err instanceof StrataError && err.kind === 'Corrupt' && !this.closed) await this.quarantine(chunkId, err.message).catch(() => {});
      throw err;
    }
  }

  async readEncoding(chunkId: string): Promise<StoredEncoding> {
    const { bytes, location } = await this.readStored(chunkId);
    try {
      let crc = 0;
      let length = 0;
      let index = 0;
      const reader = await ChunkReader.open(chunkId, bufferSource(bytes, location), this.keys);
      for await (const block of reader.read(0, reader.layout.rawLengthBytes)) {
        // Each block was checked against its own checksums: the whole crc32c follows from theirs.
        const folded = foldVerifiedBlock(crc, block, reader.layout.blocks[index++]!);
        if (folded === null) throw new StrataError('Corrupt', `chunk ${chunkId}: block ${index - 1} disagrees with its table entry on ${location}`);
        crc = folded;
        length += block.length;
      }
      return { bytes, length, crc32c: crc >>> 0 };
    } catch (err) {
      // Same rule as read(): a full verify confirms the damage before quarantining.
      if (err instanceof StrataError && err.kind === 'Corrupt' && !this.quarantinedIds.has(chunkId) && !this.closed) {
        await this.verify(chunkId).catch(() => {});
      }
      throw err;
    }
  }

  /** The stored encoding as one buffer, unchecked (readEncoding checks it). */
  private async readStored(chunkId: string): Promise<{ bytes: Buffer; location: string }> {
    this.checkOpen();
    validateChunkId(chunkId);
    const { record, inline } = await this.lookupWithBytes(chunkId);
    if (!record) throw this.missing(chunkId);
    if (record.placement === 'inline') {
      const source = this.inlineSource(chunkId, record, inline); // checks presence and size
      return { bytes: await source.readAt(0, source.sizeBytes), location: this.indexDir };
    }
    let bytes: Buffer;
    try {
      // Open, then read: a delete racing this unlinks the name, not the open file.
      bytes = await readFile(chunkFilePath(this.dir, chunkId));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw mapFsError(err);
      if (!(await this.has(chunkId))) throw this.missing(chunkId);
      throw new StrataError('Corrupt', `chunk ${chunkId}: file missing on ${this.dir}`);
    }
    return { bytes, location: this.dir };
  }

  private async *readVerified(chunkId: string, offsetBytes: number, lengthBytes: number): AsyncGenerator<Buffer> {
    this.checkOpen();
    validateChunkId(chunkId);
    const { record, inline } = await this.lookupWithBytes(chunkId);
    if (!record) throw this.missing(chunkId);
    if (record.placement === 'inline') {
      yield* (await ChunkReader.open(chunkId, this.inlineSource(chunkId, record, inline), this.keys)).read(offsetBytes, lengthBytes);
      return;
    }
    let handle: FileHandle;
    try {
      handle = await open(chunkFilePath(this.dir, chunkId), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw mapFsError(err);
      // Deleted since the lookup (the index entry goes first), or lost.
      if (!(await this.has(chunkId))) throw this.missing(chunkId);
      throw new StrataError('Corrupt', `chunk ${chunkId}: file missing on ${this.dir}`);
    }
    try {
      const { size } = await handle.stat();
      const source = { readAt: (at: number, n: number) => readFully(handle, at, n), sizeBytes: size, location: this.dir, readAheadBlocks: FILE_READ_AHEAD_BLOCKS };
      const reader = await ChunkReader.open(chunkId, source, this.keys);
      yield* reader.read(offsetBytes, lengthBytes);
    } finally {
      await handle.close();
    }
  }

  /**
   * Master key rotation: the chunk's encoding made over under the writing key (common/chunk-rewrap.ts)
   * replaces the old one at once: a file by rename (same size, so its record still holds), an
   * inline chunk in one synced batch with its record. Readers see the old encoding or the new.
   */
  async rewrap(chunkId: string): Promise<RewrapOutcome> {
    const keys = this.keys;
    if (!keys) throw keyUnavailable(`${this.dir}: no master key is configured (set --encrypt-key-file or STRATA_MASTER_KEY)`);
    if (this.writesRefused) throw this.writesRefused;
    let outcome: RewrapOutcome = 'current';
    await this.exclusive(chunkId, async () => {
      const record = await this.lookup(chunkId);
      if (!record) throw this.missing(chunkId);
      const { bytes, location } = await this.readStored(chunkId);
      const made = await rewrapEncoding(chunkId, bytes, keys, location);
      outcome = made.outcome;
      const next = made.encoding;
      if (!next) return;
      if (record.placement === 'inline') {
        const updated = { ...record, storedBytes: next.length };
        await this.indexWave.submit(putChanges(chunkId, updated, next));
        this.account(record, -1);
        this.account(updated, 1);
        return;
      }
      if (next.length !== record.storedBytes) {
        throw new StrataError('Conflict', `chunk ${chunkId}: under master key '${keys.current.keyId}' it would take ${next.length} bytes, not ${record.storedBytes}: left as it is`);
      }
      const target = chunkFilePath(this.dir, chunkId);
      const tmp = path.join(this.dir, 'tmp', `${chunkId}.rewrap.${randomBytes(6).toString('hex')}`);
      try {
        await writeFile(tmp, next, { flush: true });
        await rename(tmp, target);
      } catch (err) {
        await rm(tmp, { force: true }).catch(() => {});
        throw err;
      }
      await fsyncDir(path.dirname(target));
    });
    return outcome;
  }

  async stat(chunkId: string): Promise<ChunkRecord> {
    const record = await this.lookup(chunkId);
    if (!record) throw this.missing(chunkId);
    return record;
  }

  async has(chunkId: string): Promise<boolean> {
    this.checkOpen();
    return (await this.index.get(chunkRecordKey(validateChunkId(chunkId)))) !== undefined;
  }

  async delete(chunkId: string): Promise<void> {
    this.checkOpen();
    validateChunkId(chunkId);
    await this.exclusive(chunkId, async () => {
      const record = await this.lookup(chunkId);
      if (record) {
        // Index first: once the record is gone the chunk is invisible; a crash before the unlink
        // leaves an orphan file, never a record without its bytes. Inline bytes go in that batch.
        await this.indexWave.submit(deleteChanges(chunkId, record));
        this.account(record, -1);
        if (record.placement === 'file') await unlink(chunkFilePath(this.dir, chunkId)).catch(ignoreMissing);
      } else if (this.quarantinedIds.has(chunkId)) {
        // Files first: until the quarantine record goes no writer may take this id, so neither
        // unlink can remove a new copy. The chunks/ path is an orphan left if a crash came mid-move.
        await unlink(quarantineFilePath(this.dir, chunkId)).catch(ignoreMissing);
        await unlink(chunkFilePath(this.dir, chunkId)).catch(ignoreMissing);
        await this.indexWave.submit([{ type: 'del', key: quarantineKey(chunkId) }]);
        this.quarantinedIds.delete(chunkId);
      }
    });
  }

  /**
   * Stops serving a chunk found corrupt: one synced batch swaps its record (and inline bytes) for
   * a quarantine record, then its bytes move to quarantine/ for inspection. False when the chunk
   * is not served (absent, or already quarantined).
   */
  async quarantine(chunkId: string, reason: string): Promise<boolean> {
    this.checkOpen();
    validateChunkId(chunkId);
    let done = false;
    await this.exclusive(chunkId, async () => {
      // Raw, not decoded: a record too damaged to decode is quarantined too.
      const stored = await this.index.get(chunkRecordKey(chunkId));
      if (!stored) return;
      const inline = stored.placement === 'inline'
        ? await this.index.get<string, Buffer>(inlineChunkKey(chunkId), { valueEncoding: 'buffer' })
        : undefined;
      const record: QuarantineRecord = { ...stored, reason: reason.slice(0, 1000), quarantinedMs: Date.now() };
      await this.indexWave.submit(quarantineChanges(chunkId, record));
      this.account(stored, -1);
      this.quarantinedIds.add(chunkId);
      done = true;
      // Best effort: the index record is what counts. A crash before the move leaves an orphan
      // in chunks/ (never read, removed by DeleteChunk); failing inline bytes are just dropped.
      const aside = quarantineFilePath(this.dir, chunkId);
      if (stored.placement !== 'inline') await rename(chunkFilePath(this.dir, chunkId), aside).catch(() => {});
      else if (inline) await writeFile(aside, inline).catch(() => {});
    });
    return done;
  }

  quarantined(): string[] {
    return [...this.quarantinedIds];
  }

  async *list(): AsyncGenerator<string> {
    this.checkOpen();
    for await (const key of this.index.keys({ gte: RECORD_PREFIX, lt: RECORD_PREFIX_END })) yield key.slice(RECORD_PREFIX.length);
  }

  async listChunks(afterChunkId: string | undefined, limit: number): Promise<ListedChunk[]> {
    this.checkOpen();
    const from = afterChunkId === undefined ? { gte: RECORD_PREFIX } : { gt: chunkRecordKey(validateChunkId(afterChunkId)) };
    const listed: ListedChunk[] = [];
    for await (const [key, stored] of this.index.iterator({ ...from, lt: RECORD_PREFIX_END, limit })) {
      // Undecodable records are listed too: the node serves them (reads fail, then quarantine).
      const storedAtMs = Number.isSafeInteger(stored.createdMs) && stored.createdMs > 0 ? stored.createdMs : 0;
      listed.push({ chunkId: key.slice(RECORD_PREFIX.length), length: stored.length, storedBytes: stored.storedBytes, storedAtMs });
    }
    return listed;
  }

  usage(): ChunkUsage {
    return { ...this.totals };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Commits past their first step and running deletes finish (their waves with them) first.
    await Promise.allSettled([...this.writers.values()].map((writer) => writer.abort()));
    await Promise.allSettled([...this.removals.values()]);
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

  /** Runs `work` after any running delete or quarantine of this chunk, and before later ones. */
  private exclusive(chunkId: string, work: () => Promise<void>): Promise<void> {
    const previous = this.removals.get(chunkId)?.catch(() => {}) ?? Promise.resolve();
    const running = previous.then(work).catch((err) => Promise.reject(mapFsError(err)));
    const tracked = running.finally(() => {
      if (this.removals.get(chunkId) === tracked) this.removals.delete(chunkId);
    });
    tracked.catch(() => {}); // observed through `running`
    this.removals.set(chunkId, tracked);
    return running;
  }

  /** NotFound, or Corrupt for a chunk this node quarantined (it had it, and it went bad). */
  private missing(chunkId: string): StrataError {
    if (this.quarantinedIds.has(chunkId)) {
      return new StrataError('Corrupt', `chunk ${chunkId}: quarantined as corrupt on ${this.dir}`);
    }
    return new StrataError('NotFound', `chunk ${chunkId}: not found on this node`);
  }

  /** Record and inline bytes from one snapshot: a delete between the two reads is not corruption. */
  private async lookupWithBytes(chunkId: string): Promise<{ record?: ChunkRecord; inline?: Buffer }> {
    const snapshot = this.index.snapshot();
    try {
      const stored = await this.index.get(chunkRecordKey(chunkId), { snapshot });
      const record = stored && decodeRecord(chunkId, stored, this.indexDir);
      if (record?.placement !== 'inline') return { record };
      return { record, inline: await this.index.get<string, Buffer>(inlineChunkKey(chunkId), { snapshot, valueEncoding: 'buffer' }) };
    } finally {
      await snapshot.close();
    }
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
    return bufferSource(bytes, this.indexDir);
  }

  private account(record: ChunkStat, sign: 1 | -1): void {
    this.totals = { usedBytes: this.totals.usedBytes + sign * record.storedBytes, chunks: this.totals.chunks + sign };
  }

  private checkOpen(): void {
    if (this.closed) throw new StrataError('Unavailable', `chunk store ${this.dir} is closed`);
  }
}

function quarantinedConflict(chunkId: string): StrataError {
  return new StrataError('Conflict', `chunk ${chunkId}: a corrupt copy is quarantined on this node; DeleteChunk clears it`);
}

/** Positional read of exactly `lengthBytes`, fewer only at end of file. */
export async function readFully(handle: FileHandle, positionBytes: number, lengthBytes: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(lengthBytes);
  let filled = 0;
  while (filled < lengthBytes) {
    const { bytesRead } = await handle.read(buffer, filled, lengthBytes - filled, positionBytes + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled === lengthBytes ? buffer : buffer.subarray(0, filled);
}
