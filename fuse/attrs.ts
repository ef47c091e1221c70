// Attributes as the kernel wants them: file type bits, the owner override, and the size and
// mtime of files this mount is writing (unstored bytes count; the cluster does not know them yet).
import type Fuse from 'fuse-native';
import type { FileStat, FileType, FsStats } from '../client/index.js';
import type { MountContext } from './context.js';

/** S_IFMT bits of each type, as st_mode carries them. */
export const TYPE_BITS: Record<FileType, number> = {
  file: 0o100000, directory: 0o040000, symlink: 0o120000, fifo: 0o010000, 'char-device': 0o020000, 'block-device': 0o060000, socket: 0o140000,
};
/** Matches max_write: tools size their I/O by st_blksize. */
export const BLOCK_BYTES = 128 * 1024;
const UINT32_MAX = 0xffffffff;

export function toFuseStat(ctx: MountContext, stat: FileStat): Fuse.Stat {
  const open = stat.type === 'file' ? ctx.handles.fileOf(stat.ino) : undefined;
  const size = open ? open.size : stat.size;
  const modifiedMs = Math.max(stat.mtimeMs, open?.modifiedMs ?? 0);
  // Holes take no space: a file has at most `chunks` chunks stored (du shows sparse files small).
  const storedBytes = open ? size : Math.min(size, stat.chunks * stat.chunkSize);
  return {
    mode: TYPE_BITS[stat.type] | (stat.mode & 0o7777),
    uid: ctx.config.uid ?? stat.uid,
    gid: ctx.config.gid ?? stat.gid,
    size,
    nlink: stat.nlink || 1,
    blksize: BLOCK_BYTES,
    blocks: Math.ceil((stat.type === 'file' ? storedBytes : size) / 512),
    atime: stat.atimeMs,
    mtime: modifiedMs,
    ctime: Math.max(stat.ctimeMs, modifiedMs),
  };
}

/** For '.' and '..' in listings: only the type matters there. */
export function directoryStat(): Fuse.Stat {
  const now = Date.now();
  return { mode: TYPE_BITS.directory | 0o755, uid: 0, gid: 0, size: 0, nlink: 2, atime: now, mtime: now, ctime: now };
}

/**
 * Cluster capacity as statvfs, or, under a quota, the quota's limits and usage (as df shows a
 * directory quota): size = the byte limit, used = its usage, free = what is left of it (never more
 * than the cluster has free); files likewise. The binding carries 32-bit counts: big clusters get
 * bigger blocks.
 */
export function toStatFs(fs: FsStats): Fuse.StatFs {
  const quota = fs.quota;
  const capacityBytes = quota?.limitBytes ? quota.limitBytes : fs.capacityBytes;
  const freeBytes = quota?.limitBytes ? Math.min(fs.freeBytes, Math.max(0, quota.limitBytes - quota.usedBytes)) : fs.freeBytes;
  let blockBytes = 4096;
  while (capacityBytes / blockBytes > UINT32_MAX) blockBytes *= 2;
  const usedInodes = quota?.limitFiles ? quota.usedFiles : fs.files + fs.directories;
  const freeInodes = quota?.limitFiles ? Math.max(0, quota.limitFiles - quota.usedFiles) : Math.max(0, UINT32_MAX - usedInodes);
  return {
    bsize: blockBytes,
    frsize: blockBytes,
    blocks: Math.floor(capacityBytes / blockBytes),
    bfree: Math.floor(freeBytes / blockBytes),
    bavail: Math.floor(freeBytes / blockBytes),
    files: Math.min(UINT32_MAX, usedInodes + freeInodes),
    ffree: Math.min(UINT32_MAX, freeInodes),
    favail: Math.min(UINT32_MAX, freeInodes),
    namemax: 255,
  };
}
