// MetaStore: every namespace rule, written once over the narrow Kv seam, so the etcd and
// LevelDB engines behave identically. Each change is one KV transaction that compares the
// revisions of everything it read; on a lost race it re-reads and tries again.
import { StrataError, exists, invalid, isDir, notDir, notEmpty, notFound, notPermitted } from '../../common/errors.js';
import { validateName } from '../../common/paths.js';
import { FILE_MAX_BYTES } from '../../common/limits.js';
import { TENANTS_DIR_NAME } from '../../common/tenants.js';
import { KV_MAX_TXN_OPS, type Kv, type KvCompare, type KvEntry, type KvOp } from './kv.js';
import { KeyTurns } from './key-turns.js';
import { QuotaCharge, QuotaSets, crossQuota, decodeQuota, epochBump, epochCompare, sameSet, type Usage } from './quotas.js';
import { CommitBatcher, type CommitOutcome, type CommitStats } from './commit-batch.js';
import * as k from './keys.js';
import {
  ROOT_INO,
  type Attr,
  type ChunkRecord,
  type CreateOptions,
  type DirEntry,
  type FileKind,
  type NamespaceCounts,
  type Owner,
  type SetAttrChanges,
  type SpecialKind,
  SPECIAL_KINDS,
} from './types.js';

export interface MetaStoreOptions {
  /** Inode numbers reserved per counter transaction: one shared-key write per batch, not per create. */
  inodeBatch?: number;
  /** Attempts before a transaction that keeps losing races fails with Conflict. */
  maxAttempts?: number;
  now?: () => number;
  /**
   * Who is committing (the writing session, read from the caller's async context): concurrent
   * commits of one inode share a transaction only within one group. Default: one group.
   */
  commitGroup?: () => unknown;
}

export const READDIR_DEFAULT_LIMIT = 1000;
export const READDIR_MAX_LIMIT = 10_000;
export const GET_CHUNKS_MAX = 1000;

const S_IFMT_PERMS = 0o7777;
const S_ISGID = 0o2000;
/** A link count past which link() fails with EMLINK (ext4's limit). */
export const LINK_MAX = 65_000;

interface Read {
  entry: KvEntry | undefined;
  key: string;
}

interface CreateReads {
  parentRead: Read;
  dentryRead: Read;
  /** q/epoch: which quota sets the change may charge (quotas.ts). */
  epochRead: KvEntry | undefined;
}

/** What an inode holds against its quotas: its logical size (regular files) and itself. */
const usageOf = (attr: Attr): Usage => ({ bytes: attr.type === 'file' ? attr.size : 0, files: 1 });
const negate = (u: Usage): Usage => ({ bytes: -u.bytes, files: -u.files });

export class MetaStore {
  private readonly inodeBatch: number;
  private readonly maxAttempts: number;
  private readonly now: () => number;
  private nextIno = 0;
  private endIno = 0;
  private inoRefill: Promise<void> | undefined;
  private readonly commitGroup: () => unknown;
  private readonly commits = new CommitBatcher((ino, records) => this.commitBatch(ino, records));
  /**
   * Subdirectory counts (s/<ino>) and quota records (q/<ino>) are rewritten one change at a time
   * per key (key-turns.ts): creators in one directory, writers under one quota.
   */
  private readonly subdirTurns = new KeyTurns();
  private readonly quotaSets: QuotaSets;

  constructor(
    readonly kv: Kv,
    options: MetaStoreOptions = {},
  ) {
    this.inodeBatch = options.inodeBatch ?? 1000;
    this.maxAttempts = options.maxAttempts ?? 64;
    this.now = options.now ?? Date.now;
    this.commitGroup = options.commitGroup ?? (() => undefined);
    this.quotaSets = new QuotaSets(kv);
  }

  /** Creates the root directory once; safe to call from every coordinator at start-up. */
  async init(): Promise<void> {
    const now = this.now();
    const root = this.newAttr(ROOT_INO, 'dir', 0o755, now, { parent: ROOT_INO });
    await this.kv.txn({
      compares: [{ key: k.inodeKey(ROOT_INO), modRevision: 0 }],
      ops: [
        { type: 'put', key: k.inodeKey(ROOT_INO), value: k.encodeAttr(root) },
        { type: 'put', key: k.stampKey(ROOT_INO), value: k.encodeNumber(now) },
      ],
    });
    await this.markTenantsDir();
  }

  /** A `/tenants` made before tenants existed becomes the directory of tenant roots (see childTags). */
  private async markTenantsDir(): Promise<void> {
    const [dentry] = await this.kv.getMany([k.dentryKey(ROOT_INO, TENANTS_DIR_NAME)]);
    if (!dentry) return;
    const { ino, type } = k.decodeDentry(dentry.value);
    const [inode] = await this.kv.getMany([k.inodeKey(ino)]);
    if (type !== 'dir' || !inode) return;
    const attr = k.decodeAttr(ino, inode.value);
    if (attr.holdsTenants) return;
    await this.kv.txn({ compares: [{ key: inode.key, modRevision: inode.modRevision }], ops: [put(inode.key, k.encodeAttr({ ...attr, holdsTenants: true }))] });
  }

  // ------------------------------------------------------------------ reads

  async getattr(ino: number): Promise<Attr> {
    const [inode] = await this.kv.getMany([k.inodeKey(ino)]);
    if (!inode) throw notFound(`inode ${ino}`);
    const attr = k.decodeAttr(ino, inode.value);
    // Only directories have a stamp; asking for a file's would be a (cache-missing) read of nothing.
    if (attr.type !== 'dir') return attr;
    const [stamp, subdirs] = await this.kv.getMany([k.stampKey(ino), k.subdirsKey(ino)]);
    return withStamp(attr, stamp, subdirs);
  }

  async lookup(parent: number, name: string): Promise<Attr> {
    const [dentry] = await this.kv.getMany([k.dentryKey(parent, name)]);
    if (!dentry) {
      await this.requireDir(parent, name);
      throw notFound(name);
    }
    return this.getattr(k.decodeDentry(dentry.value).ino);
  }

  /** Walks path components from the root (or directory `from`: a tenant's root); `label` names the path in errors. */
  async resolve(components: string[], label = '/' + components.join('/'), from = ROOT_INO, search?: (dir: Attr) => void): Promise<Attr> {
    // Entries carry their type, so only the last component's inode is read: n+1 reads, not 2n+1.
    // With `search` (a mode-bit check of each directory walked through), each directory's inode
    // comes in the same batch as its entry: still n+1 round trips.
    let ino = from;
    for (const [depth, name] of components.entries()) {
      const [dentry, dirInode] = await this.kv.getMany(search ? [k.dentryKey(ino, name), k.inodeKey(ino)] : [k.dentryKey(ino, name)]);
      if (search && dirInode) search(k.decodeAttr(ino, dirInode.value));
      if (!dentry) throw notFound(label);
      const child = k.decodeDentry(dentry.value);
      if (child.type !== 'dir' && depth < components.length - 1) throw notDir('/' + components.slice(0, depth + 1).join('/'));
      ino = child.ino;
    }
    return this.getattr(ino);
  }

