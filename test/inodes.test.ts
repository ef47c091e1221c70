// The inode operations (strata.inodes, over the session stream) against real coordinator
// processes, one contract run on both metadata engines: embedded LevelDB and real etcd.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { StrataError, type ErrorKind, type InodeOps, type Strata } from '../client/index.js';
import { startCluster, type ClusterOptions, type TestCluster } from './harness/cluster.js';

const ROOT = 1;

async function expectKind(promise: Promise<unknown>, kind: ErrorKind): Promise<void> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err, `expected ${kind}`).toBeInstanceOf(StrataError);
  expect((err as StrataError).kind, (err as Error).message).toBe(kind);
}

function inodeContract(engine: ClusterOptions['meta']) {
  describe(`inode operations: ${engine}`, () => {
    let cluster: TestCluster;
    let fs: Strata;
    let ops: InodeOps;
    let dirCount = 0;
    const freshDir = async () => (await ops.mkdir(ROOT, `t${++dirCount}`, 0o755)).ino;

    beforeAll(async () => {
      cluster = await startCluster({ meta: engine, datanodes: 1, replication: 1, chunkSize: '64KiB' });
      fs = cluster.client();
      ops = fs.inodes;
    });
    afterAll(async () => cluster?.stop());

    test('lookup and getattr: by parent and name, by inode; the errors of each', async () => {
      const root = await ops.getattr(ROOT);
      expect(root.isDirectory()).toBe(true);
      const dir = await freshDir();
      const sub = await ops.mkdir(dir, 'sub', 0o700);
      expect(sub.isDirectory()).toBe(true);
      expect(sub.mode).toBe(0o700);
      expect((await ops.lookup(dir, 'sub')).ino).toBe(sub.ino);
      expect((await ops.getattr(sub.ino)).ino).toBe(sub.ino);
      // The path API sees the same inode.
      expect((await fs.stat(`/t${dirCount}/sub`)).ino).toBe(sub.ino);
      await expectKind(ops.lookup(dir, 'absent'), 'NotFound');
      await expectKind(ops.mkdir(dir, 'sub', 0o755), 'Exists');
      const { stat: file } = await ops.create(dir, 'file');
      await expectKind(ops.lookup(file.ino, 'x'), 'NotDir');
      await expectKind(ops.mkdir(file.ino, 'x', 0o755), 'NotDir');
      await expectKind(ops.getattr(987_654_321), 'NotFound');
      await expectKind(ops.lookup(987_654_321, 'x'), 'NotFound');
    });

    test('bad input: empty, reserved and over-long names, inode 0', async () => {
      const dir = await freshDir();
      await expectKind(ops.lookup(dir, ''), 'Invalid');
      await expectKind(ops.lookup(dir, '..'), 'Invalid');
      await expectKind(ops.lookup(dir, 'a/b'), 'Invalid');
      await expectKind(ops.mkdir(dir, 'x'.repeat(256), 0o755), 'Invalid');
      await expectKind(ops.getattr(0), 'Invalid');
      await expectKind(ops.create(dir, 'a\0b'), 'Invalid');
    });

    test('create: exclusive, reopen, and the first chunk placed in the same message', async () => {
      const dir = await freshDir();
      const { stat, grant } = await ops.create(dir, 'f', { mode: 0o600, exclusive: true, allocateFirstChunk: true });
      expect(stat.isFile()).toBe(true);
      expect(stat.mode).toBe(0o600);
      expect(grant?.pipeline.length).toBe(1);
      await expectKind(ops.create(dir, 'f', { exclusive: true }), 'Exists');
      const reopened = await ops.create(dir, 'f');
      expect(reopened.stat.ino).toBe(stat.ino);
      expect(reopened.grant).toBeUndefined();
      // The grant is good for a write: no AllocateChunk round trip.
      const written = await fs.writeChunkAt(stat, 0, Buffer.from('hello, inodes'), { grant });
      expect(written.size).toBe(13);
      expect((await ops.getattr(stat.ino)).size).toBe(13);
      expect((await fs.readFile(`/t${dirCount}/f`)).toString()).toBe('hello, inodes');
      await ops.mkdir(dir, 'd', 0o755);
      await expectKind(ops.create(dir, 'd'), 'IsDir');
    });

    test("a small file's life costs one request per change, each answer kept: create with placement, commit, rename, unlink (also of one of two links)", async () => {
      const dir = await freshDir();
      const pushes: unknown[] = [];
      const stop = ops.onInvalidate((event) => void pushes.push(event));
      try {
        await expectKind(ops.lookup(dir, 'f'), 'NotFound'); // a leased read: the session holds a lease from here on
        // Lease upkeep (a renewal falls due every few seconds, sooner on a slow machine) is not the change's.
        const changeRequests = () =>
          Object.entries(fs.metadataRequestsByOp).reduce((sum, [op, n]) => (op === 'leaseRenew' || op === 'leaseAck' ? sum : sum + n), 0);
        const counted = async <T>(requests: number, change: () => Promise<T>): Promise<T> => {
          const before = changeRequests();
          const result = await change();
          expect(changeRequests() - before).toBe(requests);
          return result;
        };
        const { stat, grant } = await counted(1, () => ops.create(dir, 'f', { allocateFirstChunk: true }));
        await counted(1, () => fs.writeChunkAt(stat, 0, Buffer.from('small'), { grant })); // the commit: AllocateChunk came with the create
        const committed = await counted(0, () => ops.getattr(stat.ino));
        expect(committed.size).toBe(5);
        await counted(1, () => ops.rename(dir, 'f', dir, 'g'));
        expect(await counted(0, () => ops.lookup(dir, 'g'))).toMatchObject({ ino: stat.ino, size: 5 });
        await counted(0, () => expectKind(ops.lookup(dir, 'f'), 'NotFound'));
        // None of the writer's own changes was pushed back to it.
        expect(pushes.filter((e) => (e as { ino?: number }).ino === stat.ino || 'all' in (e as object))).toEqual([]);
        await ops.link(stat.ino, dir, 'h'); // not an own change: its push drops the directory here
        await ops.lookup(dir, 'g'); // cached again, so the unlink's ticket names the inode
        await counted(1, () => ops.unlink(dir, 'g'));
        expect((await counted(0, () => ops.getattr(stat.ino))).nlink).toBe(1); // the reply's link count, kept
        await counted(1, () => ops.unlink(dir, 'h'));
        await counted(0, () => expectKind(ops.lookup(dir, 'h'), 'NotFound'));
        await expectKind(ops.getattr(stat.ino), 'NotFound'); // gone: dropped from the cache, the coordinator says so
        // The inode cached but not the name removed: its old link count is never answered.
        const { stat: other } = await ops.create(dir, 'p');
        await ops.link(other.ino, dir, 'q');
        expect((await ops.getattr(other.ino)).nlink).toBe(2);
        await ops.unlink(dir, 'p');
        expect((await ops.getattr(other.ino)).nlink).toBe(1);
        await ops.rename(dir, 'q', dir, 'r');
        expect((await ops.getattr(other.ino)).ctimeMs).toBeGreaterThanOrEqual((await ops.lookup(dir, 'r')).ctimeMs);
      } finally {
        stop();
      }
    });

    test('readdirplus pages in name order, every entry with its attributes', async () => {
      const dir = await freshDir();
      const names = Array.from({ length: 25 }, (_, i) => `e${String(i).padStart(2, '0')}`);
      const made = new Map<string, number>();
      await Promise.all(
        names.map(async (name, i) => {
          const stat = i % 5 === 0 ? await ops.mkdir(dir, name, 0o755) : (await ops.create(dir, name)).stat;
          made.set(name, stat.ino);
        }),
      );
      const seen: string[] = [];
      let after = '';
      let pages = 0;
      for (;;) {
        const page = await ops.readdirplus(dir, { after, limit: 10 });
        pages++;
        for (const entry of page.entries) {
          seen.push(entry.name);
          expect(entry.stat.ino).toBe(made.get(entry.name));
          expect(entry.stat.isDirectory()).toBe(names.indexOf(entry.name) % 5 === 0);
        }
        if (!page.more) break;
        after = page.entries[page.entries.length - 1].name;
      }
      expect(pages).toBe(3);
      expect(seen).toEqual(names);
      const { stat: file } = await ops.create(dir, 'zz');
      await expectKind(ops.readdirplus(file.ino), 'NotDir');
    });

    test('symlink and readlink', async () => {
      const dir = await freshDir();
      const link = await ops.symlink(dir, 'link', '../somewhere/else');
      expect(link.isSymbolicLink()).toBe(true);
      expect(await ops.readlink(link.ino)).toBe('../somewhere/else');
      expect((await ops.lookup(dir, 'link')).target).toBe('../somewhere/else');
      const { stat: file } = await ops.create(dir, 'f');
      await expectKind(ops.readlink(file.ino), 'Invalid');
      await expectKind(ops.symlink(dir, 'link', 'x'), 'Exists');
    });

    test('hard links, special files and owners over the session stream; bad input changes nothing', async () => {
      const dir = await freshDir();
      const owner = { uid: 1234, gid: 567 };
      const { stat: file } = await ops.create(dir, 'f', { owner });
      expect([file.uid, file.gid]).toEqual([1234, 567]);
      expect((await fs.writeFile(`/t${dirCount}/f`, Buffer.from('shared bytes'))).ino).toBe(file.ino);
      const linked = await ops.link(file.ino, dir, 'g');
      expect([linked.ino, linked.nlink]).toEqual([file.ino, 2]);
      await ops.unlink(dir, 'f');
      expect((await fs.readFile(`/t${dirCount}/g`)).toString()).toBe('shared bytes');
      expect((await ops.lookup(dir, 'g')).nlink).toBe(1);
      const fifo = await ops.mknod(dir, 'p', 'fifo', 0o600, 0, owner);
      const dev = await ops.mknod(dir, 'c', 'char-device', 0o640, 0x0105);
      expect([fifo.type, fifo.mode, fifo.uid, dev.type, dev.rdev]).toEqual(['fifo', 0o600, 1234, 'char-device', 0x0105]);
      const listed = (await ops.readdirplus(dir)).entries.map((e) => [e.name, e.stat.type]);
      expect(listed).toEqual([['c', 'char-device'], ['g', 'file'], ['p', 'fifo']]);
      await expectKind(ops.link(dir, ROOT, 'dir-again'), 'NotPermitted');
      await expectKind(ops.link(file.ino, dir, 'p'), 'Exists');
      await expectKind(ops.link(987_654_321, dir, 'x'), 'NotFound');
      await expectKind(ops.mknod(dir, 'x', 'file' as never, 0o644), 'Invalid');
      await expectKind(ops.mknod(dir, '', 'fifo', 0o644), 'Invalid');
      expect((await ops.readdirplus(dir)).entries.map((e) => e.name)).toEqual(['c', 'g', 'p']);
      expect((await ops.getattr(dir)).nlink).toBe(2);
    });

    test('unlink and rmdir: each refuses the other kind; rmdir refuses a non-empty directory', async () => {
      const dir = await freshDir();
      const sub = await ops.mkdir(dir, 'sub', 0o755);
      const { stat: file } = await ops.create(sub.ino, 'f');
      await ops.symlink(dir, 'l', 'sub/f');
      await expectKind(ops.rmdir(dir, 'sub'), 'NotEmpty');
      await expectKind(ops.unlink(dir, 'sub'), 'IsDir');
      await expectKind(ops.rmdir(sub.ino, 'f'), 'NotDir');
      await ops.unlink(sub.ino, 'f');
      await expectKind(ops.getattr(file.ino), 'NotFound');
      await ops.unlink(dir, 'l');
      await ops.rmdir(dir, 'sub');
      await expectKind(ops.lookup(dir, 'sub'), 'NotFound');
      await expectKind(ops.unlink(dir, 'sub'), 'NotFound');
      await expectKind(ops.rmdir(dir, 'sub'), 'NotFound');
    });

    test('rename: within and across directories, over a file, no-replace, never into its own subtree', async () => {
      const dir = await freshDir();
      const other = await ops.mkdir(dir, 'other', 0o755);
      const { stat: a } = await ops.create(dir, 'a');
      await ops.rename(dir, 'a', dir, 'b');
      await expectKind(ops.lookup(dir, 'a'), 'NotFound');
      expect((await ops.lookup(dir, 'b')).ino).toBe(a.ino);
      await ops.rename(dir, 'b', other.ino, 'c');
      expect((await ops.lookup(other.ino, 'c')).ino).toBe(a.ino);

      const { stat: victim } = await ops.create(dir, 'victim');
      await expectKind(ops.rename(other.ino, 'c', dir, 'victim', { noReplace: true }), 'Exists');
      expect((await ops.lookup(other.ino, 'c')).ino).toBe(a.ino);
      await ops.rename(other.ino, 'c', dir, 'victim');
      expect((await ops.lookup(dir, 'victim')).ino).toBe(a.ino);
      await expectKind(ops.getattr(victim.ino), 'NotFound');

      const top = await ops.mkdir(dir, 'top', 0o755);
      const mid = await ops.mkdir(top.ino, 'mid', 0o755);
      await expectKind(ops.rename(dir, 'top', mid.ino, 'inside'), 'Invalid');
      await expectKind(ops.rename(dir, 'victim', dir, 'top'), 'IsDir');
      await expectKind(ops.rename(dir, 'absent', dir, 'x'), 'NotFound');
      // Concurrent renames of one source: exactly one wins, the entry exists once.
      const { stat: racer } = await ops.create(dir, 'racer');
      const results = await Promise.allSettled([0, 1, 2, 3].map((i) => ops.rename(dir, 'racer', dir, `moved${i}`)));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const { entries } = await ops.readdirplus(dir);
      expect(entries.filter((e) => e.stat.ino === racer.ino)).toHaveLength(1);
    });

    test('setattr by inode: mode, owner, times, size', async () => {
      const dir = await freshDir();
      const { stat, grant } = await ops.create(dir, 'f', { allocateFirstChunk: true });
      await fs.writeChunkAt(stat, 0, Buffer.alloc(1000, 7), { grant });
      const changed = await ops.setattr(stat.ino, { mode: 0o640, uid: 1001, gid: 1002, mtimeMs: 1_000_000, atimeMs: 2_000_000 });
      expect([changed.mode, changed.uid, changed.gid, changed.mtimeMs, changed.atimeMs]).toEqual([0o640, 1001, 1002, 1_000_000, 2_000_000]);
      const cut = await ops.setattr(stat.ino, { size: 10 });
      expect(cut.size).toBe(10);
      expect((await ops.getattr(stat.ino)).size).toBe(10);
      await expectKind(ops.setattr(dir, { size: 1 }), 'IsDir');
      await expectKind(ops.setattr(987_654_321, { mode: 0o600 }), 'NotFound');
    });

    test('onInvalidate hands back a remover', () => {
      const remove = ops.onInvalidate(() => undefined);
      expect(typeof remove).toBe('function');
      remove();
    });
  });
}

inodeContract('embedded');
inodeContract('etcd');
