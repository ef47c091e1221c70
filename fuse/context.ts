// What every operation shares, and the one place operations answer the kernel: each answers
// exactly once, with its result or a mapped errno, and within the op deadline — past it the
// caller gets EIO rather than a hang, whatever the cluster does.
import type { Logger } from '../common/log.js';
import type { FileStat, Strata } from '../client/index.js';
import type { AttrCache } from './cache.js';
import type { MountConfig } from './config.js';
import { ERRNO, errnoError, toErrno } from './errno.js';
import type { HandleTable } from './handles.js';
import type { DirListings } from './listings.js';

export interface MountContext {
  strata: Strata;
  config: MountConfig;
  cache: AttrCache;
  listings: DirListings;
  handles: HandleTable;
  log: Logger;
}

/** Errors that are answers, not failures: logged at debug level only. */
const ORDINARY = new Set([ERRNO.ENOENT, ERRNO.EEXIST, ERRNO.ENOTEMPTY, ERRNO.ENOTDIR, ERRNO.EISDIR, ERRNO.EROFS, ERRNO.EPERM]);

/** Runs `work` for operation `op`; `done` receives its value, `failed` a positive errno. */
export function settle<T>(ctx: Pick<MountContext, 'log' | 'config'>, op: string, path: string, work: () => Promise<T>, done: (value: T) => void, failed: (errno: number) => void): void {
  let answered = false;
  const timer = setTimeout(() => {
    if (answered) return;
    answered = true;
    ctx.log.warn({ op, path }, `${op} ${path}: no answer within ${ctx.config.opTimeoutMs} ms; failing with EIO`);
    failed(ERRNO.EIO);
  }, ctx.config.opTimeoutMs);
  Promise.resolve()
    .then(work)
    .then(
      (value) => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        done(value);
      },
      (err) => {
        const errno = toErrno(err);
        if (ORDINARY.has(errno)) ctx.log.debug({ op, path, errno }, (err as Error)?.message);
        else ctx.log.warn({ op, path, errno }, `${op} ${path}: ${(err as Error)?.message ?? err}`);
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        failed(errno);
      },
    );
}

/** Answers `cb(0)` or `cb(-errno)`. */
export function answer(ctx: MountContext, op: string, path: string, cb: (result: number) => void, work: () => Promise<void>): void {
  settle(ctx, op, path, work, () => cb(0), (errno) => cb(-errno));
}

/** Answers `cb(0, value)` or `cb(-errno)`. */
export function answerWith<T>(ctx: MountContext, op: string, path: string, cb: (result: number, value?: T) => void, work: () => Promise<T>): void {
  settle(ctx, op, path, work, (value) => cb(0, value), (errno) => cb(-errno));
}

/** The remote path of a path inside the mount; over-long names fail as POSIX says. */
export function remotePath(ctx: MountContext, path: string): string {
  for (const name of path.split('/')) {
    if (Buffer.byteLength(name) > 255) throw errnoError('ENAMETOOLONG', `name too long: ${name.slice(0, 32)}…`);
  }
  const root = ctx.config.path.replace(/\/+$/, '');
  return path === '/' ? root || '/' : root + path;
}

/** Attributes of a path: cached for the attribute timeout, or fresh from a coordinator. */
export async function statPath(ctx: MountContext, path: string, fresh = false): Promise<FileStat> {
  if (!fresh) {
    const cached = ctx.cache.get(path) ?? (await ctx.listings.prefetch(path), ctx.cache.get(path));
    if (cached) return cached;
  }
  const stat = await ctx.strata.stat(remotePath(ctx, path));
  ctx.cache.set(path, stat);
  return stat;
}

/**
 * The stat of a file or directory just created with `mode`. The coordinator reads mode 0 as
 * "not given" (and picks 0644/0755), so a requested mode 0 (open(O_CREAT, 0), umask 0777) is
 * set afterwards.
 */
export async function withMode(ctx: MountContext, path: string, created: FileStat, mode: number): Promise<FileStat> {
  if (mode !== 0 || (created.mode & 0o7777) === 0) return created;
  return ctx.strata.setattr(remotePath(ctx, path), { mode: 0 });
}

export function refuseIfReadOnly(ctx: MountContext): void {
  if (ctx.config.readOnly) throw errnoError('EROFS', 'read-only mount');
}
