// The byte path on real data node servers (in this process) and raw sockets: writes down a
// pipeline and reads back; malformed and oversized frames get Invalid and close only their own
// connection; a corrupt block is refused on read and on replication; a replica that dies
// mid-write is not counted; backpressure holds frames on the sender; gRPC is the fallback.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { pino } from 'pino';
import { DataNodeClients, type NodeAddress } from '../client/datanode-client.js';
import { CHANNEL_OPTIONS, callUnary, strataProto } from '../common/grpc.js';
import { FrameQueue, FrameType, MAX_DATA_FRAME_BYTES, controlFrame, frameOf, type Frame } from '../common/byte-frames.js';
import type { NodeInfo } from '../common/node-info.js';
import { StrataError } from '../common/errors.js';
import { startByteServer, type ByteHandlers, type ByteServer } from './byte-server.js';
import type { ReplicateChunkReply } from './healing-service.js';
import { runDataNode, type DataNodeConfig, type RunningDataNode } from './run.js';
import { flipChunkFileByte } from '../test/harness/disk-rot.js';
import { freePort } from '../test/harness/ports.js';
import { waitFor } from '../test/harness/wait.js';

const MIB = 1024 * 1024;
const DEAD_COORDINATOR = '127.0.0.1:1';
type Client = grpc.Client & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A raw connection to a byte port: frames written by hand, frames read as they come. */
async function rawConnection(address: string): Promise<{ socket: net.Socket; frames: FrameQueue; closed: Promise<void> }> {
  const [host, port] = address.split(':');
  const socket = net.connect({ host, port: Number(port) });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, frames: new FrameQueue(socket, 64), closed };
}

async function expectErrorFrame(frames: FrameQueue, kind: string): Promise<string> {
  let frame: Frame | null;
  do frame = await frames.next();
  while (frame && frame.type === FrameType.Data);
  expect(frame?.type).toBe(FrameType.Error);
  const body = (frame as { body: { kind: string; message: string } }).body;
  expect(body.kind).toBe(kind);
  return body.message;
}

