// The background scrubber: re-reads every chunk the node serves, checking every block, so a copy
// that rotted on disk is found (and quarantined by the store, then reported in heartbeats) before
// a client or a repair needs it. One chunk at a time at a bounded byte rate: it must never starve
// client I/O, and an idle node pays one short index scan per pass.
import { setTimeout as sleep } from 'node:timers/promises';
import { StrataError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { ScrubStatus } from '../common/node-info.js';
import type { ChunkStore } from './chunk-store.js';

export type { ScrubStatus } from '../common/node-info.js';

export interface ScrubOptions {
  /** Raw bytes verified per second at most; 0 disables the scrubber. */
  bytesPerSec: number;
  /** Pause between full passes (and before the first, at most FIRST_PASS_DELAY_MAX_MS); 0 disables. */
  intervalMs: number;
  log: Logger;
}

/** Ids read from the index at a time: a pass never holds an index iterator open while it verifies. */
const PAGE_CHUNKS = 1000;
/** A restart should not make every node re-read its disk at once, nor wait a whole interval. */
const FIRST_PASS_DELAY_MAX_MS = 5 * 60_000;
/** Sleeps shorter than this are deferred and summed: per-block timers would cost more than they save. */
const MIN_SLEEP_MS = 20;

export class Scrubber {
  private readonly counters: ScrubStatus = { passes: 0, chunksChecked: 0, bytesChecked: 0, corruptFound: 0, lastPassMs: 0 };
  private readonly abort = new AbortController();
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: ChunkStore,
    private readonly options: ScrubOptions,
  ) {
    for (const key of ['bytesPerSec', 'intervalMs'] as const) {
      const value = options[key];
      if (!Number.isFinite(value) || value < 0) throw new StrataError('Invalid', `invalid config: scrub ${key}: ${value}`);
    }
  }

  get enabled(): boolean {
    return this.options.bytesPerSec > 0 && this.options.intervalMs > 0;
  }

  start(): void {
    if (!this.enabled) return;
    this.loop = this.run().catch((err) => {
      if (!this.abort.signal.aborted) this.options.log.error({ err: (err as Error).message }, 'scrubber stopped');
    });
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  status(): ScrubStatus {
    return { ...this.counters };
  }

  private async run(): Promise<void> {
    const { signal } = this.abort;
    await sleep(Math.min(this.options.intervalMs, FIRST_PASS_DELAY_MAX_MS), undefined, { signal });
    for (;;) {
      await this.pass();
      this.counters.passes += 1;
      this.counters.lastPassMs = Date.now();
      await sleep(this.options.intervalMs, undefined, { signal });
    }
  }

  /** One walk over every chunk, in id order, paced to bytesPerSec. */
  private async pass(): Promise<void> {
    const { signal } = this.abort;
    const pacer = new Pacer(this.options.bytesPerSec, signal);
    let after: string | undefined;
    for (;;) {
      const page = await this.store.listChunks(after, PAGE_CHUNKS);
      for (const { chunkId } of page) {
        signal.throwIfAborted();
        await this.check(chunkId, pacer);
      }
      if (page.length < PAGE_CHUNKS) return;
      after = page[page.length - 1].chunkId;
    }
  }

  private async check(chunkId: string, pacer: Pacer): Promise<void> {
    let rawBytes = 0;
    try {
      await this.store.verify(chunkId, {
        pace: (bytes) => {
          rawBytes += bytes;
          this.counters.bytesChecked += bytes;
          return pacer.spend(bytes);
        },
      });
      this.counters.chunksChecked += 1;
    } catch (err) {
      if (this.abort.signal.aborted) throw err;
      const kind = err instanceof StrataError ? err.kind : 'Internal';
      if (kind === 'NotFound') return; // deleted since the listing
      if (kind === 'Unavailable') throw err; // the store is closing
      this.counters.chunksChecked += 1;
      if (kind === 'Corrupt') {
        // verify() quarantined it; the next heartbeat reports it.
        this.counters.corruptFound += 1;
        this.options.log.warn({ chunkId, err: (err as Error).message, rawBytes }, 'scrub: corrupt chunk quarantined');
      } else {
        this.options.log.warn({ chunkId, err: (err as Error).message }, 'scrub: chunk check failed');
      }
    }
  }
}

/** Keeps the bytes spent since the pass began at or below the rate: sleeps when ahead of it. */
class Pacer {
  private readonly startedMs = performance.now();
  private spentBytes = 0;

  constructor(
    private readonly bytesPerSec: number,
    private readonly signal: AbortSignal,
  ) {}

  async spend(bytes: number): Promise<void> {
    this.spentBytes += bytes;
    const aheadMs = (this.spentBytes / this.bytesPerSec) * 1000 - (performance.now() - this.startedMs);
    if (aheadMs >= MIN_SLEEP_MS) await sleep(aheadMs, undefined, { signal: this.signal });
  }
}
