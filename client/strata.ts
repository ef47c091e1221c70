// The SDK: an fs-like API over a strata cluster. Metadata goes to a coordinator (with
// failover); bytes go straight to data nodes.
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StrataError, invalid } from '../common/errors.js';
import { TokenSource, type TokenProvider } from './auth/token-source.js';
import { TlsContext, type TlsFiles } from '../common/tls.js';
import { CoordinatorClient } from './coordinator-client.js';
import { DataNodeClients } from './datanode-client.js';
import { SessionInodes, type InodeOps, type Owner } from './inodes.js';
import { processOwner } from './owner.js';
import { readRange } from './reader.js';
import { TieringCalls, type TierPathInfo, type TierPolicy, type TierRecallResult, type TierStatusReport } from './tiering.js';
import type { AttrChanges, DirEntry, FileStat, FsStats, HealthReport, NodeStatus, QuotaInfo, ReadOptions, RewrapPage, WriteOptions } from './types.js';
import { toDirEntry, toFileStat } from './wire.js';
import { ChunkWriter, uploadChunk, type AllocateReply } from './writer.js';

export interface ConnectOptions {
  /** Coordinator addresses: an array or a comma list of host:port. */
  coordinators: string[] | string;
  /** Deadline of one metadata call. Default 10 s. */
  callTimeoutMs?: number;
  /** How long to keep trying other coordinators when one is unreachable. Default 15 s. */
  failoverTimeoutMs?: number;
  /** Deadline of one chunk transfer. Default 120 s. */
  transferTimeoutMs?: number;
  /** Chunks uploading at once per write stream. Default 3. */
  writeConcurrency?: number;
  /** Chunks fetched ahead of the reader. Default 2. */
  readAhead?: number;
  /**
   * Metadata on one multiplexed session stream per coordinator (default). false: one unary RPC
   * per call, as before the session existed (for comparisons; inode operations need the session).
   */
  session?: boolean;
  /**
   * What carries the sessions: 'auto' (default) = plain TCP where the coordinator offers it
   * (about half a gRPC stream's round trip), else the gRPC call; 'grpc' = always gRPC.
   * STRATA_SESSION_TCP=off makes the default 'grpc'.
   */
  sessionTransport?: 'auto' | 'grpc';
  /** An OIDC access token for coordinators that run with auth on (it is never logged). */
  token?: string;
  /** Or where fresh tokens come from (asked again before the last one expires). */
  tokenProvider?: TokenProvider;
  /**
   * TLS: PEM files of the CA that signed the cluster's servers (required for TLS) and, optionally,
   * a client certificate and key. Absent: STRATA_TLS_CA, STRATA_TLS_CERT, STRATA_TLS_KEY; false or
   * no CA: plain text.
   */
  tls?: TlsFiles | false;
}

/** The TLS files a client uses when told none: the environment's. */
export function tlsFilesFromEnv(env: NodeJS.ProcessEnv = process.env): TlsFiles {
  return { ca: env.STRATA_TLS_CA || undefined, cert: env.STRATA_TLS_CERT || undefined, key: env.STRATA_TLS_KEY || undefined };
}

const READDIR_PAGE = 1000;
/** Setting a new quota walks the tree under it: far longer than one metadata call may take. */
const QUOTA_SET_TIMEOUT_MS = 30 * 60_000;
/** Removals of one directory page in flight at once during rm -r. */
const RM_PIPELINE = 64;

/** A retried removal that finds the name gone was applied by the attempt whose outcome was unknown. */
const goneMeansDone = (error: StrataError) => (error.kind === 'NotFound' ? {} : undefined);

export interface ListOptions {
  /** Each entry's attributes too (one more lookup per entry on the coordinator). */
  withStats?: boolean;
  /** Start past this name ('' = from the start). */
  after?: string;
  /** Entries per call; default 1000, the coordinator caps it at 10,000. */
  pageSize?: number;
}

/** A placement for one chunk write, granted by Create: opaque to callers. */
export type ChunkGrant = AllocateReply;

/** `owner`: of a new file; default: this process's uid and gid (client/owner.ts). */
type CreateOptions = Pick<WriteOptions, 'mode' | 'replication' | 'chunkSize' | 'exclusive'> & { truncate?: boolean; owner?: Owner };

