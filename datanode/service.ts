// The DataNode gRPC service over a ChunkStore: chunk writes with pipeline forwarding, verified
// reads (through an object tier's cache when this node has no intact copy), stat, delete, node
// status, tier uploads. Every failure leaves through toServiceError; none escapes.
import type { CountSeries } from '../common/metrics.js';
import * as grpc from '@grpc/grpc-js';
import { statfs } from 'node:fs/promises';
import type { ChunkStore, ChunkWriter } from './chunk-store.js';
import { DataNodeChannels, toServiceError, unaryHandler } from '../common/grpc.js';
import { ByteClient } from '../common/byte-client.js';
import { ByteRoutes } from '../common/byte-routes.js';
import { StrataError, invalid } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { TlsContext } from '../common/tls.js';
import type { NodeInfo, ScrubStatus } from '../common/node-info.js';
import { waitForDrain } from './drain.js';
import { rewrapPage, type RewrapPage } from './rewrap.js';
import { MAX_REPORTED_CORRUPT_CHUNKS, createHealingService } from './healing-service.js';
import type { TierCopy } from '../common/object-tier.js';
import type { TierCache } from './tier-cache.js';
import { checkTierCopy } from './tier-fetch.js';
import type { TierRegistry } from './tier-registry.js';
import { TierUploader, type TierUploadRequest } from './tier-upload.js';
import type { ByteHandlers } from './byte-server.js';
import type { GrantVerifier } from '../common/chunk-grants.js';
import {
  EncodingHeadSession,
  EncodingReplicaSession,
  PeerEncodedWrites,
  ReplicaMemoryBudget,
  encodedWritesOf,
  replicaHoldBytes,
  type EncodedSession,
} from './encode-once.js';
import {
  ENCODED_WRITE_LENGTH,
  gatherReply,
  openDownstreams,
  type DataNodeGrpcClient,
  type Downstream,
  type NodeAddress,
  type WriteChunkHeader,
  type WriteChunkReply,
  type WriteChunkRequest,
} from './forward.js';

export { STAR_MAX_BYTES } from './forward.js';
export type { NodeAddress, WriteChunkHeader, WriteChunkReply, WriteChunkRequest } from './forward.js';
export interface ReadChunkRequest { chunkId: string; offset: number; length: number; tier?: Partial<TierCopy> | null; grant?: string }
export interface ReadChunkReply { data: Buffer }
export interface ChunkStatReply { chunkId: string; length: number; storedBytes: number; blocks: number }
export type { NodeInfo } from '../common/node-info.js';

export interface DataNodeServiceOptions {
  nodeId: string;
  /** The advertised host:port; a getter because it is known only once the server is bound. */
  address: () => string;
  /** The byte path's advertised host:port, once bound; '' when this node serves none. */
  dataAddress?: () => string;
  zone?: string;
  /** Caps what the node offers; the disk's own size when absent. */
  capacityBytes?: number;
  store: ChunkStore;
  log: Logger;
  /** Upper bound on one forwarded chunk write (the client's own deadline also propagates). */
  downstreamTimeoutMs?: number;
  /** The background scrubber's counters, reported with every NodeStatus and heartbeat. */
  scrubStatus?: () => ScrubStatus;
  /** Object tiers as the coordinators last named them (the owner updates and closes it). */
  tiers: TierRegistry;
  /** Where tiered chunks are read through (the owner closes it). */
  tierCache: TierCache;
  /** TLS to the other data nodes (forwarding, repair copies); absent = plain text. */
  tls?: TlsContext;
  /** Checks the grant of every chunk read, write, copy, upload and delete (common/chunk-grants.ts). */
  grants: GrantVerifier;
  /** What encode-once replica writes may hold in memory at once (default ENCODED_REPLICA_BUDGET_BYTES). */
  encodedReplicaBudgetBytes?: number;
  /** Chunk bytes received and sent over gRPC (metrics); absent = not counted. */
  grpcBytes?: { bytesIn: CountSeries; bytesOut: CountSeries };
}

export interface DataNodeService {
  handlers: grpc.UntypedServiceImplementation;
  /** The same reads and writes for the byte path (datanode/byte-server.ts). */
  byteHandlers: ByteHandlers;
  nodeInfo(): Promise<NodeInfo>;
  /** Closes the cached clients to downstream nodes. */
  close(): void;
}

const READ_PIECE_BYTES = 1024 * 1024;
const MAX_PIPELINE_NODES = 16;
const INBOUND_READ_AHEAD_MESSAGES = 2;
const DEFAULT_DOWNSTREAM_TIMEOUT_MS = 120_000;

