// One contract for the KV seam, run against every engine: LevelDB in a temp dir and real etcd.

import { spawn } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { StrataError } from '../../common/errors.js';
import { startEtcd, startEtcdCluster, type EtcdMember } from '../../test/harness/etcd.js';
import { freePort, tempDir, type TempDir } from '../../test/harness/ports.js';
import { CachedKv } from './cached-kv.js';
import { EtcdKv } from './etcd-kv.js';
import { KV_MAX_TXN_OPS, prefixEnd, type Kv, type KvOp } from './kv.js';
import { LevelKv } from './level-kv.js';
import { openKv } from './open-kv.js';

const ETCD_TEST_TIMEOUT_MS = 30_000;
const RACERS = 20;

const put = (key: string, value: string | Buffer): KvOp => ({ type: 'put', key, value: Buffer.from(value) });
const bytewise = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

async function expectKind(promise: Promise<unknown>, kind: StrataError['kind']): Promise<StrataError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StrataError);
  expect((err as StrataError).kind).toBe(kind);
  return err as StrataError;
}

async function expectAbsent(kv: Kv, key: string): Promise<void> {
  expect(await kv.getMany([key])).toEqual([undefined]);
}

/**
 * Runs `txns` concurrently behind one unrelated write, so that on an engine that group-commits
 * they all queue while it commits and are then checked together in one group.
 */
async function together<T>(kv: Kv, prefix: string, txns: (() => Promise<T>)[]): Promise<T[]> {
  const [, ...results] = await Promise.all([kv.txn({ compares: [], ops: [put(`${prefix}blocker`, 'x')] }), ...txns.map((t) => t())]);
  return results as T[];
}

