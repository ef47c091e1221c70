// The requests of libfuse 3's low-level API, served over InodeOps and the open-file pieces
// (handles.ts, open-file.ts, read-cache.ts). Every request is answered exactly once, within the
// op deadline (settle, context.ts). Kernel inode 1 is the mount's root directory, whatever
// its strata inode; every other inode is the strata inode itself.
import { constants } from 'node:fs';
import type { FileStat, FsStats } from '../../client/index.js';
import type { Logger } from '../../common/log.js';
import { toStatFs } from '../attrs.js';
import type { MountConfig } from '../config.js';
import { settle } from '../context.js';
import { ERRNO, errnoError, toErrno } from '../errno.js';
import type { HandleTable } from '../handles.js';
import type { ForgettingInodeOps } from '../inode-ops.js';
import type { Attr, DirEntryOut, Entry, Fuse3Binding, FuseRequest } from './binding.js';

export interface LowLevelContext {
  inodes: ForgettingInodeOps;
  statfs: () => Promise<FsStats>;
  config: MountConfig;
  handles: HandleTable;
  log: Logger;
  fuse: Fuse3Binding;
  /** The strata inode of the mount's root (kernel inode 1). */
  rootIno: number;
}

const O_ACCMODE = 0o3;
const RENAME_NOREPLACE = 1;
const TYPE_BITS = { file: 0o100000, directory: 0o040000, symlink: 0o120000 } as const;
/** Matches max_write: tools size their I/O by st_blksize (cp, dd of its default). */
const BLOCK_BYTES = 1024 * 1024;
/** Names of files removed or renamed over while open here, until their last close. */
const HIDDEN_PREFIX = '.strata_hidden_';
const DIR_PAGE = 10_000;
/** The kernel retries an open that got ESTALE at once; a later one is a new open. */
const STALE_RETRY_MS = 1000;

interface DirHandle {
  ino: number;
  entries?: Array<{ name: string; stat: FileStat }>;
}

export class LowLevelOps {
  private readonly timeout: number;
  /** Lookups the kernel holds per inode: it may name an inode until it forgot them all. */
  private readonly lookups = new Map<number, number>();
  private readonly dirs = new Map<number, DirHandle>();
  private nextDir = 1;
  /** Files removed while open here: renamed to a hidden name, removed after the last close. */
  private readonly hidden = new Map<number, { parent: number; name: string }>();
  /** Opens under way, per inode (their handle not in the table yet). */
  private readonly opening = new Map<number, number>();
  /**
   * Unlinks and renames under way. An open that arrives meanwhile waits for them: the kernel
   * resolved its name before, so its inode may be the one being removed, and it must either
   * find it gone (ENOENT) or be seen by the removal, which then hides the file instead.
   */
  private readonly removals = new Set<Promise<unknown>>();
  /** When each process was last answered ESTALE by an open. */
  private readonly staleAt = new Map<number, number>();

  constructor(private readonly ctx: LowLevelContext) {
    this.timeout = ctx.config.attrTimeoutMs / 1000;
  }

  /** The binding's request handler: never throws. */
  readonly handle = (req: FuseRequest): void => {
    try {
      this.dispatch(req);
    } catch (err) {
      this.ctx.log.error({ op: req.op, err }, `${req.op}: ${(err as Error)?.message ?? err}`);
      if (req.id) this.reply(() => this.ctx.fuse.replyErr(req.id, ERRNO.EIO));
    }
  };

  /** Strata inode of a kernel inode, and back. */
  private fromKernel(ino: number): number {
    return ino === 1 ? this.ctx.rootIno : ino;
  }

  private toKernel(ino: number): number {
    return ino === this.ctx.rootIno ? 1 : ino;
  }

