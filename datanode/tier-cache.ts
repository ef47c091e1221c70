// The read-through cache of tiered chunks: `<dataDir>/tier-cache/<chunkId>`, each file a chunk's
// stored encoding exactly as its object holds it, kept least-recently-used first under a byte
// budget. A miss fetches the whole object (tier-fetch.ts checks its size and crc32c) into tmp/ and
// renames it into place; concurrent misses of one chunk share that fetch. While that fetch of a
// large object runs, reads of it are served from ranged GETs of just the head and the blocks they
// need (tier-ranged.ts), so the first byte doesn't wait for the whole object; once the fetch
// settles they go on from the cache (or fail with its error). Every read goes through
// ChunkReader, so block checksums are verified on every read, not only on fetch; a cached file
// found bad is dropped and fetched again once. A file being read is never evicted (refcount).
// At start the files already here are indexed again (oldest modification first), not wiped:
// a restart keeps the cache warm, and a file damaged meanwhile fails its block checks and is
// fetched again, so nothing unchecked is ever served.
import { mkdir, open, readdir, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { ChunkReader, bufferSource, type ChunkSource } from '../common/chunk-codec.js';
import type { KeyRing } from '../common/master-key.js';
import { StrataError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { TierCopy } from '../common/object-tier.js';
import type { TierCacheStatus } from '../common/node-info.js';
import { validateChunkId } from './chunk-layout.js';
import { readFully } from './chunk-store.js';
import { DEFAULT_FETCH_LIMITS, fetchToFile, fetchToMemory, type FetchLimits } from './tier-fetch.js';
import { firstRangeBytes, rangedSource } from './tier-ranged.js';
import type { TierRegistry } from './tier-registry.js';

export const TIER_CACHE_DIR = 'tier-cache';
export const DEFAULT_TIER_CACHE_BYTES = 1024 * 1024 * 1024;
/**
 * Smallest object whose misses are served from ranged GETs meanwhile. Below it the whole object
 * arrives about as soon as the ranged GETs (head, then blocks; one GET inside the first block)
 * would: a store's time to first byte times its bandwidth, ~50 ms x ~100 MB/s for S3.
 */
export const RANGED_MIN_OBJECT_BYTES = 4 * 1024 * 1024;
const CHUNK_FILE_NAME = /^[A-Za-z0-9_-]{1,128}$/;

export interface TierCacheOptions {
  /** The data dir; the cache lives in its tier-cache/ directory. */
  dataDir: string;
  /** Bytes of cached objects kept at most (while none is being read); 0 = no cache, fetch per read. */
  budgetBytes: number;
  tiers: TierRegistry;
  log: Logger;
  limits?: FetchLimits;
  /** Objects at least this large serve misses from ranged GETs meanwhile; default RANGED_MIN_OBJECT_BYTES. */
  rangedMinBytes?: number;
  /** Master keys for encrypted chunks (their objects are the encrypted encoding, as stored). */
  keys?: KeyRing;
}

export interface TierReadOptions {
  /** False: serve a cached copy if there is one, but don't cache this chunk (a recall stores it locally). */
  keep?: boolean;
}

interface Entry {
  chunkId: string;
  sizeBytes: number;
  /** Readers holding it: never evicted while above 0. */
  refs: number;
  /** Out of the index (found bad); its file is gone or going. */
  dropped: boolean;
}

/** A fetch into the cache that readers of the chunk wait on together. */
interface PendingFetch {
  waiters: number;
  done: Promise<Entry>;
  /** True once `done` settled: a read served from ranged GETs goes on the usual way from then. */
  settled: boolean;
  /** The object by ranged GETs, shared by the reads that arrive while the fetch runs (its head kept). */
  ranged?: ChunkSource;
}

/** An open copy of a chunk's encoding, for one read. */
interface Lease {
  source: ChunkSource;
  /** Set when the copy is a cache entry: a bad one is dropped and fetched again. */
  entry?: Entry;
  release(): Promise<void>;
}

export class TierCache {
  readonly dir: string;
  private readonly tmpDir: string;
  /** Map order is recency: the first entry is the least recently used. */
  private readonly entries = new Map<string, Entry>();
  private readonly fetches = new Map<string, PendingFetch>();
  /** Unlinks of evicted files: a new fetch of the same chunk renames into place only after its one. */
  private readonly removals = new Map<string, Promise<void>>();
  private readonly limits: FetchLimits;
  private readonly rangedMinBytes: number;
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private fetchErrors = 0;
  private closed = false;

  private constructor(private readonly options: TierCacheOptions) {
    this.dir = path.join(path.resolve(options.dataDir), TIER_CACHE_DIR);
    this.tmpDir = path.join(this.dir, 'tmp');
    this.limits = options.limits ?? DEFAULT_FETCH_LIMITS;
    this.rangedMinBytes = options.rangedMinBytes ?? RANGED_MIN_OBJECT_BYTES;
  }

  static async open(options: TierCacheOptions): Promise<TierCache> {
    if (!(Number.isSafeInteger(options.budgetBytes) && options.budgetBytes >= 0)) {
      throw new StrataError('Invalid', `invalid config: tierCacheBytes: ${options.budgetBytes} is not a whole number >= 0`);
    }
    const cache = new TierCache(options);
    await rm(cache.tmpDir, { recursive: true, force: true });
    await mkdir(cache.tmpDir, { recursive: true });
    await cache.reindex();
    return cache;
  }

  /**
   * Verified raw bytes of [offset, offset + length) of a tiered chunk, clamped to it, one block at
   * a time: from the cache, or fetched from `copy` first. Unavailable when the tier can't be
   * reached, Corrupt (naming chunk, tier and key) when its object is not the bytes uploaded.
   */
  async *read(chunkId: string, copy: TierCopy, offsetBytes: number, lengthBytes: number, options: TierReadOptions = {}): AsyncGenerator<Buffer> {
    validateChunkId(chunkId);
    const keep = options.keep ?? true;
    let doneBytes = 0;
    const miss = this.rangedMiss(chunkId, copy, offsetBytes, lengthBytes, keep);
    if (miss) {
      const { fetch, source } = miss;
      try {
        const reader = await ChunkReader.open(chunkId, source, this.options.keys);
        const wantBytes = Math.min(lengthBytes, reader.layout.rawLengthBytes - offsetBytes);
        for await (const block of reader.read(offsetBytes, lengthBytes)) {
          doneBytes += block.length;
          yield block;
          // The cache has it now (or the fetch failed): no more GETs for what it holds.
          if (fetch.settled && doneBytes < wantBytes) break;
        }
        if (doneBytes >= wantBytes) return;
      } catch (err) {
        // A ranged GET failed or its bytes failed their checks: the whole fetch decides, so the
        // read fails with its error (Corrupt naming chunk, tier and key; Unavailable) as before.
        this.options.log.debug({ chunkId, err: (err as Error).message }, 'ranged read of a tier copy failed; waiting for the whole object');
      }
      await fetch.done; // its error, if it failed; else the rest comes from the cache
    }
    for (let attempt = 0; ; attempt++) {
      const lease = await this.lease(chunkId, copy, keep, !miss || attempt > 0);
      try {
        const reader = await ChunkReader.open(chunkId, lease.source, this.options.keys);
        for await (const block of reader.read(offsetBytes + doneBytes, lengthBytes - doneBytes)) {
          doneBytes += block.length;
          yield block;
        }
        return;
      } catch (err) {
        // A cached file damaged on disk (or dropped under us): fetch it again, once, and go on
        // from where this read got to.
        const corrupt = err instanceof StrataError && err.kind === 'Corrupt';
        if (!lease.entry || !corrupt || attempt > 0) throw err;
        this.options.log.warn({ chunkId, err: (err as Error).message }, 'cached tier copy failed its checks; fetching it again');
        this.drop(lease.entry);
      } finally {
        await lease.release();
      }
    }
  }

  status(): TierCacheStatus {
    const { bytes, hits, misses, fetchErrors } = this;
    return { bytes, budgetBytes: this.options.budgetBytes, chunks: this.entries.size, hits, misses, fetchErrors };
  }

  /** New reads fail; fetches under way finish on their own (each is bounded in time). */
  close(): void {
    this.closed = true;
  }

  /**
   * A miss to serve from ranged GETs while the whole object comes into the cache: the fetch (new,
   * or the one under way) and its ranged source; undefined when this read takes the usual way
   * (cached, small, not to be kept, no cache). A miss counted here is not counted again by lease.
   */
  private rangedMiss(
    chunkId: string,
    copy: TierCopy,
    offsetBytes: number,
    lengthBytes: number,
    keep: boolean,
  ): { fetch: PendingFetch; source: ChunkSource } | undefined {
    const { budgetBytes } = this.options;
    if (this.closed || !keep || budgetBytes === 0 || copy.storedBytes > budgetBytes || copy.storedBytes < this.rangedMinBytes) return undefined;
    if (this.entries.has(chunkId)) return undefined;
    let tier;
    try {
      tier = this.options.tiers.get(copy.tier);
    } catch {
      return undefined; // the usual way fails with the same error
    }
    this.misses++;
    const fetch = this.pendingFetch(chunkId, copy);
    fetch.ranged ??= rangedSource(tier, chunkId, copy, firstRangeBytes(chunkId, copy, offsetBytes + lengthBytes), this.limits);
    return { fetch, source: fetch.ranged };
  }

  /** `count`: false when this read's miss was counted already (rangedMiss). */
  private async lease(chunkId: string, copy: TierCopy, keep: boolean, count = true): Promise<Lease> {
    if (this.closed) throw new StrataError('Unavailable', `tier cache ${this.dir} is closed`);
    const cached = this.entries.get(chunkId);
    if (cached) {
      if (count) this.hits++;
      this.entries.delete(chunkId); // to the most recently used end
      this.entries.set(chunkId, cached);
      cached.refs++;
      return this.openEntry(cached);
    }
    if (count) this.misses++;
    const { budgetBytes } = this.options;
    if (budgetBytes === 0) return this.counted(this.fetchIntoMemory(chunkId, copy));
    // Larger than the whole budget, or not to be kept: a private temp file, gone when released.
    if (!keep || copy.storedBytes > budgetBytes) return this.counted(this.fetchUncached(chunkId, copy));
    const pending = this.pendingFetch(chunkId, copy);
    pending.waiters++;
    return this.openEntry(await pending.done);
  }

  /** The fetch of a chunk into the cache: the one under way, or a new one. */
  private pendingFetch(chunkId: string, copy: TierCopy): PendingFetch {
    const under = this.fetches.get(chunkId);
    if (under) return under;
    // In the map before it starts: a fetch that fails at once must still take itself out.
    const fetch = { waiters: 0, settled: false } as PendingFetch;
    this.fetches.set(chunkId, fetch);
    fetch.done = this.fetchEntry(chunkId, copy, fetch);
    fetch.done.then(
      () => {
        fetch.settled = true;
      },
      (err) => {
        fetch.settled = true;
        // Reads served from ranged GETs may have finished without waiting for it: say why the
        // next read of the chunk fetches again.
        if (fetch.ranged) this.options.log.warn({ chunkId, err: (err as Error).message }, 'fetch of a tier copy into the cache failed');
      },
    ); // every waiter observes `done` itself
    return fetch;
  }

  private async counted(fetch: Promise<Lease>): Promise<Lease> {
    try {
      return await fetch;
    } catch (err) {
      this.fetchErrors++;
      throw err;
    }
  }

  /** One fetch into the cache; the entry comes back holding one reference per waiter. */
  private async fetchEntry(chunkId: string, copy: TierCopy, fetch: PendingFetch): Promise<Entry> {
    const tmp = this.tmpPath(chunkId);
    try {
      const tier = this.options.tiers.get(copy.tier);
      await fetchToFile(tier, chunkId, copy, tmp, this.limits);
      await this.removals.get(chunkId);
      await rename(tmp, this.filePath(chunkId));
    } catch (err) {
      this.fetchErrors++;
      if (this.fetches.get(chunkId) === fetch) this.fetches.delete(chunkId);
      await unlink(tmp).catch(() => {});
      throw err;
    }
    // In one step: the fetch leaves the map as the entry enters it, with its waiters' references.
    const entry: Entry = { chunkId, sizeBytes: copy.storedBytes, refs: fetch.waiters, dropped: false };
    if (this.fetches.get(chunkId) === fetch) this.fetches.delete(chunkId);
    this.entries.set(chunkId, entry);
    this.bytes += entry.sizeBytes;
    this.evictOverBudget();
    return entry;
  }

  private async fetchUncached(chunkId: string, copy: TierCopy): Promise<Lease> {
    const tmp = this.tmpPath(chunkId);
    await fetchToFile(this.options.tiers.get(copy.tier), chunkId, copy, tmp, this.limits);
    let handle: FileHandle;
    try {
      handle = await open(tmp, 'r');
    } finally {
      await unlink(tmp).catch(() => {}); // the open handle keeps the bytes until released
    }
    return { source: fileSource(handle, copy.storedBytes, this.dir), release: () => handle.close() };
  }

  private async fetchIntoMemory(chunkId: string, copy: TierCopy): Promise<Lease> {
    const bytes = await fetchToMemory(this.options.tiers.get(copy.tier), chunkId, copy, this.limits);
    return { source: bufferSource(bytes, `object ${copy.key} in tier '${copy.tier}'`), release: async () => {} };
  }

  /** Opens a referenced entry's file; the reference is given back by the lease (or here, on failure). */
  private async openEntry(entry: Entry): Promise<Lease> {
    const release = async () => {
      entry.refs--;
      this.evictOverBudget();
    };
    let handle: FileHandle;
    try {
      handle = await open(this.filePath(entry.chunkId), 'r');
    } catch (err) {
      await release();
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new StrataError('Unavailable', `tier cache ${this.dir}: ${(err as Error).message}`);
      // Dropped by another reader meanwhile, or removed behind the node's back: like a bad copy.
      const missing = new StrataError('Corrupt', `chunk ${entry.chunkId}: cached copy missing in ${this.dir}`);
      return { entry, source: failingSource(missing), release: async () => {} };
    }
    const source = fileSource(handle, entry.sizeBytes, this.dir);
    return { entry, source, release: () => handle.close().finally(release) };
  }

  /** Takes a bad entry out of the cache; readers holding it open finish on the old file. */
  private drop(entry: Entry): void {
    if (entry.dropped || this.entries.get(entry.chunkId) !== entry) return;
    entry.dropped = true;
    this.remove(entry);
  }

  private evictOverBudget(): void {
    for (const entry of this.entries.values()) {
      if (this.bytes <= this.options.budgetBytes) return;
      if (entry.refs > 0) continue;
      this.remove(entry);
    }
  }

  private remove(entry: Entry): void {
    this.entries.delete(entry.chunkId);
    this.bytes -= entry.sizeBytes;
    const previous = this.removals.get(entry.chunkId) ?? Promise.resolve();
    const removal = previous.then(() => unlink(this.filePath(entry.chunkId))).catch(() => {});
    this.removals.set(entry.chunkId, removal);
    void removal.then(() => {
      if (this.removals.get(entry.chunkId) === removal) this.removals.delete(entry.chunkId);
    });
  }

  /** Indexes the files a previous run left, oldest first; anything else in the directory goes. */
  private async reindex(): Promise<void> {
    const found: Array<{ chunkId: string; sizeBytes: number; mtimeMs: number }> = [];
    for (const dirent of await readdir(this.dir, { withFileTypes: true })) {
      if (dirent.name === 'tmp') continue;
      const file = path.join(this.dir, dirent.name);
      const info = dirent.isFile() ? await stat(file).catch(() => undefined) : undefined;
      if (!info || !CHUNK_FILE_NAME.test(dirent.name) || info.size === 0) {
        await rm(file, { recursive: true, force: true });
        continue;
      }
      found.push({ chunkId: dirent.name, sizeBytes: info.size, mtimeMs: info.mtimeMs });
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const { chunkId, sizeBytes } of found) {
      this.entries.set(chunkId, { chunkId, sizeBytes, refs: 0, dropped: false });
      this.bytes += sizeBytes;
    }
    this.evictOverBudget(); // the budget may have shrunk since
    await Promise.all(this.removals.values());
    if (found.length > 0) this.options.log.info({ chunks: this.entries.size, bytes: this.bytes }, 'tier cache indexed');
  }

  private filePath(chunkId: string): string {
    return path.join(this.dir, chunkId);
  }

  private tmpPath(chunkId: string): string {
    return path.join(this.tmpDir, `${chunkId}.${randomBytes(6).toString('hex')}`);
  }
}

function fileSource(handle: FileHandle, sizeBytes: number, dir: string): ChunkSource {
  return { readAt: (at, n) => readFully(handle, at, n), sizeBytes, location: `tier cache ${dir}` };
}

function failingSource(error: StrataError): ChunkSource {
  return { readAt: () => Promise.reject(error), sizeBytes: 0, location: '' };
}
