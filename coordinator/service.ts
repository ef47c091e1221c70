// The Coordinator gRPC service: validates each request once, resolves paths, and delegates
// to MetaStore (namespace) and NodeRegistry (placement, liveness). Stateless between calls,
// so any number of coordinators can serve one etcd.
import type * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { invalid, isDir, notDir, StrataError } from '../common/errors.js';
import { strataProto, unaryHandler } from '../common/grpc.js';
import { splitParent, splitPath } from '../common/paths.js';
import { FILE_MAX_BYTES, TIME_MAX_MS, quoted } from '../common/limits.js';
import type { CoordinatorConfig } from '../common/config.js';
import { MIN_CHUNK_BYTES, MAX_CHUNK_BYTES } from '../common/config.js';
import type { Namespace } from './authz/gate.js';
import type { MetaStore } from './meta/store.js';
import { requireAdminRole, type AdminPolicy } from './authz/admin.js';
import type { Attr, Owner, SetAttrChanges } from './meta/types.js';
import { ROOT_INO } from './meta/types.js';
import type { AckPolicy, NodeRegistry } from './nodes.js';
import { toWireAttr, toWireEntry } from './proto-map.js';
import { allocatedAtMs } from './healing/chunk-id.js';
import { healingService, toWireNode, type HealingDeps } from './healing/service.js';
import { tieringService, type TieringServiceDeps } from './tiering/service.js';
import { inodeOps, ownerOf } from './inode-ops.js';
import { quotaService, toWireQuota } from './quota-service.js';
import type { Logger } from '../common/log.js';
import { AUTH_OFF, type Authenticator } from './auth/authenticator.js';
import { guardSessionOps, guardUnaryCalls } from './auth/guard.js';
import { currentScope } from './authz/scope.js';
import { GRANT_MAX_CHUNKS } from '../common/chunk-grants.js';
import type { MasterKeyCheck } from './master-key-check.js';
import type { GrantMinter } from './grant-minter.js';
import { SESSION_DEFAULTS, grpcSessionHandler, sessionAcceptor, type SessionAcceptor, type SessionHooks, type SessionLimits, type SessionOps } from './session.js';

/** What the session stream adds on top of the namespace ops: limits, and hooks/ops for leases. */
export interface SessionDeps {
  limits: SessionLimits;
  hooks?: SessionHooks;
  /** More ops on the stream (lease requests); they override the namespace's of the same name. */
  ops?: SessionOps;
  /** Given the sessions' acceptor, for transports other than the gRPC call (session-tcp.ts). */
  accept?: (acceptor: SessionAcceptor) => void;
  /** The framed-TCP session's address that SessionEndpoint answers; '' or absent = none. */
  endpoint?: () => string;
  /** Each op's request series (common/metrics.ts); absent = ops are not counted. */
  requests?: SessionHooks['requests'];
}

/* eslint-disable @typescript-eslint/no-explicit-any -- wire requests are validated field by field below */
type Req = any;

const MAX_REPLICATION = 16;
const ACK_POLICIES = new Set(['one', 'quorum', 'all']);
const MAX_CORRUPT_PER_HEARTBEAT = 10_000;
const NODE_ID = /^[A-Za-z0-9_.-]{1,64}$/; // = nodes.ts's rule for a heartbeat's node id

/** A file's atime is rewritten on a read only when older than this: tiering policies need no finer. */
const ATIME_GRANULARITY_MS = 60_000;
const TIER_GATEWAYS = 2;
/** How far ahead of this coordinator's clock another coordinator's allocation time may be. */
const CLOCK_SKEW_MS = 60_000;
/** Not the client plane: data nodes' heartbeats and links (node plane), and Session (it authenticates in-stream). */
const NOT_BEARER_CHECKED = new Set(['Heartbeat', 'NodeLink', 'Session']);

/**
 * `meta` is the namespace behind the tenant and rule checks (authz/gate.ts): every namespace call of a
 * request goes through it. `store` is the MetaStore behind it, for the admin's quota calls only
 * (they see the whole namespace, and a new quota's count walks the tree unchecked).
 */
