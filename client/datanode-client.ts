// Byte transfer to and from data nodes: over the byte path (common/byte-client.ts) where a node
// advertises one, else over gRPC (one cached channel per node address). A route that turns out
// stale at connect time (the node restarted on another port) is re-resolved once.
import * as grpc from '@grpc/grpc-js';
import { StrataError } from '../common/errors.js';
import { DataNodeChannels, fromServiceError } from '../common/grpc.js';
import { ByteClient, RouteFailed } from '../common/byte-client.js';
import { ByteRoutes } from '../common/byte-routes.js';
import type { TlsContext } from '../common/tls.js';

export interface NodeAddress {
  nodeId: string;
  address: string;
  /** The byte path's host:port when the coordinator knows it; otherwise asked of the node. */
  dataAddress?: string;
}

/** A chunk's stored encoding as another node sent it (checked by the receiver). */
export interface FetchedEncoding {
  bytes: Buffer;
  /** What the source says: raw length and crc32c of the raw bytes. */
  length: number;
  crc32c: number;
}

export interface WriteChunkResult {
  storedOn: string[];
  failed: string[];
  errors: string[];
}

/** Size of one data message on the wire: large enough to amortise framing, far below the limit. */
export const PIECE_BYTES = 1024 * 1024;

/**
 * Chunks up to this size go from the client to every replica at once (each node stores its copy
 * and forwards nothing): one hop and the slowest replica's fsync, instead of a hop to the head,
 * its forwarding hop and the head's wait. Where latency is round trips, not bytes, that halves
 * the hops; bigger chunks take the pipeline, so the client's bandwidth is not split.
 */
export const CLIENT_STAR_MAX_BYTES = 1024 * 1024;

/** A caller's own bounds on one read: less time than the client's default, a signal to give up on. */
export interface ReadBounds {
  timeoutMs?: number;
  signal?: AbortSignal;
  /** The read grant covering the chunk (GetChunksReply.grant, or the leader's; common/chunk-grants.ts). */
  grant?: string;
}

/** Errors after which another placement may succeed; any other from the head fails the write. */
const TRANSIENT_KINDS = new Set(['Unavailable', 'Timeout', 'Corrupt']);

export class DataNodeClients {
  private readonly channels: DataNodeChannels;
  private readonly routes: ByteRoutes;
  private readonly bytes: ByteClient;

  /** `tls`: TLS to the data nodes, gRPC and byte path alike (common/tls.ts); absent = plain text. */
  constructor(private readonly options: { writeTimeoutMs: number; readTimeoutMs: number; tls?: TlsContext }) {
    this.channels = new DataNodeChannels(options.tls);
    this.routes = new ByteRoutes((address) => this.channels.get(address));
    this.bytes = new ByteClient(options.tls);
  }

  private client(address: string): grpc.Client {
    return this.channels.get(address);
  }

  /**
   * `attempt` over the node's byte path, retried once on a fresh route when the first was stale;
   * null when the node has no byte path (the caller uses gRPC).
   */
  private async viaBytes<T>(node: NodeAddress, attempt: (route: string, peer: string) => Promise<T>): Promise<{ value: T } | null> {
    let route = await this.routes.resolve(node);
    for (let tries = 0; route; tries++) {
      try {
        return { value: await attempt(route, `data node ${node.nodeId} (${route})`) };
      } catch (err) {
        if (!(err instanceof RouteFailed) || tries > 0) throw err;
        this.routes.forget(node);
        route = await this.routes.resolve(node);
      }
    }
    return null;
  }

