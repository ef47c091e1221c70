// Directory and tenant quotas end to end: real coordinator and data node processes, the CLI as a
// user runs it, and (where /dev/fuse works) a real mount. Usage is logical file size and inodes.
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { StrataError, type Strata } from '../client/index.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { expectOneLineError } from './harness/cli-errors.js';
import { fuseUnavailableReason, sh, startMount, type MountProcess, type ShResult } from './harness/mount.js';
import { tempDir, type TempDir } from './harness/ports.js';

const MiB = 1024 * 1024;
const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function kindOf(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err, 'expected a failure').toBeInstanceOf(StrataError);
  return (err as StrataError).kind;
}

function quotaSuite(engine: 'embedded' | 'etcd') {
  describe(`quotas (${engine} metadata)`, () => {
    let cluster: TestCluster;
    let client: Strata;

    beforeAll(async () => {
      cluster = await startCluster({ meta: engine, datanodes: 1, replication: 1, chunkSize: '1MiB' });
      client = cluster.client();
    });
    afterAll(async () => cluster?.stop());

    test('a write past the byte quota fails (QuotaExceeded, exit 7) and what was stored reads back identical', async () => {
      await client.mkdir('/bq', { parents: true });
      const first = randomBytes(3 * MiB + 123);
      await client.writeFile('/bq/first', first);
      const set = await cluster.cli(['quota', 'set', '/bq', '--bytes', '5MiB', '--json']);
      expect(set.code, set.stderr).toBe(0);
      expect(JSON.parse(set.stdout)).toMatchObject({ path: '/bq', limitBytes: 5 * MiB, limitFiles: 0, usedBytes: first.length, usedFiles: 1 });

      // Through the SDK: the chunk that would pass the limit is refused at its commit.
      expect(await kindOf(client.writeFile('/bq/second', randomBytes(3 * MiB)))).toBe('QuotaExceeded');
      expect(sha(await client.readFile('/bq/first'))).toBe(sha(first));
      // What fit of the refused file stays (whole chunks), and is counted: nothing more.
      const second = await client.stat('/bq/second');
      const got = await client.quotaGet('/bq');
      expect(got.usedBytes).toBe(first.length + second.size);
      expect(got.usedBytes).toBeLessThanOrEqual(5 * MiB);
      expect(got.usedFiles).toBe(2);

      // Through the CLI: exit 7, one line saying so.
      const local = await tempDir('quota-put');
      try {
        const file = path.join(local.path, 'big');
        await sh(`head -c ${4 * MiB} /dev/urandom > ${file}`);
        expectOneLineError(await cluster.cli(['put', file, '/bq/third']), 7, /quota exceeded/i);
        // A put that made the file takes it away again when refused: no broken file, nothing counted.
        expect(await client.exists('/bq/third')).toBe(false);
        expect((await client.quotaGet('/bq')).usedFiles).toBe(2);
      } finally {
        await local.cleanup();
      }
      expect(sha(await client.readFile('/bq/first'))).toBe(sha(first));

      // Overwriting in place within the size never needs more quota; a truncate up past it does.
      const head = randomBytes(1000);
      await client.writeChunkAt(await client.stat('/bq/first'), 0, Buffer.concat([head, first.subarray(1000, MiB)]));
      expect(await kindOf(client.truncate('/bq/first', 6 * MiB))).toBe('QuotaExceeded');
      expect((await client.stat('/bq/first')).size).toBe(first.length);
    });

    test('a file-count quota refuses the create past it; unlink frees usage', async () => {
      await client.mkdir('/fq', { parents: true });
      await client.quotaSet('/fq', { files: 3 });
      await client.writeFile('/fq/a', 'a');
      await client.mkdir('/fq/d');
      await client.symlink('a', '/fq/d/l');
      expect(await kindOf(client.writeFile('/fq/b', 'b'))).toBe('QuotaExceeded');
      expect(await kindOf(client.mkdir('/fq/e'))).toBe('QuotaExceeded');
      expect(await client.exists('/fq/b')).toBe(false);
      expect(await client.quotaGet('/fq')).toMatchObject({ usedFiles: 3, usedBytes: 1 });
      await client.rm('/fq/a');
      expect(await client.quotaGet('/fq')).toMatchObject({ usedFiles: 2, usedBytes: 0 });
      await client.writeFile('/fq/b', 'bb');
      expect(await client.quotaGet('/fq')).toMatchObject({ usedFiles: 3, usedBytes: 2 });
      await client.rm('/fq/d', { recursive: true });
      expect(await client.quotaGet('/fq')).toMatchObject({ usedFiles: 1, usedBytes: 2 });
    });

    test('nested quotas all apply; rename across quota dirs moves usage; a plain directory cannot cross (CrossQuota)', async () => {
      await client.mkdir('/outer/inner', { parents: true });
      await client.mkdir('/other', { parents: true });
      await client.quotaSet('/outer', { bytes: 4 * MiB });
      await client.quotaSet('/outer/inner', { bytes: 3 * MiB });
      await client.quotaSet('/other', { files: 100 });
      const data = randomBytes(2 * MiB);
      await client.writeFile('/outer/inner/f', data);
      expect((await client.quotaGet('/outer')).usedBytes).toBe(2 * MiB);
      expect((await client.quotaGet('/outer/inner')).usedBytes).toBe(2 * MiB);
      // The inner quota is the tighter one here...
      expect(await kindOf(client.writeFile('/outer/inner/g', randomBytes(MiB + 1)))).toBe('QuotaExceeded');
      await client.rm('/outer/inner/g');
      // ...and the outer one there: 2 MiB inside + 3 MiB beside it > 4 MiB.
      expect(await kindOf(client.writeFile('/outer/h', randomBytes(3 * MiB)))).toBe('QuotaExceeded');
      await client.rm('/outer/h');

      await client.rename('/outer/inner/f', '/other/f');
      expect(await client.quotaGet('/outer')).toMatchObject({ usedBytes: 0, usedFiles: 1 }); // inner itself
      expect(await client.quotaGet('/outer/inner')).toMatchObject({ usedBytes: 0, usedFiles: 0 });
      expect(await client.quotaGet('/other')).toMatchObject({ usedBytes: 2 * MiB, usedFiles: 1 });
      expect(sha(await client.readFile('/other/f'))).toBe(sha(data));
      // Its later growth is charged where it now lives.
      await client.truncate('/other/f', 2 * MiB + 10);
      expect((await client.quotaGet('/other')).usedBytes).toBe(2 * MiB + 10);
      // Moving it back past the inner limit is refused, and changes nothing.
      await client.writeFile('/outer/inner/x', randomBytes(2 * MiB));
      expect(await kindOf(client.rename('/other/f', '/outer/inner/f'))).toBe('QuotaExceeded');
      expect(await client.exists('/other/f')).toBe(true);

      // A directory without its own quota cannot cross; one with a quota carries its usage along.
      await client.mkdir('/other/plain');
      await client.writeFile('/other/plain/p', 'ppp');
      expect(await kindOf(client.rename('/other/plain', '/outer/plain'))).toBe('CrossQuota');
      await client.rm('/outer/inner/x');
      await client.rename('/outer/inner', '/other/inner');
      expect(await client.quotaGet('/outer')).toMatchObject({ usedBytes: 0, usedFiles: 0 });
      expect((await client.quotaGet('/other')).usedFiles).toBe(4); // f, plain, plain/p, inner
      // Hard links stay within one set of quotas: none crosses through the mount either.
    });

    // The CLI is the same whatever the engine: once is enough.
    test.skipIf(engine === 'etcd')('quota ls, get, rm, --tenant, df PATH; bad input is one line', async () => {
      await client.mkdir('/tenants/acme', { parents: true });
      const tenant = await cluster.cli(['quota', 'set', '--tenant', 'acme', '--bytes', '1G', '--files', '1000']);
      expect(tenant.code, tenant.stderr).toBe(0);
      expect(tenant.stdout).toMatch(/quota on \/tenants\/acme set: 0 B of 1\.0 GiB/);
      await client.writeFile('/tenants/acme/x', 'hello');
      const get = await cluster.cli(['quota', 'get', '--tenant', 'acme', '--json']);
      expect(JSON.parse(get.stdout)).toMatchObject({ path: '/tenants/acme', usedBytes: 5, usedFiles: 1, limitFiles: 1000 });
      const ls = await cluster.cli(['quota', 'ls']);
      expect(ls.code, ls.stderr).toBe(0);
      expect(ls.stdout).toMatch(/^PATH\s+BYTES USED/);
      expect(ls.stdout).toMatch(/\/tenants\/acme\s+5 B\s+1\.0 GiB\s+1\s+1000/);
      const df = await cluster.cli(['df', '/tenants/acme/x']);
      expect(df.code, df.stderr).toBe(0);
      expect(df.stdout).toMatch(/Quota:\s+\/tenants\/acme: 5 B of 1\.0 GiB/);
      const dfJson = JSON.parse((await cluster.cli(['df', '/', '--json'])).stdout);
      expect(dfJson.quota ?? null).toBeNull();

      expectOneLineError(await cluster.cli(['quota', 'set', '/tenants/acme']), 2, /give --bytes and\/or --files/);
      expectOneLineError(await cluster.cli(['quota', 'set', '/tenants/acme', '--bytes', 'lots']), 2, /invalid --bytes/);
      expectOneLineError(await cluster.cli(['quota', 'set', '/tenants/acme/x', '--files', '3']), 5, /not a directory/);
      expectOneLineError(await cluster.cli(['quota', 'get', '/nowhere']), 3, /no such file/);
      expectOneLineError(await cluster.cli(['quota', 'get', '/tenants']), 3, /no quota/);

      const rm = await cluster.cli(['quota', 'rm', '--tenant', 'acme']);
      expect(rm.code, rm.stderr).toBe(0);
      expectOneLineError(await cluster.cli(['quota', 'rm', '--tenant', 'acme']), 3, /no quota/);
    });

    test('usage survives a coordinator restart, and keeps being charged after it', async () => {
      await client.mkdir('/keep', { parents: true });
      await client.quotaSet('/keep', { bytes: 2 * MiB, files: 10 });
      await client.writeFile('/keep/a', randomBytes(MiB));
      const before = await client.quotaGet('/keep');
      const coordinator = cluster.coordinators[0]!;
      coordinator.kill9();
      await new Promise((r) => coordinator.process.once('exit', r));
      coordinator.start();
      await cluster.waitForLiveNodes(1, 60_000);
      expect(await client.quotaGet('/keep')).toEqual(before);
      expect(await kindOf(client.writeFile('/keep/b', randomBytes(MiB + 1)))).toBe('QuotaExceeded');
      await client.rm('/keep/b');
      expect(await client.quotaGet('/keep')).toMatchObject({ usedBytes: MiB, usedFiles: 1 });
    });
  });
}

