import { describe, expect, test } from 'vitest';
import { StrataError } from './errors.js';
import { formatDuration, parseDuration, parseSize } from './units.js';

describe('units', () => {
  test('durations: each unit, combinations, fractions, 0', () => {
    expect(parseDuration('30d')).toBe(30 * 86_400_000);
    expect(parseDuration('12h')).toBe(12 * 3_600_000);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('45s')).toBe(45_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2w')).toBe(14 * 86_400_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1.5d')).toBe(36 * 3_600_000);
    expect(parseDuration(' 10M ')).toBe(600_000);
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration('0s')).toBe(0);
  });

  test('bad durations are Invalid naming the flag', () => {
    for (const bad of ['30', '', 'd', '-5m', '10 minutes', '1y', 'soon', '5m3']) {
      let caught: unknown;
      try {
        parseDuration(bad, '--cold-after');
      } catch (err) {
        caught = err;
      }
      expect(caught, bad).toBeInstanceOf(StrataError);
      expect((caught as StrataError).kind).toBe('Invalid');
      expect((caught as StrataError).message).toMatch(/^invalid --cold-after '/);
    }
  });

  test('formatDuration round-trips through parseDuration', () => {
    for (const ms of [0, 500, 45_000, 600_000, 5_400_000, 30 * 86_400_000, 86_400_000 + 1]) expect(parseDuration(formatDuration(ms))).toBe(ms);
    expect(formatDuration(30 * 86_400_000)).toBe('30d');
    expect(formatDuration(5_400_000)).toBe('1h30m');
  });

  test('sizes', () => {
    expect(parseSize('1GiB')).toBe(1024 ** 3);
    expect(parseSize('0')).toBe(0);
  });
});
