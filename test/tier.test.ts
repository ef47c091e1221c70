// `strata tier` through real processes: policies (inheritance, nearest wins, never, the cluster
// policy's path prefix), pins, clear, recall, counts, status, and bad input as one line with the
// error's exit code. The coordinators have two tiers configured on a real S3 server (s3rver).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Strata, TierPathInfo, TierStatusReport } from '../client/index.js';
import { StrataError } from '../client/index.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { expectOneLineError } from './harness/cli-errors.js';
import { S3Server, s3Env, S3_SECRET_KEY } from './harness/s3.js';

const KiB = 1024;
const DAY_MS = 86_400_000;


describe('strata tier', () => {
  let s3: S3Server;
  let cluster: TestCluster;
  let client: Strata;

  const json = async <T>(args: string[]): Promise<T> => {
    const result = await cluster.cli([...args, '--json']);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as T;
  };
  const get = (path: string) => json<TierPathInfo>(['tier', 'get', path]);
  const ok = async (args: string[]) => {
    const result = await cluster.cli(args);
    expect(result.code, result.stderr).toBe(0);
    return result.stdout;
  };

  beforeAll(async () => {
    s3 = await S3Server.start();
    await s3.createBucket('strata-cold');
    await s3.createBucket('strata-warm');
    cluster = await startCluster({
      datanodes: 1,
      replication: 1,
      chunkSize: '64KiB',
      // The tiering job's passes are left out here (test/tiering.test.ts moves chunks): its
      // first pass, at start, finds no policy, and the next one is an hour away.
      coordinatorArgs: ['--tier', s3.tierSpec('cold', 'strata-cold', 'pfx'), '--tier', s3.tierSpec('warm', 'strata-warm'), '--tier-interval-ms', '3600000'],
      env: s3Env,
    });
    client = cluster.client();
    for (const dir of ['/arch/sub', '/arch/keep', '/data/x', '/database']) await client.mkdir(dir, { parents: true });
    await client.writeFile('/arch/a.bin', Buffer.alloc(200 * KiB, 1)); // 4 chunks
    await client.writeFile('/arch/sub/b.bin', Buffer.alloc(10, 2));
    await client.writeFile('/arch/keep/c.bin', Buffer.alloc(70 * KiB, 3)); // 2 chunks
    await client.writeFile('/data/x/d.bin', Buffer.alloc(5, 4));
    await client.writeFile('/database/e.bin', Buffer.alloc(5, 5));
    await client.writeFile('/top.bin', Buffer.alloc(5, 6));
  });
  afterAll(async () => {
    await cluster?.stop();
    await s3?.stop();
  });

  test('a directory policy applies below it; a nearer one wins; --never stops it; clear falls back', async () => {
    const set = await json<TierPathInfo>(['tier', 'set', '/arch', '--tier', 'cold', '--cold-after', '30d', '--min-size', '1KiB']);
    expect(set).toMatchObject({ path: '/arch', policy: { tier: 'cold', coldAfterMs: 30 * DAY_MS, minSize: 1024, pathPrefix: '' }, policyFrom: '/arch' });
    expect(await get('/arch/sub/b.bin')).toMatchObject({ policy: { tier: 'cold' }, policyFrom: '/arch', pinned: false });

    await ok(['tier', 'set', '/arch/sub', '--tier', 'warm']);
    expect(await get('/arch/sub/b.bin')).toMatchObject({ policy: { tier: 'warm', coldAfterMs: 0, minSize: 0 }, policyFrom: '/arch/sub' });
    expect(await get('/arch/a.bin')).toMatchObject({ policy: { tier: 'cold' }, policyFrom: '/arch' });

    // A file's own policy beats its directory's.
    await ok(['tier', 'set', '/arch/a.bin', '--tier', 'warm', '--cold-after', '12h']);
    expect(await get('/arch/a.bin')).toMatchObject({ policy: { tier: 'warm', coldAfterMs: 12 * 3_600_000 }, policyFrom: '/arch/a.bin' });
    await ok(['tier', 'clear', '/arch/a.bin']);
    expect(await get('/arch/a.bin')).toMatchObject({ policyFrom: '/arch' });

    await ok(['tier', 'set', '/arch/keep', '--never']);
    expect(await get('/arch/keep/c.bin')).toMatchObject({ policy: { tier: '' }, policyFrom: '/arch/keep' });
    expect(await ok(['tier', 'get', '/arch/keep/c.bin'])).toMatch(/Policy: +never tier \(from \/arch\/keep\)/);

    const cleared = await json<TierPathInfo>(['tier', 'clear', '/arch/sub']);
    expect(cleared).toMatchObject({ path: '/arch/sub', policy: { tier: 'cold' }, policyFrom: '/arch' });
    expect(await get('/arch/sub/b.bin')).toMatchObject({ policyFrom: '/arch' });
    expect(await ok(['tier', 'get', '/top.bin'])).toMatch(/Policy: +no policy/);
  });

  test('the cluster policy applies only under its path prefix, and only where no directory policy does', async () => {
    await ok(['tier', 'set', '--cluster', '--tier', 'warm', '--cold-after', '90d', '--path-prefix', '/data']);
    expect(await get('/data/x/d.bin')).toMatchObject({ policy: { tier: 'warm', coldAfterMs: 90 * DAY_MS, pathPrefix: '/data' }, policyFrom: '(cluster)' });
    const outside = await get('/database/e.bin');
    expect(outside.policy).toBeUndefined();
    expect(outside.policyFrom).toBe('');
    expect((await get('/top.bin')).policyFrom).toBe('');
    await ok(['tier', 'set', '/data/x', '--never']);
    expect(await get('/data/x/d.bin')).toMatchObject({ policy: { tier: '' }, policyFrom: '/data/x' });
    await ok(['tier', 'clear', '/data/x']);

    // Everywhere (no prefix), but a directory policy still wins.
    await ok(['tier', 'set', '--cluster', '--tier', 'cold']);
    expect(await get('/top.bin')).toMatchObject({ policy: { tier: 'cold' }, policyFrom: '(cluster)' });
    expect(await get('/database/e.bin')).toMatchObject({ policyFrom: '(cluster)' });
    expect((await get('/arch/sub/b.bin')).policyFrom).toBe('/arch');

    expect(await ok(['tier', 'clear', '--cluster'])).toMatch(/cluster-wide policy cleared/);
    expect((await get('/top.bin')).policy).toBeUndefined();
    expect((await get('/data/x/d.bin')).policy).toBeUndefined();
  });

  test('a pin on a directory covers the files below it; unpin; a pin above still holds', async () => {
    const pinned = await json<TierPathInfo>(['tier', 'pin', '/arch/sub']);
    expect(pinned).toMatchObject({ path: '/arch/sub', pinned: true, pinnedFrom: '/arch/sub' });
    expect(await get('/arch/sub/b.bin')).toMatchObject({ pinned: true, pinnedFrom: '/arch/sub' });
    expect(await get('/arch/a.bin')).toMatchObject({ pinned: false, pinnedFrom: '' });
    expect(await ok(['tier', 'unpin', '/arch/sub/b.bin'])).toMatch(/still pinned by \/arch\/sub/);
    await ok(['tier', 'unpin', '/arch/sub']);
    expect(await get('/arch/sub/b.bin')).toMatchObject({ pinned: false, pinnedFrom: '' });
  });

  test('get counts files and chunks under a path: all local before anything moves', async () => {
    expect(await get('/arch')).toMatchObject({ files: 3, chunksLocal: 7, bytesLocal: 270 * KiB + 10, chunksTiered: 0, bytesTiered: 0 });
    expect(await get('/arch/a.bin')).toMatchObject({ files: 1, chunksLocal: 4, bytesLocal: 200 * KiB });
    expect(await get('/')).toMatchObject({ files: 6, chunksLocal: 10, chunksTiered: 0 });
    expect(await ok(['tier', 'get', '/arch'])).toMatch(/Files: +3\nLocal: +7 chunk\(s\), 270 KiB\nTiered: +0 chunk\(s\), 0 B/);
  });

  test('recall pins the path and, with nothing tiered, returns at once', async () => {
    const reply = await json<{ chunksTiered: number; message: string }>(['tier', 'recall', '/arch/keep']);
    expect(reply.chunksTiered).toBe(0);
    expect(reply.message).toMatch(/nothing to recall: \/arch\/keep has no tiered chunks/);
    expect(await get('/arch/keep/c.bin')).toMatchObject({ pinned: true, pinnedFrom: '/arch/keep' });
    expect(await ok(['tier', 'recall', '/arch/keep', '--no-wait'])).toMatch(/nothing to recall/);
    await ok(['tier', 'unpin', '/arch/keep']);
  });

  test('status lists the configured tiers without credentials, and the local chunks', async () => {
    const status = await json<TierStatusReport>(['tier', 'status']);
    expect(status.tiers.map((t) => t.name)).toEqual(['cold', 'warm']);
    expect(status.tiers[0]).toMatchObject({ name: 'cold', bucket: 'strata-cold', prefix: 'pfx/', endpoint: s3.endpoint, chunks: 0, bytes: 0, state: 'ok' });
    expect(status).toMatchObject({ localChunks: 10, localBytes: 270 * KiB + 10 + 15, queued: 0, moved: 0 });
    expect(status.leader).toBe(cluster.coordinators[0]!.address);
    const text = await ok(['tier', 'status']);
    expect(text).toMatch(/cold +0 chunk\(s\) +0 B +ok +s3:\/\/strata-cold\/pfx\//);
    for (const out of [JSON.stringify(status), text]) {
      expect(out).not.toContain(S3_SECRET_KEY);
      expect(out).not.toMatch(/accessKey|secretAccess|sessionToken/i);
    }
  });

  test('bad input: one line and the exit code of its kind; nothing changes', async () => {
    expectOneLineError(await cluster.cli(['tier', 'set', '/arch', '--tier', 'glacier']), 2, /unknown tier 'glacier': the configured tiers are cold, warm/);
    expectOneLineError(await cluster.cli(['tier', 'get', '/missing']), 3, /\/missing: no such file or directory/);
    expectOneLineError(await cluster.cli(['tier', 'set', '/missing', '--tier', 'cold']), 3, /no such file/);
    expectOneLineError(await cluster.cli(['tier', 'pin', '/arch/a.bin/x']), 5, /not a directory/);
    expectOneLineError(await cluster.cli(['tier', 'recall', '/missing']), 3, /no such file/);
    expectOneLineError(await cluster.cli(['tier', 'set', '/arch']), 2, /missing --tier/);
    expectOneLineError(await cluster.cli(['tier', 'set', '/arch', '--tier', 'cold', '--never']), 2, /either --tier NAME or --never/);
    expectOneLineError(await cluster.cli(['tier', 'set', '/arch', '--tier', 'cold', '--cold-after', '30']), 2, /invalid --cold-after '30'/);
    expectOneLineError(await cluster.cli(['tier', 'set', '/arch', '--tier', 'cold', '--min-size', 'big']), 2, /invalid --min-size 'big'/);
    expectOneLineError(await cluster.cli(['tier', 'set', '/arch', '--tier', 'cold', '--path-prefix', '/data']), 2, /only for --cluster/);
    expectOneLineError(await cluster.cli(['tier', 'set', '--tier', 'cold']), 2, /missing path/);
    expectOneLineError(await cluster.cli(['tier', 'recall', '/arch', '--timeout', 'soon']), 2, /invalid --timeout/);
    expect(await get('/arch')).toMatchObject({ policy: { tier: 'cold', coldAfterMs: 30 * DAY_MS }, policyFrom: '/arch', pinned: false });
  });

  test('SDK: typed numbers; Invalid and NotFound as StrataError kinds; a path prefix only on the cluster policy', async () => {
    const info = await client.tierGet('/arch');
    expect(typeof info.files).toBe('number');
    expect(typeof info.bytesLocal).toBe('number');
    const kindOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: unknown) => (e instanceof StrataError ? e.kind : String(e)));
    expect(await kindOf(client.tierSet('/arch', { tier: 'glacier' }))).toBe('Invalid');
    expect(await kindOf(client.tierSet('/arch', { tier: 'cold', pathPrefix: '/arch' }))).toBe('Invalid');
    expect(await kindOf(client.tierSet('relative', { tier: 'cold' }))).toBe('Invalid');
    expect(await kindOf(client.tierPin('/nope', true))).toBe('NotFound');
    const set = await client.tierSet('', { tier: 'warm', pathPrefix: '/data/' }, { cluster: true });
    expect(set).toMatchObject({ path: '/data', policy: { tier: 'warm', pathPrefix: '/data' }, policyFrom: '(cluster)' });
    await client.tierClear({ cluster: true });
    expect((await client.tierGet('/data/x/d.bin')).policy).toBeUndefined();
  });
});