  private dispatch(req: FuseRequest): void {
    const { inodes, handles, fuse } = this.ctx;
    if (this.ctx.log.isLevelEnabled('trace')) this.ctx.log.trace({ op: req.op, ino: req.ino, fh: req.fh, name: req.name, size: req.size ?? req.data?.length, offset: req.offset }, 'request');
    const ino = req.ino ? this.fromKernel(req.ino) : 0;
    switch (req.op) {
      case 'forget':
        return this.forget(req.forgets ?? []);
      case 'lookup':
        return this.serve(req, () => inodes.lookup(ino, this.name(req.name)), (stat) => fuse.replyEntry(req.id, this.entry(stat)));
      case 'getattr':
        return this.serve(req, () => inodes.getattr(ino), (stat) => fuse.replyAttr(req.id, this.attr(stat), this.timeout));
      case 'setattr':
        return this.serve(req, () => this.setattr(ino, req), (stat) => fuse.replyAttr(req.id, this.attr(stat), this.timeout));
      case 'readlink':
        return this.serve(req, () => inodes.readlink(ino), (target) => fuse.replyReadlink(req.id, target));
      case 'mknod':
        return this.serve(req, () => this.mknod(ino, req), (stat) => fuse.replyEntry(req.id, this.entry(stat)));
      case 'mkdir':
        return this.serve(req, () => this.mkdir(ino, req), (stat) => fuse.replyEntry(req.id, this.entry(stat)));
      case 'symlink':
        return this.serve(req, () => this.changing(() => inodes.symlink(ino, this.name(req.name), req.target ?? '')), (stat) => fuse.replyEntry(req.id, this.entry(stat)));
      case 'unlink':
        return this.serve(req, () => this.unlink(ino, this.name(req.name)), () => fuse.replyErr(req.id, 0));
      case 'rmdir':
        return this.serve(req, () => this.changing(() => inodes.rmdir(ino, this.name(req.name))), () => fuse.replyErr(req.id, 0));
      case 'rename':
        return this.serve(req, () => this.rename(ino, req), () => fuse.replyErr(req.id, 0));
      case 'link':
        // One name per inode (nlink 1): POSIX's answer for "no hard links here".
        return this.serve(req, async () => { throw errnoError('EPERM', 'hard links are not supported by strata'); }, () => undefined);
      case 'create':
        return this.serve(req, () => this.create(ino, req), ({ stat, fh }) => fuse.replyCreate(req.id, this.entry(stat), { fh }));
      case 'open':
        return this.serve(req, () => this.open(ino, req.flags, req.pid), (open) => fuse.replyOpen(req.id, open));
      case 'read':
        return this.serve(req, () => { const h = handles.get(req.fh ?? 0); return h.file.read(h.cache, req.offset ?? 0, req.size ?? 0); }, (data) => fuse.replyBuf(req.id, data));
      case 'write':
        return this.serve(req, () => this.changing(() => handles.get(req.fh ?? 0).file.write(req.offset ?? 0, req.data ?? Buffer.alloc(0))), (n) => fuse.replyWrite(req.id, n));
      case 'flush':
        return this.serve(req, async () => { const h = handles.get(req.fh ?? 0); if (h.writable) await h.file.flush(); }, () => fuse.replyErr(req.id, 0));
      case 'fsync':
        return this.serve(req, () => handles.get(req.fh ?? 0).file.flush(), () => fuse.replyErr(req.id, 0));
      case 'release':
        return this.serve(req, () => this.release(req.fh ?? 0), () => fuse.replyErr(req.id, 0));
      case 'opendir':
        return this.serve(req, async () => this.opendir(ino), (fh) => fuse.replyOpen(req.id, { fh }));
      case 'readdir':
      case 'readdirplus':
        return this.serve(req, () => this.readdir(req), (entries) => this.replyDir(req, entries));
      case 'releasedir':
        this.dirs.delete(req.fh ?? 0);
        return this.reply(() => fuse.replyErr(req.id, 0));
      case 'statfs':
        return this.serve(req, () => this.ctx.statfs(), (fs) => fuse.replyStatfs(req.id, toStatFs(fs)));
      case 'ended':
        return;
      default:
        return this.reply(() => fuse.replyErr(req.id, ERRNO.ENOSYS));
    }
  }

  /** Runs `work`, then `done` with its value, or answers its errno. */
  private serve<T>(req: FuseRequest, work: () => Promise<T>, done: (value: T) => void): void {
    const what = req.name !== undefined ? `${req.ino}/${req.name}` : String(req.ino);
    settle(
      this.ctx,
      req.op,
      what,
      work,
      (value) => this.reply(() => done(value)),
      (errno) => this.reply(() => this.ctx.fuse.replyErr(req.id, errno)),
    );
  }

