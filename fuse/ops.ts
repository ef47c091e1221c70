/// <reference path="./fuse-native.d.ts" />
// Namespace operations: each path-based FUSE call is one SDK call (or an attribute cache hit).
// This mount's own changes drop the cache entries they touch, so it reads its own writes.
import type Fuse from 'fuse-native';
import type { FileStat, FileType } from '../client/index.js';
import { directoryStat, toFuseStat, toStatFs } from './attrs.js';
import { type MountContext, answer, answerWith, refuseIfReadOnly, settle, remotePath, statPath, withMode } from './context.js';
import { errnoError } from './errno.js';
import { fileOperations, isLibfuseHidden } from './file-ops.js';

/** chown(2) passes -1 (as unsigned 32 bits here) for "leave unchanged". */
const UNCHANGED_ID = 0xffffffff;

export function createOperations(ctx: MountContext): Fuse.Operations {
  const { strata, cache } = ctx;
  const remote = (path: string) => remotePath(ctx, path);
  const change = (path: string) => {
    refuseIfReadOnly(ctx);
    return remote(path);
  };

  return {
    ...fileOperations(ctx),

    getattr: (path, cb) => answerWith(ctx, 'getattr', path, cb, async () => toFuseStat(ctx, await statPath(ctx, path))),

    readdir: (path, cb) =>
      settle(ctx, 'readdir', path, () => listDirectory(ctx, path), ({ names, stats }) => cb(0, names, stats), (errno) => cb(-errno)),

    mkdir: (path, mode, cb) =>
      answer(ctx, 'mkdir', path, cb, async () => {
        const stat = await withMode(ctx, path, await strata.mkdir(change(path), { mode: mode & 0o7777 }), mode & 0o7777);
        cache.invalidate(path);
        cache.set(path, stat);
      }),

    rmdir: (path, cb) =>
      answer(ctx, 'rmdir', path, cb, async () => {
        const target = change(path);
        // Remove takes files too; rmdir must not.
        if (cache.get(path)?.type === 'file') throw errnoError('ENOTDIR', `${path}: not a directory`);
        await strata.rm(target);
        cache.invalidateTree(path);
      }),

    unlink: (path, cb) =>
      answer(ctx, 'unlink', path, cb, async () => {
        const target = change(path);
        if (cache.get(path)?.type === 'directory') throw errnoError('EISDIR', `${path}: is a directory`);
        if (isLibfuseHidden(path) && ctx.handles.deferRemoval(path, (await statPath(ctx, path, true)).ino)) return;
        await strata.rm(target);
        cache.invalidate(path);
      }),

    rename: (from, to, cb) =>
      answer(ctx, 'rename', from, cb, async () => {
        await strata.rename(change(from), change(to));
        cache.invalidateTree(from);
        cache.invalidateTree(to);
      }),

    // The metadata model has one name per inode (nlink 1): POSIX's answer for "no hard links here".
    link: (from, _to, cb) =>
      answer(ctx, 'link', from, cb, async () => {
        throw errnoError('EPERM', 'hard links are not supported by strata');
      }),

    symlink: (target, path, cb) =>
      answer(ctx, 'symlink', path, cb, async () => {
        const stat = await strata.symlink(target, change(path));
        cache.invalidate(path);
        cache.set(path, stat);
      }),

    readlink: (path, cb) =>
      answerWith(ctx, 'readlink', path, cb, async () => {
        const stat = await statPath(ctx, path);
        if (stat.type !== 'symlink') throw errnoError('EINVAL', `${path}: not a symbolic link`);
        return stat.target;
      }),

    chmod: (path, mode, cb) =>
      answer(ctx, 'chmod', path, cb, async () => {
        cache.set(path, await strata.setattr(change(path), { mode: mode & 0o7777 }));
      }),

    chown: (path, uid, gid, cb) =>
      answer(ctx, 'chown', path, cb, async () => {
        const changes = { uid: uid === UNCHANGED_ID ? undefined : uid, gid: gid === UNCHANGED_ID ? undefined : gid };
        cache.set(path, await strata.setattr(change(path), changes));
      }),

    // fuse-native 2.2.6 hands the access time in both arguments (its C glue copies atime
    // twice), so the one time given sets both; see README.
    utimens: (path, atime, _mtime, cb) =>
      answer(ctx, 'utimens', path, cb, async () => {
        const target = change(path);
        // A later commit of buffered bytes would move mtime again (cp -p sets times before close).
        const open = ctx.handles.fileOf((await statPath(ctx, path)).ino);
        if (open) {
          await open.flush();
          open.modifiedMs = undefined; // the time set here is the one to show
        }
        cache.set(path, await strata.setattr(target, { atimeMs: atime, mtimeMs: atime }));
      }),

    statfs: (path, cb) => answerWith(ctx, 'statfs', path, cb, async () => toStatFs(await strata.statfs())),
  };
}

/** The largest page the coordinator serves: a 10k-entry directory in one round trip. */
const LIST_PAGE = 10_000;

/**
 * Names with their types (libfuse 2 passes only the type on, as d_type); '.' and '..' first, as
 * readdir(3) expects. Attributes come later, and only if looked up (listings.ts).
 */
async function listDirectory(ctx: MountContext, path: string): Promise<{ names: string[]; stats: Fuse.Stat[] }> {
  const entries = await ctx.strata.readdir(remotePath(ctx, path), { pageSize: LIST_PAGE });
  const directory = directoryStat();
  const stats = [directory, directory];
  const names = ['.', '..'];
  for (const entry of entries) {
    names.push(entry.name);
    stats.push(TYPE_ONLY[entry.type]);
  }
  ctx.listings.listed(path, names.slice(2));
  return { names, stats };
}

const TYPE_ONLY: Record<FileType, Fuse.Stat> = {
  file: { ...directoryStat(), mode: 0o100644 },
  directory: { ...directoryStat(), mode: 0o040755 },
  symlink: { ...directoryStat(), mode: 0o120777 },
  fifo: { ...directoryStat(), mode: 0o010644 },
  'char-device': { ...directoryStat(), mode: 0o020644 },
  'block-device': { ...directoryStat(), mode: 0o060644 },
  socket: { ...directoryStat(), mode: 0o140644 },
};

/** The attributes of up to `count` entries of `dir` past `after`: one ReadDir (listings.ts). */
export async function fetchWindow(ctx: MountContext, dir: string, after: string, count: number): Promise<{ name: string; stat: FileStat }[]> {
  const window: { name: string; stat: FileStat }[] = [];
  let seen = 0;
  for await (const entry of ctx.strata.list(remotePath(ctx, dir), { withStats: true, after, pageSize: count })) {
    if (entry.stat) window.push({ name: entry.name, stat: entry.stat });
    if (++seen >= count) break;
  }
  return window;
}