  async readdir(ino: number, after: string, limit: number, withAttrs: boolean) {
    const dir = await this.getattr(ino);
    if (dir.type !== 'dir') throw notDir(`inode ${ino}`);
    const pageSize = Math.min(Math.max(limit || READDIR_DEFAULT_LIMIT, 1), READDIR_MAX_LIMIT);
    const { start, end } = k.rangeOf(k.dentryPrefix(ino));
    // Fetch one extra entry to learn whether another page exists.
    const rows = await this.kv.range({ start: after ? k.dentryKey(ino, after) + '\0' : start, end, limit: pageSize + 1 });
    const page = rows.slice(0, pageSize);
    const entries: DirEntry[] = page.map((row) => {
      const { ino: childIno, type } = k.decodeDentry(row.value);
      return { name: row.key.slice(start.length), ino: childIno, type };
    });
    if (withAttrs) {
      // Directories also have a stamp and a subdirectory count; other entries only an inode.
      const keys = entries.flatMap((e) => (e.type === 'dir' ? [k.inodeKey(e.ino), k.stampKey(e.ino), k.subdirsKey(e.ino)] : [k.inodeKey(e.ino)]));
      const rows = await this.kv.getMany(keys);
      let at = 0;
      for (const entry of entries) {
        const [inode, stamp, subdirs] = entry.type === 'dir' ? rows.slice(at, (at += 3)) : [rows[at++]];
        if (inode) entry.attr = withStamp(k.decodeAttr(entry.ino, inode.value), stamp, subdirs);
      }
    }
    return { entries, more: rows.length > pageSize };
  }

  async readlink(ino: number): Promise<string> {
    const attr = await this.getattr(ino);
    if (attr.type !== 'symlink') throw invalid(`inode ${ino}: not a symbolic link`);
    return attr.target;
  }

  async getChunks(ino: number, fromIndex: number, count: number): Promise<{ attr: Attr; chunks: ChunkRecord[] }> {
    const attr = await this.getattr(ino);
    if (attr.type === 'dir') throw isDir(`inode ${ino}`);
    const limit = Math.min(count || GET_CHUNKS_MAX, GET_CHUNKS_MAX);
    const { end } = k.rangeOf(k.chunkPrefix(ino));
    const rows = await this.kv.range({ start: k.chunkKey(ino, fromIndex), end, limit });
    return { attr, chunks: rows.map((row) => k.decodeChunk(k.chunkIndexFromKey(row.key), row.value)) };
  }

  async counts(): Promise<NamespaceCounts> {
    const [inodes, directories, chunks] = await Promise.all([
      this.kv.count(...rangeArgs('i/')),
      this.kv.count(...rangeArgs('t/')),
      this.kv.count(...rangeArgs('c/')),
    ]);
    return { inodes, directories, chunks };
  }

  /**
   * The quota directories whose subtree holds inode `ino` (a directory itself included),
   * deepest first: what `strata df` and the mount's statfs show the nearest of.
   */
  async quotasOf(ino: number): Promise<readonly number[]> {
    const [inode, epochRead] = await this.kv.getMany([k.inodeKey(ino), k.QUOTA_EPOCH_KEY]);
    if (!inode) throw notFound(`inode ${ino}`);
    const attr = k.decodeAttr(ino, inode.value);
    return this.quotaSets.of(attr.type === 'dir' ? ino : attr.parent, epochRead);
  }

  // ------------------------------------------------------------------ changes

  async mkdir(parent: number, name: string, mode: number, owner?: Owner): Promise<Attr> {
    return this.createEntry(parent, name, (ino, now, dir) => this.newAttr(ino, 'dir', mode || 0o755, now, { parent, ...ownedBy(owner, dir, 'dir', mode || 0o755) }));
  }

  /** Creates a file, or opens the existing one (emptying it when `truncate`). */
  async create(parent: number, name: string, options: CreateOptions): Promise<Attr> {
    validateName(name);
    const newFile = (ino: number, now: number, dir: Attr) =>
      this.newAttr(ino, 'file', options.mode || 0o644, now, {
        replication: options.replication,
        chunkSize: options.chunkSize,
        ...ownedBy(options.owner, dir, 'file', options.mode || 0o644),
      });
    const { check } = options;
    const requireAllowed = (dir: Attr, existing: Attr | undefined) => {
      const refusal = check?.refusal(dir, existing);
      if (refusal !== undefined) throw check!.refuse(refusal);
    };
    const makeNew = (ino: number, now: number, dir: Attr) => {
      requireAllowed(dir, undefined);
      return newFile(ino, now, dir);
    };
    return this.retry(async (attempt) => {
      let reads = await this.readForCreate(parent, name, attempt === 0);
      // The first attempt assumes the name free (its txn proves it). A caller refused a new entry
      // (no w on the directory) may still open an existing file (POSIX open(O_CREAT)): read the
      // name before refusing.
      if (!reads.dentryRead.entry && attempt === 0 && check?.refusal(k.decodeAttr(parent, reads.parentRead.entry!.value), undefined) !== undefined) {
        reads = await this.readForCreate(parent, name);
      }
      if (!reads.dentryRead.entry) return this.insertEntry(parent, name, reads, makeNew);
      if (options.exclusive) throw exists(name);
      const { ino } = k.decodeDentry(reads.dentryRead.entry.value);
      const [inodeEntry] = await this.kv.getMany([k.inodeKey(ino)]);
      if (!inodeEntry) return undefined; // unlinked under us: read again
      const existing = k.decodeAttr(ino, inodeEntry.value);
      if (existing.type === 'dir') throw isDir(name);
      if (existing.type !== 'file') throw invalid(`${name}: not a regular file`);
      requireAllowed(k.decodeAttr(parent, reads.parentRead.entry!.value), existing);
      if (!options.truncate) return existing;
      const now = this.now();
      const emptied: Attr = { ...existing, size: 0, chunks: 0, mtimeMs: now, ctimeMs: now };
      const compares: KvCompare[] = [cmp(reads.dentryRead), { key: inodeEntry.key, modRevision: inodeEntry.modRevision }];
      const ops = [put(inodeEntry.key, k.encodeAttr(emptied)), ...dropChunks(existing)];
      if (existing.size === 0) return (await this.kv.txn({ compares, ops })) ? emptied : undefined;
      // Emptying frees its bytes under the quotas it was charged to.
      const quotas = await this.quotasOfFile(existing, reads.epochRead);
      return this.withTurns([], quotas, async (charge, release) => {
        charge.add(quotas, { bytes: -existing.size, files: 0 });
        const quota = charge.writes();
        const ok = await this.kv.txn({ compares: [...compares, epochCompare(reads.epochRead), ...quota.compares], ops: [...ops, ...quota.ops], answered: release });
        return ok ? emptied : undefined;
      });
    });
  }

