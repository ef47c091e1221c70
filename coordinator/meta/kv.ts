// The narrow transactional key-value seam under MetaStore. Every namespace rule lives in
// MetaStore (meta/store.ts) once; an engine (etcd, LevelDB) only implements this.
//
// Semantics follow etcd's: each key has a modRevision (the store revision of its last
// write). A transaction checks all its compares against current state, then applies all
// its ops atomically, or applies nothing and reports failure.

export interface KvEntry {
  key: string;
  value: Buffer;
  modRevision: number; // > 0
}

export interface RangeOptions {
  /** Inclusive start key. */
  start: string;
  /** Exclusive end key. */
  end: string;
  /** Maximum number of entries (required: never an unbounded range). */
  limit: number;
}

/** A compare holds when the key's current modRevision equals `modRevision` (0 = key absent). */
export interface KvCompare {
  key: string;
  modRevision: number;
}

export type KvOp =
  | { type: 'put'; key: string; value: Buffer }
  | { type: 'delete'; key: string }
  /** Deletes every key in [start, end). One op however many keys. */
  | { type: 'deleteRange'; start: string; end: string };

export interface KvTxn {
  compares: KvCompare[];
  ops: KvOp[];
  /**
   * Called once the engine answered (committed or not), before any wait a wrapper adds after
   * the commit (lease-kv.ts: the invalidations): a caller holding its turn on a key (key-turns.ts)
   * lets the next one go then. Engines ignore it.
   */
  answered?: () => void;
}

/** Times each engine request by op ('getMany', 'range', 'count', 'txn'); absent = not timed (common/metrics.ts). */
export type KvTimer = (op: string) => { observeSince(startedMs: number): void };

/**
 * Times `kv`'s seam calls in place (own methods shadowing its class's), so the engine stays what it
 * is to instanceof checks and its internals stay untouched.
 */
export function timeKvCalls(kv: Kv, timer: KvTimer): void {
  for (const op of ['getMany', 'range', 'count', 'txn'] as const) {
    const call = (kv[op] as (...args: unknown[]) => Promise<unknown>).bind(kv);
    const series = timer(op);
    (kv as unknown as Record<string, unknown>)[op] = (...args: unknown[]) => {
      const startedMs = performance.now();
      const answer = call(...args);
      answer.then(
        () => series.observeSince(startedMs),
        () => series.observeSince(startedMs),
      );
      return answer;
    };
  }
}

/** Max ops per transaction: etcd's default --max-txn-ops. Engines reject more. */
export const KV_MAX_TXN_OPS = 128;

export interface Kv {
  /** Current entries for the keys, in order; undefined where absent. One round trip. */
  getMany(keys: string[]): Promise<(KvEntry | undefined)[]>;
  /** Entries in [start, end) in bytewise key order, at most `limit`. */
  range(options: RangeOptions): Promise<KvEntry[]>;
  /** Count of keys in [start, end). */
  count(start: string, end: string): Promise<number>;
  /** True when every compare held and the ops were applied. */
  txn(txn: KvTxn): Promise<boolean>;
  close(): Promise<void>;
}

/** The smallest key greater than every key starting with `prefix` (for prefix ranges). */
export function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}