  /**
   * Stores one chunk on every node of `pipeline`: a small one straight to each node over the byte
   * path (see CLIENT_STAR_MAX_BYTES), else streamed to pipeline[0], which forwards it along the
   * rest. Rejects when pipeline[0] itself failed (a placement problem); a failure further on is
   * reported in the result, the nodes it left without a copy in `failed`.
   */
  async writeChunk(pipeline: NodeAddress[], chunkId: string, data: Buffer, grant = ''): Promise<WriteChunkResult> {
    if (pipeline.length > 1 && data.length <= CLIENT_STAR_MAX_BYTES) {
      const routes = await Promise.all(pipeline.map((node) => this.routes.resolve(node)));
      if (routes.every((route) => route !== null)) return this.writeStar(pipeline, chunkId, data, grant);
    }
    const [head, ...rest] = pipeline;
    const request = { op: 'write' as const, nodeId: head.nodeId, timeoutMs: this.options.writeTimeoutMs, chunkId, length: data.length, pipeline: rest, grant };
    const viaBytes = await this.viaBytes(head, (route, peer) => this.bytes.write(route, request, data, peer));
    if (viaBytes) {
      const reply = viaBytes.value as Partial<WriteChunkResult>;
      return { storedOn: reply.storedOn ?? [], failed: reply.failed ?? [], errors: reply.errors ?? [] };
    }
    return this.writeChunkGrpc(head, rest, chunkId, data, grant);
  }

  /** The same chunk to each node at once, each storing only its own copy. */
  private async writeStar(pipeline: NodeAddress[], chunkId: string, data: Buffer, grant: string): Promise<WriteChunkResult> {
    const outcomes = await Promise.allSettled(pipeline.map((node) => this.writeChunk([node], chunkId, data, grant)));
    const head = outcomes[0];
    // As when the head stores and forwards: its own non-transient failure (no space, a refused
    // request) fails the write; its transient one makes the caller try another placement.
    if (head.status === 'rejected' && !(head.reason instanceof StrataError && TRANSIENT_KINDS.has(head.reason.kind))) throw head.reason;
    const result: WriteChunkResult = { storedOn: [], failed: [], errors: [] };
    outcomes.forEach((outcome, i) => {
      const node = pipeline[i];
      if (outcome.status === 'fulfilled' && outcome.value.storedOn.includes(node.nodeId)) {
        result.storedOn.push(node.nodeId);
        return;
      }
      const why = outcome.status === 'rejected' ? (outcome.reason as Error)?.message ?? String(outcome.reason) : outcome.value.errors.join('; ') || 'not stored';
      result.failed.push(node.nodeId);
      result.errors.push(why);
    });
    return result; // in pipeline order, as a chain reports it
  }

