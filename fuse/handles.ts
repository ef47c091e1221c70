// Open-file handles of the mount. A handle is what the kernel's `fh` names; handles of the
// same file (by inode, so a rename does not split them) share one OpenFile, so two
// descriptors of one file in this mount see each other's writes at once.
import type { ChunkGrant, FileStat } from '../client/index.js';
import { errnoError } from './errno.js';
import { type FileBackend, OpenFile, type WriteLimits } from './open-file.js';
import { ReadCache } from './read-cache.js';

export interface Handle {
  fd: number;
  file: OpenFile;
  /** Per handle: each descriptor is its own sequential stream. */
  cache: ReadCache;
  writable: boolean;
}

/** fh travels as 32 bits and 0 means "none" to the binding. */
const MAX_FD = 0x7fffffff;
/** Removed inodes remembered for opens racing their removal (a race of milliseconds). */
const MAX_REMOVING = 4096;

export class HandleTable {
  private readonly handles = new Map<number, Handle>();
  private readonly files = new Map<number, OpenFile>();
  /** Paths with an open under way (its handle not in the table yet). */
  private readonly opening = new Map<string, number>();
  /** Removals waiting for the last handle of, or open under way on, a file: path → inode. */
  private readonly deferred = new Map<string, number>();
  /**
   * Inodes whose removal was decided (not deferred), newest last: an open that began after that
   * decision may still stat the file before the removal commits, and must not open it.
   */
  private readonly removing = new Set<number>();
  private nextFd = 1;

  constructor(
    private readonly backend: FileBackend,
    private readonly limits: WriteLimits,
  ) {}

  /** `grant`: chunk 0's placement, when the file was just created by this open. */
  open(stat: FileStat, writable: boolean, grant?: ChunkGrant): Handle {
    let file = this.files.get(stat.ino);
    if (file) file.refresh(stat);
    else this.files.set(stat.ino, (file = new OpenFile(this.backend, stat, this.limits, grant)));
    file.handles++;
    const handle: Handle = { fd: this.allocateFd(), file, cache: new ReadCache(), writable };
    this.handles.set(handle.fd, handle);
    return handle;
  }

  get(fd: number): Handle {
    const handle = this.handles.get(fd);
    if (!handle) throw errnoError('EBADF', `no open file with handle ${fd}`);
    return handle;
  }

  /** The open file of an inode, if this mount has it open. */
  fileOf(ino: number): OpenFile | undefined {
    return this.files.get(ino);
  }

  /** Closes a handle; returns its file (whose `handles` may now be 0). */
  close(fd: number): OpenFile {
    const handle = this.get(fd);
    this.handles.delete(fd);
    handle.file.handles--;
    return handle.file;
  }

  /** Forgets a file once no handle uses it (after its last flush, so a reopen finds its bytes). */
  forget(file: OpenFile): void {
    if (file.handles === 0 && this.files.get(file.ino) === file) this.files.delete(file.ino);
  }

  beginOpen(path: string): void {
    this.opening.set(path, (this.opening.get(path) ?? 0) + 1);
  }

  endOpen(path: string): void {
    const count = this.opening.get(path) ?? 0;
    if (count > 1) this.opening.set(path, count - 1);
    else this.opening.delete(path);
  }

  /** Defers the removal of `path` (inode `ino`) if a handle holds it or an open of it is under way. */
  deferRemoval(path: string, ino: number): boolean {
    if (!this.opening.has(path) && !this.files.get(ino)?.handles) {
      this.markRemoving(ino);
      return false;
    }
    this.deferred.set(path, ino);
    return true;
  }

  /** Whether the removal of `ino` was decided (an open that stat-ed it since must not use it). */
  isRemoving(ino: number): boolean {
    return this.removing.has(ino);
  }

  /** The deferred removals nothing holds any more, taken off the list: to be done now. */
  takeRemovable(): string[] {
    const free = [...this.deferred].filter(([path, ino]) => !this.opening.has(path) && !this.files.get(ino)?.handles);
    for (const [path, ino] of free) {
      this.deferred.delete(path);
      this.markRemoving(ino);
    }
    return free.map(([path]) => path);
  }

  openFiles(): OpenFile[] {
    return [...this.files.values()];
  }

  /** Inode numbers are never reused, so the set is exact; it keeps the newest few thousand. */
  private markRemoving(ino: number): void {
    this.removing.add(ino);
    if (this.removing.size > MAX_REMOVING) this.removing.delete(this.removing.values().next().value!);
  }

  private allocateFd(): number {
    for (;;) {
      const fd = this.nextFd;
      this.nextFd = fd >= MAX_FD ? 1 : fd + 1;
      if (!this.handles.has(fd)) return fd;
    }
  }
}
