// The tiering RPCs of the Coordinator service. Any coordinator answers them: policies, pins and
// recall requests are written to the KV (policy.ts), where the leader's job picks them up;
// TierStatus scans chunk records and reads the leader's published job status. Configured tiers
// hold credentials: replies name a tier's endpoint, bucket and prefix, never its keys.
import { invalid } from '../../common/errors.js';
import { unaryHandler } from '../../common/grpc.js';
import type { TierTarget } from '../../common/object-tier.js';
import { splitPath } from '../../common/paths.js';
import { scanChunks } from '../healing/scan.js';
import type { Leadership } from '../leader.js';
import type { Kv } from '../meta/kv.js';
import * as k from '../meta/keys.js';
import type { MetaStore } from '../meta/store.js';
import {
  addChunkCounts,
  emptyCounts,
  normalizePrefix,
  resolveTierState,
  setPin,
  setPolicy,
  walkFiles,
  type TierPathState,
  type TierPolicy,
} from './policy.js';
import { readTierStatus, type TierJobStatus } from './status.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire requests are validated field by field below */
type Req = any;

export interface TieringServiceDeps {
  kv: Kv;
  meta: MetaStore;
  leadership: Leadership;
  /** Configured tiers (names, endpoints, buckets, prefixes; the service must not expose credentials). */
  targets: readonly TierTarget[];
  /** The local tiering job: its live status when this coordinator leads, and a nudge to run now. */
  job: { readonly isLeading: boolean; snapshot(): TierJobStatus; poke(): void };
}

/** What `r/<ino>` holds until the leader has brought the subtree back. */
export interface RecallRequest {
  path: string;
  requestedAtMs: number;
}

const HOW_TO_CONFIGURE =
  'start the coordinators with --tier name=s3://bucket/prefix?endpoint=URL (or "tiers" in their config file, or STRATA_TIERS)';

