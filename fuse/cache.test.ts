// The attribute cache's expiry and invalidation, and the statfs scaling for 32-bit counts.
import { describe, expect, test } from 'vitest';
import type { FileStat } from '../client/index.js';
import { toStatFs } from './attrs.js';
import { AttrCache } from './cache.js';

const stat = (ino: number) => ({ ino }) as FileStat;

describe('AttrCache', () => {
  test('entries expire after the timeout; a timeout of 0 caches nothing', () => {
    let now = 1000;
    const cache = new AttrCache(500, () => now);
    cache.set('/a', stat(1));
    expect(cache.get('/a')?.ino).toBe(1);
    now += 500;
    expect(cache.get('/a')).toBeUndefined();
    const off = new AttrCache(0);
    off.set('/a', stat(1));
    expect(off.get('/a')).toBeUndefined();
  });

  test('a change drops the path and its directory; a tree change drops everything below', () => {
    const cache = new AttrCache(60_000);
    for (const [path, ino] of [['/', 1], ['/d', 2], ['/d/f', 3], ['/d/e/g', 4], ['/dx', 5]] as const) cache.set(path, stat(ino));
    cache.invalidate('/d/f');
    expect([cache.get('/d/f'), cache.get('/d')]).toEqual([undefined, undefined]);
    expect(cache.get('/d/e/g')?.ino).toBe(4);
    cache.invalidateTree('/d');
    expect([cache.get('/d/e/g'), cache.get('/')]).toEqual([undefined, undefined]);
    expect(cache.get('/dx')?.ino).toBe(5); // a sibling sharing the prefix stays
  });

  test('a prefetched stat does not overwrite a change this mount made while it was fetched', () => {
    const cache = new AttrCache(60_000);
    const epoch = cache.beginPrefetch();
    cache.invalidate('/d/removed');
    cache.set('/d/chmodded', stat(20));
    cache.invalidateTree('/moved');
    for (const [path, ino] of [['/d/removed', 1], ['/d/chmodded', 2], ['/moved/x', 3], ['/d/other', 4]] as const) cache.fill(epoch, path, stat(ino));
    cache.endPrefetch();
    expect([cache.get('/d/removed'), cache.get('/d/chmodded')?.ino, cache.get('/moved/x'), cache.get('/d/other')?.ino]).toEqual([undefined, 20, undefined, 4]);
    // Changes before a prefetch began do not hold back its stats.
    const later = cache.beginPrefetch();
    cache.fill(later, '/d/removed', stat(5));
    cache.endPrefetch();
    expect(cache.get('/d/removed')?.ino).toBe(5);
  });
});

describe('toStatFs', () => {
  test('counts fit 32 bits: big clusters report bigger blocks, same capacity', () => {
    const PiB = 2 ** 50;
    const fs = toStatFs({ capacityBytes: 3 * PiB, usedBytes: PiB, freeBytes: 2 * PiB, files: 10, directories: 2, chunks: 0, liveNodes: 3, deadNodes: 0 });
    expect(fs.blocks).toBeLessThanOrEqual(0xffffffff);
    expect(fs.blocks * fs.frsize).toBe(3 * PiB);
    expect(fs.bavail * fs.frsize).toBe(2 * PiB);
    expect(fs.files - fs.ffree).toBe(12);
  });
});