  async symlink(parent: number, name: string, target: string, owner?: Owner): Promise<Attr> {
    if (!target || target.includes('\0') || Buffer.byteLength(target) > 4096) {
      throw invalid('invalid symlink target: empty, too long, or contains NUL');
    }
    return this.createEntry(parent, name, (ino, now, dir) => ({
      ...this.newAttr(ino, 'symlink', 0o777, now, ownedBy(owner, dir, 'symlink', 0o777)),
      target,
      size: Buffer.byteLength(target),
    }));
  }

  /** A fifo, socket or device node: metadata only, with its device number (devices only). */
  async mknod(parent: number, name: string, kind: SpecialKind, mode: number, rdev: number, owner?: Owner): Promise<Attr> {
    if (!SPECIAL_KINDS.includes(kind)) throw invalid(`mknod: '${kind}' is not a special file type (fifo, chardev, blockdev, socket)`);
    if (!Number.isSafeInteger(rdev) || rdev < 0) throw invalid(`mknod: invalid device number '${rdev}'`);
    const device = kind === 'chardev' || kind === 'blockdev';
    return this.createEntry(parent, name, (ino, now, dir) =>
      this.newAttr(ino, kind, mode, now, { rdev: device ? rdev : 0, ...ownedBy(owner, dir, kind, mode) }),
    );
  }

  /**
   * One more name for an existing inode (not a directory): the names share the inode, its
   * attributes and its chunks, and the inode goes with the last of them.
   */
  async link(ino: number, newParent: number, newName: string): Promise<Attr> {
    validateName(newName);
    return this.retry(async () => {
      const [inode, parentEntry, dentry, epochRead] = await this.kv.getMany([k.inodeKey(ino), k.inodeKey(newParent), k.dentryKey(newParent, newName), k.QUOTA_EPOCH_KEY]);
      if (!inode) throw notFound(`inode ${ino}`);
      if (!parentEntry) throw notFound(`parent of ${newName}`);
      if (k.decodeAttr(newParent, parentEntry.value).type !== 'dir') throw notDir(`parent of ${newName}`);
      if (dentry) throw exists(newName);
      const attr = k.decodeAttr(ino, inode.value);
      if (attr.type === 'dir') throw notPermitted(`inode ${ino}: a directory cannot have another name`);
      requireSameTenant(attr, childTags(newParent, k.decodeAttr(newParent, parentEntry.value), newName, attr.type), newName);
      if (attr.nlink >= LINK_MAX) throw new StrataError('TooManyLinks', `inode ${ino}: already ${attr.nlink} links`);
      // All names of an inode stay under the same quotas: its usage is charged once, to them.
      const [here, there] = await Promise.all([this.quotaSets.of(quotaOwner(attr), epochRead), this.quotaSets.of(newParent, epochRead)]);
      if (!sameSet(here, there)) throw crossQuota(newName);
      const now = this.now();
      const linked: Attr = { ...attr, nlink: attr.nlink + 1, ctimeMs: now, links: withLink(attr, newParent) };
      const ok = await this.kv.txn({
        compares: [
          { key: inode.key, modRevision: inode.modRevision },
          { key: parentEntry.key, modRevision: parentEntry.modRevision },
          { key: k.dentryKey(newParent, newName), modRevision: 0 },
          epochCompare(epochRead),
        ],
        ops: [
          put(k.dentryKey(newParent, newName), k.encodeDentry(ino, attr.type)),
          put(inode.key, k.encodeAttr(linked)),
          put(k.stampKey(newParent), k.encodeNumber(now)),
        ],
      });
      return ok ? linked : undefined;
    });
  }

  /**
   * Removes a file or symlink entry; its chunks become garbage for the collector. Resolves to
   * the inode as the removal left it: nlink 0 when it went with this name (null: no inode record).
   */
  unlink(parent: number, name: string): Promise<Attr | null> {
    return this.removeEntry(parent, name, 'nondir');
  }

  /** Removes an empty directory; resolves to its inode with nlink 0 (gone). */
  rmdir(parent: number, name: string): Promise<Attr | null> {
    return this.removeEntry(parent, name, 'dir');
  }

  /** Removes whatever the name holds (an empty directory included): one entry read, not two. */
  async remove(parent: number, name: string): Promise<void> {
    await this.removeEntry(parent, name, 'any');
  }

