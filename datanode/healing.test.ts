// Self-healing on real data node servers: ListChunks, ReplicateChunk between nodes, quarantine
// of a chunk a read found corrupt, and the background scrub finding a flipped byte on disk.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { mkdtemp, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { pino } from 'pino';
import { DataNodeClients, type NodeAddress } from '../client/datanode-client.js';
import { CHANNEL_OPTIONS, bindServer, callUnary, strataProto } from '../common/grpc.js';
import type { NodeInfo } from '../common/node-info.js';
import { LIST_BATCH_CHUNKS, type ReplicateChunkReply } from './healing-service.js';
import { runDataNode, type DataNodeConfig, type RunningDataNode } from './run.js';
import { flipChunkFileByte } from '../test/harness/disk-rot.js';
import { freePort } from '../test/harness/ports.js';
import { waitFor } from '../test/harness/wait.js';

const DEAD_COORDINATOR = '127.0.0.1:1';
/** Random bytes this long are stored as a chunk file (FORMAT.md: over 64 KiB encoded). */
const FILE_BYTES = 600_000;

type Client = grpc.Client & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('data node self-healing', () => {
  const log = pino({ level: 'silent' });
  const nodes: RunningDataNode[] = [];
  const dirs: string[] = [];
  const clients: Client[] = [];
  const bytes = new DataNodeClients({ writeTimeoutMs: 30_000, readTimeoutMs: 30_000 });
  const hop = (i: number): NodeAddress => ({ nodeId: nodes[i].nodeId, address: nodes[i].address });

  async function start(config: Partial<DataNodeConfig> & { nodeId: string }): Promise<number> {
    const dataDir = await mkdtemp(path.join(tmpdir(), `strata-${config.nodeId}-`));
    const node = await runDataNode(
      { dataDir, listen: `127.0.0.1:${await freePort()}`, coordinators: [DEAD_COORDINATOR], heartbeatIntervalMs: 200, grants: 'off', ...config },
      log,
    );
    dirs.push(dataDir);
    nodes.push(node);
    clients.push(new strataProto.DataNode(node.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) as Client);
    return nodes.length - 1;
  }

  const replicate = (to: number, request: { chunkId: string; sources: NodeAddress[]; length: number; crc32c?: number }) =>
    callUnary<ReplicateChunkReply>(clients[to], 'replicateChunk', { crc32c: 0, ...request }, 30_000);
  const status = (i: number) => callUnary<NodeInfo>(clients[i], 'nodeStatus', {}, 5000);
  const read = async (i: number, chunkId: string) => {
    const pieces: Buffer[] = [];
    for await (const piece of bytes.readChunk(hop(i), chunkId, 0, 0)) pieces.push(piece);
    return Buffer.concat(pieces);
  };

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) await start({ nodeId: `dn${i}` }); // no scrub: tests below damage chunks on purpose
  });

  afterAll(async () => {
    bytes.close();
    for (const client of clients) client.close();
    await Promise.all(nodes.map((node) => node.stop()));
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('lists every chunk in batches, with length, stored bytes and storage time', async () => {
    const count = LIST_BATCH_CHUNKS + 5;
    const before = Date.now();
    const ids = Array.from({ length: count }, (_, n) => `many-${String(n).padStart(5, '0')}`);
    for (let at = 0; at < count; at += 50) await Promise.all(ids.slice(at, at + 50).map((chunkId) => bytes.writeChunk([hop(2)], chunkId, randomBytes(100))));
    await bytes.writeChunk([hop(2)], 'big', randomBytes(FILE_BYTES));
    const batches: Array<Array<{ chunkId: string; length: number; storedBytes: number; storedAtMs: number }>> = [];
    await new Promise<void>((resolve, reject) => {
      const call = clients[2].listChunks({}, { deadline: Date.now() + 30_000 });
      call.on('data', (reply: { chunks: (typeof batches)[number] }) => batches.push(reply.chunks));
      call.on('error', reject);
      call.on('end', resolve);
    });
    expect(batches.map((batch) => batch.length)).toEqual([LIST_BATCH_CHUNKS, 6]);
    const listed = batches.flat();
    expect(listed.map((chunk) => chunk.chunkId)).toEqual(['big', ...ids]);
    expect(listed[0]).toMatchObject({ length: FILE_BYTES, storedBytes: expect.any(Number) });
    expect(listed[0].storedBytes).toBeGreaterThan(FILE_BYTES);
    for (const chunk of listed) expect(chunk.storedAtMs).toBeGreaterThanOrEqual(before);
  });

  it('replicates a chunk from a good source, and again is a no-op success', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    await bytes.writeChunk([hop(0)], 'rep-good', data);
    const reply = await replicate(1, { chunkId: 'rep-good', sources: [hop(0)], length: data.length, crc32c: crc32c(data) });
    expect(reply.sourceNodeId).toBe('dn0');
    expect(reply.storedBytes).toBeGreaterThan(data.length);
    expect((await read(1, 'rep-good')).equals(data)).toBe(true);
    expect(await replicate(1, { chunkId: 'rep-good', sources: [hop(0)], length: data.length, crc32c: crc32c(data) })).toEqual({
      sourceNodeId: 'dn1',
      storedBytes: reply.storedBytes,
    });
    // Here already, but not the chunk asked for: refused, not overwritten.
    await expect(replicate(1, { chunkId: 'rep-good', sources: [hop(0)], length: data.length, crc32c: 12345 })).rejects.toMatchObject({ kind: 'Conflict' });
  });

  it('tries the next source when the first is down or lacks the chunk', async () => {
    const data = randomBytes(FILE_BYTES);
    await bytes.writeChunk([hop(0)], 'rep-next', data);
    const down = { nodeId: 'dn-down', address: `127.0.0.1:${await freePort()}` };
    const reply = await replicate(1, { chunkId: 'rep-next', sources: [down, hop(2), hop(0)], length: data.length, crc32c: crc32c(data) });
    expect(reply.sourceNodeId).toBe('dn0');
    expect((await read(1, 'rep-next')).equals(data)).toBe(true);
    const err = await replicate(1, { chunkId: 'rep-nowhere', sources: [down, hop(2)], length: 10 }).catch((e) => e);
    expect(err).toMatchObject({ kind: 'Unavailable', message: expect.stringContaining('chunk rep-nowhere') });
    expect(err.message).toContain('dn-down');
    expect(err.message).toContain('dn2');
  });

  it('refuses a source whose chunk file is corrupt, storing nothing; the source quarantines its copy', async () => {
    const data = randomBytes(FILE_BYTES);
    await bytes.writeChunk([hop(0)], 'rep-rotten', data);
    await flipChunkFileByte(dirs[0], 'rep-rotten');
    const err = await replicate(1, { chunkId: 'rep-rotten', sources: [hop(0)], length: data.length, crc32c: crc32c(data) }).catch((e) => e);
    expect(err).toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('chunk rep-rotten') });
    await expect(callUnary(clients[1], 'statChunk', { chunkId: 'rep-rotten' }, 5000)).rejects.toMatchObject({ kind: 'NotFound' });
    expect((await status(0)).corruptChunks).toContain('rep-rotten');
    // With a good copy elsewhere, that one is used.
    await bytes.writeChunk([hop(2)], 'rep-rotten', data);
    const reply = await replicate(1, { chunkId: 'rep-rotten', sources: [hop(0), hop(2)], length: data.length, crc32c: crc32c(data) });
    expect(reply.sourceNodeId).toBe('dn2');
    expect((await read(1, 'rep-rotten')).equals(data)).toBe(true);
  });

  it('refuses bytes whose crc32c or length differ from what was asked for', async () => {
    const data = randomBytes(FILE_BYTES);
    await bytes.writeChunk([hop(0)], 'rep-crc', data);
    const wrongCrc = (crc32c(data) ^ 1) >>> 0;
    await expect(replicate(1, { chunkId: 'rep-crc', sources: [hop(0)], length: data.length, crc32c: wrongCrc })).rejects.toMatchObject({
      kind: 'Corrupt',
      message: expect.stringMatching(/chunk rep-crc: .*crc32c/),
    });
    await expect(replicate(1, { chunkId: 'rep-crc', sources: [hop(0)], length: data.length - 1 })).rejects.toMatchObject({ kind: 'Corrupt' });
    await expect(callUnary(clients[1], 'statChunk', { chunkId: 'rep-crc' }, 5000)).rejects.toMatchObject({ kind: 'NotFound' });
    expect((await status(0)).corruptChunks).not.toContain('rep-crc'); // the source's copy is fine
  });

  it('quarantines a chunk a ReadChunk found corrupt, reports it until DeleteChunk', async () => {
    const data = randomBytes(FILE_BYTES);
    await bytes.writeChunk([hop(2)], 'read-rotten', data);
    await flipChunkFileByte(dirs[2], 'read-rotten');
    await expect(read(2, 'read-rotten')).rejects.toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('checksum mismatch') });
    expect((await status(2)).corruptChunks).toEqual(['read-rotten']);
    await expect(read(2, 'read-rotten')).rejects.toMatchObject({ kind: 'Corrupt', message: expect.stringContaining('quarantined') });
    await expect(bytes.writeChunk([hop(2)], 'read-rotten', data)).rejects.toMatchObject({ kind: 'Conflict' });
    await callUnary(clients[2], 'deleteChunk', { chunkId: 'read-rotten' }, 5000);
    expect((await status(2)).corruptChunks).toEqual([]);
    const reply = await replicate(2, { chunkId: 'read-rotten', sources: [hop(0)], length: data.length, crc32c: crc32c(data) }).catch((e) => e);
    expect(reply).toMatchObject({ kind: 'Unavailable' }); // dn0 never had it: a clean NotFound there
  });

  it('scrub finds a flipped byte in a chunk file, quarantines it, and reports it in NodeStatus and heartbeats', async () => {
    const beats: NodeInfo[] = [];
    const coordinator = new grpc.Server();
    coordinator.addService(strataProto.Coordinator.service, {
      heartbeat: (call: grpc.ServerUnaryCall<NodeInfo, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        beats.push(call.request);
        callback(null, { intervalMs: 100 });
      },
    });
    const port = await bindServer(coordinator, '127.0.0.1:0');
    try {
      const i = await start({ nodeId: 'dn-scrub', coordinators: [`127.0.0.1:${port}`], scrubBytesPerSec: 64 * 1024 * 1024, scrubIntervalMs: 200 });
      const good = randomBytes(FILE_BYTES);
      await bytes.writeChunk([hop(i)], 'scrub-good', good);
      await bytes.writeChunk([hop(i)], 'scrub-small', randomBytes(500));
      await bytes.writeChunk([hop(i)], 'scrub-rotten', randomBytes(FILE_BYTES));
      await flipChunkFileByte(dirs[i], 'scrub-rotten');
      const info = await waitFor('scrub to quarantine the chunk', async () => {
        const current = await status(i);
        return current.corruptChunks?.includes('scrub-rotten') ? current : undefined;
      });
      expect(info.corruptChunks).toEqual(['scrub-rotten']);
      expect(info.scrub?.corruptFound).toBe(1);
      expect(info.scrub?.chunksChecked).toBeGreaterThanOrEqual(1);
      // Passes go on; the quarantined chunk is not checked (or counted) again.
      const later = await waitFor('another full pass', async () => {
        const current = await status(i);
        return (current.scrub?.passes ?? 0) >= 2 ? current : undefined;
      });
      expect(later.scrub).toMatchObject({ corruptFound: 1 });
      expect(later.scrub!.lastPassMs).toBeGreaterThan(0);
      expect(later.scrub!.bytesChecked).toBeGreaterThanOrEqual(FILE_BYTES);
      await waitFor('a heartbeat reporting it', async () => (beats.some((beat) => beat.corruptChunks?.includes('scrub-rotten')) ? true : undefined));
      expect(beats[beats.length - 1].scrub).toMatchObject({ corruptFound: 1 });
      expect((await read(i, 'scrub-good')).equals(good)).toBe(true);
    } finally {
      coordinator.forceShutdown();
    }
  });
});
