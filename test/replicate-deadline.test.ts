// ReplicateChunk honours its caller: a source that never answers (a black-hole TCP server posing
// as a data node's byte port) is given up on at the caller's deadline (DEADLINE_EXCEEDED) or
// when the caller cancels, the in-flight fetch is cut (the black hole sees its connection close,
// long before the data node's own 120 s bound), and the half-made copy is dropped: the same chunk
// then replicates from a real source.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Strata } from '../client/index.js';
import { CHANNEL_OPTIONS, callUnary, strataProto } from '../common/grpc.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { waitFor } from './harness/wait.js';

const KiB = 1024;

/** A TCP server that accepts and never answers; counts connections and which of them closed. */
async function blackHole(): Promise<{ address: string; opened: () => number; closed: () => number; stop: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let opened = 0;
  let closed = 0;
  const server = net.createServer((socket) => {
    opened++;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.resume(); // read (and drop) what comes: a paused socket never sees the peer hang up
    socket.once('close', () => {
      closed++;
      sockets.delete(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    opened: () => opened,
    closed: () => closed,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('ReplicateChunk and the caller\'s deadline', () => {
  let cluster: TestCluster;
  let client: Strata;
  let hole: Awaited<ReturnType<typeof blackHole>>;
  let dataNode: grpc.Client;
  let chunk: { chunkId: string; length: number; holder: { nodeId: string; address: string } };

  beforeAll(async () => {
    // Grants off on the data nodes: these calls play the leader, whose grants only a coordinator can
    // sign (test/grants.test.ts covers ReplicateChunk refusing a call without one).
    cluster = await startCluster({ datanodes: 2, replication: 1, datanodeArgs: ['--grants', 'off'] });
    client = cluster.client();
    hole = await blackHole();
    await client.writeFile('/one', randomBytes(128 * KiB), { replication: 1 });
    const [placement] = await client.locate('/one');
    const nodes = await client.nodes();
    const holder = nodes.find((n) => n.nodeId === placement.nodes[0])!;
    const other = nodes.find((n) => n.nodeId !== holder.nodeId)!;
    chunk = { chunkId: placement.chunkId, length: placement.length, holder: { nodeId: holder.nodeId, address: holder.address } };
    dataNode = new strataProto.DataNode(other.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  }, 120_000);

  afterAll(async () => {
    dataNode?.close();
    await hole?.stop();
    await cluster?.stop();
  });

  /** The black hole as the only source: a node id and gRPC address, and its byte path. */
  const stalledSource = () => ({ nodeId: 'stalled', address: hole.address, dataAddress: hole.address });
  const replicate = (sources: unknown[], deadline: Date, done: (err: grpc.ServiceError | null) => void) =>
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    (dataNode as any).ReplicateChunk({ chunkId: chunk.chunkId, length: chunk.length, crc32c: 0, sources }, { deadline }, done) as grpc.ClientUnaryCall;

  test('a stalled source: DEADLINE_EXCEEDED at the caller\'s deadline, the fetch cut, nothing kept', async () => {
    const before = hole.closed();
    const err = await new Promise<grpc.ServiceError | null>((resolve) => replicate([stalledSource()], new Date(Date.now() + 3_000), resolve));
    expect(err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(hole.opened()).toBeGreaterThan(before);
    // Cut by the data node, not left to its own 120 s bound.
    await waitFor('the stalled fetch cut', async () => hole.closed() > before, 60_000);
    // The half-made copy was dropped: a real source now succeeds (an open writer would be a Conflict).
    const reply = await callUnary<{ sourceNodeId: string; storedBytes: number }>(
      dataNode, 'ReplicateChunk', { chunkId: chunk.chunkId, length: chunk.length, crc32c: 0, sources: [chunk.holder] }, 30_000,
    );
    expect(reply.sourceNodeId).toBe(chunk.holder.nodeId);
    await callUnary(dataNode, 'DeleteChunk', { chunkId: chunk.chunkId }, 10_000);
  }, 120_000);

  test('a cancelled call: the in-flight fetch is cut and the chunk can be replicated again', async () => {
    const opened = hole.opened();
    const closed = hole.closed();
    let status: grpc.ServiceError | null | undefined;
    const call = replicate([stalledSource()], new Date(Date.now() + 100_000), (err) => (status = err));
    await waitFor('the fetch under way', async () => hole.opened() > opened, 30_000);
    call.cancel();
    await waitFor('the cancelled fetch cut', async () => hole.closed() > closed, 60_000);
    expect(status?.code).toBe(grpc.status.CANCELLED);
    const reply = await callUnary<{ sourceNodeId: string }>(
      dataNode, 'ReplicateChunk', { chunkId: chunk.chunkId, length: chunk.length, crc32c: 0, sources: [chunk.holder] }, 30_000,
    );
    expect(reply.sourceNodeId).toBe(chunk.holder.nodeId);
  }, 120_000);

  test('a stalled first source spends the whole deadline: DEADLINE_EXCEEDED; the good source alone then succeeds', async () => {
    await callUnary(dataNode, 'DeleteChunk', { chunkId: chunk.chunkId }, 10_000);
    // The stalled source takes the caller's whole budget (less the reply margin): nothing is left for the next.
    const err = await new Promise<grpc.ServiceError | null>((resolve) => replicate([stalledSource(), chunk.holder], new Date(Date.now() + 3_000), resolve));
    expect(err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    // Without a stalled source the same call succeeds within the same deadline.
    const ok = await new Promise<grpc.ServiceError | null>((resolve) => replicate([chunk.holder], new Date(Date.now() + 30_000), resolve));
    expect(ok).toBeNull();
  }, 120_000);
});
