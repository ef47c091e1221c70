// Sequential file writes: bytes are buffered into chunk-sized pieces, each chunk is placed
// by a coordinator, streamed down a replication pipeline, and committed in metadata only
// after the required replicas fsynced it. A failed node means a fresh placement for that
// chunk, so a write succeeds while enough nodes live. Memory: at most maxInFlight chunks.
// uploadChunk (one chunk at any index) is exported for writers that rewrite chunks in place,
// such as the FUSE mount's read-modify-write of a dirty chunk.
import { Writable } from 'node:stream';
import { crc32c } from '@node-rs/crc32';
import { StrataError, asStrataError } from '../common/errors.js';
import type { CoordinatorClient } from './coordinator-client.js';
import { type DataNodeClients, type NodeAddress, describeWriteFailure } from './datanode-client.js';
import type { AckPolicy, FileStat } from './types.js';
import { toFileStat } from './wire.js';

export interface ChunkWriterOptions {
  ino: number;
  chunkSize: number;
  ackPolicy?: AckPolicy;
  /** Chunks uploading at once: overlaps network and disk work, bounds memory. */
  maxInFlight: number;
  /** Fresh placements to try per chunk before the write fails. */
  maxAttemptsPerChunk: number;
  onProgress?: (bytesWritten: number) => void;
  /** A placement for chunk 0 that came with Create: its first attempt skips AllocateChunk. */
  firstChunk?: AllocateReply;
}

const EMPTY = Buffer.alloc(0);
const MIN_BUFFER_BYTES = 64 * 1024;

export interface AllocateReply {
  chunkId: string;
  pipeline: NodeAddress[];
  requiredAcks: number;
  /** The write grant the data nodes check (common/chunk-grants.ts). */
  grant?: string;
}

export class ChunkWriter extends Writable {
  private buffer: Buffer;
  private filled = 0;
  private nextIndex = 0;
  private bytesAcked = 0;
  private readonly inFlight = new Set<Promise<void>>();
  /**
   * Whole-chunk buffers whose upload landed, reused for the next chunks: a big file allocates
   * maxInFlight + 1 of them, not one per chunk. Fresh ones, held until their upload lands, are
   * what drives the client's mark-compact GCs (each one external memory that outlives scavenges).
   */
  private readonly spare: Buffer[] = [];
  private failure: StrataError | undefined;
  /** The file's attributes after the last commit. */
  stat: FileStat | undefined;
  /** Fewest copies any chunk got (below the replication factor when nodes were short). */
  fewestCopies = Infinity;
  /**
   * Nodes that failed during this write. Later chunks avoid them too: the coordinator only
   * learns a node is dead after its heartbeat grace period.
   */
  private readonly failedNodes = new Set<string>();

  constructor(
    private readonly coordinator: CoordinatorClient,
    private readonly datanodes: DataNodeClients,
    private readonly options: ChunkWriterOptions,
  ) {
    super({ highWaterMark: 1024 * 1024 });
    this.buffer = EMPTY;
  }

  override _write(data: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.append(data).then(() => callback(), (err) => callback(err));
  }

  override _final(callback: (error?: Error | null) => void): void {
    (async () => {
      if (this.filled > 0) await this.startChunk();
      await Promise.all(this.inFlight);
      if (this.failure) throw this.failure;
    })().then(() => callback(), (err) => callback(err));
  }

  private async append(data: Buffer): Promise<void> {
    let offset = 0;
    while (offset < data.length) {
      if (this.failure) throw this.failure;
      this.reserve(this.filled + data.length - offset);
      const copied = data.copy(this.buffer, this.filled, offset);
      this.filled += copied;
      offset += copied;
      if (this.filled === this.options.chunkSize) await this.startChunk();
    }
  }

  /**
   * Grows the chunk buffer towards what is needed (doubling, capped at the chunk size): a small
   * file never pays for an 8 MiB allocation, a large one reaches full chunks after a few copies.
   */
  private reserve(wantedBytes: number): void {
    if (this.buffer.length >= Math.min(wantedBytes, this.options.chunkSize)) return;
    const size = Math.min(this.options.chunkSize, Math.max(wantedBytes, this.buffer.length * 2, MIN_BUFFER_BYTES));
    const grown = Buffer.allocUnsafe(size);
    this.buffer.copy(grown, 0, 0, this.filled);
    this.buffer = grown;
  }

