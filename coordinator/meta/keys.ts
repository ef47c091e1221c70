// Key layout and value encoding of the namespace in the KV seam. Values are compact JSON:
// a file's inode stays a few hundred bytes, and a big file is many `c/` keys, never one.
//
//   i/<ino>              inode attributes
//   t/<ino>              directory content stamp: bumped by every entry added or removed, so
//                        rmdir/rename-over-dir can compare one revision to prove "still empty"
//                        while creators in one directory never conflict with each other
//   s/<ino>              a directory's subdirectory count (its nlink is 2 + this); absent = 0.
//                        Only mkdir, rmdir and directory renames touch it, so file creators
//                        in a directory never conflict on it
//   d/<parent>/<name>    directory entry -> { ino, type }
//   c/<ino>/<index>      chunk record (index zero-padded so ranges sort numerically)
//   n/<nodeId>           data node record (last heartbeat seen by any coordinator)
//   a/<nodeId>           data node admin state set by an operator: draining, drained, removed
//                        (apart from n/, which heartbeats overwrite without reading)
//   p/<ino>              tiering policy set on a directory or file (p/0: the cluster-wide one)
//   k/<ino>              pin: keep this file or subtree local, never tiered
//   r/<ino>              a recall asked of the leader for this file or subtree, until it is done
//   h/tier               the leader's tiering queue, counters and recent events
//   h/status             the leader's repair queue and recent events, for `strata health` anywhere
//   h/rebalance          a rebalance asked of the leader (threshold), until it is done
//   x/ino                next unallocated inode number (handed out in batches)
//   g/keys               the chunk grant signing keys (coordinator/grant-keys.ts)
//   g/master-keys        ids (fingerprints, never keys) of the master keys data nodes encrypt with (coordinator/master-key-check.ts)
//   q/<ino>              a directory's quota: its limits and the usage under it, rewritten in the
//                        same txn as every change that moves the usage (coordinator/meta/quotas.ts)
//   q/epoch              bumped whenever the set of quota directories above some directory changes
//                        (a quota set or removed, a quota directory moved); every change that
//                        charges quotas compares it, so none charges the quotas of a stale set
//   m/<address>          etcd only: a live coordinator, under its own etcd lease (coordinator/lease-peers.ts)
//   election/strata-leader/<lease>  etcd only: the leader campaign's keys (coordinator/leader.ts)
import type { Attr, ChunkRecord, FileKind, NodeAdmin, NodeRecord } from './types.js';
import { prefixEnd } from './kv.js';

export const inodeKey = (ino: number) => `i/${ino}`;
export const stampKey = (ino: number) => `t/${ino}`;
export const subdirsKey = (ino: number) => `s/${ino}`;
export const dentryPrefix = (parent: number) => `d/${parent}/`;
export const dentryKey = (parent: number, name: string) => `d/${parent}/${name}`;
export const chunkPrefix = (ino: number) => `c/${ino}/`;
export const chunkKey = (ino: number, index: number) => `c/${ino}/${String(index).padStart(12, '0')}`;
export const nodeKey = (nodeId: string) => `n/${nodeId}`;
export const NODE_PREFIX = 'n/';
export const adminKey = (nodeId: string) => `a/${nodeId}`;
export const ADMIN_PREFIX = 'a/';
export const CHUNK_PREFIX = 'c/';
export const DENTRY_PREFIX = 'd/';
export const HEALTH_STATUS_KEY = 'h/status';
export const TIER_STATUS_KEY = 'h/tier';
export const policyKey = (ino: number) => `p/${ino}`;
export const POLICY_PREFIX = 'p/';
/** Where the cluster-wide policy lives (no inode is 0). */
export const CLUSTER_POLICY_INO = 0;
export const pinKey = (ino: number) => `k/${ino}`;
export const PIN_PREFIX = 'k/';
export const recallKey = (ino: number) => `r/${ino}`;
export const RECALL_PREFIX = 'r/';
export const REBALANCE_KEY = 'h/rebalance';
export const INODE_COUNTER_KEY = 'x/ino';
export const GRANT_KEYS_KEY = 'g/keys';
export const MASTER_KEYS_KEY = 'g/master-keys';
export const MEMBER_PREFIX = 'm/';
export const memberKey = (address: string) => `m/${address}`;
/** What every path lookup reads: worth a coordinator-side cache on etcd. */
export const CACHED_PREFIXES = ['d/', 'i/', 't/', 's/', 'q/'];
export const quotaKey = (ino: number) => `q/${ino}`;
export const QUOTA_PREFIX = 'q/';
export const QUOTA_EPOCH_KEY = 'q/epoch';

