// Inode-based namespace operations, as the mount uses them: the SDK's strata.inodes. Strata inode
// numbers are unique, never reused, and the root is 1 (= FUSE_ROOT_ID), so the mount hands them
// to the kernel as they are.
import type { InodeOps } from '../client/index.js';

export type { InodeOps };

/** What the mount tells its inode source besides the contract: the kernel let go of an inode. */
export interface ForgettingInodeOps extends InodeOps {
  forget?(ino: number): void;
}