export function coordinatorService(
  meta: Namespace,
  nodes: NodeRegistry,
  config: CoordinatorConfig,
  {
    tiering,
    session = { limits: SESSION_DEFAULTS },
    auth = AUTH_OFF,
    admin,
    grants,
    store,
    log,
    masterKeys,
    keyAdmin = {},
    ...healing
  }: Omit<HealingDeps, 'registry'> & { tiering: TieringServiceDeps; session?: SessionDeps; auth?: Authenticator; admin: AdminPolicy; grants: GrantMinter; store: MetaStore; log?: Logger; masterKeys?: MasterKeyCheck; keyAdmin?: grpc.UntypedServiceImplementation },
) {
  const quotas = quotaService(store, meta, log);
  // GC deletes unreferenced chunks allocated more than gcGraceMs ago (healing/gc.ts); refusing
  // later commits of an id leaves half the grace as margin for clock skew and slow commits.
  const commitWindowMs = config.gcGraceMs / 2;
  const parentOf = async (path: string) => {
    const { parent, name } = splitParent(requireString(path, 'path'));
    const dir = await meta.resolve(parent);
    if (dir.type !== 'dir') throw notDir('/' + parent.join('/'));
    return { dir, name };
  };
  const resolvePath = (path: string) => meta.resolve(splitPath(requireString(path, 'path')));
  const replicasOf = (nodeIds: string[]) =>
    [...nodeIds]
      .sort((a, b) => Number(nodes.isLive(b)) - Number(nodes.isLive(a)))
      .map((nodeId) => ({ nodeId, address: nodes.addressOf(nodeId) ?? '' }))
      .filter((replica) => replica.address !== '');
  // A chunk only in a tier is read through data nodes. The same ones for the same chunk
  // (rendezvous hashing), so their caches hold it; two, so one down costs a retry, not the read.
  const tierGateways = (chunkId: string) =>
    nodes
      .liveNodes()
      .map((n) => ({ nodeId: n.nodeId, address: n.address, rank: crc32c(`${chunkId}/${n.nodeId}`) }))
      .sort((a, b) => b.rank - a.rank)
      .slice(0, TIER_GATEWAYS)
      .map(({ nodeId, address }) => ({ nodeId, address }));
  const statReply = (attr: Attr) => ({ attr: toWireAttr(attr) });
  const ackPolicyOf = (requested: unknown): AckPolicy => {
    const ackPolicy = String(requested || config.ackPolicy);
    if (!ACK_POLICIES.has(ackPolicy)) throw invalid(`invalid ack policy '${ackPolicy}': use one, quorum or all`);
    return ackPolicy as AckPolicy;
  };
  // Each placement carries the write grant for its chunk, for whoever asked (the request's scope: authz/scope.ts).
  const placeChunk = (attr: Attr, ackPolicy: AckPolicy, excludeNodes: string[]) => {
    const placement = nodes.place(attr.replication, ackPolicy, excludeNodes);
    return {
      chunkId: placement.chunkId,
      pipeline: placement.pipeline.map((n) => ({ nodeId: n.nodeId, address: n.address })),
      requiredAcks: placement.requiredAcks,
      grant: grants.mint(currentScope().principal, 'w', [placement.chunkId]),
    };
  };

  const mkdirs = async (components: string[], mode: number, owner?: Owner): Promise<Attr> => {
    let current = await meta.resolve([]);
    for (const [depth, name] of components.entries()) {
      try {
        current = await meta.lookup(current.ino, name);
      } catch (err) {
        if (!(err instanceof StrataError) || err.kind !== 'NotFound') throw err;
        try {
          current = await meta.mkdir(current.ino, name, mode, owner);
        } catch (raced) {
          if (!(raced instanceof StrataError) || raced.kind !== 'Exists') throw raced;
          current = await meta.lookup(current.ino, name);
        }
      }
      if (current.type !== 'dir') throw notDir('/' + components.slice(0, depth + 1).join('/'));
    }
    return current;
  };

  /** Creates (or opens) a file in directory `parent`; with allocate_first_chunk also places chunk 0. */
  const createIn = async (parent: number, name: string, req: Req) => {
    const replication = Number(req.replication) || config.replication;
    if (replication > MAX_REPLICATION) throw invalid(`replication ${replication} is above the maximum ${MAX_REPLICATION}`);
    const chunkSize = Number(req.chunkSize) || config.chunkSize;
    if (chunkSize < MIN_CHUNK_BYTES || chunkSize > MAX_CHUNK_BYTES) {
      throw invalid(`chunk size ${chunkSize} is outside ${MIN_CHUNK_BYTES}..${MAX_CHUNK_BYTES} bytes`);
    }
    const ackPolicy = req.allocateFirstChunk ? ackPolicyOf(req.ackPolicy) : null;
    const attr = await meta.create(parent, name, {
      mode: Number(req.mode) || 0o644,
      replication,
      chunkSize,
      exclusive: !!req.exclusive,
      truncate: !!req.truncate,
      owner: ownerOf(req.owner),
    });
    // An existing file opened without truncate was not checked for write: its first chunk's
    // write grant only to a writer (else the client's AllocateChunk asks, and is refused).
    if (!ackPolicy || attr.type !== 'file' || !(await meta.mayWrite(attr))) return statReply(attr);
    // No placement (no live node) must not fail the create: the client's AllocateChunk reports it.
    let firstChunk = null;
    try {
      firstChunk = placeChunk(attr, ackPolicy, []);
    } catch (err) {
      if (!(err instanceof StrataError) || err.kind !== 'Unavailable') throw err;
    }
    return { ...statReply(attr), firstChunk };
  };

  // The namespace and chunk calls, each a plain function: served both as unary RPCs and as
  // ops on the session stream.
  const calls = {
    Stat: async (req: Req) => statReply(await resolvePath(req.path)),

    ReadDir: async (req: Req) => {
      const dir = await resolvePath(req.path);
      if (dir.type !== 'dir') throw notDir(req.path);
      const { entries, more } = await meta.readdir(dir.ino, String(req.after ?? ''), Number(req.limit) || 0, !!req.withAttrs);
      return { entries: entries.map(toWireEntry), more };
    },

    Mkdir: async (req: Req) => {
      const mode = Number(req.mode) || 0o755;
      const owner = ownerOf(req.owner);
      if (req.parents) return statReply(await mkdirs(splitPath(requireString(req.path, 'path')), mode, owner));
      const { dir, name } = await parentOf(req.path);
      return statReply(await meta.mkdir(dir.ino, name, mode, owner));
    },

    Create: async (req: Req) => {
      const { dir, name } = await parentOf(req.path);
      return createIn(dir.ino, name, req);
    },

    Remove: async (req: Req) => {
      const { dir, name } = await parentOf(req.path);
      await meta.remove(dir.ino, name);
      return {};
    },

    Rename: async (req: Req) => {
      const from = await parentOf(req.from);
      const to = await parentOf(req.to);
      await meta.rename(from.dir.ino, from.name, to.dir.ino, to.name, { noReplace: !!req.noReplace });
      return {};
    },

    Symlink: async (req: Req) => {
      const { dir, name } = await parentOf(req.path);
      return statReply(await meta.symlink(dir.ino, name, requireString(req.target, 'target'), ownerOf(req.owner)));
    },

    SetAttr: async (req: Req) => {
      const attr = await resolvePath(req.path);
      return statReply(await meta.setattr(attr.ino, setAttrChanges(req)));
    },

    AllocateChunk: async (req: Req) => {
      const attr = await meta.attrForWrite(requireIno(req.ino));
      if (attr.type !== 'file') throw attr.type === 'dir' ? isDir(`inode ${attr.ino}`) : invalid(`inode ${attr.ino}: not a regular file`);
      return placeChunk(attr, ackPolicyOf(req.ackPolicy), req.excludeNodes ?? []);
    },

    CommitChunk: async (req: Req) => {
      const chunkId = requireString(req.chunkId, 'chunk_id');
      if (!/^[A-Za-z0-9_-]{1,128}$/.test(chunkId)) throw invalid(`invalid chunk id '${chunkId}'`);
      // Only a chunk allocated within the window may be committed: an id without a time, or one
      // from the future, was never handed out for this write (it may be another file's chunk).
      const allocatedMs = allocatedAtMs(chunkId);
      if (allocatedMs === undefined || allocatedMs > Date.now() + CLOCK_SKEW_MS) {
        throw new StrataError('Conflict', `chunk ${chunkId} was not allocated for this write (AllocateChunk hands out the id to commit)`);
      }
      const ageMs = Date.now() - allocatedMs;
      if (ageMs > commitWindowMs) {
        throw new StrataError('Conflict', `chunk ${chunkId} was allocated ${Math.round(ageMs / 1000)} s ago, past the ${Math.round(commitWindowMs / 1000)} s commit window; allocate a new chunk and write it again`);
      }
      grants.checkCommit(currentScope().principal, req.grant, chunkId, commitWindowMs);
      const index = Number(req.index);
      const length = Number(req.length);
      // The end of the chunk is checked against the file's chunk size in the store; here, what any file allows.
      if (!Number.isSafeInteger(index) || index < 0 || index * MIN_CHUNK_BYTES > FILE_MAX_BYTES) throw invalid(`invalid chunk index ${quoted(req.index)}`);
      if (!Number.isSafeInteger(length) || length < 0 || length > MAX_CHUNK_BYTES) throw invalid(`invalid chunk length ${quoted(req.length)}`);
      const replicas: unknown[] = req.nodes ?? [];
      if (replicas.length > MAX_REPLICATION) throw invalid(`a chunk has at most ${MAX_REPLICATION} replicas, not ${replicas.length}`);
      for (const nodeId of replicas) if (typeof nodeId !== 'string' || !NODE_ID.test(nodeId)) throw invalid(`invalid replica node id ${quoted(nodeId)}`);
      const attr = await meta.commitChunk(requireIno(req.ino), { index, chunkId, length, crc32c: Number(req.crc32c) >>> 0, nodes: replicas as string[] });
      return statReply(attr);
    },

    GetChunks: async (req: Req) => {
      const ino = requireIno(req.ino);
      // At most one grant's worth: the reply's read grant covers every chunk in it.
      const count = Math.min(Number(req.count) || GRANT_MAX_CHUNKS, GRANT_MAX_CHUNKS);
      const { attr, chunks } = await meta.getChunks(ino, Number(req.fromIndex) || 0, count);
      const now = Date.now();
      if (!req.keepAtime && now - attr.atimeMs > ATIME_GRANULARITY_MS) void meta.touchAtime(ino, now).catch(() => undefined);
      return {
        attr: toWireAttr(attr),
        chunks: chunks.map((chunk) => ({
          index: chunk.index,
          chunkId: chunk.chunkId,
          length: chunk.length,
          crc32c: chunk.crc32c,
          replicas: chunk.nodes.length > 0 || !chunk.tier ? replicasOf(chunk.nodes) : tierGateways(chunk.chunkId),
          tier: chunk.tier ?? null,
        })),
        grant: chunks.length > 0 ? grants.mint(currentScope().principal, 'r', chunks.map((chunk) => chunk.chunkId)) : '',
      };
    },
  };

  const sessionOps: SessionOps = {
    stat: calls.Stat,
    readDir: calls.ReadDir,
    mkdir: calls.Mkdir,
    create: calls.Create,
    remove: calls.Remove,
    rename: calls.Rename,
    symlink: calls.Symlink,
    setAttr: calls.SetAttr,
    allocateChunk: calls.AllocateChunk,
    commitChunk: calls.CommitChunk,
    getChunks: calls.GetChunks,
    ...inodeOps(meta, { createIn, setAttrChanges }),
    ...session.ops,
  };

  const acceptSession = sessionAcceptor(sessionOps, config.listen, session.limits, { ...session.hooks, requests: session.requests, guard: (dispatch) => guardSessionOps(dispatch, auth) });
  session.accept?.(acceptSession);

  const service = {
    ...mapValues(calls, (call) => unaryHandler(call)),
    Session: grpcSessionHandler(acceptSession),
    SessionEndpoint: unaryHandler(async () => ({ address: session.endpoint?.() ?? '' })),

    Heartbeat: unaryHandler(async (req: Req) => {
      // A node with a master key none of the cluster's: refused before it is registered or placed on.
      await masterKeys?.check(String(req.nodeId ?? ''), Array.isArray(req.masterKeyIds) ? req.masterKeyIds : []);
      await nodes.heartbeat({
        nodeId: String(req.nodeId ?? ''),
        address: String(req.address ?? ''),
        capacityBytes: Number(req.capacityBytes) || 0,
        usedBytes: Number(req.usedBytes) || 0,
        freeBytes: Number(req.freeBytes) || 0,
        chunks: Number(req.chunks) || 0,
        zone: String(req.zone ?? ''),
        corruptChunks: Array.isArray(req.corruptChunks) ? req.corruptChunks.slice(0, MAX_CORRUPT_PER_HEARTBEAT).map(String) : [],
        scrub: req.scrub
          ? {
              passes: Number(req.scrub.passes) || 0,
              chunksChecked: Number(req.scrub.chunksChecked) || 0,
              bytesChecked: Number(req.scrub.bytesChecked) || 0,
              corruptFound: Number(req.scrub.corruptFound) || 0,
              lastPassMs: Number(req.scrub.lastPassMs) || 0,
            }
          : undefined,
      });
      // The tiers travel to data nodes (which upload and read through them), never to clients;
      // the grant keys' public halves let them check grants (common/chunk-grants.ts).
      return { intervalMs: config.heartbeatIntervalMs, tiers: tiering.targets, grantKeys: grants.publicKeys(), grantTtlMs: config.grantTtlMs };
    }),

    ListNodes: unaryHandler(async () => {
      const list = await nodes.list();
      return { nodes: list.map(toWireNode) };
    }),

    StatFs: unaryHandler(async (req: Req) => {
      const [list, quota, tenant] = await Promise.all([nodes.list(), quotas.nearestFor(req), quotas.tenantFigures()]);
      const live = list.filter((n) => n.live);
      const sum = (field: 'capacityBytes' | 'usedBytes' | 'freeBytes' | 'chunks') => live.reduce((s, n) => s + n[field], 0);
      const wireQuota = quota ? toWireQuota(quota) : null;
      if (tenant) {
        // A tenant's caller sees its tenant, never the cluster's totals: used = the logical size
        // of its files, free = what is left of its byte quota (never more than the cluster has
        // free), size = its quota, else used + free (so df's used is the tenant's); files = its inodes.
        const { usage, limitBytes } = tenant;
        const freeBytes = limitBytes ? Math.min(sum('freeBytes'), Math.max(0, limitBytes - usage.bytes)) : sum('freeBytes');
        return {
          capacityBytes: limitBytes || usage.bytes + freeBytes,
          usedBytes: usage.bytes,
          freeBytes,
          files: usage.files,
          directories: 0,
          chunks: 0,
          liveNodes: live.length,
          deadNodes: list.length - live.length,
          quota: wireQuota,
          tenant: tenant.tenant,
        };
      }
      const counts = await meta.counts();
      return {
        capacityBytes: sum('capacityBytes'),
        usedBytes: sum('usedBytes'),
        freeBytes: sum('freeBytes'),
        files: counts.inodes - counts.directories,
        directories: counts.directories,
        chunks: counts.chunks,
        liveNodes: live.length,
        deadNodes: list.length - live.length,
        quota: wireQuota,
        tenant: '',
      };
    }),
    ...quotas.handlers,

    ...healingService({ ...healing, registry: nodes }),
    ...tieringService(tiering),
    ...keyAdmin,
  } satisfies grpc.UntypedServiceImplementation;
  // Every client-plane unary call proves who it is, here, once: no handler sees an unchecked call.
  // Inside that, admin operations check the caller's role.
  return guardUnaryCalls(requireAdminRole(service, admin), strataProto.Coordinator.service, auth, NOT_BEARER_CHECKED);
}

