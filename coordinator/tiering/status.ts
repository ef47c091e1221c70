// What the leader's tiering job is doing, for `strata tier status`: queue, counters since this
// leader took over, per-tier reachability and errors, recent events. Published to one KV key
// (like healing/status.ts) so any coordinator can answer TierStatus.
import type { Kv, KvCompare } from '../meta/kv.js';
import * as k from '../meta/keys.js';
import type { HealthEvent } from '../healing/status.js';

export interface TierTargetState {
  /** "ok", or "unreachable: <reason>; retrying in Ns" while the job backs off. */
  state: string;
  errors: number;
  lastError: string;
}

export interface TierJobStatus {
  leader: string;
  publishedAtMs: number;
  queued: number;
  running: number;
  recallQueued: number;
  moved: number;
  recalled: number;
  failed: number;
  objectsDeleted: number;
  /** Tier name -> what the job last saw of it. */
  targets: Record<string, TierTargetState>;
  events: HealthEvent[];
}

const EVENTS_KEPT = 50;

export class TierStatus {
  queued = 0;
  running = 0;
  recallQueued = 0;
  moved = 0;
  recalled = 0;
  failed = 0;
  objectsDeleted = 0;
  readonly targets: Record<string, TierTargetState> = {};
  private readonly events: HealthEvent[] = [];

  event(kind: string, message: string): void {
    this.events.push({ atMs: Date.now(), kind, message });
    if (this.events.length > EVENTS_KEPT) this.events.shift();
  }

  target(name: string): TierTargetState {
    return (this.targets[name] ??= { state: 'ok', errors: 0, lastError: '' });
  }

  snapshot(leader: string): TierJobStatus {
    const { queued, running, recallQueued, moved, recalled, failed, objectsDeleted } = this;
    const targets = Object.fromEntries(Object.entries(this.targets).map(([name, t]) => [name, { ...t }]));
    return { leader, publishedAtMs: Date.now(), queued, running, recallQueued, moved, recalled, failed, objectsDeleted, targets, events: [...this.events] };
  }
}

/** Writes the status; `fence` keeps a deposed leader from overwriting its successor's. */
export async function publishTierStatus(kv: Kv, status: TierJobStatus, fence: KvCompare[]): Promise<void> {
  await kv.txn({ compares: fence, ops: [{ type: 'put', key: k.TIER_STATUS_KEY, value: Buffer.from(JSON.stringify(status)) }] });
}

export async function readTierStatus(kv: Kv): Promise<TierJobStatus | undefined> {
  const [entry] = await kv.getMany([k.TIER_STATUS_KEY]);
  return entry ? (JSON.parse(entry.value.toString()) as TierJobStatus) : undefined;
}
