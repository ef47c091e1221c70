// The object tiers this data node knows, by name. Coordinators own tier configuration and send the
// whole list with every heartbeat reply; the registry follows it. A client is made again only when
// its target changed, so connections (and their keep-alive sockets) survive steady heartbeats.
import { StrataError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { S3ObjectTier, type ObjectTier, type TierTarget } from '../common/object-tier.js';

export type TierFactory = (target: TierTarget) => ObjectTier;

/**
 * A replaced client still serving a read or upload would see its sockets cut by close(); it is
 * closed only after the longest an S3 call can run (3 attempts of 30 s).
 */
const RETIRED_CLOSE_DELAY_MS = 120_000;

const TARGET_FIELDS = ['name', 'endpoint', 'region', 'bucket', 'prefix', 'forcePathStyle', 'accessKeyId', 'secretAccessKey', 'sessionToken'] as const;

export class TierRegistry {
  private readonly tiers = new Map<string, ObjectTier>();
  private readonly retiring = new Map<NodeJS.Timeout, ObjectTier>();
  private closed = false;

  constructor(
    private readonly log: Logger,
    private readonly factory: TierFactory = (target) => new S3ObjectTier(target),
  ) {}

  /** The tier named `name`; Unavailable (retryable) until a heartbeat reply has named it. */
  get(name: string): ObjectTier {
    const tier = this.tiers.get(name);
    if (!tier) throw new StrataError('Unavailable', `tier '${name}' is not known to this data node yet`);
    return tier;
  }

  names(): string[] {
    return [...this.tiers.keys()];
  }

  /** Makes the known tiers exactly `targets` (a heartbeat reply's list). */
  update(targets: readonly TierTarget[]): void {
    if (this.closed) return;
    const wanted = new Map<string, TierTarget>();
    for (const target of targets) if (target?.name) wanted.set(target.name, normalize(target));
    for (const [name, tier] of this.tiers) {
      const next = wanted.get(name);
      if (next && sameTarget(tier.target, next)) continue;
      this.tiers.delete(name);
      this.retire(tier);
      if (!next) this.log.info({ tier: name }, 'object tier removed');
    }
    for (const [name, target] of wanted) {
      if (this.tiers.has(name)) continue;
      this.tiers.set(name, this.factory(target));
      // Never the credentials: only where the tier is.
      this.log.info({ tier: name, endpoint: target.endpoint || 'aws', bucket: target.bucket, prefix: target.prefix }, 'object tier configured');
    }
  }

  close(): void {
    this.closed = true;
    for (const [timer, tier] of this.retiring) {
      clearTimeout(timer);
      tier.close();
    }
    this.retiring.clear();
    for (const tier of this.tiers.values()) tier.close();
    this.tiers.clear();
  }

  private retire(tier: ObjectTier): void {
    const timer = setTimeout(() => {
      this.retiring.delete(timer);
      tier.close();
    }, RETIRED_CLOSE_DELAY_MS);
    timer.unref();
    this.retiring.set(timer, tier);
  }
}

/** Proto defaults may leave fields unset on older coordinators: compare and build from full targets. */
function normalize(target: TierTarget): TierTarget {
  return {
    name: target.name,
    endpoint: target.endpoint ?? '',
    region: target.region ?? '',
    bucket: target.bucket ?? '',
    prefix: target.prefix ?? '',
    forcePathStyle: Boolean(target.forcePathStyle),
    accessKeyId: target.accessKeyId ?? '',
    secretAccessKey: target.secretAccessKey ?? '',
    sessionToken: target.sessionToken ?? '',
  };
}

function sameTarget(a: TierTarget, b: TierTarget): boolean {
  return TARGET_FIELDS.every((field) => a[field] === b[field]);
}
