import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { StrataError } from './errors.js';
import { coordinatorSchema, dataNodeSchema, loadConfig } from './config.js';

const invalidMessage = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(StrataError);
    expect((err as StrataError).kind).toBe('Invalid');
    return (err as StrataError).message;
  }
  throw new Error('expected an Invalid error');
};

describe('role config', () => {
  test('defaults are safe: loopback, RF 3, 8 MiB chunks, ack all', () => {
    const config = loadConfig(coordinatorSchema, {}, { env: {} });
    expect(config).toMatchObject({ listen: '127.0.0.1:7400', replication: 3, chunkSize: 8 * 1024 * 1024, ackPolicy: 'all' });
    expect(config).toMatchObject({ gcGraceMs: 3_600_000, repairConcurrency: 12, repairBandwidth: 0, scanIntervalMs: 10_000, leaderTtlMs: 5000 });
    expect(Object.isFrozen(config)).toBe(true);
  });

  test('file < STRATA_* env < flags', () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'strata-config-')), 'c.json');
    writeFileSync(file, JSON.stringify({ replication: 2, chunkSize: '1MiB', listen: '127.0.0.1:1' }));
    const config = loadConfig(coordinatorSchema, { listen: '127.0.0.1:3' }, { file, env: { STRATA_CHUNK_SIZE: '2MiB', STRATA_LISTEN: '127.0.0.1:2' } });
    expect(config).toMatchObject({ replication: 2, chunkSize: 2 * 1024 * 1024, listen: '127.0.0.1:3' });
  });

  test('bad values are one line naming the key', () => {
    expect(invalidMessage(() => loadConfig(coordinatorSchema, { chunkSize: '1k' }, { env: {} }))).toMatch(/^invalid config: chunkSize: /);
    expect(invalidMessage(() => loadConfig(coordinatorSchema, { chunkSize: 'lots' }, { env: {} }))).toMatch(/chunkSize: invalid size 'lots'/);
    expect(invalidMessage(() => loadConfig(coordinatorSchema, { ackPolicy: 'most' }, { env: {} }))).toMatch(/^invalid config: ackPolicy/);
    expect(invalidMessage(() => loadConfig(coordinatorSchema, {}, { env: { STRATA_REPLICATION: '0' } }))).toMatch(/replication/);
    expect(invalidMessage(() => loadConfig(dataNodeSchema, { coordinators: '127.0.0.1:1' }, { env: {} }))).toBe(
      'invalid config: dataDir is required: set --data-dir or STRATA_DATA_DIR',
    );
    expect(invalidMessage(() => loadConfig(dataNodeSchema, { dataDir: '/x', coordinators: 'a:1,nope' }, { env: {} }))).toMatch(/coordinators/);
    expect(invalidMessage(() => loadConfig(coordinatorSchema, {}, { file: '/definitely/missing.json', env: {} }))).toMatch(/cannot read config file/);
    expect(invalidMessage(() => loadConfig(coordinatorSchema, {}, { env: { STRATA_GC_GRACE_MS: '10' } }))).toMatch(/^invalid config: gcGraceMs/);
    expect(invalidMessage(() => loadConfig(coordinatorSchema, { repairConcurrency: '0' }, { env: {} }))).toMatch(/^invalid config: repairConcurrency/);
    expect(loadConfig(coordinatorSchema, { repairBandwidth: '20MiB' }, { env: {} }).repairBandwidth).toBe(20 * 1024 * 1024);
  });

  test('data node scrub: on by default at 32 MiB/s hourly, set by flag or STRATA_* env, 0 disables', () => {
    const base = { dataDir: '/x', coordinators: '127.0.0.1:1' };
    expect(loadConfig(dataNodeSchema, base, { env: {} })).toMatchObject({ scrubBytesPerSec: 32 * 1024 * 1024, scrubIntervalMs: 3_600_000 });
    const env = { STRATA_SCRUB_BYTES_PER_SEC: '8MiB', STRATA_SCRUB_INTERVAL_MS: '0' };
    expect(loadConfig(dataNodeSchema, base, { env })).toMatchObject({ scrubBytesPerSec: 8 * 1024 * 1024, scrubIntervalMs: 0 });
    expect(invalidMessage(() => loadConfig(dataNodeSchema, { ...base, scrubIntervalMs: '-1' }, { env: {} }))).toMatch(/^invalid config: scrubIntervalMs/);
  });

  test('data node tier cache: 1 GiB by default, a size, 0 = no cache', () => {
    const base = { dataDir: '/x', coordinators: '127.0.0.1:1' };
    expect(loadConfig(dataNodeSchema, base, { env: {} }).tierCacheBytes).toBe(1024 * 1024 * 1024);
    expect(loadConfig(dataNodeSchema, base, { env: { STRATA_TIER_CACHE_BYTES: '256MiB' } }).tierCacheBytes).toBe(256 * 1024 * 1024);
    expect(loadConfig(dataNodeSchema, { ...base, tierCacheBytes: '0' }, { env: {} }).tierCacheBytes).toBe(0);
    expect(invalidMessage(() => loadConfig(dataNodeSchema, { ...base, tierCacheBytes: 'lots' }, { env: {} }))).toMatch(/^invalid config: tierCacheBytes/);
  });

  test('unknown keys in a config file are refused, not ignored', () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'strata-config-')), 'c.json');
    writeFileSync(file, JSON.stringify({ replicaton: 2 }));
    expect(invalidMessage(() => loadConfig(coordinatorSchema, {}, { file, env: {} }))).toMatch(/replicaton/);
  });

  test('object tiers: none by default; --tier specs, STRATA_TIERS, or a JSON array in the file', () => {
    expect(loadConfig(coordinatorSchema, {}, { env: {} }).tiers).toEqual([]);
    const spec = 'cold=s3://bucket-a/strata?endpoint=http://127.0.0.1:9000&path_style=true';
    const fromFlags = loadConfig(coordinatorSchema, { tiers: [spec, 'archive=s3://bucket-b'] }, { env: {} }).tiers;
    expect(fromFlags).toMatchObject([
      { name: 'cold', bucket: 'bucket-a', prefix: 'strata/', endpoint: 'http://127.0.0.1:9000', forcePathStyle: true },
      { name: 'archive', bucket: 'bucket-b', prefix: '', endpoint: '' },
    ]);
    expect(loadConfig(coordinatorSchema, {}, { env: { STRATA_TIERS: `${spec},archive=s3://bucket-b` } }).tiers.map((t) => t.name)).toEqual(['cold', 'archive']);
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'strata-config-')), 'c.json');
    writeFileSync(file, JSON.stringify({ tiers: [{ name: 'cold', bucket: 'bucket-a', forcePathStyle: true }, 'warm=s3://bucket-c/p/'] }));
    expect(loadConfig(coordinatorSchema, {}, { file, env: {} }).tiers).toMatchObject([
      { name: 'cold', bucket: 'bucket-a', forcePathStyle: true, prefix: '' },
      { name: 'warm', bucket: 'bucket-c', prefix: 'p/' },
    ]);
    expect(invalidMessage(() => loadConfig(coordinatorSchema, { tiers: ['cold=http://x'] }, { env: {} }))).toMatch(/^invalid config: tiers: .*s3:\/\//);
    expect(invalidMessage(() => loadConfig(coordinatorSchema, { tiers: ['a=s3://bucket-a', 'a=s3://bucket-b'] }, { env: {} }))).toMatch(/unique/);
    expect(invalidMessage(() => loadConfig(coordinatorSchema, { tiers: ['Bad Name=s3://bucket-a'] }, { env: {} }))).toMatch(/^invalid config: tiers\.0\.name/);
  });
});
