// ObjectTier: the seam to S3-compatible object stores (AWS S3, MinIO, Ceph RGW, Garage, GCS in
// S3 mode, s3rver in tests). Only plain S3 calls, nothing vendor-specific, so every one of them
// works unchanged. Data nodes upload and read tiered chunks through it; the leader lists and
// deletes objects (GC); the CLI exports and imports subtrees.
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { StrataError } from './errors.js';

// The SDK warns once per process that it will soon need Node 22; strata supports Node 20, and a
// warning on every CLI call would drown the output. Set before any client is made.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** Where a tiered chunk's bytes are (proto TierCopy). */
export interface TierCopy {
  tier: string;
  key: string;
  storedBytes: number;
  /** crc32c of the whole object. */
  crc32c: number;
}

/** One S3-compatible target (proto TierTarget). Credentials empty = the AWS default chain. */
export interface TierTarget {
  name: string;
  endpoint: string;
  region: string;
  bucket: string;
  prefix: string;
  forcePathStyle: boolean;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
}

export interface ObjectInfo {
  key: string;
  sizeBytes: number;
  lastModifiedMs: number;
}

export interface RequestOptions {
  /** Cancels the call: how a reader bounds its wait below the SDK's own timeouts and retries. */
  signal?: AbortSignal;
}

export interface ObjectTier {
  readonly target: TierTarget;
  /**
   * Writes an object (multipart above the part size); resolves when the store has it whole, to
   * the store's ETag of it ('' if it gave none).
   */
  put(key: string, body: Buffer | Readable, sizeBytes?: number, crc32c?: number): Promise<string>;
  /** The object's bytes, or a byte range of them [start, end). `signal` aborts the request (and its body). */
  get(key: string, range?: { start: number; end: number }, options?: RequestOptions): Promise<Readable>;
  head(key: string, options?: RequestOptions): Promise<ObjectInfo | undefined>;
  delete(key: string): Promise<void>;
  /** Every object under a key prefix, a page at a time. */
  list(prefix: string): AsyncIterable<ObjectInfo[]>;
  /** Proves the bucket exists and the credentials reach it. */
  check(): Promise<void>;
  close(): void;
}

/** S3's form of a CRC-32C: the 4 bytes big-endian, base64. */
function crc32cBase64(crc: number): string {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(crc >>> 0);
  return bytes.toString('base64');
}

/** The object key of a chunk in a tier. */
export const chunkObjectKey = (target: Pick<TierTarget, 'prefix'>, chunkId: string) => `${target.prefix}chunks/${chunkId}`;
/** The chunk id an object key names, or undefined for keys that are not chunk objects. */
export function chunkIdOfObjectKey(target: Pick<TierTarget, 'prefix'>, key: string): string | undefined {
  const head = `${target.prefix}chunks/`;
  if (!key.startsWith(head)) return undefined;
  const id = key.slice(head.length);
  return /^[A-Za-z0-9_-]{1,128}$/.test(id) ? id : undefined;
}

/** Objects at least this large go up in parts of this size (lib-storage multipart). */
export const PART_SIZE_BYTES = 16 * 1024 * 1024;
const REQUEST_TIMEOUT_MS = 30_000;
const CONNECT_TIMEOUT_MS = 3_000;

export class S3ObjectTier implements ObjectTier {
  private readonly client: S3Client;

  constructor(readonly target: TierTarget) {
    this.client = new S3Client({
      endpoint: target.endpoint || undefined,
      region: target.region || 'us-east-1',
      forcePathStyle: target.forcePathStyle,
      credentials: target.accessKeyId
        ? { accessKeyId: target.accessKeyId, secretAccessKey: target.secretAccessKey, sessionToken: target.sessionToken || undefined }
        : undefined,
      // A store that is down must fail fast (reads answer a retryable error, tiering backs off),
      // never hang a read; the SDK's own retries cover a brief blip.
      maxAttempts: 3,
      requestHandler: new NodeHttpHandler({ connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS }),
    });
  }

  private describe(key?: string): string {
    return `tier '${this.target.name}' (${this.target.endpoint || 'aws'} bucket ${this.target.bucket}${key ? ` object ${key}` : ''})`;
  }