  /**
   * `noReplace`: fail with Exists when the destination name is taken (RENAME_NOREPLACE).
   * Resolves to the moved inode as the rename left it (its ctime moves), or null when the names
   * already held the same inode (nothing changes).
   */
  async rename(srcParent: number, srcName: string, dstParent: number, dstName: string, options: { noReplace?: boolean } = {}): Promise<Attr | null> {
    validateName(dstName);
    return this.retry<Attr | null>(async () => {
      const srcRead = await this.readDentry(srcParent, srcName);
      const src = k.decodeDentry(srcRead.entry!.value);
      const [dstParentEntry, dstEntry, epochRead, srcInode, srcQuota] = await this.kv.getMany([
        k.inodeKey(dstParent),
        k.dentryKey(dstParent, dstName),
        k.QUOTA_EPOCH_KEY,
        k.inodeKey(src.ino),
        // Only a directory can have a quota (no key read, and cached as absent, per moved file).
        ...(src.type === 'dir' ? [k.quotaKey(src.ino)] : []),
      ]);
      if (!dstParentEntry) throw notFound(dstName);
      const dstParentAttr = k.decodeAttr(dstParent, dstParentEntry.value);
      if (dstParentAttr.type !== 'dir') throw notDir(`destination parent of ${dstName}`);
      // A rename changes the moved inode's ctime (and a directory's parent).
      if (!srcInode) return undefined;
      const compares: KvCompare[] = [cmp(srcRead), { key: dstParentEntry.key, modRevision: dstParentEntry.modRevision }, epochCompare(epochRead)];
      compares.push({ key: k.dentryKey(dstParent, dstName), modRevision: dstEntry?.modRevision ?? 0 });
      compares.push({ key: srcInode.key, modRevision: srcInode.modRevision });
      const now = this.now();
      const ops: KvOp[] = [];
      /** Subdirectory counts that change: a directory moving between parents, one replaced. */
      const subdirDeltas = new Map<number, number>();
      const srcQuotas = await this.quotaSets.of(srcParent, epochRead);
      const dstQuotas = srcParent === dstParent ? srcQuotas : await this.quotaSets.of(dstParent, epochRead);
      const srcAttr = k.decodeAttr(src.ino, srcInode.value);
      requireSameTenant(srcAttr, childTags(dstParent, dstParentAttr, dstName, srcAttr.type), dstName);
      /** What the destination frees under its quotas (a replaced name), and whether quota sets change. */
      let freed: Usage = { bytes: 0, files: 0 };
      let quotaDirs = 0;
      let setsChange = false;
      if (dstEntry) {
        if (options.noReplace) throw exists(dstName);
        const dst = k.decodeDentry(dstEntry.value);
        if (dst.ino === src.ino) return null; // same object: POSIX says do nothing
        if (dst.type === 'dir' && src.type !== 'dir') throw isDir(dstName);
        if (dst.type !== 'dir' && src.type === 'dir') throw notDir(dstName);
        if (dst.type === 'dir') {
          compares.push(...(await this.proveEmpty(dst.ino, dstName, dstEntry)));
          ops.push(del(k.stampKey(dst.ino)), del(k.subdirsKey(dst.ino)), del(k.inodeKey(dst.ino)), ...forgetTiering(dst.ino));
          subdirDeltas.set(dstParent, (subdirDeltas.get(dstParent) ?? 0) - 1);
          freed = { bytes: 0, files: 1 };
          const [dstQuota] = await this.kv.getMany([k.quotaKey(dst.ino)]);
          if (dstQuota) {
            compares.push({ key: dstQuota.key, modRevision: dstQuota.modRevision });
            ops.push(del(dstQuota.key));
            quotaDirs--;
            setsChange = true;
          }
        } else {
          // The replaced name may be one of several links: then its inode stays, one link fewer.
          const [dstInode] = await this.kv.getMany([k.inodeKey(dst.ino)]);
          if (dstInode) {
            compares.push({ key: dstInode.key, modRevision: dstInode.modRevision });
            const dstAttr = k.decodeAttr(dst.ino, dstInode.value);
            ops.push(...dropLink(dstAttr, dstInode.key, now, dstParent, dstQuotas[0] ?? ROOT_INO));
            if (dstAttr.nlink <= 1) freed = usageOf(dstAttr);
          }
        }
      }
      /** What moves from the source's quotas to the destination's. */
      let moving: Usage = { bytes: 0, files: 0 };
      if (!sameSet(srcQuotas, dstQuotas)) {
        if (src.type === 'dir') {
          // A directory's usage is known only when it has its own quota; and the quotas of
          // everything below it change with it.
          if (!srcQuota) throw crossQuota(srcName);
          compares.push({ key: srcQuota.key, modRevision: srcQuota.modRevision });
          const own = decodeQuota(srcQuota.value);
          moving = { bytes: own.usedBytes, files: own.usedFiles + 1 };
          setsChange = true;
        } else {
          if (srcAttr.nlink > 1) throw crossQuota(srcName);
          moving = usageOf(srcAttr);
        }
      }
      if (setsChange) ops.push(epochBump(epochRead, quotaDirs));
      if (src.type === 'dir') {
        compares.push(...(await this.proveNotInside(src.ino, dstParent, dstName)));
        subdirDeltas.set(srcParent, (subdirDeltas.get(srcParent) ?? 0) - 1);
        subdirDeltas.set(dstParent, (subdirDeltas.get(dstParent) ?? 0) + 1);
      }
      const changedCounts = [...subdirDeltas].filter(([, delta]) => delta !== 0);
      const leaving = srcQuotas.filter((q) => !dstQuotas.includes(q));
      const arriving = dstQuotas.filter((q) => !srcQuotas.includes(q));
      // Subdirectory counts and quota records it moves are taken in turn, as by mkdir and rmdir.
      return this.withTurns(
        changedCounts.map(([dir]) => k.subdirsKey(dir)),
        [...dstQuotas, ...leaving],
        async (charge, release) => {
          const counts = await this.kv.getMany(changedCounts.map(([dir]) => k.subdirsKey(dir)));
          changedCounts.forEach(([dir, delta], i) => {
            compares.push({ key: k.subdirsKey(dir), modRevision: counts[i]?.modRevision ?? 0 });
            ops.push(subdirsOp(dir, counts[i], delta));
          });
          charge.add(dstQuotas, negate(freed), false);
          charge.add(leaving, negate(moving), false);
          charge.add(arriving, moving);
          const quota = charge.writes();
          // Every inode's parent follows its last move (a file's: the directory it was last put in,
          // whose quotas its later writes charge); a hard-linked file's other names stay known.
          const moved: Attr = { ...srcAttr, ctimeMs: now, ...movedName(srcAttr, srcParent, dstParent) };
          ops.push(put(srcInode.key, k.encodeAttr(moved)));
          ops.push(del(srcRead.key), put(k.dentryKey(dstParent, dstName), k.encodeDentry(src.ino, src.type)));
          ops.push(put(k.stampKey(srcParent), k.encodeNumber(now)));
          if (dstParent !== srcParent) ops.push(put(k.stampKey(dstParent), k.encodeNumber(now)));
          const ok = await this.kv.txn({ compares: dedupe([...compares, ...quota.compares]), ops: [...ops, ...quota.ops], answered: release });
          return ok ? moved : undefined;
        },
      );
    });
  }

  async setattr(ino: number, changes: SetAttrChanges): Promise<Attr> {
    return this.retry(async () => {
      const [inode, subdirs, epochRead] = await this.kv.getMany([k.inodeKey(ino), k.subdirsKey(ino), k.QUOTA_EPOCH_KEY]);
      if (!inode) throw notFound(`inode ${ino}`);
      const attr = k.decodeAttr(ino, inode.value);
      const now = this.now();
      const next: Attr = { ...attr, ctimeMs: now };
      const ops: KvOp[] = [];
      if (changes.mode !== undefined) next.mode = changes.mode & S_IFMT_PERMS;
      if (changes.uid !== undefined) next.uid = changes.uid;
      if (changes.gid !== undefined) next.gid = changes.gid;
      // "now" is this store's clock, the one ctime takes
      const atimeMs = changes.atimeNow ? now : changes.atimeMs;
      const mtimeMs = changes.mtimeNow ? now : changes.mtimeMs;
      if (atimeMs !== undefined) next.atimeMs = atimeMs;
      if (mtimeMs !== undefined) {
        next.mtimeMs = mtimeMs;
        if (attr.type === 'dir') ops.push(put(k.stampKey(ino), k.encodeNumber(mtimeMs)));
      }
      if (changes.size !== undefined && changes.size !== attr.size) {
        if (attr.type !== 'file') throw attr.type === 'dir' ? isDir(`inode ${ino}`) : invalid(`inode ${ino}: not a regular file`);
        next.size = changes.size;
        if (mtimeMs === undefined) next.mtimeMs = now;
        if (changes.size < attr.size) ops.push(...(await this.shrinkChunks(attr, changes.size, next)));
      }
      ops.unshift(put(inode.key, k.encodeAttr(next)));
      const compares: KvCompare[] = [{ key: inode.key, modRevision: inode.modRevision }];
      const grown = next.size - attr.size;
      if (grown === 0) {
        const ok = await this.kv.txn({ compares, ops });
        return ok ? withStamp({ ...next }, undefined, subdirs) : undefined;
      }
      // A new size moves the file's usage; growing it (truncate up) past a quota is refused.
      const quotas = await this.quotasOfFile(attr, epochRead);
      return this.withTurns([], quotas, async (charge, release) => {
        charge.add(quotas, { bytes: grown, files: 0 });
        const quota = charge.writes();
        const ok = await this.kv.txn({ compares: [...compares, epochCompare(epochRead), ...quota.compares], ops: [...ops, ...quota.ops], answered: release });
        return ok ? withStamp({ ...next }, undefined, subdirs) : undefined;
      });
    });
  }