describe('byte path', () => {
  const log = pino({ level: 'silent' });
  const nodes: RunningDataNode[] = [];
  const grpcClients: Client[] = [];
  const dirs: string[] = [];
  const fakes: ByteServer[] = [];
  const bytes = new DataNodeClients({ writeTimeoutMs: 30_000, readTimeoutMs: 30_000 });
  const hop = (i: number): NodeAddress => ({ nodeId: nodes[i].nodeId, address: nodes[i].address });
  const status = (i: number) => callUnary<NodeInfo>(grpcClients[i], 'nodeStatus', {}, 5000);
  const dataAddress = async (i: number) => (await status(i)).dataAddress!;

  async function start(config: Partial<DataNodeConfig> & { nodeId: string }): Promise<number> {
    const dataDir = await mkdtemp(path.join(tmpdir(), `strata-${config.nodeId}-`));
    dirs.push(dataDir);
    const node = await runDataNode({ dataDir, listen: `127.0.0.1:${await freePort()}`, coordinators: [DEAD_COORDINATOR], heartbeatIntervalMs: 200, grants: 'off', ...config }, log);
    nodes.push(node);
    grpcClients.push(new strataProto.DataNode(node.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) as Client);
    return nodes.length - 1;
  }

  const read = async (node: NodeAddress, chunkId: string) => {
    const pieces: Buffer[] = [];
    for await (const piece of bytes.readChunk(node, chunkId, 0, 0)) pieces.push(piece);
    return Buffer.concat(pieces);
  };

  /** A byte server that is not a data node: it does what a test needs of a broken peer. */
  async function fakeNode(nodeId: string, handlers: Partial<ByteHandlers>): Promise<NodeAddress & { server: ByteServer }> {
    const refuse = () => Promise.reject(new StrataError('Internal', 'not served by this fake'));
    const server = await startByteServer('127.0.0.1', 0, { nodeId, read: () => ({ [Symbol.asyncIterator]: () => ({ next: refuse }) }), openWrite: refuse, readEncoding: refuse, ...handlers }, log);
    fakes.push(server);
    return { nodeId, address: '127.0.0.1:1', dataAddress: `127.0.0.1:${server.port}`, server };
  }

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) await start({ nodeId: `dn${i}` });
    await start({ nodeId: 'grpc-only', dataListen: 'off' });
  });

  afterAll(async () => {
    bytes.close();
    for (const client of grpcClients) client.close();
    await Promise.all(fakes.map((fake) => fake.close(0)));
    await Promise.all(nodes.map((node) => node.stop()));
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('advertises its address on loopback, and a node started without one advertises none', async () => {
    expect(await dataAddress(0)).toMatch(/^127\.0\.0\.1:\d+$/);
    expect((await status(3)).dataAddress).toBe('');
  });

  it('stores a chunk on every node of a chain (big) and a star (small) and reads it back verified', async () => {
    for (const size of [9 * MIB + 123, 200_000]) {
      const data = randomBytes(size);
      const chunkId = `bp-write-${size}`;
      const reply = await bytes.writeChunk([hop(0), hop(1), hop(2)], chunkId, data);
      expect(reply).toEqual({ storedOn: expect.arrayContaining(['dn0', 'dn1', 'dn2']), failed: [], errors: [] });
      for (let i = 0; i < 3; i++) expect((await read(hop(i), chunkId)).equals(data)).toBe(true);
      const ranged: Buffer[] = [];
      for await (const piece of bytes.readChunk(hop(1), chunkId, 1000, 70_000)) ranged.push(piece);
      expect(Buffer.concat(ranged).equals(data.subarray(1000, 71_000))).toBe(true);
    }
  });

  it('falls back to gRPC for a node that advertises no byte path, also as a pipeline hop', async () => {
    const data = randomBytes(3 * MIB);
    const reply = await bytes.writeChunk([hop(3), hop(0)], 'bp-fallback', data);
    expect(reply.storedOn.sort()).toEqual(['dn0', 'grpc-only']);
    expect((await read(hop(3), 'bp-fallback')).equals(data)).toBe(true);
    const viaChain = await bytes.writeChunk([hop(0), hop(3)], 'bp-fallback-2', data);
    expect(viaChain.storedOn.sort()).toEqual(['dn0', 'grpc-only']);
  });

  it('answers a malformed frame with Invalid and closes only that connection', async () => {
    const address = await dataAddress(0);
    await bytes.writeChunk([hop(0)], 'bp-intact', randomBytes(2 * MIB));
    const healthy = await rawConnection(address);
    const cases: Buffer[] = [
      Buffer.from([0, 0, 0, 0, 99]), // unknown type
      Buffer.concat(frameOf(FrameType.Data, Buffer.alloc(8))), // data before a request
      Buffer.concat(frameOf(FrameType.Request, Buffer.from('{not json'))),
      controlFrame(FrameType.Request, { op: 'format-disk', nodeId: 'dn0', chunkId: 'x', timeoutMs: 1000 }),
      controlFrame(FrameType.Request, { op: 'read', nodeId: 'dn0', chunkId: 'bp-intact', offset: -1, length: 0, timeoutMs: 1000 }),
    ];
    for (const bad of cases) {
      const connection = await rawConnection(address);
      connection.socket.write(bad);
      await expectErrorFrame(connection.frames, 'Invalid');
      await connection.closed;
    }
    // The other connection, open all along, still serves requests, one after another.
    for (let i = 0; i < 2; i++) {
      healthy.socket.write(controlFrame(FrameType.Request, { op: 'read', nodeId: 'dn0', chunkId: 'bp-intact', offset: 0, length: 100, timeoutMs: 5000 }));
      const data = await healthy.frames.next();
      expect(data?.type === FrameType.Data && data.data.length).toBe(100);
      expect((await healthy.frames.next())?.type).toBe(FrameType.Reply);
    }
    healthy.socket.destroy();
  });

  it('refuses oversized frames before buffering them', async () => {
    const address = await dataAddress(0);
    const header = (length: number, type: number) => {
      const bytes = Buffer.alloc(5);
      bytes.writeUInt32BE(length, 0);
      bytes.writeUInt8(type, 4);
      return bytes;
    };
    for (const frame of [header(MAX_DATA_FRAME_BYTES + 1, FrameType.Data), header(0xffffffff, FrameType.Request), header(64 * 1024 + 1, FrameType.Request)]) {
      const connection = await rawConnection(address);
      connection.socket.write(frame);
      expect(await expectErrorFrame(connection.frames, 'Invalid')).toMatch(/exceeds/);
      await connection.closed;
    }
    // A write whose data runs past its declared length.
    const connection = await rawConnection(address);
    connection.socket.write(controlFrame(FrameType.Request, { op: 'write', nodeId: 'dn0', chunkId: 'bp-overlong', length: 10, pipeline: [], timeoutMs: 5000 }));
    connection.socket.write(Buffer.concat([...frameOf(FrameType.Data, Buffer.alloc(11)), ...frameOf(FrameType.End)]));
    expect(await expectErrorFrame(connection.frames, 'Invalid')).toMatch(/more data than the declared/);
    await connection.closed;
    await expect(read(hop(0), 'bp-overlong')).rejects.toMatchObject({ kind: 'NotFound' });
  });

  it('ends a request at its deadline with Timeout and keeps nothing of a write', async () => {
    const connection = await rawConnection(await dataAddress(1));
    connection.socket.write(controlFrame(FrameType.Request, { op: 'write', nodeId: 'dn1', chunkId: 'bp-stalled', length: 2 * MIB, pipeline: [], timeoutMs: 300 }));
    connection.socket.write(Buffer.concat(frameOf(FrameType.Data, Buffer.alloc(MIB))));
    expect(await expectErrorFrame(connection.frames, 'Timeout')).toMatch(/deadline/);
    await connection.closed;
    await expect(read(hop(1), 'bp-stalled')).rejects.toMatchObject({ kind: 'NotFound' });
  });

  it('refuses a request meant for another node (a stale route) with Unavailable', async () => {
    const connection = await rawConnection(await dataAddress(0));
    connection.socket.write(controlFrame(FrameType.Request, { op: 'read', nodeId: 'dn1', chunkId: 'bp-intact', offset: 0, length: 0, timeoutMs: 5000 }));
    expect(await expectErrorFrame(connection.frames, 'Unavailable')).toMatch(/this is node dn0, not dn1/);
  });

  it('fails a read of a corrupt block with Corrupt, and the client reads another replica', async () => {
    const data = randomBytes(MIB);
    await bytes.writeChunk([hop(0), hop(1)], 'bp-rot', data);
    await flipChunkFileByte(dirs[0], 'bp-rot');
    await expect(read(hop(0), 'bp-rot')).rejects.toMatchObject({ kind: 'Corrupt' });
    expect((await read(hop(1), 'bp-rot')).equals(data)).toBe(true);
  });

  it('replicates the stored encoding as it is, and refuses a copy whose block does not check', async () => {
    const compressible = Buffer.alloc(5 * MIB, 'strata strata strata ');
    await bytes.writeChunk([hop(0)], 'bp-copy', compressible);
    const request = { chunkId: 'bp-copy', sources: [hop(0)], length: compressible.length, crc32c: crc32c(compressible) >>> 0 };
    const reply = await callUnary<ReplicateChunkReply>(grpcClients[2], 'replicateChunk', request, 30_000);
    const stored = (i: number) => callUnary<{ storedBytes: number }>(grpcClients[i], 'statChunk', { chunkId: 'bp-copy' }, 5000);
    expect(reply.sourceNodeId).toBe('dn0');
    expect(Number(reply.storedBytes)).toBe(Number((await stored(0)).storedBytes));
    expect(Number(reply.storedBytes)).toBeLessThan(compressible.length / 4); // it came compressed
    expect((await read(hop(2), 'bp-copy')).equals(compressible)).toBe(true);

    // A source that sends a damaged block: the receiver's own checks refuse it, nothing is stored.
    const source = await bytes.readEncoding(hop(0), 'bp-copy', 64 * MIB);
    const damaged = Buffer.from(source!.bytes);
    damaged[damaged.length - 7] ^= 0x40;
    const { server: _server, ...liar } = await fakeNode('liar', { readEncoding: async () => ({ ...source!, bytes: damaged }) });
    const refused = callUnary<ReplicateChunkReply>(grpcClients[1], 'replicateChunk', { ...request, sources: [liar] }, 30_000);
    await expect(refused).rejects.toMatchObject({ kind: 'Corrupt', message: expect.stringMatching(/checksum mismatch/) });
    await expect(stored(1)).rejects.toMatchObject({ kind: 'NotFound' });
    // The liar first, an honest node second: the copy comes from the honest one.
    const second = await callUnary<ReplicateChunkReply>(grpcClients[1], 'replicateChunk', { ...request, sources: [liar, hop(0)] }, 30_000);
    expect(second.sourceNodeId).toBe('dn0');
  });

  it('does not count a replica that dies mid-write, and the others still store the chunk', async () => {
    let received = 0;
    let diesAfter = 2 * MIB;
    const { server: _dyingServer, ...dying } = await fakeNode('dying', {
      openWrite: async () => ({
        piece: async (data) => {
          received += data.length;
          if (received > diesAfter) throw new StrataError('Unavailable', 'killed'); // ends the connection mid-stream
        },
        finish: async () => ({ storedOn: ['dying'], failed: [], errors: [] }),
        abort: async () => {},
      }),
    });
    const data = randomBytes(8 * MIB);
    const chain = await bytes.writeChunk([hop(1), dying, hop(2)], 'bp-dying-chain', data);
    expect(chain.storedOn).toEqual(['dn1']);
    expect(chain.failed).toEqual(['dying', 'dn2']);
    received = 0;
    diesAfter = 0;
    const star = await bytes.writeChunk([hop(1), dying, hop(2)], 'bp-dying-star', data.subarray(0, MIB));
    expect(star.storedOn.sort()).toEqual(['dn1', 'dn2']); // a star: dn2 is not behind the dead hop
    expect(star.failed).toEqual(['dying']);
    // A hop that vanishes outright (its connection cut with no reply) counts as failed too.
    let reached = false;
    const opened = async () => {
      reached = true;
      return { piece: () => new Promise<void>(() => {}), finish: async () => ({}), abort: async () => {} };
    };
    const { server, ...vanishing } = await fakeNode('vanishing', { openWrite: opened });
    const cut = bytes.writeChunk([hop(2), vanishing], 'bp-vanishing', data);
    await waitFor('the write to reach the vanishing hop', async () => reached);
    await server.close(0);
    const reply = await cut;
    expect(reply.storedOn).toEqual(['dn2']);
    expect(reply.failed).toEqual(['vanishing']);
  });

  it('sends a small chunk to every replica itself: a dead first node still leaves the others stored', async () => {
    const gone: NodeAddress = { nodeId: 'gone', address: DEAD_COORDINATOR, dataAddress: `127.0.0.1:${await freePort()}` };
    const data = randomBytes(100_000);
    const reply = await bytes.writeChunk([gone, hop(0), hop(1)], 'bp-star-dead-head', data);
    expect(reply.storedOn).toEqual(['dn0', 'dn1']);
    expect(reply.failed).toEqual(['gone']);
    expect(reply.errors[0]).toMatch(/cannot reach/);
    for (const i of [0, 1]) expect((await read(hop(i), 'bp-star-dead-head')).equals(data)).toBe(true);
    // A first node that refuses for a reason another placement would not cure fails the write, as
    // when it stored and forwarded the chunk itself.
    const { server: _full, ...full } = await fakeNode('full', { openWrite: async () => Promise.reject(new StrataError('NoSpace', 'data disk is full')) });
    await expect(bytes.writeChunk([full, hop(2)], 'bp-star-full-head', data)).rejects.toMatchObject({ kind: 'NoSpace' });
    // Further on, the same refusal is one failed replica.
    const partly = await bytes.writeChunk([hop(2), full], 'bp-star-full-replica', data);
    expect(partly).toMatchObject({ storedOn: ['dn2'], failed: ['full'] });
  });

  it('holds frames on the sender while the receiver does not consume (backpressure)', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    const receiver = await accepted;
    const queue = new FrameQueue(receiver, 2);
    const piece = randomBytes(MIB);
    const sent = 64;
    // Far more than the kernel's socket buffers hold.
    for (let i = 0; i < sent; i++) client.write(Buffer.concat(frameOf(FrameType.Data, piece)));
    await waitFor('the receiver to pause', async () => receiver.isPaused());
    // Paused with two frames queued: the rest waits on the sender, not in the receiver's memory.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(client.writableLength).toBeGreaterThan(32 * MIB);
    for (let i = 0; i < sent; i++) {
      const frame = await queue.next();
      expect(frame?.type === FrameType.Data && frame.data.equals(piece)).toBe(true);
    }
    client.destroy();
    receiver.destroy();
    server.close();
  });
});
