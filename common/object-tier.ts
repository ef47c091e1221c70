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
import { z } from 'zod';
import { StrataError, invalid } from './errors.js';

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
  /** Writes an object (multipart above the part size); resolves when the store has it whole. */
  put(key: string, body: Buffer | Readable, sizeBytes?: number): Promise<void>;
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

  async put(key: string, body: Buffer | Readable, sizeBytes?: number): Promise<void> {
    try {
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.target.bucket, Key: key, Body: body, ContentLength: sizeBytes },
        partSize: PART_SIZE_BYTES,
        queueSize: 4,
        leavePartsOnError: false,
      });
      await upload.done();
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

const tierName = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, 'tier names are 1..32 of a-z 0-9 _ - (starting with a letter or digit)');

/** One tier as written in a coordinator's config file. Credentials: inline, a file, or env. */
export const tierConfigSchema = z
  .object({
    name: tierName,
    endpoint: z.string().url().or(z.literal('')).default(''),
    region: z.string().default('us-east-1'),
    bucket: z.string().min(3).max(63),
    prefix: z
      .string()
      .default('')
      .transform((p) => (p === '' || p.endsWith('/') ? p : p + '/')),
    forcePathStyle: z.boolean().default(false),
    /** A JSON file {"accessKeyId": ..., "secretAccessKey": ..., "sessionToken"?: ...}. */
    credentialsFile: z.string().optional(),
    /** Environment variables holding the keys (default AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). */
    accessKeyIdEnv: z.string().default('AWS_ACCESS_KEY_ID'),
    secretAccessKeyEnv: z.string().default('AWS_SECRET_ACCESS_KEY'),
  })
  .strict();
export type TierConfig = z.infer<typeof tierConfigSchema>;

/**
 * `--tier` flag form: `name=s3://bucket/prefix?endpoint=http://host:port&region=r&path_style=true&credentials_file=/p`.
 * Returns the config-file shape, validated by tierConfigSchema with the rest.
 */
export function parseTierSpec(spec: string): Record<string, unknown> {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw invalid(`invalid tier '${spec}': use name=s3://bucket/prefix?endpoint=URL&region=R&path_style=true`);
  let url: URL;
  try {
    url = new URL(spec.slice(eq + 1));
  } catch {
    throw invalid(`invalid tier '${spec}': ${spec.slice(eq + 1)} is not an s3:// URL`);
  }
  if (url.protocol !== 's3:') throw invalid(`invalid tier '${spec}': the URL must start with s3://`);
  const out: Record<string, unknown> = { name: spec.slice(0, eq), bucket: url.hostname, prefix: decodeURIComponent(url.pathname.replace(/^\//, '')) };
  for (const [key, value] of url.searchParams) {
    if (key === 'endpoint') out.endpoint = value;
    else if (key === 'region') out.region = value;
    else if (key === 'path_style') out.forcePathStyle = value === 'true' || value === '1';
    else if (key === 'credentials_file') out.credentialsFile = value;
    else throw invalid(`invalid tier '${spec}': unknown option '${key}' (endpoint, region, path_style, credentials_file)`);
  }
  return out;
}

/** Resolves a tier's credentials (file, then env) into a target; throws Invalid naming what is wrong. */
export function resolveTierTarget(config: TierConfig, env: NodeJS.ProcessEnv, readFile: (p: string) => string): TierTarget {
  let accessKeyId = env[config.accessKeyIdEnv] ?? '';
  let secretAccessKey = env[config.secretAccessKeyEnv] ?? '';
  let sessionToken = env.AWS_SESSION_TOKEN ?? '';
  if (config.credentialsFile) {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(readFile(config.credentialsFile));
    } catch (err) {
      throw invalid(`tier '${config.name}': cannot read credentials file ${config.credentialsFile}: ${(err as Error).message.split('\n')[0]}`);
    }
    if (typeof parsed.accessKeyId !== 'string' || typeof parsed.secretAccessKey !== 'string') {
      throw invalid(`tier '${config.name}': credentials file ${config.credentialsFile} needs "accessKeyId" and "secretAccessKey" strings`);
    }
    accessKeyId = parsed.accessKeyId;
    secretAccessKey = parsed.secretAccessKey;
    sessionToken = typeof parsed.sessionToken === 'string' ? parsed.sessionToken : '';
  }
  if ((accessKeyId === '') !== (secretAccessKey === '')) {
    throw invalid(`tier '${config.name}': set both an access key id and a secret access key, or neither`);
  }
  return {
    name: config.name,
    endpoint: config.endpoint,
    region: config.region,
    bucket: config.bucket,
    prefix: config.prefix,
    forcePathStyle: config.forcePathStyle,
    accessKeyId,
    secretAccessKey,
    sessionToken,
  };
}
