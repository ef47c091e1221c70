// The data node's self-healing RPCs: ListChunks (what this node serves, for repair, GC and
// rebalance) and ReplicateChunk (pull a copy from other nodes, or from the chunk's object in a
// tier: a recall). The coordinator decides; these only report and copy, and never store a byte
// that failed a check.
import * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { maxEncodingBytes } from '../common/chunk-codec.js';
import { DataNodeClients, type NodeAddress, type ReadBounds } from '../client/datanode-client.js';
import { StrataError, asStrataError, invalid } from '../common/errors.js';
import { toServiceError, unaryHandler } from '../common/grpc.js';
import type { Logger } from '../common/log.js';
import type { TlsContext } from '../common/tls.js';
import type { TierCopy } from '../common/object-tier.js';
import type { ChunkStore, ListedChunk } from './chunk-store.js';
import { checkEncodingDecoded } from './encoding-check.js';
import { rewrapEncoding } from '../common/chunk-rewrap.js';
import { waitForDrain } from './drain.js';
import type { TierCache } from './tier-cache.js';
import { checkTierCopy } from './tier-fetch.js';
import type { GrantVerifier } from '../common/chunk-grants.js';

export interface ReplicateChunkRequest {
  chunkId: string;
  sources: NodeAddress[];
  length: number;
  crc32c: number; // of the raw bytes; 0 = unknown
  /** The chunk's object: copied from when no source serves the chunk. */
  tier?: Partial<TierCopy> | null;
  /** The leader's read+write grant: checked here, and shown to the sources to read from them. */
  grant?: string;
}

export interface ReplicateChunkReply {
  sourceNodeId: string; // this node's own id when the chunk was already here, intact; `tier:<name>` from a tier
  storedBytes: number;
}

export interface HealingServiceOptions {
  nodeId: string;
  store: ChunkStore;
  log: Logger;
  /** Upper bound on pulling one chunk from one source (the caller's deadline may leave less). */
  sourceTimeoutMs?: number;
  /** Where tiered chunks are fetched through; without it a request's tier copy is not used. */
  tierCache?: TierCache;
  /** TLS to the source nodes (common/tls.ts); absent = plain text. */
  tls?: TlsContext;
  /** Checks ReplicateChunk's grant. */
  grants: GrantVerifier;
}

export interface HealingService {
  handlers: grpc.UntypedServiceImplementation;
  close(): void;
}

/** Chunks per ListChunks message: ~100 KB, far below the message limit. */
export const LIST_BATCH_CHUNKS = 1000;
/** Corrupt chunk ids per heartbeat at most: far below the message limit; the rest follow as DeleteChunk clears these. */
export const MAX_REPORTED_CORRUPT_CHUNKS = 10_000;
const MAX_SOURCES = 16;
const DEFAULT_SOURCE_TIMEOUT_MS = 120_000;
/** Give up this long before the caller's deadline (a tenth of a shorter budget), so the reply still reaches it. */
const REPLY_MARGIN_MS = 500;

type ListCall = grpc.ServerWritableStream<unknown, { chunks: ListedChunk[] }>;

