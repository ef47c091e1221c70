// What the leader's jobs are doing, for `strata health`: counters since this leader took over and
// the latest events. The leader publishes it to one KV key every few seconds, so any coordinator
// can answer Health; a new leader starts from zero (its counters say "since I took over").
import type { Kv, KvCompare } from '../meta/kv.js';
import * as k from '../meta/keys.js';

export interface RepairQueueStatus {
  queued: number;
  running: number;
  repaired: number;
  failed: number;
  bytesCopied: number;
  trimmed: number;
  gcDeleted: number;
  rebalance: string;
}

export interface HealthEvent {
  atMs: number;
  kind: string;
  message: string;
}

export interface PublishedStatus {
  leader: string;
  publishedAtMs: number;
  queue: RepairQueueStatus;
  events: HealthEvent[];
}

const EVENTS_KEPT = 50;

export class HealStatus {
  readonly queue: RepairQueueStatus = { queued: 0, running: 0, repaired: 0, failed: 0, bytesCopied: 0, trimmed: 0, gcDeleted: 0, rebalance: 'idle' };
  private readonly events: HealthEvent[] = [];

  /**
   * Keeps the latest EVENTS_KEPT events, evicting from the kind with the most events kept: a
   * repair of hundreds of chunks (one 'repaired' event each) must not push out the one
   * 'node-dead' or 'corrupt' event that explains it (it did, before: health showed only
   * 'repaired' after a node with 300 chunks died).
   */
  event(kind: string, message: string): void {
    this.events.push({ atMs: Date.now(), kind, message });
    if (this.events.length <= EVENTS_KEPT) return;
    const perKind = new Map<string, number>();
    for (const e of this.events) perKind.set(e.kind, (perKind.get(e.kind) ?? 0) + 1);
    let commonest = kind;
    for (const [k, n] of perKind) if (n > perKind.get(commonest)!) commonest = k;
    this.events.splice(this.events.findIndex((e) => e.kind === commonest), 1);
  }

  snapshot(leader: string): PublishedStatus {
    return { leader, publishedAtMs: Date.now(), queue: { ...this.queue }, events: [...this.events] };
  }
}

/** Writes the status; `fence` keeps a deposed leader from overwriting its successor's. */
export async function publishStatus(kv: Kv, status: PublishedStatus, fence: KvCompare[]): Promise<void> {
  await kv.txn({ compares: fence, ops: [{ type: 'put', key: k.HEALTH_STATUS_KEY, value: Buffer.from(JSON.stringify(status)) }] });
}

export async function readStatus(kv: Kv): Promise<PublishedStatus | undefined> {
  const [entry] = await kv.getMany([k.HEALTH_STATUS_KEY]);
  return entry ? (JSON.parse(entry.value.toString()) as PublishedStatus) : undefined;
}
