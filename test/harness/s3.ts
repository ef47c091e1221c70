// A real S3-protocol server for tests and benchmarks: s3rver on a loopback port, objects in a
// temp dir. It can be stopped and started again on the same port and directory (an outage),
// and hands out `--tier` specs and ObjectTier clients for its buckets.
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { S3ObjectTier, type TierTarget } from '../../common/object-tier.js';
import { freePort, tempDir, type TempDir } from './ports.js';

/** s3rver accepts any key pair whose access key it knows; these are its built-in defaults. */
export const S3_ACCESS_KEY = 'S3RVER';
export const S3_SECRET_KEY = 'S3RVER';

/** An object change the server made, e.g. `ObjectCreated:Post` for a completed multipart upload. */
export interface S3ObjectEvent {
  name: string;
  key: string;
}

export class S3Server {
  private server: S3rver | undefined;
  /** Every object change since start, oldest first: how tests see that an upload went up in parts. */
  readonly objectEvents: S3ObjectEvent[] = [];
  private constructor(
    readonly port: number,
    readonly dir: TempDir,
  ) {}

  static async start(): Promise<S3Server> {
    const s3 = new S3Server(await freePort(), await tempDir('s3'));
    await s3.resume();
    return s3;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.server !== undefined;
  }

  /** Starts (again) on the same port and directory: objects stored before are still there. */
  async resume(): Promise<void> {
    if (this.server) return;
    const server = new S3rver({ address: '127.0.0.1', port: this.port, silent: true, directory: this.dir.path, resetOnClose: false });
    server.on('event', (event) => {
      for (const record of event.Records) this.objectEvents.push({ name: record.eventName, key: record.s3.object.key });
    });
    await server.run();
    this.server = server;
  }

  /** Stops serving (connections are refused) without losing objects. */
  async pause(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = server.close();
    // close() alone waits for every open connection, and clients keep reusing their keep-alive
    // ones (a tiering job retrying, say): an outage must cut them, as a real one would.
    server.httpServer?.closeAllConnections();
    await closed;
  }

  async createBucket(bucket: string): Promise<void> {
    const client = new S3Client({ endpoint: this.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: S3_ACCESS_KEY, secretAccessKey: S3_SECRET_KEY } });
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
    } finally {
      client.destroy();
    }
  }

  target(name: string, bucket: string, prefix = ''): TierTarget {
    return { name, endpoint: this.endpoint, region: 'us-east-1', bucket, prefix, forcePathStyle: true, accessKeyId: S3_ACCESS_KEY, secretAccessKey: S3_SECRET_KEY, sessionToken: '' };
  }

  /** An ObjectTier client on a bucket here (close() it when done). */
  tier(name: string, bucket: string, prefix = ''): S3ObjectTier {
    return new S3ObjectTier(this.target(name, bucket, prefix));
  }

  /** The coordinator flag value for a tier on a bucket here; credentials come from the env (s3Env). */
  tierSpec(name: string, bucket: string, prefix = ''): string {
    const query = `endpoint=${encodeURIComponent(this.endpoint)}&path_style=true`;
    return `${name}=s3://${bucket}/${prefix}?${query}`;
  }

  async stop(): Promise<void> {
    await this.pause();
    await this.dir.cleanup();
  }
}

/** Environment for processes that reach this server with the default AWS credential variables. */
export const s3Env = { AWS_ACCESS_KEY_ID: S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY };
