// Per-inode commit batching for MetaStore.commitChunk. A writer keeps several chunks of one file
// in flight; committed one transaction each, they all compare the inode's revision, all but one
// lose and retry (another read, another metadata fsync, a backoff). Here the commits of one inode
// queue: while one transaction is in flight, those arriving wait, then share the next one.
//
// The leader of each batch is one of its own callers, so the transaction runs in that caller's
// async context (lease-kv.ts reads the writer from it); commits are also grouped by the caller's
// `group` (the writing session), so a batch never mixes writers. Across processes (several
// coordinators on etcd) nothing changes: each batch's transaction still compares what it read.
import type { Attr, ChunkRecord } from './types.js';

/** What one commit in a batch came to: its attributes, or its own error (the others still land). */
export type CommitOutcome = { attr: Attr } | { error: Error };

export interface CommitStats {
  /** commitChunk calls queued. */
  commits: number;
  /** Batches run (one or more transaction attempts each). */
  batches: number;
  /** Transactions attempted. */
  txns: number;
  /** Transactions that lost a race (a compare failed) and were retried. */
  lostRaces: number;
}

/** 1 inode put + one put per chunk within the KV's 128 ops per txn (and as many compares). */
export const COMMIT_BATCH_MAX = 64;

type RunBatch = (ino: number, records: ChunkRecord[]) => Promise<CommitOutcome[]>;

interface Pending {
  record: ChunkRecord;
  /** Set once its batch settled. A value, not a rejected promise: no unhandled rejection meanwhile. */
  result?: CommitOutcome;
  /** Resolves when its batch settled, or when it is its turn to lead the next one. */
  turn: Promise<void>;
  wake: () => void;
}

interface Queue {
  busy: boolean;
  waiting: Pending[];
}

export class CommitBatcher {
  readonly stats: CommitStats = { commits: 0, batches: 0, txns: 0, lostRaces: 0 };
  private readonly queues = new Map<number, Map<unknown, Queue>>();

  constructor(private readonly runBatch: RunBatch) {}

  async commit(ino: number, group: unknown, record: ChunkRecord): Promise<Attr> {
    this.stats.commits++;
    const queue = this.queueOf(ino, group);
    let wake!: () => void;
    const turn = new Promise<void>((resolve) => (wake = resolve));
    const mine: Pending = { record, turn, wake };
    queue.waiting.push(mine);
    if (queue.busy) await mine.turn;
    if (!mine.result) await this.lead(ino, group, queue);
    const result = mine.result!;
    if ('error' in result) throw result.error;
    return result.attr;
  }

  /** For the batch function: one transaction attempt, and whether it won. */
  noteTxn(succeeded: boolean): void {
    this.stats.txns++;
    if (!succeeded) this.stats.lostRaces++;
  }

  private async lead(ino: number, group: unknown, queue: Queue): Promise<void> {
    queue.busy = true;
    const batch = takeBatch(queue.waiting);
    this.stats.batches++;
    let outcomes: CommitOutcome[];
    try {
      outcomes = await this.runBatch(ino, batch.map((p) => p.record));
    } catch (err) {
      // The transaction itself failed (not found, contention, the store): every commit in it did.
      outcomes = batch.map(() => ({ error: err as Error }));
    }
    batch.forEach((p, i) => {
      p.result = outcomes[i];
      p.wake();
    });
    if (queue.waiting.length > 0) {
      queue.waiting[0].wake(); // stays busy: the next leader takes over in its own context
      return;
    }
    queue.busy = false;
    const groups = this.queues.get(ino)!;
    groups.delete(group);
    if (groups.size === 0) this.queues.delete(ino);
  }

  private queueOf(ino: number, group: unknown): Queue {
    let groups = this.queues.get(ino);
    if (!groups) this.queues.set(ino, (groups = new Map()));
    let queue = groups.get(group);
    if (!queue) groups.set(group, (queue = { busy: false, waiting: [] }));
    return queue;
  }
}

/**
 * Takes up to COMMIT_BATCH_MAX waiting commits, in order, one per chunk index: a second commit of
 * an index stays for the next batch, so the later one still wins as if they ran one by one.
 */
function takeBatch(waiting: Pending[]): Pending[] {
  const batch: Pending[] = [];
  const rest: Pending[] = [];
  const indexes = new Set<number>();
  for (const p of waiting) {
    if (batch.length < COMMIT_BATCH_MAX && !indexes.has(p.record.index)) {
      indexes.add(p.record.index);
      batch.push(p);
    } else {
      rest.push(p);
    }
  }
  waiting.splice(0, waiting.length, ...rest);
  return batch;
}