export function tieringService({ kv, meta, leadership, targets, job }: TieringServiceDeps) {
  const configured = new Set(targets.map((t) => t.name));

  const requirePath = (value: unknown): string => {
    if (typeof value !== 'string' || value === '') throw invalid('missing path');
    splitPath(value); // Invalid for a relative path, a bad name, or one too long
    return value;
  };

  const count = (field: string, value: unknown): number => {
    const n = value === undefined || value === null ? 0 : Number(value);
    if (!Number.isSafeInteger(n) || n < 0) throw invalid(`invalid ${field} '${String(value)}': a whole number >= 0`);
    return n;
  };

  const validatePolicy = (wire: Req, cluster: boolean): TierPolicy => {
    if (!wire || typeof wire !== 'object') throw invalid('missing policy (or set clear to remove one)');
    const tier = wire.tier ?? '';
    if (typeof tier !== 'string') throw invalid('invalid tier: not a string');
    if (tier !== '' && !configured.has(tier)) {
      throw invalid(
        configured.size === 0
          ? `unknown tier '${tier}': no object tiers are configured; ${HOW_TO_CONFIGURE}`
          : `unknown tier '${tier}': the configured tiers are ${[...configured].join(', ')}`,
      );
    }
    const rawPrefix = wire.pathPrefix ?? '';
    if (typeof rawPrefix !== 'string') throw invalid('invalid path prefix: not a string');
    if (rawPrefix !== '' && !cluster) throw invalid('a path prefix is only for the cluster-wide policy: set the policy on that directory instead');
    return {
      tier,
      coldAfterMs: count('cold-after (ms)', wire.coldAfterMs),
      minSize: count('min size', wire.minSize),
      pathPrefix: rawPrefix === '' ? '' : normalizePrefix(rawPrefix),
    };
  };

  const settable = async (path: string): Promise<TierPathState> => {
    const state = await resolveTierState(kv, meta, path);
    if (state.attr.type === 'symlink') throw invalid(`${state.path}: a symbolic link; tier the file or directory it points to`);
    return state;
  };

  /** TierPathReply: effective policy and pin of `path`, and its files' chunks, local vs tiered. */
  const pathReply = async (path: string) => {
    const state = await resolveTierState(kv, meta, path);
    const counts = emptyCounts();
    let files = 0;
    for await (const file of walkFiles(kv, meta, state.path)) {
      files++;
      await addChunkCounts(kv, file.ino, counts);
    }
    return {
      path: state.path,
      policy: state.policy ? wirePolicy(state.policy.policy) : null,
      policyFrom: state.policy?.from ?? '',
      pinned: state.pinned,
      pinnedFrom: state.pinnedFrom,
      files,
      ...counts,
    };
  };

  return {
    TierSet: unaryHandler(async (req: Req) => {
      const cluster = !!req.cluster;
      const clear = !!req.clear;
      if (cluster) {
        const path = req.path ?? '';
        if (path !== '' && path !== '/') throw invalid(`the cluster-wide policy takes no path (got '${path}'): limit it with a path prefix`);
        const policy = clear ? undefined : validatePolicy(req.policy, true);
        await setPolicy(kv, k.CLUSTER_POLICY_INO, policy);
        // Answer for the subtree the policy covers, when it exists.
        const covered = policy?.pathPrefix ? await resolveTierState(kv, meta, policy.pathPrefix).then(() => policy.pathPrefix, () => '/') : '/';
        return pathReply(covered);
      }
      const path = requirePath(req.path);
      const policy = clear ? undefined : validatePolicy(req.policy, false);
      const state = await settable(path);
      await setPolicy(kv, state.attr.ino, policy);
      return pathReply(state.path);
    }),

    TierGet: unaryHandler(async (req: Req) => pathReply(requirePath(req.path))),

    TierPin: unaryHandler(async (req: Req) => {
      const state = await settable(requirePath(req.path));
      await setPin(kv, state.attr.ino, !!req.pin);
      return pathReply(state.path);
    }),

    TierRecall: unaryHandler(async (req: Req) => {
      const state = await settable(requirePath(req.path));
      const request: RecallRequest = { path: state.path, requestedAtMs: Date.now() };
      await kv.txn({
        compares: [],
        ops: [
          { type: 'put', key: k.pinKey(state.attr.ino), value: Buffer.from(JSON.stringify({ sinceMs: request.requestedAtMs })) },
          { type: 'put', key: k.recallKey(state.attr.ino), value: Buffer.from(JSON.stringify(request)) },
        ],
      });
      job.poke();
      const counts = emptyCounts();
      for await (const file of walkFiles(kv, meta, state.path)) await addChunkCounts(kv, file.ino, counts);
      const tiered = counts.chunksTiered;
      return {
        chunksTiered: tiered,
        message:
          tiered === 0
            ? `nothing to recall: ${state.path} has no tiered chunks (pinned)`
            : `${tiered} chunk(s) of ${state.path} are coming back from tier(s); pinned so policies leave it local (strata tier unpin ${state.path} undoes that)`,
      };
    }),

    TierStatus: unaryHandler(async () => {
      const inTier = new Map<string, { chunks: number; bytes: number }>();
      let localChunks = 0;
      let localBytes = 0;
      for await (const { record } of scanChunks(kv)) {
        if (record.tier) {
          const sums = inTier.get(record.tier.tier) ?? { chunks: 0, bytes: 0 };
          sums.chunks++;
          sums.bytes += record.tier.storedBytes;
          inTier.set(record.tier.tier, sums);
        } else {
          localChunks++;
          localBytes += record.length;
        }
      }
      const scannedAtMs = Date.now();
      const leader = await leadership.currentLeader().catch(() => '');
      // The leader's own status is current; others read what it last published, if it is the
      // current leader's (a dead leader's counters say nothing about its successor's queue).
      const published = job.isLeading ? job.snapshot() : await readTierStatus(kv);
      const status = published && published.leader === leader ? published : undefined;
      const tiers = targets.map((t) => {
        const seen = status?.targets[t.name];
        const sums = inTier.get(t.name) ?? { chunks: 0, bytes: 0 };
        return { name: t.name, endpoint: t.endpoint, bucket: t.bucket, prefix: t.prefix, ...sums, state: seen?.state ?? 'ok', errors: seen?.errors ?? 0, lastError: seen?.lastError ?? '' };
      });
      // Chunks in a tier this coordinator has no configuration for must not go unseen.
      for (const [name, sums] of inTier) {
        if (configured.has(name)) continue;
        tiers.push({ name, endpoint: '', bucket: '', prefix: '', ...sums, state: 'not configured on this coordinator', errors: 0, lastError: '' });
      }
      return {
        tiers,
        localChunks,
        localBytes,
        queued: status?.queued ?? 0,
        running: status?.running ?? 0,
        recallQueued: status?.recallQueued ?? 0,
        moved: status?.moved ?? 0,
        recalled: status?.recalled ?? 0,
        failed: status?.failed ?? 0,
        objectsDeleted: status?.objectsDeleted ?? 0,
        leader,
        events: status?.events ?? [],
        scannedAtMs,
      };
    }),
  };
}

const wirePolicy = (p: TierPolicy) => ({ tier: p.tier, coldAfterMs: p.coldAfterMs, minSize: p.minSize, pathPrefix: p.pathPrefix });