  private reply(answer: () => void): void {
    try {
      answer();
    } catch (err) {
      // A reply the binding refused (bad value): logged, the request already failed over to EIO or was answered.
      this.ctx.log.error({ err }, `reply failed: ${(err as Error)?.message ?? err}`);
    }
  }

  private name(name: string | undefined): string {
    if (!name) throw errnoError('EINVAL', 'empty name');
    if (Buffer.byteLength(name) > 255) throw errnoError('ENAMETOOLONG', `name too long: ${name.slice(0, 32)}…`);
    return name;
  }

  private changing<T>(work: () => Promise<T>): Promise<T> {
    if (this.ctx.config.readOnly) return Promise.reject(errnoError('EROFS', 'read-only mount'));
    return work();
  }

  // ---- attributes ----

  attr(stat: FileStat): Attr {
    const { handles, config } = this.ctx;
    const open = stat.type === 'file' ? handles.fileOf(stat.ino) : undefined;
    const size = open ? open.size : stat.size;
    const modifiedMs = Math.max(stat.mtimeMs, open?.modifiedMs ?? 0);
    // Holes take no space: a file has at most `chunks` chunks stored (du shows sparse files small).
    const storedBytes = open ? size : Math.min(size, stat.chunks * stat.chunkSize);
    return {
      ino: this.toKernel(stat.ino),
      mode: TYPE_BITS[stat.type] | (stat.mode & 0o7777),
      nlink: stat.nlink || 1,
      uid: config.uid ?? stat.uid,
      gid: config.gid ?? stat.gid,
      size,
      blksize: BLOCK_BYTES,
      blocks: Math.ceil((stat.type === 'file' ? storedBytes : size) / 512),
      atimeMs: stat.atimeMs,
      mtimeMs: modifiedMs,
      ctimeMs: Math.max(stat.ctimeMs, modifiedMs),
    };
  }

  /** An entry the kernel will hold: counts as one lookup. */
  private entry(stat: FileStat): Entry {
    this.looked(stat.ino, 1);
    return { ino: this.toKernel(stat.ino), attr: this.attr(stat), attrTimeout: this.timeout, entryTimeout: this.timeout };
  }

  private looked(ino: number, count: number): void {
    if (ino !== this.ctx.rootIno) this.lookups.set(ino, (this.lookups.get(ino) ?? 0) + count);
  }

