// The coordinator's calls to data nodes: the ones the healing and tiering jobs need, behind a small
// interface (the executors never see gRPC). One cached channel per node address.
import * as grpc from '@grpc/grpc-js';
import { StrataError } from '../../common/errors.js';
import { DataNodeChannels, callUnary, fromServiceError, type ChannelOptionsFor } from '../../common/grpc.js';
import type { TierCopy } from '../../common/object-tier.js';
import type { TlsContext } from '../../common/tls.js';
import type { ListedCopy } from './planner.js';
import type { GrantMinter } from '../grant-minter.js';

export interface NodeAddress {
  nodeId: string;
  address: string;
}

export interface DataNodeOps {
  /**
   * Has `target` pull the chunk from the first source that answers (or, failing those, from its
   * object in a tier: a recall), verify it and store it.
   */
  replicate(target: NodeAddress, chunk: { chunkId: string; length: number; crc32c: number }, sources: NodeAddress[], tier?: TierCopy): Promise<void>;
  /** Has `node` upload its stored copy of the chunk to a tier's object `key`; resolves to the verified object. */
  tierUpload(node: NodeAddress, chunkId: string, tier: string, key: string): Promise<TierCopy>;
  /** Idempotent: a missing chunk is fine. */
  delete(node: NodeAddress, chunkId: string): Promise<void>;
  /**
   * Whether the node's process is gone: true only when its address refuses connections (nothing
   * listens there), never for a slow or unreachable node, which waits out the grace period.
   */
  refusesConnections(node: NodeAddress): Promise<boolean>;
  /** Every chunk the node serves; throws rather than return a partial listing. */
  list(node: NodeAddress): Promise<ListedCopy[]>;
  close(): void;
}

export interface GrpcDataNodeOpsOptions {
  /** Bound on one ReplicateChunk (a whole chunk crosses the network and is fsynced). */
  replicateTimeoutMs: number;
  callTimeoutMs: number;
  /** Bound on one whole listing stream. */
  listTimeoutMs: number;
  /** TLS to the data nodes (common/tls.ts); absent = plain text. */
  tls?: TlsContext;
  /** The leader's own chunk grants (copies, uploads, deletes are refused without one). */
  grants: Pick<GrantMinter, 'forLeader'>;
  /** Channel options of the calls to data nodes: with a node secret, they carry its credential (common/node-credentials.ts). */
  channelOptions?: ChannelOptionsFor;
}

interface WireTierCopy {
  tier: string;
  key: string;
  storedBytes: number | string;
  crc32c: number;
}

interface WireListed {
  chunkId: string;
  storedAtMs: number;
}

export class GrpcDataNodeOps implements DataNodeOps {
  private readonly channels: DataNodeChannels;

  constructor(private readonly options: GrpcDataNodeOpsOptions) {
    this.channels = new DataNodeChannels(options.tls, options.channelOptions);
  }

  async replicate(target: NodeAddress, chunk: { chunkId: string; length: number; crc32c: number }, sources: NodeAddress[], tier?: TierCopy): Promise<void> {
    try {
      await callUnary(this.client(target.address), 'ReplicateChunk', { ...chunk, sources, tier: tier ?? null, grant: this.options.grants.forLeader('rw', chunk.chunkId) }, this.options.replicateTimeoutMs, describe(target));
    } catch (err) {
      // The node already serves the chunk (a leftover copy): it is as good as a new one.
      if (!(err instanceof StrataError) || err.kind !== 'Exists') throw err;
    }
  }

  async tierUpload(node: NodeAddress, chunkId: string, tier: string, key: string): Promise<TierCopy> {
    const reply = await callUnary<WireTierCopy>(this.client(node.address), 'TierUpload', { chunkId, tier, key, grant: this.options.grants.forLeader('t', chunkId) }, this.options.replicateTimeoutMs, describe(node));
    return { tier: reply.tier, key: reply.key, storedBytes: Number(reply.storedBytes), crc32c: Number(reply.crc32c) >>> 0 };
  }

  async delete(node: NodeAddress, chunkId: string): Promise<void> {
    await callUnary(this.client(node.address), 'DeleteChunk', { chunkId, grant: this.options.grants.forLeader('d', chunkId) }, this.options.callTimeoutMs, describe(node));
  }

  async refusesConnections(node: NodeAddress): Promise<boolean> {
    try {
      await callUnary(this.client(node.address), 'NodeStatus', {}, PROBE_TIMEOUT_MS, describe(node));
      return false;
    } catch (err) {
      return err instanceof StrataError && err.kind === 'Unavailable' && /connection refused|ECONNREFUSED/i.test(err.message);
    }
  }

  async list(node: NodeAddress): Promise<ListedCopy[]> {
    const deadline = new Date(Date.now() + this.options.listTimeoutMs);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const call = (this.client(node.address) as any).ListChunks({}, { deadline }) as grpc.ClientReadableStream<{ chunks: WireListed[] }>;
    const copies: ListedCopy[] = [];
    try {
      for await (const reply of call) {
        for (const chunk of reply.chunks ?? []) copies.push({ chunkId: chunk.chunkId, nodeId: node.nodeId, storedAtMs: Number(chunk.storedAtMs) || 0 });
      }
    } catch (err) {
      throw fromServiceError(err, describe(node));
    }
    return copies;
  }

  close(): void {
    this.channels.close();
  }

  private client(address: string): grpc.Client {
    return this.channels.get(address);
  }
}

const PROBE_TIMEOUT_MS = 1000;

const describe = (node: NodeAddress) => `data node ${node.nodeId} (${node.address})`;
