// Tiering policies and pins: where they are stored (p/<ino>, k/<ino>; p/0 the cluster-wide
// policy), which one applies to a file, and a bounded walk of a subtree with each file's
// effective policy and pin. Any coordinator answers the Tier RPCs with these; the leader's job
// (mover.ts) decides what to move with walkFiles + policyMatches.
//
// Resolution: the nearest policy on the path wins (the file's own, then its parent directories
// up to the root); `tier: ''` is "never tier" and stops inheritance. Where no directory or file
// policy applies, the cluster policy does, to files under its pathPrefix. A pin on the file or
// on any directory above it keeps it local whatever the policy says.
import { scanFileChunks } from '../healing/scan.js';
import { StrataError, notDir, notFound } from '../../common/errors.js';
import { splitPath } from '../../common/paths.js';
import type { Kv, KvEntry } from '../meta/kv.js';
import * as k from '../meta/keys.js';
import type { MetaStore } from '../meta/store.js';
import { ROOT_INO, type Attr } from '../meta/types.js';

export interface TierPolicy {
  /** Target tier name; '' = never tier (overrides an inherited policy). */
  tier: string;
  /** Not read and not written for this long; 0 = no age condition. */
  coldAfterMs: number;
  /** Files of at least this many bytes; 0 = any size. */
  minSize: number;
  /** Cluster-wide policy only: files under this absolute path ('' = everywhere). */
  pathPrefix: string;
}

export interface EffectivePolicy {
  policy: TierPolicy;
  /** Where it is set: a path, or '(cluster)'. */
  from: string;
}

export interface TieredFile {
  ino: number;
  path: string;
  attr: Attr;
  policy?: EffectivePolicy;
  pinned: boolean;
  /** The path whose pin applies ('' = not pinned). */
  pinnedFrom: string;
}

export const CLUSTER_FROM = '(cluster)';
/** Directory entries read per page by walkFiles (one page per level of depth in memory). */
export const WALK_PAGE = 1000;

// ------------------------------------------------------------------ storage

interface StoredPolicy {
  tier: string;
  coldAfterMs: number;
  minSize: number;
  pathPrefix?: string;
}

export function encodePolicy(policy: TierPolicy): Buffer {
  const stored: StoredPolicy = { tier: policy.tier, coldAfterMs: policy.coldAfterMs, minSize: policy.minSize };
  if (policy.pathPrefix) stored.pathPrefix = policy.pathPrefix;
  return Buffer.from(JSON.stringify(stored));
}

export function decodePolicy(value: Buffer): TierPolicy {
  const raw = JSON.parse(value.toString()) as Partial<StoredPolicy>;
  return { tier: String(raw.tier ?? ''), coldAfterMs: Number(raw.coldAfterMs) || 0, minSize: Number(raw.minSize) || 0, pathPrefix: String(raw.pathPrefix ?? '') };
}

/** Sets (or with `undefined` removes) the policy of an inode; ino 0 = the cluster-wide policy. */
export async function setPolicy(kv: Kv, ino: number, policy: TierPolicy | undefined): Promise<void> {
  const key = k.policyKey(ino);
  await kv.txn({ compares: [], ops: [policy ? { type: 'put', key, value: encodePolicy(policy) } : { type: 'delete', key }] });
}

/** Pins (keeps local) or unpins a file or directory. */
export async function setPin(kv: Kv, ino: number, pinned: boolean): Promise<void> {
  const key = k.pinKey(ino);
  await kv.txn({
    compares: [],
    ops: [pinned ? { type: 'put', key, value: Buffer.from(JSON.stringify({ sinceMs: Date.now() })) } : { type: 'delete', key }],
  });
}

export async function readClusterPolicy(kv: Kv): Promise<TierPolicy | undefined> {
  const [entry] = await kv.getMany([k.policyKey(k.CLUSTER_POLICY_INO)]);
  return entry ? decodePolicy(entry.value) : undefined;
}

// ------------------------------------------------------------------ resolution

