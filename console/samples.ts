// The console's live charts: what the cluster stores, sampled in the coordinator every few
// seconds from the data nodes' heartbeats (no call per sample), kept for the last half hour.
export interface ClusterSample {
  atMs: number;
  usedBytes: number;
  capacityBytes: number;
  chunks: number;
  liveNodes: number;
  /** Bytes stored per second since the sample before (all replicas; negative while space frees). */
  storedBytesPerSec: number;
}

export type ClusterTotals = () => Omit<ClusterSample, 'atMs' | 'storedBytesPerSec'>;

export class SampleRing {
  private readonly samples: ClusterSample[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly totals: ClusterTotals,
    private readonly everyMs = 2_000,
    private readonly keep = 900,
  ) {}

  start(): void {
    this.take();
    this.timer = setInterval(() => this.take(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  list(): readonly ClusterSample[] {
    return this.samples;
  }

  private take(): void {
    const now = Date.now();
    const totals = this.totals();
    const last = this.samples.at(-1);
    const seconds = last ? (now - last.atMs) / 1000 : 0;
    const storedBytesPerSec = last && seconds > 0 ? Math.round((totals.usedBytes - last.usedBytes) / seconds) : 0;
    this.samples.push({ atMs: now, ...totals, storedBytesPerSec });
    if (this.samples.length > this.keep) this.samples.shift();
  }
}
