// Listing-driven prefetch: lookups in listing order fetch attributes a window at a time; any
// other order stats name by name (no window fetched for a single stray lookup).
import { describe, expect, test } from 'vitest';
import type { FileStat } from '../client/index.js';
import { AttrCache } from './cache.js';
import { DirListings } from './listings.js';

function setup(count: number) {
  const names = Array.from({ length: count }, (_, i) => `n${String(i).padStart(5, '0')}`);
  const fetches: { after: string; count: number }[] = [];
  let now = 0;
  const cache = new AttrCache(1000, () => now);
  const listings = new DirListings(
    cache,
    async (_dir, after, max) => {
      fetches.push({ after, count: max });
      return names.filter((n) => n > after).slice(0, max).map((name, i) => ({ name, stat: { ino: i } as FileStat }));
    },
    1000,
    () => now,
  );
  listings.listed('/d', names);
  /** What statPath does on a miss: wait for any covering window, then look again. */
  const lookup = async (name: string) => cache.get(`/d/${name}`) ?? (await listings.prefetch(`/d/${name}`), cache.get(`/d/${name}`));
  return { names, fetches, cache, lookup, advance: (ms: number) => (now += ms) };
}

describe('DirListings', () => {
  test('names looked up in listing order cost one fetch per 1000 after the first', async () => {
    const { names, fetches, lookup } = setup(2500);
    const misses = [];
    for (const name of names) if (!(await lookup(name))) misses.push(name);
    expect(misses).toEqual(['n00000']); // it alone stats
    expect(fetches).toEqual([
      { after: 'n00000', count: 1000 },
      { after: 'n01000', count: 1000 },
      { after: 'n02000', count: 499 },
    ]);
  });

  test('a walk slower than the attribute timeout keeps fetching windows', async () => {
    const { names, fetches, lookup, advance } = setup(3000);
    for (const name of names) {
      await lookup(name);
      advance(2); // 6 s in all: every window expires before the walk ends
    }
    expect(fetches.length).toBe(3);
  });

  test('lookups out of listing order fetch no windows', async () => {
    const { fetches, lookup } = setup(100);
    for (const name of ['n00050', 'n00007', 'n00099', 'n00003']) expect(await lookup(name)).toBeUndefined();
    expect(fetches).toEqual([]);
  });

  test('a listing unused for 10 s guides nothing; names not listed are not prefetched', async () => {
    const { fetches, lookup, advance } = setup(10);
    expect(await lookup('unlisted')).toBeUndefined();
    advance(10_000);
    for (const name of ['n00000', 'n00001', 'n00002']) expect(await lookup(name)).toBeUndefined();
    expect(fetches).toEqual([]);
  });
});