/** What ranged reads by inode need: the file's identity and shape as a stat gave them. */
export type FileRef = Pick<FileStat, 'ino' | 'size' | 'chunkSize'>;

export interface ChunkPlacement {
  index: number;
  chunkId: string;
  length: number;
  /** Data nodes holding a copy (none when the bytes are only in an object tier). */
  nodes: string[];
  /** The chunk's object in a tier, when it has been moved there. */
  tier?: { tier: string; key: string; storedBytes: number; crc32c: number };
}

interface WireChunk {
  index: number;
  chunkId: string;
  length: number;
  replicas: { nodeId: string }[];
  tier?: { tier: string; key: string; storedBytes: number | string; crc32c: number } | null;
}

export class Strata {
  private readonly tiering: TieringCalls;
  private inodeOps: SessionInodes | undefined;

  private constructor(
    private readonly coordinator: CoordinatorClient,
    private readonly datanodes: DataNodeClients,
    private readonly options: Required<Pick<ConnectOptions, 'writeConcurrency' | 'readAhead'>>,
    private readonly sessions: boolean,
  ) {
    this.tiering = new TieringCalls(coordinator);
  }

  /** Connects lazily: the first call reaches a coordinator. */
  static connect(options: ConnectOptions): Strata {
    const addresses = (Array.isArray(options.coordinators) ? options.coordinators : options.coordinators.split(','))
      .map((a) => a.trim())
      .filter(Boolean);
    // Read and checked once, here: a missing or wrong file is one clear line.
    const tls = options.tls === false ? undefined : TlsContext.forClient(options.tls ?? tlsFilesFromEnv());
    const coordinator = new CoordinatorClient({
      tls,
      addresses,
      callTimeoutMs: options.callTimeoutMs ?? 10_000,
      failoverTimeoutMs: options.failoverTimeoutMs ?? 15_000,
      session: options.session ?? true,
      sessionTransport: options.sessionTransport,
      tokens: tokenSourceOf(options),
    });
    const transferTimeoutMs = options.transferTimeoutMs ?? 120_000;
    const datanodes = new DataNodeClients({ writeTimeoutMs: transferTimeoutMs, readTimeoutMs: transferTimeoutMs, tls });
    return new Strata(coordinator, datanodes, { writeConcurrency: options.writeConcurrency ?? 3, readAhead: options.readAhead ?? 2 }, options.session ?? true);
  }

  /** What carries the session to each coordinator ('unknown' before its first request). */
  get sessionTransports(): Array<'tcp' | 'grpc' | 'unknown'> {
    return this.coordinator.sessionTransports;
  }

  /** Requests sent to coordinators so far (each attempt counts): cached answers cost none. */
  get metadataRequests(): number {
    return this.coordinator.requestsSent;
  }

  /** The same, per op ('leasedLookup', 'mkdirAt', 'Stat', ...): which requests a cache saved. */
  get metadataRequestsByOp(): Record<string, number> {
    return Object.fromEntries(this.coordinator.requestsSentByOp);
  }

  /** Mean microseconds from sending a metadata request to its answer, per op (each attempt counts). */
  get metadataMicrosByOp(): Record<string, number> {
    return meanMicros(this.coordinator.requestMsByOp, this.coordinator.requestsSentByOp);
  }

  /** Whether a session stream to some coordinator is open and greeted (a mount's readiness). */
  get sessionOpen(): boolean {
    return this.coordinator.sessionOpen;
  }

  /** The namespace by inode and (parent inode, name): what a mount needs (client/inodes.ts). */
  get inodes(): InodeOps {
    return (this.inodeOps ??= new SessionInodes(this.coordinator));
  }

  async stat(path: string): Promise<FileStat> {
    const reply = await this.coordinator.call<{ attr: unknown }>('Stat', { path });
    return toFileStat(reply.attr);
  }

  /** Whether the path exists (a NotFound is false; any other failure throws). */
  async exists(path: string): Promise<boolean> {
    try {
      await this.stat(path);
      return true;
    } catch (err) {
      if (err instanceof StrataError && err.kind === 'NotFound') return false;
      throw err;
    }
  }

