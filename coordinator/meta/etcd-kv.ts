// The etcd engine under the KV seam, over etcd3's raw KV RPCs (one RPC per seam call).
//
// Every call has a deadline, retries included, so a dead etcd surfaces as one Unavailable error
// naming the hosts instead of a hang or a gRPC stack.

import {
  ClientClosedError,
  Etcd3,
  GRPCDeadlineExceededError,
  GRPCInvalidArgumentError,
  GRPCResourceExhastedError,
  GRPCUnavailableError,
  EtcdPermissionDeniedError,
  isRecoverableError,
  type IKeyValue,
  type IOptions,
  type IRequestOp,
} from 'etcd3';
import { StrataError, invalid } from '../../common/errors.js';
import type { EtcdCredentials } from './etcd-tls.js';
import { KV_MAX_TXN_OPS, type Kv, type KvEntry, type KvOp, type KvTimer, type KvTxn, type RangeOptions } from './kv.js';

export interface EtcdKvOptions {
  /** Client endpoints, `host:port` or `http://host:port`. */
  hosts: string[];
  /** Bound on each seam call, retries included. */
  timeoutMs?: number;
  /** TLS to etcd (etcd-tls.ts): the hosts are dialled over https. */
  credentials?: EtcdCredentials;
  /** Times each request, retries included (metrics). */
  timer?: KvTimer;
}

export const ETCD_TIMEOUT_MS_DEFAULT = 5_000;
const ATTEMPTS_MAX = 4;
const RETRY_BACKOFF_MS = 50;
// A range of up to `limit` values can exceed gRPC's 4 MiB default reply size.
const RECEIVE_MESSAGE_BYTES_MAX = 64 * 1024 * 1024;
// Past the deadline given to gRPC, in case a call is stuck outside gRPC (e.g. inside etcd3).
const DEADLINE_GRACE_MS = 1_000;

type GlobalPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;
// etcd3's default global policy retries every "recoverable" error three times, a txn included.
// A txn whose reply was lost after etcd applied it would then be re-sent, its compares would fail,
// and a create that succeeded would read as a conflict. So etcd3 gets one attempt per call and
// EtcdKv retries itself: reads on any transient error, writes only if they never left the client.
// (Hand-rolled because cockatiel, which owns the policy type, is etcd3's dependency, not ours.)
const singleAttempt = {
  execute: <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> =>
    Promise.resolve().then(() => fn({ signal: new AbortController().signal })),
} as unknown as GlobalPolicy;

class DeadlinePassed extends Error {}

type CallMode = 'read' | 'write';

export class EtcdKv implements Kv {
  private readonly client: Etcd3;
  private readonly hostsLabel: string;
  private readonly timeoutMs: number;
  private readonly timer: KvTimer | undefined;
  // An open circuit says only "recent calls failed"; this says why they failed.
  private lastUnreachableReason = 'recent calls failed';

