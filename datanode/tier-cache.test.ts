// The cache's start: files a previous run left are indexed again (oldest first, within the
// budget), anything else in its directory is removed.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { TIER_CACHE_DIR, TierCache } from './tier-cache.js';
import { TierRegistry } from './tier-registry.js';
import { tempDir, type TempDir } from '../test/harness/ports.js';

describe('TierCache start', () => {
  const log = pino({ level: 'silent' });
  const dirs: TempDir[] = [];
  afterEach(async () => Promise.all(dirs.splice(0).map((dir) => dir.cleanup())));

  it('indexes the files left before, evicts the oldest past the budget, removes the rest', async () => {
    const dataDir = await tempDir('tier-cache');
    dirs.push(dataDir);
    const cacheDir = path.join(dataDir.path, TIER_CACHE_DIR);
    await mkdir(path.join(cacheDir, 'tmp'), { recursive: true });
    const now = Date.now() / 1000;
    for (const [n, name] of ['old', 'mid', 'new'].entries()) {
      await writeFile(path.join(cacheDir, name), Buffer.alloc(1000));
      await utimes(path.join(cacheDir, name), now - 100 + n, now - 100 + n);
    }
    await writeFile(path.join(cacheDir, 'tmp', 'old.1234'), 'torn');
    await writeFile(path.join(cacheDir, 'not a chunk'), 'x');
    await writeFile(path.join(cacheDir, 'empty'), '');
    const tiers = new TierRegistry(log);
    const cache = await TierCache.open({ dataDir: dataDir.path, budgetBytes: 2500, tiers, log });
    expect(cache.status()).toEqual({ bytes: 2000, budgetBytes: 2500, chunks: 2, hits: 0, misses: 0, fetchErrors: 0 });
    expect((await readdir(cacheDir)).sort()).toEqual(['mid', 'new', 'tmp']);
    expect(await readdir(path.join(cacheDir, 'tmp'))).toEqual([]);
    cache.close();
    tiers.close();
  });
});