  /**
   * Entries of a directory, page by page, in bytewise name order; `after` starts past that name.
   * `pageSize` (at most 10,000) trades reply size for round trips.
   */
  async *list(path: string, options: ListOptions = {}): AsyncGenerator<DirEntry> {
    let after = options.after ?? '';
    for (;;) {
      const reply = await this.coordinator.call<{ entries: unknown[]; more: boolean }>('ReadDir', {
        path,
        after,
        limit: options.pageSize ?? READDIR_PAGE,
        withAttrs: !!options.withStats,
      });
      const entries = reply.entries.map(toDirEntry);
      yield* entries;
      if (!reply.more || entries.length === 0) return;
      after = entries[entries.length - 1].name;
    }
  }

  async readdir(path: string, options: Omit<ListOptions, 'after'> = {}): Promise<DirEntry[]> {
    const entries: DirEntry[] = [];
    for await (const entry of this.list(path, options)) entries.push(entry);
    return entries;
  }

  /** `owner` of what is made: default this process's uid and gid. */
  async mkdir(path: string, options: { parents?: boolean; mode?: number; owner?: Owner } = {}): Promise<FileStat> {
    const reply = await this.coordinator.call<{ attr: unknown }>('Mkdir', { path, parents: !!options.parents, mode: options.mode ?? 0, owner: options.owner ?? processOwner() });
    return toFileStat(reply.attr);
  }

  /** Removes a file, symlink or empty directory; `recursive` removes a whole tree. */
  async rm(path: string, options: { recursive?: boolean; onRemoved?: (path: string) => void } = {}): Promise<void> {
    if (options.recursive) {
      const stat = await this.stat(path);
      if (stat.isDirectory()) await this.emptyTree(stat.ino, path, options.onRemoved);
    }
    await this.coordinator.call('Remove', { path }, goneMeansDone);
    options.onRemoved?.(path);
  }

  /**
   * Removes everything under directory `ino` (at `path`): its entries by (parent, name), so the
   * coordinator resolves no path per entry, and the removals of a page pipelined on the session.
   */
  private async emptyTree(ino: number, path: string, onRemoved?: (path: string) => void): Promise<void> {
    for (;;) {
      // A page read before deleting from it, from the start each time: paging never skips entries.
      const reply = await this.coordinator.call<{ entries: unknown[] }>('ReadDir', { path, after: '', limit: READDIR_PAGE, withAttrs: false });
      const page = reply.entries.map(toDirEntry);
      if (page.length === 0) return;
      for (const entry of page) if (entry.type === 'directory') await this.emptyTree(entry.ino, joinChild(path, entry.name), onRemoved);
      for (let i = 0; i < page.length; i += RM_PIPELINE) {
        await Promise.all(
          page.slice(i, i + RM_PIPELINE).map(async (entry) => {
            const child = joinChild(path, entry.name);
            if (this.sessions) await this.coordinator.session('removeAt', { parent: ino, name: entry.name }, goneMeansDone);
            else await this.coordinator.call('Remove', { path: child }, goneMeansDone);
            onRemoved?.(child);
          }),
        );
      }
    }
  }

  async rename(from: string, to: string): Promise<void> {
    await this.coordinator.call('Rename', { from, to });
  }

  async symlink(target: string, path: string, options: { owner?: Owner } = {}): Promise<FileStat> {
    const reply = await this.coordinator.call<{ attr: unknown }>('Symlink', { path, target, owner: options.owner ?? processOwner() });
    return toFileStat(reply.attr);
  }

  async readlink(path: string): Promise<string> {
    const stat = await this.stat(path);
    if (!stat.isSymbolicLink()) throw invalid(`${path}: not a symbolic link`);
    return stat.target;
  }

  async setattr(path: string, changes: AttrChanges): Promise<FileStat> {
    const reply = await this.coordinator.call<{ attr: unknown }>('SetAttr', { path, ...changes });
    return toFileStat(reply.attr);
  }

  truncate(path: string, size = 0): Promise<FileStat> {
    return this.setattr(path, { size });
  }

  /**
   * A writable stream that replaces the file's content. It finishes ('finish'/'close')
   * only after every chunk is fsynced on its replicas and committed in metadata.
   */
  async createWriteStream(path: string, options: WriteOptions = {}): Promise<Writable & { stat: FileStat | undefined; fewestCopies: number }> {
    // Chunk 0's placement comes with the create: a small file costs one round trip less.
    const { stat, firstChunk } = await this.createFile(path, { ...options, truncate: true }, options.ackPolicy ?? '');
    const writer = new ChunkWriter(this.coordinator, this.datanodes, {
      firstChunk,
      ino: stat.ino,
      chunkSize: stat.chunkSize,
      ackPolicy: options.ackPolicy,
      maxInFlight: this.options.writeConcurrency,
      maxAttemptsPerChunk: 5,
      onProgress: options.onProgress,
    });
    writer.stat = stat;
    return writer;
  }