  /**
   * Notes a read for "not read for N days" tiering policies: one attempt, no retry, and no ctime
   * change. Callers skip it while the recorded atime is recent (a write per read would be waste).
   */
  async touchAtime(ino: number, atimeMs: number): Promise<void> {
    const [inode] = await this.kv.getMany([k.inodeKey(ino)]);
    if (!inode) return;
    const attr = k.decodeAttr(ino, inode.value);
    if (attr.atimeMs >= atimeMs) return;
    await this.kv.txn({ compares: [{ key: inode.key, modRevision: inode.modRevision }], ops: [put(inode.key, k.encodeAttr({ ...attr, atimeMs }))] });
  }

  /**
   * Records a written chunk and grows the file in one transaction, so a reader never sees a
   * size that covers uncommitted bytes. Concurrent commits to one inode (a writer keeps several
   * chunks in flight) would all compare the inode's revision and all but one lose and retry, each
   * a further metadata fsync; so they queue per inode and those that arrive while one transaction
   * is in flight share the next one (commit-batch.ts). Each caller still gets its own reply (its
   * own error, or the file's attributes as its batch's transaction left them).
   */
  async commitChunk(ino: number, record: ChunkRecord): Promise<Attr> {
    if (record.nodes.length === 0) throw invalid('commit chunk: no replica acknowledged it');
    return this.commits.commit(ino, this.commitGroup(), record);
  }

  /** Commit counters since start (tests, benchmarks): how many commits shared a transaction. */
  get commitStats(): Readonly<CommitStats> {
    return this.commits.stats;
  }

  /** One transaction for a batch of one inode's commits; a chunk's own error fails only its caller. */
  private commitBatch(ino: number, records: ChunkRecord[]): Promise<CommitOutcome[]> {
    return this.retry(async () => {
      const keys = records.map((r) => k.chunkKey(ino, r.index));
      const [inode, epochRead, ...previous] = await this.kv.getMany([k.inodeKey(ino), k.QUOTA_EPOCH_KEY, ...keys]);
      if (!inode) throw notFound(`inode ${ino}`);
      const attr = k.decodeAttr(ino, inode.value);
      if (attr.type !== 'file') throw invalid(`inode ${ino}: not a regular file`);
      const quotas = await this.quotasOfFile(attr, epochRead);
      return this.withTurns([], quotas, async (charge, release) => {
        const now = this.now();
        const outcomes: CommitOutcome[] = [];
        const compares: KvCompare[] = [{ key: inode.key, modRevision: inode.modRevision }, epochCompare(epochRead)];
        const ops: KvOp[] = [];
        let next = attr;
        records.forEach((record, i) => {
          if (record.length > attr.chunkSize) {
            outcomes.push({ error: invalid(`chunk length ${record.length} exceeds chunk size ${attr.chunkSize}`) });
            return;
          }
          const end = record.index * attr.chunkSize + record.length;
          if (!(end <= FILE_MAX_BYTES)) {
            outcomes.push({ error: invalid(`chunk ${record.index} ends past the largest file size (${FILE_MAX_BYTES} bytes)`) });
            return;
          }
          // A chunk that grows the file past a quota is not committed: the file keeps what it had.
          const size = Math.max(next.size, end);
          const refused = size > next.size ? charge.refusal(quotas, { bytes: size - attr.size, files: 0 }) : undefined;
          if (refused) {
            outcomes.push({ error: refused });
            return;
          }
          next = { ...next, size, chunks: next.chunks + (previous[i] ? 0 : 1), mtimeMs: now, ctimeMs: now };
          outcomes.push({ attr: next }); // replaced below by the attributes the transaction wrote
          compares.push({ key: keys[i], modRevision: previous[i]?.modRevision ?? 0 });
          ops.push(put(keys[i], k.encodeChunk(record)));
        });
        if (ops.length === 0) return outcomes;
        ops.unshift(put(inode.key, k.encodeAttr(next)));
        charge.add(quotas, { bytes: next.size - attr.size, files: 0 }, false);
        const quota = charge.writes();
        const ok = await this.kv.txn({ compares: [...compares, ...quota.compares], ops: [...ops, ...quota.ops], answered: release });
        this.commits.noteTxn(ok);
        if (!ok) return undefined;
        // Every commit of the batch is answered with the file as the transaction left it: a writer
        // takes the reply that settles last as its file's state, and the batch's own order says
        // nothing about which that is.
        return outcomes.map((outcome) => ('attr' in outcome ? { attr: next } : outcome));
      });
    });
  }

  /** A new name for a new inode (mkdir, symlink), failing with Exists when the name is taken. */
  private async createEntry(parent: number, name: string, makeAttr: MakeAttr): Promise<Attr> {
    validateName(name);
    return this.retry(async (attempt) => {
      const reads = await this.readForCreate(parent, name, attempt === 0);
      if (reads.dentryRead.entry) throw exists(name);
      return this.insertEntry(parent, name, reads, makeAttr);
    });
  }

