// `strata.inodes`: the namespace by inode and (parent inode, name), for the FUSE mount, over
// the session stream (the contract is /work/notes/inode-api.md). No caching yet: every call is
// one message on the stream; leases and a cache (with onInvalidate firing) come on top of this.
import { StrataError } from '../common/errors.js';
import type { CoordinatorClient } from './coordinator-client.js';
import type { FileStat } from './types.js';
import { toFileStat } from './wire.js';
import type { AllocateReply } from './writer.js';

/** A placement for one chunk write, granted by create: pass it to Strata.writeChunkAt. */
type ChunkGrant = AllocateReply;

export type InvalidateEvent = { ino: number; name?: string };

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
  /**
   * Pushed by the coordinator when another client changes what this client may have cached.
   * { ino, name } = the entry `name` in directory `ino` changed; { ino } alone = the inode's
   * attributes/content changed. (Nothing pushes yet: listeners are kept for when leases do.)
   */
  onInvalidate(listener: (ev: InvalidateEvent) => void): () => void;
}

/* eslint-disable @typescript-eslint/no-explicit-any -- replies are plain proto-loader objects */
type StatReply = { attr: any };

/** A retried removal that finds the name gone was applied by the attempt whose outcome was unknown. */
const goneMeansDone = (error: StrataError) => (error.kind === 'NotFound' ? {} : undefined);

export class SessionInodes implements InodeOps {
  private readonly invalidateListeners = new Set<(ev: InvalidateEvent) => void>();

  constructor(private readonly coordinator: CoordinatorClient) {}

  async lookup(parent: number, name: string): Promise<FileStat> {
    return this.stat('lookup', { parent, name });
  }

  async getattr(ino: number): Promise<FileStat> {
    return this.stat('getAttr', { ino });
  }

  async readdirplus(ino: number, opts: { after?: string; limit?: number } = {}) {
    const reply = await this.coordinator.session<{ entries: any[]; more: boolean }>('readDirPlus', { ino, after: opts.after ?? '', limit: opts.limit ?? 0 });
    return { entries: reply.entries.map((e) => ({ name: String(e.name), stat: toFileStat(e.attr) })), more: !!reply.more };
  }

  async mkdir(parent: number, name: string, mode: number): Promise<FileStat> {
    return this.stat('mkdirAt', { parent, name, mode });
  }

  async create(parent: number, name: string, opts: { mode?: number; exclusive?: boolean; allocateFirstChunk?: boolean } = {}) {
    const reply = await this.coordinator.session<{ attr: any; firstChunk?: ChunkGrant | null }>('createAt', {
      parent,
      name,
      mode: opts.mode ?? 0,
      exclusive: !!opts.exclusive,
      allocateFirstChunk: !!opts.allocateFirstChunk,
    });
    const grant = reply.firstChunk?.pipeline?.length ? reply.firstChunk : undefined;
    return grant ? { stat: toFileStat(reply.attr), grant } : { stat: toFileStat(reply.attr) };
  }

  async symlink(parent: number, name: string, target: string): Promise<FileStat> {
    return this.stat('symlinkAt', { parent, name, target });
  }

  async readlink(ino: number): Promise<string> {
    return (await this.coordinator.session<{ target: string }>('readlink', { ino })).target;
  }

  async unlink(parent: number, name: string): Promise<void> {
    await this.coordinator.session('unlink', { parent, name }, goneMeansDone);
  }

  async rmdir(parent: number, name: string): Promise<void> {
    await this.coordinator.session('rmdir', { parent, name }, goneMeansDone);
  }

  async rename(srcParent: number, srcName: string, dstParent: number, dstName: string, opts: { noReplace?: boolean } = {}): Promise<void> {
    await this.coordinator.session('renameAt', { srcParent, srcName, dstParent, dstName, noReplace: !!opts.noReplace });
  }

  async setattr(ino: number, changes: { mode?: number; uid?: number; gid?: number; mtimeMs?: number; atimeMs?: number; size?: number }): Promise<FileStat> {
    return this.stat('setAttrIno', { ino, ...changes });
  }

  onInvalidate(listener: (ev: InvalidateEvent) => void): () => void {
    this.invalidateListeners.add(listener);
    return () => this.invalidateListeners.delete(listener);
  }

  private async stat(op: string, request: unknown): Promise<FileStat> {
    return toFileStat((await this.coordinator.session<StatReply>(op, request)).attr);
  }
}
