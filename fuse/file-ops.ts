/// <reference path="./fuse-native.d.ts" />
// File operations: handles over OpenFile. Data is committed on flush (every close), fsync and
// the last release; open() stats afresh, so each open sees what others closed before it.
import { constants } from 'node:fs';
import type Fuse from 'fuse-native';
import type { FileStat } from '../client/index.js';
import { type MountContext, answer, answerWith, refuseIfReadOnly, remotePath, settle, statPath, withMode } from './context.js';
import { ERRNO, errnoError, toErrno } from './errno.js';

/** Not exported by node:fs; the same on every Linux architecture. */
const O_ACCMODE = 0o3;

/**
 * libfuse renames a file removed or renamed over while open here to `.fuse_hidden…`, and unlinks
 * that name after the file's last release. An open of the same file may be under way then (the
 * kernel looked `target` up just before a rename replaced it): so that unlink waits for this
 * mount's last handle and any open under way (HandleTable.deferRemoval).
 */
export function isLibfuseHidden(path: string): boolean {
  return path.slice(path.lastIndexOf('/') + 1).startsWith('.fuse_hidden');
}

export function fileOperations(ctx: MountContext): Partial<Fuse.Operations> {
  const { strata, cache, handles, log } = ctx;

  return {
    create: (path, mode, cb) =>
      answerWith(ctx, 'create', path, cb, async () => {
        refuseIfReadOnly(ctx);
        // Not exclusive: the kernel sends create only for a name its fresh lookup found missing.
        const created = await strata.createForWrite(remotePath(ctx, path), { mode: mode & 0o7777 });
        const stat = await withMode(ctx, path, created.stat, mode & 0o7777);
        cache.invalidate(path);
        cache.set(path, stat);
        return handles.open(stat, true, created.grant).fd;
      }),

    open: (path, flags, cb) =>
      answerWith(ctx, 'open', path, cb, async () => {
        const writable = (flags & O_ACCMODE) !== constants.O_RDONLY;
        if (writable) refuseIfReadOnly(ctx);
        handles.beginOpen(path);
        try {
          // The mount asks for atomic_o_trunc: O_TRUNC arrives here instead of as a truncate
          // plus a getattr, and the truncate's reply is as fresh as the stat an open needs.
          const stat = writable && flags & constants.O_TRUNC ? await truncatePath(path, 0) : await statPath(ctx, path, true);
          if (stat.type === 'directory') throw errnoError('EISDIR', `${path}: is a directory`);
          // libfuse counts an open only once we answer it, so its release of the file's last
          // handle may have had the hidden name removed while this open was under way: the stat
          // above may predate that removal's commit. ESTALE: the kernel looks the name up again.
          if (isLibfuseHidden(path) && handles.isRemoving(stat.ino)) throw errnoError('ESTALE', `${path}: removed during its open`);
          return handles.open(stat, writable).fd;
        } catch (err) {
          // The kernel's lookup found a name replaced since and already removed: ESTALE makes
          // it look the name up again (open(2) then opens what the name is now), not fail.
          if (isLibfuseHidden(path) && toErrno(err) === ERRNO.ENOENT) throw errnoError('ESTALE', `${path}: removed before its open`);
          throw err;
        } finally {
          handles.endOpen(path);
          await removeDeferred();
        }
      }),

    read: (path, fd, buffer, length, position, cb) =>
      settle(
        ctx,
        'read',
        path,
        async () => {
          const handle = handles.get(fd);
          return handle.file.read(handle.cache, position, length);
        },
        // Copied only when answering: after a timeout the kernel's buffer is no longer ours.
        (data) => cb(data.copy(buffer, 0)),
        (errno) => cb(-errno),
      ),

    write: (path, fd, buffer, length, position, cb) => {
      // The buffer is the kernel request's memory, valid only until we answer. It is copied
      // once, straight into the chunk buffer; an answer by the deadline first ends the loan,
      // so a write still waiting (behind an upload) never reads it afterwards.
      const loan = new AbortController();
      settle(
        ctx,
        'write',
        path,
        async () => {
          refuseIfReadOnly(ctx);
          return handles.get(fd).file.write(position, buffer.subarray(0, length), loan.signal);
        },
        (written) => cb(written),
        (errno) => {
          loan.abort();
          cb(-errno);
        },
      );
    },

    flush: (path, fd, cb) =>
      answer(ctx, 'flush', path, cb, async () => {
        const handle = handles.get(fd);
        // A reader's close must not wait for (or report) another descriptor's writes.
        if (handle.writable) await handle.file.flush();
      }),

    fsync: (path, _datasync, fd, cb) =>
      answer(ctx, 'fsync', path, cb, async () => {
        await handles.get(fd).file.flush();
      }),

    release: (path, fd, cb) =>
      answer(ctx, 'release', path, cb, async () => {
        const file = handles.close(fd);
        if (file.handles > 0) return;
        try {
          await file.flush();
        } catch (err) {
          // The kernel ignores release errors; the failed close (flush) already reported it.
          if (file.handles === 0) {
            log.error({ path, ino: file.ino }, `${path}: unstored bytes dropped after the last close: ${(err as Error)?.message ?? err}`);
            file.discard();
          }
          throw err;
        } finally {
          handles.forget(file);
          // The commits moved size and mtime: the next stat must ask the cluster.
          cache.invalidate(path);
          await removeDeferred();
        }
      }),

    truncate: (path, size, cb) =>
      answer(ctx, 'truncate', path, cb, async () => {
        refuseIfReadOnly(ctx);
        await truncatePath(path, size);
      }),

    // libfuse asks for the attributes right after a truncate: the SetAttr reply cached here
    // answers that, saving a Stat.
    ftruncate: (path, fd, size, cb) =>
      answer(ctx, 'ftruncate', path, cb, async () => {
        refuseIfReadOnly(ctx);
        cache.set(path, await handles.get(fd).file.truncate(remotePath(ctx, path), size));
      }),
  };

  /** Removes the deferred `.fuse_hidden…` files nothing holds any more; failures are logged. */
  async function removeDeferred(): Promise<void> {
    for (const path of handles.takeRemovable()) {
      await strata.rm(remotePath(ctx, path)).then(
        () => cache.invalidate(path),
        (err) => log.warn({ path }, `${path}: removal after the last close failed: ${(err as Error)?.message ?? err}`),
      );
    }
  }

  /** Sets a path's size, through its open file if this mount has one (which drops unstored bytes past it). */
  async function truncatePath(path: string, size: number): Promise<FileStat> {
    const stat = await statPath(ctx, path);
    const open = stat.type === 'file' ? handles.fileOf(stat.ino) : undefined;
    const truncated = open ? await open.truncate(remotePath(ctx, path), size) : await strata.setattr(remotePath(ctx, path), { size });
    cache.set(path, truncated);
    return truncated;
  }
}
