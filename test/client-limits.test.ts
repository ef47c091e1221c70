// Per-client bounds on a real cluster (common/client-limits.ts): past a host's bound, session
// TCP connections, byte path connections and gRPC calls are refused with Busy before they start;
// once the client lets go, it is served again. Bounds here are tiny; the defaults are generous.
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { strataProto } from '../common/grpc.js';
import { FrameParser, FrameType } from '../common/byte-frames.js';
import { SessionFrameKind, SessionFrameParser } from '../common/session-frames.js';

const BOUND = 12;
const OPENED = 30;

/** Opens `count` connections and keeps them; each resolves with what the server sent if it closed it. */
async function holdConnections(address: string, count: number) {
  const at = address.lastIndexOf(':');
  const sockets: net.Socket[] = [];
  const closedWith: Promise<Buffer | null>[] = [];
  for (let i = 0; i < count; i++) {
    const socket = net.connect({ host: address.slice(0, at), port: Number(address.slice(at + 1)) });
    sockets.push(socket);
    const received: Buffer[] = [];
    socket.on('data', (d) => received.push(d));
    socket.on('error', () => undefined);
    closedWith.push(
      new Promise((resolve) => {
        socket.on('end', () => resolve(Buffer.concat(received)));
        setTimeout(() => resolve(null), 3_000).unref(); // still open: admitted
      }),
    );
  }
  return { sockets, outcomes: await Promise.all(closedWith) };
}

function unary<T>(client: grpc.Client, method: string, request: unknown): Promise<T> {
  return new Promise((resolve, reject) =>
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    (client as any)[method](request, { deadline: Date.now() + 10_000 }, (err: Error | null, reply: T) => (err ? reject(err) : resolve(reply))),
  );
}

describe('per-client bounds', () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startCluster({ datanodes: 1, replication: 1, env: { STRATA_CLIENT_MAX_IN_FLIGHT: String(BOUND) } });
  });
  afterAll(async () => cluster?.stop());

  test('session TCP connections past the bound are closed with RESOURCE_EXHAUSTED; then served again', async () => {
    const coordinator = new strataProto.Coordinator(cluster.coordinators[0].address, grpc.credentials.createInsecure());
    const { address } = await unary<{ address: string }>(coordinator, 'SessionEndpoint', {});
    const { sockets, outcomes } = await holdConnections(address, OPENED);
    const refused = outcomes.filter((o) => o !== null).map((bytes) => new SessionFrameParser(1 << 20).push(bytes!).find((f) => f.kind === SessionFrameKind.Close));
    // The data node's NodeLink and heartbeats share the host's bound, so a few more may be refused.
    expect(refused.length).toBeGreaterThanOrEqual(OPENED - BOUND);
    for (const frame of refused) expect(frame).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/in flight at most/) });
    for (const socket of sockets) socket.destroy();
    // A gRPC call from the same host is admitted again once they are gone.
    await expect.poll(() => unary(coordinator, 'Stat', { path: '/' }).then(() => 'ok', (err) => String(err.code)), { timeout: 10_000 }).toBe('ok');
    coordinator.close();
    expect(cluster.coordinators[0].running).toBe(true);
  });

  test('byte path connections past the bound get a Busy error frame; then served again', async () => {
    const node = new strataProto.DataNode(cluster.datanodes[0].address, grpc.credentials.createInsecure());
    const { dataAddress } = await unary<{ dataAddress: string }>(node, 'NodeStatus', {});
    const { sockets, outcomes } = await holdConnections(dataAddress, OPENED);
    const refused = outcomes.filter((o) => o !== null).map((bytes) => new FrameParser().push(bytes!).find((f) => f.type === FrameType.Error));
    expect(refused.length).toBeGreaterThanOrEqual(OPENED - BOUND);
    for (const frame of refused) expect(frame).toMatchObject({ body: { kind: 'Busy' } });
    for (const socket of sockets) socket.destroy();
    await expect.poll(() => unary(node, 'NodeStatus', {}).then(() => 'ok', (err) => String(err.code)), { timeout: 10_000 }).toBe('ok');
    node.close();
    // Reads and writes (gRPC and byte path) work as before.
    const client = cluster.client();
    await client.writeFile('/after.bin', Buffer.alloc(100_000, 7));
    expect((await client.readFile('/after.bin')).equals(Buffer.alloc(100_000, 7))).toBe(true);
  });
});