  constructor(options: EtcdKvOptions) {
    if (options.hosts.length === 0) throw invalid('etcd: no hosts given');
    const timeoutMs = options.timeoutMs ?? ETCD_TIMEOUT_MS_DEFAULT;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw invalid(`etcd: timeoutMs ${timeoutMs} is not > 0`);
    this.timeoutMs = timeoutMs;
    this.timer = options.timer;
    this.hostsLabel = options.hosts.map((h) => h.replace(/^https?:\/\//, '')).join(',');
    const scheme = options.credentials ? 'https' : 'http';
    this.client = new Etcd3({
      hosts: options.hosts.map((h) => `${scheme}://${h.replace(/^https?:\/\//, '')}`),
      credentials: options.credentials,
      // etcd3's per-host circuit breaker steers calls off a dead member of a cluster; with one
      // host there is nowhere to steer, and it would turn a blip into 5 s of refused calls.
      faultHandling:
        options.hosts.length === 1 ? { global: singleAttempt, host: () => singleAttempt } : { global: singleAttempt },
      grpcOptions: { 'grpc.max_receive_message_length': RECEIVE_MESSAGE_BYTES_MAX },
    });
  }

  async getMany(keys: string[]): Promise<(KvEntry | undefined)[]> {
    return (await this.getManyAt(keys)).entries;
  }

  /** getMany, with the store revision the snapshot was read at (for caches). */
  async getManyAt(keys: string[]): Promise<{ entries: (KvEntry | undefined)[]; revision: number }> {
    const entries: (KvEntry | undefined)[] = [];
    // etcd caps a txn at 128 ops, so a longer list takes several txns; later ones read at the
    // revision the first one saw, so the answer is still one consistent snapshot.
    let revision: string | undefined;
    for (let first = 0; first < keys.length; first += KV_MAX_TXN_OPS) {
      const success: IRequestOp[] = keys
        .slice(first, first + KV_MAX_TXN_OPS)
        .map((key) => ({ request_range: { key: Buffer.from(key), revision } }));
      const response = await this.call('getMany', 'read', (deadline) => this.client.kv.txn({ success }, { deadline }));
      // Only the txn's own header carries a revision; etcd leaves nested range headers zeroed.
      revision ??= response.header.revision;
      for (const op of response.responses) {
        const kv = op.response_range.kvs[0];
        entries.push(kv ? toEntry(kv) : undefined);
      }
    }
    return { entries, revision: Number(revision ?? 0) };
  }

  async range({ start, end, limit }: RangeOptions): Promise<KvEntry[]> {
    if (!Number.isSafeInteger(limit) || limit < 1) throw invalid(`range limit ${limit} is not an integer >= 1`);
    if (!isNonEmptyRange(start, end)) return [];
    const response = await this.call('range', 'read', (deadline) =>
      this.client.kv.range({ key: Buffer.from(start), range_end: Buffer.from(end), limit }, { deadline }),
    );
    return response.kvs.map(toEntry);
  }

  async count(start: string, end: string): Promise<number> {
    if (!isNonEmptyRange(start, end)) return 0;
    const response = await this.call('count', 'read', (deadline) =>
      this.client.kv.range({ key: Buffer.from(start), range_end: Buffer.from(end), count_only: true }, { deadline }),
    );
    return Number(response.count);
  }

  /**
   * A thrown Unavailable whose message says "may have been applied" leaves the outcome unknown:
   * re-read the compared keys to learn it.
   */
  async txn(txn: KvTxn): Promise<boolean> {
    return (await this.txnAt(txn)).succeeded;
  }

  /** txn, with the store revision after it (its writes' modRevision when it succeeded). */
  async txnAt({ compares, ops }: KvTxn): Promise<{ succeeded: boolean; revision: number }> {
    if (ops.length > KV_MAX_TXN_OPS || compares.length > KV_MAX_TXN_OPS) {
      throw invalid(`txn has ${ops.length} ops and ${compares.length} compares; at most ${KV_MAX_TXN_OPS} of each`);
    }
    const request = {
      // etcd compares an absent key as if its revisions were 0, so modRevision 0 means "absent".
      compare: compares.map((c) => ({
        key: Buffer.from(c.key),
        target: 'Mod' as const,
        result: 'Equal' as const,
        mod_revision: c.modRevision,
      })),
      success: ops.flatMap(toRequestOp),
    };
    const response = await this.call('txn', 'write', (deadline) => this.client.kv.txn(request, { deadline }));
    return { succeeded: response.succeeded, revision: Number(response.header.revision) };
  }

  /**
   * Watches keys in [start, end). `onEvents` gets each batch of changes in revision order;
   * `onReset` says events may have been missed (disconnect, error), so caches must drop
   * everything; `onReady` says the watch is live again.
   */
  async watchRange(
    start: string,
    end: string,
    handlers: { onEvents(events: { key: string; entry: KvEntry | undefined; revision: number }[]): void; onReset(): void; onReady(): void },
  ): Promise<{ close(): Promise<void> }> {
    const watcher = await this.client.watch().inRange({ start, end }).create();
    watcher.on('data', (response) => {
      const events = (response.events ?? []).map((event) => {
        const revision = Number(event.kv.mod_revision);
        const key = event.kv.key.toString('utf8');
        return { key, revision, entry: event.type === 'Put' ? toEntry(event.kv) : undefined };
      });
      if (events.length > 0) handlers.onEvents(events);
    });
    watcher.on('disconnected', () => handlers.onReset());
    watcher.on('error', () => handlers.onReset());
    watcher.on('connected', () => {
      handlers.onReset();
      handlers.onReady();
    });
    handlers.onReady();
    return { close: () => watcher.cancel() };
  }

  /** The etcd3 client, for leader election (coordinator/leader.ts); namespace data goes through the seam. */
  get etcdClient(): Etcd3 {
    return this.client;
  }

  async close(): Promise<void> {
    this.client.close();
  }

  private async call<T>(what: string, mode: CallMode, rpc: (deadline: number) => Promise<T>): Promise<T> {
    if (!this.timer) return this.attempts(what, mode, rpc);
    const startedMs = performance.now();
    try {
      return await this.attempts(what, mode, rpc);
    } finally {
      this.timer(what).observeSince(startedMs);
    }
  }

  private async attempts<T>(what: string, mode: CallMode, rpc: (deadline: number) => Promise<T>): Promise<T> {
    const deadlineMs = Date.now() + this.timeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await withDeadline(rpc(deadlineMs), deadlineMs + DEADLINE_GRACE_MS);
      } catch (err) {
        const backoffMs = RETRY_BACKOFF_MS * attempt;
        const retryable = mode === 'read' ? isTransient(err) : neverSent(err);
        if (!retryable || attempt >= ATTEMPTS_MAX || Date.now() + backoffMs >= deadlineMs) {
          throw this.toStrataError(err, what, mode);
        }
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
      }
    }
  }