  /** The one transaction that links a new inode under a name the reads saw free. */
  private async insertEntry(parent: number, name: string, { parentRead, dentryRead, epochRead }: CreateReads, makeAttr: MakeAttr): Promise<Attr | undefined> {
    const now = this.now();
    const dir = k.decodeAttr(parent, parentRead.entry!.value);
    const made = makeAttr(await this.allocateIno(), now, dir);
    // Every inode records the directory it was made in (a directory's one parent; a file's first):
    // a file's later writes charge that directory's quotas.
    const attr: Attr = { ...made, ...childTags(parent, dir, name, made.type), parent };
    const ops: KvOp[] = [
      put(k.dentryKey(parent, name), k.encodeDentry(attr.ino, attr.type)),
      put(k.inodeKey(attr.ino), k.encodeAttr(attr)),
      put(k.stampKey(parent), k.encodeNumber(now)),
    ];
    const compares = [cmp(parentRead), cmp(dentryRead), epochCompare(epochRead)];
    const quotas = await this.quotaSets.of(parent, epochRead);
    // A new directory moves its parent's subdirectory count: mkdirs in one parent take turns on it.
    return this.withTurns(attr.type === 'dir' ? [k.subdirsKey(parent)] : [], quotas, async (charge, release) => {
      charge.add(quotas, { bytes: 0, files: 1 });
      if (attr.type === 'dir') {
        ops.push(put(k.stampKey(attr.ino), k.encodeNumber(now)));
        const [subdirs] = await this.kv.getMany([k.subdirsKey(parent)]);
        compares.push({ key: k.subdirsKey(parent), modRevision: subdirs?.modRevision ?? 0 });
        ops.push(subdirsOp(parent, subdirs, +1));
      }
      const quotaWrites = charge.writes();
      const ok = await this.kv.txn({ compares: [...compares, ...quotaWrites.compares], ops: [...ops, ...quotaWrites.ops], answered: release });
      return ok ? attr : undefined;
    });
  }

  private async removeEntry(parent: number, name: string, expect: 'dir' | 'nondir' | 'any'): Promise<Attr | null> {
    return this.retry<Attr | null>(async () => {
      const dentryRead = await this.readDentry(parent, name);
      const { ino, type } = k.decodeDentry(dentryRead.entry!.value);
      if (expect === 'nondir' && type === 'dir') throw isDir(name);
      if (expect === 'dir' && type !== 'dir') throw notDir(name);
      const now = this.now();
      const compares = [cmp(dentryRead)];
      const ops: KvOp[] = [del(dentryRead.key), put(k.stampKey(parent), k.encodeNumber(now))];
      let left: Attr | null = null;
      if (type === 'dir') compares.push(...(await this.proveEmpty(ino, name, dentryRead.entry)));
      // The inode is read and compared: a link() racing this one either sees it gone or is seen here.
      const [inode, epochRead, ownQuota] = await this.kv.getMany([k.inodeKey(ino), k.QUOTA_EPOCH_KEY, ...(type === 'dir' ? [k.quotaKey(ino)] : [])]);
      compares.push(epochCompare(epochRead));
      const quotas = await this.quotaSets.of(parent, epochRead);
      let freed: Usage = { bytes: 0, files: 0 };
      if (type === 'dir') {
        // For the reply only (the stamp proves it empty).
        if (inode) left = { ...k.decodeAttr(ino, inode.value), nlink: 0, ctimeMs: now };
        ops.push(del(k.inodeKey(ino)), del(k.stampKey(ino)), del(k.subdirsKey(ino)), ...forgetTiering(ino));
        freed = { bytes: 0, files: 1 };
        // An (empty) quota directory takes its quota with it.
        if (ownQuota) {
          compares.push({ key: ownQuota.key, modRevision: ownQuota.modRevision });
          ops.push(del(ownQuota.key), epochBump(epochRead, -1));
        }
      } else if (inode) {
        compares.push({ key: inode.key, modRevision: inode.modRevision });
        const attr = k.decodeAttr(ino, inode.value);
        ops.push(...dropLink(attr, inode.key, now, parent, quotas[0] ?? ROOT_INO));
        if (attr.nlink <= 1) freed = usageOf(attr);
        left = { ...attr, nlink: Math.max(0, attr.nlink - 1), ctimeMs: now };
      }
      // Like mkdir, rmdir takes its turn on the parent's subdirectory count.
      return this.withTurns(type === 'dir' ? [k.subdirsKey(parent)] : [], quotas, async (charge, release) => {
        if (type === 'dir') {
          const [subdirs] = await this.kv.getMany([k.subdirsKey(parent)]);
          compares.push({ key: k.subdirsKey(parent), modRevision: subdirs?.modRevision ?? 0 });
          ops.push(subdirsOp(parent, subdirs, -1));
        }
        charge.add(quotas, negate(freed), false);
        const quota = charge.writes();
        return (await this.kv.txn({ compares: [...compares, ...quota.compares], ops: [...ops, ...quota.ops], answered: release })) ? left : undefined;
      });
    });
  }

  // ------------------------------------------------------------------ internals

  private newAttr(ino: number, type: FileKind, mode: number, now: number, extra: Partial<Attr> = {}): Attr {
    return {
      ino, type, mode: mode & S_IFMT_PERMS, uid: 0, gid: 0, size: 0,
      mtimeMs: now, ctimeMs: now, atimeMs: now, nlink: type === 'dir' ? 2 : 1,
      parent: 0, replication: 0, chunkSize: 0, target: '', chunks: 0, rdev: 0, ...extra,
    };
  }

  private async allocateIno(): Promise<number> {
    while (this.nextIno >= this.endIno) {
      this.inoRefill ??= this.refillInodes().finally(() => (this.inoRefill = undefined));
      await this.inoRefill;
    }
    return this.nextIno++;
  }

  private async refillInodes(): Promise<void> {
    const reserved = await this.retry(async () => {
      const [counter] = await this.kv.getMany([k.INODE_COUNTER_KEY]);
      const first = counter ? k.decodeNumber(counter.value) : ROOT_INO + 1;
      const ok = await this.kv.txn({
        compares: [{ key: k.INODE_COUNTER_KEY, modRevision: counter?.modRevision ?? 0 }],
        ops: [put(k.INODE_COUNTER_KEY, k.encodeNumber(first + this.inodeBatch))],
      });
      return ok ? first : undefined;
    });
    this.nextIno = reserved;
    this.endIno = reserved + this.inodeBatch;
  }

  /**
   * Reads what a create compares. `assumeAbsent` skips reading the entry (new names are the
   * common case, and on etcd a read is a round trip): the txn then compares it as absent, and
   * if the name was taken the txn fails and the next attempt reads it.
   */
  private async readForCreate(parent: number, name: string, assumeAbsent = false): Promise<CreateReads> {
    const parentKey = k.inodeKey(parent);
    const dentryKey = k.dentryKey(parent, name);
    const [parentEntry, epochEntry, dentryEntry] = await this.kv.getMany(assumeAbsent ? [parentKey, k.QUOTA_EPOCH_KEY] : [parentKey, k.QUOTA_EPOCH_KEY, dentryKey]);
    if (!parentEntry) throw notFound(`parent of ${name}`);
    if (k.decodeAttr(parent, parentEntry.value).type !== 'dir') throw notDir(`parent of ${name}`);
    return { parentRead: { key: parentKey, entry: parentEntry }, dentryRead: { key: dentryKey, entry: dentryEntry }, epochRead: epochEntry };
  }

