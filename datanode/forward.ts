// Forwarding one chunk write to the next nodes of its pipeline: over the byte path where the hop
// advertises one, else over gRPC WriteChunk. Either way each hop's outcome never rejects: a failed
// hop is reported (with everything behind it) and this node keeps storing its own copy.
import * as grpc from '@grpc/grpc-js';
import type { ByteClient, ByteWrite } from '../common/byte-client.js';
import { RouteFailed } from '../common/byte-client.js';
import type { ByteRoutes } from '../common/byte-routes.js';
import { StrataError, asStrataError } from '../common/errors.js';
import { fromServiceError } from '../common/grpc.js';
import { MAX_CHUNK_BYTES } from '../common/chunk-codec.js';
import { waitForDrain } from './drain.js';

export interface NodeAddress { nodeId: string; address: string; dataAddress?: string }
/**
 * `grant`: the client's write grant for the chunk, checked at every hop (common/chunk-grants.ts).
 * `encoded`: the data is a head node's stored encoding (datanode/encode-once.ts); on the wire
 * `length` is then ENCODED_WRITE_LENGTH and `rawLength` the chunk's bytes, inside this node
 * `length` is the raw length throughout.
 */
export interface WriteChunkHeader { chunkId: string; length: number; pipeline: NodeAddress[]; grant?: string; encoded?: boolean; rawLength?: number }

/**
 * The `length` an encode-once write declares: one byte past the largest chunk, which every node
 * that predates encode-once refuses (Invalid) before storing anything, so it never takes the
 * forwarded encoding for raw bytes.
 */
export const ENCODED_WRITE_LENGTH = MAX_CHUNK_BYTES + 1;
export interface WriteChunkRequest { part?: 'header' | 'data'; header?: WriteChunkHeader | null; data?: Buffer }
export interface WriteChunkReply { storedOn: string[]; failed: string[]; errors: string[] }

/** Chunks up to this size are forwarded by the head to every other node at once (see routesFor). */
export const STAR_MAX_BYTES = 1024 * 1024;

export type DataNodeGrpcClient = grpc.Client & {
  writeChunk(options: grpc.CallOptions, callback: grpc.requestCallback<WriteChunkReply>): grpc.ClientWritableStream<WriteChunkRequest>;
};

export interface ForwardContext {
  grpcClient(address: string): DataNodeGrpcClient;
  routes: ByteRoutes;
  bytes: ByteClient;
  /** When the upstream gives up; every hop gets no more. */
  deadlineMs: number;
  /** An inbound gRPC call: its cancellation propagates down gRPC hops. */
  parent?: grpc.ServerReadableStream<WriteChunkRequest, WriteChunkReply>;
}

export type DownstreamOutcome = { reply: WriteChunkReply } | { error: StrataError };

export interface Downstream {
  readonly outcome: Promise<DownstreamOutcome>;
  send(data: Buffer): Promise<void>;
  end(): void;
  cancel(): void;
  /** Adds what this hop's subtree stored and which of its nodes failed; failed and errors stay aligned. */
  report(outcome: DownstreamOutcome, reply: WriteChunkReply): void;
}

/**
 * Where this node forwards a chunk. Big chunks go down a chain (each node forwards to the next),
 * so every link carries the bytes once and the client's bandwidth is not split. Small ones, where
 * latency is round trips rather than bytes, go from the head to every other node at once (a star):
 * one forwarding hop instead of one per replica, and the slowest fsync instead of their chain.
 */
export function routesFor(header: WriteChunkHeader, pipeline: NodeAddress[]): Array<{ next: NodeAddress; rest: NodeAddress[] }> {
  if (pipeline.length === 0) return [];
  if (header.length <= STAR_MAX_BYTES) return pipeline.map((next) => ({ next, rest: [] }));
  const [next, ...rest] = pipeline;
  return [{ next, rest }];
}

/** Opens a stream to each next hop. Resolving routes is cached: after the first write, no round trip. */
export async function openDownstreams(header: WriteChunkHeader, pipeline: NodeAddress[], context: ForwardContext): Promise<Downstream[]> {
  const hops = routesFor(header, pipeline);
  const routes = await Promise.all(hops.map(({ next }) => context.routes.resolve(next)));
  return hops.map(({ next, rest }, i) => {
    const forwarded: WriteChunkHeader = header.encoded
      ? { chunkId: header.chunkId, length: ENCODED_WRITE_LENGTH, rawLength: header.length, encoded: true, pipeline: rest, grant: header.grant ?? '' }
      : { chunkId: header.chunkId, length: header.length, pipeline: rest, grant: header.grant ?? '' };
    const route = routes[i];
    return route ? new ByteDownstream(route, next, rest, forwarded, context) : new GrpcDownstream(next, rest, forwarded, context);
  });
}

/**
 * This node's part settled (`committing`: its fsynced commit) and every downstream's outcome, as
 * one reply; a failed local commit cancels the downstreams and is the write's failure.
 */
export async function gatherReply(nodeId: string, committing: Promise<unknown>, downstreams: Downstream[]): Promise<WriteChunkReply> {
  const local = committing.catch((err) => {
    for (const downstream of downstreams) downstream.cancel();
    throw err;
  });
  const outcomes = Promise.all(downstreams.map((downstream) => downstream.outcome)); // never rejects
  const [committed] = await Promise.allSettled([local, outcomes]);
  if (committed.status === 'rejected') throw committed.reason;
  const reply: WriteChunkReply = { storedOn: [nodeId], failed: [], errors: [] };
  // Each downstream reports its own subtree, in pipeline order.
  for (const [i, outcome] of (await outcomes).entries()) downstreams[i].report(outcome, reply);
  return reply;
}

