// SessionInodes over a fake coordinator (the coordinator is not what these tests are about; the
// real-process tests are test/leases.test.ts): a big directory is listed in pages into the cache
// and then answers every lookup, absent names too; a push about it while the pages are read
// leaves it uncached; concurrent lookups share one listing.
import { describe, expect, it } from 'vitest';
import { SessionInodes } from './inodes.js';
import type { CoordinatorClient } from './coordinator-client.js';

const DIR = 5;
const attr = (ino: number) => ({ ino, type: 'file', mode: 0o644, nlink: 1, size: 0 });

type Listener = (kind: string, push: unknown, answer: (op: string, body: unknown) => Promise<unknown>) => void;

function fakeCoordinator(names: string[]) {
  const listeners = new Set<Listener>();
  const calls: string[] = [];
  let beforePage: ((after: string) => void) | undefined;
  const inoOf = (name: string) => 100 + names.indexOf(name);
  const lease = { epoch: 1, validForMs: 10_000 };
  const fake = {
    session: async (op: string, req: any) => {
      calls.push(op);
      await Promise.resolve();
      if (op === 'leasedLookup') {
        return names.includes(req.name) ? { attr: attr(inoOf(req.name)), absent: false, lease } : { absent: true, lease };
      }
      if (op === 'leasedReadDirPlus') {
        beforePage?.(req.after);
        const sorted = [...names].sort();
        const start = req.after ? sorted.indexOf(req.after) + 1 : 0;
        const page = sorted.slice(start, start + req.limit);
        return { entries: page.map((name) => ({ name, attr: attr(inoOf(name)) })), more: start + req.limit < sorted.length, lease };
      }
      if (op === 'leaseRenew' || op === 'leaseAck') return lease;
      throw new Error(`unexpected ${op}`);
    },
    onPushFrom: (listener: Listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    requestOnOpenSessions: async () => undefined,
  };
  const push = (events: { ino: number; name?: string }[]) => {
    for (const listener of listeners) listener('leasePush', { pushId: 1, events }, async () => ({}));
  };
  return { coordinator: fake as unknown as CoordinatorClient, calls, push, onPage: (fn: (after: string) => void) => (beforePage = fn) };
}

const bigDir = (n: number) => Array.from({ length: n }, (_, i) => `f${String(i).padStart(5, '0')}`);

describe('SessionInodes: lookups in a big leased directory', () => {
  it('lists it in pages once, then answers every name and absent ones with no request', async () => {
    const names = bigDir(250);
    const { coordinator, calls } = fakeCoordinator(names);
    const inodes = new SessionInodes(coordinator, { listingPage: 100 });
    await inodes.lookup(DIR, names[0]!);
    await inodes.lookup(DIR, names[1]!);
    await inodes.lookup(DIR, names[2]!); // the third name lists the directory: 3 pages
    expect(calls.filter((c) => c === 'leasedReadDirPlus')).toHaveLength(3);
    const before = calls.length;
    for (const name of names) expect((await inodes.lookup(DIR, name)).ino).toBe(100 + names.indexOf(name));
    await expect(inodes.lookup(DIR, 'absent')).rejects.toMatchObject({ kind: 'NotFound' });
    expect(calls.length).toBe(before);
    expect((await inodes.readdirplus(DIR, { limit: 1000 })).entries).toHaveLength(250);
    expect(calls.length).toBe(before);
  });

  it('a push about the directory while its pages are read: nothing of the listing is trusted', async () => {
    const names = bigDir(250);
    const { coordinator, calls, push, onPage } = fakeCoordinator(names);
    const inodes = new SessionInodes(coordinator, { listingPage: 100 });
    await inodes.lookup(DIR, names[0]!);
    await inodes.lookup(DIR, names[1]!);
    onPage((after) => {
      if (after === names[99]) {
        names.push('late'); // another client's create, pushed between the first and second page
        push([{ ino: DIR, name: 'late' }]);
      }
    });
    await inodes.lookup(DIR, names[2]!);
    onPage(() => undefined);
    const before = calls.length;
    expect((await inodes.lookup(DIR, 'late')).ino).toBe(100 + names.indexOf('late')); // asked, not "absent"
    expect(calls.length).toBeGreaterThan(before);
  });

  it('past the bound (half the cache) it asks per name; concurrent lookups share one listing', async () => {
    const names = bigDir(300);
    const { coordinator, calls } = fakeCoordinator(names);
    const small = new SessionInodes(coordinator, { listingPage: 100, cacheEntries: 400 }); // bound 200
    await small.lookup(DIR, names[0]!);
    await small.lookup(DIR, names[1]!);
    await small.lookup(DIR, names[2]!);
    const listed = calls.filter((c) => c === 'leasedReadDirPlus').length;
    expect(listed).toBe(2); // stopped at the bound
    const before = calls.length;
    await small.lookup(DIR, names[250]!);
    expect(calls.slice(before)).toEqual(['leasedLookup']); // never listed again

    const shared = fakeCoordinator(bigDir(150));
    const inodes = new SessionInodes(shared.coordinator, { listingPage: 100 });
    await inodes.lookup(DIR, 'f00000');
    await inodes.lookup(DIR, 'f00001');
    await Promise.all(['f00002', 'f00003', 'f00004', 'nope'].map((n) => inodes.lookup(DIR, n).catch(() => undefined)));
    expect(shared.calls.filter((c) => c === 'leasedReadDirPlus')).toHaveLength(2);
  });
});
