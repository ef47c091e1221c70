// The requests of libfuse 3's low-level API, served over InodeOps and the open-file pieces
// (handles.ts, open-file.ts, read-cache.ts). Every request is answered exactly once, within the
// op deadline (settle, context.ts). Kernel inode 1 is the mount's root directory, whatever
// its strata inode; every other inode is the strata inode itself.
import type { LatencySeries } from '../../common/metrics.js';
import { constants } from 'node:fs';
import type { AttrChanges, CoveredItem, FileStat, FsStats, InvalidateEvent, SpecialFileType } from '../../client/index.js';
import type { Logger } from '../../common/log.js';
import { TYPE_BITS, toStatFs } from '../attrs.js';
import type { MountConfig } from '../config.js';
import { settle } from '../context.js';
import { ERRNO, errnoError, toErrno } from '../errno.js';
import type { HandleTable } from '../handles.js';
import type { ForgettingInodeOps } from '../inode-ops.js';
import { type Attr, type Entry, type Fuse3Binding, type FuseRequest, KEEP, type Keep, PACKED_FIELDS } from './binding.js';

export interface LowLevelContext {
  inodes: ForgettingInodeOps;
  /** Cluster figures, with the nearest quota at or above this strata inode (df in a quota directory shows its quota). */
  statfs: (ino: number) => Promise<FsStats>;
  config: MountConfig;
  handles: HandleTable;
  log: Logger;
  fuse: Fuse3Binding;
  /** The strata inode of the mount's root (kernel inode 1). */
  rootIno: number;
  /**
   * Whether `inodes` answers under leases the coordinator revokes (pushes): then the kernel may
   * trust an answer for as long as the lease on it has left, and a listing may stay in the
   * kernel's cache. Without leases: the configured attrTimeoutMs, and no listing cache.
   */
  leased: boolean;
  /** Each op's latency series (common/metrics.ts), looked up once per op; absent = not timed. */
  opLatency?: (op: string) => LatencySeries;
}

const O_ACCMODE = 0o3;
const RENAME_NOREPLACE = 1;
const S_IFMT = 0o170000;
/** mknod's S_IFMT bits -> the SDK's special file types (regular files are created as such). */
const SPECIAL_OF_BITS: Record<number, SpecialFileType> = { 0o010000: 'fifo', 0o020000: 'char-device', 0o060000: 'block-device', 0o140000: 'socket' };
/** Matches max_write: tools size their I/O by st_blksize (cp, dd of its default). */
const BLOCK_BYTES = 1024 * 1024;
/** Names of files removed or renamed over while open here, until their last close. */
const HIDDEN_PREFIX = '.strata_hidden_';
/** Entries asked for at once: a listing read whole can stay cached (the client reads it in pages under one lease). */
const DIR_PAGE = 100_000;
/** Lease time not handed to the kernel: it counts its timeouts from when it reads the reply. */
const KERNEL_MARGIN_MS = 50;
/**
 * How long the ack of a push waits for the kernel to take its invalidations. Bounded: an
 * invalidation of an entry waits for its directory's lock, which a request of this mount waiting
 * for the coordinator may hold (its change waiting in turn for another mount's ack). It usually
 * resolves in well under a millisecond; 50 ms was too short on a loaded machine (a name renamed
 * on another mount was still seen here), and only that rare lock cycle ever waits the whole bound.
 */
const NOTIFY_WAIT_MS = 500;
const FIELDS = PACKED_FIELDS.length;
const DIR_MODE = TYPE_BITS.directory | 0o755;
/** How often kept answers follow the lease (its renewals extend them; half a second lost at most). */
const ANSWERS_REFRESH_MS = 250;
/** Names the kernel may trust at once (tracked to invalidate them); past it, new names get no timeout. */
const TRUSTED_NAMES_MAX = 500_000;
/** Puts of a directory's whole listing the binding may refuse (a change raced it) before keepDir gives up until a push. */
const KEEP_DIR_RETRIES = 3;
/** How long an rmdir waits for the last close of hidden files in the directory (their release comes after close(2) returned). */
const HIDDEN_RELEASE_WAIT_MS = 2000;
/** The kernel retries an open that got ESTALE at once; a later one is a new open. */
const STALE_RETRY_MS = 1000;