  /** Hands the full buffer to an upload; waits while too many uploads are running. */
  private async startChunk(): Promise<void> {
    while (this.inFlight.size >= this.options.maxInFlight) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
    const index = this.nextIndex++;
    const whole = this.buffer;
    const data = whole.subarray(0, this.filled);
    // The next chunk of a big file will fill a whole buffer; start it at full size.
    this.buffer = this.filled === this.options.chunkSize ? (this.spare.pop() ?? Buffer.allocUnsafe(this.options.chunkSize)) : EMPTY;
    this.filled = 0;
    const upload: Promise<void> = this.uploadChunk(index, data).then(
      () => {
        // Stored and committed: no transfer still reads it (a failed attempt's connection is
        // destroyed, never written to again), so the next chunk may fill it.
        if (whole.length === this.options.chunkSize) this.spare.push(whole);
        this.bytesAcked += data.length;
        this.options.onProgress?.(this.bytesAcked);
      },
      (err) => {
        this.failure ??= asStrataError(err);
      },
    );
    const tracked = upload.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  private async uploadChunk(index: number, data: Buffer): Promise<void> {
    const { stat, copies } = await uploadChunk(this.coordinator, this.datanodes, {
      ino: this.options.ino,
      index,
      data,
      ackPolicy: this.options.ackPolicy,
      maxAttempts: this.options.maxAttemptsPerChunk,
      failedNodes: this.failedNodes,
      placement: index === 0 ? this.options.firstChunk : undefined,
    });
    this.stat = stat;
    this.fewestCopies = Math.min(this.fewestCopies, copies);
  }
}

export interface ChunkUploadOptions {
  ino: number;
  /** Chunk index within the file; an existing chunk at this index is replaced atomically. */
  index: number;
  /** The whole chunk: every byte it will hold (at most the file's chunk size). */
  data: Buffer;
  ackPolicy?: AckPolicy;
  /** Fresh placements to try before the upload fails. */
  maxAttempts: number;
  /**
   * Nodes that failed during this write; grown here. Shared by the chunks of one write, since the
   * coordinator only learns a node is dead after its heartbeat grace period.
   */
  failedNodes: Set<string>;
  /** A placement already granted for this chunk (e.g. by Create), used for the first attempt. */
  placement?: AllocateReply;
  /** Sends the CommitChunk (default: the coordinator's CommitChunk call); a cache keeps its reply (SessionInodes.commitChunk). */
  commit?: (request: CommitChunkRequest) => Promise<{ attr: unknown }>;
}

export interface CommitChunkRequest {
  ino: number;
  index: number;
  chunkId: string;
  length: number;
  nodes: string[];
  crc32c: number;
  /** The placement's write grant: the coordinator commits only a chunk it handed this caller. */
  grant: string;
}

/**
 * Stores one chunk: placement from a coordinator, the bytes down the replication pipeline, then
 * CommitChunk. Resolves only once the required replicas fsynced it and metadata points at it.
 * Any chunk index can be (re)written this way: commits replace the index's record atomically.
 */
export async function uploadChunk(
  coordinator: CoordinatorClient,
  datanodes: DataNodeClients,
  options: ChunkUploadOptions,
): Promise<{ stat: FileStat; copies: number }> {
  const { ino, index, data } = options;
  const checksum = crc32c(data);
  const exclude = options.failedNodes;
  let lastError: StrataError | undefined;
  for (let attempt = 0; attempt < options.maxAttempts; attempt++) {
    const granted = attempt === 0 ? options.placement : undefined;
    const placement = granted ?? (await allocate(coordinator, ino, index, options.ackPolicy, exclude));
    let result;
    try {
      result = await datanodes.writeChunk(placement.pipeline, placement.chunkId, data, placement.grant ?? '');
    } catch (err) {
      lastError = asStrataError(err);
      // The grant was refused (it expired while a placement waited, say): a fresh placement
      // brings a fresh one; the node is fine.
      if (lastError.kind === 'PermissionDenied') continue;
      // The head of the pipeline failed (or refused): we cannot tell which nodes are
      // fine, so avoid the head and try a fresh placement.
      if (lastError.kind !== 'Unavailable' && lastError.kind !== 'Timeout' && lastError.kind !== 'Corrupt') throw lastError;
      exclude.add(placement.pipeline[0].nodeId);
      continue;
    }
    if (result.storedOn.length >= placement.requiredAcks) {
      // Outside the data node error handling: a coordinator failure is not a data node's fault
      // (and the coordinator client already fails over between coordinators).
      const request: CommitChunkRequest = { ino, index, chunkId: placement.chunkId, length: data.length, nodes: result.storedOn, crc32c: checksum, grant: placement.grant ?? '' };
      const commit = options.commit ?? ((r: CommitChunkRequest) => coordinator.call<{ attr: unknown }>('CommitChunk', r));
      const reply = await commit(request).catch((err) => {
        // Conflict: past the chunk id's commit window (GC may collect it), or contention: write a fresh chunk.
        if (!(err instanceof StrataError) || err.kind !== 'Conflict') throw err;
        lastError = err;
        return undefined;
      });
      if (reply) return { stat: toFileStat(reply.attr), copies: result.storedOn.length };
      continue;
    }
    // failed[0] surely broke: a chain lists the nodes after it as merely not reached; a star
    // (small chunks) lists each node that failed, and a retry that meets another excludes it then.
    if (result.failed[0]) exclude.add(result.failed[0]);
    lastError = describeWriteFailure(placement.chunkId, result, placement.requiredAcks);
  }
  const kind = lastError?.kind === 'PermissionDenied' ? 'PermissionDenied' : 'Unavailable';
  throw new StrataError(kind, `chunk ${index} of the file could not be stored: ${lastError?.message}`, { cause: lastError });
}

async function allocate(
  coordinator: CoordinatorClient,
  ino: number,
  index: number,
  ackPolicy: AckPolicy | undefined,
  exclude: Set<string>,
): Promise<AllocateReply> {
  const request = (excludeNodes: string[]) => coordinator.call<AllocateReply>('AllocateChunk', { ino, index, excludeNodes, ackPolicy: ackPolicy ?? '' });
  try {
    return await request([...exclude]);
  } catch (err) {
    // Every live node was excluded: the failures may have been passing, so try them again.
    if (!(err instanceof StrataError) || err.kind !== 'Unavailable' || exclude.size === 0) throw err;
    exclude.clear();
    return request([]);
  }
}
