// The leader's tiering loop. Every interval (or when poked) it first serves recall requests
// (`r/<ino>` keys: bring a subtree's chunks back), then walks the namespace and moves the chunks
// of files their policy calls cold to the policy's tier. The work is whatever metadata says, so
// a new leader loses nothing. A tier that does not answer is backed off (5 s doubling to 5 min)
// while local reads and every other tier carry on.
import type { Logger } from '../../common/log.js';
import { asStrataError } from '../../common/errors.js';
import { splitPath } from '../../common/paths.js';
import type { Leadership } from '../leader.js';
import type { Kv } from '../meta/kv.js';
import * as k from '../meta/keys.js';
import type { MetaStore } from '../meta/store.js';
import { scanFileChunks } from '../healing/scan.js';
import { ChunkMover, TierUnreachable, type ChunkMoveDeps, type MoveOutcome } from './chunk-moves.js';
import { policyMatches, walkFiles } from './policy.js';
import { TierStatus, publishTierStatus, type TierJobStatus } from './status.js';

export interface TieringJobDeps extends ChunkMoveDeps {
  meta: MetaStore;
  /** Pause between passes over the namespace. */
  intervalMs: number;
  /** Chunks uploaded or recalled at once. */
  concurrency: number;
}

interface RecallRequest {
  path: string;
  requestedAtMs: number;
}

const BACKOFF_FIRST_MS = 5_000;
const BACKOFF_MAX_MS = 5 * 60_000;
const PUBLISH_INTERVAL_MS = 2_000;
const RECALL_REQUESTS_PER_PASS = 1000;
/** Chunks queued per pass at most; the walk starts over next pass and finds the rest. */
const QUEUE_MAX = 10_000;

export class TieringJob {
  private status = new TierStatus();
  private readonly mover: ChunkMover;
  private leading = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private wakeAgain = false;
  private lastPublishMs = 0;
  /** Tier name -> when to try it again and the delay after that. */
  private readonly backoff = new Map<string, { untilMs: number; delayMs: number; retried: boolean }>();

  constructor(private readonly deps: TieringJobDeps) {
    this.mover = new ChunkMover(deps);
  }

  start(): void {
    this.deps.leadership.onChange((leading) => (leading ? this.lead() : void this.stepDown()));
  }

  get isLeading(): boolean {
    return this.leading && this.deps.leadership.isLeader();
  }

  snapshot(): TierJobStatus {
    return this.status.snapshot(this.deps.leadership.selfId);
  }

  /** Runs a pass soon (a recall was asked for here). */
  poke(): void {
    if (this.wake) this.wake();
    else this.wakeAgain = true;
  }

  isInFlight(chunkId: string, nodeId: string): boolean {
    return this.mover.isInFlight(chunkId, nodeId);
  }

  /** GC (healing/gc.ts) deleted an object no record needs any more. */
  objectDeleted(tier: string): void {
    this.status.objectsDeleted++;
    this.status.event('object-deleted', `tier '${tier}': an object no chunk record needs any more was deleted`);
  }

  async close(): Promise<void> {
    await this.stepDown();
  }

  private lead(): void {
    if (this.leading || this.deps.tiers.size === 0) return;
    this.leading = true;
    this.status = new TierStatus();
    for (const name of this.deps.tiers.keys()) this.status.target(name);
    this.backoff.clear();
    this.loop = this.run();
  }

