// Directory quotas inside MetaStore's transactions. A quota lives on a directory (`q/<ino>`): limits
// of bytes and files, and the usage under it — the logical size of every regular file (what ls and
// stat show, not the replicated or compressed bytes stored) and the number of inodes below it (the
// directory itself not counted; a file with several names counts once). Every change that moves
// the usage rewrites the records of all quota directories above it in its own transaction, so a
// crash never makes usage drift, and nested quotas all apply.
//
// Which quota directories are above a directory is found by walking its parents and memoised per
// quota epoch (`q/epoch`): that set changes only when a quota is set or removed, or a quota
// directory moves to another set, and each of those bumps the epoch; a plain directory never moves
// to another set (rename refuses it: CrossQuota). Every change that charges compares the epoch it
// read, so a stale set fails the txn and the change is tried again.
import { StrataError } from '../../common/errors.js';
import { formatBytes } from '../../common/units.js';
import type { Kv, KvCompare, KvEntry, KvOp } from './kv.js';
import * as k from './keys.js';
import { ROOT_INO } from './types.js';

export interface Usage {
  bytes: number;
  files: number;
}

export interface QuotaRecord {
  /** 0 = no limit. */
  limitBytes: number;
  limitFiles: number;
  usedBytes: number;
  usedFiles: number;
  /** The path the quota was set at (for messages; the directory may have moved since). */
  path: string;
}

export interface QuotaEpoch {
  /** Bumped on every change of some directory's set of quotas. */
  epoch: number;
  /** Quota directories in the namespace: none = no walk at all. */
  count: number;
}

export const encodeQuota = (q: QuotaRecord) => Buffer.from(JSON.stringify({ lb: q.limitBytes, lf: q.limitFiles, ub: q.usedBytes, uf: q.usedFiles, p: q.path }));
export function decodeQuota(value: Buffer): QuotaRecord {
  const raw = JSON.parse(value.toString());
  return { limitBytes: raw.lb ?? 0, limitFiles: raw.lf ?? 0, usedBytes: raw.ub ?? 0, usedFiles: raw.uf ?? 0, path: raw.p ?? '' };
}
export const decodeEpoch = (entry: KvEntry | undefined): QuotaEpoch => {
  if (!entry) return { epoch: 0, count: 0 };
  const raw = JSON.parse(entry.value.toString());
  return { epoch: Number(raw.e) || 0, count: Number(raw.n) || 0 };
};
export const encodeEpoch = (e: QuotaEpoch) => Buffer.from(JSON.stringify({ e: e.epoch, n: e.count }));

/** The compare every charging txn carries: the quota sets it used are still the current ones. */
export const epochCompare = (read: KvEntry | undefined): KvCompare => ({ key: k.QUOTA_EPOCH_KEY, modRevision: read?.modRevision ?? 0 });

/** The op bumping the epoch, `countDelta` quota directories more or fewer. */
export function epochBump(read: KvEntry | undefined, countDelta: number): KvOp {
  const { epoch, count } = decodeEpoch(read);
  return { type: 'put', key: k.QUOTA_EPOCH_KEY, value: encodeEpoch({ epoch: epoch + 1, count: Math.max(0, count + countDelta) }) };
}

const MEMO_MAX = 100_000;
const DEPTH_MAX = 4096;

/** Which quota directories hold a directory: one walk per directory per epoch. */
export class QuotaSets {
  private memo = new Map<number, readonly number[]>();
  private memoEpoch = -1;

  constructor(private readonly kv: Kv) {}