  /**
   * `crc32c` of a one-part body goes with it (x-amz-checksum-crc32c): stores that check it (S3,
   * MinIO, ...) refuse bytes damaged on the way, and the SDK skips computing a checksum of its own.
   */
  async put(key: string, body: Buffer | Readable, sizeBytes?: number, crc32c?: number): Promise<string> {
    const onePart = Buffer.isBuffer(body) && body.length < PART_SIZE_BYTES && crc32c !== undefined;
    const checksum = onePart ? { ChecksumCRC32C: crc32cBase64(crc32c!) } : {};
    try {
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.target.bucket, Key: key, Body: body, ContentLength: sizeBytes, ...checksum },
        partSize: PART_SIZE_BYTES,
        queueSize: 4,
        leavePartsOnError: false,
      });
      const done = await upload.done();
      return ('ETag' in done && typeof done.ETag === 'string' ? done.ETag : '').replace(/"/g, '');
    } catch (err) {
      throw this.mapError(err, key);
    }
  }

  async get(key: string, range?: { start: number; end: number }, options: RequestOptions = {}): Promise<Readable> {
    try {
      const reply = await this.client.send(
        new GetObjectCommand({ Bucket: this.target.bucket, Key: key, Range: range ? `bytes=${range.start}-${range.end - 1}` : undefined }),
        { abortSignal: options.signal },
      );
      return reply.Body as Readable;
    } catch (err) {
      throw this.mapError(err, key);
    }
  }

  async head(key: string, options: RequestOptions = {}): Promise<ObjectInfo | undefined> {
    try {
      const reply = await this.client.send(new HeadObjectCommand({ Bucket: this.target.bucket, Key: key }), { abortSignal: options.signal });
      return { key, sizeBytes: Number(reply.ContentLength ?? 0), lastModifiedMs: reply.LastModified?.getTime() ?? 0 };
    } catch (err) {
      const mapped = this.mapError(err, key);
      if (mapped.kind === 'NotFound') return undefined;
      throw mapped;
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.target.bucket, Key: key }));
    } catch (err) {
      const mapped = this.mapError(err, key);
      if (mapped.kind !== 'NotFound') throw mapped;
    }
  }

  async *list(prefix: string): AsyncGenerator<ObjectInfo[]> {
    let token: string | undefined;
    do {
      let reply;
      try {
        reply = await this.client.send(new ListObjectsV2Command({ Bucket: this.target.bucket, Prefix: prefix, ContinuationToken: token }));
      } catch (err) {
        throw this.mapError(err);
      }
      yield (reply.Contents ?? []).map((o) => ({ key: o.Key ?? '', sizeBytes: Number(o.Size ?? 0), lastModifiedMs: o.LastModified?.getTime() ?? 0 }));
      token = reply.IsTruncated ? reply.NextContinuationToken : undefined;
    } while (token);
  }

  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.target.bucket }));
    } catch (err) {
      const mapped = this.mapError(err);
      if (mapped.kind === 'NotFound') throw new StrataError('NotFound', `${this.describe()}: the bucket does not exist; create it first`);
      throw mapped;
    }
  }

  close(): void {
    this.client.destroy();
  }

  /** S3 and network failures as strata errors naming the tier, never with credentials. */
  private mapError(err: unknown, key?: string): StrataError {
    if (err instanceof StrataError) return err;
    const where = this.describe(key);
    if (err instanceof S3ServiceException) {
      const status = err.$metadata?.httpStatusCode ?? 0;
      const code = err.name;
      if (status === 404 || code === 'NoSuchKey' || code === 'NotFound' || code === 'NoSuchBucket') {
        return new StrataError('NotFound', `${where}: not found (${code})`);
      }
      if (status === 403 || status === 401 || /AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch/.test(code)) {
        return new StrataError('PermissionDenied', `${where}: access denied (${code}): check the tier's credentials`);
      }
      if (status >= 500 || status === 0) return new StrataError('Unavailable', `${where}: the store failed (${code}); retry later`);
      return new StrataError('Invalid', `${where}: refused (${code}: ${err.message})`);
    }
    const message = err instanceof Error ? err.message || err.name : String(err);
    return new StrataError('Unavailable', `${where}: unreachable (${message}); retry later`, { cause: err });
  }
}

// ------------------------------------------------------------------ configuration
// In common/tier-config.ts (no AWS SDK there: common/config.ts reads it on every CLI start).
export { tierConfigSchema, parseTierSpec, resolveTierTarget, type TierConfig } from './tier-config.js';
