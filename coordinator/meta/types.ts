// Namespace records as MetaStore returns them. Stored compactly (meta/keys.ts); these are
// the in-memory shapes every coordinator module shares.

import type { AttrChanges } from '../../common/attr-changes.js';
import type { NodeInfo } from '../../common/node-info.js';
import type { TierCopy } from '../../common/object-tier.js';

export type FileKind = 'file' | 'dir' | 'symlink' | SpecialKind;

/** Special files: metadata only (the kernel serves them; strata stores no bytes for them). */
export type SpecialKind = 'fifo' | 'chardev' | 'blockdev' | 'socket';
export const SPECIAL_KINDS: readonly SpecialKind[] = ['fifo', 'chardev', 'blockdev', 'socket'];

/** Who creates an entry (the caller's uid and gid, from the mount); absent = root. */
export interface Owner {
  uid: number;
  gid: number;
}

export interface Attr {
  ino: number;
  type: FileKind;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  atimeMs: number;
  nlink: number;
  /**
   * A directory's one parent (no directory hard links); a file's: the directory holding one of
   * its names (made, last moved or, once that name went, another name's), which per-path rules
   * judge it by (coordinator/authz/). 0 = not known (made before inodes recorded it, or only
   * names whose directories were not kept remain): the rules then give their most restrictive.
   */
  parent: number;
  /**
   * Regular files with several names: the directory whose quotas it is charged to, when that is
   * not `parent` (its recorded name went: the nearest quota directory then stands for every name,
   * which all lie under the same quotas). Absent = `parent` (every record written before it).
   */
  quotaParent?: number;
  /**
   * The directories of a file's other names (one entry per name, beyond `parent`'s), up to
   * LINKS_KEPT (meta/store.ts): when the recorded name goes, one of these becomes `parent`.
   * Absent on records from before links were kept: their other names' places are not known.
   */
  links?: number[];
  replication: number;
  chunkSize: number;
  target: string;
  chunks: number;
  /** Character and block devices: the device number (Linux encoding, as st_rdev); else 0. */
  rdev: number;
  /**
   * The tenant whose tree holds this inode (common/tenants.ts), absent outside every tenant's:
   * set once at creation from the parent, never changed (a move between tenants is refused), so
   * an inode number alone says whose it is (coordinator/authz/).
   */
  tenant?: string;
  /** Only `/tenants`: each directory made in it is a tenant's root (its name is the tenant). */
  holdsTenants?: boolean;
}

export interface DirEntry {
  name: string;
  ino: number;
  type: FileKind;
  attr?: Attr;
}

export interface ChunkRecord {
  index: number;
  chunkId: string;
  length: number;
  crc32c: number;
  /** Data nodes holding a copy; empty when the bytes are only in an object tier. */
  nodes: string[];
  /** The chunk's verified object in a tier (coordinator/tiering/), when it has one. */
  tier?: TierCopy;
}

export interface NodeRecord extends NodeInfo {
  lastHeartbeatMs: number;
}

/**
 * What an operator decided about a data node. draining: no new chunks, its copies move away;
 * drained: it holds no referenced chunk; removed: forgotten (until it heartbeats again).
 */
export type AdminState = 'draining' | 'drained' | 'removed';

export interface NodeAdmin {
  state: AdminState;
  sinceMs: number;
}

export type SetAttrChanges = AttrChanges;

export interface CreateOptions {
  mode: number;
  replication: number;
  chunkSize: number;
  exclusive: boolean;
  truncate: boolean;
  owner?: Owner;
  /**
   * The gate's mode-bit check, asked once the store knows whether the name is taken: `refusal`
   * answers why the caller may not (undefined: it may), given the directory as read and the
   * existing file (undefined: a new one is about to be made). It is pure, so the store may ask it
   * before it knows (a first attempt assumes the name free); `refuse` makes the error thrown (and
   * logged) for a refusal that stands.
   */
  check?: { refusal(dir: Attr, existing: Attr | undefined): string | undefined; refuse(refusal: string): Error };
}

export interface NamespaceCounts {
  inodes: number;
  directories: number;
  chunks: number;
}

export const ROOT_INO = 1;
