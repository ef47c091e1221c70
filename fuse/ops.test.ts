// Namespace operations over a fake client with the coordinator's rules, for POSIX details
// pjdfstest checks (README, "Conformance (pjdfstest)") that need no real mount.
import type Fuse from 'fuse-native';
import { describe, expect, test } from 'vitest';
import { constants } from 'node:fs';
import { type FileStat, type Strata, StrataError } from '../client/index.js';
import { AttrCache } from './cache.js';
import type { MountConfig } from './config.js';
import type { MountContext } from './context.js';
import { HandleTable } from './handles.js';
import { ERRNO } from './errno.js';
import { DirListings } from './listings.js';
import { createOperations } from './ops.js';

/** Like the coordinator: a create or mkdir mode of 0 means "not given" (0644 / 0755). */
class FakeStrata {
  readonly stats = new Map<string, FileStat>();
  /** Every call, for tests of which round trips an operation makes. */
  readonly calls: string[] = [];
  private nextIno = 2;

  private add(path: string, type: 'file' | 'directory', mode: number): FileStat {
    const stat = { ino: this.nextIno++, type, mode, uid: 0, gid: 0, size: 0, nlink: 1, chunks: 0, chunkSize: 1 << 20, atimeMs: 0, mtimeMs: 0, ctimeMs: 0 } as unknown as FileStat;
    this.stats.set(path, stat);
    return stat;
  }

  async create(path: string, options: { mode?: number }): Promise<FileStat> {
    return this.add(path, 'file', options.mode || 0o644);
  }

  /** No data nodes here: no chunk 0 grant. */
  async createForWrite(path: string, options: { mode?: number }): Promise<{ stat: FileStat }> {
    return { stat: await this.create(path, options) };
  }

  async mkdir(path: string, options: { mode?: number }): Promise<FileStat> {
    return this.add(path, 'directory', options.mode || 0o755);
  }

  async setattr(path: string, changes: { mode?: number; size?: number }): Promise<FileStat> {
    this.calls.push('setattr');
    const stat = this.stats.get(path)!;
    if (changes.mode !== undefined) stat.mode = changes.mode;
    if (changes.size !== undefined) stat.size = changes.size;
    return { ...stat };
  }

  async stat(path: string): Promise<FileStat> {
    this.calls.push('stat');
    const stat = this.stats.get(path);
    if (!stat) throw new StrataError('NotFound', `${path}: no such file or directory`);
    return { ...stat };
  }
}

function operations() {
  const strata = new FakeStrata();
  const config = { path: '/', attrTimeoutMs: 1000, opTimeoutMs: 5000, maxDirtyChunks: 2, writeConcurrency: 1, readOnly: false } as MountConfig;
  const silent = { debug() {}, info() {}, warn() {}, error() {} };
  const cache = new AttrCache(1000);
  const ctx = {
    strata: strata as unknown as Strata,
    config,
    cache,
    listings: new DirListings(cache, async () => [], 1000),
    handles: new HandleTable(strata as never, config),
    log: silent,
  } as unknown as MountContext;
  return { strata, ops: createOperations(ctx) };
}

const call = (fn: (cb: (result: number, value?: unknown) => void) => void) =>
  new Promise<number>((resolve) => fn((result) => resolve(result)));

const callWith = <T>(fn: (cb: (result: number, value?: T) => void) => void) =>
  new Promise<{ result: number; value?: T }>((resolve) => fn((result, value) => resolve({ result, value })));

describe('creating with mode 0 (open(O_CREAT, 0), mkdir under umask 0777)', () => {
  test('a file created with mode 0 has mode 0, not the default 0644', async () => {
    const { strata, ops } = operations();
    expect(await call((cb) => ops.create!('/f', 0o100000, cb))).toBe(0);
    expect(strata.stats.get('/f')!.mode & 0o7777).toBe(0);
    expect(await call((cb) => ops.create!('/g', 0o100640, cb))).toBe(0);
    expect(strata.stats.get('/g')!.mode & 0o7777).toBe(0o640);
  });

  test('a directory made with mode 0 has mode 0, not the default 0755', async () => {
    const { strata, ops } = operations();
    expect(await call((cb) => ops.mkdir!('/d', 0, cb))).toBe(0);
    expect(strata.stats.get('/d')!.mode & 0o7777).toBe(0);
    expect(await call((cb) => ops.mkdir!('/e', 0o1700, cb))).toBe(0);
    expect(strata.stats.get('/e')!.mode & 0o7777).toBe(0o1700);
  });
});

describe('truncation answers from the SetAttr reply (no Stat after it)', () => {
  test('open(O_TRUNC) after the lookup: one SetAttr empties the file and is what getattr shows', async () => {
    const { strata, ops } = operations();
    await strata.create('/f', {});
    strata.stats.get('/f')!.size = 5000;
    expect((await callWith<Fuse.Stat>((cb) => ops.getattr!('/f', cb))).value?.size).toBe(5000); // the kernel's lookup
    const opened = await callWith<number>((cb) => ops.open!('/f', constants.O_WRONLY | constants.O_TRUNC, cb));
    expect(opened.result).toBe(0);
    expect(opened.value).toBeGreaterThan(0);
    expect((await callWith<Fuse.Stat>((cb) => ops.getattr!('/f', cb))).value?.size).toBe(0);
    expect(strata.calls).toEqual(['stat', 'setattr']);
    expect(strata.stats.get('/f')!.size).toBe(0);
  });

  test('open(O_TRUNC) of a missing name is ENOENT; a read-only open does not truncate', async () => {
    const { strata, ops } = operations();
    expect(await call((cb) => ops.open!('/missing', constants.O_WRONLY | constants.O_TRUNC, cb))).toBe(-ERRNO.ENOENT);
    await strata.create('/r', {});
    strata.stats.get('/r')!.size = 7;
    expect(await call((cb) => ops.open!('/r', constants.O_RDONLY | constants.O_TRUNC, cb))).toBe(0);
    expect(strata.stats.get('/r')!.size).toBe(7);
  });

  test('truncate, then the getattr libfuse sends after it, costs one SetAttr', async () => {
    const { strata, ops } = operations();
    await strata.create('/t', {});
    expect(await call((cb) => ops.getattr!('/t', cb))).toBe(0);
    expect(await call((cb) => ops.truncate!('/t', 1234, cb))).toBe(0);
    expect((await callWith<Fuse.Stat>((cb) => ops.getattr!('/t', cb))).value?.size).toBe(1234);
    expect(strata.calls).toEqual(['stat', 'setattr']);
  });
});
