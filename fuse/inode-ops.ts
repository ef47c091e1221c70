// Inode-based namespace operations, as the mount uses them (the contract with the SDK's
// strata.inodes, /work/notes/inode-api.md). Strata inode numbers are unique, never reused, and
// the root is 1 (= FUSE_ROOT_ID), so the mount hands them to the kernel as they are.
import type { ChunkGrant, FileStat } from '../client/index.js';

export interface InodeOps {
  lookup(parent: number, name: string): Promise<FileStat>;
  getattr(ino: number): Promise<FileStat>;
  readdirplus(ino: number, opts?: { after?: string; limit?: number }): Promise<{ entries: Array<{ name: string; stat: FileStat }>; more: boolean }>;
  mkdir(parent: number, name: string, mode: number): Promise<FileStat>;
  create(parent: number, name: string, opts?: { mode?: number; exclusive?: boolean; allocateFirstChunk?: boolean }): Promise<{ stat: FileStat; grant?: ChunkGrant }>;
  symlink(parent: number, name: string, target: string): Promise<FileStat>;
  readlink(ino: number): Promise<string>;
  unlink(parent: number, name: string): Promise<void>;
  rmdir(parent: number, name: string): Promise<void>;
  rename(srcParent: number, srcName: string, dstParent: number, dstName: string, opts?: { noReplace?: boolean }): Promise<void>;
  setattr(ino: number, changes: { mode?: number; uid?: number; gid?: number; mtimeMs?: number; atimeMs?: number; size?: number }): Promise<FileStat>;
  onInvalidate(listener: (ev: { ino: number; name?: string }) => void): () => void;
}

/** What the mount tells its inode source besides the contract: the kernel let go of an inode. */
export interface ForgettingInodeOps extends InodeOps {
  forget?(ino: number): void;
}