/** The seam's contract. Each test writes under its own prefix, so engines may be shared. */
export function kvContract(name: string, open: () => Promise<Kv>): void {
  describe(`Kv contract: ${name}`, () => {
    let kv: Kv;
    let testCount = 0;
    const fresh = () => `${name}/t${++testCount}/`;

    beforeAll(async () => {
      kv = await open();
    }, ETCD_TEST_TIMEOUT_MS);
    afterAll(async () => {
      await kv?.close();
    });

    test('getMany returns entries in order, undefined where absent', async () => {
      const p = fresh();
      expect(await kv.txn({ compares: [], ops: [put(`${p}a`, 'A'), put(`${p}c`, Buffer.alloc(0))] })).toBe(true);
      const got = await kv.getMany([`${p}a`, `${p}b`, `${p}c`, `${p}a`]);
      expect(got.map((e) => e?.value.toString())).toEqual(['A', undefined, '', 'A']);
      expect(got[0]!.key).toBe(`${p}a`);
      expect(got[0]!.modRevision).toBeGreaterThan(0);
      expect(await kv.getMany([])).toEqual([]);
    });

    test('getMany of more keys than one txn holds answers every key', async () => {
      const p = fresh();
      const keys = Array.from({ length: 300 }, (_, i) => `${p}${String(i).padStart(3, '0')}`);
      for (let i = 0; i < keys.length; i += 2 * KV_MAX_TXN_OPS) {
        const ops = keys.slice(i, i + 2 * KV_MAX_TXN_OPS).filter((_, j) => j % 2 === 0).map((k) => put(k, k));
        expect(await kv.txn({ compares: [], ops })).toBe(true);
      }
      const got = await kv.getMany(keys);
      expect(got.map((e) => e?.value.toString())).toEqual(keys.map((k, i) => (i % 2 === 0 ? k : undefined)));
    });

    test('each write raises modRevision; ops in one txn share one revision', async () => {
      const p = fresh();
      await kv.txn({ compares: [], ops: [put(`${p}k`, 'v1')] });
      const [first] = await kv.getMany([`${p}k`]);
      await kv.txn({ compares: [], ops: [put(`${p}k`, 'v2'), put(`${p}other`, 'x')] });
      const [second, other] = await kv.getMany([`${p}k`, `${p}other`]);
      expect(second!.value.toString()).toBe('v2');
      expect(second!.modRevision).toBeGreaterThan(first!.modRevision);
      expect(other!.modRevision).toBe(second!.modRevision);
    });

    test('compare on modRevision 0 holds only while the key is absent', async () => {
      const p = fresh();
      const create = (value: string) => kv.txn({ compares: [{ key: `${p}k`, modRevision: 0 }], ops: [put(`${p}k`, value)] });
      expect(await create('first')).toBe(true);
      expect(await create('second')).toBe(false);
      const [entry] = await kv.getMany([`${p}k`]);
      expect(entry!.value.toString()).toBe('first');
      await kv.txn({ compares: [], ops: [{ type: 'delete', key: `${p}k` }] });
      expect(await create('third')).toBe(true);
    });

    test('a stale compare fails and applies none of the ops', async () => {
      const p = fresh();
      await kv.txn({ compares: [], ops: [put(`${p}k`, 'v1'), put(`${p}victim`, 'keep')] });
      const [stale] = await kv.getMany([`${p}k`]);
      await kv.txn({ compares: [], ops: [put(`${p}k`, 'v2')] });
      const [current] = await kv.getMany([`${p}k`]);
      const ops: KvOp[] = [put(`${p}k`, 'v3'), put(`${p}new`, 'n'), { type: 'delete', key: `${p}victim` }];
      expect(await kv.txn({ compares: [{ key: `${p}k`, modRevision: stale!.modRevision }], ops })).toBe(false);
      // One compare holding is not enough: all must.
      const mixed = [
        { key: `${p}k`, modRevision: current!.modRevision },
        { key: `${p}new`, modRevision: 5 },
      ];
      expect(await kv.txn({ compares: mixed, ops })).toBe(false);
      const after = await kv.getMany([`${p}k`, `${p}new`, `${p}victim`]);
      expect(after.map((e) => e?.value.toString())).toEqual(['v2', undefined, 'keep']);
      expect(after[0]!.modRevision).toBe(current!.modRevision);
      expect(await kv.txn({ compares: [{ key: `${p}k`, modRevision: current!.modRevision }], ops })).toBe(true);
      expect((await kv.getMany([`${p}k`, `${p}new`, `${p}victim`])).map((e) => e?.value.toString())).toEqual([
        'v3',
        'n',
        undefined,
      ]);
    });

    test('deleteRange removes exactly [start, end)', async () => {
      const p = fresh();
      const keys = ['a', 'b', 'b/1', 'b/2', 'b0', 'c'].map((k) => `${p}${k}`);
      await kv.txn({ compares: [], ops: keys.map((k) => put(k, 'x')) });
      expect(await kv.txn({ compares: [], ops: [{ type: 'deleteRange', start: `${p}b/`, end: prefixEnd(`${p}b/`) }] })).toBe(
        true,
      );
      const left = await kv.range({ start: p, end: prefixEnd(p), limit: 100 });
      expect(left.map((e) => e.key)).toEqual(['a', 'b', 'b0', 'c'].map((k) => `${p}${k}`));
      // An empty or inverted range deletes nothing (etcd would read an empty end as "this key").
      await kv.txn({ compares: [], ops: [{ type: 'deleteRange', start: `${p}b`, end: '' }] });
      await kv.txn({ compares: [], ops: [{ type: 'deleteRange', start: `${p}c`, end: `${p}a` }] });
      expect(await kv.count(p, prefixEnd(p))).toBe(4);
    });

    test('range is bytewise ordered, limited, and pages to the end', async () => {
      const p = fresh();
      // U+FFFD sorts before U+1F600 in UTF-8 bytes but after it in JS (UTF-16) order.
      const names = ['b', 'a', 'é', '\u{1F600}', '\uFFFD', 'a0', 'A', ' ', 'z', 'aa'];
      await kv.txn({ compares: [], ops: names.map((n) => put(`${p}${n}`, n)) });
      const expected = names.map((n) => `${p}${n}`).sort(bytewise);
      const firstPage = await kv.range({ start: p, end: prefixEnd(p), limit: 3 });
      expect(firstPage.map((e) => e.key)).toEqual(expected.slice(0, 3));
      const seen: string[] = [];
      let start = p;
      for (let pages = 0; pages < 10; pages++) {
        const page = await kv.range({ start, end: prefixEnd(p), limit: 4 });
        seen.push(...page.map((e) => e.key));
        if (page.length < 4) break;
        start = page[page.length - 1]!.key + '\x00';
      }
      expect(seen).toEqual(expected);
      expect(await kv.range({ start: expected.at(-1)! + '\x00', end: prefixEnd(p), limit: 4 })).toEqual([]);
      expect((await kv.range({ start: `${p}a`, end: `${p}b`, limit: 10 })).map((e) => e.value.toString())).toEqual([
        'a',
        'a0',
        'aa',
      ]);
      await expectKind(kv.range({ start: p, end: prefixEnd(p), limit: 0 }), 'Invalid');
    });

    test('count counts [start, end)', async () => {
      const p = fresh();
      await kv.txn({ compares: [], ops: ['a', 'b', 'c', 'd'].map((k) => put(`${p}${k}`, k)) });
      expect(await kv.count(p, prefixEnd(p))).toBe(4);
      expect(await kv.count(`${p}b`, `${p}d`)).toBe(2);
      expect(await kv.count(`${p}x`, prefixEnd(p))).toBe(0);
      expect(await kv.count(`${p}d`, `${p}a`)).toBe(0);
    });

    test('txns that etcd refuses are Invalid on every engine and apply nothing', async () => {
      const p = fresh();
      const tooMany = Array.from({ length: KV_MAX_TXN_OPS + 1 }, (_, i) => put(`${p}${i}`, 'x'));
      await expectKind(kv.txn({ compares: [], ops: tooMany }), 'Invalid');
      await expectKind(kv.txn({ compares: [], ops: [put(`${p}d`, '1'), put(`${p}d`, '2')] }), 'Invalid');
      const putInDeleted: KvOp[] = [{ type: 'deleteRange', start: p, end: prefixEnd(p) }, put(`${p}d`, '1')];
      await expectKind(kv.txn({ compares: [], ops: putInDeleted }), 'Invalid');
      await expectKind(kv.txn({ compares: [], ops: [{ type: 'delete', key: `${p}e` }, put(`${p}e`, '1')] }), 'Invalid');
      // A delete of one key is no range: a put of the next key along goes through.
      expect(await kv.txn({ compares: [], ops: [{ type: 'delete', key: `${p}f` }, put(`${p}f\x00`, '1'), put(`${p}f0`, '1')] })).toBe(true);
      await kv.txn({ compares: [], ops: [{ type: 'deleteRange', start: p, end: prefixEnd(p) }] });
      await expectKind(kv.txn({ compares: [], ops: [put(`${p}big`, Buffer.alloc(1.6 * 1024 * 1024))] }), 'Invalid');
      await expectKind(kv.txn({ compares: [], ops: [put(`${p}huge`, Buffer.alloc(3 * 1024 * 1024))] }), 'Invalid');
      expect(await kv.count(p, prefixEnd(p))).toBe(0);
      expect(await kv.txn({ compares: [], ops: tooMany.slice(0, KV_MAX_TXN_OPS) })).toBe(true);
      expect(await kv.count(p, prefixEnd(p))).toBe(KV_MAX_TXN_OPS);
    });

    test(`${RACERS} concurrent txns on one revision: exactly one wins`, async () => {
      const p = fresh();
      await kv.txn({ compares: [], ops: [put(`${p}k`, 'start')] });
      const [base] = await kv.getMany([`${p}k`]);
      const results = await together(
        kv,
        p,
        Array.from({ length: RACERS }, (_, i) => () =>
          kv.txn({ compares: [{ key: `${p}k`, modRevision: base!.modRevision }], ops: [put(`${p}k`, `racer${i}`)] }),
        ),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      const [after] = await kv.getMany([`${p}k`]);
      expect(after!.value.toString()).toBe(`racer${results.indexOf(true)}`);

      const creates = await Promise.all(
        Array.from({ length: RACERS }, (_, i) =>
          kv.txn({ compares: [{ key: `${p}new`, modRevision: 0 }], ops: [put(`${p}new`, `racer${i}`)] }),
        ),
      );
      expect(creates.filter(Boolean)).toHaveLength(1);
    });

    test(`${RACERS} concurrent create-if-absent of one key: one wins, the losers write nothing`, async () => {
      const p = fresh();
      const results = await together(
        kv,
        p,
        Array.from({ length: RACERS }, (_, i) => () =>
          kv.txn({ compares: [{ key: `${p}k`, modRevision: 0 }], ops: [put(`${p}k`, `racer${i}`), put(`${p}side/${i}`, 'x')] }),
        ),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = results.indexOf(true);
      const [entry] = await kv.getMany([`${p}k`]);
      expect(entry!.value.toString()).toBe(`racer${winner}`);
      const sides = await kv.range({ start: `${p}side/`, end: prefixEnd(`${p}side/`), limit: RACERS + 1 });
      expect(sides.map((e) => e.key)).toEqual([`${p}side/${winner}`]);
      expect(sides[0]!.modRevision).toBe(entry!.modRevision);
    });

    test('concurrent independent txns all commit, each at a revision of its own', async () => {
      const p = fresh();
      const count = 3 * RACERS;
      const results = await together(
        kv,
        p,
        Array.from({ length: count }, (_, i) => () =>
          kv.txn({ compares: [{ key: `${p}${i}/a`, modRevision: 0 }], ops: [put(`${p}${i}/a`, `a${i}`), put(`${p}${i}/b`, `b${i}`)] }),
        ),
      );
      expect(results).toEqual(Array(count).fill(true));
      const entries = await kv.getMany(Array.from({ length: count }, (_, i) => [`${p}${i}/a`, `${p}${i}/b`]).flat());
      const revisions = new Set<number>();
      for (let i = 0; i < count; i++) {
        const [a, b] = [entries[2 * i]!, entries[2 * i + 1]!];
        expect([a.value.toString(), b.value.toString()]).toEqual([`a${i}`, `b${i}`]);
        expect(b.modRevision).toBe(a.modRevision);
        revisions.add(a.modRevision);
      }
      expect(revisions.size).toBe(count);
    });

    test('a failing compare among concurrent txns fails alone and writes nothing', async () => {
      const p = fresh();
      await kv.txn({ compares: [], ops: [put(`${p}k`, 'keep')] });
      const [before] = await kv.getMany([`${p}k`]);
      const independent = (i: number) =>
        kv.txn({ compares: [{ key: `${p}ok/${i}`, modRevision: 0 }], ops: [put(`${p}ok/${i}`, String(i))] });
      // Stale: k exists, so "absent" does not hold; its ops would delete k and add a key.
      const doomed = () =>
        kv.txn({ compares: [{ key: `${p}k`, modRevision: 0 }], ops: [{ type: 'delete', key: `${p}k` }, put(`${p}bad`, 'x')] });
      const half = RACERS / 2;
      const results = await together(kv, p, [
        ...Array.from({ length: half }, (_, i) => () => independent(i)),
        doomed,
        ...Array.from({ length: half }, (_, i) => () => independent(half + i)),
      ]);
      expect(results).toEqual([...Array(half).fill(true), false, ...Array(half).fill(true)]);
      const [k, bad] = await kv.getMany([`${p}k`, `${p}bad`]);
      expect(k).toEqual(before);
      expect(bad).toBeUndefined();
      expect(await kv.count(`${p}ok/`, prefixEnd(`${p}ok/`))).toBe(RACERS);
    });

    test('concurrent deleteRanges and puts in other ranges each do exactly their own', async () => {
      const p = fresh();
      const dirs = Array.from({ length: RACERS }, (_, i) => `${p}d/${String(i).padStart(2, '0')}/`);
      await kv.txn({ compares: [], ops: dirs.flatMap((d) => [put(`${d}1`, 'x'), put(`${d}2`, 'x')]) });
      const results = await together(
        kv,
        p,
        dirs.map((d, i) => () =>
          i % 2 === 0
            ? kv.txn({ compares: [], ops: [{ type: 'deleteRange', start: d, end: prefixEnd(d) }] })
            : kv.txn({ compares: [], ops: [put(`${d}3`, 'y')] }),
        ),
      );
      expect(results).toEqual(Array(RACERS).fill(true));
      const left = await kv.range({ start: `${p}d/`, end: prefixEnd(`${p}d/`), limit: 4 * RACERS });
      expect(left.map((e) => e.key)).toEqual(dirs.filter((_, i) => i % 2 === 1).flatMap((d) => [`${d}1`, `${d}2`, `${d}3`]));
    });
  });
}

/**
 * A writer process killed with -9 while many txns are in flight: every txn it saw acknowledged
 * is there afterwards, and every txn is all or nothing. `reopen` is called once the writer is dead.
 */
export function crashContract(name: string, metaUrl: () => Promise<string>, reopen: (url: string) => Promise<Kv>): void {
  test(`${name}: a writer killed -9 mid-group loses nothing acknowledged`, { timeout: 60_000 }, async () => {
    const url = await metaUrl();
    const writer = spawn(process.execPath, ['--input-type=module', '-e', CRASH_WRITER, url], { stdio: ['ignore', 'pipe', 'pipe'] });
    const acked: number[] = [];
    let stderr = '';
    writer.stderr.on('data', (piece: Buffer) => (stderr += piece.toString()));
    const exited = new Promise<void>((resolve) => writer.once('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      let pending = '';
      writer.stdout.on('data', (piece: Buffer) => {
        pending += piece.toString();
        const lines = pending.split('\n');
        pending = lines.pop()!;
        for (const line of lines) acked.push(Number(line));
        if (acked.length >= CRASH_ACKS) resolve();
      });
      writer.once('exit', () => reject(new Error(`writer exited after ${acked.length} acks: ${stderr}`)));
    });
    writer.kill('SIGKILL');
    await exited;
    const kv = await reopen(url);
    try {
      const count = Math.max(...acked) + CRASH_IN_FLIGHT + 1;
      const keys = Array.from({ length: count }, (_, i) => [`crash/a/${i}`, `crash/b/${i}`]).flat();
      const entries = await kv.getMany(keys);
      for (const i of acked) expect(entries[2 * i]?.value.toString(), `acknowledged txn ${i}`).toBe(String(i));
      for (let i = 0; i < count; i++) {
        const [a, b] = [entries[2 * i], entries[2 * i + 1]];
        expect(b?.value.toString(), `txn ${i} is all or nothing`).toBe(a?.value.toString());
      }
      // The store keeps going after the crash, at revisions above everything it kept.
      const newest = Math.max(...entries.map((e) => e?.modRevision ?? 0));
      expect(await kv.txn({ compares: [], ops: [put('crash/after', 'x')] })).toBe(true);
      const [after] = await kv.getMany(['crash/after']);
      expect(after!.modRevision).toBeGreaterThan(newest);
    } finally {
      await kv.close();
    }
  });
}

const CRASH_ACKS = 300;
const CRASH_IN_FLIGHT = 32;
// Keeps CRASH_IN_FLIGHT create-if-absent txns of two keys in flight; prints each acknowledged
// txn's number once its promise resolved, and never stops by itself.
const CRASH_WRITER = `
import { openKv } from ${JSON.stringify(new URL('../../dist/coordinator/meta/open-kv.js', import.meta.url).href)};
const kv = await openKv(process.argv[1]);
let next = 0;
const loop = async () => {
  for (;;) {
    const i = next++;
    const value = Buffer.from(String(i));
    const ok = await kv.txn({
      compares: [{ key: 'crash/a/' + i, modRevision: 0 }],
      ops: [{ type: 'put', key: 'crash/a/' + i, value }, { type: 'put', key: 'crash/b/' + i, value }],
    });
    if (!ok) throw new Error('txn ' + i + ' lost its create');
    process.stdout.write(i + '\\n');
  }
};
await Promise.all(Array.from({ length: ${CRASH_IN_FLIGHT} }, loop));
`;

const levelDirs: TempDir[] = [];
afterAll(async () => {
  await Promise.all(levelDirs.map((d) => d.cleanup()));
});
async function levelDir(): Promise<string> {
  const dir = await tempDir('levelkv');
  levelDirs.push(dir);
  return dir.path;
}

kvContract('level', async () => LevelKv.open(await levelDir()));

describe('LevelKv', () => {
  test('close and reopen keeps values and revisions; new writes go higher', async () => {
    const path = await levelDir();
    const kv = await LevelKv.open(path);
    await kv.txn({ compares: [], ops: [put('a', '1'), put('b', '2')] });
    await kv.txn({ compares: [], ops: [put('b', '3')] });
    const before = await kv.getMany(['a', 'b']);
    await kv.close();

    const reopened = await LevelKv.open(path);
    try {
      expect(await reopened.getMany(['a', 'b'])).toEqual(before);
      expect(await reopened.txn({ compares: [{ key: 'b', modRevision: before[1]!.modRevision }], ops: [put('c', '4')] })).toBe(
        true,
      );
      const [c] = await reopened.getMany(['c']);
      expect(c!.modRevision).toBeGreaterThan(before[1]!.modRevision);
    } finally {
      await reopened.close();
    }
  });

  test('internal keys stay hidden and cannot be written', async () => {
    const kv = await LevelKv.open(await levelDir());
    try {
      await kv.txn({ compares: [], ops: [put('a', '1')] });
      expect((await kv.range({ start: '', end: '\x7f', limit: 10 })).map((e) => e.key)).toEqual(['a']);
      expect(await kv.count('', '\x7f')).toBe(1);
      expect(await kv.getMany(['\x00rev'])).toEqual([undefined]);
      await expectKind(kv.txn({ compares: [], ops: [put('\x00rev', 'x')] }), 'Invalid');
    } finally {
      await kv.close();
    }
  });

  test('txns queued behind a commit share one synced batch, in order, each seeing the ones before', async () => {
    const kv = await LevelKv.open(await levelDir());
    try {
      const start = kv.stats;
      const absent = (key: string) => ({ key, modRevision: 0 });
      // The first commits alone; the rest queue behind it and form the next group.
      const results = await Promise.all([
        kv.txn({ compares: [], ops: [put('first', '1')] }),
        kv.txn({ compares: [absent('k')], ops: [put('k', 'a')] }),
        kv.txn({ compares: [absent('k')], ops: [put('k', 'b')] }), // sees a's k
        kv.txn({ compares: [absent('x')], ops: [put('x', '1'), { type: 'delete', key: 'k' }] }),
        kv.txn({ compares: [absent('k')], ops: [put('k', 'd')] }), // sees the delete
        kv.txn({ compares: [absent('x')], ops: [put('never', '1')] }), // sees x
        kv.txn({ compares: [], ops: [{ type: 'deleteRange', start: 'x', end: 'y' }] }), // sees x too
      ]);
      expect(results).toEqual([true, true, false, true, true, false, true]);
      expect(kv.stats).toEqual({ txns: start.txns + 7, groups: start.groups + 2, batches: start.batches + 2 });
      const [first, k, x, never] = await kv.getMany(['first', 'k', 'x', 'never']);
      expect([k?.value.toString(), x, never]).toEqual(['d', undefined, undefined]);
      // Revisions as one at a time: a, then x's txn, then d, then the deleteRange.
      expect(k!.modRevision).toBe(first!.modRevision + 3);
      expect(await kv.txn({ compares: [absent('x')], ops: [put('x', '2')] })).toBe(true);
      expect((await kv.getMany(['x']))[0]!.modRevision).toBe(first!.modRevision + 5);
    } finally {
      await kv.close();
    }
  });

  test('close settles every queued txn first; what it acknowledged is there after a reopen', async () => {
    const path = await levelDir();
    const kv = await LevelKv.open(path);
    const txns = Array.from({ length: 50 }, (_, i) => kv.txn({ compares: [{ key: `q/${i}`, modRevision: 0 }], ops: [put(`q/${i}`, String(i))] }));
    const closed = kv.close();
    await expectKind(kv.txn({ compares: [], ops: [put('late', 'x')] }), 'Unavailable');
    expect(await Promise.all(txns)).toEqual(Array(50).fill(true));
    await closed;
    const reopened = await LevelKv.open(path);
    try {
      expect(await reopened.count('q/', 'q0')).toBe(50);
      expect(await reopened.getMany(['late'])).toEqual([undefined]);
    } finally {
      await reopened.close();
    }
  });

  crashContract('level', levelDir, (path) => LevelKv.open(path));

  test('a second open of the same directory is Unavailable', async () => {
    const path = await levelDir();
    const kv = await LevelKv.open(path);
    try {
      const err = await expectKind(LevelKv.open(path), 'Unavailable');
      expect(err.message).toContain('in use by another process');
    } finally {
      await kv.close();
    }
  });
});

describe('etcd', () => {
  let etcd: EtcdMember;
  beforeAll(async () => {
    etcd = await startEtcd();
  }, ETCD_TEST_TIMEOUT_MS);
  afterAll(async () => {
    await etcd?.stop();
  }, ETCD_TEST_TIMEOUT_MS);

  kvContract('etcd', () => openKv(etcd.url));
  kvContract('etcd-cached', () => openKv(etcd.url, { cachePrefixes: ['etcd-cached/'] }));

  test('the watch-fed cache keeps what concurrent txns created, so reading it back costs etcd no read', { timeout: 20_000 }, async () => {
    class CountingEtcdKv extends EtcdKv {
      reads = 0;
      override getManyAt(keys: string[]) {
        this.reads++;
        return super.getManyAt(keys);
      }
    }
    const inner = new CountingEtcdKv({ hosts: [etcd.url.replace('etcd://', '')] });
    const kv = await CachedKv.open(inner, { prefixes: ['hits/'] });
    let watched = 0;
    let onWatched = () => undefined as void;
    kv.listen({
      onEvents: (events) => {
        watched = Math.max(watched, ...events.map((e) => e.revision));
        onWatched();
      },
      onReset: () => undefined,
      onReady: () => undefined,
    });
    try {
      const keys = Array.from({ length: 2 * RACERS }, (_, i) => `hits/${i}`);
      const outcomes = await Promise.all(keys.map((key) => kv.txnAt({ compares: [{ key, modRevision: 0 }], ops: [put(key, key)] })));
      expect(outcomes.every((o) => o.succeeded)).toBe(true);
      // Let the watch deliver every one of these writes.
      const newest = Math.max(...outcomes.map((o) => o.revision));
      await new Promise<void>((resolve) => {
        onWatched = () => watched >= newest && resolve();
        onWatched();
      });
      const readsBefore = inner.reads;
      expect((await kv.getMany(keys)).map((e) => e?.value.toString())).toEqual(keys);
      expect(inner.reads).toBe(readsBefore);
    } finally {
      await kv.close();
    }
  });
  crashContract('etcd', async () => etcd.url, (url) => openKv(url));

  test('a closed port fails with one Unavailable line, not a hang', { timeout: 10_000 }, async () => {
    const port = await freePort();
    const kv = new EtcdKv({ hosts: [`127.0.0.1:${port}`], timeoutMs: 2_000 });
    try {
      const readErr = await expectKind(kv.getMany(['a']), 'Unavailable');
      expect(readErr.message).toBe(`cannot reach etcd at 127.0.0.1:${port} (getMany: connection refused)`);
      const writeErr = await expectKind(kv.txn({ compares: [], ops: [put('a', '1')] }), 'Unavailable');
      expect(writeErr.message).toMatch(new RegExp(`^cannot reach etcd at 127\\.0\\.0\\.1:${port} \\(txn: [^\\n]*\\)$`));
    } finally {
      await kv.close();
    }
  });

  test('a server that never answers fails with Unavailable at the deadline', { timeout: 10_000 }, async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    const port = await freePort();
    await new Promise<void>((resolve) => silent.listen(port, '127.0.0.1', resolve));
    const kv = new EtcdKv({ hosts: [`127.0.0.1:${port}`], timeoutMs: 500 });
    try {
      const err = await expectKind(kv.range({ start: 'a', end: 'b', limit: 1 }), 'Unavailable');
      expect(err.message).toContain('no answer within 500 ms');
    } finally {
      await kv.close();
      sockets.forEach((s) => s.destroy());
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('a 3-member cluster keeps serving after a follower is killed', { timeout: 60_000 }, async () => {
    const cluster = await startEtcdCluster(3);
    const kv = await openKv(cluster.url);
    try {
      expect(await kv.txn({ compares: [], ops: [put('k', '0')] })).toBe(true);
      const leader = await cluster.leader();
      cluster.members.find((m) => m !== leader)!.kill9();
      for (let i = 1; i <= 20; i++) {
        const [entry] = await kv.getMany(['k']);
        expect(entry!.value.toString()).toBe(String(i - 1));
        expect(await kv.txn({ compares: [{ key: 'k', modRevision: entry!.modRevision }], ops: [put('k', String(i))] })).toBe(
          true,
        );
      }
    } finally {
      await kv.close();
      await cluster.stop();
    }
  });
});

describe('openKv', () => {
  test.each([
    ['', 'empty'],
    ['redis://localhost:6379', 'unknown scheme'],
    ['etcd://', 'no etcd host'],
    ['etcd://host:99999', 'out of range'],
    ['etcd://a b:1', 'is not host:port'],
    ['leveldb://relative/path', 'absolute path'],
    ['localhost:2379', 'did you mean etcd://localhost:2379'],
  ])('rejects %j as Invalid in one line', async (metaUrl, why) => {
    const err = await expectKind(openKv(metaUrl), 'Invalid');
    expect(err.message).toContain(why);
    expect(err.message).toContain('expected etcd://host:port');
    expect(err.message).not.toContain('\n');
  });

  test('leveldb:/// URLs and plain paths open LevelKv', async () => {
    const path = await levelDir();
    for (const metaUrl of [`leveldb://${path}`, path]) {
      const kv = await openKv(metaUrl);
      expect(kv).toBeInstanceOf(LevelKv);
      await kv.close();
    }
  });
});
