// Master key rotation end to end, on real processes: data nodes read their keys from a key ring
// file; a new key appended and a SIGHUP make it the writing key (old chunks keep reading);
// `strata keys rotate-master` re-wraps every chunk's data key under it, changing only the chunk
// heads; then the old key leaves the file and everything still reads, restarts included.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Strata } from '../client/index.js';
import { bufferSource, readChunkHead } from '../common/chunk-codec.js';
import { LocalKeyWrapper } from '../common/master-key.js';
import { chunkFilePath } from '../datanode/chunk-store.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { tempDir, type TempDir } from './harness/ports.js';
import { waitFor } from './harness/wait.js';

const CHUNK = 256 * 1024;
const hexKey = () => randomBytes(32).toString('hex');
const idOf = (hex: string) => new LocalKeyWrapper(Buffer.from(hex, 'hex')).keyId;

describe('master key rotation (2 data nodes, RF 2, a key ring file)', () => {
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
    cluster = await startCluster({ datanodes: 2, replication: 2, chunkSize: '256KiB', datanodeArgs: ['--encrypt-key-file', ring] });
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
});