type WriteCall = grpc.ServerReadableStream<WriteChunkRequest, WriteChunkReply>;
type ReadCall = grpc.ServerWritableStream<ReadChunkRequest, ReadChunkReply>;

export function createDataNodeService(options: DataNodeServiceOptions): DataNodeService {
  const { nodeId, store, log, tierCache, grants } = options;
  const channels = new DataNodeChannels(options.tls);
  const routes = new ByteRoutes((address) => channels.get(address));
  const bytes = new ByteClient(options.tls);
  const healing = createHealingService({ nodeId, store, log, tierCache, tls: options.tls, grants });
  const uploader = new TierUploader(store, options.tiers, log);
  const timeoutMs = options.downstreamTimeoutMs ?? DEFAULT_DOWNSTREAM_TIMEOUT_MS;
  const peerModes = new PeerEncodedWrites((address) => channels.get(address), log);
  const replicaBudget = new ReplicaMemoryBudget(options.encodedReplicaBudgetBytes);

  const grpcClient = (address: string) => channels.get(address) as unknown as DataNodeGrpcClient;

  /** A chunk write from either transport; `deadlineMs` bounds the forwarded hops. */
  async function openSession(header: WriteChunkHeader, deadlineMs: number, parent?: WriteCall): Promise<EncodedSession> {
    // Before anything opens, here and downstream: each hop checks the same grant again.
    grants.check(header.grant, header.chunkId, 'w');
    const pipeline = header.pipeline ?? [];
    if (pipeline.length > MAX_PIPELINE_NODES) throw invalid(`WriteChunk: pipeline longer than ${MAX_PIPELINE_NODES} nodes`);
    for (const hop of pipeline) {
      if (!hop?.nodeId || !hop.address) throw invalid('WriteChunk: every pipeline entry needs nodeId and address');
      if (hop.nodeId === nodeId) throw invalid(`WriteChunk: pipeline loops back to ${nodeId}`);
    }
    const context = { grpcClient, routes, bytes, deadlineMs: Math.min(deadlineMs, Date.now() + timeoutMs), parent };
    // An encode-once replica (from a head), an encode-once head (from a client, every other node
    // announcing what this one writes), or raw forwarding as before.
    const replica = header.encoded === true;
    if (replica && header.length !== ENCODED_WRITE_LENGTH) throw invalid(`WriteChunk: an encoded write declares length ${ENCODED_WRITE_LENGTH}`);
    const rawLength = replica ? Number(header.rawLength) : header.length;
    // Reserved before anything opens, here or downstream: past the budget the write is Busy.
    const release = replica ? replicaBudget.reserve(header.chunkId, replicaHoldBytes(header.chunkId, rawLength)) : () => undefined;
    try {
      return await openStarted(header, pipeline, context, replica, rawLength, release);
    } catch (err) {
      release();
      throw err;
    }
  }

  async function openStarted(
    header: WriteChunkHeader,
    pipeline: NodeAddress[],
    context: Parameters<typeof openDownstreams>[2],
    replica: boolean,
    rawLength: number,
    release: () => void,
  ): Promise<EncodedSession> {
    const head = !replica && (await peerModes.allAccept(pipeline, encodedWritesOf(store.keys)));
    const downstreams = await openDownstreams({ ...header, length: rawLength, encoded: replica || head }, pipeline, context);
    // The streams open before the local writer, so their setup overlaps this node's index lookup
    // instead of adding to it at every hop. They carry no data until the writer exists: a refused
    // local write cancels them before anything could be stored downstream.
    try {
      const writer = await store.createWriter(header.chunkId, rawLength, { encoded: replica });
      if (replica) return new EncodingReplicaSession(writer, downstreams, nodeId, rawLength, store.keys, release);
      return head ? new EncodingHeadSession(writer, downstreams, nodeId, (failed) => peerModes.forget(failed)) : new WriteSession(writer, downstreams, nodeId);
    } catch (err) {
      for (const downstream of downstreams) downstream.cancel();
      throw err;
    }
  }

  async function writeChunk(call: WriteCall): Promise<WriteChunkReply> {
    boundReadAhead(call);
    let session: EncodedSession | null = null;
    try {
      // Async iteration pulls one message at a time, so a slow disk or downstream pauses the sender.
      for await (const message of call as AsyncIterable<WriteChunkRequest>) {
        if (!session) {
          const header = message.part === 'header' ? message.header : null;
          if (!header) throw invalid('WriteChunk: the first message must be a header');
          const deadline = call.getDeadline();
          const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number.isFinite(deadline) ? Number(deadline) : Infinity;
          session = await openSession(header, deadlineMs, call);
        } else {
          if (message.part !== 'data' || !message.data) throw invalid('WriteChunk: only data may follow the header');
          options.grpcBytes?.bytesIn.inc(message.data.length);
          await session.piece(message.data);
        }
      }
      if (!session) throw invalid('WriteChunk: the stream ended before a header');
      return await finishLogged(session);
    } catch (err) {
      await session?.abort();
      throw err;
    }
  }

  /**
   * Verified raw bytes of a chunk's range: the local copy's, or, when the request names the
   * chunk's tier copy and this node has no intact copy (none, quarantined, or found bad during
   * this read), the tier's through the cache, from wherever the local read stopped.
   */
  async function* chunkBytes(request: ReadChunkRequest): AsyncGenerator<Buffer> {
    const { chunkId, tier } = request;
    grants.check(request.grant, chunkId, 'r');
    let offset = request.offset;
    let length = request.length === 0 ? Number.MAX_SAFE_INTEGER : request.length; // 0 = to the end
    const noIntactCopy = (err: unknown) => tier && err instanceof StrataError && (err.kind === 'NotFound' || err.kind === 'Corrupt');
    let local: number | undefined;
    try {
      local = (await store.stat(chunkId)).length;
    } catch (err) {
      if (!noIntactCopy(err)) throw err;
    }
    if (local !== undefined) {
      if (offset > local) throw invalid(`chunk ${chunkId}: offset ${offset} beyond its ${local} bytes`);
      const wantBytes = Math.min(length, local - offset);
      let sentBytes = 0;
      try {
        for await (const block of store.read(chunkId, offset, wantBytes)) {
          sentBytes += block.length;
          yield block;
        }
        return;
      } catch (err) {
        if (!noIntactCopy(err)) throw err;
        log.warn({ chunkId, err: (err as Error).message }, 'local copy failed; reading the rest from its tier');
        offset += sentBytes;
        length = wantBytes - sentBytes;
      }
    }
    yield* tierCache.read(chunkId, checkTierCopy(chunkId, tier), offset, length);
  }

  async function readChunk(call: ReadCall): Promise<void> {
    // Blocks are 256 KiB; gRPC moves bytes faster in ~1 MiB messages, so coalesce them.
    let batch: Buffer[] = [];
    let batchBytes = 0;
    const flush = async () => {
      const data = batch.length === 1 ? batch[0] : Buffer.concat(batch, batchBytes);
      batch = [];
      options.grpcBytes?.bytesOut.inc(batchBytes);
      batchBytes = 0;
      if (!call.write({ data })) await waitForDrain(call);
    };
    for await (const block of chunkBytes(call.request)) {
      if (call.cancelled) return;
      batch.push(block);
      batchBytes += block.length;
      if (batchBytes >= READ_PIECE_BYTES) await flush();
    }
    if (batchBytes > 0 && !call.cancelled) await flush();
    call.end();
  }

  async function finishLogged(session: EncodedSession): Promise<WriteChunkReply> {
    const reply = await session.finish();
    if (reply.failed.length > 0) log.warn({ chunkId: session.chunkId, failed: reply.failed, errors: reply.errors }, 'chunk stored with downstream failures');
    return reply;
  }

  const byteHandlers: ByteHandlers = {
    nodeId,
    read: (request) => chunkBytes({ ...request, tier: (request.tier ?? null) as ReadChunkRequest['tier'] }),
    openWrite: async (header, deadlineMs) => {
      const session = await openSession(header, deadlineMs);
      return { piece: (data) => session.piece(data), finish: () => finishLogged(session), abort: () => session.abort() };
    },
    readEncoding: async (chunkId, grant) => {
      grants.check(grant, chunkId, 'r');
      return store.readEncoding(chunkId);
    },
  };

  async function nodeInfo(): Promise<NodeInfo> {
    const disk = await statfs(store.dir);
    const { usedBytes, chunks } = store.usage();
    const diskBytes = disk.blocks * disk.bsize;
    const capacityBytes = options.capacityBytes ?? diskBytes;
    const freeBytes = Math.max(0, Math.min(disk.bavail * disk.bsize, capacityBytes - usedBytes));
    const corruptChunks = store.quarantined().slice(0, MAX_REPORTED_CORRUPT_CHUNKS);
    const health = { corruptChunks, scrub: options.scrubStatus?.(), tierCache: tierCache.status() };
    return { nodeId, address: options.address(), dataAddress: options.dataAddress?.() ?? '', capacityBytes, usedBytes, freeBytes, chunks, zone: options.zone ?? '', encodedWrites: encodedWritesOf(store.keys), ...health };
  }

  const handlers: grpc.UntypedServiceImplementation = {
    writeChunk: (call: WriteCall, callback: grpc.sendUnaryData<WriteChunkReply>) => {
      writeChunk(call).then(
        (reply) => callback(null, reply),
        (err) => callback(toServiceError(err) as grpc.ServiceError),
      );
    },
    readChunk: (call: ReadCall) => {
      readChunk(call).catch((err) => {
        if (!call.cancelled) call.emit('error', toServiceError(err));
      });
    },
    statChunk: unaryHandler<{ chunkId: string }, ChunkStatReply>(async ({ chunkId }) => {
      const { length, storedBytes, blocks } = await store.stat(chunkId);
      return { chunkId, length, storedBytes, blocks };
    }),
    deleteChunk: unaryHandler<{ chunkId: string; grant?: string }, Record<string, never>>(async ({ chunkId, grant }) => {
      grants.check(grant, chunkId, 'd');
      await store.delete(chunkId);
      return {};
    }),
    nodeStatus: unaryHandler<unknown, NodeInfo>(() => nodeInfo()),
    // Node-only (run.ts): a coordinator pages through for `strata keys rotate-master`.
    rewrapChunks: unaryHandler<{ afterChunkId?: string; limit?: number }, RewrapPage>(({ afterChunkId, limit }) => rewrapPage(store, String(afterChunkId ?? ''), Number(limit) || 0)),
    tierUpload: unaryHandler<TierUploadRequest & { grant?: string }, TierCopy>(async (request) => {
      // 't', not 'r': only the leader's tiering job is granted it; a client's read grant is not enough.
      grants.check(request.grant, request.chunkId, 't');
      return uploader.upload(request);
    }),
    ...healing.handlers,
  };

  return {
    handlers,
    byteHandlers,
    nodeInfo,
    close() {
      healing.close();
      bytes.close();
      channels.close();
    },
  };
}