  /**
   * Creates a file (or, unless `exclusive`, opens the existing one; `truncate` empties it) and
   * returns its attributes without writing: for callers that write chunks themselves.
   */
  async create(path: string, options: CreateOptions = {}): Promise<FileStat> {
    return (await this.createFile(path, options, null)).stat;
  }

  /**
   * Like create, and also asks for a placement of chunk 0 (`grant`, absent when no node could
   * take it): a caller that writes the first chunk later (a FUSE create, then close) passes it
   * to writeChunkAt and so skips one AllocateChunk round trip.
   */
  async createForWrite(path: string, options: CreateOptions = {}): Promise<{ stat: FileStat; grant?: ChunkGrant }> {
    const { stat, firstChunk } = await this.createFile(path, options, '');
    return { stat, grant: firstChunk };
  }

  /** Create; given an ack policy ('' = the coordinator's default), also a placement for chunk 0. */
  private async createFile(path: string, options: CreateOptions, firstChunkAckPolicy: string | null): Promise<{ stat: FileStat; firstChunk?: AllocateReply }> {
    const reply = await this.coordinator.call<{ attr: unknown; firstChunk?: AllocateReply | null }>('Create', {
      path,
      mode: options.mode ?? 0,
      replication: options.replication ?? 0,
      chunkSize: options.chunkSize ?? 0,
      exclusive: !!options.exclusive,
      truncate: !!options.truncate,
      allocateFirstChunk: firstChunkAckPolicy !== null,
      ackPolicy: firstChunkAckPolicy ?? '',
      owner: options.owner ?? processOwner(),
    });
    // Absent when no node could take it (or from a coordinator that predates the field).
    const firstChunk = reply.firstChunk?.pipeline?.length ? reply.firstChunk : undefined;
    return { stat: toFileStat(reply.attr), firstChunk };
  }

  /**
   * Bytes [start, end) of a file named by inode, so a renamed open file still reads. `file.size`
   * bounds the read (the size its opener saw); holes and bytes past a chunk's end read as zeros.
   */
  readAt(file: FileRef, start: number, end: number): AsyncGenerator<Buffer> {
    const { ino, size, chunkSize } = file;
    return readRange(this.coordinator, this.datanodes, { ino, size, chunkSize, start, end, readAhead: this.options.readAhead });
  }

  /**
   * Replaces chunk `index` of a file with `data` (the whole chunk, at most its chunk size) and
   * commits it; the file grows to cover it. Resolves once the required replicas fsynced it and
   * metadata points at it, with the file's attributes after the commit.
   */
  async writeChunkAt(file: Pick<FileStat, 'ino'>, index: number, data: Buffer, options: Pick<WriteOptions, 'ackPolicy'> & { grant?: ChunkGrant } = {}): Promise<FileStat> {
    if (!Number.isSafeInteger(index) || index < 0) throw invalid(`invalid chunk index ${index}`);
    const { stat } = await uploadChunk(this.coordinator, this.datanodes, {
      ino: file.ino,
      index,
      data,
      ackPolicy: options.ackPolicy,
      maxAttempts: 5,
      failedNodes: new Set(),
      // A stale grant (its node died, or its commit window passed) costs one attempt, no more.
      placement: options.grant,
      // Through the inode cache when there is one: the file's attributes from the reply stay
      // cached under its lease (its own change), not pushed away and read again.
      commit: this.inodeOps && this.sessions ? (request) => this.inodeOps!.commitChunk(request) : undefined,
    });
    return stat;
  }

  async writeFile(path: string, data: Buffer | string | Readable | AsyncIterable<Buffer>, options: WriteOptions = {}): Promise<FileStat> {
    const stream = await this.createWriteStream(path, options);
    if (typeof data === 'string' || Buffer.isBuffer(data)) {
      // A buffer needs no stream plumbing (which costs more than a small file's whole write).
      await new Promise<void>((resolve, reject) => {
        stream.once('error', reject);
        // end's callback also runs when the last chunks failed (with the error): never a silent success.
        stream.end(Buffer.from(data), (err?: Error | null) => (err ? reject(err) : resolve()));
      });
    } else await pipeline(data, stream);
    return stream.stat ?? (await this.stat(path));
  }

