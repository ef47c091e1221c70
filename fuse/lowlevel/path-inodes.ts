// InodeOps over the SDK's path-based calls, for as long as the SDK has no strata.inodes: the
// mount remembers, for each inode the kernel holds, its directory and name, and turns (parent,
// name) into a path. Names change here when this mount renames; another client's rename of a
// directory shows as NotFound under the old path until the kernel looks the names up again.
import type { AttrChanges, FileStat, Owner, Strata } from '../../client/index.js';
import { StrataError } from '../../common/errors.js';
import type { ForgettingInodeOps } from '../inode-ops.js';

interface Name {
  parent: number;
  name: string;
}

const PAGE = 10_000;

export class PathInodes implements ForgettingInodeOps {
  private readonly names = new Map<number, Name>();
  /** `${parent}/${name}` → ino, for the entries in `names`. */
  private readonly inos = new Map<string, number>();

  constructor(
    private readonly strata: Strata,
    /** The remote directory shown at the mount point, and its inode. */
    private readonly rootPath: string,
    private readonly rootIno: number,
  ) {}

  pathOf(ino: number): string {
    const parts: string[] = [];
    for (let at = ino; at !== this.rootIno; ) {
      const name = this.names.get(at);
      if (!name) throw new StrataError('NotFound', `inode ${ino} is not known to this mount`);
      parts.push(name.name);
      at = name.parent;
      if (parts.length > 4096) throw new StrataError('Internal', `inode ${ino}: its names loop`);
    }
    const root = this.rootPath === '/' ? '' : this.rootPath.replace(/\/+$/, '');
    return parts.length === 0 ? root || '/' : `${root}/${parts.reverse().join('/')}`;
  }

  private child(parent: number, name: string): string {
    const dir = this.pathOf(parent);
    return dir === '/' ? `/${name}` : `${dir}/${name}`;
  }

  private remember(parent: number, name: string, stat: FileStat): FileStat {
    if (stat.ino === this.rootIno) return stat;
    const old = this.names.get(stat.ino);
    if (old) this.inos.delete(`${old.parent}/${old.name}`);
    const key = `${parent}/${name}`;
    const previous = this.inos.get(key);
    if (previous !== undefined && previous !== stat.ino) this.names.delete(previous);
    this.names.set(stat.ino, { parent, name });
    this.inos.set(key, stat.ino);
    return stat;
  }

  private dropName(parent: number, name: string): void {
    const key = `${parent}/${name}`;
    const ino = this.inos.get(key);
    this.inos.delete(key);
    if (ino !== undefined) this.names.delete(ino);
  }

  forget(ino: number): void {
    const name = this.names.get(ino);
    if (!name) return;
    this.names.delete(ino);
    if (this.inos.get(`${name.parent}/${name.name}`) === ino) this.inos.delete(`${name.parent}/${name.name}`);
  }

  async lookup(parent: number, name: string): Promise<FileStat> {
    return this.remember(parent, name, await this.strata.stat(this.child(parent, name)));
  }

  async getattr(ino: number): Promise<FileStat> {
    const stat = await this.strata.stat(this.pathOf(ino));
    // Another client replaced the name: this inode has no path any more.
    if (stat.ino !== ino) throw new StrataError('NotFound', `inode ${ino} was replaced at ${this.pathOf(ino)}`);
    return stat;
  }

  async readdirplus(ino: number, opts: { after?: string; limit?: number } = {}): Promise<{ entries: Array<{ name: string; stat: FileStat }>; more: boolean }> {
    const limit = opts.limit ?? PAGE;
    const entries: Array<{ name: string; stat: FileStat }> = [];
    let more = false;
    for await (const entry of this.strata.list(this.pathOf(ino), { withStats: true, after: opts.after, pageSize: Math.min(limit + 1, PAGE) })) {
      if (entries.length >= limit) {
        more = true;
        break;
      }
      if (entry.stat) entries.push({ name: entry.name, stat: this.remember(ino, entry.name, entry.stat) });
    }
    return { entries, more };
  }

  async mkdir(parent: number, name: string, mode: number, owner?: Owner): Promise<FileStat> {
    return this.remember(parent, name, await this.strata.mkdir(this.child(parent, name), { mode, owner }));
  }

  async create(parent: number, name: string, opts: { mode?: number; exclusive?: boolean; allocateFirstChunk?: boolean; owner?: Owner } = {}) {
    const path = this.child(parent, name);
    const options = { mode: opts.mode, exclusive: opts.exclusive, owner: opts.owner };
    const created = opts.allocateFirstChunk === false ? { stat: await this.strata.create(path, options) } : await this.strata.createForWrite(path, options);
    this.remember(parent, name, created.stat);
    return created;
  }

  async symlink(parent: number, name: string, target: string, owner?: Owner): Promise<FileStat> {
    return this.remember(parent, name, await this.strata.symlink(target, this.child(parent, name), { owner }));
  }

  async mknod(): Promise<FileStat> {
    throw new StrataError('NotPermitted', 'special files need the session stream (strata.inodes)');
  }

  async link(): Promise<FileStat> {
    throw new StrataError('NotPermitted', 'hard links need the session stream (strata.inodes)');
  }

  readlink(ino: number): Promise<string> {
    return this.strata.readlink(this.pathOf(ino));
  }

  async unlink(parent: number, name: string): Promise<void> {
    await this.strata.rm(this.child(parent, name));
    this.dropName(parent, name);
  }

  async rmdir(parent: number, name: string): Promise<void> {
    await this.strata.rm(this.child(parent, name));
    this.dropName(parent, name);
  }

  async rename(srcParent: number, srcName: string, dstParent: number, dstName: string, opts: { noReplace?: boolean } = {}): Promise<void> {
    const from = this.child(srcParent, srcName);
    const to = this.child(dstParent, dstName);
    // The path API always replaces: RENAME_NOREPLACE checks first (racy against other clients).
    if (opts.noReplace && (await this.strata.exists(to))) throw new StrataError('Exists', `${to} exists`);
    await this.strata.rename(from, to);
    const moved = this.inos.get(`${srcParent}/${srcName}`);
    this.dropName(dstParent, dstName);
    this.inos.delete(`${srcParent}/${srcName}`);
    if (moved !== undefined) {
      this.names.set(moved, { parent: dstParent, name: dstName });
      this.inos.set(`${dstParent}/${dstName}`, moved);
    }
  }

  setattr(ino: number, changes: AttrChanges): Promise<FileStat> {
    return this.strata.setattr(this.pathOf(ino), changes);
  }

  onInvalidate(): () => void {
    return () => undefined; // nothing pushes changes to a path-based client
  }

  leaseRemainingMs(): number {
    return 0; // no leases: nothing it answers stays valid
  }
}