  private toStrataError(err: unknown, what: string, mode: CallMode): StrataError {
    if (err instanceof StrataError) return err;
    if (err instanceof ClientClosedError) {
      return new StrataError('Unavailable', `etcd client for ${this.hostsLabel} is closed (${what})`, { cause: err });
    }
    const detail = grpcDetail(err);
    if (isUnreachable(err)) {
      const reason =
        err instanceof DeadlinePassed || err instanceof GRPCDeadlineExceededError
          ? `no answer within ${this.timeoutMs} ms`
          : /ECONNREFUSED/.test(detail)
            ? 'connection refused'
            : isBrokenCircuit(err)
              ? this.lastUnreachableReason
              : detail;
      if (!isBrokenCircuit(err)) this.lastUnreachableReason = reason;
      const unknownOutcome = mode === 'write' && !neverSent(err) ? '; the txn may have been applied' : '';
      return new StrataError('Unavailable', `cannot reach etcd at ${this.hostsLabel} (${what}: ${reason}${unknownOutcome})`, {
        cause: err,
      });
    }
    if (err instanceof GRPCInvalidArgumentError) return new StrataError('Invalid', `etcd rejected ${what}: ${detail}`, { cause: err });
    if (err instanceof GRPCResourceExhastedError) {
      if (/space exceeded/.test(detail)) return new StrataError('NoSpace', `etcd ${what}: ${detail}`, { cause: err });
      if (/larger than max/.test(detail)) return new StrataError('Invalid', `etcd rejected ${what}: ${detail}`, { cause: err });
    }
    if (err instanceof EtcdPermissionDeniedError) return new StrataError('PermissionDenied', `etcd ${what}: ${detail}`, { cause: err });
    return new StrataError('Internal', `etcd ${what} failed: ${detail}`, { cause: err });
  }
}

function toRequestOp(op: KvOp): IRequestOp[] {
  switch (op.type) {
    case 'put':
      return [{ request_put: { key: Buffer.from(op.key), value: op.value } }];
    case 'delete':
      return [{ request_delete_range: { key: Buffer.from(op.key) } }];
    case 'deleteRange':
      // etcd reads an empty range_end as "this one key" and "\0" as "to the end": never send either.
      return isNonEmptyRange(op.start, op.end)
        ? [{ request_delete_range: { key: Buffer.from(op.start), range_end: Buffer.from(op.end) } }]
        : [];
  }
}

function toEntry(kv: IKeyValue): KvEntry {
  return { key: kv.key.toString('utf8'), value: kv.value, modRevision: Number(kv.mod_revision) };
}

/** Bytewise (UTF-8) order, as etcd compares keys; JS `<` compares UTF-16 code units. */
function isNonEmptyRange(start: string, end: string): boolean {
  return Buffer.compare(Buffer.from(start), Buffer.from(end)) < 0;
}

function withDeadline<T>(promise: Promise<T>, deadlineMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlinePassed('deadline passed')), Math.max(0, deadlineMs - Date.now()));
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

const isBrokenCircuit = (err: unknown) => (err as { isBrokenCircuitError?: boolean } | undefined)?.isBrokenCircuitError === true;

function isUnreachable(err: unknown): boolean {
  return (
    err instanceof GRPCUnavailableError ||
    err instanceof GRPCDeadlineExceededError ||
    err instanceof DeadlinePassed ||
    isBrokenCircuit(err)
  );
}

function isTransient(err: unknown): boolean {
  return isBrokenCircuit(err) || (err instanceof Error && isRecoverableError(err));
}

/** True when the request cannot have reached etcd, so even a write may be sent again. */
function neverSent(err: unknown): boolean {
  return isBrokenCircuit(err) || (err instanceof GRPCUnavailableError && /No connection established/.test(err.message));
}

/** gRPC's message without its "14 UNAVAILABLE: " prefix, first line only. */
function grpcDetail(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0]!.replace(/^\d+ [A-Z_]+: /, '');
}
