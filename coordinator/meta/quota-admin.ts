// Setting, reading, listing and removing directory quotas (the records MetaStore charges: quotas.ts).
// A new quota's usage is counted by one walk of the tree under it, in pages of entries with their
// attributes; a quota directory met on the way contributes its own (kept) usage instead of being
// walked again. The walk is not a snapshot: a write landing under the tree while it runs may be
// missed by the count (setting the quota again with `recount` counts afresh).
import { StrataError, invalid, notDir } from '../../common/errors.js';
import { splitPath } from '../../common/paths.js';
import type { Kv } from './kv.js';
import * as k from './keys.js';
import { decodeQuota, encodeQuota, epochBump, epochCompare, type QuotaRecord, type Usage } from './quotas.js';
import type { MetaStore } from './store.js';
import { ROOT_INO, type Attr } from './types.js';

export interface QuotaInfo extends QuotaRecord {
  ino: number;
}

/** Limits to set: absent = keep the current one (none for a new quota); 0 = no limit. */
export interface QuotaLimits {
  bytes?: number;
  files?: number;
}

const WALK_PAGE = 1000;
const SET_ATTEMPTS = 8;

export class QuotaAdmin {
  constructor(
    private readonly kv: Kv,
    private readonly meta: MetaStore,
  ) {}

  /** Sets (or changes) the quota on directory `path`; `onProgress` hears the walk's inode count. */
  async set(path: string, limits: QuotaLimits, options: { recount?: boolean; onProgress?: (inodes: number) => void } = {}): Promise<QuotaInfo> {
    const dir = await this.dirAt(path);
    for (let attempt = 0; attempt < SET_ATTEMPTS; attempt++) {
      const [read, epochRead] = await this.kv.getMany([k.quotaKey(dir), k.QUOTA_EPOCH_KEY]);
      const current = read ? decodeQuota(read.value) : undefined;
      if (!current && limits.bytes === undefined && limits.files === undefined) throw invalid(`${path}: give a limit of bytes and/or files`);
      const record: QuotaRecord = {
        limitBytes: limits.bytes ?? current?.limitBytes ?? 0,
        limitFiles: limits.files ?? current?.limitFiles ?? 0,
        usedBytes: current?.usedBytes ?? 0,
        usedFiles: current?.usedFiles ?? 0,
        path,
      };
      if (current && !options.recount) {
        // New limits only: the usage kept so far stays (compared, so no charge in between is lost).
        const ok = await this.kv.txn({ compares: [{ key: read!.key, modRevision: read!.modRevision }], ops: [{ type: 'put', key: read!.key, value: encodeQuota(record) }] });
        if (ok) return { ...record, ino: dir };
        continue;
      }
      const usage = await this.count(dir, options.onProgress);
      record.usedBytes = usage.bytes;
      record.usedFiles = usage.files;
      // From this txn on every change under the directory charges it (the epoch moves).
      const ok = await this.kv.txn({
        compares: [epochCompare(epochRead), ...(current ? [] : [{ key: k.quotaKey(dir), modRevision: 0 }])],
        ops: [{ type: 'put', key: k.quotaKey(dir), value: encodeQuota(record) }, epochBump(epochRead, current ? 0 : 1)],
      });
      if (ok) return { ...record, ino: dir };
    }
    throw new StrataError('Conflict', `${path}: quotas kept changing while this one was set; try again`);
  }

  /** The quota on directory `attr`, which the caller named `path`. */
  async getDir(attr: Attr, path: string): Promise<QuotaInfo> {
    if (attr.type !== 'dir') throw notDir(path);
    const [read] = await this.kv.getMany([k.quotaKey(attr.ino)]);
    if (!read) throw new StrataError('NotFound', `${path}: no quota set on this directory`);
    return { ...decodeQuota(read.value), path, ino: attr.ino };
  }

  async remove(path: string): Promise<void> {
    const dir = await this.dirAt(path);
    for (let attempt = 0; attempt < SET_ATTEMPTS; attempt++) {
      const [read, epochRead] = await this.kv.getMany([k.quotaKey(dir), k.QUOTA_EPOCH_KEY]);
      if (!read) throw new StrataError('NotFound', `${path}: no quota set on this directory`);
      const ok = await this.kv.txn({
        compares: [{ key: read.key, modRevision: read.modRevision }, epochCompare(epochRead)],
        ops: [{ type: 'delete', key: read.key }, epochBump(epochRead, -1)],
      });
      if (ok) return;
    }
    throw new StrataError('Conflict', `${path}: quotas kept changing while this one was removed; try again`);
  }

  /**
   * Every quota, with the path its directory has now; with `top` (a tenant caller's root), only
   * those `include` keeps, with their paths from `top`.
   */
  async list(top = ROOT_INO, include?: (ino: number) => Promise<boolean>): Promise<QuotaInfo[]> {
    const { start, end } = k.rangeOf(k.QUOTA_PREFIX);
    const quotas: QuotaInfo[] = [];
    for (let from = start; ; ) {
      const rows = await this.kv.range({ start: from, end, limit: WALK_PAGE });
      for (const row of rows) {
        if (row.key === k.QUOTA_EPOCH_KEY) continue;
        const ino = Number(row.key.slice(k.QUOTA_PREFIX.length));
        if (include && !(await include(ino))) continue;
        const record = decodeQuota(row.value);
        quotas.push({ ...record, ino, path: await this.pathOf(ino, record.path, top) });
      }
      if (rows.length < WALK_PAGE) break;
      from = rows[rows.length - 1]!.key + '\0';
    }
    return quotas.sort((a, b) => a.path.localeCompare(b.path));
  }

