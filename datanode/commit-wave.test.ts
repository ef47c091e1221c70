import { describe, expect, it, vi } from 'vitest';
import { mkdtemp, open, rm, rmdir, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CommitWave, DirSync } from './commit-wave.js';

/** A flush that records its waves and blocks until the test releases it. */
function gatedFlush() {
  const waves: number[][] = [];
  const gates: Array<(err?: Error) => void> = [];
  let running = 0;
  let overlapped = false;
  const flush = (items: number[]) => {
    waves.push(items);
    overlapped ||= running > 0;
    running++;
    return new Promise<void>((resolve, reject) => {
      gates.push((err) => {
        running--;
        if (err) reject(err);
        else resolve();
      });
    });
  };
  /** Resolves once `count` flushes have started. */
  const started = async (count: number) => {
    while (waves.length < count) await new Promise((resolve) => setImmediate(resolve));
  };
  return { waves, gates, flush, started, overlapped: () => overlapped };
}

describe('CommitWave', () => {
  it('puts what arrives during a flush into the next wave, and never overlaps flushes', async () => {
    const { waves, gates, flush, started, overlapped } = gatedFlush();
    const wave = new CommitWave(flush);
    const first = [1, 2, 3].map((n) => wave.submit(n)); // same turn: one wave
    await started(1);
    const second = [4, 5].map((n) => wave.submit(n)); // the running flush cannot cover these
    await new Promise((resolve) => setImmediate(resolve));
    expect(waves).toEqual([[1, 2, 3]]);
    gates[0]();
    await Promise.all(first);
    await started(2);
    expect(waves).toEqual([[1, 2, 3], [4, 5]]);
    let secondDone = false;
    void Promise.all(second).then(() => (secondDone = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(secondDone).toBe(false); // not durable until its own flush ends
    gates[1]();
    await Promise.all(second);
    await wave.idle();
    expect(overlapped()).toBe(false);
  });

  it('fails exactly the members of a failed wave; the next wave still runs', async () => {
    const { gates, flush, started } = gatedFlush();
    const wave = new CommitWave(flush);
    const doomed = [1, 2].map((n) => wave.submit(n));
    await started(1);
    const next = wave.submit(3);
    gates[0](new Error('EIO'));
    for (const member of doomed) await expect(member).rejects.toThrow('EIO');
    await started(2);
    gates[1]();
    await expect(next).resolves.toBeUndefined();
  });

  it('caps a wave at maxItems', async () => {
    const waves: number[][] = [];
    const wave = new CommitWave(async (items: number[]) => void waves.push(items), 2);
    await Promise.all([1, 2, 3, 4, 5].map((n) => wave.submit(n)));
    expect(waves).toEqual([[1, 2], [3, 4], [5]]);
  });
});

describe('DirSync', () => {
  it('syncs directories concurrently and repeatedly, and opens afresh after a failure', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'strata-dirsync-'));
    const dirSync = new DirSync();
    try {
      const [a, b] = [path.join(root, 'a'), path.join(root, 'b')];
      await Promise.all([mkdir(a), mkdir(b)]);
      const probe = await open(a, 'r');
      const fsyncs = vi.spyOn(Object.getPrototypeOf(probe), 'sync');
      await probe.close();
      try {
        // Callers in one turn share a wave: one fsync per directory, not one per caller.
        await Promise.all([dirSync.sync(a), dirSync.sync(a), dirSync.sync(b), dirSync.sync(a)]);
        expect(fsyncs).toHaveBeenCalledTimes(2);
      } finally {
        fsyncs.mockRestore();
      }
      await expect(dirSync.sync(path.join(root, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
      await mkdir(path.join(root, 'missing'));
      await dirSync.sync(path.join(root, 'missing')); // the failed open is not cached
      await rmdir(b);
      await dirSync.sync(a);
    } finally {
      await dirSync.close();
      await rm(root, { recursive: true, force: true });
    }
  });
});
