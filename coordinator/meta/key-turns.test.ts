import { describe, expect, test } from 'vitest';
import { KeyTurns } from './key-turns.js';

describe('KeyTurns', () => {
  test('callers of one key go one at a time, in arrival order; other keys do not wait', async () => {
    const turns = new KeyTurns();
    const order: string[] = [];
    const first = await turns.take(['s/1']);
    const second = turns.take(['s/1']).then((release) => (order.push('second'), release));
    const other = turns.take(['s/2']).then((release) => (order.push('other'), release));
    (await other)();
    expect(order).toEqual(['other']);
    order.push('first done');
    first();
    first(); // a second release changes nothing
    (await second)();
    expect(order).toEqual(['other', 'first done', 'second']);
    expect(turns.busy).toBe(0);
  });

  test('two callers taking the same keys in opposite orders do not deadlock', async () => {
    const turns = new KeyTurns();
    const held = await turns.take(['s/7']);
    const ab = turns.take(['s/7', 's/9']);
    const ba = turns.take(['s/9', 's/7']);
    held();
    (await ab)();
    (await ba)();
    expect(turns.busy).toBe(0);
  });
});