  /**
   * The nearest quota at or above `ino` (a file: its directory) and at or below directory `top`
   * (a tenant caller's root: the quotas above it are not its to see), with its path from `top`.
   */
  async nearest(ino: number, top = ROOT_INO): Promise<QuotaInfo | undefined> {
    const above = await this.meta.quotasOf(ino);
    const outside = top === ROOT_INO ? [] : (await this.meta.quotasOf(top)).filter((q) => q !== top);
    const nearest = above.find((q) => !outside.includes(q));
    if (nearest === undefined) return undefined;
    const [read] = await this.kv.getMany([k.quotaKey(nearest)]);
    if (!read) return undefined;
    const record = decodeQuota(read.value);
    return { ...record, ino: nearest, path: await this.pathOf(nearest, record.path, top) };
  }

  /** The quota record on directory `ino`, if it has one. */
  async recordOf(ino: number): Promise<QuotaRecord | undefined> {
    const [read] = await this.kv.getMany([k.quotaKey(ino)]);
    return read ? decodeQuota(read.value) : undefined;
  }

  /** Usage under directory `dir` counted by one walk of its tree (as a new quota's count). */
  usageUnder(dir: number): Promise<Usage> {
    return this.count(dir);
  }

  private async dirAt(path: string): Promise<number> {
    const attr = await this.meta.resolve(splitPath(path), path);
    if (attr.type !== 'dir') throw notDir(path);
    return attr.ino;
  }

  /** Usage under directory `dir` (itself not counted): logical bytes of its files, its inodes. */
  private async count(dir: number, onProgress?: (inodes: number) => void): Promise<Usage> {
    const usage: Usage = { bytes: 0, files: 0 };
    const linked = new Set<number>(); // files with several names count once
    const dirs = [dir];
    while (dirs.length > 0) {
      const at = dirs.pop()!;
      for (let after = ''; ; ) {
        let page;
        try {
          page = await this.meta.readdir(at, after, WALK_PAGE, true);
        } catch (err) {
          if (err instanceof StrataError && err.kind === 'NotFound') break; // removed while we walked
          throw err;
        }
        const subdirs = page.entries.filter((e) => e.attr?.type === 'dir');
        const own = await this.kv.getMany(subdirs.map((e) => k.quotaKey(e.ino)));
        subdirs.forEach((entry, i) => {
          const quota = own[i] ? decodeQuota(own[i]!.value) : undefined;
          if (!quota) return void dirs.push(entry.ino);
          usage.bytes += quota.usedBytes;
          usage.files += quota.usedFiles;
        });
        for (const { attr } of page.entries) {
          if (!attr) continue;
          if (attr.nlink > 1 && attr.type !== 'dir') {
            if (linked.has(attr.ino)) continue;
            linked.add(attr.ino);
          }
          usage.files += 1;
          if (attr.type === 'file') usage.bytes += attr.size;
          if (attr.type === 'file' && attr.parent === 0) await this.recordParent(attr.ino, at);
        }
        onProgress?.(usage.files);
        if (!page.more || page.entries.length === 0) break;
        after = page.entries[page.entries.length - 1]!.name;
      }
    }
    return usage;
  }

  /** A file from before files recorded their directory: recorded now, so its writes charge this quota. */
  private async recordParent(ino: number, parent: number): Promise<void> {
    const [inode] = await this.kv.getMany([k.inodeKey(ino)]);
    if (!inode) return;
    const attr = k.decodeAttr(ino, inode.value);
    if (attr.parent !== 0) return;
    await this.kv.txn({ compares: [{ key: inode.key, modRevision: inode.modRevision }], ops: [{ type: 'put', key: inode.key, value: k.encodeAttr({ ...attr, parent }) }] });
  }

  /**
   * Where directory `ino` is now, from directory `top`: the path the quota was set at while it
   * still leads there (from the namespace's root), else found by its parents.
   */
  private async pathOf(ino: number, setAt: string, top = ROOT_INO): Promise<string> {
    if (top === ROOT_INO) {
      const still = await this.meta.resolve(splitPath(setAt), setAt).catch(() => undefined);
      if (still?.ino === ino) return setAt;
    }
    const names: string[] = [];
    for (let at = ino, depth = 0; at !== top && at !== ROOT_INO && depth < 4096; depth++) {
      const attr = await this.meta.getattr(at).catch(() => undefined);
      if (!attr) return setAt;
      const name = await this.nameIn(attr.parent, at);
      if (name === undefined) return setAt;
      names.unshift(name);
      at = attr.parent;
    }
    return '/' + names.join('/');
  }

  private async nameIn(parent: number, ino: number): Promise<string | undefined> {
    const { start, end } = k.rangeOf(k.dentryPrefix(parent));
    for (let from = start; ; ) {
      const rows = await this.kv.range({ start: from, end, limit: WALK_PAGE });
      const hit = rows.find((row) => k.decodeDentry(row.value).ino === ino);
      if (hit) return hit.key.slice(start.length);
      if (rows.length < WALK_PAGE) return undefined;
      from = rows[rows.length - 1]!.key + '\0';
    }
  }
}