  /**
   * Takes the turns on `keys` plus the records of `quotas`, reads those records, and hands both
   * to `work` (which builds and runs the txn, passing `release` as its `answered`).
   */
  private async withTurns<T>(keys: string[], quotas: readonly number[], work: (charge: QuotaCharge, release: (() => void) | undefined) => Promise<T>): Promise<T> {
    const all = [...keys, ...quotas.map(k.quotaKey)];
    const release = all.length > 0 ? await this.subdirTurns.take(all) : undefined;
    try {
      return await work(await QuotaCharge.read(this.kv, quotas), release);
    } finally {
      release?.();
    }
  }

  /** The quota directories a regular file is charged to: those above its quota owner (quotaOwner). */
  private quotasOfFile(attr: Attr, epochRead: KvEntry | undefined): Promise<readonly number[]> {
    return attr.type === 'file' ? this.quotaSets.of(quotaOwner(attr), epochRead) : Promise.resolve([]);
  }

  private async readDentry(parent: number, name: string): Promise<Read> {
    const key = k.dentryKey(parent, name);
    const [entry] = await this.kv.getMany([key]);
    if (!entry) {
      await this.requireDir(parent, name);
      throw notFound(name);
    }
    return { key, entry };
  }

  private async requireDir(ino: number, childName: string): Promise<void> {
    const [inode] = await this.kv.getMany([k.inodeKey(ino)]);
    if (!inode) throw notFound(`parent of ${childName}`);
    if (k.decodeAttr(ino, inode.value).type !== 'dir') throw notDir(`parent of ${childName}`);
  }

  /**
   * Compares that hold only while directory `ino` stays empty (its stamp is read first).
   * `dentry`: the directory's entry as read. Every txn that puts an entry in a directory also
   * puts its stamp, and the only txn that writes both a directory's own entry and its stamp is
   * the mkdir that made it (a rename writes the moved directory's entry, never its stamp: it
   * cannot move into itself). So a stamp last written at its entry's revision proves the
   * directory never had an entry: no scan (on the embedded engine a thread-pool round trip, a
   * fifth of an rmdir there; on etcd a request).
   */
  private async proveEmpty(ino: number, name: string, dentry?: KvEntry): Promise<KvCompare[]> {
    const [stamp] = await this.kv.getMany([k.stampKey(ino)]);
    const compares = [{ key: k.stampKey(ino), modRevision: stamp?.modRevision ?? 0 }];
    if (stamp && dentry && stamp.modRevision === dentry.modRevision) return compares;
    const { start, end } = k.rangeOf(k.dentryPrefix(ino));
    const children = await this.kv.range({ start, end, limit: 1 });
    if (children.length > 0) throw notEmpty(name);
    return compares;
  }

  /** Refuses moving directory `srcIno` under itself; compares pin the ancestor chain read. */
  private async proveNotInside(srcIno: number, dstParent: number, dstName: string): Promise<KvCompare[]> {
    const compares: KvCompare[] = [];
    let ino = dstParent;
    for (let depth = 0; ; depth++) {
      if (ino === srcIno) throw invalid(`cannot move a directory into itself: ${dstName}`);
      if (ino === ROOT_INO) return compares;
      if (depth > 4096) throw new StrataError('Internal', `directory ${dstParent}: ancestor chain does not reach the root`);
      const [inode] = await this.kv.getMany([k.inodeKey(ino)]);
      if (!inode) throw notFound(dstName);
      compares.push({ key: inode.key, modRevision: inode.modRevision });
      ino = k.decodeAttr(ino, inode.value).parent;
    }
  }

  /** Ops dropping chunk records past `size` and shortening the one it cuts. */
  private async shrinkChunks(attr: Attr, size: number, next: Attr): Promise<KvOp[]> {
    const firstGone = Math.ceil(size / attr.chunkSize);
    const ops: KvOp[] = [{ type: 'deleteRange', start: k.chunkKey(attr.ino, firstGone), end: k.rangeOf(k.chunkPrefix(attr.ino)).end }];
    const remaining = await this.kv.count(k.chunkPrefix(attr.ino), k.chunkKey(attr.ino, firstGone));
    next.chunks = remaining;
    const cutIndex = Math.floor(size / attr.chunkSize);
    if (size % attr.chunkSize !== 0) {
      const [cut] = await this.kv.getMany([k.chunkKey(attr.ino, cutIndex)]);
      if (cut) {
        const record = k.decodeChunk(cutIndex, cut.value);
        // Bytes past the new end must read as zeros if the file grows again.
        ops.push(put(cut.key, k.encodeChunk({ ...record, length: Math.min(record.length, size % attr.chunkSize), crc32c: 0 })));
      }
    }
    return ops;
  }

  private async retry<T>(attempt: (attemptIndex: number) => Promise<T | undefined>): Promise<T> {
    for (let i = 0; i < this.maxAttempts; i++) {
      const result = await attempt(i);
      if (result !== undefined) return result;
      // Lost a race: back off a little, with jitter, so racers spread out.
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, 2 ** i)));
    }
    throw new StrataError('Conflict', 'too much contention on this entry; try again');
  }
}

/**
 * A directory as stat shows it: its stamp (when an entry in it last came or went) is its
 * mtime and ctime; its link count is 2 + its subdirectories ('.', its name, each '..').
 */
function withStamp(attr: Attr, stamp: KvEntry | undefined, subdirs?: KvEntry): Attr {
  if (attr.type !== 'dir') return attr;
  if (stamp) {
    const changed = k.decodeNumber(stamp.value);
    attr.mtimeMs = Math.max(attr.mtimeMs, changed);
    attr.ctimeMs = Math.max(attr.ctimeMs, changed);
  }
  attr.nlink = 2 + (subdirs ? k.decodeNumber(subdirs.value) : 0);
  return attr;
}

/** The op moving directory `dir`'s subdirectory count by `delta` from what was read. */
function subdirsOp(dir: number, read: KvEntry | undefined, delta: number): KvOp {
  const next = (read ? k.decodeNumber(read.value) : 0) + delta;
  return next > 0 ? put(k.subdirsKey(dir), k.encodeNumber(next)) : del(k.subdirsKey(dir));
}

type MakeAttr = (ino: number, now: number, parentDir: Attr) => Attr;

type TenantTags = Pick<Attr, 'tenant' | 'holdsTenants'>;

/**
 * The tenant tags an entry named `name` in directory `dir` carries: `/tenants` itself holds
 * tenant roots, each directory in it is the root of the tenant it is named after, and everything
 * else belongs to its parent's tenant (none outside every tenant's tree).
 */
function childTags(dirIno: number, dir: Attr, name: string, type: FileKind): TenantTags {
  if (dirIno === ROOT_INO && name === TENANTS_DIR_NAME && type === 'dir') return { holdsTenants: true };
  if (dir.holdsTenants) return { tenant: name };
  return dir.tenant ? { tenant: dir.tenant } : {};
}

