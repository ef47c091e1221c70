// Human sizes in flags and output ("8MiB", "64k", "1.5G"); binary multiples throughout.
import { invalid } from './errors.js';

const MULTIPLIERS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1024, kib: 1024,
  m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4,
};

export function parseSize(text: string | number, label = 'size'): number {
  if (typeof text === 'number') return text;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const multiplier = match ? MULTIPLIERS[match[2].toLowerCase()] : undefined;
  if (!match || multiplier === undefined) throw invalid(`invalid ${label} '${text}': use a number with an optional unit, e.g. 8MiB`);
  return Math.round(Number(match[1]) * multiplier);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * Human durations in flags ("30d", "12h", "10m", "45s", "500ms", "1h30m", "1.5d") to milliseconds.
 * A unit is required (a bare "30" is ambiguous), except for "0".
 */
export function parseDuration(text: string | number, label = 'duration'): number {
  if (typeof text === 'number') return text;
  const trimmed = text.trim().toLowerCase();
  if (trimmed === '0') return 0;
  const fail = () => invalid(`invalid ${label} '${text}': use a number with a unit (ms, s, m, h, d, w), e.g. 30d, 12h, 10m, 45s, 500ms`);
  if (!/^(\d+(?:\.\d+)?(ms|s|m|h|d|w))+$/.test(trimmed)) throw fail();
  let total = 0;
  for (const [, value, unit] of trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) total += Number(value) * DURATION_UNITS[unit];
  if (!Number.isFinite(total) || total > Number.MAX_SAFE_INTEGER) throw fail();
  return Math.round(total);
}

/** Milliseconds as the largest whole units: 2592000000 -> "30d", 5400000 -> "1h30m", 0 -> "0". */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  const parts: string[] = [];
  let rest = Math.round(ms);
  for (const unit of ['d', 'h', 'm', 's', 'ms']) {
    const size = DURATION_UNITS[unit];
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('');
}
