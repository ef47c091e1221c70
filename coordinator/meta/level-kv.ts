// The embedded engine under the KV seam: LevelDB in this process, for a single coordinator.
//
// Each stored value is prefixed with the 8-byte big-endian modRevision of its last write, and the
// store revision lives under an internal key, so revision compares keep working after a restart.
// Internal keys start with \x00; user keys never do (they are printable), and reads skip them.
//
// Transactions are group-committed: while one group is being written, later txns queue; the next
// group checks each queued txn's compares in order (against the store plus the effects of earlier
// txns in the same group), then writes every successful txn in one atomic, synced batch, and only
// then settles the group's promises (a failed compare too: it may have failed on an earlier txn's
// write, which must be durable before anyone acts on the failure). So concurrent clients share
// one fsync, and the serialisation a compare-and-set store needs costs one write per group.

import { Level } from 'level';
import { StrataError, corrupt, invalid } from '../../common/errors.js';
import { KV_MAX_TXN_OPS, type Kv, type KvEntry, type KvOp, type KvTxn, type RangeOptions } from './kv.js';

/** etcd's default --max-request-bytes; enforced here too so a txn valid here is valid on etcd. */
export const KV_MAX_TXN_BYTES = 1.5 * 1024 * 1024;

export interface LevelKvOptions {
  /**
   * fsync each group commit (default true). Without it a kill -9 loses nothing (the log write has
   * been handed to the OS) but a power loss may drop the last acknowledged txns.
   */
  syncWrites?: boolean;
}

const REVISION_KEY = '\x00rev';
const USER_KEYS_START = '\x01';
const REVISION_BYTES = 8;
// Bounds on one group commit, so one batch never grows without limit under load.
const GROUP_TXNS_MAX = 256;
const GROUP_BYTES_MAX = 16 * 1024 * 1024;
const COUNT_PAGE_KEYS = 1024;
// Past this many, a synchronous compare read could stall the event loop on disk reads.
const SYNC_COMPARE_KEYS_MAX = 32;

interface PendingTxn {
  txn: KvTxn;
  payloadBytes: number;
  resolve(ok: boolean): void;
  reject(err: unknown): void;
}

type BatchOp = { type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string };
type DeleteRangeOp = Extract<KvOp, { type: 'deleteRange' }>;

/** Counters since open, for tests and benchmarks: how well concurrent txns shared writes. */
export interface LevelKvStats {
  /** Transactions that reached a group (passed validation). */
  txns: number;
  /** Groups committed or attempted. */
  groups: number;
  /** LevelDB batch writes issued (synced when syncWrites): at most one per group. */
  batches: number;
}

export class LevelKv implements Kv {
  private queue: PendingTxn[] = [];
  private committing = false;
  private closing = false;
  private onIdle: (() => void) | undefined;
  private readonly counters: LevelKvStats = { txns: 0, groups: 0, batches: 0 };

  private constructor(
    private readonly db: Level<string, Buffer>,
    private readonly path: string,
    private readonly syncWrites: boolean,
    private revision: number,
  ) {}

