// Policy resolution and the subtree walk, against the embedded LevelDB engine.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { StrataError } from '../../common/errors.js';
import { tempDir, type TempDir } from '../../test/harness/ports.js';
import type { Kv } from '../meta/kv.js';
import { openKv } from '../meta/open-kv.js';
import { MetaStore } from '../meta/store.js';
import { ROOT_INO, type CreateOptions } from '../meta/types.js';
import { CLUSTER_FROM, policyMatches, resolveTierState, setPin, setPolicy, walkFiles, type TierPolicy, type TieredFile } from './policy.js';

const FILE: CreateOptions = { mode: 0o644, replication: 1, chunkSize: 1024 * 1024, exclusive: true, truncate: false };
const policy = (tier: string, extra: Partial<TierPolicy> = {}): TierPolicy => ({ tier, coldAfterMs: 0, minSize: 0, pathPrefix: '', ...extra });

describe('tiering policies', () => {
  let dir: TempDir;
  let kv: Kv;
  let meta: MetaStore;
  const ino: Record<string, number> = {};

  const mkdir = async (path: string) => {
    const parent = path.slice(0, path.lastIndexOf('/')) || '/';
    ino[path] = (await meta.mkdir(parent === '/' ? ROOT_INO : ino[parent]!, path.slice(path.lastIndexOf('/') + 1), 0o755)).ino;
  };
  const create = async (path: string, size = 0) => {
    const parent = path.slice(0, path.lastIndexOf('/')) || '/';
    const attr = await meta.create(parent === '/' ? ROOT_INO : ino[parent]!, path.slice(path.lastIndexOf('/') + 1), FILE);
    ino[path] = attr.ino;
    if (size) await meta.setattr(attr.ino, { size });
  };
  const walk = async (path: string, pageSize?: number) => {
    const files: TieredFile[] = [];
    for await (const file of walkFiles(kv, meta, path, pageSize)) files.push(file);
    return files;
  };
  const byPath = (files: TieredFile[]) => Object.fromEntries(files.map((f) => [f.path, { tier: f.policy?.policy.tier, from: f.policy?.from, pinnedFrom: f.pinnedFrom }]));

  beforeAll(async () => {
    dir = await tempDir('policy');
    kv = await openKv(dir.path + '/meta');
    meta = new MetaStore(kv);
    await meta.init();
    for (const d of ['/a', '/a/b', '/a/never', '/a/never/again', '/a/pinned', '/a/pinned/deep', '/data', '/data/x', '/database', '/many']) await mkdir(d);
    for (const f of ['/a/f', '/a/b/g', '/a/never/h', '/a/never/again/i', '/a/pinned/deep/j', '/data/x/k', '/database/l', '/top']) await create(f, 100);
    for (let i = 0; i < 7; i++) await create(`/many/m${i}`);
    await meta.symlink(ino['/a']!, 'link', '/a/f');
    await setPolicy(kv, ino['/a']!, policy('cold', { coldAfterMs: 1000 }));
    await setPolicy(kv, ino['/a/b']!, policy('warm'));
    await setPolicy(kv, ino['/a/never']!, policy(''));
    await setPolicy(kv, ino['/a/never/again/i']!, policy('cold'));
    await setPin(kv, ino['/a/pinned']!, true);
    await setPolicy(kv, 0, policy('archive', { pathPrefix: '/data' }));
  });
  afterAll(async () => {
    await kv?.close();
    await dir?.cleanup();
  });

  test('the nearest policy wins; never stops inheritance; a file policy beats its directory; pins cover subtrees; the cluster policy only under its prefix', async () => {
    expect(byPath(await walk('/'))).toEqual({
      '/a/b/g': { tier: 'warm', from: '/a/b', pinnedFrom: '' },
      '/a/f': { tier: 'cold', from: '/a', pinnedFrom: '' },
      '/a/never/again/i': { tier: 'cold', from: '/a/never/again/i', pinnedFrom: '' },
      '/a/never/h': { tier: '', from: '/a/never', pinnedFrom: '' },
      '/a/pinned/deep/j': { tier: 'cold', from: '/a', pinnedFrom: '/a/pinned' },
      '/data/x/k': { tier: 'archive', from: CLUSTER_FROM, pinnedFrom: '' },
      '/database/l': { tier: undefined, from: undefined, pinnedFrom: '' },
      '/top': { tier: undefined, from: undefined, pinnedFrom: '' },
      ...Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`/many/m${i}`, { tier: undefined, from: undefined, pinnedFrom: '' }])),
    });
  });

  test('a walk of a subtree or a file inherits from above it; paging sees every entry once', async () => {
    expect(byPath(await walk('/a/pinned/deep'))).toEqual({ '/a/pinned/deep/j': { tier: 'cold', from: '/a', pinnedFrom: '/a/pinned' } });
    expect(byPath(await walk('/a/b/g'))).toEqual({ '/a/b/g': { tier: 'warm', from: '/a/b', pinnedFrom: '' } });
    expect(byPath(await walk('/data/x/'))).toEqual({ '/data/x/k': { tier: 'archive', from: CLUSTER_FROM, pinnedFrom: '' } });
    const paged = (await walk('/', 2)).map((f) => f.path);
    expect(paged).toEqual((await walk('/')).map((f) => f.path));
    expect(paged.filter((p) => p.startsWith('/many/'))).toHaveLength(7);
    expect(new Set(paged).size).toBe(paged.length);
  });

  test('resolveTierState: directories too; missing paths are NotFound, a file used as a directory NotDir', async () => {
    const state = await resolveTierState(kv, meta, '/a/pinned/deep');
    expect(state).toMatchObject({ path: '/a/pinned/deep', pinned: true, pinnedFrom: '/a/pinned', policy: { from: '/a' } });
    expect((await resolveTierState(kv, meta, '/')).policy).toBeUndefined();
    expect((await resolveTierState(kv, meta, '/data')).policy?.from).toBe(CLUSTER_FROM);
    for (const [path, kind] of [['/nope', 'NotFound'], ['/a/f/x', 'NotDir'], ['relative', 'Invalid']] as const) {
      const err = await resolveTierState(kv, meta, path).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StrataError);
      expect((err as StrataError).kind).toBe(kind);
    }
  });

  test('clearing a policy or a pin falls back to what is above', async () => {
    await setPolicy(kv, ino['/a/b']!, undefined);
    await setPin(kv, ino['/a/pinned']!, false);
    expect(byPath(await walk('/a/b'))['/a/b/g']).toEqual({ tier: 'cold', from: '/a', pinnedFrom: '' });
    expect(byPath(await walk('/a/pinned'))['/a/pinned/deep/j']).toEqual({ tier: 'cold', from: '/a', pinnedFrom: '' });
    await setPolicy(kv, ino['/a/b']!, policy('warm'));
    await setPin(kv, ino['/a/pinned']!, true);
  });

  test('policyMatches: tier set, size, coldness by the later of atime and mtime, not pinned', () => {
    const now = 1_000_000;
    const file = (p: Partial<TierPolicy> | undefined, attr: { size?: number; atimeMs?: number; mtimeMs?: number } = {}, pinned = false): TieredFile => ({
      ino: 9,
      path: '/f',
      attr: { ino: 9, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 100, mtimeMs: 0, ctimeMs: 0, atimeMs: 0, nlink: 1, parent: 0, replication: 1, chunkSize: 1, target: '', chunks: 1, ...attr },
      policy: p ? { policy: policy('cold', p), from: '/' } : undefined,
      pinned,
      pinnedFrom: pinned ? '/' : '',
    });
    expect(policyMatches(file({}), now)).toBe(true);
    expect(policyMatches(file(undefined), now)).toBe(false);
    expect(policyMatches(file({ tier: '' }), now)).toBe(false);
    expect(policyMatches(file({}, {}, true), now)).toBe(false);
    expect(policyMatches(file({ minSize: 100 }), now)).toBe(true);
    expect(policyMatches(file({ minSize: 101 }), now)).toBe(false);
    expect(policyMatches(file({ coldAfterMs: 1000 }, { atimeMs: now - 1000, mtimeMs: now - 5000 }), now)).toBe(true);
    expect(policyMatches(file({ coldAfterMs: 1000 }, { atimeMs: now - 999, mtimeMs: now - 5000 }), now)).toBe(false);
    expect(policyMatches(file({ coldAfterMs: 1000 }, { atimeMs: now - 5000, mtimeMs: now - 10 }), now)).toBe(false);
  });

  test('removing a file or directory (or renaming over a file) forgets its policy, pin and recall request', async () => {
    await mkdir('/gone');
    await create('/gone/f');
    await create('/gone/over');
    await create('/gone/src');
    for (const name of ['/gone/f', '/gone/over']) {
      await setPolicy(kv, ino[name]!, policy('cold'));
      await setPin(kv, ino[name]!, true);
      await kv.txn({ compares: [], ops: [{ type: 'put', key: `r/${ino[name]}`, value: Buffer.from('{}') }] });
    }
    await setPolicy(kv, ino['/gone']!, policy('cold'));
    const keysOf = (n: number) => [`p/${n}`, `k/${n}`, `r/${n}`];
    const present = async (n: number) => (await kv.getMany(keysOf(n))).filter(Boolean).length;
    expect(await present(ino['/gone/f']!)).toBe(3);
    await meta.unlink(ino['/gone']!, 'f');
    expect(await present(ino['/gone/f']!)).toBe(0);
    await meta.rename(ino['/gone']!, 'src', ino['/gone']!, 'over');
    expect(await present(ino['/gone/over']!)).toBe(0);
    await meta.unlink(ino['/gone']!, 'over');
    await meta.rmdir(ROOT_INO, 'gone');
    expect(await present(ino['/gone']!)).toBe(0);
  });
});
