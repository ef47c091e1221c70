// A read cache over the etcd engine, kept current by an etcd watch, so lookups and stats are
// served by the coordinator instead of costing an etcd round trip each (reads then scale with
// coordinators). Writes always go to etcd.
//
// Why it stays correct:
// - Every cached fact carries the revision it is true at. A watch event or this coordinator's
//   own successful txn overwrites a fact only with a newer one. A watch event for a cached
//   prefix adds its key as a fact: every later change to it comes by the same watch.
// - A read from etcd at revision R is cached only if R is at least the newest revision the watch
//   has delivered: otherwise an already-delivered (and, for an uncached key, ignored) event could
//   be newer than the read.
// - A failed txn means some compared fact was stale: those keys are dropped and read again.
// - When the watch may have missed events (disconnect, error), the whole cache is dropped and
//   reads go to etcd until the watch is live again.
// Staleness across coordinators is bounded by watch delivery (milliseconds); compares in every
// txn still check the revisions, so a stale read can fail a write but never corrupt one.
import { StrataError } from '../../common/errors.js';
import type { EtcdKv } from './etcd-kv.js';
import { prefixEnd, type Kv, type KvEntry, type KvTxn, type RangeOptions } from './kv.js';

interface Fact {
  entry: KvEntry | undefined;
  revision: number;
}

export interface CachedKvOptions {
  /** Key prefixes worth caching (the namespace records every path lookup reads). */
  prefixes: string[];
  /** Facts kept at most; the oldest inserted go first. */
  maxEntries?: number;
  /** Bound on starting the watch (etcd unreachable = a clear error, not a hang). */
  openTimeoutMs?: number;
}

/** Told of the watch after the cache learned from it (coordinator/lease-peers.ts feeds on this). */
export interface WatchListener {
  onEvents(events: { key: string; revision: number }[]): void;
  onReset(): void;
  onReady(): void;
}

export class CachedKv implements Kv {
  private readonly listeners = new Set<WatchListener>();
  private readonly facts = new Map<string, Fact>();
  private watchedThrough = 0;
  private live = false;
  private watch: { close(): Promise<void> } | undefined;
  private readonly maxEntries: number;

  private constructor(
    private readonly inner: EtcdKv,
    private readonly options: CachedKvOptions,
  ) {
    this.maxEntries = options.maxEntries ?? 500_000;
  }

  static async open(inner: EtcdKv, options: CachedKvOptions): Promise<CachedKv> {
    const kv = new CachedKv(inner, options);
    // One watch over the span of all cached prefixes; events for keys outside them are ignored.
    const sorted = [...options.prefixes].sort();
    const end = prefixEnd(sorted[sorted.length - 1]);
    const watching = inner.watchRange(sorted[0], end, {
      onEvents: (events) => {
        for (const { key, entry, revision } of events) {
          kv.watchedThrough = Math.max(kv.watchedThrough, revision);
          // A change to a cached prefix is a fact at its revision even if the key was not
          // cached: learning it keeps concurrent creators' new names cached (their own txn
          // replies often come after a newer event, and then cannot be learned from).
          if (kv.facts.has(key) || (kv.live && kv.cached(key))) kv.learn(key, entry, revision);
        }
        for (const listener of kv.listeners) listener.onEvents(events);
      },
      onReset: () => {
        kv.live = false;
        kv.facts.clear();
        for (const listener of kv.listeners) listener.onReset();
      },
      onReady: () => {
        kv.live = true;
        for (const listener of kv.listeners) listener.onReady();
      },
    });
    const timeoutMs = options.openTimeoutMs ?? 5000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StrataError('Unavailable', `cannot reach etcd: no watch within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      kv.watch = await Promise.race([watching, timeout]);
    } finally {
      clearTimeout(timer);
    }
    return kv;
  }

  async getMany(keys: string[]): Promise<(KvEntry | undefined)[]> {
    if (!this.live) return this.inner.getMany(keys);
    const result: (KvEntry | undefined)[] = new Array(keys.length);
    const missing: number[] = [];
    keys.forEach((key, i) => {
      const fact = this.facts.get(key);
      if (fact) result[i] = fact.entry;
      else missing.push(i);
    });
    if (missing.length === 0) return result;
    const watchedBefore = this.watchedThrough;
    const { entries, revision } = await this.inner.getManyAt(missing.map((i) => keys[i]));
    const cacheable = this.live && revision >= Math.max(watchedBefore, this.watchedThrough);
    missing.forEach((keyIndex, j) => {
      result[keyIndex] = entries[j];
      if (cacheable && this.cached(keys[keyIndex])) this.learn(keys[keyIndex], entries[j], revision);
    });
    return result;
  }

  /** The etcd engine underneath (leader election needs its client). */
  get engine(): EtcdKv {
    return this.inner;
  }

  range(options: RangeOptions): Promise<KvEntry[]> {
    return this.inner.range(options);
  }

  count(start: string, end: string): Promise<number> {
    return this.inner.count(start, end);
  }

  /** Follows the watch; returns the unsubscribe. */
  listen(listener: WatchListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async txn(txn: KvTxn): Promise<boolean> {
    return (await this.txnAt(txn)).succeeded;
  }

  /** txn, with the store revision after it (its writes' modRevision when it succeeded). */
  async txnAt(txn: KvTxn): Promise<{ succeeded: boolean; revision: number }> {
    let outcome: { succeeded: boolean; revision: number };
    try {
      outcome = await this.inner.txnAt(txn);
    } catch (err) {
      // Unknown outcome: forget what the txn touched.
      for (const op of txn.ops) if (op.type !== 'deleteRange') this.facts.delete(op.key);
      throw err;
    }
    if (!outcome.succeeded) {
      for (const compare of txn.compares) this.facts.delete(compare.key);
      return outcome;
    }
    // Our own write is the newest fact for its keys unless the watch already delivered a later
    // event for a key that was not cached then (and so was ignored).
    const fresh = (key: string) => this.cached(key) && (this.facts.has(key) || outcome.revision >= this.watchedThrough);
    for (const op of txn.ops) {
      if (op.type === 'put' && fresh(op.key)) {
        this.learn(op.key, { key: op.key, value: op.value, modRevision: outcome.revision }, outcome.revision);
      } else if (op.type === 'delete' && fresh(op.key)) {
        this.learn(op.key, undefined, outcome.revision);
      } else if (op.type === 'deleteRange' && this.options.prefixes.some((p) => op.end > p && op.start < p + '\uffff')) {
        // Not expected for cached prefixes; stay safe rather than scan the cache.
        this.facts.clear();
      }
    }
    return outcome;
  }

  async close(): Promise<void> {
    this.live = false;
    await this.watch?.close().catch(() => undefined);
    await this.inner.close();
  }

  private cached(key: string): boolean {
    return this.options.prefixes.some((prefix) => key.startsWith(prefix));
  }

  private learn(key: string, entry: KvEntry | undefined, revision: number): void {
    const known = this.facts.get(key);
    if (known && known.revision >= revision) return;
    this.facts.delete(key); // re-insert: Map order is the eviction order
    this.facts.set(key, { entry, revision });
    if (this.facts.size > this.maxEntries) {
      const evict = Math.ceil(this.maxEntries / 10);
      let n = 0;
      for (const oldKey of this.facts.keys()) {
        if (n++ >= evict) break;
        this.facts.delete(oldKey);
      }
    }
  }
}