export const rangeOf = (prefix: string) => ({ start: prefix, end: prefixEnd(prefix) });

const KIND_CODE: Record<FileKind, string> = { file: 'f', dir: 'd', symlink: 'l', fifo: 'p', chardev: 'c', blockdev: 'b', socket: 's' };
const CODE_KIND: Record<string, FileKind> = Object.fromEntries(Object.entries(KIND_CODE).map(([kind, code]) => [code, kind as FileKind]));

const json = (value: unknown) => Buffer.from(JSON.stringify(value));

export function encodeAttr(attr: Attr): Buffer {
  const { ino: _ino, type, rdev, ...rest } = attr;
  // rdev only where it means something: every other inode stays as small as before.
  return json(rdev ? { ...rest, rdev, type: KIND_CODE[type] } : { ...rest, type: KIND_CODE[type] });
}

export function decodeAttr(ino: number, value: Buffer): Attr {
  const raw = JSON.parse(value.toString());
  // Records written before special files have no rdev.
  return { rdev: 0, ...raw, ino, type: CODE_KIND[raw.type] };
}

export function encodeDentry(ino: number, type: FileKind): Buffer {
  return json({ i: ino, t: KIND_CODE[type] });
}

export function decodeDentry(value: Buffer): { ino: number; type: FileKind } {
  const raw = JSON.parse(value.toString());
  return { ino: raw.i, type: CODE_KIND[raw.t] };
}

export function encodeChunk(record: ChunkRecord): Buffer {
  const { tier } = record;
  const t = tier ? { n: tier.tier, k: tier.key, s: tier.storedBytes, c: tier.crc32c } : undefined;
  return json({ id: record.chunkId, l: record.length, c: record.crc32c, n: record.nodes, t });
}

export function decodeChunk(index: number, value: Buffer): ChunkRecord {
  const raw = JSON.parse(value.toString());
  const record: ChunkRecord = { index, chunkId: raw.id, length: raw.l, crc32c: raw.c, nodes: raw.n };
  if (raw.t) record.tier = { tier: raw.t.n, key: raw.t.k, storedBytes: raw.t.s, crc32c: raw.t.c };
  return record;
}

export const chunkIndexFromKey = (key: string) => Number(key.slice(key.lastIndexOf('/') + 1));

export const encodeNode = (node: NodeRecord) => json(node);
export const decodeNode = (value: Buffer) => JSON.parse(value.toString()) as NodeRecord;
export const encodeNumber = (n: number) => Buffer.from(String(n));
export const decodeNumber = (value: Buffer) => Number(value.toString());
export const encodeAdmin = (admin: NodeAdmin) => json(admin);
export const decodeAdmin = (value: Buffer) => JSON.parse(value.toString()) as NodeAdmin;
/** `c/<ino>/<index>` -> ino. */
export const inoFromChunkKey = (key: string) => Number(key.slice(2, key.indexOf('/', 2)));
/** `d/<parent>/<name>` -> parent and name. */
export function splitDentryKey(key: string): { parent: number; name: string } {
  const slash = key.indexOf('/', 2);
  return { parent: Number(key.slice(2, slash)), name: key.slice(slash + 1) };
}
