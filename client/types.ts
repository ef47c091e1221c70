// The SDK's public shapes (wire messages converted once, in client/wire.ts).
import type { ScrubStatus } from '../common/node-info.js';

export type { ScrubStatus };

export type FileType = 'file' | 'directory' | 'symlink' | SpecialFileType;

/** Special files: a name and attributes only (strata stores no bytes for them). */
export type SpecialFileType = 'fifo' | 'char-device' | 'block-device' | 'socket';

export interface FileStat {
  ino: number;
  type: FileType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  atimeMs: number;
  nlink: number;
  replication: number;
  chunkSize: number;
  chunks: number;
  /** Symlinks: where the link points. */
  target: string;
  /** Character and block devices: the device number (Linux st_rdev encoding); else 0. */
  rdev: number;
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
}

export type { AttrChanges } from '../common/attr-changes.js';

export interface DirEntry {
  name: string;
  ino: number;
  type: FileType;
  stat?: FileStat;
}

export interface NodeStatus {
  nodeId: string;
  address: string;
  state: 'live' | 'dead' | 'draining' | 'drained';
  capacityBytes: number;
  usedBytes: number;
  freeBytes: number;
  chunks: number;
  zone: string;
  lastHeartbeatMs: number;
  /** Chunks the node found corrupt and quarantined, until a good copy replaces them. */
  corruptChunks?: string[];
  /** Background scrub counters since the node started (absent until its first heartbeat after a coordinator restart). */
  scrub?: ScrubStatus | null;
}

/** `strata health`: chunk states across the cluster and what the leader's repair queue is doing. */
export interface HealthReport {
  chunks: number;
  healthy: number;
  underReplicated: number;
  missing: number;
  corrupt: number;
  overReplicated: number;
  files: { path: string; ino: number; state: 'under-replicated' | 'missing' | 'corrupt'; chunks: number }[];
  queue: { queued: number; running: number; repaired: number; failed: number; bytesCopied: number; trimmed: number; gcDeleted: number; rebalance: string };
  /** The coordinator running the jobs ('' = none elected). */
  leader: string;
  events: { atMs: number; kind: string; message: string }[];
  scannedAtMs: number;
}

export interface FsStats {
  capacityBytes: number;
  usedBytes: number;
  freeBytes: number;
  files: number;
  directories: number;
  chunks: number;
  liveNodes: number;
  deadNodes: number;
  /** The nearest quota at or above the path asked about (strata quota), if any. */
  quota?: QuotaInfo | null;
  /**
   * Set for a tenant's caller: the figures are its tenant's (used = its files' logical size,
   * capacity = its quota, else used + free; files = its inodes), not the cluster's. '' = the cluster's.
   */
  tenant?: string;
}

/** A directory's quota: limits (0 = none) and the usage under it (logical bytes of files, inodes). */
export interface QuotaInfo {
  path: string;
  ino: number;
  limitBytes: number;
  limitFiles: number;
  usedBytes: number;
  usedFiles: number;
}

export type AckPolicy = 'one' | 'quorum' | 'all';

export interface WriteOptions {
  /** Copies of each chunk; default: the coordinator's (3). */
  replication?: number;
  /** Bytes per chunk; default: the coordinator's (8 MiB). */
  chunkSize?: number;
  /** Replicas that must fsync before a chunk counts as written; default: the coordinator's (all). */
  ackPolicy?: AckPolicy;
  mode?: number;
  /** Fail with Exists when the path is taken. */
  exclusive?: boolean;
  /** Reports bytes acknowledged so far (for progress bars). */
  onProgress?: (bytesWritten: number) => void;
}

export interface ReadOptions {
  /** First byte to read (inclusive); default 0. */
  start?: number;
  /** Last byte to read (inclusive, like fs.createReadStream); default: end of file. */
  end?: number;
  /**
   * Not an access: the file's atime stays as it is (like O_NOATIME). For backups and checks,
   * which would otherwise make every file look recently read to "cold after" tiering policies.
   */
  keepAtime?: boolean;
}

export type { RewrapPage } from '../common/chunk-rewrap.js';