  private forget(pairs: number[]): void {
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const ino = this.fromKernel(pairs[i]);
      const left = (this.lookups.get(ino) ?? 0) - pairs[i + 1];
      if (left > 0) {
        this.lookups.set(ino, left);
        continue;
      }
      this.lookups.delete(ino);
      if (!this.ctx.handles.fileOf(ino) && !this.hidden.has(ino)) this.ctx.inodes.forget?.(ino);
    }
  }

  private async setattr(ino: number, req: FuseRequest): Promise<FileStat> {
    const { inodes, handles } = this.ctx;
    const changes: { mode?: number; uid?: number; gid?: number; mtimeMs?: number; atimeMs?: number } = {};
    if (req.mode !== undefined) changes.mode = req.mode & 0o7777;
    if (req.setUid !== undefined) changes.uid = req.setUid;
    if (req.setGid !== undefined) changes.gid = req.setGid;
    const now = Date.now();
    if (req.atime !== undefined) changes.atimeMs = req.atime === 'now' ? now : req.atime;
    if (req.mtime !== undefined) changes.mtimeMs = req.mtime === 'now' ? now : req.mtime;
    if (this.ctx.config.readOnly) throw errnoError('EROFS', 'read-only mount');
    const open = handles.fileOf(ino);
    let stat: FileStat | undefined;
    if (req.size !== undefined) {
      stat = open ? await open.truncate('', req.size) : await inodes.setattr(ino, { size: req.size });
    }
    if (changes.mtimeMs !== undefined && open) {
      // A later commit of buffered bytes would move mtime again (cp -p sets times before close).
      await open.flush();
      open.modifiedMs = undefined; // the time set here is the one to show
    }
    if (Object.keys(changes).length > 0 || !stat) stat = await inodes.setattr(ino, changes);
    return stat;
  }

  // ---- names ----

  /**
   * The coordinator reads mode 0 as "not given" (and picks 0644/0755), so a requested mode 0
   * (open(O_CREAT, 0), umask 0777) is set afterwards; with --allow-other, a new file belongs
   * to the caller, as on a local disk.
   */
  private async finishCreated(stat: FileStat, mode: number, req: FuseRequest): Promise<FileStat> {
    const changes: { mode?: number; uid?: number; gid?: number } = {};
    if (mode === 0 && (stat.mode & 0o7777) !== 0) changes.mode = 0;
    if (this.ctx.config.allowOther && (stat.uid !== req.uid || stat.gid !== req.gid)) Object.assign(changes, { uid: req.uid, gid: req.gid });
    return Object.keys(changes).length > 0 ? this.ctx.inodes.setattr(stat.ino, changes) : stat;
  }

  private mkdir(parent: number, req: FuseRequest): Promise<FileStat> {
    const mode = (req.mode ?? 0) & 0o7777;
    return this.changing(async () => this.finishCreated(await this.ctx.inodes.mkdir(parent, this.name(req.name), mode), mode, req));
  }

  private mknod(parent: number, req: FuseRequest): Promise<FileStat> {
    const mode = req.mode ?? 0;
    if ((mode & 0o170000) !== 0o100000) return Promise.reject(errnoError('EPERM', 'strata stores regular files, directories and symbolic links only'));
    return this.changing(async () => {
      const { stat } = await this.ctx.inodes.create(parent, this.name(req.name), { mode: mode & 0o7777, exclusive: true, allocateFirstChunk: false });
      return this.finishCreated(stat, mode & 0o7777, req);
    });
  }

  private create(parent: number, req: FuseRequest): Promise<{ stat: FileStat; fh: number }> {
    const mode = (req.mode ?? 0) & 0o7777;
    return this.changing(async () => {
      const created = await this.ctx.inodes.create(parent, this.name(req.name), { mode, exclusive: (req.flags & constants.O_EXCL) !== 0, allocateFirstChunk: true });
      const stat = await this.finishCreated(created.stat, mode, req);
      const writable = (req.flags & O_ACCMODE) !== constants.O_RDONLY || this.ctx.config.writebackCache;
      return { stat, fh: this.ctx.handles.open(stat, writable, created.grant).fd };
    });
  }

  /** Whether this mount has the file open, or an open of it under way. */
  private held(ino: number): boolean {
    return !!this.ctx.handles.fileOf(ino)?.handles || this.opening.has(ino);
  }

  /** The inode a name stands for, when it is a file this mount holds (else undefined). */
  private async openFileAt(parent: number, name: string): Promise<number | undefined> {
    if (this.ctx.handles.openFiles().length === 0 && this.opening.size === 0) return undefined;
    const stat = await this.ctx.inodes.lookup(parent, name).catch(() => undefined);
    return stat && stat.type === 'file' && this.held(stat.ino) ? stat.ino : undefined;
  }

  /** Runs an unlink or rename as a removal: opens arriving meanwhile wait for it. */
  private removal(work: () => Promise<void>): Promise<void> {
    const done = work();
    this.removals.add(done);
    const forget = () => this.removals.delete(done);
    done.then(forget, forget);
    return done;
  }

  /** Moves an open file out of the way under a hidden name; removed after its last close. */
  private async hide(parent: number, name: string, ino: number): Promise<void> {
    const hiddenName = `${HIDDEN_PREFIX}${ino}`;
    await this.ctx.inodes.rename(parent, name, parent, hiddenName);
    this.hidden.set(ino, { parent, name: hiddenName });
    // Its last close may have come while the rename ran, finding nothing hidden yet.
    if (!this.held(ino)) await this.removeHidden(ino);
  }

  private unlink(parent: number, name: string): Promise<void> {
    return this.changing(() => this.removal(async () => {
      const open = await this.openFileAt(parent, name);
      if (open !== undefined) return this.hide(parent, name, open);
      await this.ctx.inodes.unlink(parent, name);
    }));
  }

  private rename(parent: number, req: FuseRequest): Promise<void> {
    return this.changing(() => this.removal(async () => {
      const name = this.name(req.name);
      const newName = this.name(req.newName);
      const newParent = this.fromKernel(req.newParent ?? 0);
      if (req.flags & ~RENAME_NOREPLACE) throw errnoError('EINVAL', 'RENAME_EXCHANGE and RENAME_WHITEOUT are not supported');
      const noReplace = (req.flags & RENAME_NOREPLACE) !== 0;
      // A file open here that the rename replaces must live on until its last close.
      const replaced = noReplace ? undefined : await this.openFileAt(newParent, newName);
      if (replaced !== undefined) await this.hide(newParent, newName, replaced);
      await this.ctx.inodes.rename(parent, name, newParent, newName, { noReplace });
    }));
  }

  // ---- files ----

  private async open(ino: number, flags: number, pid: number): Promise<{ fh: number; keepCache: boolean }> {
    this.opening.set(ino, (this.opening.get(ino) ?? 0) + 1);
    try {
      if (this.removals.size > 0) await Promise.allSettled([...this.removals]);
      return await this.openNow(ino, flags);
    } catch (err) {
      // The kernel resolved the name before a rename or removal took this inode away: ESTALE
      // makes it look the name up again, so open(2) opens what the name is now (or says ENOENT).
      // The kernel retries once: a retry that lost the same race gets ENOENT, never ESTALE.
      if (toErrno(err) === ERRNO.ENOENT && !this.staleRetry(pid)) throw errnoError('ESTALE', `inode ${ino}: removed before its open`);
      throw err;
    } finally {
      const left = (this.opening.get(ino) ?? 1) - 1;
      if (left > 0) this.opening.set(ino, left);
      else this.opening.delete(ino);
      await this.removeHidden(ino);
    }
  }

  /** Whether `pid` was just told ESTALE (so this open is the kernel's retry); notes it if not. */
  private staleRetry(pid: number): boolean {
    const now = Date.now();
    const last = this.staleAt.get(pid);
    if (last !== undefined && now - last < STALE_RETRY_MS) {
      this.staleAt.delete(pid);
      return true;
    }
    if (this.staleAt.size > 1000) this.staleAt.clear();
    this.staleAt.set(pid, now);
    return false;
  }

  private async openNow(ino: number, flags: number): Promise<{ fh: number; keepCache: boolean }> {
    const { inodes, handles, config } = this.ctx;
    const writable = (flags & O_ACCMODE) !== constants.O_RDONLY;
    if (writable && config.readOnly) throw errnoError('EROFS', 'read-only mount');
    const open = handles.fileOf(ino);
    // The mount asks for atomic_o_trunc: O_TRUNC arrives here, not as a setattr.
    let stat: FileStat;
    if (writable && flags & constants.O_TRUNC) stat = open ? await open.truncate('', 0) : await inodes.setattr(ino, { size: 0 });
    else stat = await inodes.getattr(ino);
    if (stat.type === 'directory') throw errnoError('EISDIR', `inode ${ino}: is a directory`);
    // With the writeback cache the kernel reads through write-only descriptors too.
    const handle = handles.open(stat, writable || config.writebackCache);
    // Another open here: the kernel's cached pages are this mount's own view, keep them;
    // a first open drops them, so it sees what other clients closed (close-to-open).
    return { fh: handle.fd, keepCache: open !== undefined };
  }

  private async release(fh: number): Promise<void> {
    const { handles, log } = this.ctx;
    const file = handles.close(fh);
    if (file.handles > 0) return;
    try {
      await file.flush();
    } catch (err) {
      // The kernel ignores release errors; the failed close (flush) already reported it.
      if (file.handles === 0) {
        log.error({ ino: file.ino }, `inode ${file.ino}: unstored bytes dropped after the last close: ${(err as Error)?.message ?? err}`);
        file.discard();
      }
      throw err;
    } finally {
      handles.forget(file);
      if (file.handles === 0) await this.removeHidden(file.ino);
    }
  }

  /** Removes a hidden file once nothing holds it; failures are logged. */
  async removeHidden(ino: number): Promise<void> {
    const hidden = this.hidden.get(ino);
    if (!hidden || this.ctx.handles.fileOf(ino) || this.opening.has(ino)) return;
    this.hidden.delete(ino);
    await this.removal(() => this.ctx.inodes.unlink(hidden.parent, hidden.name)).catch((err) => {
      this.ctx.log.warn({ ino }, `${hidden.name}: removal after the last close failed: ${(err as Error)?.message ?? err}`);
    });
    if (!this.lookups.has(ino)) this.ctx.inodes.forget?.(ino);
  }

  /** Hidden files still waiting (at unmount: nothing holds them any more). */
  async removeAllHidden(): Promise<void> {
    for (const ino of [...this.hidden.keys()]) {
      const hidden = this.hidden.get(ino)!;
      this.hidden.delete(ino);
      await this.ctx.inodes.unlink(hidden.parent, hidden.name).catch(() => undefined);
    }
  }

  // ---- directories ----

  private opendir(ino: number): number {
    let fh = this.nextDir;
    while (this.dirs.has(fh)) fh = fh >= 0x7fffffff ? 1 : fh + 1;
    this.nextDir = fh >= 0x7fffffff ? 1 : fh + 1;
    this.dirs.set(fh, { ino });
    return fh;
  }

  /** The entries from `offset` on ('.' is 0, '..' is 1): a listing read whole at offset 0. */
  private async readdir(req: FuseRequest): Promise<DirEntryOut[]> {
    const dir = this.dirs.get(req.fh ?? 0);
    if (!dir) throw errnoError('EBADF', `no open directory with handle ${req.fh}`);
    const offset = req.offset ?? 0;
    if (offset === 0 || !dir.entries) dir.entries = await this.listAll(dir.ino);
    const plus = req.op === 'readdirplus';
    // A guess of how many fit (each at least ~32 bytes, ~150 with attributes); the binding packs what fits.
    const room = Math.ceil((req.size ?? 4096) / (plus ? 140 : 32)) + 1;
    const out: DirEntryOut[] = [];
    const total = dir.entries.length + 2;
    for (let i = offset; i < total && out.length < room; i++) {
      if (i < 2) {
        out.push({ name: i === 0 ? '.' : '..', off: i + 1, ino: plus ? 0 : this.toKernel(dir.ino), mode: TYPE_BITS.directory, attr: plus ? { ...ZERO_ATTR, ino: this.toKernel(dir.ino), mode: TYPE_BITS.directory | 0o755 } : undefined });
        continue;
      }
      const { name, stat } = dir.entries[i - 2];
      const ino = this.toKernel(stat.ino);
      out.push(plus ? { name, off: i + 1, ino, attr: this.attr(stat), attrTimeout: this.timeout, entryTimeout: this.timeout } : { name, off: i + 1, ino, mode: TYPE_BITS[stat.type] });
    }
    return out;
  }

  private replyDir(req: FuseRequest, entries: DirEntryOut[]): void {
    const plus = req.op === 'readdirplus';
    const packed = this.ctx.fuse.replyDir(req.id, req.size ?? 4096, plus, entries);
    // Each entry given with readdirplus is a lookup the kernel now holds.
    if (plus) for (let i = 0; i < packed; i++) if (entries[i].ino !== 0) this.looked(this.fromKernel(entries[i].ino), 1);
  }

  private async listAll(ino: number): Promise<Array<{ name: string; stat: FileStat }>> {
    const all: Array<{ name: string; stat: FileStat }> = [];
    for (let after = ''; ; ) {
      const page = await this.ctx.inodes.readdirplus(ino, { after, limit: DIR_PAGE });
      // Removed files still open somewhere: on a local disk they would have no name either.
      for (const entry of page.entries) if (!entry.name.startsWith(HIDDEN_PREFIX)) all.push(entry);
      if (!page.more || page.entries.length === 0) return all;
      after = page.entries[page.entries.length - 1].name;
    }
  }

  /** Pushes from the metadata service: drop what the kernel caches of a name or an inode. */
  invalidate(ev: { ino: number; name?: string }): void {
    const ino = this.toKernel(ev.ino);
    if (ev.name !== undefined) this.ctx.fuse.notifyInvalEntry(ino, ev.name);
    else this.ctx.fuse.notifyInvalInode(ino, 0, 0);
  }
}

const ZERO_ATTR: Attr = { ino: 0, mode: 0, nlink: 1, uid: 0, gid: 0, size: 0, blksize: BLOCK_BYTES, blocks: 0, atimeMs: 0, mtimeMs: 0, ctimeMs: 0 };

export const HIDDEN_NAME_PREFIX = HIDDEN_PREFIX;