export function createHealingService(options: HealingServiceOptions): HealingService {
  const { nodeId, store, log } = options;
  const timeoutMs = options.sourceTimeoutMs ?? DEFAULT_SOURCE_TIMEOUT_MS;
  const sources = new DataNodeClients({ writeTimeoutMs: timeoutMs, readTimeoutMs: timeoutMs, tls: options.tls });

  async function listChunks(call: ListCall): Promise<void> {
    // Paged through the index, so a slow reader never pins an iterator. An error ends the stream
    // with a status, never a clean end: a partial listing must not look complete (GC relies on it).
    let after: string | undefined;
    for (;;) {
      const chunks = await store.listChunks(after, LIST_BATCH_CHUNKS);
      if (call.cancelled) return;
      if (chunks.length > 0 && !call.write({ chunks })) await waitForDrain(call);
      if (chunks.length < LIST_BATCH_CHUNKS) break;
      after = chunks[chunks.length - 1].chunkId;
    }
    call.end();
  }

  async function replicateChunk(request: ReplicateChunkRequest, call: grpc.ServerUnaryCall<unknown, unknown>): Promise<ReplicateChunkReply> {
    const { chunkId, length } = request;
    options.grants.check(request.grant, chunkId, 'w');
    const expectedCrc = request.crc32c >>> 0;
    const candidates = request.sources ?? [];
    if (candidates.length > MAX_SOURCES) throw invalid(`ReplicateChunk: more than ${MAX_SOURCES} sources`);
    const tier = request.tier ? checkTierCopy(chunkId, request.tier) : undefined;
    if (await store.has(chunkId)) return alreadyHere(request, expectedCrc);
    const bounds = callBounds(call, chunkId, timeoutMs);
    try {
      return await copyFromSources(request, candidates, tier, expectedCrc, bounds);
    } finally {
      bounds.dispose();
    }
  }

  async function copyFromSources(request: ReplicateChunkRequest, candidates: NodeAddress[], tier: TierCopy | undefined, expectedCrc: number, bounds: CallBounds): Promise<ReplicateChunkReply> {
    const { chunkId } = request;
    const { signal } = bounds;
    const failures: string[] = [];
    let sawBadBytes = false;
    let onlyKeyProblems = true;
    for (const source of candidates) {
      signal.throwIfAborted();
      if (!source?.nodeId || !source.address) {
        failures.push('a source without nodeId and address');
        continue;
      }
      if (source.nodeId === nodeId) {
        failures.push(`${source.nodeId}: is this node`);
        continue;
      }
      try {
        const startMs = Date.now();
        const timing: CopyTiming = {};
        // Each source gets the default bound, or what is left of the caller's deadline if less.
        // The leader's grant, shown to the sources: it covers reading the chunk too.
        const read = { timeoutMs: bounds.remainingMs(), signal, grant: request.grant ?? '' };
        const storedBytes =
          (await copyEncoding(source, request, expectedCrc, timing, read)) ?? (await pull(sources.readChunk(source, chunkId, 0, 0, undefined, read), request, expectedCrc, signal));
        log.info({ chunkId, source: source.nodeId, storedBytes, ms: Date.now() - startMs, ...timing }, 'chunk replicated');
        return { sourceNodeId: source.nodeId, storedBytes };
      } catch (err) {
        // Past the caller's deadline or cancelled: no other source is tried.
        signal.throwIfAborted();
        const error = asStrataError(err);
        // Stored meanwhile (a concurrent replication of this id): check that copy instead.
        if (error.kind === 'Exists') return alreadyHere(request, expectedCrc);
        // Refused here (a write of this id in progress, a quarantined copy, a full disk, a bad
        // request): no other source would fare better.
        if (refusedHere(error)) throw error;
        if (error.kind === 'Corrupt') sawBadBytes = true;
        if (error.kind !== 'KeyUnavailable') onlyKeyProblems = false;
        failures.push(`${source.nodeId} (${source.address}): ${error.message}`);
      }
    }
    signal.throwIfAborted();
    if (tier && options.tierCache) {
      try {
        // Not kept in the cache: from now on the local copy serves the chunk.
        const storedBytes = await pull(options.tierCache.read(chunkId, tier, 0, Number.MAX_SAFE_INTEGER, { keep: false }), request, expectedCrc, signal);
        log.info({ chunkId, tier: tier.tier, key: tier.key, storedBytes }, 'chunk recalled from tier');
        return { sourceNodeId: `tier:${tier.tier}`, storedBytes };
      } catch (err) {
        signal.throwIfAborted();
        const error = asStrataError(err);
        if (error.kind === 'Exists') return alreadyHere(request, expectedCrc);
        if (refusedHere(error)) throw error;
        if (error.kind === 'Corrupt') sawBadBytes = true;
        if (error.kind !== 'KeyUnavailable') onlyKeyProblems = false;
        failures.push(`tier '${tier.tier}': ${error.message}`);
      }
    } else if (tier) {
      failures.push(`tier '${tier.tier}': this data node reads no tiers`);
    }
    // Encrypted copies this node has no key for: say so, not that the cluster is unreachable.
    const kind = sawBadBytes ? 'Corrupt' : onlyKeyProblems && failures.length > 0 ? 'KeyUnavailable' : 'Unavailable';
    const why = failures.length > 0 ? failures.join('; ') : 'no sources given';
    throw new StrataError(kind, `chunk ${chunkId}: no source could provide an intact copy (${why})`);
  }

  /**
   * One attempt: stream the chunk's raw bytes from a source (a node, or a tier) into a writer,
   * checking length and crc32c before the commit. A failed check, or `signal` (the caller gave
   * up), aborts the writer: nothing becomes visible. The writer comes first: a refused write
   * never opens the source.
   */
  async function pull(pieces: AsyncIterable<Buffer>, request: ReplicateChunkRequest, expectedCrc: number, signal: AbortSignal): Promise<number> {
    const { chunkId, length } = request;
    const writer = await store.createWriter(chunkId, length); // validates id and length
    try {
      let crc = 0;
      let received = 0;
      for await (const piece of pieces) {
        signal.throwIfAborted();
        received += piece.length;
        if (received > length) throw new StrataError('Corrupt', `chunk ${chunkId}: source sent more than the expected ${length} bytes`);
        crc = crc32c(piece, crc);
        await writer.write(piece);
      }
      if (received !== length) throw new StrataError('Corrupt', `chunk ${chunkId}: source sent ${received} bytes, expected ${length}`);
      if (expectedCrc !== 0 && crc >>> 0 !== expectedCrc) {
        throw new StrataError('Corrupt', `chunk ${chunkId}: crc32c ${crc >>> 0} of the source's bytes, expected ${expectedCrc}`);
      }
      signal.throwIfAborted(); // a caller told it failed finds no copy it was not told of
      return (await writer.commit()).storedBytes;
    } catch (err) {
      await writer.abort().catch(() => {});
      throw err;
    }
  }

  /**
   * One attempt over the source's byte path: its stored encoding, blocks compressed as they are,
   * verified here block by block (stored and raw checksums, then length and crc32c of the whole)
   * and stored as it came: no re-encoding. Null when the source has no byte path.
   */
  async function copyEncoding(source: NodeAddress, request: ReplicateChunkRequest, expectedCrc: number, timing: CopyTiming, read: ReadBounds & { signal: AbortSignal }): Promise<number | null> {
    const { chunkId, length } = request;
    let stepMs = Date.now();
    const lap = () => Date.now() - stepMs + (stepMs = Date.now()) * 0;
    // validates id and length; refused writes never fetch. Committed as fetched: no data key needed.
    const writer = await store.createWriter(chunkId, length, { encoded: true });
    try {
      // An encoding is never larger than its raw bytes plus its head (a block that does not shrink
      // is stored raw) and, encrypted, a tag per block: see maxEncodingBytes.
      const fetched = await sources.readEncoding(source, chunkId, maxEncodingBytes(chunkId, length), read);
      if (!fetched) {
        await writer.abort();
        return null;
      }
      timing.fetchMs = lap();
      // Encrypted copies are checked as they are: the cluster's nodes share the master keys.
      const from = `the copy from ${source.nodeId}`;
      const layout = await checkEncodingDecoded(fetched.bytes, { chunkId, length, crc32c: expectedCrc, from }, store.keys);
      timing.verifyMs = lap();
      read.signal.throwIfAborted();
      // A source not yet re-wrapped (rotate-master running, or its ring behind) sent its older key:
      // the copy is stored under this node's writing key, so a finished rotation leaves none behind.
      const stored = store.keys ? ((await rewrapEncoding(chunkId, fetched.bytes, store.keys, from)).encoding ?? fetched.bytes) : fetched.bytes;
      const { storedBytes } = await writer.commitEncoding(stored, layout.blocks.length);
      timing.commitMs = lap();
      return storedBytes;
    } catch (err) {
      await writer.abort().catch(() => {});
      throw err;
    }
  }

  /** The chunk is here already: success if it is intact and the one asked for. */
  async function alreadyHere(request: ReplicateChunkRequest, expectedCrc: number): Promise<ReplicateChunkReply> {
    const { chunkId } = request;
    const verified = await store.verify(chunkId); // Corrupt (and quarantined) when it is not intact
    if (verified.length !== request.length || (expectedCrc !== 0 && verified.crc32c !== expectedCrc)) {
      throw new StrataError(
        'Conflict',
        `chunk ${chunkId}: this node holds a different chunk of that id (${verified.length} bytes, crc32c ${verified.crc32c}; ` +
          `asked for ${request.length} bytes, crc32c ${expectedCrc})`,
      );
    }
    return { sourceNodeId: nodeId, storedBytes: verified.storedBytes };
  }

  const handlers: grpc.UntypedServiceImplementation = {
    listChunks: (call: ListCall) => {
      listChunks(call).catch((err) => {
        if (!call.cancelled) call.emit('error', toServiceError(err));
      });
    },
    replicateChunk: unaryHandler<ReplicateChunkRequest, ReplicateChunkReply>((request, call) => replicateChunk(request, call)),
  };
  return { handlers, close: () => sources.close() };
}

