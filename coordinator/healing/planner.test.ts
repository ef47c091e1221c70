import { describe, expect, test } from 'vitest';
import { allocatedAtMs, newChunkId } from './chunk-id.js';
import { assess, chunkHealth, gcVerdict, nodesAfterRepair, planChunk, planRebalance, usageOf, type ClusterView, type GcFacts } from './planner.js';

const view = (live: string[], extra: Partial<ClusterView> = {}): ClusterView => ({
  live: new Set(live),
  leaving: new Set(),
  corrupt: new Map(),
  placeable: live.length - (extra.leaving?.size ?? 0),
  ...extra,
});
const record = (chunkId: string, nodes: string[]) => ({ chunkId, nodes });

describe('chunk ids carry their allocation time', () => {
  test('round trip, unique, and old ids have none', () => {
    const id = newChunkId(1_700_000_123_456);
    expect(allocatedAtMs(id)).toBe(1_700_000_123_456);
    expect(newChunkId(5)).not.toBe(newChunkId(5));
    expect(allocatedAtMs('0123456789abcdef0123456789abcdef')).toBeUndefined();
    expect(allocatedAtMs('c0')).toBeUndefined();
  });
});

describe('assessing and planning a chunk', () => {
  test('a dead copy is re-replicated from the survivors, and dropped once the target is met', () => {
    const a = assess(record('x', ['a', 'b', 'c']), 3, view(['a', 'b', 'd']));
    expect(a).toMatchObject({ good: ['a', 'b'], dead: ['c'], target: 3 });
    expect(chunkHealth(a, 3)).toMatchObject({ underReplicated: true, missing: false, healthy: false });
    const plan = planChunk(a)!;
    expect(plan).toMatchObject({ copies: 1, sources: ['a', 'b'], drop: [], dropDead: ['c'], trim: 0 });
    expect(plan.exclude.sort()).toEqual(['a', 'b', 'c']);
    expect(nodesAfterRepair(record('x', ['a', 'b', 'c']), plan, 2, ['d'], [])).toEqual(['a', 'b', 'd']);
    // The copy could not be placed: the dead copy stays in the record (it may come back).
    expect(nodesAfterRepair(record('x', ['a', 'b', 'c']), plan, 2, [], [])).toEqual(['a', 'b', 'c']);
  });

  test('most endangered first: one copy left before two, copy work before clean-up', () => {
    const v = view(['a', 'b', 'c', 'd', 'e']);
    const oneLeft = planChunk(assess(record('1', ['a', 'x', 'y']), 3, v))!;
    const twoLeft = planChunk(assess(record('2', ['a', 'b', 'y']), 3, v))!;
    const surplus = planChunk(assess(record('3', ['a', 'b', 'c', 'd']), 3, v))!;
    const onlyOnDraining = planChunk(assess(record('4', ['e']), 3, view(['a', 'b', 'c', 'd', 'e'], { leaving: new Set(['e']) })))!;
    const sorted = [surplus, twoLeft, oneLeft, onlyOnDraining].sort((p, q) => p.priority - q.priority);
    expect(sorted).toEqual([onlyOnDraining, oneLeft, twoLeft, surplus]);
    expect(surplus).toMatchObject({ copies: 0, trim: 1 });
    expect(onlyOnDraining).toMatchObject({ copies: 3, sources: ['e'], drop: ['e'] });
  });

  test('a chunk whose bytes are in an object tier is healthy with no local copy, and repair leaves it alone', () => {
    const tier = { tier: 'cold', key: 'chunks/x', storedBytes: 10, crc32c: 1 };
    const a = assess({ chunkId: 'x', nodes: [], tier }, 3, view(['a', 'b', 'c']));
    expect(chunkHealth(a, 3)).toMatchObject({ healthy: true, missing: false, underReplicated: false });
    expect(planChunk(a)).toBeUndefined();
    // The same record without its tier copy is missing: the tier copy is what makes it whole.
    expect(chunkHealth(assess({ chunkId: 'x', nodes: [] }, 3, view(['a', 'b', 'c'])), 3)).toMatchObject({ missing: true });
  });

  test('GC: an object a record names as its tier copy is kept; a recalled chunk\'s object goes after the grace', () => {
    const facts = (referencedOn: string[] | undefined): GcFacts => ({ nowMs: 10_000_000, graceMs: 1000, scanStartedMs: 9_999_000, referencedOn, firstSeenUnreferencedMs: 0, inFlight: false });
    const object = { chunkId: 'x', nodeId: 'tier:cold', storedAtMs: 1000 };
    expect(gcVerdict(object, facts(['tier:cold']))).toBe('keep');
    expect(gcVerdict(object, facts(['a', 'b']))).toBe('delete-stale-copy');
    expect(gcVerdict({ ...object, storedAtMs: 9_999_500 }, facts(['a', 'b']))).toBe('keep');
  });

  test('missing: no live uncorrupted copy, nothing to copy from', () => {
    const a = assess(record('x', ['a', 'b']), 2, view(['b', 'c'], { corrupt: new Map([['b', new Set(['x'])]]) }));
    expect(chunkHealth(a, 2)).toMatchObject({ missing: true, corrupt: true, underReplicated: false });
    expect(planChunk(a)).toBeUndefined();
  });

  test('a corrupt copy is replaced from a good one, then dropped', () => {
    const a = assess(record('x', ['a', 'b', 'c']), 3, view(['a', 'b', 'c', 'd'], { corrupt: new Map([['c', new Set(['x', 'y'])]]) }));
    expect(a).toMatchObject({ good: ['a', 'b'], corruptOn: ['c'] });
    const plan = planChunk(a)!;
    expect(plan).toMatchObject({ copies: 1, dropCorrupt: ['c'] });
    expect(nodesAfterRepair(record('x', ['a', 'b', 'c']), plan, 2, ['d'], [])).toEqual(['a', 'b', 'd']);
  });

  test('a corrupt copy with nowhere else to go is dropped first, freeing its node for a fresh copy', () => {
    const corrupt = new Map([['c', new Set(['x'])]]);
    const plan = planChunk(assess(record('x', ['a', 'b', 'c']), 3, view(['a', 'b', 'c'], { corrupt })))!;
    expect(plan.exclude).toContain('c');
    // No target could be placed: the corrupt copy still goes (then DeleteChunk clears it)...
    expect(nodesAfterRepair(record('x', ['a', 'b', 'c']), plan, 2, [], [])).toEqual(['a', 'b']);
    // ...and the next scan copies onto that node.
    expect(planChunk(assess(record('x', ['a', 'b']), 3, view(['a', 'b', 'c'])))).toMatchObject({ copies: 1, exclude: ['a', 'b'] });
  });

  test('the target is capped by the nodes that could hold a copy', () => {
    const a = assess(record('x', ['a', 'b']), 3, view(['a', 'b']));
    expect(a.target).toBe(2);
    expect(chunkHealth(a, 3).underReplicated).toBe(true); // reported against the factor itself
    expect(planChunk(a)).toBeUndefined(); // but nothing to do
  });

  test('too few nodes for the replication: a dead copy stays in the record, it may come back', () => {
    // 3 nodes, RF 3, one dead: nowhere to copy to, and the dead node's copy is still worth having.
    expect(planChunk(assess(record('x', ['a', 'b', 'c']), 3, view(['a', 'b'])))).toBeUndefined();
    // Enough nodes: once the full replication is back, the dead copy goes.
    expect(planChunk(assess(record('x', ['a', 'b', 'c', 'd']), 3, view(['a', 'b', 'd', 'e'])))).toMatchObject({ copies: 0, dropDead: ['c'] });
  });

  test('a draining node keeps serving as a source until its copy has moved', () => {
    const v = view(['a', 'b', 'c', 'd'], { leaving: new Set(['c']) });
    const a = assess(record('x', ['a', 'b', 'c']), 3, v);
    expect(a).toMatchObject({ good: ['a', 'b'], leaving: ['c'], sources: ['a', 'b', 'c'], target: 3 });
    const plan = planChunk(a)!;
    expect(plan).toMatchObject({ copies: 1, drop: ['c'] });
    expect(nodesAfterRepair(record('x', ['a', 'b', 'c']), plan, 2, ['d'], [])).toEqual(['a', 'b', 'd']);
  });

  test('healthy chunks need nothing', () => {
    const a = assess(record('x', ['a', 'b', 'c']), 3, view(['a', 'b', 'c', 'd']));
    expect(chunkHealth(a, 3)).toMatchObject({ healthy: true, underReplicated: false, overReplicated: false });
    expect(planChunk(a)).toBeUndefined();
  });
});

