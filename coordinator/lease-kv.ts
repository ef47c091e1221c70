// The seam where namespace changes meet client leases: a Kv wrapper under MetaStore whose txn
// returns only once the change's invalidations are done (every holder acked or lapsed, here and
// on the other coordinators). MetaStore returns after its txn, the change is acknowledged after
// MetaStore: so no client is acknowledged a change that a lease holder could still miss, whichever
// path made it (session stream, unary RPC, background job), with no hook in each operation.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Kv, KvEntry, KvOp, KvTxn, RangeOptions } from './meta/kv.js';
import type { Invalidation, LeaseSession, OwnChange } from './leases.js';

/**
 * What a committed change means for caches, and the store revision it committed at (etcd);
 * `own` when the writer applies the change's reply to its own cache (leases.ts OwnChange).
 */
export type OnCommitted = (events: Invalidation[], revision: number | undefined, writer: LeaseSession | undefined, own?: OwnChange) => Promise<void>;

interface TxnAtKv extends Kv {
  txnAt(txn: KvTxn): Promise<{ succeeded: boolean; revision: number }>;
}

interface Writer {
  session: LeaseSession;
  own?: OwnChange;
}

const writerContext = new AsyncLocalStorage<Writer>();

/**
 * Runs `fn` as a request of `session`: its changes are not held up waiting for its own acks.
 * With `own`, the session keeps its leases on what they touch (OwnChange decides, at its finish).
 */
export function asWriter<T>(session: LeaseSession | undefined, fn: () => T, own?: OwnChange): T {
  return session ? writerContext.run({ session, own }, fn) : fn();
}

/** The session whose request is running here, if any (MetaStore groups its commits by it). */
export function currentWriter(): LeaseSession | undefined {
  return writerContext.getStore()?.session;
}

/** Told around each txn that changes what caches hold (lease-peers.ts ownTxnStarted). */
export interface TxnObserver {
  started(): number;
  /** After the txn settled and onCommitted's synchronous part ran. */
  settled(id: number): void;
}

export class LeaseKv implements Kv {
  constructor(
    private readonly inner: Kv,
    private readonly onCommitted: OnCommitted,
    private readonly observer?: () => TxnObserver | undefined,
  ) {}

  getMany(keys: string[]): Promise<(KvEntry | undefined)[]> {
    return this.inner.getMany(keys);
  }

  range(options: RangeOptions): Promise<KvEntry[]> {
    return this.inner.range(options);
  }

  count(start: string, end: string): Promise<number> {
    return this.inner.count(start, end);
  }

  async txn(txn: KvTxn): Promise<boolean> {
    const events = invalidationsOf(txn.ops);
    if (events.length === 0) return this.inner.txn(txn);
    const { session: writer, own } = writerContext.getStore() ?? {};
    // Registered before the commit: any other change from here on revokes what the writer keeps.
    own?.beforeCommit(events);
    const observer = this.observer?.();
    const id = observer?.started();
    const settled = () => id !== undefined && observer!.settled(id);
    let outcome: { succeeded: boolean; revision: number | undefined };
    try {
      outcome = hasTxnAt(this.inner) ? await this.inner.txnAt(txn) : { succeeded: await this.inner.txn(txn), revision: undefined };
    } catch (err) {
      txn.answered?.();
      // The change may have been applied: revoke what it would have touched before failing.
      const done = this.onCommitted(events, undefined, writer, own);
      settled();
      await done.catch(() => undefined);
      throw err;
    }
    txn.answered?.();
    if (!outcome.succeeded) {
      settled();
      return false;
    }
    const done = this.onCommitted(events, outcome.revision, writer, own); // its synchronous part marks the revision ours
    settled();
    await done;
    return true;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function hasTxnAt(kv: Kv): kv is TxnAtKv {
  return typeof (kv as Partial<TxnAtKv>).txnAt === 'function';
}

/**
 * What caches must drop after these writes (see coordinator/meta/keys.ts):
 * `d/<parent>/<name>` the entry; `i/<ino>` the attributes; `t/<ino>` a directory's stamp, which
 * is its mtime (attributes). Chunk records change no attribute by themselves (a commit also
 * rewrites `i/`). A range delete over entries or inodes is not something MetaStore does; it
 * would drop the whole directory or be reported as such.
 */
export function invalidationsOf(ops: readonly KvOp[]): Invalidation[] {
  const events: Invalidation[] = [];
  for (const op of ops) {
    if (op.type === 'deleteRange') {
      const dir = /^d\/(\d+)\//.exec(op.start);
      if (dir) events.push({ ino: Number(dir[1]), name: '' });
      continue;
    }
    const event = invalidationOfKey(op.key);
    if (event) events.push(event);
  }
  return events;
}

export function invalidationOfKey(key: string): Invalidation | undefined {
  const slash = key.indexOf('/', 2);
  switch (key.slice(0, 2)) {
    case 'd/':
      return slash > 2 ? { ino: Number(key.slice(2, slash)), name: key.slice(slash + 1) } : undefined;
    case 'i/':
    case 't/':
      return { ino: Number(key.slice(2)) };
    default:
      return undefined;
  }
}
