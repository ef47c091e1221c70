// Bad input never crashes a server, never prints a stack trace, and never changes stored data:
// the CLI answers with one line and a non-zero exit, gRPC with the right status.
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startCluster, runCli, type TestCluster } from './harness/cluster.js';
import { expectOneLineError } from './harness/cli-errors.js';
import { freePort } from './harness/ports.js';

const MiB = 1024 * 1024;


/** Every copy of a chunk on disk, by searching the data node directories. */
function chunkFiles(cluster: TestCluster, chunkId: string): string[] {
  const found: string[] = [];
  for (let i = 0; i < cluster.datanodes.length; i++) {
    const root = path.join(cluster.dataDir(i), 'chunks');
    for (const shard of readdirSync(root)) {
      const candidate = path.join(root, shard, chunkId);
      if (readdirSync(path.join(root, shard)).includes(chunkId)) found.push(candidate);
    }
  }
  return found;
}

describe('bad input', () => {
  let cluster: TestCluster;
  const content = randomBytes(3 * MiB + 12345);

  beforeAll(async () => {
    cluster = await startCluster({ datanodes: 3, chunkSize: '1MiB' });
    const put = await cluster.cli(['put', '-', '/keep.bin'], { input: content });
    expect(put.code).toBe(0);
  });
  afterAll(async () => cluster?.stop());

  const unchanged = async () => {
    const got = await cluster.cli(['cat', '/keep.bin']);
    expect(got.code).toBe(0);
    const client = cluster.client();
    expect((await client.readFile('/keep.bin')).equals(content)).toBe(true);
  };

  test('unknown paths, a file used as a directory, invalid names, bad flags', async () => {
    expectOneLineError(await cluster.cli(['stat', '/nope']), 3, /\/nope: no such file or directory/);
    expectOneLineError(await cluster.cli(['get', '/nope/x', '-']), 3, /no such file/);
    expectOneLineError(await cluster.cli(['ls', '/keep.bin/inside']), 5, /not a directory/);
    expectOneLineError(await cluster.cli(['mkdir', '/keep.bin/sub']), 5, /not a directory/);
    expectOneLineError(await cluster.cli(['put', '-', '/keep.bin/x'], { input: 'x' }), 5, /not a directory/);
    expectOneLineError(await cluster.cli(['mkdir', '/' + 'n'.repeat(256)]), 2, /longer than 255 bytes/);
    expectOneLineError(await cluster.cli(['rm', '/']), 2, /refusing/);
    expectOneLineError(await cluster.cli(['mkdir', '/keep.bin']), 4, /already exists/);
    expectOneLineError(await cluster.cli(['put', '-', '/y', '--replication', 'zero'], { input: 'x' }), 2, /--replication/);
    expectOneLineError(await cluster.cli(['put', '/definitely/not/here.txt', '/z']), 3, /no such local file/);
    expectOneLineError(await cluster.cli(['rm', '/data-dir-that-is-missing']), 3, /no such file/);
    const unknown = await cluster.cli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command/);
    await unchanged();
  });

  test('an unreachable coordinator: one line, exit 8, no hang', async () => {
    const port = await freePort();
    const result = await runCli(['ls', '/'], { env: { STRATA_COORDINATOR: `127.0.0.1:${port}` }, timeoutMs: 60_000 });
    expectOneLineError(result, 8, /cannot reach any coordinator/);
    expectOneLineError(await runCli(['ls', '/'], { env: { STRATA_COORDINATOR: 'not an address' } }), 2, /invalid coordinator address/);
  });

  test('a truncated chunk file on one node: reads fall back to a good replica', async () => {
    const [chunk] = await cluster.client().locate('/keep.bin');
    const copies = chunkFiles(cluster, chunk.chunkId);
    expect(copies).toHaveLength(3);
    truncateSync(copies[0], Math.floor(statSync(copies[0]).size / 2));
    await unchanged();
  });

  test('a corrupted block on every copy: a clear error naming the chunk, never wrong bytes', async () => {
    const chunks = await cluster.client().locate('/keep.bin');
    const victim = chunks[1];
    for (const file of chunkFiles(cluster, victim.chunkId)) {
      const bytes = readFileSync(file);
      bytes[bytes.length - 100] ^= 0xff; // inside the last block's payload
      writeFileSync(file, bytes);
    }
    const result = await cluster.cli(['get', '/keep.bin', '-']);
    expect(result.code).toBe(9);
    expect(result.stderr).toContain(victim.chunkId);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    // The other chunks still read; the file's metadata is untouched.
    const client = cluster.client();
    const first = await client.readFile('/keep.bin', { start: 0, end: MiB - 1 });
    expect(first.equals(content.subarray(0, MiB))).toBe(true);
    expect((await client.stat('/keep.bin')).size).toBe(content.length);
  });

  test('malformed and oversized gRPC messages get a status, and the servers live on', async () => {
    const targets = [
      { address: cluster.coordinators[0].address, method: '/strata.v1.Coordinator/Stat' },
      { address: cluster.datanodes[0].address, method: '/strata.v1.DataNode/StatChunk' },
    ];
    for (const { address, method } of targets) {
      const client = new grpc.Client(address, grpc.credentials.createInsecure());
      const call = (payload: Buffer) =>
        new Promise<grpc.ServiceError | null>((resolve) => {
          client.makeUnaryRequest(method, (b: Buffer) => b, (b: Buffer) => b, payload, { deadline: Date.now() + 10_000 }, (err) => resolve(err));
        });
      const garbage = await call(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a]));
      expect(garbage?.code).toBeOneOf([grpc.status.INTERNAL, grpc.status.INVALID_ARGUMENT]);
      const oversized = await call(Buffer.alloc(8 * MiB, 1));
      expect(oversized?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      client.close();
    }
    for (const role of [...cluster.coordinators, ...cluster.datanodes]) expect(role.running).toBe(true);
    const stat = await cluster.cli(['stat', '--json', '/keep.bin']);
    expect(JSON.parse(stat.stdout).size).toBe(content.length);
  });
});