  /** Opens (creating if needed) the store in directory `path`; one process at a time. */
  static async open(path: string, options: LevelKvOptions = {}): Promise<LevelKv> {
    const db = new Level<string, Buffer>(path, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    try {
      await db.open();
      const stored = await db.get(REVISION_KEY);
      const revision = stored === undefined ? 1 : readRevision(REVISION_KEY, stored);
      return new LevelKv(db, path, options.syncWrites ?? true, revision);
    } catch (err) {
      await db.close().catch(() => undefined);
      throw levelError(err, path);
    }
  }

  async getMany(keys: string[]): Promise<(KvEntry | undefined)[]> {
    if (keys.length === 0) return [];
    let values: (Buffer | undefined)[];
    try {
      // A few point reads are served from LevelDB's cache far faster synchronously than by a
      // thread-pool round trip each (the lookups behind every stat and create).
      values = keys.length <= SYNC_COMPARE_KEYS_MAX ? keys.map((key) => this.db.getSync(key)) : await this.db.getMany(keys);
    } catch (err) {
      throw levelError(err, this.path);
    }
    return values.map((stored, i) => {
      const key = keys[i]!;
      return stored === undefined || isInternal(key) ? undefined : toEntry(key, stored);
    });
  }

  async range({ start, end, limit }: RangeOptions): Promise<KvEntry[]> {
    checkLimit(limit);
    try {
      const entries = await this.db.iterator({ gte: userStart(start), lt: end, limit }).all();
      return entries.map(([key, stored]) => toEntry(key, stored));
    } catch (err) {
      throw levelError(err, this.path);
    }
  }

  async count(start: string, end: string): Promise<number> {
    const keys = this.db.keys({ gte: userStart(start), lt: end });
    let total = 0;
    try {
      for (let page = await keys.nextv(COUNT_PAGE_KEYS); page.length > 0; page = await keys.nextv(COUNT_PAGE_KEYS)) {
        total += page.length;
      }
    } catch (err) {
      throw levelError(err, this.path);
    } finally {
      await keys.close();
    }
    return total;
  }

  txn(txn: KvTxn): Promise<boolean> {
    let payloadBytes: number;
    try {
      payloadBytes = checkTxn(txn);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.closing) return Promise.reject(closedError(this.path));
    return new Promise((resolve, reject) => {
      this.queue.push({ txn, payloadBytes, resolve, reject });
      this.commitNextGroup();
    });
  }

  get stats(): LevelKvStats {
    return { ...this.counters };
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.committing || this.queue.length > 0) {
      await new Promise<void>((resolve) => (this.onIdle = resolve));
    }
    await this.db.close();
  }

  private commitNextGroup(): void {
    if (this.committing) return;
    if (this.queue.length === 0) {
      this.onIdle?.();
      return;
    }
    this.committing = true;
    let groupBytes = 0;
    let size = 0;
    while (size < this.queue.length && size < GROUP_TXNS_MAX && (size === 0 || groupBytes < GROUP_BYTES_MAX)) {
      groupBytes += this.queue[size]!.payloadBytes;
      size++;
    }
    const group = this.queue.splice(0, size);
    this.counters.groups++;
    this.counters.txns += group.length;
    this.commitGroup(group.map((p) => p.txn)).then(
      (results) => group.forEach((p, i) => p.resolve(results[i]!)),
      (err) => {
        const error = levelError(err, this.path);
        group.forEach((p) => p.reject(error));
      },
    ).finally(() => {
      this.committing = false;
      this.commitNextGroup();
    });
  }

  /**
   * Every key in [start, end). Not iterator.all(): that awaits the iterator's close before
   * answering, one more thread-pool round trip on a group's critical path; closing only releases
   * the snapshot, so it runs beside the batch write instead (db.close() waits for it).
   */
  private async keysIn(start: string, end: string): Promise<string[]> {
    const iterator = this.db.keys({ gte: start, lt: end });
    const keys: string[] = [];
    try {
      for (let page = await iterator.nextv(SCAN_PAGE_KEYS); page.length > 0; page = await iterator.nextv(SCAN_PAGE_KEYS)) keys.push(...page);
    } catch (err) {
      await iterator.close().catch(() => undefined);
      throw err;
    }
    void iterator.close().catch(() => undefined);
    return keys;
  }