abstract class Hop {
  readonly outcome: Promise<DownstreamOutcome>;
  protected settled = false;
  private resolveOutcome!: (outcome: DownstreamOutcome) => void;

  constructor(
    protected readonly hop: NodeAddress,
    protected readonly rest: NodeAddress[],
  ) {
    this.outcome = new Promise((resolve) => (this.resolveOutcome = resolve));
  }

  protected settle(outcome: DownstreamOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.resolveOutcome(outcome);
  }

  report(outcome: DownstreamOutcome, reply: WriteChunkReply): void {
    if ('reply' in outcome) {
      reply.storedOn.push(...(outcome.reply.storedOn ?? []));
      reply.failed.push(...(outcome.reply.failed ?? []));
      reply.errors.push(...(outcome.reply.errors ?? []));
      return;
    }
    // This hop failed: nothing behind it can be known to hold a copy.
    reply.failed.push(this.hop.nodeId, ...this.rest.map((node) => node.nodeId));
    reply.errors.push(`${this.hop.nodeId} (${this.hop.address}): ${outcome.error.message}`);
    reply.errors.push(...this.rest.map((node) => `${node.nodeId} (${node.address}): not reached, ${this.hop.nodeId} failed`));
  }
}

/** One forwarded WriteChunk stream to `hop`, which forwards it on to `rest`. */
class GrpcDownstream extends Hop implements Downstream {
  private stream: grpc.ClientWritableStream<WriteChunkRequest> | null = null;

  constructor(hop: NodeAddress, rest: NodeAddress[], header: WriteChunkHeader, context: ForwardContext) {
    super(hop, rest);
    try {
      // parent: the upstream's cancellation (and its deadline, when it has one) propagates down.
      const options: grpc.CallOptions = { deadline: context.deadlineMs, ...(context.parent ? { parent: context.parent } : {}) };
      this.stream = context.grpcClient(hop.address).writeChunk(options, (err, reply) =>
        this.settle(err || !reply ? { error: fromServiceError(err, hop.address) } : { reply }),
      );
      this.stream.on('error', () => {}); // failures arrive through the callback
      const pipeline = header.pipeline.map(({ nodeId, address }) => ({ nodeId, address }));
      this.stream.write({ header: { ...header, pipeline, grant: header.grant ?? '' } });
    } catch (err) {
      this.settle({ error: asStrataError(err) }); // e.g. an unparsable address: a failed hop, not a failed write
    }
  }

  async send(data: Buffer): Promise<void> {
    if (this.settled || !this.stream) return; // it already failed: keep storing locally, stop forwarding
    if (!this.stream.write({ data })) await waitForDrain(this.stream, this.outcome);
  }

  end(): void {
    if (!this.settled) this.stream?.end();
  }

  cancel(): void {
    if (!this.settled) this.stream?.cancel();
  }
}

/** One forwarded byte path write to `hop`; a stale route is re-resolved once before data flows. */
class ByteDownstream extends Hop implements Downstream {
  private readonly opened: Promise<ByteWrite | null>;
  private cancelled = false;

  constructor(route: string, hop: NodeAddress, rest: NodeAddress[], header: WriteChunkHeader, private readonly context: ForwardContext) {
    super(hop, rest);
    this.opened = this.open(route, header).catch((err) => {
      this.settle({ error: asStrataError(err) });
      return null;
    });
  }

  private async open(route: string, header: WriteChunkHeader): Promise<ByteWrite | null> {
    const request = () => ({ op: 'write' as const, nodeId: this.hop.nodeId, timeoutMs: Math.max(1, this.context.deadlineMs - Date.now()), ...header });
    let write: ByteWrite;
    try {
      write = await this.context.bytes.openWrite(route, request(), `data node ${this.hop.nodeId} (${route})`);
    } catch (err) {
      if (!(err instanceof RouteFailed)) throw err;
      this.context.routes.forget(this.hop);
      const fresh = await this.context.routes.resolve(this.hop);
      if (!fresh) throw err;
      write = await this.context.bytes.openWrite(fresh, request(), `data node ${this.hop.nodeId} (${fresh})`);
    }
    if (this.cancelled) {
      write.cancel();
      return null;
    }
    write.reply.then(
      (reply) => this.settle({ reply: reply as WriteChunkReply }),
      (err) => this.settle({ error: asStrataError(err) }),
    );
    return write;
  }

  async send(data: Buffer): Promise<void> {
    const write = await this.opened;
    if (this.settled || !write) return;
    await write.send(data).catch((err) => this.settle({ error: asStrataError(err) }));
  }

  end(): void {
    void this.opened.then((write) => {
      if (!this.settled) write?.end().catch((err) => this.settle({ error: asStrataError(err) }));
    });
  }

  cancel(): void {
    this.cancelled = true;
    void this.opened.then((write) => {
      write?.cancel();
      this.settle({ error: new StrataError('Unavailable', `chunk write to ${this.hop.nodeId} cancelled`) });
    });
  }
}