/** What a directory hands down to everything below it. */
interface Inherited {
  /** The nearest file or directory policy on the path so far. */
  policy?: EffectivePolicy;
  pinnedFrom: string;
}

/** Normalises a path prefix: '' and '/' = everywhere (''), else '/a/b' without a trailing slash. */
export function normalizePrefix(prefix: string): string {
  const components = splitPath(prefix);
  return components.length === 0 ? '' : '/' + components.join('/');
}

export function underPrefix(path: string, prefix: string): boolean {
  return prefix === '' || path === prefix || path.startsWith(prefix + '/');
}

const joinPath = (dir: string, name: string) => (dir === '/' ? `/${name}` : `${dir}/${name}`);

/** A child's inheritance given its own p/ and k/ rows. */
function inherit(parent: Inherited, path: string, policyRow: KvEntry | undefined, pinRow: KvEntry | undefined): Inherited {
  return {
    policy: policyRow ? { policy: decodePolicy(policyRow.value), from: path } : parent.policy,
    pinnedFrom: parent.pinnedFrom || (pinRow ? path : ''),
  };
}

/** The effective policy of a path: its own or inherited one, else the cluster's when the path is under its prefix. */
function effective(inherited: Inherited, path: string, cluster: TierPolicy | undefined): EffectivePolicy | undefined {
  if (inherited.policy) return inherited.policy;
  if (cluster && underPrefix(path, cluster.pathPrefix)) return { policy: cluster, from: CLUSTER_FROM };
  return undefined;
}

export interface TierPathState {
  /** The normalised absolute path ('/' for the root). */
  path: string;
  attr: Attr;
  policy?: EffectivePolicy;
  pinned: boolean;
  pinnedFrom: string;
}

interface Resolved extends TierPathState {
  inherited: Inherited;
  cluster: TierPolicy | undefined;
}

async function resolveWithChain(kv: Kv, meta: MetaStore, path: string): Promise<Resolved> {
  const components = splitPath(path);
  const label = '/' + components.join('/');
  // The inode chain from the root, reading dentries (as MetaStore.resolve does), then every
  // policy and pin on it in one read.
  const chain: { ino: number; path: string }[] = [{ ino: ROOT_INO, path: '/' }];
  for (const [depth, name] of components.entries()) {
    const parent = chain[chain.length - 1]!;
    const [dentry] = await kv.getMany([k.dentryKey(parent.ino, name)]);
    if (!dentry) throw notFound(label);
    const child = k.decodeDentry(dentry.value);
    if (child.type !== 'dir' && depth < components.length - 1) throw notDir('/' + components.slice(0, depth + 1).join('/'));
    chain.push({ ino: child.ino, path: joinPath(parent.path, name) });
  }
  const target = chain[chain.length - 1]!;
  const [attr, rows] = await Promise.all([
    meta.getattr(target.ino).catch((err: unknown) => {
      throw err instanceof StrataError && err.kind === 'NotFound' ? notFound(label) : err;
    }),
    kv.getMany([k.policyKey(k.CLUSTER_POLICY_INO), ...chain.flatMap((c) => [k.policyKey(c.ino), k.pinKey(c.ino)])]),
  ]);
  const cluster = rows[0] ? decodePolicy(rows[0].value) : undefined;
  let inherited: Inherited = { pinnedFrom: '' };
  chain.forEach((c, i) => (inherited = inherit(inherited, c.path, rows[1 + 2 * i], rows[2 + 2 * i])));
  const policy = effective(inherited, target.path, cluster);
  return { path: target.path, attr, policy, pinned: inherited.pinnedFrom !== '', pinnedFrom: inherited.pinnedFrom, inherited, cluster };
}

/** A path's attributes, effective policy and pin. NotFound / NotDir / Invalid as path lookups are. */
export async function resolveTierState(kv: Kv, meta: MetaStore, path: string): Promise<TierPathState> {
  const { inherited: _inherited, cluster: _cluster, ...state } = await resolveWithChain(kv, meta, path);
  return state;
}