/**
 * SetAttr's changes: proto3 `optional`, so an unset field is absent, not zero. Sizes and times
 * are bounded (a size of 2^64 once made `strata ls -l` of its directory fail for everyone).
 */
function setAttrChanges(req: Req): SetAttrChanges {
  const pick = (field: string, max = 0xffffffff) => {
    if (req[field] === undefined || req[field] === null) return undefined;
    const value = Number(req[field]);
    if (!Number.isSafeInteger(value) || value < 0 || value > max) throw invalid(`invalid ${field} ${quoted(req[field])}: a whole number 0..${max}`);
    return value;
  };
  const now = Date.now();
  const atimeNow = req.atimeNow === true;
  const mtimeNow = req.mtimeNow === true;
  return {
    mode: pick('mode'),
    uid: pick('uid'),
    gid: pick('gid'),
    mtimeMs: mtimeNow ? now : pick('mtimeMs', TIME_MAX_MS),
    atimeMs: atimeNow ? now : pick('atimeMs', TIME_MAX_MS),
    size: pick('size', FILE_MAX_BYTES),
    ...(atimeNow && { atimeNow }),
    ...(mtimeNow && { mtimeNow }),
  };
}

function mapValues<T, U>(object: Record<string, T>, fn: (value: T) => U): Record<string, U> {
  return Object.fromEntries(Object.entries(object).map(([key, value]) => [key, fn(value)]));
}

export function requireString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '') throw invalid(`missing ${field}`);
  return value;
}

export function requireIno(value: unknown): number {
  const ino = Number(value);
  if (!Number.isSafeInteger(ino) || ino < ROOT_INO) throw invalid(`invalid inode number '${value}'`);
  return ino;
}