  /** A readable stream of the file (or of bytes start..end inclusive). */
  async createReadStream(path: string, options: ReadOptions = {}): Promise<Readable> {
    const stat = await this.stat(path);
    if (stat.isDirectory()) throw new StrataError('IsDir', `${path}: is a directory`);
    if (stat.isSymbolicLink()) throw invalid(`${path}: is a symbolic link (to ${stat.target}); read the target`);
    const start = options.start ?? 0;
    // Past the end reads nothing, as with fs.createReadStream.
    const endExclusive = options.end === undefined ? Math.max(start, stat.size) : options.end + 1;
    if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(endExclusive) || endExclusive < start) {
      throw invalid(`invalid byte range ${start}..${options.end}`);
    }
    const pieces = readRange(this.coordinator, this.datanodes, {
      ino: stat.ino,
      size: stat.size,
      chunkSize: stat.chunkSize,
      start,
      end: endExclusive,
      readAhead: this.options.readAhead,
      keepAtime: options.keepAtime,
    });
    return Readable.from(pieces, { objectMode: false });
  }

  async readFile(path: string, options: ReadOptions = {}): Promise<Buffer> {
    const pieces: Buffer[] = [];
    for await (const piece of await this.createReadStream(path, options)) pieces.push(piece);
    return Buffer.concat(pieces);
  }

  /** Where each chunk of a file lives: ids, lengths and replica node ids (for tools and tests). */
  async locate(path: string): Promise<ChunkPlacement[]> {
    const stat = await this.stat(path);
    const placements: ChunkPlacement[] = [];
    for (let fromIndex = 0; ; ) {
      const reply = await this.coordinator.call<{ chunks: WireChunk[] }>('GetChunks', { ino: stat.ino, fromIndex, count: 0 });
      if (reply.chunks.length === 0) return placements;
      for (const chunk of reply.chunks) {
        const { tier } = chunk;
        placements.push({
          index: Number(chunk.index),
          chunkId: chunk.chunkId,
          length: Number(chunk.length),
          // A tiered chunk's replicas are the nodes that would read it through, not copies.
          nodes: tier ? [] : chunk.replicas.map((r) => r.nodeId),
          ...(tier ? { tier: { tier: tier.tier, key: tier.key, storedBytes: Number(tier.storedBytes), crc32c: tier.crc32c >>> 0 } } : {}),
        });
      }
      fromIndex = Number(reply.chunks[reply.chunks.length - 1].index) + 1;
    }
  }

  /** Cluster capacity and counts, with the nearest quota at or above `at` (a path or an inode; default the root). */
  async statfs(at: { path?: string; ino?: number } = {}): Promise<FsStats> {
    return this.coordinator.call<FsStats>('StatFs', { path: at.path ?? '', ino: at.ino ?? 0 });
  }

  /**
   * Sets the quota on directory `path` (a tenant's: tenantRootPath): limits of bytes (logical file
   * sizes) and files (inodes under it); absent = keep, 0 = no limit. A new quota (or `recount`)
   * walks the tree under it once to count its usage, so this may take a while on a big tree.
   */
  async quotaSet(path: string, limits: { bytes?: number; files?: number }, options: { recount?: boolean } = {}): Promise<QuotaInfo> {
    const request = { path, limitBytes: limits.bytes, limitFiles: limits.files, recount: !!options.recount };
    return this.coordinator.call<QuotaInfo>('QuotaSet', request, undefined, QUOTA_SET_TIMEOUT_MS);
  }

  /** The quota set on directory `path` (NotFound when none is). */
  async quotaGet(path: string): Promise<QuotaInfo> {
    return this.coordinator.call<QuotaInfo>('QuotaGet', { path });
  }

  async quotaList(): Promise<QuotaInfo[]> {
    return (await this.coordinator.call<{ quotas: QuotaInfo[] }>('QuotaList', {})).quotas;
  }

  async quotaRemove(path: string): Promise<void> {
    await this.coordinator.call('QuotaRemove', { path });
  }

  async nodes(): Promise<NodeStatus[]> {
    const reply = await this.coordinator.call<{ nodes: NodeStatus[] }>('ListNodes', {});
    return reply.nodes;
  }

  /** Chunk health and the repair queue; `maxFiles` bounds the affected files listed (default 100). */
  async health(options: { maxFiles?: number } = {}): Promise<HealthReport> {
    return this.coordinator.call<HealthReport>('Health', { maxFiles: options.maxFiles ?? 0 });
  }

  /** Stops placing chunks on a node and moves its copies away; it shows "drained" when done. */
  async drainNode(nodeId: string): Promise<NodeStatus> {
    return this.coordinator.call<NodeStatus>('DrainNode', { nodeId });
  }

  /** Forgets a node; refused (NotEmpty) while it holds the only copy of any chunk. */
  async removeNode(nodeId: string): Promise<void> {
    await this.coordinator.call('RemoveNode', { nodeId });
  }

  /**
   * Master key rotation, one page of a node's chunks: those not under the node's newest master key
   * get their data key wrapped by it (admin). Page on with `nextAfter` until `done`.
   */
  async rewrapMasterKeys(nodeId: string, afterChunkId = '', limit = 0): Promise<RewrapPage> {
    return this.coordinator.call<RewrapPage>('RewrapMasterKeys', { nodeId, afterChunkId, limit }, undefined, 660_000);
  }

  /** Adds a chunk grant signing key that signs from `activateAfterMs` on; grants already out stay valid (admin). */
  async rotateGrantKeys(activateAfterMs = 0): Promise<{ keyId: string; activeFromMs: number; keyIds: string[] }> {
    return this.coordinator.call('RotateGrantKeys', { activateAfterMs });
  }

  /** Asks the leader to even out usage to within `thresholdPercent` of the mean (default 10). */
  async rebalance(options: { thresholdPercent?: number } = {}): Promise<{ movesPlanned: number; message: string }> {
    return this.coordinator.call('Rebalance', { thresholdPercent: options.thresholdPercent ?? 0 });
  }

  /**
   * Sets the tiering policy of a directory (inherited below it) or a file; with `cluster`, the
   * cluster-wide policy (`path` ignored; limit it with `pathPrefix`). `tier: ''` = never tier.
   */
  async tierSet(path: string, policy: Partial<TierPolicy> & { tier: string }, options: { cluster?: boolean } = {}): Promise<TierPathInfo> {
    return this.tiering.set(path, policy, options);
  }

  /** Removes the policy set on a path (or the cluster-wide one): inherited policies apply again. */
  async tierClear(target: string | { cluster: true }): Promise<TierPathInfo> {
    return this.tiering.clear(target);
  }

  /** Effective policy and pin of a path, and its files' chunks: local vs tiered. */
  async tierGet(path: string): Promise<TierPathInfo> {
    return this.tiering.get(path);
  }

  /** Keeps a file or subtree local (never tiered), or (pin false) lets policies apply again. */
  async tierPin(path: string, pin = true): Promise<TierPathInfo> {
    return this.tiering.pin(path, pin);
  }

  /** Pins a file or subtree and asks the leader to bring its tiered chunks back; poll tierGet for progress. */
  async tierRecall(path: string): Promise<TierRecallResult> {
    return this.tiering.recall(path);
  }

  /** Configured tiers with their chunks and state, local chunks, and the leader's tiering queue. */
  async tierStatus(): Promise<TierStatusReport> {
    return this.tiering.status();
  }

  /**
   * Closes the connections. A client holding leases first gives them back (bounded by a second),
   * so others' changes never wait for its lease to run out; await it before exiting for that.
   */
  close(): Promise<void> {
    const released = this.inodeOps?.releaseLeases() ?? Promise.resolve();
    return released.then(() => {
      this.coordinator.close();
      this.datanodes.close();
    });
  }
}

function joinChild(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}

function tokenSourceOf(options: ConnectOptions): TokenSource | undefined {
  if (options.token !== undefined && options.tokenProvider) throw invalid('pass token or tokenProvider, not both');
  if (options.tokenProvider) return new TokenSource(options.tokenProvider);
  return options.token !== undefined ? TokenSource.fixed(options.token) : undefined;
}

/** Totals in milliseconds, per key, as mean whole microseconds per count. */
function meanMicros(totalMs: Map<string, number>, counts: Map<string, number>): Record<string, number> {
  return Object.fromEntries([...totalMs].map(([op, ms]) => [op, Math.round((ms * 1000) / (counts.get(op) || 1))]));
}
