// The SDK's tiering calls: policies, pins, recall and tier status, as typed results (numbers,
// never Longs or strings). Strata's tier* methods delegate here.
import type { CoordinatorClient } from './coordinator-client.js';

/** When a file's chunks move to an object tier. Every condition set must hold. */
export interface TierPolicy {
  /** Target tier (as configured on the coordinators); '' = never tier (overrides an inherited policy). */
  tier: string;
  /** Not read and not written for this long; 0 = no age condition. */
  coldAfterMs: number;
  /** Files of at least this many bytes; 0 = any size. */
  minSize: number;
  /** Cluster-wide policy only: files under this path ('' = everywhere). */
  pathPrefix: string;
}

export interface TierPathInfo {
  path: string;
  /** The effective policy; undefined when none applies. */
  policy?: TierPolicy;
  /** Where it is set: a path, '(cluster)', or '' when none applies. */
  policyFrom: string;
  pinned: boolean;
  /** The path whose pin applies ('' = not pinned). */
  pinnedFrom: string;
  /** Files under the path (the file itself for a file). */
  files: number;
  chunksLocal: number;
  chunksTiered: number;
  bytesLocal: number;
  bytesTiered: number;
}

export interface TierRecallResult {
  /** Chunks under the path still in a tier when asked. */
  chunksTiered: number;
  message: string;
}

export interface TierInfo {
  name: string;
  endpoint: string;
  bucket: string;
  prefix: string;
  chunks: number;
  /** Object bytes (compressed) in this tier. */
  bytes: number;
  /** 'ok' | 'unreachable: <reason>; retrying in Ns' | ... */
  state: string;
  errors: number;
  lastError: string;
}

export interface TierStatusReport {
  tiers: TierInfo[];
  localChunks: number;
  localBytes: number;
  queued: number;
  running: number;
  recallQueued: number;
  moved: number;
  recalled: number;
  failed: number;
  objectsDeleted: number;
  /** The coordinator running the tiering job ('' = none elected). */
  leader: string;
  events: { atMs: number; kind: string; message: string }[];
  scannedAtMs: number;
}

/* eslint-disable @typescript-eslint/no-explicit-any -- wire replies are converted field by field */
type Wire = any;

const num = (v: unknown) => Number(v ?? 0);

const toPolicy = (p: Wire): TierPolicy => ({ tier: String(p.tier ?? ''), coldAfterMs: num(p.coldAfterMs), minSize: num(p.minSize), pathPrefix: String(p.pathPrefix ?? '') });

function toPathInfo(r: Wire): TierPathInfo {
  const info: TierPathInfo = {
    path: String(r.path),
    policyFrom: String(r.policyFrom ?? ''),
    pinned: !!r.pinned,
    pinnedFrom: String(r.pinnedFrom ?? ''),
    files: num(r.files),
    chunksLocal: num(r.chunksLocal),
    chunksTiered: num(r.chunksTiered),
    bytesLocal: num(r.bytesLocal),
    bytesTiered: num(r.bytesTiered),
  };
  if (r.policy) info.policy = toPolicy(r.policy);
  return info;
}

function toStatus(r: Wire): TierStatusReport {
  return {
    tiers: (r.tiers ?? []).map((t: Wire) => ({
      name: String(t.name),
      endpoint: String(t.endpoint ?? ''),
      bucket: String(t.bucket ?? ''),
      prefix: String(t.prefix ?? ''),
      chunks: num(t.chunks),
      bytes: num(t.bytes),
      state: String(t.state ?? ''),
      errors: num(t.errors),
      lastError: String(t.lastError ?? ''),
    })),
    localChunks: num(r.localChunks),
    localBytes: num(r.localBytes),
    queued: num(r.queued),
    running: num(r.running),
    recallQueued: num(r.recallQueued),
    moved: num(r.moved),
    recalled: num(r.recalled),
    failed: num(r.failed),
    objectsDeleted: num(r.objectsDeleted),
    leader: String(r.leader ?? ''),
    events: (r.events ?? []).map((e: Wire) => ({ atMs: num(e.atMs), kind: String(e.kind), message: String(e.message) })),
    scannedAtMs: num(r.scannedAtMs),
  };
}

export class TieringCalls {
  constructor(private readonly coordinator: CoordinatorClient) {}

  async set(path: string, policy: Partial<TierPolicy> & { tier: string }, options: { cluster?: boolean } = {}): Promise<TierPathInfo> {
    const wire = { tier: policy.tier, coldAfterMs: policy.coldAfterMs ?? 0, minSize: policy.minSize ?? 0, pathPrefix: policy.pathPrefix ?? '' };
    return toPathInfo(await this.coordinator.call('TierSet', { path: options.cluster ? '' : path, cluster: !!options.cluster, policy: wire, clear: false }));
  }

  async clear(target: string | { cluster: true }): Promise<TierPathInfo> {
    const cluster = typeof target !== 'string';
    return toPathInfo(await this.coordinator.call('TierSet', { path: cluster ? '' : target, cluster, clear: true }));
  }

  async get(path: string): Promise<TierPathInfo> {
    return toPathInfo(await this.coordinator.call('TierGet', { path }));
  }

  async pin(path: string, pin: boolean): Promise<TierPathInfo> {
    return toPathInfo(await this.coordinator.call('TierPin', { path, pin }));
  }

  async recall(path: string): Promise<TierRecallResult> {
    const r: Wire = await this.coordinator.call('TierRecall', { path });
    return { chunksTiered: num(r.chunksTiered), message: String(r.message ?? '') };
  }

  async status(): Promise<TierStatusReport> {
    return toStatus(await this.coordinator.call('TierStatus', {}));
  }
}