/** The attributes of a negative entry (none: the kernel reads only its inode 0 and timeout). */
const NO_ATTR: Attr = { ino: 0, mode: 0, nlink: 0, uid: 0, gid: 0, size: 0, blksize: 0, blocks: 0, atimeMs: 0, mtimeMs: 0, ctimeMs: 0 };

interface DirHandle {
  ino: number;
  entries?: Array<{ name: string; stat: FileStat }>;
  /** Pushes about the directory (dirGeneration) when its entries were read. */
  generation?: number;
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
  /**
   * Names the kernel was told it may trust (entry timeout > 0), per parent directory (kernel
   * numbers). A push about one entry revokes the lease on the whole directory: from then on no
   * change there is pushed, so every name of it the kernel trusts is invalidated then; on an
   * `all` event, every name.
   */
  private readonly trustedNames = new Map<number, Set<string>>();
  private trustedCount = 0;
  /** Until when (monotonic ms) some answer given to the kernel may be trusted by it. */
  private trustedUntilMs = 0;
  /** Directories whose whole listing the kernel cached while their lease held (and no push since). */
  private readonly kernelListed = new Set<number>();
  /** Push generations: per directory (its last push), and of the last `all`. */
  private generation = 0;
  private readonly dirGenerations = new Map<number, number>();
  private allGeneration = 0;
  /** Refreshes what the binding keeps while it keeps anything (refreshAnswers), and its hits seen. */
  private answersTimer: NodeJS.Timeout | undefined;
  /** Directories the binding was given whole (keepDir) since the last push about them. */
  private readonly keptDirs = new Set<number>();
  /** Refused puts of a directory since the last push about it (keepDir). */
  private readonly keepDirRetries = new Map<number, number>();
  private answerHits = 0;
  /** Notifications the kernel has taken, and the acks waiting for theirs. */
  private notifiedUpTo = 0;
  private readonly notifyWaiters: Array<{ seq: number; resolve: () => void }> = [];

  constructor(private readonly ctx: LowLevelContext) {
    this.timeout = ctx.config.attrTimeoutMs / 1000;
  }

  /** Requests that reached JavaScript, per op (diagnostics: `requestCounts`). */
  private readonly counts = new Map<string, number>();

  /** Milliseconds from each request's arrival here to its answer, per op. */
  private readonly answerMs = new Map<string, number>();

  /** Mean microseconds from a request's arrival here to its answer, per op (diagnostics). */
  requestMicros(): Record<string, number> {
    return Object.fromEntries([...this.answerMs].map(([op, ms]) => [op, Math.round((ms * 1000) / (this.counts.get(op) || 1))]));
  }

  /** Requests that reached JavaScript so far, per op, and the metadata cache's hits. */
  requestCounts(): Record<string, number> {
    const hits = (this.ctx.inodes as { cacheHits?: number }).cacheHits;
    return { ...Object.fromEntries(this.counts), ...(hits === undefined ? {} : { cacheHits: hits }) };
  }

