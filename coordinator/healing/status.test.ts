import { describe, expect, test } from 'vitest';
import { HealStatus } from './status.js';

describe('HealStatus events', () => {
  test('a flood of one kind evicts its own oldest, not the rare event that explains it', () => {
    const status = new HealStatus();
    status.event('leader', 'c1 leads');
    status.event('node-dead', 'dn1 missed heartbeats');
    for (let i = 0; i < 300; i++) status.event('repaired', `chunk ${i}`);
    status.event('node-back', 'dn1 is live');
    const { events } = status.snapshot('c1');
    expect(events).toHaveLength(50);
    expect(events.map((e) => e.kind).slice(0, 2)).toEqual(['leader', 'node-dead']);
    // The newest repairs are the ones kept, in order, and the latest event is last.
    expect(events.slice(2, -1).map((e) => e.message)).toEqual(Array.from({ length: 47 }, (_, i) => `chunk ${253 + i}`));
    expect(events.at(-1)!.kind).toBe('node-back');
  });

  test('with one kind only, the latest events are kept', () => {
    const status = new HealStatus();
    for (let i = 0; i < 60; i++) status.event('gc', `pass ${i}`);
    expect(status.snapshot('c1').events.map((e) => e.message)).toEqual(Array.from({ length: 50 }, (_, i) => `pass ${10 + i}`));
  });
});