/** Whether a policy says to move this file to its tier now. */
export function policyMatches(file: TieredFile, nowMs: number): boolean {
  const policy = file.policy?.policy;
  if (!policy || policy.tier === '' || file.pinned || file.attr.type !== 'file') return false;
  if (file.attr.size < policy.minSize) return false;
  return policy.coldAfterMs === 0 || Math.max(file.attr.atimeMs, file.attr.mtimeMs) <= nowMs - policy.coldAfterMs;
}

// ------------------------------------------------------------------ walk

/**
 * Every file at or below `path` (a file path yields just it), with effective policy and pin,
 * depth first, paging readdir (WALK_PAGE entries per level, one read of their policies and pins
 * per page). Not one snapshot: entries changed during the walk may be seen or missed, and a
 * directory removed during the walk is skipped. Symbolic links are not files: never yielded.
 */
export async function* walkFiles(kv: Kv, meta: MetaStore, path: string, pageSize = WALK_PAGE): AsyncGenerator<TieredFile> {
  const root = await resolveWithChain(kv, meta, path);
  if (root.attr.type === 'file') {
    yield { ino: root.attr.ino, path: root.path, attr: root.attr, policy: root.policy, pinned: root.pinned, pinnedFrom: root.pinnedFrom };
    return;
  }
  if (root.attr.type !== 'dir') return;
  yield* walkDir(kv, meta, root.attr.ino, root.path, root.inherited, root.cluster, pageSize);
}

async function* walkDir(
  kv: Kv,
  meta: MetaStore,
  dirIno: number,
  dirPath: string,
  inherited: Inherited,
  cluster: TierPolicy | undefined,
  pageSize: number,
): AsyncGenerator<TieredFile> {
  let after = '';
  for (;;) {
    let page;
    try {
      page = await meta.readdir(dirIno, after, pageSize, true);
    } catch (err) {
      // Removed (or replaced) while we walked: nothing left below it to tier.
      if (err instanceof StrataError && (err.kind === 'NotFound' || err.kind === 'NotDir')) return;
      throw err;
    }
    const { entries, more } = page;
    if (entries.length === 0) return;
    const rows = await kv.getMany(entries.flatMap((e) => [k.policyKey(e.ino), k.pinKey(e.ino)]));
    for (const [i, entry] of entries.entries()) {
      if (!entry.attr) continue; // gone between the two reads
      const path = joinPath(dirPath, entry.name);
      const mine = inherit(inherited, path, rows[2 * i], rows[2 * i + 1]);
      if (entry.type === 'dir') {
        yield* walkDir(kv, meta, entry.ino, path, mine, cluster, pageSize);
      } else if (entry.type === 'file') {
        const pinned = mine.pinnedFrom !== '';
        yield { ino: entry.ino, path, attr: entry.attr, policy: effective(mine, path, cluster), pinned, pinnedFrom: mine.pinnedFrom };
      }
    }
    if (!more) return;
    after = entries[entries.length - 1]!.name;
  }
}

// ------------------------------------------------------------------ chunk counts

export interface ChunkCounts {
  chunksLocal: number;
  chunksTiered: number;
  bytesLocal: number;
  bytesTiered: number;
}

export const emptyCounts = (): ChunkCounts => ({ chunksLocal: 0, chunksTiered: 0, bytesLocal: 0, bytesTiered: 0 });

/** Adds a file's chunk records (paged) to `into`: tiered = the record has a tier copy; bytes = raw length. */
export async function addChunkCounts(kv: Kv, ino: number, into: ChunkCounts, pageSize = WALK_PAGE): Promise<void> {
  for await (const { record } of scanFileChunks(kv, ino, pageSize)) {
    if (record.tier) {
      into.chunksTiered++;
      into.bytesTiered += record.length;
    } else {
      into.chunksLocal++;
      into.bytesLocal += record.length;
    }
  }
}
