import { describe, expect, it } from 'vitest';
import { MetaCache, leaseMarginMs } from './meta-cache.js';
import type { FileStat } from './types.js';

const TTL = 10_000;
const grant = { epoch: 1, validForMs: TTL };

function stat(ino: number, mode = 0o644): FileStat {
  return {
    ino, type: 'file', mode, uid: 0, gid: 0, size: 0, mtimeMs: 0, ctimeMs: 0, atimeMs: 0, nlink: 1,
    replication: 3, chunkSize: 0, chunks: 0, target: '',
    isFile: () => true, isDirectory: () => false, isSymbolicLink: () => false,
  };
}

function setup() {
  const clock = { ms: 1000 };
  const cache = new MetaCache({ now: () => clock.ms });
  return { clock, cache };
}

describe('MetaCache', () => {
  it('answers a leased lookup, negative lookup, getattr and listing locally', () => {
    const { cache } = setup();
    cache.putLookup(cache.ticket(), grant, 1, 'a', stat(5));
    cache.putLookup(cache.ticket(), grant, 1, 'missing', null);
    cache.putAttr(cache.ticket(), grant, stat(6));
    cache.putListing(cache.ticket(), grant, 9, [{ name: 'x', stat: stat(10) }, { name: 'y', stat: stat(11) }]);
    expect(cache.lookup(1, 'a')?.ino).toBe(5);
    expect(cache.lookup(1, 'missing')).toBeNull();
    expect(cache.lookup(1, 'other')).toBeUndefined();
    expect(cache.getattr(6)?.ino).toBe(6);
    expect(cache.readdirplus(9)?.entries.map((e) => e.name)).toEqual(['x', 'y']);
    expect(cache.readdirplus(9, 'x')).toEqual({ entries: [{ name: 'y', stat: expect.anything() }], more: false });
    expect(cache.readdirplus(9, '', 1)?.more).toBe(true);
    expect(cache.lookup(9, 'x')?.ino).toBe(10);
    expect(cache.hits).toBe(7);
  });

  it('a whole listing answers every name in it, absent ones too; a lookup alone only its own', () => {
    const { cache } = setup();
    cache.putLookup(cache.ticket(), grant, 1, 'a', stat(5));
    expect(cache.partlyCached(1)).toBe(true);
    expect(cache.lookup(1, 'b')).toBeUndefined();
    cache.putListing(cache.ticket(), grant, 1, [{ name: 'a', stat: stat(5) }, { name: 'c', stat: stat(7) }]);
    expect(cache.partlyCached(1)).toBe(false);
    expect(cache.lookup(1, 'c')?.ino).toBe(7);
    expect(cache.lookup(1, 'b')).toBeNull();
    cache.applyPush({ pushId: 1, events: [{ ino: 1, name: 'b' }] });
    expect(cache.lookup(1, 'b')).toBeUndefined();
    expect(cache.partlyCached(1)).toBe(false);
  });

  it('caches nothing without a grant', () => {
    const { cache } = setup();
    cache.putLookup(cache.ticket(), undefined, 1, 'a', stat(5));
    expect(cache.lookup(1, 'a')).toBeUndefined();
  });

  it('drops the whole directory on a push about one of its entries, and tells listeners', () => {
    const { cache } = setup();
    const seen: unknown[] = [];
    cache.onInvalidate((event) => seen.push(event));
    cache.putLookup(cache.ticket(), grant, 1, 'a', stat(5));
    cache.putLookup(cache.ticket(), grant, 1, 'b', null);
    cache.applyPush({ pushId: 1, events: [{ ino: 1, name: 'b' }] });
    expect(cache.lookup(1, 'b')).toBeUndefined();
    expect(cache.lookup(1, 'a')).toBeUndefined();
    expect(cache.getattr(5)?.ino).toBe(5); // the child's attributes have their own lease
    expect(seen).toEqual([{ ino: 1, name: 'b' }]);
    cache.applyPush({ pushId: 2, events: [{ ino: 5 }] });
    expect(cache.getattr(5)).toBeUndefined();
  });

  it('does not cache a reply to a request sent before a push that covers it', () => {
    const { cache } = setup();
    const before = cache.ticket();
    const unrelated = cache.ticket();
    cache.applyPush({ pushId: 1, events: [{ ino: 1, name: 'a' }] });
    cache.putLookup(before, grant, 1, 'a', stat(5));
    expect(cache.lookup(1, 'a')).toBeUndefined();
    cache.putAttr(unrelated, grant, stat(7));
    expect(cache.getattr(7)?.ino).toBe(7); // the push covered something else
    const after = cache.ticket();
    cache.putLookup(after, grant, 1, 'a', stat(5));
    expect(cache.lookup(1, 'a')?.ino).toBe(5);
  });

  it('expires on its own clock, from the send time, before the coordinator does', () => {
    const { cache, clock } = setup();
    const ticket = cache.ticket();
    clock.ms += 3000; // the reply took 3 s
    cache.putAttr(ticket, grant, stat(5));
    clock.ms = ticket.sentAtMs + TTL - leaseMarginMs(TTL) - 1;
    expect(cache.getattr(5)).toBeDefined();
    clock.ms += 1;
    expect(cache.getattr(5)).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('a renewal extends what is cached', () => {
    const { cache, clock } = setup();
    cache.putAttr(cache.ticket(), grant, stat(5));
    clock.ms += TTL / 2;
    cache.renewed(cache.ticket(), grant);
    clock.ms += TTL / 2 + 1000;
    expect(cache.getattr(5)).toBeDefined();
  });

  it('a grant in a newer epoch drops what the old one covered; an older epoch is not cached', () => {
    const { cache } = setup();
    cache.putAttr(cache.ticket(), grant, stat(5));
    const stale = cache.ticket();
    cache.putAttr(cache.ticket(), { epoch: 2, validForMs: TTL }, stat(6));
    expect(cache.getattr(5)).toBeUndefined();
    expect(cache.getattr(6)).toBeDefined();
    cache.putAttr(stale, grant, stat(7));
    expect(cache.getattr(7)).toBeUndefined();
  });

  it('a drop-everything push or a reset empties it', () => {
    const { cache } = setup();
    cache.putAttr(cache.ticket(), grant, stat(5));
    const inFlight = cache.ticket();
    cache.applyPush({ pushId: 1, events: [], all: true });
    expect(cache.getattr(5)).toBeUndefined();
    cache.putAttr(inFlight, grant, stat(6));
    expect(cache.getattr(6)).toBeUndefined();
    cache.putAttr(cache.ticket(), grant, stat(6));
    cache.reset();
    expect(cache.getattr(6)).toBeUndefined();
  });

  it('keeps at most maxEntries and reports what it evicted', () => {
    const cache = new MetaCache({ maxEntries: 2, now: () => 0 });
    for (const ino of [1, 2, 3]) cache.putAttr(cache.ticket(), grant, stat(ino));
    expect(cache.size).toBe(2);
    expect(cache.getattr(1)).toBeUndefined();
    expect(cache.takeReleased()).toEqual([{ kind: 'attr', ino: 1 }]);
  });

  it('tells listeners { all: true } when everything goes at once: an all push, a new epoch, the lapse, a reset', () => {
    const { cache, clock } = setup();
    const seen: unknown[] = [];
    cache.onInvalidate((event) => seen.push(event));
    cache.putAttr(cache.ticket(), grant, stat(5));
    cache.applyPush({ pushId: 1, events: [], all: true });
    expect(seen).toEqual([{ all: true }]);
    cache.putAttr(cache.ticket(), grant, stat(5));
    cache.putAttr(cache.ticket(), { epoch: 2, validForMs: TTL }, stat(6));
    expect(seen).toEqual([{ all: true }, { all: true }]);
    expect(cache.remainingMs()).toBe(TTL - leaseMarginMs(TTL));
    clock.ms += 1000;
    expect(cache.remainingMs()).toBe(TTL - leaseMarginMs(TTL) - 1000);
    clock.ms += TTL;
    expect(cache.remainingMs()).toBe(0);
    cache.checkLapse();
    cache.checkLapse(); // once per lapse
    expect(seen).toEqual([{ all: true }, { all: true }, { all: true }]);
    cache.putAttr(cache.ticket(), { epoch: 2, validForMs: TTL }, stat(6));
    cache.reset();
    expect(seen).toHaveLength(4);
    expect(seen[3]).toEqual({ all: true });
    expect(cache.remainingMs()).toBe(0);
  });

  it('a lapse noticed by a lookup tells listeners too', () => {
    const { cache, clock } = setup();
    const seen: unknown[] = [];
    cache.onInvalidate((event) => seen.push(event));
    cache.putLookup(cache.ticket(), grant, 1, 'a', stat(5));
    clock.ms += TTL;
    expect(cache.lookup(1, 'a')).toBeUndefined();
    expect(seen).toEqual([{ all: true }]);
  });
});
