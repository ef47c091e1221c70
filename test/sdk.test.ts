// The SDK against a real cluster (embedded metadata, 3 data node processes, 64 KiB chunks so
// multi-chunk paths are cheap): byte ranges, holes, truncation, streams, namespace calls.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Strata } from '../client/index.js';
import { startCluster, type TestCluster } from './harness/cluster.js';

const CHUNK = 64 * 1024;

describe('SDK', () => {
  let cluster: TestCluster;
  let fs: Strata;

  beforeAll(async () => {
    cluster = await startCluster({ datanodes: 3, chunkSize: '64KiB' });
    fs = cluster.client();
  });
  afterAll(async () => cluster?.stop());

  test('byte ranges across chunk boundaries read exactly the bytes asked for', async () => {
    const data = randomBytes(5 * CHUNK + 1234);
    const stat = await fs.writeFile('/ranges.bin', data);
    expect(stat.size).toBe(data.length);
    expect(stat.chunks).toBe(6);
    for (const [start, end] of [[0, 0], [0, CHUNK - 1], [CHUNK - 10, CHUNK + 10], [100, 4 * CHUNK + 7], [5 * CHUNK, data.length - 1], [data.length - 1, data.length + 50]]) {
      const got = await fs.readFile('/ranges.bin', { start, end });
      expect(got.equals(data.subarray(start, end + 1)), `${start}..${end}`).toBe(true);
    }
    expect((await fs.readFile('/ranges.bin', { start: data.length + 10 })).length).toBe(0);
    await expect(fs.readFile('/ranges.bin', { start: 10, end: 5 })).rejects.toThrow(/invalid byte range/);
  });

  test('streams: a write stream of uneven pieces; finish means committed', async () => {
    const pieces = [7, CHUNK, 3, CHUNK * 2 + 5, 1].map((n) => randomBytes(n));
    const out = await fs.createWriteStream('/stream.bin', { replication: 2 });
    await new Promise<void>((resolve, reject) => {
      Readable.from(pieces).pipe(out).on('finish', resolve).on('error', reject);
    });
    const stat = await fs.stat('/stream.bin');
    expect(stat.size).toBe(pieces.reduce((s, p) => s + p.length, 0));
    expect(stat.replication).toBe(2);
    expect((await fs.readFile('/stream.bin')).equals(Buffer.concat(pieces))).toBe(true);
    for (const chunk of await fs.locate('/stream.bin')) expect(chunk.nodes).toHaveLength(2);
  });

  test('truncate shorter then longer: the cut bytes read as zeros, never the old bytes', async () => {
    const data = randomBytes(3 * CHUNK);
    await fs.writeFile('/trunc.bin', data);
    await fs.truncate('/trunc.bin', CHUNK + 100);
    expect((await fs.readFile('/trunc.bin')).equals(data.subarray(0, CHUNK + 100))).toBe(true);
    await fs.truncate('/trunc.bin', 3 * CHUNK);
    const grown = await fs.readFile('/trunc.bin');
    expect(grown.subarray(0, CHUNK + 100).equals(data.subarray(0, CHUNK + 100))).toBe(true);
    expect(grown.subarray(CHUNK + 100).equals(Buffer.alloc(2 * CHUNK - 100))).toBe(true);
  });

  test('overwriting a file replaces its content; an empty file reads empty', async () => {
    await fs.writeFile('/over.txt', 'first version, longer');
    await fs.writeFile('/over.txt', 'second');
    expect((await fs.readFile('/over.txt')).toString()).toBe('second');
    await fs.writeFile('/empty', '');
    expect((await fs.stat('/empty')).size).toBe(0);
    expect((await fs.readFile('/empty')).length).toBe(0);
    await expect(fs.writeFile('/over.txt', 'x', { exclusive: true })).rejects.toMatchObject({ kind: 'Exists' });
  });

  test('namespace: mkdir -p, list pages, rename, symlink, setattr, rm -r', async () => {
    await fs.mkdir('/tree/a/b', { parents: true });
    await fs.mkdir('/tree/a/b', { parents: true }); // idempotent
    // Over one readdir page (1000): the listing must page.
    await Promise.all(Array.from({ length: 1205 }, (_, i) => fs.writeFile(`/tree/a/f${String(i).padStart(4, '0')}`, i === 0 ? '0' : '')));
    const names = (await fs.readdir('/tree/a')).map((e) => e.name);
    expect(names).toHaveLength(1206);
    expect(names[0]).toBe('b');
    await fs.rename('/tree/a/f0000', '/tree/a/b/moved');
    expect((await fs.readFile('/tree/a/b/moved')).toString()).toBe('0');
    expect(await fs.exists('/tree/a/f0000')).toBe(false);
    await fs.symlink('../a/b/moved', '/tree/link');
    expect(await fs.readlink('/tree/link')).toBe('../a/b/moved');
    const changed = await fs.setattr('/tree/a/b/moved', { mode: 0o600, mtimeMs: 1_000_000 });
    expect([changed.mode, changed.mtimeMs]).toEqual([0o600, 1_000_000]);
    await expect(fs.rm('/tree')).rejects.toMatchObject({ kind: 'NotEmpty' });
    await fs.rm('/tree', { recursive: true });
    expect(await fs.exists('/tree')).toBe(false);
  });

  test('statfs and nodes describe the cluster', async () => {
    const stats = await fs.statfs();
    expect(stats.liveNodes).toBe(3);
    expect(stats.capacityBytes).toBeGreaterThan(0);
    expect(stats.files).toBeGreaterThan(0);
    const nodes = await fs.nodes();
    expect(nodes.map((n) => [n.nodeId, n.state])).toEqual([['dn1', 'live'], ['dn2', 'live'], ['dn3', 'live']]);
  });
});