/** One ReplicateChunk's bounds: aborted at the caller's deadline (less a margin) or when it cancels. */
interface CallBounds {
  signal: AbortSignal;
  /** What one source may take: the default bound, or what is left of the deadline if less. */
  remainingMs(): number;
  dispose(): void;
}

function callBounds(call: grpc.ServerUnaryCall<unknown, unknown>, chunkId: string, defaultMs: number): CallBounds {
  const controller = new AbortController();
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  const startMs = Date.now();
  const budgetMs = Number.isFinite(deadlineMs) ? Math.max(0, deadlineMs - startMs - Math.min(REPLY_MARGIN_MS, (deadlineMs - startMs) / 10)) : Infinity;
  const endMs = startMs + budgetMs;
  const timer = Number.isFinite(budgetMs)
    ? setTimeout(() => controller.abort(new StrataError('Timeout', `chunk ${chunkId}: not replicated within the caller's deadline (${Math.round(budgetMs)} ms)`)), budgetMs)
    : undefined;
  const onCancel = () => controller.abort(new StrataError('Unavailable', `chunk ${chunkId}: replication cancelled by the caller`));
  call.once('cancelled', onCancel);
  if (call.cancelled) onCancel();
  return {
    signal: controller.signal,
    remainingMs: () => Math.max(1, Math.min(defaultMs, endMs - Date.now())),
    dispose: () => {
      clearTimeout(timer);
      call.off('cancelled', onCancel);
    },
  };
}

/** Where one copy's time went (logged with it): fetching the encoding, checking it, storing it durably. */
interface CopyTiming {
  fetchMs?: number;
  verifyMs?: number;
  commitMs?: number;
}

/** Failures of this node's own write: no other source would fare better. */
function refusedHere(error: StrataError): boolean {
  return error.kind === 'Conflict' || error.kind === 'NoSpace' || error.kind === 'Invalid' || error.kind === 'PermissionDenied';
}