/** An inode keeps its tenant for life: a rename or link that would put it in another tenant's tree (or make it /tenants) is refused. */
function requireSameTenant(attr: Attr, tags: TenantTags, name: string): void {
  if ((attr.tenant ?? '') !== (tags.tenant ?? '') || !!attr.holdsTenants !== !!tags.holdsTenants) {
    throw notPermitted(`${name}: cannot move or link an entry between tenants (or to or from ${'/' + TENANTS_DIR_NAME})`);
  }
}

/**
 * Owner, group and mode of a new inode: the caller's uid and gid; in a set-group-ID directory
 * the directory's group, and a new directory there is set-group-ID too (as on Linux).
 */
function ownedBy(owner: Owner | undefined, dir: Attr, type: FileKind, mode: number): Pick<Attr, 'uid' | 'gid' | 'mode'> {
  const inherit = (dir.mode & S_ISGID) !== 0;
  const gid = inherit ? dir.gid : (owner?.gid ?? 0);
  const perms = type === 'dir' && inherit ? (mode | S_ISGID) & S_IFMT_PERMS : mode & S_IFMT_PERMS;
  return { uid: owner?.uid ?? 0, gid, mode: perms };
}

/**
 * Ops removing one name (in directory `dir`) of a non-directory inode: one link fewer, or the
 * inode and its chunks. `nearestQuota`: the nearest quota directory above `dir` (else the root).
 */
function dropLink(attr: Attr, inodeKey: string, now: number, dir: number, nearestQuota: number): KvOp[] {
  if (attr.nlink > 1) return [put(inodeKey, k.encodeAttr({ ...attr, nlink: attr.nlink - 1, ctimeMs: now, ...withoutName(attr, dir, nearestQuota) }))];
  return [del(inodeKey), ...dropChunks(attr), ...forgetTiering(attr.ino)];
}

/** Directories of other names a file's record keeps (each a number in it: the record stays small). */
export const LINKS_KEPT = 32;

/** The directory whose quotas a file is charged to. */
const quotaOwner = (attr: Attr): number => attr.quotaParent ?? attr.parent;

/** `links` once a name in `dir` is added: unknown stays unknown; past LINKS_KEPT the name is not kept. */
function withLink(attr: Attr, dir: number): number[] | undefined {
  const known = attr.nlink <= 1 ? [] : attr.links;
  if (!known) return undefined;
  return known.length < LINKS_KEPT ? [...known, dir] : known;
}

/**
 * Where a file with several names is, once its name in `dir` goes: the recorded place stays
 * unless that name went; then another name's directory (0 when none is known: the rules give it
 * their most restrictive level), and its charges go on to `nearestQuota`, which stands for
 * every name's quotas (link and rename keep all names under the same ones), so they never land
 * on a directory that may go next.
 */
function withoutName(attr: Attr, dir: number, nearestQuota: number): Pick<Attr, 'parent' | 'quotaParent' | 'links'> {
  const links = attr.links ? [...attr.links] : undefined;
  let { parent, quotaParent } = attr;
  if (dir === attr.parent) {
    parent = links?.shift() ?? 0;
    if (quotaOwner(attr) === dir) quotaParent = nearestQuota;
  } else if (links) {
    const at = links.indexOf(dir);
    if (at >= 0) links.splice(at, 1);
  }
  return tidied(parent, quotaParent, links);
}

/**
 * Where a file is once its name in `from` moved to `to`: at `to` (its last move, as for every
 * inode); a file with several names keeps the others' places, and its quota owner unless that
 * was `from` (a file with several names moves only within its quotas: rename refuses otherwise).
 */
function movedName(attr: Attr, from: number, to: number): Pick<Attr, 'parent' | 'quotaParent' | 'links'> {
  if (attr.type === 'dir' || attr.nlink <= 1) return { parent: to, quotaParent: undefined, links: undefined };
  let links = attr.links ? [...attr.links] : undefined;
  if (links && from !== attr.parent) {
    const at = links.indexOf(from);
    if (at >= 0) links.splice(at, 1);
    // The recorded place is another name's, which stays.
    if (attr.parent !== 0) links = [...links, attr.parent].slice(0, LINKS_KEPT);
  }
  const owner = quotaOwner(attr);
  return tidied(to, owner === from ? undefined : owner, links);
}

/** Leaves out what says nothing: a quota owner equal to the parent, links of a file with one name. */
function tidied(parent: number, quotaParent: number | undefined, links: number[] | undefined): Pick<Attr, 'parent' | 'quotaParent' | 'links'> {
  return { parent, quotaParent: quotaParent === parent ? undefined : quotaParent, links };
}

/** Chunk indexes a small file is deleted by, one key each, rather than by a range. */
const POINT_DELETE_CHUNKS_MAX = 16;

/**
 * Ops deleting every chunk record of a file. A record at index i exists only where i * chunkSize
 * <= size (a commit grows the size to cover its chunk; a shrink drops the records past the new
 * end), so a small file's records are deleted by their keys: on LevelDB a range delete has to
 * scan the range first, a thread-pool round trip on the commit's path for every unlink.
 */
function dropChunks(attr: Attr): KvOp[] {
  if (attr.type !== 'file') return []; // only regular files have chunks (commitChunk refuses others)
  const candidates = attr.chunkSize > 0 ? Math.floor(attr.size / attr.chunkSize) + 1 : Infinity;
  if (!(candidates <= POINT_DELETE_CHUNKS_MAX)) return [deleteChunks(attr.ino)];
  return Array.from({ length: candidates }, (_, index) => del(k.chunkKey(attr.ino, index)));
}

const cmp = (read: Read): KvCompare => ({ key: read.key, modRevision: read.entry?.modRevision ?? 0 });
const put = (key: string, value: Buffer): KvOp => ({ type: 'put', key, value });
const del = (key: string): KvOp => ({ type: 'delete', key });
const deleteChunks = (ino: number): KvOp => ({ type: 'deleteRange', ...k.rangeOf(k.chunkPrefix(ino)) });
/** A removed inode's tiering policy, pin and pending recall go with it. */
const forgetTiering = (ino: number): KvOp[] => [del(k.policyKey(ino)), del(k.pinKey(ino)), del(k.recallKey(ino))];
const rangeArgs = (prefix: string): [string, string] => {
  const { start, end } = k.rangeOf(prefix);
  return [start, end];
};

function dedupe(compares: KvCompare[]): KvCompare[] {
  const seen = new Map<string, KvCompare>();
  for (const c of compares) seen.set(c.key, c);
  if (seen.size > KV_MAX_TXN_OPS) throw invalid('operation touches too many entries at once');
  return [...seen.values()];
}
