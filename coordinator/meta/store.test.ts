// One MetaStore contract, run against both engines: embedded LevelDB and a real etcd.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { StrataError, type ErrorKind } from '../../common/errors.js';
import { startEtcd, type EtcdMember } from '../../test/harness/etcd.js';
import { tempDir, type TempDir } from '../../test/harness/ports.js';
import type { Kv, KvTxn } from './kv.js';
import { openKv } from './open-kv.js';
import { CACHED_PREFIXES } from './keys.js';
import { MetaStore } from './store.js';
import { QuotaAdmin } from './quota-admin.js';
import { ROOT_INO, type Attr, type CreateOptions } from './types.js';

const FILE: CreateOptions = { mode: 0o644, replication: 3, chunkSize: 1024 * 1024, exclusive: true, truncate: false };

async function expectKind(promise: Promise<unknown>, kind: ErrorKind): Promise<void> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err, `expected ${kind}`).toBeInstanceOf(StrataError);
  expect((err as StrataError).kind).toBe(kind);
}

function metaContract(name: string, open: () => Promise<{ kv: Kv; close: () => Promise<void> }>) {
  describe(`MetaStore contract: ${name}`, () => {
    let meta: MetaStore;
    let close: () => Promise<void>;
    let dirCount = 0;
    /** A fresh directory per test, so tests share one engine without seeing each other. */
    const freshDir = async () => (await meta.mkdir(ROOT_INO, `t${++dirCount}`, 0o755)).ino;

    beforeAll(async () => {
      const opened = await open();
      close = opened.close;
      meta = new MetaStore(opened.kv, { inodeBatch: 100 });
      await meta.init();
      await meta.init(); // idempotent: every coordinator calls it at start-up
    });
    afterAll(async () => close?.());

    test('root exists and is a directory', async () => {
      const root = await meta.getattr(ROOT_INO);
      expect(root.type).toBe('dir');
      expect((await meta.resolve([])).ino).toBe(ROOT_INO);
    });

    test('two concurrent creators of one name: exactly one wins', async () => {
      const dir = await freshDir();
      for (const round of [0, 1, 2]) {
        const results = await Promise.allSettled(Array.from({ length: 8 }, () => meta.create(dir, `race${round}`, FILE)));
        const won = results.filter((r) => r.status === 'fulfilled');
        expect(won).toHaveLength(1);
        for (const lost of results.filter((r) => r.status === 'rejected')) {
          expect((lost as PromiseRejectedResult).reason.kind).toBe('Exists');
        }
      }
      const mkdirs = await Promise.allSettled(Array.from({ length: 8 }, () => meta.mkdir(dir, 'd', 0o755)));
      expect(mkdirs.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    });

    test('a burst of mkdirs, then rmdirs, in one directory: each commits with its first transaction (they take turns on its subdirectory count)', async () => {
      const dir = await freshDir();
      let txns = 0;
      const counted = new Proxy(meta.kv, {
        get(target, prop) {
          if (prop === 'txn') return (txn: KvTxn) => (txns++, target.txn(txn));
          const value = Reflect.get(target, prop, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      const store = new MetaStore(counted, { inodeBatch: 1000 });
      const N = 40;
      await store.mkdir(dir, 'first', 0o755); // takes this store's inode batch (one more transaction)
      txns = 0;
      await Promise.all(Array.from({ length: N }, (_, i) => store.mkdir(dir, `d${i}`, 0o755)));
      expect(txns).toBe(N); // racing, all but one per round would lose and go again
      expect((await store.getattr(dir)).nlink).toBe(2 + N + 1);
      txns = 0;
      await Promise.all(Array.from({ length: N }, (_, i) => store.rmdir(dir, `d${i}`)));
      expect(txns).toBe(N);
      expect((await store.getattr(dir)).nlink).toBe(3);
    });

    test('create, lookup, resolve, unlink', async () => {
      const dir = await freshDir();
      const file = await meta.create(dir, 'a', FILE);
      expect((await meta.lookup(dir, 'a')).ino).toBe(file.ino);
      const parent = await meta.getattr(dir);
      expect((await meta.resolve([`t${dirCount}`, 'a'])).ino).toBe(file.ino);
      await expectKind(meta.resolve([`t${dirCount}`, 'a', 'b']), 'NotDir');
      await expectKind(meta.create(file.ino, 'x', FILE), 'NotDir');
      await meta.unlink(dir, 'a');
      await expectKind(meta.lookup(dir, 'a'), 'NotFound');
      await expectKind(meta.getattr(file.ino), 'NotFound');
      expect((await meta.getattr(dir)).mtimeMs).toBeGreaterThanOrEqual(parent.mtimeMs);
    });

    test('non-exclusive create opens the existing file; truncate empties it', async () => {
      const dir = await freshDir();
      const file = await meta.create(dir, 'f', FILE);
      await meta.commitChunk(file.ino, { index: 0, chunkId: 'c0', length: 100, crc32c: 1, nodes: ['n1'] });
      const reopened = await meta.create(dir, 'f', { ...FILE, exclusive: false });
      expect(reopened.ino).toBe(file.ino);
      expect(reopened.size).toBe(100);
      const emptied = await meta.create(dir, 'f', { ...FILE, exclusive: false, truncate: true });
      expect(emptied.size).toBe(0);
      expect((await meta.getChunks(file.ino, 0, 0)).chunks).toHaveLength(0);
    });

    test('rename within a directory, across directories, and over an existing file is atomic', async () => {
      const dir = await freshDir();
      const other = await meta.mkdir(dir, 'other', 0o755);
      const a = await meta.create(dir, 'a', FILE);
      await meta.rename(dir, 'a', dir, 'b');
      await expectKind(meta.lookup(dir, 'a'), 'NotFound');
      expect((await meta.lookup(dir, 'b')).ino).toBe(a.ino);

      await meta.rename(dir, 'b', other.ino, 'c');
      expect((await meta.lookup(other.ino, 'c')).ino).toBe(a.ino);

      const victim = await meta.create(dir, 'victim', FILE);
      await meta.commitChunk(victim.ino, { index: 0, chunkId: 'v0', length: 10, crc32c: 1, nodes: ['n1'] });
      await meta.rename(other.ino, 'c', dir, 'victim');
      expect((await meta.lookup(dir, 'victim')).ino).toBe(a.ino);
      await expectKind(meta.getattr(victim.ino), 'NotFound');
      await expectKind(meta.lookup(other.ino, 'c'), 'NotFound');

      // Concurrent renames of one source: exactly one succeeds, the entry exists exactly once.
      const racer = await meta.create(dir, 'racer', FILE);
      const results = await Promise.allSettled([0, 1, 2, 3].map((i) => meta.rename(dir, 'racer', dir, `moved${i}`)));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const listed = (await meta.readdir(dir, '', 100, false)).entries.filter((e) => e.ino === racer.ino);
      expect(listed).toHaveLength(1);
    });

    test('rename of a directory: into its own subtree refused; over a non-empty directory refused', async () => {
      const dir = await freshDir();
      const top = await meta.mkdir(dir, 'top', 0o755);
      const mid = await meta.mkdir(top.ino, 'mid', 0o755);
      await meta.mkdir(mid.ino, 'leaf', 0o755);
      await expectKind(meta.rename(dir, 'top', mid.ino, 'inside'), 'Invalid');
      await expectKind(meta.rename(dir, 'top', top.ino, 'self'), 'Invalid');
      expect((await meta.lookup(dir, 'top')).ino).toBe(top.ino);

      const full = await meta.mkdir(dir, 'full', 0o755);
      await meta.create(full.ino, 'x', FILE);
      await expectKind(meta.rename(top.ino, 'mid', dir, 'full'), 'NotEmpty');
      const empty = await meta.mkdir(dir, 'empty', 0o755);
      await meta.rename(top.ino, 'mid', dir, 'empty');
      expect((await meta.lookup(dir, 'empty')).ino).toBe(mid.ino);
      expect((await meta.getattr(mid.ino)).parent).toBe(dir);
      await expectKind(meta.getattr(empty.ino), 'NotFound');

      const file = await meta.create(dir, 'file', FILE);
      await expectKind(meta.rename(dir, 'file', dir, 'full'), 'IsDir');
      await expectKind(meta.rename(dir, 'full', dir, 'file'), 'NotDir');
      expect((await meta.lookup(dir, 'file')).ino).toBe(file.ino);
    });

    test('rmdir of a non-empty directory fails; of an empty one succeeds', async () => {
      const dir = await freshDir();
      const sub = await meta.mkdir(dir, 'sub', 0o755);
      await meta.create(sub.ino, 'f', FILE);
      await expectKind(meta.rmdir(dir, 'sub'), 'NotEmpty');
      await expectKind(meta.unlink(dir, 'sub'), 'IsDir');
      await expectKind(meta.rmdir(sub.ino, 'f'), 'NotDir');
      await meta.unlink(sub.ino, 'f');
      await meta.rmdir(dir, 'sub');
      await expectKind(meta.lookup(dir, 'sub'), 'NotFound');
    });

    test('emptiness: a directory that never had an entry is removed without a scan; one that had or has entries is scanned, and a full one is never removed', async () => {
      const dir = await freshDir();
      let ranges = 0;
      const counted = new Proxy(meta.kv, {
        get(target, prop) {
          if (prop === 'range') return (options: Parameters<Kv['range']>[0]) => (ranges++, target.range(options));
          const value = Reflect.get(target, prop, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      const store = new MetaStore(counted, { inodeBatch: 100 });
      await store.mkdir(dir, 'fresh', 0o755);
      ranges = 0;
      await store.rmdir(dir, 'fresh');
      expect(ranges).toBe(0);
      // Had an entry (gone again): its stamp moved on, so the scan proves it empty.
      const emptied = await store.mkdir(dir, 'emptied', 0o755);
      await store.create(emptied.ino, 'f', FILE);
      await store.unlink(emptied.ino, 'f');
      ranges = 0;
      await store.rmdir(dir, 'emptied');
      expect(ranges).toBe(1);
      // Full, then renamed (a rename writes its entry, not its stamp), as a source and as a target.
      const full = await store.mkdir(dir, 'full', 0o755);
      await store.mkdir(full.ino, 'child', 0o755);
      await store.rename(dir, 'full', dir, 'moved');
      await expectKind(store.rmdir(dir, 'moved'), 'NotEmpty');
      await store.mkdir(dir, 'target', 0o755);
      await expectKind(store.rename(dir, 'target', dir, 'moved'), 'NotEmpty');
      await store.rmdir(full.ino, 'child');
      await store.rmdir(dir, 'moved');
      // A fresh directory as a rename's target: replaced without a scan.
      await store.mkdir(dir, 'a', 0o755);
      ranges = 0;
      await store.rename(dir, 'target', dir, 'a');
      expect(ranges).toBe(0);
      await expectKind(store.lookup(dir, 'target'), 'NotFound');
      expect((await store.lookup(dir, 'a')).type).toBe('dir');
    });

    test('rmdir racing a create never orphans an entry', async () => {
      const dir = await freshDir();
      for (let i = 0; i < 10; i++) {
        const sub = await meta.mkdir(dir, `s${i}`, 0o755);
        const [removed, created] = await Promise.allSettled([meta.rmdir(dir, `s${i}`), meta.create(sub.ino, 'f', FILE)]);
        // Either the directory is gone and the create failed, or it stays with the file.
        if (removed.status === 'fulfilled') {
          expect(created.status).toBe('rejected');
          await expectKind(meta.getattr(sub.ino), 'NotFound');
        } else {
          expect(created.status).toBe('fulfilled');
          expect((await meta.lookup(sub.ino, 'f')).type).toBe('file');
        }
      }
    });

    test('readdir pages over 10,000 entries in name order', async () => {
      const dir = await freshDir();
      const names = Array.from({ length: 10_050 }, (_, i) => `f${String(i).padStart(5, '0')}`);
      for (let i = 0; i < names.length; i += 200) {
        await Promise.all(names.slice(i, i + 200).map((n) => meta.create(dir, n, FILE)));
      }
      const seen: string[] = [];
      let after = '';
      let pages = 0;
      for (;;) {
        const page = await meta.readdir(dir, after, 1000, false);
        seen.push(...page.entries.map((e) => e.name));
        pages++;
        if (!page.more) break;
        after = page.entries[page.entries.length - 1].name;
      }
      expect(pages).toBe(11);
      expect(seen).toEqual(names);
      const withAttrs = await meta.readdir(dir, '', 5, true);
      expect(withAttrs.entries.every((e) => e.attr?.type === 'file')).toBe(true);
    }, 120_000);

    test('a chunk commit is atomic with the file size', async () => {
      const dir = await freshDir();
      const file = await meta.create(dir, 'big', FILE);
      const chunk = FILE.chunkSize;
      // Commits land out of order and concurrently; size = the furthest committed byte.
      await Promise.all(
        [2, 0, 1].map((index) =>
          meta.commitChunk(file.ino, { index, chunkId: `c${index}`, length: index === 2 ? 7 : chunk, crc32c: 1, nodes: ['n1'] }),
        ),
      );
      const attr = await meta.getattr(file.ino);
      expect(attr.size).toBe(2 * chunk + 7);
      expect(attr.chunks).toBe(3);
      const { chunks } = await meta.getChunks(file.ino, 0, 0);
      expect(chunks.map((c) => c.chunkId)).toEqual(['c0', 'c1', 'c2']);
      await expectKind(meta.commitChunk(file.ino, { index: 3, chunkId: 'x', length: chunk + 1, crc32c: 1, nodes: ['n1'] }), 'Invalid');
      await expectKind(meta.commitChunk(file.ino, { index: 3, chunkId: 'x', length: 1, crc32c: 1, nodes: [] }), 'Invalid');
      expect((await meta.getattr(file.ino)).size).toBe(2 * chunk + 7);

      const shrunk = await meta.setattr(file.ino, { size: chunk + 10 });
      expect(shrunk.size).toBe(chunk + 10);
      const after = await meta.getChunks(file.ino, 0, 0);
      expect(after.chunks.map((c) => [c.index, c.length])).toEqual([[0, chunk], [1, 10]]);
    });

    test('concurrent commits of one file share transactions: all land, each reply its own, a bad one fails alone', async () => {
      const dir = await freshDir();
      const chunkSize = 64 * 1024;
      const file = await meta.create(dir, 'batched', { ...FILE, chunkSize });
      const before = { ...meta.commitStats };
      const indexes = [5, 0, 3, 1, 4, 2, 7, 6, 9, 8];
      const commits = indexes.map((index) =>
        meta.commitChunk(file.ino, { index, chunkId: `b${index}`, length: index === 9 ? 11 : chunkSize, crc32c: index, nodes: ['n1'] }),
      );
      // In the same burst: a chunk too long for the file (its own Invalid) and a second commit of
      // index 3 (committed after the first, so it wins as if they ran one by one).
      const bad = meta.commitChunk(file.ino, { index: 10, chunkId: 'bad', length: chunkSize + 1, crc32c: 1, nodes: ['n1'] });
      const again = meta.commitChunk(file.ino, { index: 3, chunkId: 'b3-again', length: chunkSize, crc32c: 33, nodes: ['n2'] });
      // The reply that settles last is what a writer keeps as its file's state: it must show every
      // commit that settled before it (a batch answers all of its commits with what it wrote).
      let lastSettled: Attr | undefined;
      for (const commit of commits) void commit.then((reply) => (lastSettled = reply), () => undefined);
      const replies = await Promise.all(commits);
      await expectKind(bad, 'Invalid');
      await again;
      const finalSize = 9 * chunkSize + 11;
      replies.forEach((reply, i) => {
        const end = indexes[i] * chunkSize + (indexes[i] === 9 ? 11 : chunkSize);
        expect(reply.ino).toBe(file.ino);
        expect(reply.size).toBeGreaterThanOrEqual(end); // covers its own chunk
        expect(reply.size).toBeLessThanOrEqual(finalSize);
      });
      const attr = await meta.getattr(file.ino);
      expect(attr.size).toBe(finalSize);
      expect(attr.chunks).toBe(10);
      expect(lastSettled?.chunks).toBe(10);
      expect(lastSettled?.size).toBe(finalSize);
      const { chunks } = await meta.getChunks(file.ino, 0, 0);
      expect(chunks.map((c) => c.chunkId)).toEqual(['b0', 'b1', 'b2', 'b3-again', 'b4', 'b5', 'b6', 'b7', 'b8', 'b9']);
      // Shared, not raced: fewer transactions than commits, and none lost to a sibling commit.
      const stats = meta.commitStats;
      expect(stats.commits - before.commits).toBe(12);
      expect(stats.batches - before.batches).toBeLessThan(12);
      expect(stats.lostRaces - before.lostRaces).toBe(0);
      // Size never goes backwards: a late commit of an early chunk leaves it.
      const late = await meta.commitChunk(file.ino, { index: 0, chunkId: 'b0-late', length: 5, crc32c: 1, nodes: ['n1'] });
      expect(late.size).toBe(finalSize);
      await expectKind(meta.commitChunk(file.ino + 1_000_000, { index: 0, chunkId: 'x', length: 5, crc32c: 1, nodes: ['n1'] }), 'NotFound');
    });

    test('a big file is many keys: 300 chunk records commit and list in pages', async () => {
      const dir = await freshDir();
      const file = await meta.create(dir, 'huge', { ...FILE, chunkSize: 64 * 1024 });
      for (let i = 0; i < 300; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, j) => meta.commitChunk(file.ino, { index: i + j, chunkId: `k${i + j}`, length: 64 * 1024, crc32c: 1, nodes: ['n1', 'n2', 'n3'] })),
        );
      }
      expect((await meta.getattr(file.ino)).size).toBe(300 * 64 * 1024);
      expect((await meta.getChunks(file.ino, 250, 0)).chunks).toHaveLength(50);
      await meta.unlink(dir, 'huge'); // one deleteRange, whatever the chunk count
      expect((await meta.getChunks(file.ino, 0, 0).catch((e) => e)).kind).toBe('NotFound');
      expect(await chunkKeysOf(file.ino)).toEqual([]);
    });

    /** Chunk records stored for an inode, straight from the KV (what GC would see as references). */
    const chunkKeysOf = async (ino: number) => (await meta.kv.range({ start: `c/${ino}/`, end: `c/${ino}0`, limit: 1000 })).map((e) => e.key);

    test('a small file goes with every chunk record it had (deleted by key, not by range): sparse, shrunk, zero-length, truncated', async () => {
      const dir = await freshDir();
      const chunkSize = 64 * 1024;
      const commit = (ino: number, index: number, length: number) => meta.commitChunk(ino, { index, chunkId: `z${ino}-${index}`, length, crc32c: 1, nodes: ['n1'] });
      const sparse = await meta.create(dir, 'sparse', { ...FILE, chunkSize });
      await commit(sparse.ino, 2, 5); // a hole before it
      await commit(sparse.ino, 0, chunkSize);
      const shrunk = await meta.create(dir, 'shrunk', { ...FILE, chunkSize });
      for (const index of [0, 1, 2, 3]) await commit(shrunk.ino, index, chunkSize);
      await meta.setattr(shrunk.ino, { size: chunkSize + 1 });
      const edge = await meta.create(dir, 'edge', { ...FILE, chunkSize });
      await commit(edge.ino, 0, chunkSize);
      await commit(edge.ino, 1, 0); // a zero-length record exactly at the end
      const many = await meta.create(dir, 'many', { ...FILE, chunkSize });
      for (let index = 0; index < 20; index++) await commit(many.ino, index, chunkSize); // past the by-key limit: a range
      const files = [sparse, shrunk, edge, many];
      expect((await Promise.all(files.map((f) => chunkKeysOf(f.ino)))).map((keys) => keys.length)).toEqual([2, 2, 2, 20]);
      for (const name of ['sparse', 'shrunk', 'edge', 'many']) await meta.unlink(dir, name);
      for (const f of files) expect(await chunkKeysOf(f.ino)).toEqual([]);
      // Opening an existing file with truncate empties it the same way.
      const reused = await meta.create(dir, 'reused', { ...FILE, chunkSize });
      await commit(reused.ino, 0, 10);
      await commit(reused.ino, 1, 10);
      expect((await meta.create(dir, 'reused', { ...FILE, chunkSize, exclusive: false, truncate: true })).size).toBe(0);
      expect(await chunkKeysOf(reused.ino)).toEqual([]);
    });

    test('names are validated', async () => {
      const dir = await freshDir();
      for (const bad of ['', '.', '..', 'a/b', 'nul\0byte', 'x'.repeat(256), 'é'.repeat(128)]) {
        await expectKind(meta.create(dir, bad, FILE), 'Invalid');
        await expectKind(meta.mkdir(dir, bad, 0o755), 'Invalid');
      }
      await meta.create(dir, 'x'.repeat(255), FILE);
      await meta.create(dir, 'ünïcødé name with spaces', FILE);
      expect((await meta.readdir(dir, '', 10, false)).entries).toHaveLength(2);
    });

    test('symlinks and setattr', async () => {
      const dir = await freshDir();
      const link = await meta.symlink(dir, 'l', '../somewhere');
      expect(await meta.readlink(link.ino)).toBe('../somewhere');
      await expectKind(meta.symlink(dir, 'l', 'x'), 'Exists');
      const file = await meta.create(dir, 'f', FILE);
      const changed = await meta.setattr(file.ino, { mode: 0o600, uid: 1000, gid: 100, mtimeMs: 1234 });
      expect([changed.mode, changed.uid, changed.gid, changed.mtimeMs]).toEqual([0o600, 1000, 100, 1234]);
      await expectKind(meta.setattr(dir, { size: 5 }), 'IsDir');
    });

    test('hard links: names share one inode and its chunks; it goes with the last name', async () => {
      const dir = await freshDir();
      const other = await meta.mkdir(dir, 'other', 0o755);
      const file = await meta.create(dir, 'a', FILE);
      await meta.commitChunk(file.ino, { index: 0, chunkId: 'c-linked', length: 10, crc32c: 1, nodes: ['n1'] });
      const linked = await meta.link(file.ino, other.ino, 'b');
      expect([linked.ino, linked.nlink, linked.size]).toEqual([file.ino, 2, 10]);
      expect(linked.ctimeMs).toBeGreaterThanOrEqual(file.ctimeMs);
      expect((await meta.lookup(other.ino, 'b')).ino).toBe(file.ino);
      expect((await meta.readdir(other.ino, '', 0, true)).entries.map((e) => [e.name, e.ino, e.attr?.nlink])).toEqual([['b', file.ino, 2]]);
      // Unlinking one name keeps the inode, its attributes and its chunks under the other.
      await meta.unlink(dir, 'a');
      await expectKind(meta.lookup(dir, 'a'), 'NotFound');
      const left = await meta.lookup(other.ino, 'b');
      expect([left.nlink, left.size]).toEqual([1, 10]);
      expect((await meta.getChunks(file.ino, 0, 0)).chunks.map((c) => c.chunkId)).toEqual(['c-linked']);
      // The last name takes the inode and its chunk records with it.
      await meta.unlink(other.ino, 'b');
      await expectKind(meta.getattr(file.ino), 'NotFound');
      expect(await meta.kv.count(`c/${file.ino}/`, `c/${file.ino}0`)).toBe(0);
    });

    test('hard links and rename: onto another name of the same inode does nothing; over a link drops one link', async () => {
      const dir = await freshDir();
      const file = await meta.create(dir, 'a', FILE);
      await meta.link(file.ino, dir, 'b');
      await meta.rename(dir, 'a', dir, 'b');
      expect((await meta.readdir(dir, '', 0, false)).entries.map((e) => e.name)).toEqual(['a', 'b']);
      expect((await meta.getattr(file.ino)).nlink).toBe(2);
      const other = await meta.create(dir, 'c', FILE);
      await meta.rename(dir, 'c', dir, 'b'); // b was one of file's two names
      expect((await meta.lookup(dir, 'b')).ino).toBe(other.ino);
      const kept = await meta.getattr(file.ino);
      expect(kept.nlink).toBe(1);
      await meta.rename(dir, 'b', dir, 'a'); // a was file's last name: the inode goes
      await expectKind(meta.getattr(file.ino), 'NotFound');
    });

    test('hard links: when the recorded name goes or moves, parent is a remaining name\'s directory; charges stay with the quota; usage stays right', async () => {
      const top = await freshDir();
      const quotaPath = `/t${dirCount}/q`;
      const q = (await meta.mkdir(top, 'q', 0o755)).ino;
      const [a, b, c] = await Promise.all(['a', 'b', 'c'].map(async (name) => (await meta.mkdir(q, name, 0o755)).ino));
      const quotas = new QuotaAdmin(meta.kv, meta);
      await quotas.set(quotaPath, { bytes: 10_000 });
      const usage = async () => {
        const { usedBytes, usedFiles } = await quotas.getDir(await meta.getattr(q), quotaPath);
        return [usedBytes, usedFiles];
      };
      const file = await meta.create(a, 'f', FILE);
      await meta.setattr(file.ino, { size: 100 });
      await meta.link(file.ino, b, 'f');
      await meta.link(file.ino, c, 'f');
      const place = async () => (await meta.getattr(file.ino)).parent;
      expect(await place()).toBe(a);
      // The recorded name goes: a remaining name's directory takes its place, and a's may go too.
      await meta.unlink(a, 'f');
      expect(await place()).toBe(b);
      await meta.rmdir(q, 'a');
      await meta.setattr(file.ino, { size: 300 }); // still charged to q
      expect(await usage()).toEqual([300, 3]);
      // Moving a name that is not the recorded one keeps the others known.
      await meta.rename(c, 'f', b, 'g');
      expect(await place()).toBe(b);
      await meta.unlink(b, 'f');
      expect(await place()).toBe(b); // b/g holds it
      // Moving the recorded name (the only one left) puts it where it went.
      await meta.link(file.ino, c, 'h');
      await meta.rename(b, 'g', c, 'moved');
      expect(await place()).toBe(c);
      await meta.unlink(c, 'moved');
      expect(await place()).toBe(c);
      await meta.setattr(file.ino, { size: 200 });
      expect(await usage()).toEqual([200, 3]);
      // What a fresh count finds is what was kept.
      expect(await quotas.set(quotaPath, {}, { recount: true })).toMatchObject({ usedBytes: 200, usedFiles: 3 });
      await meta.unlink(c, 'h');
      expect(await usage()).toEqual([0, 2]);
    });

    test('hard links: a record from before links were kept still reads; its recorded name gone, its place is unknown (0) and its charges stay with the quota', async () => {
      const top = await freshDir();
      const quotaPath = `/t${dirCount}/q`;
      const q = (await meta.mkdir(top, 'q', 0o755)).ino;
      const [a, b] = await Promise.all(['a', 'b'].map(async (name) => (await meta.mkdir(q, name, 0o755)).ino));
      const quotas = new QuotaAdmin(meta.kv, meta);
      await quotas.set(quotaPath, { files: 100 });
      const file = await meta.create(a, 'f', FILE);
      await meta.link(file.ino, b, 'f');
      // As an older coordinator wrote it: no links, no quota owner.
      const [inode] = await meta.kv.getMany([`i/${file.ino}`]);
      const raw = JSON.parse(inode!.value.toString());
      expect(raw.links).toEqual([b]);
      delete raw.links;
      expect(await meta.kv.txn({ compares: [{ key: inode!.key, modRevision: inode!.modRevision }], ops: [{ type: 'put', key: inode!.key, value: Buffer.from(JSON.stringify(raw)) }] })).toBe(true);
      expect(await meta.getattr(file.ino)).toMatchObject({ parent: a, nlink: 2 });
      await meta.unlink(a, 'f');
      expect(await meta.getattr(file.ino)).toMatchObject({ parent: 0, quotaParent: q, nlink: 1 });
      await meta.rmdir(q, 'a');
      await meta.setattr(file.ino, { size: 50 });
      expect(await quotas.getDir(await meta.getattr(q), quotaPath)).toMatchObject({ usedBytes: 50, usedFiles: 2 });
      // A recount finds the file by its name and records that place.
      expect(await quotas.set(quotaPath, {}, { recount: true })).toMatchObject({ usedBytes: 50, usedFiles: 2 });
      expect((await meta.getattr(file.ino)).parent).toBe(b);
    });

    test('hard links: bad input fails with the right kind and changes nothing', async () => {
      const dir = await freshDir();
      const sub = await meta.mkdir(dir, 'sub', 0o755);
      const file = await meta.create(dir, 'f', FILE);
      await expectKind(meta.link(sub.ino, dir, 'sub2'), 'NotPermitted');
      await expectKind(meta.link(file.ino, dir, 'sub'), 'Exists');
      await expectKind(meta.link(file.ino, file.ino, 'x'), 'NotDir');
      await expectKind(meta.link(file.ino, 999_999_999, 'x'), 'NotFound');
      await expectKind(meta.link(999_999_999, dir, 'x'), 'NotFound');
      await expectKind(meta.link(file.ino, dir, 'a/b'), 'Invalid');
      expect((await meta.getattr(file.ino)).nlink).toBe(1);
      expect((await meta.readdir(dir, '', 0, false)).entries.map((e) => e.name)).toEqual(['f', 'sub']);
    });

    test('hard links racing the last unlink: the inode is either linked again or gone, never a dangling name', async () => {
      const dir = await freshDir();
      for (let round = 0; round < 5; round++) {
        const file = await meta.create(dir, `f${round}`, FILE);
        const [linked, unlinked] = await Promise.allSettled([meta.link(file.ino, dir, `g${round}`), meta.unlink(dir, `f${round}`)]);
        expect(unlinked.status).toBe('fulfilled');
        if (linked.status === 'fulfilled') expect((await meta.lookup(dir, `g${round}`)).nlink).toBe(1);
        else {
          expect((linked.reason as StrataError).kind).toBe('NotFound');
          await expectKind(meta.lookup(dir, `g${round}`), 'NotFound');
        }
      }
    });

    test('special files: fifos, sockets and device nodes with their rdev', async () => {
      const dir = await freshDir();
      const fifo = await meta.mknod(dir, 'p', 'fifo', 0o640, 0);
      const chr = await meta.mknod(dir, 'c', 'chardev', 0o600, 0x0103);
      const blk = await meta.mknod(dir, 'b', 'blockdev', 0o660, 0x0801);
      const sock = await meta.mknod(dir, 's', 'socket', 0o755, 77);
      expect([fifo.type, fifo.mode, fifo.rdev, fifo.nlink]).toEqual(['fifo', 0o640, 0, 1]);
      expect([chr.type, chr.rdev]).toEqual(['chardev', 0x0103]);
      expect((await meta.getattr(blk.ino)).rdev).toBe(0x0801);
      expect(sock.rdev).toBe(0); // only devices have a device number
      const listed = (await meta.readdir(dir, '', 0, true)).entries.map((e) => [e.name, e.type, e.attr?.rdev]);
      expect(listed).toEqual([['b', 'blockdev', 0x0801], ['c', 'chardev', 0x0103], ['p', 'fifo', 0], ['s', 'socket', 0]]);
      await expectKind(meta.mknod(dir, 'p', 'fifo', 0o644, 0), 'Exists');
      await expectKind(meta.mknod(dir, 'x', 'file' as never, 0o644, 0), 'Invalid');
      await expectKind(meta.mknod(dir, 'x', 'chardev', 0o644, -1), 'Invalid');
      await expectKind(meta.create(dir, 'p', { ...FILE, exclusive: false }), 'Invalid');
      await meta.link(chr.ino, dir, 'c2');
      expect((await meta.getattr(chr.ino)).nlink).toBe(2);
      for (const name of ['p', 'c', 'c2', 'b', 's']) await meta.unlink(dir, name);
      expect((await meta.readdir(dir, '', 0, false)).entries).toHaveLength(0);
      await expectKind(meta.getattr(chr.ino), 'NotFound');
    });

    test('owners: the creator owns a new entry; a set-group-ID directory gives its group (and, to directories, its bit)', async () => {
      const dir = await freshDir();
      const owner = { uid: 1000, gid: 100 };
      const file = await meta.create(dir, 'f', { ...FILE, owner });
      const sub = await meta.mkdir(dir, 'd', 0o755, owner);
      const link = await meta.symlink(dir, 'l', 'f', owner);
      const fifo = await meta.mknod(dir, 'p', 'fifo', 0o644, 0, owner);
      for (const attr of [file, sub, link, fifo]) expect([attr.uid, attr.gid]).toEqual([1000, 100]);
      expect((await meta.create(dir, 'root-owned', FILE)).uid).toBe(0);
      await meta.setattr(sub.ino, { mode: 0o2775, gid: 50 });
      const inner = await meta.mkdir(sub.ino, 'inner', 0o755, { uid: 2000, gid: 200 });
      expect([inner.uid, inner.gid, inner.mode]).toEqual([2000, 50, 0o2755]);
      const innerFile = await meta.create(sub.ino, 'g', { ...FILE, owner: { uid: 2000, gid: 200 } });
      expect([innerFile.uid, innerFile.gid, innerFile.mode]).toEqual([2000, 50, 0o644]);
    });

    test('directory link counts: 2 + subdirectories, through mkdir, rmdir and renames', async () => {
      const dir = await freshDir();
      const nlink = async (ino: number) => (await meta.getattr(ino)).nlink;
      const a = await meta.mkdir(dir, 'a', 0o755);
      const b = await meta.mkdir(dir, 'b', 0o755);
      await meta.create(dir, 'f', FILE); // files do not count
      expect(await nlink(dir)).toBe(4);
      await meta.mkdir(a.ino, 'x', 0o755);
      expect([await nlink(dir), await nlink(a.ino), await nlink(b.ino)]).toEqual([4, 3, 2]);
      await meta.rename(a.ino, 'x', b.ino, 'x'); // between parents
      expect([await nlink(a.ino), await nlink(b.ino)]).toEqual([2, 3]);
      await meta.rename(b.ino, 'x', b.ino, 'y'); // within one
      expect(await nlink(b.ino)).toBe(3);
      await meta.mkdir(a.ino, 'empty', 0o755);
      await meta.rename(b.ino, 'y', a.ino, 'empty'); // over an empty directory
      expect([await nlink(a.ino), await nlink(b.ino)]).toEqual([3, 2]);
      const listed = (await meta.readdir(dir, '', 0, true)).entries.map((e) => [e.name, e.attr?.nlink]);
      expect(listed).toEqual([['a', 3], ['b', 2], ['f', 1]]);
      expect((await meta.setattr(a.ino, { mode: 0o700 })).nlink).toBe(3);
      await meta.rmdir(a.ino, 'empty');
      await meta.rmdir(dir, 'b');
      expect([await nlink(dir), await nlink(a.ino)]).toEqual([3, 2]);
      const racers = await Promise.all(Array.from({ length: 6 }, (_, i) => meta.mkdir(a.ino, `r${i}`, 0o755)));
      expect(racers).toHaveLength(6);
      expect(await nlink(a.ino)).toBe(8);
    });

    test('times: an entry added or removed moves the directory mtime and ctime; rename moves the inode ctime', async () => {
      let clock = 1_000_000;
      const timed = new MetaStore(meta.kv, { inodeBatch: 10, now: () => clock });
      const dir = (await timed.mkdir(ROOT_INO, `timed${++dirCount}`, 0o755)).ino;
      const file = await timed.create(dir, 'f', FILE);
      clock += 1000;
      await timed.rename(dir, 'f', dir, 'g');
      const renamed = await timed.getattr(file.ino);
      expect([renamed.ctimeMs, renamed.mtimeMs]).toEqual([clock, clock - 1000]);
      const parent = await timed.getattr(dir);
      expect([parent.mtimeMs, parent.ctimeMs]).toEqual([clock, clock]);
      clock += 1000;
      await timed.link(file.ino, dir, 'h');
      expect((await timed.getattr(file.ino)).ctimeMs).toBe(clock);
      clock += 1000;
      await timed.unlink(dir, 'h');
      expect((await timed.getattr(file.ino)).ctimeMs).toBe(clock);
      expect((await timed.getattr(dir)).ctimeMs).toBe(clock);
    });
  });
}

metaContract('embedded LevelDB', async () => {
  const dir: TempDir = await tempDir('meta-level');
  const kv = await openKv(dir.path);
  return { kv, close: async () => { await kv.close(); await dir.cleanup(); } };
});

let etcd: EtcdMember | undefined;
metaContract('etcd', async () => {
  etcd = await startEtcd();
  const kv = await openKv(etcd.url);
  return { kv, close: async () => { await kv.close(); await etcd?.stop(); } };
});

metaContract('etcd behind the watch-fed cache', async () => {
  const member = await startEtcd();
  const kv = await openKv(member.url, { cachePrefixes: CACHED_PREFIXES });
  return { kv, close: async () => { await kv.close(); await member.stop(); } };
});

describe('two coordinators on one etcd, each with its watch-fed cache', () => {
  let member: EtcdMember;
  let a: MetaStore;
  let b: MetaStore;
  const kvs: Kv[] = [];
  beforeAll(async () => {
    member = await startEtcd();
    for (let i = 0; i < 2; i++) kvs.push(await openKv(member.url, { cachePrefixes: CACHED_PREFIXES }));
    [a, b] = kvs.map((kv) => new MetaStore(kv, { inodeBatch: 10 }));
    await a.init();
    await b.init();
  });
  afterAll(async () => {
    for (const kv of kvs) await kv.close();
    await member?.stop();
  });

  /** What one coordinator changed, the other sees once the watch delivers it. */
  async function eventually(check: () => Promise<boolean>): Promise<void> {
    for (let i = 0; i < 100; i++) {
      if (await check().catch(() => false)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('the other coordinator never saw the change');
  }

  test('changes made through one are seen through the other; creators racing across both: one wins', async () => {
    const dir = await a.mkdir(ROOT_INO, 'shared', 0o755);
    await b.lookup(ROOT_INO, 'shared'); // b caches the entry, then must see it change
    const file = await a.create(dir.ino, 'f', FILE);
    await eventually(async () => (await b.lookup(dir.ino, 'f')).ino === file.ino);
    await b.rename(dir.ino, 'f', dir.ino, 'g');
    await eventually(async () => (await a.lookup(dir.ino, 'g')).ino === file.ino);
    await expectKind(a.lookup(dir.ino, 'f'), 'NotFound');
    await b.commitChunk(file.ino, { index: 0, chunkId: 'x', length: 5, crc32c: 1, nodes: ['n1'] });
    await eventually(async () => (await a.getattr(file.ino)).size === 5);
    await a.unlink(dir.ino, 'g');
    await eventually(async () => (await b.lookup(dir.ino, 'g').then(() => false, (e) => e.kind === 'NotFound')));
    for (let round = 0; round < 5; round++) {
      const results = await Promise.allSettled([a, b, a, b].map((m) => m.create(dir.ino, `race${round}`, FILE)));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    }
    // Two coordinators committing chunks of one file at once: each batches its own, the
    // transactions' compares keep them correct against each other.
    const shared = await a.create(dir.ino, 'both', FILE);
    await Promise.all(
      Array.from({ length: 16 }, (_, index) =>
        (index % 2 ? b : a).commitChunk(shared.ino, { index, chunkId: `s${index}`, length: FILE.chunkSize, crc32c: 1, nodes: ['n1'] }),
      ),
    );
    await eventually(async () => (await a.getattr(shared.ino)).size === 16 * FILE.chunkSize);
    expect((await b.getChunks(shared.ino, 0, 0)).chunks.map((c) => c.chunkId)).toEqual(Array.from({ length: 16 }, (_, i) => `s${i}`));
    expect((await a.getattr(shared.ino)).chunks).toBe(16);
    // A stale cached directory never lets an rmdir through: b removes, a's create must fail.
    const sub = await a.mkdir(dir.ino, 'sub', 0o755);
    await b.lookup(dir.ino, 'sub');
    await b.rmdir(dir.ino, 'sub');
    await expectKind(a.create(sub.ino, 'orphan', FILE), 'NotFound');
  });
});