describe('garbage collection decisions', () => {
  const graceMs = 60_000;
  const now = 10_000_000;
  const facts = (over: Partial<GcFacts>): GcFacts => ({
    nowMs: now,
    graceMs,
    scanStartedMs: now - 1000,
    referencedOn: undefined,
    firstSeenUnreferencedMs: now - 2 * graceMs,
    inFlight: false,
    ...over,
  });
  const old = newChunkId(now - 3 * graceMs);

  test('an old chunk no record references, seen so for the grace, is deleted', () => {
    expect(gcVerdict({ chunkId: old, nodeId: 'a', storedAtMs: now - 3 * graceMs }, facts({}))).toBe('delete-unreferenced');
  });

  test('race: a chunk allocated within the grace may still be committed, so it stays', () => {
    // A client allocated it, wrote it, and has not committed yet: no record, young id.
    const young = newChunkId(now - graceMs / 2);
    expect(gcVerdict({ chunkId: young, nodeId: 'a', storedAtMs: now - graceMs / 2 }, facts({}))).toBe('keep');
    // Allocated just over the grace before now, but not before the metadata read began.
    const edge = newChunkId(now - graceMs - 500);
    expect(gcVerdict({ chunkId: edge, nodeId: 'a', storedAtMs: 0 }, facts({ scanStartedMs: now - 1000 }))).toBe('keep');
  });

  test('race: first seen unreferenced this pass (e.g. a new leader) waits a grace', () => {
    expect(gcVerdict({ chunkId: old, nodeId: 'a', storedAtMs: 0 }, facts({ firstSeenUnreferencedMs: now }))).toBe('keep');
  });

  test('a referenced chunk is never deleted where its record lists it, however old', () => {
    expect(gcVerdict({ chunkId: old, nodeId: 'a', storedAtMs: 0 }, facts({ referencedOn: ['a', 'b'] }))).toBe('keep');
  });

  test('a stale copy (node not in the record) goes after the grace, unless a repair is putting it there', () => {
    const copy = { chunkId: old, nodeId: 'c', storedAtMs: now - 2 * graceMs };
    expect(gcVerdict(copy, facts({ referencedOn: ['a', 'b'] }))).toBe('delete-stale-copy');
    expect(gcVerdict(copy, facts({ referencedOn: ['a', 'b'], inFlight: true }))).toBe('keep');
    // Just copied here by a repair whose record update is on its way: young copy, kept.
    expect(gcVerdict({ ...copy, storedAtMs: now - 10 }, facts({ referencedOn: ['a', 'b'] }))).toBe('keep');
  });

  test('ids without a time count as old (allocated before this scheme)', () => {
    expect(gcVerdict({ chunkId: 'legacy', nodeId: 'a', storedAtMs: 0 }, facts({}))).toBe('delete-unreferenced');
  });
});