  private async stepDown(): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    let lastTierPassMs = 0;
    while (this.isLeading) {
      try {
        await this.recallPass();
        // A poke (a recall asked for) wakes the loop early; policies keep their interval.
        if (Date.now() - lastTierPassMs >= this.deps.intervalMs || this.backoffEnded()) {
          lastTierPassMs = Date.now();
          await this.tierPass();
        }
      } catch (err) {
        this.deps.log.warn({ err: (err as Error).message }, 'tiering pass failed; retrying next interval');
      }
      await this.publish(true);
      await this.sleep(this.nextPassInMs());
    }
  }

  // ---------------------------------------------------------------- recall

  private async recallPass(): Promise<void> {
    const rows = await this.deps.kv.range({ ...k.rangeOf(k.RECALL_PREFIX), limit: RECALL_REQUESTS_PER_PASS });
    for (const row of rows) {
      if (!this.isLeading) return;
      const ino = Number(row.key.slice(k.RECALL_PREFIX.length));
      const request = JSON.parse(row.value.toString()) as RecallRequest;
      const chunks = await this.tieredChunksUnder(request.path, ino);
      this.status.recallQueued = chunks?.length ?? 0;
      let complete = true;
      await runPool(chunks ?? [], this.deps.concurrency, async ({ key, chunkId }) => {
        const outcome = await this.attempt(`recall of chunk ${chunkId}`, () => this.mover.fromTier(key, chunkId));
        this.status.recallQueued--;
        if (outcome === 'done') this.status.recalled++;
        else complete = false;
      });
      // Done (or the path is gone): forget the request, unless it was asked again meanwhile.
      if (complete && this.isLeading) {
        await this.deps.kv.txn({ compares: [{ key: row.key, modRevision: row.modRevision }, ...this.deps.leadership.fence()], ops: [{ type: 'delete', key: row.key }] });
        if (chunks && chunks.length > 0) this.status.event('recalled', `${request.path}: ${chunks.length} chunks back on local replicas`);
      }
    }
    this.status.recallQueued = 0;
  }

  /** Tiered chunk records of the files under `path`; undefined when the path no longer names `ino`. */
  private async tieredChunksUnder(path: string, ino: number): Promise<{ key: string; chunkId: string }[] | undefined> {
    try {
      if ((await this.deps.meta.resolve(splitPath(path))).ino !== ino) return undefined;
      const found: { key: string; chunkId: string }[] = [];
      for await (const file of walkFiles(this.deps.kv, this.deps.meta, path)) {
        for await (const row of scanFileChunks(this.deps.kv, file.ino)) if (row.record.tier) found.push({ key: row.key, chunkId: row.record.chunkId });
      }
      return found;
    } catch (err) {
      if (asStrataError(err).kind === 'NotFound') return undefined;
      throw err;
    }
  }

  // ---------------------------------------------------------------- to the tiers

  private async tierPass(): Promise<void> {
    for (const entry of this.backoff.values()) if (entry.untilMs <= Date.now()) entry.retried = true;
    const queue = await this.findColdChunks();
    this.status.queued = queue.length;
    await runPool(queue, this.deps.concurrency, async ({ key, chunkId, tier }) => {
      this.status.queued--;
      if (this.backedOff(tier) || !this.isLeading) return;
      this.status.running++;
      try {
        const outcome = await this.attempt(`upload of chunk ${chunkId} to tier '${tier}'`, () => this.mover.toTier(key, chunkId, tier), tier);
        if (outcome === 'done') {
          this.status.moved++;
          this.backoff.delete(tier);
          this.status.target(tier).state = 'ok';
        }
      } finally {
        this.status.running--;
      }
      await this.publish(false);
    });
    this.status.queued = 0;
  }

  /** Local chunks of files whose policy calls them cold, up to QUEUE_MAX (the next pass finds the rest). */
  private async findColdChunks(): Promise<{ key: string; chunkId: string; tier: string }[]> {
    const now = Date.now();
    const queue: { key: string; chunkId: string; tier: string }[] = [];
    // No policy anywhere (the cluster's is p/0): nothing to walk the namespace for.
    if ((await this.deps.kv.range({ ...k.rangeOf(k.POLICY_PREFIX), limit: 1 })).length === 0) return queue;
    for await (const file of walkFiles(this.deps.kv, this.deps.meta, '/')) {
      if (!this.isLeading || queue.length >= QUEUE_MAX) break;
      if (!file.policy || !policyMatches(file, now)) continue;
      const tier = file.policy.policy.tier;
      if (!this.deps.tiers.has(tier) || this.backedOff(tier)) continue;
      for await (const row of scanFileChunks(this.deps.kv, file.ino)) {
        if (!row.record.tier && row.record.nodes.length > 0) queue.push({ key: row.key, chunkId: row.record.chunkId, tier });
      }
    }
    return queue;
  }

  /** One move; failures are counted and reported, and a tier that is down is backed off. */
  private async attempt(what: string, move: () => Promise<MoveOutcome>, tier?: string): Promise<MoveOutcome | 'failed'> {
    try {
      return await move();
    } catch (err) {
      const error = asStrataError(err);
      this.status.failed++;
      const name = err instanceof TierUnreachable ? err.tier : tier;
      if (name) {
        const target = this.status.target(name);
        target.errors++;
        target.lastError = error.message;
      }
      if (err instanceof TierUnreachable) this.backOff(err.tier, error.message);
      else this.status.event('tier-failed', `${what}: ${error.message}`);
      this.deps.log.warn({ err: error.message }, `tiering: ${what} failed; retrying later`);
      return 'failed';
    }
  }

  private backOff(tier: string, reason: string): void {
    const previous = this.backoff.get(tier);
    const delayMs = previous ? Math.min(previous.delayMs * 2, BACKOFF_MAX_MS) : BACKOFF_FIRST_MS;
    this.backoff.set(tier, { untilMs: Date.now() + delayMs, delayMs, retried: false });
    const why = reason.replace(/; retry later$/, '');
    this.status.target(tier).state = `unreachable; retrying in ${Math.round(delayMs / 1000)}s`;
    if (!previous) this.status.event('tier-unreachable', `${why}: tiering to it paused, retrying with backoff`);
  }

  /** A backed-off tier is due for another try (the pass then runs before its interval). */
  private backoffEnded(): boolean {
    return [...this.backoff.values()].some((b) => b.untilMs <= Date.now() && !b.retried);
  }

  private backedOff(tier: string): boolean {
    return (this.backoff.get(tier)?.untilMs ?? 0) > Date.now();
  }

  private nextPassInMs(): number {
    let next = this.deps.intervalMs;
    for (const { untilMs } of this.backoff.values()) if (untilMs > Date.now()) next = Math.min(next, untilMs - Date.now());
    return next;
  }

  // ---------------------------------------------------------------- plumbing

  private async publish(force: boolean): Promise<void> {
    if (!force && Date.now() - this.lastPublishMs < PUBLISH_INTERVAL_MS) return;
    this.lastPublishMs = Date.now();
    await publishTierStatus(this.deps.kv, this.snapshot(), this.deps.leadership.fence()).catch((err: Error) => {
      this.deps.log.info({ err: err.message }, 'tiering status not published');
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.wakeAgain || !this.isLeading) {
        this.wakeAgain = false;
        return resolve();
      }
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wake = undefined;
        resolve();
      }
      this.wake = done;
    });
  }
}

/** Runs `fn` over the items with at most `concurrency` at once; pulls items only as slots free. */
async function runPool<T>(items: Iterable<T> | AsyncIterable<T>, concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  const running = new Set<Promise<void>>();
  for await (const item of items as AsyncIterable<T>) {
    const task: Promise<void> = fn(item).finally(() => running.delete(task));
    running.add(task);
    if (running.size >= concurrency) await Promise.race(running);
  }
  await Promise.all(running);
}