  private async commitGroup(txns: KvTxn[]): Promise<boolean[]> {
    const comparedKeys = [...new Set(txns.flatMap((t) => t.compares.map((c) => c.key)))];
    // Compared keys were usually just read by the caller, so they sit in LevelDB's cache; reading
    // a few synchronously saves a thread-pool round trip, a third of a lone create's cost.
    const storedValues =
      comparedKeys.length <= SYNC_COMPARE_KEYS_MAX
        ? comparedKeys.map((key) => this.db.getSync(key))
        : await this.db.getMany(comparedKeys);
    // What each deleteRange finds stored, all scanned at once: nothing else writes the store while
    // a group is being built, so a scan here sees what a scan in order would (and one by one, a
    // group of unlinks would pay one thread-pool round trip after another).
    const rangeOps = txns.flatMap((t) => t.ops.filter((op): op is DeleteRangeOp => op.type === 'deleteRange'));
    const storedInRange = new Map<DeleteRangeOp, string[]>();
    await Promise.all(
      rangeOps.map(async (op) => storedInRange.set(op, await this.keysIn(userStart(op.start), op.end))),
    );
    // Current modRevision of every key this group has read or written; 0 = absent.
    const modRevisions = new Map<string, number>();
    comparedKeys.forEach((key, i) => {
      const stored = storedValues[i];
      modRevisions.set(key, stored === undefined ? 0 : readRevision(key, stored));
    });

    const batch: BatchOp[] = [];
    const results: boolean[] = [];
    let revision = this.revision;
    for (const txn of txns) {
      const holds = txn.compares.every((c) => modRevisions.get(c.key) === c.modRevision);
      results.push(holds);
      if (!holds || txn.ops.length === 0) continue;
      revision++;
      for (const op of txn.ops) applyOp(op, revision, batch, modRevisions, storedInRange);
    }
    if (batch.length === 0) return results;
    batch.push({ type: 'put', key: REVISION_KEY, value: encodeRevision(revision) });
    this.counters.batches++;
    // A chained batch, not db.batch(array): the same atomic write, but abstract-level's array
    // form checks and re-encodes every op in JS (~70 µs of CPU per group here, against ~30).
    const chained = this.db.batch();
    try {
      for (const op of batch) {
        if (op.type === 'put') chained.put(op.key, op.value);
        else chained.del(op.key);
      }
    } catch (err) {
      await chained.close();
      throw err;
    }
    await chained.write({ sync: this.syncWrites });
    this.revision = revision;
    return results;
  }
}

const SCAN_PAGE_KEYS = 1000;

/** Adds one op of a txn at `revision` to the group's batch, and its effect to `modRevisions`. */
function applyOp(
  op: KvOp,
  revision: number,
  batch: BatchOp[],
  modRevisions: Map<string, number>,
  storedInRange: Map<DeleteRangeOp, string[]>,
): void {
  if (op.type === 'put') {
    const value = Buffer.allocUnsafe(REVISION_BYTES + op.value.length);
    encodeRevision(revision).copy(value, 0);
    op.value.copy(value, REVISION_BYTES);
    batch.push({ type: 'put', key: op.key, value });
    modRevisions.set(op.key, revision);
  } else if (op.type === 'delete') {
    batch.push({ type: 'del', key: op.key });
    modRevisions.set(op.key, 0);
  } else {
    // The store does not hold this group's earlier writes yet, so the range is the union of
    // what is stored and what the group has put so far.
    const start = userStart(op.start);
    const doomed = new Set(storedInRange.get(op)!);
    for (const [key, modRevision] of modRevisions) {
      if (modRevision > 0 && inRange(key, start, op.end)) doomed.add(key);
    }
    for (const key of doomed) {
      batch.push({ type: 'del', key });
      modRevisions.set(key, 0);
    }
  }
}

