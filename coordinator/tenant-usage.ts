// What a tenant's caller sees as its file system's size and usage (StatFs: `strata df`, the
// mount's statfs): its own tenant, not the cluster. The usage is its root's quota record when the
// admin set a quota on the root (kept exact by every change: meta/quotas.ts); without one, a walk
// of the tenant's tree counts it (QuotaAdmin.usageUnder), remembered for USAGE_TTL_MS and shared
// by concurrent callers, so `df` in a loop costs one walk per interval, not one per call.
import type { QuotaAdmin } from './meta/quota-admin.js';
import type { Usage } from './meta/quotas.js';
import type { MetaStore } from './meta/store.js';

export interface TenantFigures {
  tenant: string;
  usage: Usage;
  /** The root's quota limits (0 = none, or no quota). */
  limitBytes: number;
  limitFiles: number;
}

/** How long a counted (not quota-kept) usage is shown before the tree is walked again. */
export const USAGE_TTL_MS = 10_000;
const CACHE_MAX = 10_000;

export class TenantUsage {
  private readonly counted = new Map<number, { atMs: number; usage: Promise<Usage> }>();

  constructor(
    private readonly store: MetaStore,
    private readonly quotas: QuotaAdmin,
  ) {}

  /** The figures of the tenant whose root is directory `root`. */
  async of(root: number): Promise<TenantFigures> {
    const attr = await this.store.getattr(root);
    const quota = await this.quotas.recordOf(root);
    const tenant = attr.tenant ?? '';
    if (quota) return { tenant, usage: { bytes: quota.usedBytes, files: quota.usedFiles }, limitBytes: quota.limitBytes, limitFiles: quota.limitFiles };
    return { tenant, usage: await this.countedUsage(root), limitBytes: 0, limitFiles: 0 };
  }

  private countedUsage(root: number): Promise<Usage> {
    const now = Date.now();
    const kept = this.counted.get(root);
    if (kept && now - kept.atMs <= USAGE_TTL_MS) return kept.usage;
    if (this.counted.size >= CACHE_MAX) this.counted.clear();
    const usage = this.quotas.usageUnder(root);
    this.counted.set(root, { atMs: now, usage });
    // A failed walk is not remembered: the next call walks again.
    usage.catch(() => {
      if (this.counted.get(root)?.usage === usage) this.counted.delete(root);
    });
    return usage;
  }
}
