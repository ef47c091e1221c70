// Inode-based namespace operations, as the mount uses them: the SDK's strata.inodes. Strata inode
// numbers are unique and never reused, so the mount hands them to the kernel as they are, but for
// the mounted directory's own (a tenant's root, or --path's), which it swaps with FUSE_ROOT_ID 1.
import type { InodeOps } from '../client/index.js';

export type { InodeOps };

/** What the mount tells its inode source besides the contract: the kernel let go of an inode. */
export interface ForgettingInodeOps extends InodeOps {
  forget?(ino: number): void;
}
