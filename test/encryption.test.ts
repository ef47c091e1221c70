// Encryption at rest end to end, on real processes and a real S3-protocol server (s3rver): data
// nodes with a master key (STRATA_MASTER_KEY) keep no plaintext in chunk files, the LevelDB index
// (inline chunks), the tier cache or the S3 objects; reads are byte-identical; repair and tiering
// work on encrypted chunks; restarted with none (this cluster's node plane is open, so it has no
// trusted key record to refuse them by: test/master-keys.test.ts has the refusals of a wrong key or
// none) reads fail loudly, and nothing changes: no quarantine, no repair, chunk files untouched.
// Exports with a master key keep no plaintext in S3 and import back only with it.
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Strata } from '../client/index.js';
import { DataNodeChannels, callUnary } from '../common/grpc.js';
import type { NodeInfo } from '../common/node-info.js';
import { LocalChunkStore, chunkFilePath } from '../datanode/chunk-store.js';
import { loadKeyRing } from '../common/master-key.js';
import { startCluster, runCli, type TestCluster } from './harness/cluster.js';
import { expectOneLineError } from './harness/cli-errors.js';
import { tempDir, type TempDir } from './harness/ports.js';
import { S3Server, s3Env } from './harness/s3.js';
import { waitFor } from './harness/wait.js';

const KiB = 1024;
const CHUNK = 256 * KiB;
const BUCKET = 'strata-tier';
const PATTERN = Buffer.from('PLAINTEXT-MARKER-7f3a9c-strata-encryption-test');

/** Random bytes (incompressible: stored raw when plain) with PATTERN every 4 KiB. */
function patterned(sizeBytes: number): Buffer {
  const data = randomBytes(sizeBytes);
  for (let at = 0; at + PATTERN.length <= sizeBytes; at += 4 * KiB) PATTERN.copy(data, at);
  return data;
}

/** Every file under `dir` (recursively) whose bytes contain PATTERN. */
async function filesWithPattern(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    const bytes = await readFile(file).catch(() => null); // a LevelDB file compacted away meanwhile
    if (bytes?.includes(PATTERN)) found.push(file);
  }
  return found;
}

/** sha256 of every chunk file of every node: what "nothing changed" is checked against. */
async function chunkFileHashes(cluster: TestCluster, nodes: number): Promise<Map<string, string>> {
  const hashes = new Map<string, string>();
  for (let i = 0; i < nodes; i++) {
    const dir = path.join(cluster.dataDir(i), 'chunks');
    for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) hashes.set(path.join(entry.parentPath, entry.name), createHash('sha256').update(await readFile(path.join(entry.parentPath, entry.name))).digest('hex'));
    }
  }
  return hashes;
}