/** Local piece writes allowed to queue behind the network (each ≤ 4 MiB). */
const MAX_PENDING_LOCAL_WRITES = 4;

class WriteSession implements EncodedSession {
  private readonly pendingLocal: Promise<void>[] = [];

  constructor(
    private readonly writer: ChunkWriter,
    private readonly downstreams: Downstream[],
    private readonly nodeId: string,
  ) {}

  get chunkId(): string {
    return this.writer.chunkId;
  }

  async piece(data: Buffer): Promise<void> {
    // The writer runs its steps in order, so local writes may queue behind the network:
    // receiving, forwarding and disk overlap, with at most MAX_PENDING_LOCAL_WRITES pieces held.
    const local = this.writer.write(data);
    local.catch(() => undefined); // observed below or in finish()
    this.pendingLocal.push(local);
    await Promise.all(this.downstreams.map((downstream) => downstream.send(data)));
    while (this.pendingLocal.length > MAX_PENDING_LOCAL_WRITES) await this.pendingLocal.shift();
  }

  async finish(): Promise<WriteChunkReply> {
    for (const downstream of this.downstreams) downstream.end();
    try {
      await Promise.all(this.pendingLocal.splice(0));
    } catch (err) {
      this.cancelDownstreams();
      throw err;
    }
    return gatherReply(this.nodeId, this.writer.commit(), this.downstreams);
  }

  async abort(): Promise<void> {
    this.cancelDownstreams();
    await this.writer.abort();
  }

  private cancelDownstreams(): void {
    for (const downstream of this.downstreams) downstream.cancel();
  }
}

/**
 * grpc-js reads up to 16 messages ahead (the objectMode default): with 4 MiB pieces, 64 MiB per
 * stream. Two are enough to keep the pipe full, so every concurrent write stays a few MiB.
 * The knob is private stream state; if it ever moves, the default (bounded, larger) applies.
 */
function boundReadAhead(call: WriteCall): void {
  const state = (call as unknown as { _readableState?: { highWaterMark?: unknown } })._readableState;
  if (typeof state?.highWaterMark === 'number') state.highWaterMark = INBOUND_READ_AHEAD_MESSAGES;
}