  /** The binding's request handler: never throws. */
  readonly handle = (req: FuseRequest): void => {
    this.counts.set(req.op, (this.counts.get(req.op) ?? 0) + 1);
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
        return this.serve(req, () => this.lookup(ino, this.name(req.name)), (stat) => {
          const entry = stat ? this.entry(stat, ino, req.name) : this.absentEntry(ino, req.name!);
          fuse.replyEntry(req.id, entry, this.keep(entry.entryTimeout, entry.attrTimeout, stat?.ino));
          // An absent name too: the binding then answers the next new name (a mkdir's, a create's) itself.
          this.keepDir(ino);
        });
      case 'getattr':
        return this.serve(req, () => inodes.getattr(ino), (stat) => {
          const timeout = this.trust({ attr: stat.ino });
          fuse.replyAttr(req.id, this.attr(stat), timeout, this.keep(timeout, timeout, stat.ino));
        });
      case 'setattr':
        return this.serve(req, () => this.setattr(ino, req), (stat) => fuse.replyAttr(req.id, this.attr(stat), this.trust({ attr: stat.ino })));
      case 'readlink':
        return this.serve(req, () => inodes.readlink(ino), (target) => fuse.replyReadlink(req.id, target));
      case 'mknod':
        return this.serve(req, () => this.mknod(ino, req), (stat) => fuse.replyEntry(req.id, this.entry(stat, ino, req.name)));
      case 'mkdir':
        return this.serve(req, () => this.mkdir(ino, req), (stat) => fuse.replyEntry(req.id, this.entry(stat, ino, req.name)));
      case 'symlink':
        return this.serve(req, () => this.changing(() => inodes.symlink(ino, this.name(req.name), req.target ?? '', this.owner(req))), (stat) => fuse.replyEntry(req.id, this.entry(stat, ino, req.name)));
      case 'unlink':
        return this.serve(req, () => this.unlink(ino, this.name(req.name)), () => fuse.replyErr(req.id, 0));
      case 'rmdir':
        return this.serve(req, () => this.changing(() => this.rmdir(ino, this.name(req.name))), () => fuse.replyErr(req.id, 0));
      case 'rename':
        return this.serve(req, () => this.rename(ino, req), () => fuse.replyErr(req.id, 0));
      case 'link':
        return this.serve(req, () => this.changing(() => inodes.link(ino, this.fromKernel(req.newParent ?? 0), this.name(req.newName))), (stat) => fuse.replyEntry(req.id, this.entry(stat, this.fromKernel(req.newParent ?? 0), req.newName)));
      case 'create':
        return this.serve(req, () => this.create(ino, req), ({ stat, fh }) => {
          const entry = this.entry(stat, ino, req.name);
          fuse.replyCreate(req.id, entry, { fh }, this.keep(entry.entryTimeout, 0, stat.ino));
        });
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
        return this.serve(req, () => this.releasing(this.release(req.fh ?? 0)), () => {
          fuse.replyErr(req.id, 0);
          this.keepClosed(ino);
        });
      case 'opendir':
        return this.serve(req, async () => this.opendir(ino), (open) => fuse.replyOpen(req.id, open));
      case 'readdir':
      case 'readdirplus':
        return this.serve(req, () => this.readdir(req), (dir) => this.replyDir(req, dir));
      case 'releasedir':
        this.dirs.delete(req.fh ?? 0);
        return this.reply(() => fuse.replyErr(req.id, 0));
      case 'statfs':
        return this.serve(req, () => this.ctx.statfs(this.fromKernel(ino)), (fs) => fuse.replyStatfs(req.id, toStatFs(fs)));
      case 'ended':
        return;
      default:
        return this.reply(() => fuse.replyErr(req.id, ERRNO.ENOSYS));
    }
  }

  /** Runs `work`, then `done` with its value, or answers its errno. */
  private serve<T>(req: FuseRequest, work: () => Promise<T>, done: (value: T) => void): void {
    const what = req.name !== undefined ? `${req.ino}/${req.name}` : String(req.ino);
    const arrived = performance.now();
    const answered = () => {
      this.answerMs.set(req.op, (this.answerMs.get(req.op) ?? 0) + performance.now() - arrived);
      this.ctx.opLatency?.(req.op).observeSince(arrived);
    };
    settle(
      this.ctx,
      req.op,
      what,
      work,
      (value) => this.reply(() => (answered(), done(value))),
      (errno) => this.reply(() => (answered(), this.ctx.fuse.replyErr(req.id, errno))),
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
      rdev: stat.rdev,
      // Removed while open here: no name left, as fstat shows on a local disk.
      nlink: this.hidden.has(stat.ino) ? 0 : stat.nlink || 1,
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

  /**
   * What the binding may keep of an answer to answer the same question itself later (no trip to
   * this thread): a name the kernel may trust, with its attributes unless the file is open here
   * (its size and times are the open file's). Kept answers live as long as the lease (the
   * refresh timer moves them on with it) and go with every push (invalidate).
   */
  private keep(entryTimeout: number, attrTimeout: number, ino: number | undefined): Keep {
    if (entryTimeout <= 0 || !this.ctx.leased) return KEEP.nothing;
    const keep = attrTimeout > 0 && (ino === undefined || !this.ctx.handles.fileOf(ino)) ? KEEP.all : KEEP.name;
    this.answersValid();
    return keep;
  }

  /** Tells the binding how long what it keeps may answer: the lease's time left. */
  private answersValid(): void {
    const ms = this.ctx.inodes.leaseRemainingMs() - KERNEL_MARGIN_MS;
    this.ctx.fuse.answersValidFor(ms);
    if (ms > 0 && !this.answersTimer) {
      this.answersTimer = setInterval(this.refreshAnswers, ANSWERS_REFRESH_MS);
      this.answersTimer.unref();
    }
  }

  /**
   * While the binding keeps answers: counts the lookups it answered (the kernel holds each), keeps
   * the lease in use while they are being used (answers of the binding are uses of the lease),
   * and moves their validity on with the lease's renewals.
   */
  private readonly refreshAnswers = (): void => {
    const hits = this.takeServed();
    if (hits > this.answerHits) {
      this.answerHits = hits;
      this.ctx.inodes.keepLeaseAlive?.();
    }
    const ms = this.ctx.inodes.leaseRemainingMs() - KERNEL_MARGIN_MS;
    this.ctx.fuse.answersValidFor(ms);
    if (ms <= 0) {
      this.keptDirs.clear();
      this.keepDirRetries.clear();
      clearInterval(this.answersTimer);
      this.answersTimer = undefined;
    }
  };

  /**
   * After a file's last close here: its attributes (what a getattr would answer now) for the
   * binding to keep, so the stat that often follows a close costs no trip here. Refused by the
   * binding if the inode changed here since the stamp.
   */
  private keepClosed(ino: number): void {
    const { inodes, handles, fuse } = this.ctx;
    if (!this.ctx.leased || handles.fileOf(ino) || inodes.leaseRemainingMs({ attr: ino }) <= KERNEL_MARGIN_MS) return;
    const stamp = fuse.answersStamp();
    inodes.getattr(ino).then(
      (stat) => {
        if (handles.fileOf(ino) || this.trust({ attr: ino }) <= 0) return;
        this.answersValid();
        fuse.answersPutAttr(stamp, this.attr(stat));
      },
      () => undefined,
    );
  }

  /**
   * A name of a directory whose whole listing the lease covers reached this thread: the binding
   * gets the whole of it (names, and attributes where the lease covers them), so the lookups
   * that tend to follow (a stat of each file, ls -l) are answered there. Once per directory
   * until a push about it. Every name handed over counts as trusted by the kernel (the binding
   * may answer it at any time), so a push invalidates them all.
   */
  private keepDir(dir: number): void {
    const { inodes, fuse, handles } = this.ctx;
    if (!this.ctx.leased || this.keptDirs.has(dir) || inodes.leaseRemainingMs({ dir }) <= KERNEL_MARGIN_MS) return;
    this.keptDirs.add(dir);
    const stamp = fuse.answersStamp();
    this.listAll(dir).then(
      (entries) => {
        if (!this.keptDirs.has(dir) || inodes.leaseRemainingMs({ dir }) <= KERNEL_MARGIN_MS) return;
        const count = Math.min(entries.length, Math.max(0, TRUSTED_NAMES_MAX - this.trustedCount));
        const nums = new Float64Array(count * FIELDS);
        const names: string[] = new Array(count);
        for (let k = 0, at = 0; k < count; k++, at += FIELDS) {
          const { name, stat } = entries[k];
          names[k] = name;
          this.trustName(dir, name);
          nums[at + 2] = this.toKernel(stat.ino);
          if (handles.fileOf(stat.ino) || inodes.leaseRemainingMs({ attr: stat.ino }) <= KERNEL_MARGIN_MS) continue;
          const attr = this.attr(stat);
          packAttr(nums, at, attr.ino, attr);
        }
        this.trustedUntilMs = Math.max(this.trustedUntilMs, performance.now() + inodes.leaseRemainingMs());
        this.answersValid();
        const kept = fuse.answersPutDir(stamp, this.toKernel(dir), names.join('/'), nums, count === entries.length);
        // A change here raced the listing: put it again at a later lookup, a few times per push.
        if (kept === false && (this.keepDirRetries.get(dir) ?? 0) < KEEP_DIR_RETRIES) {
          if (this.keepDirRetries.size > 10_000) this.keepDirRetries.clear();
          this.keepDirRetries.set(dir, (this.keepDirRetries.get(dir) ?? 0) + 1);
          this.keptDirs.delete(dir);
        }
      },
      () => this.keptDirs.delete(dir),
    );
  }

  /** Counts the lookups the binding answered itself; its hits so far. */
  private takeServed(): number {
    const served = this.ctx.fuse.answersTakeServed();
    for (let i = 0; i + 2 < served.length; i += 2) this.looked(this.fromKernel(served[i]), served[i + 1]);
    return served[served.length - 1] ?? 0;
  }

  /** A name's inode; null when the name is absent and the lease on it holds (the kernel may cache that). */
  private async lookup(parent: number, name: string): Promise<FileStat | null> {
    try {
      return await this.ctx.inodes.lookup(parent, name);
    } catch (err) {
      if (toErrno(err) === ERRNO.ENOENT && this.ctx.leased && this.trustedCount < TRUSTED_NAMES_MAX && this.ctx.inodes.leaseRemainingMs({ dir: parent, name }) > KERNEL_MARGIN_MS) return null;
      throw err;
    }
  }

  /**
   * An absent name the kernel may cache as such (a negative entry: inode 0) while the lease on it
   * holds: trusted like a name, so a push about the directory invalidates it.
   */
  private absentEntry(parent: number, name: string): Entry {
    const entryTimeout = this.trust({ dir: parent, name });
    if (entryTimeout > 0) this.trustName(parent, name);
    return { ino: 0, attr: NO_ATTR, attrTimeout: 0, entryTimeout };
  }

  /** An entry the kernel will hold: counts as one lookup. */
  private entry(stat: FileStat, parent: number, name: string | undefined): Entry {
    this.looked(stat.ino, 1);
    const entryTimeout = name === undefined || this.trustedCount >= TRUSTED_NAMES_MAX ? 0 : this.trust({ dir: parent, name });
    if (entryTimeout > 0) this.trustName(parent, name!);
    return { ino: this.toKernel(stat.ino), attr: this.attr(stat), attrTimeout: this.trust({ attr: stat.ino }), entryTimeout };
  }

  /**
   * Seconds the kernel may trust an answer about `item`: what the lease on it has left, less a
   * margin; 0 when no lease covers it (a change's own answer, a read the lease was refused for),
   * as then no push would tell the kernel when it goes stale. A source without leases: the
   * configured timeout.
   */
  private trust(item: CoveredItem): number {
    if (!this.ctx.leased) return this.timeout;
    const ms = this.ctx.inodes.leaseRemainingMs(item) - KERNEL_MARGIN_MS;
    if (ms <= 0) return 0;
    this.trustedUntilMs = Math.max(this.trustedUntilMs, performance.now() + ms);
    return ms / 1000;
  }

  private trustName(parent: number, name: string): void {
    const dir = this.toKernel(parent);
    let names = this.trustedNames.get(dir);
    if (!names) this.trustedNames.set(dir, (names = new Set()));
    const before = names.size;
    names.add(name);
    this.trustedCount += names.size - before;
  }

  /** Invalidates every name of directory `dir` (kernel number) the kernel trusts; the last notice's number. */
  private distrustNames(dir: number): number | boolean {
    const names = this.trustedNames.get(dir);
    if (!names) return 0;
    this.trustedNames.delete(dir);
    this.trustedCount -= names.size;
    let seq: number | boolean = 0;
    for (const name of names) seq = this.ctx.fuse.notifyInvalEntry(dir, name);
    return seq;
  }

  private looked(ino: number, count: number): void {
    if (ino !== this.ctx.rootIno) this.lookups.set(ino, (this.lookups.get(ino) ?? 0) + count);
  }

  private forget(pairs: number[]): void {
    this.takeServed(); // the kernel may forget what the binding answered
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
    const changes: AttrChanges = {};
    if (req.mode !== undefined) changes.mode = req.mode & 0o7777;
    if (req.setUid !== undefined) changes.uid = req.setUid;
    if (req.setGid !== undefined) changes.gid = req.setGid;
    // "now" goes as such: the coordinator takes its own clock, and lets a writer who is not the owner set it.
    if (req.atime === 'now') changes.atimeNow = true;
    else if (req.atime !== undefined) changes.atimeMs = req.atime;
    if (req.mtime === 'now') changes.mtimeNow = true;
    else if (req.mtime !== undefined) changes.mtimeMs = req.mtime;
    if (this.ctx.config.readOnly) throw errnoError('EROFS', 'read-only mount');
    const open = handles.fileOf(ino);
    let stat: FileStat | undefined;
    if (req.size !== undefined) {
      stat = open ? await open.truncate('', req.size) : await inodes.setattr(ino, { size: req.size });
    }
    if ((changes.mtimeMs !== undefined || changes.mtimeNow) && open) {
      // A later commit of buffered bytes would move mtime again (cp -p sets times before close).
      await open.flush();
      open.modifiedMs = undefined; // the time set here is the one to show
    }
    if (Object.keys(changes).length > 0 || !stat) stat = await inodes.setattr(ino, changes);
    return stat;
  }

  // ---- names ----

  /** A new entry belongs to its caller, as on a local disk (the coordinator applies set-group-ID directories). */
  private owner(req: FuseRequest): { uid: number; gid: number } {
    return { uid: req.uid, gid: req.gid };
  }

  /**
   * The coordinator reads mode 0 as "not given" (and picks 0644/0755), so a requested mode 0
   * (open(O_CREAT, 0), umask 0777) is set afterwards.
   */
  private async finishCreated(stat: FileStat, mode: number): Promise<FileStat> {
    if (mode === 0 && (stat.mode & 0o777) !== 0) return this.ctx.inodes.setattr(stat.ino, { mode: stat.mode & 0o7000 });
    return stat;
  }

  private mkdir(parent: number, req: FuseRequest): Promise<FileStat> {
    const mode = (req.mode ?? 0) & 0o7777;
    return this.changing(async () => this.finishCreated(await this.ctx.inodes.mkdir(parent, this.name(req.name), mode, this.owner(req)), mode));
  }

  private mknod(parent: number, req: FuseRequest): Promise<FileStat> {
    const mode = req.mode ?? 0;
    const type = mode & S_IFMT;
    return this.changing(async () => {
      if (type === 0 || type === constants.S_IFREG) {
        const { stat } = await this.ctx.inodes.create(parent, this.name(req.name), { mode: mode & 0o7777, exclusive: true, allocateFirstChunk: false, owner: this.owner(req) });
        return this.finishCreated(stat, mode & 0o7777);
      }
      const special = SPECIAL_OF_BITS[type];
      if (!special) throw errnoError('EINVAL', `mknod: unknown file type 0${type.toString(8)}`);
      return this.ctx.inodes.mknod(parent, this.name(req.name), special, mode & 0o7777, req.rdev ?? 0, this.owner(req));
    });
  }

  private create(parent: number, req: FuseRequest): Promise<{ stat: FileStat; fh: number }> {
    const mode = (req.mode ?? 0) & 0o7777;
    return this.changing(async () => {
      const created = await this.ctx.inodes.create(parent, this.name(req.name), { mode, exclusive: (req.flags & constants.O_EXCL) !== 0, allocateFirstChunk: true, owner: this.owner(req) });
      const stat = await this.finishCreated(created.stat, mode);
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
    // Another name keeps the inode anyway: only its last name needs hiding.
    return stat && stat.type === 'file' && stat.nlink <= 1 && this.held(stat.ino) ? stat.ino : undefined;
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

  /**
   * A directory whose last entries are files removed while open here (hidden until their last
   * close) is not empty yet; but close(2) does not wait for the kernel's release, so right after
   * a process closed the last of them its removal may still be on its way: waited for, briefly.
   */
  private async rmdir(parent: number, name: string): Promise<void> {
    const hiding = this.hidden.size > 0 || this.removals.size > 0 || this.releases.size > 0;
    // A release the kernel sent before this rmdir may be removing a hidden name in it.
    if (this.releases.size > 0 || this.removals.size > 0) await Promise.allSettled([...this.releases, ...this.removals]);
    try {
      return await this.ctx.inodes.rmdir(parent, name);
    } catch (err) {
      if (toErrno(err) !== ERRNO.ENOTEMPTY || !(hiding || this.hidden.size > 0 || this.removals.size > 0)) throw err;
      const dir = await this.ctx.inodes.lookup(parent, name).catch(() => undefined);
      if (!dir) throw err;
      const hiddenIn = () => [...this.hidden.values()].some((h) => h.parent === dir.ino);
      for (const giveUpAt = Date.now() + HIDDEN_RELEASE_WAIT_MS; hiddenIn() && Date.now() < giveUpAt; ) await new Promise((r) => setTimeout(r, 10));
      await Promise.allSettled([...this.removals]);
      return this.ctx.inodes.rmdir(parent, name);
    }
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

  /** Releases under way: the last close of a file removed while open removes its hidden name. */
  private readonly releases = new Set<Promise<unknown>>();

  private releasing(done: Promise<void>): Promise<void> {
    this.releases.add(done);
    const forget = () => this.releases.delete(done);
    done.then(forget, forget);
    return done;
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
    this.takeServed();
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

  /**
   * The kernel may cache the listing it reads through this handle (FOPEN_CACHE_DIR) when leases
   * are in use, and keeps a listing cached earlier (keep_cache) only if that one was read whole
   * while the directory's lease held and no push about it came since: any later change of it is
   * pushed, and the push drops the kernel's copy (invalidate). Without keep_cache the kernel
   * drops what it cached at this open.
   */
  private opendir(ino: number): { fh: number; cacheDir: boolean; keepCache: boolean } {
    let fh = this.nextDir;
    while (this.dirs.has(fh)) fh = fh >= 0x7fffffff ? 1 : fh + 1;
    this.nextDir = fh >= 0x7fffffff ? 1 : fh + 1;
    this.dirs.set(fh, { ino });
    const keepCache = this.kernelListed.has(ino) && this.ctx.inodes.leaseRemainingMs({ dir: ino }) > KERNEL_MARGIN_MS;
    if (!keepCache) this.kernelListed.delete(ino);
    return { fh, cacheDir: this.ctx.leased, keepCache };
  }

  /** The entries from `offset` on ('.' is 0, '..' is 1): a listing read whole at offset 0. */
  private async readdir(req: FuseRequest): Promise<DirHandle> {
    const dir = this.dirs.get(req.fh ?? 0);
    if (!dir) throw errnoError('EBADF', `no open directory with handle ${req.fh}`);
    const offset = req.offset ?? 0;
    if (offset === 0 || !dir.entries) {
      dir.generation = this.dirGeneration(dir.ino);
      dir.entries = await this.listAll(dir.ino);
    }
    return dir;
  }

  /**
   * Packs the entries from the request's offset into one reply (names joined, numbers in one
   * array: no object per entry). Entries go without attributes, also with readdirplus (node id
   * 0: no lookup for the kernel to hold, nothing for it to update per entry): a listing costs
   * this thread and the kernel a few numbers per name. Attributes come with the lookups that
   * follow, if any: the first one hands the binding the whole directory (keepDir), which then
   * answers the rest itself.
   */
  private replyDir(req: FuseRequest, dir: DirHandle): void {
    const plus = req.op === 'readdirplus';
    const size = req.size ?? 4096;
    const offset = req.offset ?? 0;
    const entries = dir.entries!;
    const total = entries.length + 2;
    const dirIno = this.toKernel(dir.ino);
    const header = plus ? 152 : 24;
    // Entries that may fit: each takes at least its header and name (UTF-16 length <= UTF-8 bytes).
    let end = offset;
    for (let room = size; end < total; end++) {
      const nameLength = end < 2 ? end + 1 : entries[end - 2].name.length;
      room -= header + ((nameLength + 7) & ~7);
      if (room < 0) break;
    }
    end = Math.min(total, end + 1);
    const count = Math.max(0, end - offset);
    const nums = new Float64Array(count * FIELDS);
    const names: string[] = new Array(count);
    const rootIno = this.ctx.rootIno;
    for (let i = offset, at = 0; i < end; i++, at += FIELDS) {
      const k = i - offset;
      if (i < 2) {
        names[k] = i === 0 ? '.' : '..';
        nums[at + 1] = i + 1;
        nums[at + 2] = dirIno;
        nums[at + 3] = DIR_MODE;
        continue;
      }
      const { name, stat } = entries[i - 2];
      names[k] = name;
      nums[at + 1] = i + 1;
      nums[at + 2] = stat.ino === rootIno ? 1 : stat.ino;
      nums[at + 3] = TYPE_BITS[stat.type];
    }
    const packed = this.ctx.fuse.replyDirPacked(req.id, size, plus, names.join('/'), nums);
    // The empty reply at the end completes the kernel's cached listing: trusted only if the
    // lease on the whole listing still holds and nothing about the directory was pushed since
    // it was read (a push meanwhile may have invalidated before the kernel stored it).
    if (packed === 0 && offset >= total && this.ctx.leased) {
      if (this.dirGeneration(dir.ino) === dir.generation && this.ctx.inodes.leaseRemainingMs({ dir: dir.ino }) > KERNEL_MARGIN_MS) this.kernelListed.add(dir.ino);
      else this.kernelListed.delete(dir.ino);
    }
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

  private dirGeneration(ino: number): number {
    return Math.max(this.dirGenerations.get(ino) ?? 0, this.allGeneration);
  }

  private touchDir(ino: number): void {
    if (this.dirGenerations.size > 100_000) {
      this.dirGenerations.clear();
      this.allGeneration = ++this.generation; // forgotten: every directory counts as touched
    }
    this.dirGenerations.set(ino, ++this.generation);
  }

  /**
   * Pushes from the metadata service: drop what the kernel caches of a name, an inode, or (all)
   * everything. Resolves once the kernel took the invalidations (bounded by NOTIFY_WAIT_MS), so
   * the push is acked (and the change acknowledged to its writer) only after that.
   */
  invalidate(ev: InvalidateEvent): Promise<void> {
    if ('all' in ev) return this.invalidateAll();
    const { fuse } = this.ctx;
    const ino = this.toKernel(ev.ino);
    this.touchDir(ev.ino);
    // The binding's own answers first: none may answer the kernel's re-lookups after these.
    fuse.answersDrop(ino);
    if (ev.name !== undefined) {
      fuse.answersDrop(ino, ev.name);
      this.keptDirs.delete(ev.ino);
      this.keepDirRetries.delete(ev.ino);
    }
    let seq: number | boolean = 0;
    if (ev.name === undefined) {
      this.kernelListed.delete(ev.ino);
      seq = fuse.notifyInvalInode(ino, 0, 0);
    } else {
      // The lease on the whole directory is gone: every name of it the kernel trusts, its listing.
      seq = this.distrustNames(ino);
      if (ev.name !== '') seq = fuse.notifyInvalEntry(ino, ev.name);
      if (this.kernelListed.delete(ev.ino) || ev.name === '') seq = fuse.notifyInvalInode(ino, 0, 0);
    }
    return this.whenNotified(seq);
  }

  /** Everything the kernel may still trust goes: names, attributes, cached listings. */
  private invalidateAll(): Promise<void> {
    const { fuse } = this.ctx;
    fuse.answersDrop();
    this.keptDirs.clear();
    this.keepDirRetries.clear();
    this.takeServed();
    this.allGeneration = ++this.generation;
    let seq: number | boolean = 0;
    for (const dir of this.kernelListed) seq = fuse.notifyInvalInode(this.toKernel(dir), 0, 0);
    this.kernelListed.clear();
    // Timeouts never outlast the lease: past the last one handed out, the kernel trusts nothing.
    if (performance.now() < this.trustedUntilMs) {
      for (const dir of [...this.trustedNames.keys()]) seq = this.distrustNames(dir) || seq;
      for (const ino of this.lookups.keys()) seq = fuse.notifyInvalInode(this.toKernel(ino), -1, 0);
      seq = fuse.notifyInvalInode(1, -1, 0);
    }
    this.trustedNames.clear();
    this.trustedCount = 0;
    return this.whenNotified(seq);
  }

  /** The binding's report: the kernel took every notification up to `seq`. */
  readonly notified = (seq: number): void => {
    this.notifiedUpTo = Math.max(this.notifiedUpTo, seq);
    while (this.notifyWaiters.length > 0 && this.notifyWaiters[0].seq <= this.notifiedUpTo) this.notifyWaiters.shift()!.resolve();
  };

  private whenNotified(seq: number | boolean): Promise<void> {
    if (typeof seq !== 'number' || seq === 0 || seq <= this.notifiedUpTo) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const waiter = { seq, resolve };
      this.notifyWaiters.push(waiter);
      setTimeout(() => {
        const at = this.notifyWaiters.indexOf(waiter);
        if (at >= 0) this.notifyWaiters.splice(at, 1);
        resolve();
      }, NOTIFY_WAIT_MS).unref();
    });
  }
}


/** An entry's node id and attributes, at their places in its PACKED_FIELDS record; the caller sets the rest. */
function packAttr(nums: Float64Array, at: number, nodeid: number, attr: Attr): void {
  nums[at] = nodeid;
  nums[at + 3] = attr.mode;
  nums[at + 4] = attr.nlink;
  nums[at + 5] = attr.uid;
  nums[at + 6] = attr.gid;
  nums[at + 7] = attr.size;
  nums[at + 8] = attr.blocks;
  nums[at + 9] = attr.blksize;
  nums[at + 10] = attr.atimeMs;
  nums[at + 11] = attr.mtimeMs;
  nums[at + 12] = attr.ctimeMs;
  nums[at + 15] = attr.rdev ?? 0;
}

export const HIDDEN_NAME_PREFIX = HIDDEN_PREFIX;