/** Rejects what etcd would reject, with the same kind, so both engines agree; returns payload bytes. */
export function checkTxn({ compares, ops }: KvTxn): number {
  if (ops.length > KV_MAX_TXN_OPS || compares.length > KV_MAX_TXN_OPS) {
    throw invalid(`txn has ${ops.length} ops and ${compares.length} compares; at most ${KV_MAX_TXN_OPS} of each`);
  }
  let payloadBytes = 0;
  for (const c of compares) {
    checkKey(c.key);
    if (!Number.isSafeInteger(c.modRevision) || c.modRevision < 0) {
      throw invalid(`txn compare on ${JSON.stringify(c.key)}: modRevision ${c.modRevision} is not an integer >= 0`);
    }
    payloadBytes += Buffer.byteLength(c.key);
  }
  // etcd refuses to write one key twice in a txn, or to put a key that the same txn deletes.
  const putKeys = new Set<string>();
  // A single delete's range [key, key + '\x00') holds only that key: a set, not a bytewise scan per put.
  const deletedKeys = new Set<string>();
  const deleted: { start: string; end: string }[] = [];
  for (const op of ops) {
    if (op.type === 'put') {
      checkKey(op.key);
      if (putKeys.has(op.key)) throw invalid(`txn puts ${JSON.stringify(op.key)} twice`);
      putKeys.add(op.key);
      payloadBytes += Buffer.byteLength(op.key) + op.value.length;
    } else if (op.type === 'delete') {
      checkKey(op.key);
      deletedKeys.add(op.key);
      payloadBytes += Buffer.byteLength(op.key);
    } else {
      deleted.push({ start: op.start, end: op.end });
      payloadBytes += Buffer.byteLength(op.start) + Buffer.byteLength(op.end);
    }
  }
  for (const key of putKeys) {
    if (deletedKeys.has(key) || deleted.some((d) => inRange(key, d.start, d.end))) {
      throw invalid(`txn both puts and deletes ${JSON.stringify(key)}`);
    }
  }
  if (payloadBytes > KV_MAX_TXN_BYTES) {
    throw invalid(`txn carries ${payloadBytes} bytes; at most ${KV_MAX_TXN_BYTES}`);
  }
  return payloadBytes;
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw invalid('txn key is empty');
  if (isInternal(key)) throw invalid(`txn key ${JSON.stringify(key)} starts with \\x00, which is reserved`);
}

function checkLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1) throw invalid(`range limit ${limit} is not an integer >= 1`);
}

const isInternal = (key: string) => key.charCodeAt(0) === 0;
const userStart = (start: string) => (start < USER_KEYS_START ? USER_KEYS_START : start);

/** Bytewise (UTF-8) comparison, the order LevelDB and etcd keep; JS `<` compares UTF-16 units. */
function inRange(key: string, start: string, end: string): boolean {
  const k = Buffer.from(key);
  return Buffer.compare(k, Buffer.from(start)) >= 0 && Buffer.compare(k, Buffer.from(end)) < 0;
}

function encodeRevision(revision: number): Buffer {
  const bytes = Buffer.allocUnsafe(REVISION_BYTES);
  bytes.writeUInt32BE(Math.floor(revision / 2 ** 32), 0);
  bytes.writeUInt32BE(revision >>> 0, 4);
  return bytes;
}

function readRevision(key: string, stored: Buffer): number {
  if (stored.length < REVISION_BYTES) {
    throw corrupt(`metadata key ${JSON.stringify(key)}: stored value has ${stored.length} bytes, fewer than its revision`);
  }
  return stored.readUInt32BE(0) * 2 ** 32 + stored.readUInt32BE(4);
}

function toEntry(key: string, stored: Buffer): KvEntry {
  return { key, value: stored.subarray(REVISION_BYTES), modRevision: readRevision(key, stored) };
}

const closedError = (path: string) => new StrataError('Unavailable', `metadata db ${path} is closed`);

function levelError(err: unknown, path: string): StrataError {
  if (err instanceof StrataError) return err;
  const codes = [errorCode(err), errorCode((err as { cause?: unknown } | undefined)?.cause)];
  const message = err instanceof Error ? err.message : String(err);
  if (codes.includes('LEVEL_LOCKED')) {
    return new StrataError('Unavailable', `metadata db ${path} is in use by another process`, { cause: err });
  }
  if (codes.includes('LEVEL_CORRUPTION')) {
    return new StrataError('Corrupt', `metadata db ${path} is corrupt: ${message}`, { cause: err });
  }
  if (codes.includes('LEVEL_DATABASE_NOT_OPEN')) {
    return new StrataError('Unavailable', `metadata db ${path} is not open: ${message}`, { cause: err });
  }
  return new StrataError('Internal', `metadata db ${path}: ${message}`, { cause: err });
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
