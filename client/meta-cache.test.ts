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

  it('tells listeners what it evicts (no push about it will come once released)', () => {
    const cache = new MetaCache({ maxEntries: 2, now: () => 0 });
    const seen: unknown[] = [];
    cache.onInvalidate((event) => seen.push(event));
    for (const ino of [1, 2, 3]) cache.putAttr(cache.ticket(), grant, stat(ino));
    expect(seen).toEqual([{ ino: 1 }]);
    cache.putLookup(cache.ticket(), grant, 7, 'x', null);
    cache.putLookup(cache.ticket(), grant, 8, 'y', null);
    expect(seen).toEqual([{ ino: 1 }, { ino: 2 }, { ino: 7, name: '' }]);
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

  describe('own changes (applied from their replies)', () => {
    const names = (cache: MetaCache, dir: number) => cache.readdirplus(dir, '', 100)?.entries.map((e) => e.name);

    it('a create goes into a whole listing in the coordinator order; its name and attributes are answered; the parent attrs go', () => {
      const { cache } = setup();
      cache.putListing(cache.ticket(), grant, 1, [{ name: 'a', stat: stat(5) }, { name: 'c', stat: stat(7) }]);
      cache.putAttr(cache.ticket(), grant, stat(1));
      const own = cache.beginOwn([[1, 'b']]);
      cache.applyOwnEntry(own, 1, 'b', stat(6));
      expect(names(cache, 1)).toEqual(['a', 'b', 'c']);
      expect(cache.lookup(1, 'b')?.ino).toBe(6);
      expect(cache.getattr(6)?.ino).toBe(6);
      expect(cache.getattr(1)).toBeUndefined();
      expect(cache.lookup(1, 'zz')).toBeNull(); // still whole: absent names answered
      cache.applyOwnEntry(cache.beginOwn([[1, 'é']]), 1, 'é', stat(8));
      cache.applyOwnEntry(cache.beginOwn([[1, 'Z']]), 1, 'Z', stat(9));
      expect(names(cache, 1)).toEqual(['Z', 'a', 'b', 'c', 'é']); // bytewise (UTF-8)
    });

    it('an unlink makes the name absent and leaves the listing; a rename moves the inode', () => {
      const { cache } = setup();
      cache.putListing(cache.ticket(), grant, 1, [{ name: 'a', stat: stat(5) }, { name: 'c', stat: stat(7) }]);
      cache.applyOwnRemoved(cache.beginOwn([[1, 'a']]), 1, 'a');
      expect(cache.lookup(1, 'a')).toBeNull();
      expect(cache.getattr(5)).toBeUndefined(); // its nlink changed
      expect(names(cache, 1)).toEqual(['c']);
      cache.putLookup(cache.ticket(), grant, 2, 'other', null); // a second directory, partly cached
      cache.applyOwnRenamed(cache.beginOwn([[1, 'c'], [2, 'd']]), 1, 'c', 2, 'd');
      expect(cache.lookup(1, 'c')).toBeNull();
      expect(cache.lookup(2, 'd')?.ino).toBe(7);
      expect(names(cache, 1)).toEqual([]);
      // A setattr's answer replaces the attributes.
      cache.applyOwnAttr(cache.beginOwn([], [7]), stat(7, 0o600));
      expect(cache.getattr(7)?.mode).toBe(0o600);
    });

    it("a mkdir whose reply leases the new directory's listing: every name in it is absent locally, our creates there keep it whole", () => {
      const { cache } = setup();
      cache.putListing(cache.ticket(), grant, 1, []);
      const dir = { ...stat(20, 0o755), type: 'directory' as const };
      cache.applyOwnEntry(cache.beginOwn([[1, 'd']]), 1, 'd', dir, true);
      expect(cache.lookup(20, 'x')).toBeNull();
      expect(names(cache, 20)).toEqual([]);
      cache.applyOwnEntry(cache.beginOwn([[20, 'x']]), 20, 'x', stat(21));
      expect(cache.lookup(20, 'x')?.ino).toBe(21);
      expect(cache.lookup(20, 'y')).toBeNull();
      expect(names(cache, 20)).toEqual(['x']);
      // Another client's change there: the listing goes, nothing is answered absent any more.
      cache.applyPush({ pushId: 1, events: [{ ino: 20, name: 'y' }] });
      expect(cache.lookup(20, 'y')).toBeUndefined();
      // Not leased (the reply says nothing), or a push about it came before the reply: nothing installed.
      cache.applyOwnEntry(cache.beginOwn([[1, 'e']]), 1, 'e', { ...dir, ino: 30 });
      expect(cache.lookup(30, 'x')).toBeUndefined();
      const own = cache.beginOwn([[1, 'f']]);
      cache.applyPush({ pushId: 2, events: [{ ino: 31, name: 'x' }] });
      cache.applyOwnEntry(own, 1, 'f', { ...dir, ino: 31 }, true);
      expect(cache.lookup(31, 'x')).toBeUndefined();
    });

    it("a push about the directory that arrives before our reply: the reply's entry is not installed", () => {
      const { cache } = setup();
      cache.putListing(cache.ticket(), grant, 1, [{ name: 'a', stat: stat(5) }]);
      const own = cache.beginOwn([[1, 'b']]);
      cache.applyPush({ pushId: 1, events: [{ ino: 1, name: 'c' }] }); // another client's create of c
      cache.applyOwnEntry(own, 1, 'b', stat(6));
      expect(cache.lookup(1, 'b')).toBeUndefined();
      expect(cache.lookup(1, 'c')).toBeUndefined(); // never "absent": the listing went with the push
      expect(cache.readdirplus(1)).toBeUndefined();
      expect(cache.getattr(6)?.ino).toBe(6); // the new inode's attributes: no push covered them
    });

    it('a push that arrives after our reply drops what the reply put in', () => {
      const { cache } = setup();
      cache.putListing(cache.ticket(), grant, 1, [{ name: 'a', stat: stat(5) }]);
      cache.applyOwnEntry(cache.beginOwn([[1, 'b']]), 1, 'b', stat(6));
      expect(cache.lookup(1, 'c')).toBeNull();
      cache.applyPush({ pushId: 1, events: [{ ino: 1, name: 'c' }] });
      expect(cache.lookup(1, 'b')).toBeUndefined();
      expect(cache.lookup(1, 'c')).toBeUndefined();
    });

    it('two of our changes of one name in flight at once: their order is unknown, so the directory goes', () => {
      const { cache } = setup();
      cache.putListing(cache.ticket(), grant, 1, [{ name: 'a', stat: stat(5) }]);
      const inFlight = cache.ticket(); // a lookup of a, sent before both
      const unlink = cache.beginOwn([[1, 'a']]);
      const create = cache.beginOwn([[1, 'a']]);
      const other = cache.beginOwn([[1, 'b']]); // another name: no conflict
      cache.applyOwnEntry(create, 1, 'a', stat(9));
      cache.applyOwnRemoved(unlink, 1, 'a');
      expect(cache.lookup(1, 'a')).toBeUndefined();
      cache.applyOwnEntry(other, 1, 'b', stat(10));
      expect(cache.lookup(1, 'a')).toBeUndefined();
      // A read that was in flight when the directory went is not cached either; a later change is.
      cache.putLookup(inFlight, grant, 1, 'a', stat(9));
      expect(cache.lookup(1, 'a')).toBeUndefined();
      cache.applyOwnEntry(cache.beginOwn([[1, 'a']]), 1, 'a', stat(11));
      expect(cache.lookup(1, 'a')?.ino).toBe(11);
    });

    it('nothing is learned without a lease, from a change sent without one, or across an epoch switch', () => {
      const { cache, clock } = setup();
      cache.applyOwnEntry(cache.beginOwn([[1, 'b']]), 1, 'b', stat(6));
      expect(cache.size).toBe(0);
      cache.putAttr(cache.ticket(), grant, stat(3));
      cache.applyOwnEntry(cache.beginOwn([[1, 'b']], [], false), 1, 'b', stat(6));
      expect(cache.lookup(1, 'b')).toBeUndefined();
      const own = cache.beginOwn([[1, 'c']]);
      cache.putAttr(cache.ticket(), { epoch: 7, validForMs: TTL }, stat(4)); // a reconnect
      cache.applyOwnEntry(own, 1, 'c', stat(8));
      expect(cache.lookup(1, 'c')).toBeUndefined();
      expect(cache.getattr(8)).toBeUndefined();
      clock.ms += TTL;
      cache.applyOwnEntry(cache.beginOwn([[1, 'd']]), 1, 'd', stat(12));
      expect(cache.size).toBe(0);
    });

    it('a grant in an epoch other than the current one is taken only from a request sent after the last switch', () => {
      const { cache } = setup();
      const old = cache.ticket();
      cache.putAttr(cache.ticket(), { epoch: 50, validForMs: TTL }, stat(1));
      cache.putAttr(cache.ticket(), { epoch: 3, validForMs: TTL }, stat(2)); // lower but newer: a new session
      expect(cache.getattr(1)).toBeUndefined();
      expect(cache.getattr(2)?.ino).toBe(2);
      cache.putAttr(old, { epoch: 50, validForMs: TTL }, stat(5)); // sent before the switch
      expect(cache.getattr(5)).toBeUndefined();
      expect(cache.getattr(2)?.ino).toBe(2);
    });

    it('an evicted item cached again is not released; a read in flight when a release is taken is not cached', () => {
      const cache = new MetaCache({ maxEntries: 2, now: () => 0 });
      for (const ino of [1, 2, 3]) cache.putAttr(cache.ticket(), grant, stat(ino)); // 1 evicted
      const inFlight = cache.ticket();
      expect(cache.takeReleased()).toEqual([{ kind: 'attr', ino: 1 }]);
      cache.putAttr(inFlight, grant, stat(1));
      expect(cache.getattr(1)).toBeUndefined();
      cache.putAttr(cache.ticket(), grant, stat(4)); // 2 evicted
      cache.putAttr(cache.ticket(), grant, stat(2)); // and back: 3 evicted
      expect(cache.takeReleased()).toEqual([{ kind: 'attr', ino: 3 }]);
    });
  });
});
