// TierUpload: puts this node's stored encoding of a chunk (FORMAT.md) into an object tier, exactly
// those bytes, after every block of them passed its checks: a bad local copy is never uploaded
// (it is quarantined instead). The reply says where the object is and its size and crc32c, which
// the leader records and every later read of the object checks.
import { createHash } from 'node:crypto';
import { crc32c } from '@node-rs/crc32';
import { StrataError, invalid } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { PART_SIZE_BYTES, chunkObjectKey, type ObjectTier, type TierCopy } from '../common/object-tier.js';
import { quoted } from '../common/limits.js';
import { validateChunkId, type ChunkStore } from './chunk-store.js';
import type { TierRegistry } from './tier-registry.js';

export interface TierUploadRequest {
  chunkId: string;
  tier: string;
  key: string;
}

/** S3's limit on key length, in UTF-8 bytes. */
const MAX_KEY_BYTES = 1024;
/**
 * Uploads running at once; each holds one chunk's encoding (up to 64 MiB) in memory, so this
 * bounds the memory tiering can take from a node. Later calls wait their turn.
 */
const MAX_CONCURRENT_UPLOADS = 4;

export class TierUploader {
  /** One upload per chunk, tier and key at a time: a repeated request joins the running one. */
  private readonly running = new Map<string, Promise<TierCopy>>();
  private active = 0;
  private readonly queue: Array<() => void> = [];

  constructor(
    private readonly store: ChunkStore,
    private readonly tiers: TierRegistry,
    private readonly log: Logger,
  ) {}

  async upload(request: TierUploadRequest): Promise<TierCopy> {
    const { chunkId, tier, key } = checkRequest(request);
    const id = JSON.stringify([chunkId, tier, key]);
    let upload = this.running.get(id);
    if (!upload) {
      upload = this.limited(() => this.uploadOnce(chunkId, tier, key)).finally(() => this.running.delete(id));
      this.running.set(id, upload);
    }
    return upload;
  }

  private async uploadOnce(chunkId: string, tierName: string, key: string): Promise<TierCopy> {
    const tier = this.tiers.get(tierName); // Unavailable until a heartbeat named it
    // Only the chunk's own object: a request naming another key could overwrite another chunk's copy.
    const ownKey = chunkObjectKey(tier.target, chunkId);
    if (key !== ownKey) throw invalid(`TierUpload: chunk ${chunkId}: the object key must be ${quoted(ownKey)}, not ${quoted(key)}`);
    const { bytes } = await this.store.readEncoding(chunkId); // NotFound, or Corrupt (and quarantined)
    const crc = crc32c(bytes) >>> 0;
    const etag = await tier.put(key, bytes, bytes.length, crc);
    // A one-part object's ETag is the MD5 of its bytes (unless the store encrypts with KMS or
    // answers otherwise): equal, the store holds exactly these bytes, and no request more is needed.
    const etagProves = bytes.length < PART_SIZE_BYTES && etag === createHash('md5').update(bytes).digest('hex');
    if (!etagProves) await this.checkSize(tier, chunkId, tierName, key, bytes.length);
    this.log.info({ chunkId, tier: tierName, key, storedBytes: bytes.length }, 'chunk uploaded to tier');
    return { tier: tierName, key, storedBytes: bytes.length, crc32c: crc };
  }

  /** The object's size, read back, proves the store has it whole. */
  private async checkSize(tier: ObjectTier, chunkId: string, tierName: string, key: string, expected: number): Promise<void> {
    const object = await tier.head(key);
    if (!object) {
      throw new StrataError('Unavailable', `chunk ${chunkId}: object ${key} in tier '${tierName}' is not visible after its upload; retry later`);
    }
    if (object.sizeBytes !== expected) {
      throw new StrataError('Corrupt', `chunk ${chunkId}: object ${key} in tier '${tierName}' has ${object.sizeBytes} bytes after its upload, expected ${expected}`);
    }
  }

  private async limited<T>(work: () => Promise<T>): Promise<T> {
    if (this.active >= MAX_CONCURRENT_UPLOADS) await new Promise<void>((resolve) => this.queue.push(resolve));
    else this.active++;
    try {
      return await work();
    } finally {
      // The slot passes straight to the next waiter, or is freed.
      const next = this.queue.shift();
      if (next) next();
      else this.active--;
    }
  }
}

function checkRequest(request: TierUploadRequest): TierUploadRequest {
  const chunkId = validateChunkId(request?.chunkId);
  const tier = request.tier ?? '';
  const key = request.key ?? '';
  if (!tier) throw invalid(`TierUpload: chunk ${chunkId}: name the tier to upload to`);
  if (!key) throw invalid(`TierUpload: chunk ${chunkId}: the object key is empty`);
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw invalid(`TierUpload: chunk ${chunkId}: object key longer than ${MAX_KEY_BYTES} bytes`);
  return { chunkId, tier, key };
}