describe('encryption at rest (3 data nodes, RF 2, master key from STRATA_MASTER_KEY, s3rver tier)', () => {
  const rightKey = randomBytes(32).toString('hex');
  // The data nodes' environment: restarts take whatever key it holds then.
  const env: Record<string, string> = { ...s3Env, STRATA_MASTER_KEY: rightKey };
  let s3: S3Server;
  let cluster: TestCluster;
  let client: Strata;
  let work: TempDir;
  const files = new Map<string, Buffer>();

  /** Each data node's own status (the running process's, not the coordinator's last heartbeat). */
  const nodeStatuses = async (): Promise<NodeInfo[] | undefined> => {
    const channels = new DataNodeChannels();
    try {
      return await Promise.all(cluster.datanodes.map((node) => callUnary<NodeInfo>(channels.get(node.address), 'NodeStatus', {}, 2000, node.name)));
    } catch {
      return undefined;
    } finally {
      channels.close();
    }
  };
  const restartDatanodes = async () => {
    await Promise.all(cluster.datanodes.map((node) => node.stop()));
    for (const node of cluster.datanodes) node.start();
    await cluster.waitForLiveNodes(cluster.datanodes.length);
    // Their registrations never lapsed: "live" says nothing about the new processes.
    await waitFor('every data node serving again', nodeStatuses, 60_000);
  };
  /** `strata cat`, once the coordinator has the restarted nodes' new byte path addresses (exit 8 until then). */
  const catWhenReachable = (p: string) =>
    waitFor(`strata cat ${p} reaching the data nodes`, async () => {
      const result = await cluster.cli(['cat', p]);
      return result.code === 8 && /connection refused/.test(result.stderr) ? undefined : result;
    }, 30_000);

  beforeAll(async () => {
    work = await tempDir('encryption');
    s3 = await S3Server.start();
    await s3.createBucket(BUCKET);
    cluster = await startCluster({
      datanodes: 3,
      replication: 2,
      chunkSize: '256KiB',
      deadAfterMs: 2000,
      env,
      coordinatorArgs: ['--tier', s3.tierSpec('cold', BUCKET, 'strata/'), '--tier-interval-ms', '300', '--scan-interval-ms', '300'],
      datanodeArgs: ['--scrub-interval-ms', '1000', '--scrub-bytes-per-sec', '256MiB'],
    });
    client = cluster.client();
    await client.mkdir('/secret', { parents: true });
    files.set('/secret/big.bin', patterned(3 * CHUNK + 1000)); // chunk files
    files.set('/secret/small.txt', Buffer.concat([Buffer.from('a small file, inline in the index: '), PATTERN, Buffer.from('\n')]));
    files.set('/secret/log.txt', Buffer.from(`${PATTERN.toString()} INFO request served\n`.repeat(3000))); // lz4, then sealed
    for (const [p, data] of files) await client.writeFile(p, data);
  }, 120_000);

  afterAll(async () => {
    await cluster?.stop();
    await s3?.stop();
    await work?.cleanup();
  });

  const expectReadsBack = async () => {
    for (const [p, data] of files) expect((await client.readFile(p)).equals(data), p).toBe(true);
  };

  test('no plaintext in chunk files or the index; chunks are format version 3; reads are byte-identical', async () => {
    await expectReadsBack();
    for (let i = 0; i < 3; i++) expect(await filesWithPattern(cluster.dataDir(i))).toEqual([]);
    const [first] = await client.locate('/secret/big.bin');
    const onDisk = await readFile(chunkFilePath(cluster.dataDir(Number(first.nodes[0].slice(2)) - 1), first.chunkId));
    expect(onDisk.readUInt16LE(4)).toBe(3);

    // The control: the same search finds these bytes in a plain store, in a file and in the index.
    const plainDir = path.join(work.path, 'plain');
    const plain = await LocalChunkStore.open(plainDir);
    for (const [id, data] of [['ctl-file', files.get('/secret/big.bin')!.subarray(0, CHUNK)], ['ctl-inline', files.get('/secret/small.txt')!]] as const) {
      const writer = await plain.createWriter(id, data.length);
      await writer.write(data);
      await writer.commit();
    }
    await plain.close();
    const found = await filesWithPattern(plainDir);
    expect(found.some((f) => f.includes(`${path.sep}chunks${path.sep}`))).toBe(true);
    expect(found.some((f) => f.includes(`${path.sep}index${path.sep}`))).toBe(true);

    // Encryption turned on later: the chunks written plain (format version 1) still read, with the key.
    const keyed = await LocalChunkStore.open(plainDir, { keys: loadKeyRing({ masterKey: rightKey }) });
    try {
      expect((await readFile(chunkFilePath(plainDir, 'ctl-file'))).readUInt16LE(4)).toBe(1);
      for (const [id, data] of [['ctl-file', files.get('/secret/big.bin')!.subarray(0, CHUNK)], ['ctl-inline', files.get('/secret/small.txt')!]] as const) {
        const pieces: Buffer[] = [];
        for await (const piece of keyed.read(id, 0, data.length)) pieces.push(piece);
        expect(Buffer.concat(pieces).equals(data), id).toBe(true);
      }
    } finally {
      await keyed.close();
    }
  });

  test('a data node dies: repair re-replicates the encrypted chunks, which read back identical', async () => {
    const victim = cluster.datanodes[2];
    victim.kill9();
    await waitFor('every chunk of /secret on 2 live nodes again', async () => {
      for (const p of files.keys()) {
        for (const chunk of await client.locate(p)) if (chunk.nodes.filter((n) => n !== 'dn3').length < 2) return undefined;
      }
      return true;
    }, 60_000);
    await expectReadsBack();
    for (let i = 0; i < 2; i++) expect(await filesWithPattern(cluster.dataDir(i))).toEqual([]);
    victim.start();
    await cluster.waitForLiveNodes(3);
  });

  test('tiering uploads encrypted encodings: no plaintext in S3 or the tier cache; reads stay identical', async () => {
    const cold = patterned(2 * CHUNK + 77);
    await client.mkdir('/cold', { parents: true });
    await client.writeFile('/cold/a.bin', cold);
    const set = await cluster.cli(['tier', 'set', '/cold', '--tier', 'cold']);
    expect(set.code, set.stderr).toBe(0);
    await waitFor('/cold tiered', async () => {
      const info = await client.tierGet('/cold');
      return info.chunksLocal === 0 && info.chunksTiered > 0 ? info : undefined;
    }, 60_000);
    const objects = (await readdir(s3.dir.path, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
    expect(objects.length).toBeGreaterThan(0);
    expect(await filesWithPattern(s3.dir.path)).toEqual([]);
    expect((await client.readFile('/cold/a.bin')).equals(cold)).toBe(true); // through a node's tier cache
    for (let i = 0; i < 3; i++) expect(await filesWithPattern(cluster.dataDir(i))).toEqual([]);
  });

  test('restarted with no key (an open node plane: not refused), reads fail loudly, scrub quarantines nothing; chunk files unchanged', async () => {
    const before = await chunkFileHashes(cluster, 3);
    expect(before.size).toBeGreaterThan(0);
    // No key at all: the node starts (it writes in clear, which every node reads), but reads of encrypted chunks fail.
    env.STRATA_MASTER_KEY = '';
    await restartDatanodes();
    const message = /but no master key is configured \(set --encrypt-key-file or STRATA_MASTER_KEY\)/;
    expectOneLineError(await catWhenReachable('/secret/big.bin'), 12, message, [rightKey]);
    expectOneLineError(await cluster.cli(['cat', '/secret/small.txt']), 12, message, [rightKey]);
    await expect(client.readFile('/secret/log.txt')).rejects.toMatchObject({ kind: 'KeyUnavailable' });
    // Every node's scrubber goes over its chunks and finds nothing to quarantine.
    const scrubbed = await waitFor('a scrub pass on every node', async () => {
      const nodes = await nodeStatuses();
      return nodes?.every((n) => (n.scrub?.passes ?? 0) >= 1) ? nodes : undefined;
    }, 60_000);
    for (const node of scrubbed) {
      expect(node.scrub?.chunksChecked, node.nodeId).toBeGreaterThan(0);
      expect(node.scrub?.corruptFound, node.nodeId).toBe(0);
      expect(node.corruptChunks ?? [], node.nodeId).toEqual([]);
    }
    expect((await client.health()).corrupt).toBe(0);
    for (let i = 0; i < 3; i++) expect(await readdir(path.join(cluster.dataDir(i), 'quarantine'))).toEqual([]);
    expect(await chunkFileHashes(cluster, 3)).toEqual(before);

    env.STRATA_MASTER_KEY = rightKey;
    await restartDatanodes();
    await expectReadsBack();
  });

  test('an export with the master key is ciphertext in S3 (a plain one is not); import needs the key and restores identical bytes', async () => {
    await s3.createBucket('exports');
    const keyFile = path.join(work.path, 'export.key');
    await writeFile(keyFile, `${rightKey}\n`, { mode: 0o600 });
    const s3Flags = ['--endpoint', s3.endpoint, '--path-style', '--no-progress'];
    const exported = await cluster.cli(['export', '/secret', 's3://exports/enc', ...s3Flags, '--encrypt-key-file', keyFile], { env: s3Env });
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdout).toMatch(/encrypted with master key local-[0-9a-f]{16}/);
    const plain = await cluster.cli(['export', '/secret', 's3://exports/plain', ...s3Flags], { env: s3Env });
    expect(plain.code, plain.stderr).toBe(0);
    const found = await filesWithPattern(s3.dir.path);
    expect(found.length).toBeGreaterThan(0); // the control: the plain export's objects
    expect(found.filter((f) => f.includes(`${path.sep}enc${path.sep}`))).toEqual([]);
    expect(found.filter((f) => f.includes(`${path.sep}plain${path.sep}`)).length).toBeGreaterThan(0);

    const refused = await cluster.cli(['import', 's3://exports/enc', '/restored', ...s3Flags], { env: s3Env });
    expectOneLineError(refused, 12, /^strata: s3:\/\/exports\/enc\/manifest\.json: encrypted with master key 'local-[0-9a-f]{16}', but no master key is configured/, [rightKey]);
    await expect(client.stat('/restored')).rejects.toMatchObject({ kind: 'NotFound' });
    const wrongKey = await cluster.cli(['import', 's3://exports/enc', '/restored', ...s3Flags], { env: { ...s3Env, STRATA_MASTER_KEY: randomBytes(32).toString('hex') } });
    expectOneLineError(wrongKey, 12, /but the configured key is 'local-/, [rightKey]);
    await expect(client.stat('/restored')).rejects.toMatchObject({ kind: 'NotFound' });

    const imported = await cluster.cli(['import', 's3://exports/enc', '/restored', ...s3Flags], { env: { ...s3Env, STRATA_MASTER_KEY: rightKey } });
    expect(imported.code, imported.stderr).toBe(0);
    for (const [p, data] of files) expect((await client.readFile(p.replace('/secret', '/restored'))).equals(data), p).toBe(true);
  });

  test('a bad master key configuration is one line, exit 2, and never shows the key', async () => {
    const base = ['datanode', '--data-dir', path.join(work.path, 'bad-dn'), '--coordinators', '127.0.0.1:1'];
    expectOneLineError(await runCli([...base, '--encrypt-key-file', path.join(work.path, 'absent.key')]), 2, /^strata: invalid config: encryptKeyFile: cannot read .*absent\.key: ENOENT$/);
    const short = rightKey.slice(0, 40);
    expectOneLineError(await runCli(base, { env: { STRATA_MASTER_KEY: short } }), 2, /^strata: invalid config: masterKey: expected 32 bytes/, [short]);
  });
});
