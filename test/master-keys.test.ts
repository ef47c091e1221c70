// Master key rotation end to end, on real processes: data nodes read their keys from a key ring
// file; a new key appended and a SIGHUP make it the writing key (old chunks keep reading);
// `strata keys rotate-master` re-wraps every chunk's data key under it, changing only the chunk
// heads; then the old key leaves the file and everything still reads, restarts included. The
// cluster's record of its keys (coordinator/master-key-check.ts) is set only from authenticated
// heartbeats: a SIGHUP to a ring it does not know keeps the old ring, a keyless node joining an
// encrypted cluster exits 12 having stored nothing, and on an open node plane a hostile heartbeat
// naming key ids changes nothing.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Strata } from '../client/index.js';
import { bufferSource, readChunkHead } from '../common/chunk-codec.js';
import { LocalKeyWrapper } from '../common/master-key.js';
import { chunkFilePath } from '../datanode/chunk-store.js';
import { CHANNEL_OPTIONS, callUnary, strataProto } from '../common/grpc.js';
import { runCli, startCluster, type TestCluster } from './harness/cluster.js';
import { expectOneLineError } from './harness/cli-errors.js';
import { freePort, tempDir, type TempDir } from './harness/ports.js';
import { waitFor } from './harness/wait.js';

const CHUNK = 256 * 1024;
const hexKey = () => randomBytes(32).toString('hex');
const idOf = (hex: string) => new LocalKeyWrapper(Buffer.from(hex, 'hex')).keyId;

/** Every file under `dir` (recursively), by path. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile()).map((entry) => path.join(entry.parentPath, entry.name));
}

/** The key ids of every chunk file under a data dir (inline chunks live in the index). */
async function chunkFileKeyIds(dataDir: string): Promise<Set<string | undefined>> {
  const ids = new Set<string | undefined>();
  for (const file of await filesUnder(path.join(dataDir, 'chunks'))) {
    ids.add((await readChunkHead(path.basename(file), bufferSource(await readFile(file), 'test'))).layout.keyId);
  }
  return ids;
}