quotaSuite('embedded');
quotaSuite('etcd');

const fuseSkip = fuseUnavailableReason();
if (fuseSkip) console.log(`skipping the quota mount test: ${fuseSkip}`);

describe.skipIf(!!fuseSkip)('quotas through the mount', () => {
  let cluster: TestCluster;
  let work: TempDir;
  let mount: MountProcess | undefined;
  let M: string;

  beforeAll(async () => {
    work = await tempDir('quota-fuse');
    M = path.join(work.path, 'mnt');
    cluster = await startCluster({ datanodes: 1, replication: 1, chunkSize: '1MiB' });
    mount = await startMount(cluster, M);
  });
  afterAll(async () => {
    await mount?.stop().catch((err) => console.error(err));
    await cluster?.stop().catch((err) => console.error(err));
    await work?.cleanup();
  });

  const run = (script: string): Promise<ShResult> => sh(script, { timeoutMs: 60_000 });

  test('dd past the quota gets EDQUOT ("Disk quota exceeded"), earlier data intact; df shows the quota', async () => {
    expect((await run(`mkdir ${M}/q && head -c 2000000 /dev/urandom > ${work.path}/keep && cp ${work.path}/keep ${M}/q/keep`)).code).toBe(0);
    const set = await cluster.cli(['quota', 'set', '/q', '--bytes', '4MiB', '--files', '5']);
    expect(set.code, set.stderr).toBe(0);
    const dd = await run(`dd if=/dev/zero of=${M}/q/big bs=1M count=8 conv=fsync status=none`);
    expect(dd.code).not.toBe(0);
    expect(dd.stderr).toMatch(/Disk quota exceeded/);
    expect((await run(`cmp ${work.path}/keep ${M}/q/keep`)).code).toBe(0);
    // And past any page cache of the mount: the stored bytes themselves, through the SDK.
    expect(sha(await cluster.client().readFile('/q/keep'))).toBe(sha(await readFile(`${work.path}/keep`)));
    const usage = await cluster.client().quotaGet('/q');
    expect(usage.usedBytes).toBeLessThanOrEqual(4 * MiB);

    // df on the quota directory: its limit as the size, its usage as used.
    const df = await run(`df -B1 --output=size,used ${M}/q | tail -1`);
    const [size, used] = df.stdout.trim().split(/\s+/).map(Number);
    expect(size).toBe(4 * MiB);
    expect(used).toBe(Math.ceil(usage.usedBytes / 4096) * 4096); // statvfs counts whole blocks
    const inodes = await run(`stat -f -c '%c %d' ${M}/q`); // file nodes: total, free
    expect(inodes.stdout.trim(), inodes.stderr).toBe(`5 ${5 - usage.usedFiles}`);

    // The file-count limit: a touch past it fails the same way.
    const touches = await run(`cd ${M}/q && touch a b c d 2>&1; ls | wc -l`);
    expect(touches.stdout).toMatch(/Disk quota exceeded/);
    expect(touches.stdout.trim().split('\n').pop()).toBe('5');
    // Moving a plain directory out is EXDEV to the kernel: mv copies instead and succeeds.
    expect((await run(`rm -f ${M}/q/big ${M}/q/a && mkdir ${M}/q/sub && echo hi > ${M}/q/sub/f && mv ${M}/q/sub ${M}/sub && cat ${M}/sub/f`)).stdout).toBe('hi\n');
  });
});