  /**
   * The quota directories whose subtree holds directory `dir` (itself included), deepest first.
   * [] when the namespace has no quota, or `dir` is gone (a file's recorded parent that went:
   * never a reason to fail a write).
   */
  async of(dir: number, epochRead: KvEntry | undefined): Promise<readonly number[]> {
    const { epoch, count } = decodeEpoch(epochRead);
    if (count === 0 || dir <= 0) return [];
    if (epoch > this.memoEpoch || this.memo.size > MEMO_MAX) {
      this.memo = new Map();
      this.memoEpoch = epoch;
    }
    const memo = epoch === this.memoEpoch ? this.memo : undefined;
    const chain: { ino: number; quota: boolean }[] = [];
    let above: readonly number[] = [];
    for (let ino = dir, depth = 0; ; depth++) {
      const known = memo?.get(ino);
      if (known) {
        above = known;
        break;
      }
      if (depth > DEPTH_MAX) return [];
      const [inode, quota] = await this.kv.getMany([k.inodeKey(ino), k.quotaKey(ino)]);
      if (!inode) return [];
      chain.push({ ino, quota: !!quota });
      if (ino === ROOT_INO) break;
      ino = k.decodeAttr(ino, inode.value).parent;
    }
    for (const { ino, quota } of chain.reverse()) {
      above = quota ? [ino, ...above] : above;
      memo?.set(ino, above);
    }
    return above;
  }
}

export const sameSet = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((ino) => b.includes(ino));

/**
 * The quota records one change moves, read under its turn on their keys: usage is added per
 * quota directory, growth checked against the limits, then `writes()` gives the txn's part.
 */
export class QuotaCharge {
  private readonly rows = new Map<number, { read: KvEntry; record: QuotaRecord; changed: boolean }>();

  private constructor() {}

  /** Reads the records of `inos` (a record gone since the set was found: the epoch compare fails the txn). */
  static async read(kv: Kv, inos: readonly number[]): Promise<QuotaCharge> {
    const charge = new QuotaCharge();
    const unique = [...new Set(inos)];
    if (unique.length === 0) return charge;
    const entries = await kv.getMany(unique.map(k.quotaKey));
    unique.forEach((ino, i) => {
      const read = entries[i];
      if (read) charge.rows.set(ino, { read, record: decodeQuota(read.value), changed: false });
    });
    return charge;
  }

  record(ino: number): QuotaRecord | undefined {
    return this.rows.get(ino)?.record;
  }

  /** The quota `delta` would pass (growth only: shrinking is always allowed, even over a limit). */
  refusal(inos: readonly number[], delta: Usage): StrataError | undefined {
    for (const ino of inos) {
      const row = this.rows.get(ino);
      if (!row) continue;
      const { limitBytes, limitFiles, usedBytes, usedFiles, path } = row.record;
      if (delta.bytes > 0 && limitBytes > 0 && usedBytes + delta.bytes > limitBytes) {
        return quotaExceeded(`${path || `directory ${ino}`}: disk quota exceeded: ${formatBytes(usedBytes)} used + ${formatBytes(delta.bytes)} more > limit ${formatBytes(limitBytes)}`);
      }
      if (delta.files > 0 && limitFiles > 0 && usedFiles + delta.files > limitFiles) {
        return quotaExceeded(`${path || `directory ${ino}`}: disk quota exceeded: ${usedFiles} files used + ${delta.files} more > limit ${limitFiles}`);
      }
    }
    return undefined;
  }

  /** Adds `delta` to each of `inos`; with `check`, refuses (throws) growth past a limit first. */
  add(inos: readonly number[], delta: Usage, check = true): void {
    if (delta.bytes === 0 && delta.files === 0) return;
    if (check) {
      const refused = this.refusal(inos, delta);
      if (refused) throw refused;
    }
    for (const ino of inos) {
      const row = this.rows.get(ino);
      if (!row) continue;
      row.record = { ...row.record, usedBytes: Math.max(0, row.record.usedBytes + delta.bytes), usedFiles: Math.max(0, row.record.usedFiles + delta.files) };
      row.changed = true;
    }
  }

  /** Compares on every record read, puts of the changed ones. */
  writes(): { compares: KvCompare[]; ops: KvOp[] } {
    const compares: KvCompare[] = [];
    const ops: KvOp[] = [];
    for (const { read, record, changed } of this.rows.values()) {
      compares.push({ key: read.key, modRevision: read.modRevision });
      if (changed) ops.push({ type: 'put', key: read.key, value: encodeQuota(record) });
    }
    return { compares, ops };
  }
}

export const quotaExceeded = (message: string) => new StrataError('QuotaExceeded', message);
export const crossQuota = (what: string) =>
  new StrataError('CrossQuota', `${what}: cannot move or link across quota directories (their usage could not follow); copy it instead`);