describe('master key rotation (2 data nodes, RF 2, a key ring file, node secret)', () => {
  const keyA = hexKey();
  const keyB = hexKey();
  let work: TempDir;
  let ring: string;
  let cluster: TestCluster;
  let client: Strata;
  const files = new Map<string, Buffer>();

  /** Every node's copy of the file's first chunk, as stored. */
  const firstChunkCopies = async (p: string) => {
    const [first] = await client.locate(p);
    return Promise.all(first.nodes.map(async (nodeId) => ({ chunkId: first.chunkId, bytes: await readFile(chunkFilePath(cluster.dataDir(Number(nodeId.slice(2)) - 1), first.chunkId)) })));
  };
  const headOf = (chunkId: string, bytes: Buffer) => readChunkHead(chunkId, bufferSource(bytes, 'test'));
  const sighupAll = () => cluster.datanodes.forEach((node) => node.process.kill('SIGHUP'));
  const expectReadsBack = async () => {
    for (const [p, data] of files) expect((await client.readFile(p)).equals(data), p).toBe(true);
  };

  beforeAll(async () => {
    work = await tempDir('master-keys');
    ring = path.join(work.path, 'master.keys');
    await writeFile(ring, `# the cluster's master keys, newest last\n${keyA}\n`, { mode: 0o600 });
    // A node secret: the cluster's key record is only set from authenticated heartbeats.
    cluster = await startCluster({ datanodes: 2, replication: 2, chunkSize: '256KiB', nodeSecret: true, datanodeArgs: ['--encrypt-key-file', ring], coordinatorArgs: ['--scan-interval-ms', '500'] });
    client = cluster.client();
    await client.mkdir('/k', { parents: true });
    files.set('/k/big.bin', randomBytes(2 * CHUNK + 123)); // chunk files
    files.set('/k/small.txt', Buffer.from('inline in the index\n'));
    for (const [p, data] of files) await client.writeFile(p, data);
  }, 120_000);

  afterAll(async () => {
    await cluster?.stop();
    await work?.cleanup();
  });

  test('a key appended and SIGHUP: new chunks are wrapped by it, old ones still read; rotate-master changes only the heads; the old key can go', async () => {
    const before = await firstChunkCopies('/k/big.bin');
    for (const copy of before) {
      const head = await headOf(copy.chunkId, copy.bytes);
      expect(head.version).toBe(3);
      expect(head.layout.keyId).toBe(idOf(keyA));
    }

    await writeFile(ring, `# the cluster's master keys, newest last\n${keyA}\n${keyB}\n`);
    sighupAll();
    const fresh = randomBytes(CHUNK + 5);
    await waitFor('a new write wrapped by the new key on every copy', async () => {
      await client.writeFile('/k/fresh.bin', fresh);
      for (const copy of await firstChunkCopies('/k/fresh.bin')) if ((await headOf(copy.chunkId, copy.bytes)).layout.keyId !== idOf(keyB)) return undefined;
      return true;
    }, 30_000);
    files.set('/k/fresh.bin', fresh);
    await expectReadsBack();

    const rotated = await cluster.cli(['keys', 'rotate-master', '--json', '--batch', '2']);
    expect(rotated.code, rotated.stderr).toBe(0);
    const report = JSON.parse(rotated.stdout) as { complete: boolean; nodes: { nodeId: string; keyId: string; rewrapped: number; current: number; failed: number; done: boolean }[] };
    expect(report.complete).toBe(true);
    expect(report.nodes.map((n) => n.nodeId).sort()).toEqual(['dn1', 'dn2']);
    for (const node of report.nodes) {
      expect(node.keyId).toBe(idOf(keyB));
      expect(node.rewrapped, node.nodeId).toBeGreaterThanOrEqual(4); // 3 chunks of big.bin and small.txt's
      expect(node.current, node.nodeId).toBeGreaterThanOrEqual(1); // fresh.bin's
      expect(node.failed).toBe(0);
    }
    expect(rotated.stderr).toMatch(/dn1: \d+ chunks checked, \d+ re-wrapped/);

    const after = await firstChunkCopies('/k/big.bin');
    for (const [i, copy] of after.entries()) {
      const oldHead = await headOf(copy.chunkId, before[i].bytes);
      const newHead = await headOf(copy.chunkId, copy.bytes);
      expect(newHead.layout.keyId).toBe(idOf(keyB));
      expect(copy.bytes.length).toBe(before[i].bytes.length);
      // The block table and every block as they were: only the key section (and its crc) changed.
      expect(copy.bytes.subarray(newHead.headerBytes).equals(before[i].bytes.subarray(oldHead.headerBytes))).toBe(true);
      expect(copy.bytes.equals(before[i].bytes)).toBe(false);
    }

    // The old key leaves the ring: everything reads, after a SIGHUP and after a restart.
    await writeFile(ring, `${keyB}\n`);
    sighupAll();
    await waitFor('reads with the new key only', async () => {
      try {
        await expectReadsBack();
        return true;
      } catch {
        return undefined;
      }
    }, 30_000);
    await Promise.all(cluster.datanodes.map((node) => node.stop()));
    for (const node of cluster.datanodes) node.start();
    await cluster.waitForLiveNodes(2);
    await waitFor('reads after the restart', async () => {
      try {
        await expectReadsBack();
        return true;
      } catch {
        return undefined;
      }
    }, 60_000);

    const again = await cluster.cli(['keys', 'rotate-master']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^dn\d: \d+ chunks: 0 re-wrapped, 0 sealed again \(format 2\), \d+ already under local-[0-9a-f]{16}, 0 plain, 0 failed$/m);
    expect(again.stdout).toMatch(/^done: every encrypted chunk is under its node's newest master key/m);
  });

  test('SIGHUP to a ring of only a key the cluster does not know: refused with one log line, the old ring stays (writes go on under it), nothing is stored under the unknown key', async () => {
    const keyC = hexKey();
    const refusals = async () => Promise.all(cluster.datanodes.map(async (node) => (await readFile(node.logFile, 'utf8')).split('\n').filter((line) => line.includes('master keys not reloaded')).length));
    const before = await refusals();
    await writeFile(ring, `${keyC}\n`);
    sighupAll();
    await waitFor('every data node refusing the reloaded ring', async () => (await refusals()).every((n, i) => n > before[i]), 60_000);
    expect((await refusals()).map((n, i) => n - before[i])).toEqual([1, 1]);
    const line = (await readFile(cluster.datanodes[0].logFile, 'utf8')).split('\n').find((l) => l.includes('master keys not reloaded'))!;
    expect(line).toContain(`master key '${idOf(keyC)}' is not this cluster's`);
    expect(line).not.toContain(keyC);

    const during = randomBytes(CHUNK + 11);
    await client.writeFile('/k/during.bin', during);
    files.set('/k/during.bin', during);
    for (const copy of await firstChunkCopies('/k/during.bin')) expect((await headOf(copy.chunkId, copy.bytes)).layout.keyId).toBe(idOf(keyB));
    for (const node of cluster.datanodes) expect(node.running, node.name).toBe(true);
    for (let i = 0; i < 2; i++) expect([...(await chunkFileKeyIds(cluster.dataDir(i)))]).not.toContain(idOf(keyC));
    await expectReadsBack();

    await writeFile(ring, `${keyB}\n`); // fixed again (the writing key in use: nothing to check)
    sighupAll();
  });

  test('a data node with a wrong master key, or none, joining this encrypted cluster (node secret and all) exits 12 with one line naming the flag, and stores nothing', async () => {
    const wrongKey = hexKey();
    const joining = async (nodeId: string, env: Record<string, string>) => {
      const dataDir = path.join(work.path, nodeId);
      await mkdir(dataDir, { recursive: true });
      const args = ['datanode', '--node-id', nodeId, '--data-dir', dataDir, '--listen', `127.0.0.1:${await freePort()}`, '--coordinators', cluster.coordinatorList, '--heartbeat-interval-ms', '500', '--log-level', 'error', ...cluster.nodeSecretArgs];
      return { dataDir, result: await runCli(args, { env, timeoutMs: 60_000 }) };
    };
    const wrong = await joining('dn8', { STRATA_MASTER_KEY: wrongKey });
    expectOneLineError(wrong.result, 12, new RegExp(`^strata: data node dn8: master key '${idOf(wrongKey)}' is not this cluster's \\(it encrypts with 'local-[0-9a-f]{16}'(, 'local-[0-9a-f]{16}')*\\): start the node with the cluster's key in --encrypt-key-file or STRATA_MASTER_KEY$`), [keyA, keyB, wrongKey]);
    const keyless = await joining('dn9', { STRATA_MASTER_KEY: '' });
    expectOneLineError(keyless.result, 12, /^strata: data node dn9 has no master key, but this cluster encrypts its chunks \(with 'local-[0-9a-f]{16}'(, 'local-[0-9a-f]{16}')*\): start the node with the cluster's key in --encrypt-key-file FILE \(or STRATA_MASTER_KEY\)$/, [keyA, keyB]);
    for (const { dataDir } of [wrong, keyless]) expect(await filesUnder(path.join(dataDir, 'chunks'))).toEqual([]);
    const listed = (await client.nodes()).map((n) => n.nodeId);
    expect(listed).not.toContain('dn8');
    expect(listed).not.toContain('dn9');
    // The cluster goes on.
    const after = randomBytes(CHUNK + 3);
    await client.writeFile('/k/after-keyless.bin', after);
    files.set('/k/after-keyless.bin', after);
    await expectReadsBack();
  });

  test('a repair copy from a node whose copy is under an older key is stored under the receiver\'s newest key; rotate-master then has nothing to re-wrap there; data reads back identical', async () => {
    // A newer key C on dn1 and dn2 (their chunks stay under B until a rotation), and dn3 starts with it.
    const keyC = hexKey();
    await writeFile(ring, `${keyB}\n${keyC}\n`);
    sighupAll();
    const fresh = randomBytes(CHUNK + 9);
    await waitFor('a new write wrapped by key C on every copy', async () => {
      await client.writeFile('/k/fresh-c.bin', fresh);
      for (const copy of await firstChunkCopies('/k/fresh-c.bin')) if ((await headOf(copy.chunkId, copy.bytes)).layout.keyId !== idOf(keyC)) return undefined;
      return true;
    }, 60_000);
    files.set('/k/fresh-c.bin', fresh);
    const dn3 = await cluster.addDatanode();
    const [dn1, dn2] = cluster.datanodes;
    const placed = await client.locate('/k/big.bin');
    expect(placed.length).toBe(3);
    for (const chunk of placed) expect([...chunk.nodes].sort()).toEqual(['dn1', 'dn2']);
    const chunks = placed.slice(0, 2); // chunk files (the 123-byte tail is inline in the index)
    const copyOn = async (nodeIndex: number, chunkId: string) => {
      const bytes = await readFile(chunkFilePath(cluster.dataDir(nodeIndex), chunkId)).catch(() => undefined);
      return bytes && (await headOf(chunkId, bytes));
    };
    for (const chunk of chunks) expect((await copyOn(1, chunk.chunkId))?.layout.keyId).toBe(idOf(keyB)); // the repair's source

    await dn1.stop();
    await waitFor('every chunk of /k/big.bin repaired onto dn3', async () => {
      for (const chunk of await client.locate('/k/big.bin')) if (!chunk.nodes.includes('dn3')) return undefined;
      for (const chunk of chunks) if (!(await copyOn(2, chunk.chunkId))) return undefined;
      return true;
    }, 120_000);
    for (const chunk of chunks) {
      expect((await copyOn(1, chunk.chunkId))?.layout.keyId, `dn2 ${chunk.chunkId}`).toBe(idOf(keyB));
      expect((await copyOn(2, chunk.chunkId))?.layout.keyId, `dn3 ${chunk.chunkId}`).toBe(idOf(keyC));
    }
    await expectReadsBack();

    // dn1 is down: the rotation goes node by node over the live ones.
    for (const [node, index] of [[dn3, 2], [dn2, 1]] as const) {
      const rotated = await cluster.cli(['keys', 'rotate-master', '--json', '--node', node.name]);
      expect(rotated.code, rotated.stderr).toBe(0);
      const report = JSON.parse(rotated.stdout) as { complete: boolean; nodes: { nodeId: string; keyId: string; rewrapped: number; resealed: number; current: number; failed: number }[] };
      expect(report.complete).toBe(true);
      const [totals] = report.nodes;
      expect(totals.keyId).toBe(idOf(keyC));
      expect(totals.failed).toBe(0);
      if (node === dn3) expect(totals.rewrapped + totals.resealed, 'dn3: its repaired copies came in under key C').toBe(0);
      else expect(totals.rewrapped, 'dn2').toBeGreaterThanOrEqual(chunks.length);
      for (const chunk of chunks) expect((await copyOn(index, chunk.chunkId))?.layout.keyId).toBe(idOf(keyC));
    }
    // Key B leaves the ring: everything still reads.
    await writeFile(ring, `${keyC}\n`);
    for (const node of [dn2, dn3]) node.process.kill('SIGHUP');
    await waitFor('reads with key C only', async () => {
      try {
        await expectReadsBack();
        return true;
      } catch {
        return undefined;
      }
    }, 60_000);
  }, 300_000);
});

describe('an open node plane (no node secret, no TLS), no encryption: hostile heartbeats naming master keys', () => {
  let cluster: TestCluster;
  let client: Strata;
  let coordinator: grpc.Client;

  beforeAll(async () => {
    cluster = await startCluster({ datanodes: 1, replication: 1, chunkSize: '256KiB' });
    client = cluster.client();
    coordinator = new strataProto.Coordinator(cluster.coordinators[0].address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  }, 120_000);

  afterAll(async () => {
    coordinator?.close();
    await cluster?.stop();
  });

  test('change nothing: the keyless data node, restarted, keeps being let in and stores and reads', async () => {
    const hostileIds = [idOf(hexKey()), idOf(hexKey())];
    for (const [i, masterKeyIds] of [[hostileIds[0]], hostileIds].entries()) {
      // Anyone can heartbeat here (that is what an open plane is); what it says of keys is not recorded.
      await callUnary(coordinator, 'heartbeat', { nodeId: `evil${i}`, address: `127.0.0.1:${await freePort()}`, masterKeyIds }, 10_000, 'test');
    }
    const node = cluster.datanodes[0];
    await node.stop();
    const restartedAt = Date.now();
    node.start();
    // The hostile nodes' leases lapse; the real one is let in again (refused, it would have exited 12).
    const state = await waitFor('the restarted data node live alone, or exited', async () => {
      if (!node.running) return `exited (${node.process.exitCode}): ${(await readFile(node.logFile, 'utf8')).trim().split('\n').slice(-2).join(' | ')}`;
      const fs = await client.statfs().catch(() => undefined);
      return fs?.liveNodes === 1 && (await client.nodes()).some((n) => n.nodeId === 'dn1' && n.state === 'live' && n.lastHeartbeatMs > restartedAt) ? 'live' : undefined;
    }, 90_000);
    expect(state).toBe('live');
    const data = randomBytes(3 * CHUNK + 17);
    await client.writeFile('/plain.bin', data);
    expect((await client.readFile('/plain.bin')).equals(data)).toBe(true);
    expect([...(await chunkFileKeyIds(cluster.dataDir(0)))]).toEqual([undefined]); // in clear, as the cluster is
    expect(node.running).toBe(true);
  });
});