  private writeChunkGrpc(head: NodeAddress, rest: NodeAddress[], chunkId: string, data: Buffer, grant: string): Promise<WriteChunkResult> {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.options.writeTimeoutMs);
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const call = (this.client(head.address) as any).WriteChunk({ deadline }, (err: grpc.ServiceError | null, reply: WriteChunkResult) => {
        if (err) reject(fromServiceError(err, `data node ${head.nodeId} (${head.address})`));
        else resolve({ storedOn: reply.storedOn ?? [], failed: reply.failed ?? [], errors: reply.errors ?? [] });
      }) as grpc.ClientWritableStream<unknown>;
      call.on('error', () => undefined); // reported through the callback
      const pieces = function* () {
        yield { header: { chunkId, length: data.length, pipeline: rest.map(({ nodeId, address }) => ({ nodeId, address })), grant } };
        for (let offset = 0; offset < data.length; offset += PIECE_BYTES) yield { data: data.subarray(offset, offset + PIECE_BYTES) };
      };
      const iterator = pieces();
      const pump = () => {
        for (let next = iterator.next(); !next.done; next = iterator.next()) {
          if (!call.write(next.value)) {
            call.once('drain', pump);
            return;
          }
        }
        call.end();
      };
      pump();
    });
  }

  /**
   * Reads [offset, offset+length) of a chunk from one node; yields verified raw pieces. `tier`
   * (a ChunkLocation's, as the coordinator sent it) lets a node without a copy read it through.
   * `bounds.grant`: a read grant covering the chunk (GetChunksReply.grant).
   */
  async *readChunk(node: NodeAddress, chunkId: string, offset: number, length: number, tier?: unknown, bounds: ReadBounds = {}): AsyncGenerator<Buffer> {
    let route = await this.routes.resolve(node);
    const request = { op: 'read' as const, nodeId: node.nodeId, timeoutMs: this.readTimeoutMs(bounds), chunkId, offset, length, tier: tier ?? null, grant: bounds.grant ?? '' };
    for (let tries = 0; route; tries++) {
      let received = false;
      try {
        for await (const piece of this.bytes.read(route, request, `data node ${node.nodeId} (${route})`, undefined, bounds.signal)) {
          received = true;
          yield piece;
        }
        return;
      } catch (err) {
        // Only a connect-time failure is retried: nothing was yielded then.
        if (!(err instanceof RouteFailed) || tries > 0 || received) throw err;
        this.routes.forget(node);
        route = await this.routes.resolve(node);
      }
    }
    yield* this.readChunkGrpc(node, chunkId, offset, length, tier, bounds);
  }

  private readTimeoutMs(bounds: ReadBounds): number {
    return Math.max(1, Math.min(this.options.readTimeoutMs, bounds.timeoutMs ?? Infinity));
  }

  /**
   * A chunk's stored encoding (FORMAT.md) as `node` holds it, for a copy between nodes: blocks
   * travel compressed as they are. Null when the node has no byte path (then copy raw bytes).
   */
  async readEncoding(node: NodeAddress, chunkId: string, maxBytes: number, bounds: ReadBounds = {}): Promise<FetchedEncoding | null> {
    const request = { op: 'readEncoding' as const, nodeId: node.nodeId, timeoutMs: this.readTimeoutMs(bounds), chunkId, grant: bounds.grant ?? '' };
    const fetched = await this.viaBytes(node, async (route, peer) => {
      const pieces: Buffer[] = [];
      let total = 0;
      // The whole encoding in one frame, assembled into one buffer as it arrives: no concat.
      const reading = this.bytes.read(route, request, peer, { maxDataBytes: maxBytes, slices: false }, bounds.signal);
      for (;;) {
        const next = await reading.next();
        if (next.done) {
          const { length, crc32c } = (next.value ?? {}) as { length?: unknown; crc32c?: unknown };
          if (typeof length !== 'number' || typeof crc32c !== 'number') throw new StrataError('Internal', `${peer}: encoding reply without length and crc32c`);
          return { bytes: pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, total), length, crc32c };
        }
        total += next.value.length;
        if (total > maxBytes) {
          await reading.return(undefined);
          throw new StrataError('Corrupt', `chunk ${chunkId}: ${peer} sent more than ${maxBytes} bytes of encoding`);
        }
        pieces.push(next.value);
      }
    });
    return fetched?.value ?? null;
  }

  private async *readChunkGrpc(node: NodeAddress, chunkId: string, offset: number, length: number, tier: unknown, bounds: ReadBounds): AsyncGenerator<Buffer> {
    const deadline = new Date(Date.now() + this.readTimeoutMs(bounds));
    const request = { chunkId, offset, length, tier: tier ?? null, grant: bounds.grant ?? '' };
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const call = (this.client(node.address) as any).ReadChunk(request, { deadline }) as grpc.ClientReadableStream<{ data: Buffer }>;
    const cancel = () => call.cancel();
    bounds.signal?.addEventListener('abort', cancel, { once: true });
    try {
      if (bounds.signal?.aborted) cancel();
      for await (const reply of call) yield reply.data;
    } catch (err) {
      // Cancelled by the caller's signal: its reason says why.
      if (bounds.signal?.aborted && bounds.signal.reason instanceof StrataError) throw bounds.signal.reason;
      throw fromServiceError(err, `data node ${node.nodeId} (${node.address})`);
    } finally {
      bounds.signal?.removeEventListener('abort', cancel);
      call.cancel();
    }
  }

  close(): void {
    this.bytes.close();
    this.channels.close();
  }
}

export function describeWriteFailure(chunkId: string, result: WriteChunkResult, required: number): StrataError {
  const reasons = result.failed.map((node, i) => `${node}: ${result.errors[i] ?? 'failed'}`).join('; ');
  return new StrataError('Unavailable', `chunk ${chunkId}: ${result.storedOn.length} of ${required} required replicas stored${reasons ? ` (${reasons})` : ''}`);
}
