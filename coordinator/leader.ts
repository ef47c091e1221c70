// Which coordinator runs the background jobs. On etcd, coordinators campaign in an etcd election
// under a lease: the holder of the oldest campaign key leads, and when it dies its lease expires
// (leaderTtlMs) and the next candidate takes over. The embedded engine has one coordinator, which
// leads. Being told "you lead" is not enough to write safely (a paused leader may wake up deposed),
// so fence() gives compares that hold only while the campaign key still exists unchanged: the jobs
// add them to every transaction, and a deposed leader's writes fail instead of clobbering.
import { EventEmitter } from 'node:events';
import type { Campaign, Etcd3 } from 'etcd3';
import type { Logger } from '../common/log.js';
import type { Kv, KvCompare } from './meta/kv.js';

export interface Leadership {
  /** This coordinator's id (its address). */
  readonly selfId: string;
  isLeader(): boolean;
  /** Compares that hold only while this coordinator leads; add them to every job transaction. */
  fence(): KvCompare[];
  /** The leading coordinator's id, '' when none is known. */
  currentLeader(): Promise<string>;
  /** Called with true when this coordinator starts leading, false when it stops. */
  onChange(listener: (leading: boolean) => void): void;
  close(): Promise<void>;
}

/** The embedded engine: one coordinator, always the leader. */
export class SoleLeadership implements Leadership {
  private readonly events = new EventEmitter();
  private closed = false;
  constructor(readonly selfId: string) {}
  isLeader = () => !this.closed;
  fence = (): KvCompare[] => [];
  currentLeader = async () => this.selfId;
  onChange(listener: (leading: boolean) => void): void {
    this.events.on('change', listener);
    queueMicrotask(() => listener(!this.closed));
  }
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.events.emit('change', false);
  }
}

const ELECTION_NAME = 'strata-leader';
const RECAMPAIGN_DELAY_MS = 1000;

export class EtcdLeadership implements Leadership {
  private readonly events = new EventEmitter();
  private campaign: Campaign | undefined;
  private fenceCompare: KvCompare | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    readonly selfId: string,
    private readonly etcd: Etcd3,
    private readonly kv: Kv,
    private readonly options: { ttlMs: number; log: Logger },
  ) {
    this.campaignOnce();
    // etcd3 notices a lost lease only after up to two TTLs; a read of our key every third of a
    // TTL notices sooner (and the fence keeps writes safe in between either way).
    this.checkTimer = setInterval(() => void this.verify(), Math.max(300, options.ttlMs / 3));
    this.checkTimer.unref();
  }

  isLeader(): boolean {
    return this.fenceCompare !== undefined;
  }

  fence(): KvCompare[] {
    // A compare on a key that never exists at revision -1 always fails: not leading = no writes.
    return [this.fenceCompare ?? { key: `election/${ELECTION_NAME}/none`, modRevision: -1 }];
  }

  async currentLeader(): Promise<string> {
    return (await this.etcd.election(ELECTION_NAME).leader()) ?? '';
  }

  /**
   * A listener that subscribes after this coordinator was elected (the campaign starts in the
   * constructor and can win before the jobs subscribe) is told at once: it would otherwise wait
   * for a change that never comes, and the cluster would have a leader that runs no jobs.
   */
  onChange(listener: (leading: boolean) => void): void {
    let told = false;
    this.events.on('change', (leading: boolean) => {
      told = true;
      listener(leading);
    });
    queueMicrotask(() => {
      if (!told && this.isLeader()) listener(true);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.checkTimer);
    clearTimeout(this.retryTimer);
    this.setLeading(undefined);
    // Resigning revokes the lease: the next candidate leads at once instead of after the TTL.
    await this.campaign?.resign().catch(() => undefined);
  }

  private campaignOnce(): void {
    if (this.closed) return;
    const ttlS = Math.max(1, Math.ceil(this.options.ttlMs / 1000));
    const campaign = this.etcd.election(ELECTION_NAME, ttlS).campaign(this.selfId);
    this.campaign = campaign;
    campaign.on('elected', () => {
      void (async () => {
        const key = await campaign.getCampaignKey();
        const [entry] = await this.kv.getMany([key]);
        if (!entry || this.campaign !== campaign || this.closed) throw new Error('campaign key vanished as we were elected');
        this.setLeading({ key, modRevision: entry.modRevision });
      })().catch((err) => this.lose(campaign, err));
    });
    campaign.on('error', (err) => this.lose(campaign, err));
  }

  private lose(campaign: Campaign, err: unknown): void {
    if (this.campaign !== campaign) return;
    this.options.log.warn({ err: (err as Error)?.message }, 'leader campaign failed; campaigning again');
    this.setLeading(undefined);
    this.campaign = undefined;
    campaign.resign().catch(() => undefined);
    this.retryTimer = setTimeout(() => this.campaignOnce(), RECAMPAIGN_DELAY_MS);
    this.retryTimer.unref();
  }

  private async verify(): Promise<void> {
    const fence = this.fenceCompare;
    const campaign = this.campaign;
    if (!fence || !campaign) return;
    try {
      const [entry] = await this.kv.getMany([fence.key]);
      if (entry?.modRevision !== fence.modRevision) this.lose(campaign, new Error('our election key is gone (lease expired)'));
    } catch {
      // etcd unreachable: the lease will expire unless it comes back; stop leading now.
      if (this.fenceCompare) this.lose(campaign, new Error('etcd unreachable'));
    }
  }

  private setLeading(fence: KvCompare | undefined): void {
    const was = this.isLeader();
    this.fenceCompare = fence;
    if (was !== this.isLeader()) {
      this.options.log.info({ coordinator: this.selfId }, fence ? 'elected leader: running background jobs' : 'no longer the leader');
      this.events.emit('change', this.isLeader());
    }
  }
}