describe('rebalance planning', () => {
  const MiB = 1024 * 1024;
  const chunks = Array.from({ length: 30 }, (_, i) => ({ key: `c/1/${i}`, chunkId: `k${i}`, length: MiB, nodes: ['a', 'b', 'c'] }));
  const nodes = ['a', 'b', 'c', 'd'].map((nodeId) => ({ nodeId, capacityBytes: 100 * MiB }));

  test('moves from full to empty nodes until within the threshold, never two copies on one node', () => {
    const moves = planRebalance(nodes, chunks, 2, 1000);
    expect(moves.length).toBeGreaterThan(0);
    expect(moves.every((m) => m.to === 'd')).toBe(true);
    const after = chunks.map((c) => {
      const nodesAfter = [...c.nodes];
      for (const m of moves.filter((m) => m.key === c.key)) nodesAfter[nodesAfter.indexOf(m.from)] = m.to;
      return { ...c, nodes: nodesAfter };
    });
    for (const c of after) expect(new Set(c.nodes).size).toBe(3);
    const used = usageOf(nodes, after);
    const mean = 90 / 4;
    for (const u of used.values()) expect(Math.abs(u / MiB - mean)).toBeLessThanOrEqual(2 + 1);
  });

  test('balanced already: no moves; one node: no moves', () => {
    expect(planRebalance(nodes.slice(0, 3), chunks, 10, 1000)).toEqual([]);
    expect(planRebalance(nodes.slice(0, 1), chunks, 10, 1000)).toEqual([]);
  });

  test('bounded by maxMoves', () => {
    expect(planRebalance(nodes, chunks, 0, 3)).toHaveLength(3);
  });
});
