// Export: a strata subtree to an object store, as one object per file plus a manifest
// (format in manifest.ts), the manifest written last.
//
// What "consistent" means here: strata has no snapshots, so the export is consistent PER FILE,
// not a point-in-time image of the whole tree. For each file, the attributes are read before and
// after its bytes are streamed; the bytes count only when ino, size, mtime, ctime and chunk count
// did not change and exactly `size` bytes were read. Otherwise the file is read again (up to
// READ_ATTEMPTS times); a file that never holds still is exported as last read, marked `unstable`
// in the manifest and listed in the result. Whatever happens, every object matches the size and
// sha256 its manifest entry records (both are computed from the very bytes uploaded). Entries
// that disappear during the walk are left out and listed as `vanished`; a directory whose
// listing changed while it was walked is listed in `changed`.
import { createHash, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StrataError } from '../../common/errors.js';
import type { ObjectTier } from '../../common/object-tier.js';
import type { KeyRing } from '../../common/master-key.js';
import { SealingStream, isSealedStream, openBuffer, sealBuffer } from '../../common/sealed-stream.js';
import type { Strata } from '../strata.js';
import type { FileStat } from '../types.js';
import { MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION, joinPath, parseManifest, type FileEntry, type Manifest, type ManifestEntry } from './manifest.js';

export const READ_ATTEMPTS = 3;
/** Files streamed at once. Each upload buffers at most a few object-store parts. */
export const EXPORT_CONCURRENCY = 3;

export interface ExportOptions {
  /** Replace an existing manifest at the destination. */
  force?: boolean;
  /** Called with the bytes read so far, and the total once the walk is done. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /**
   * Encrypt every object, data and manifest (common/sealed-stream.ts): a fresh data key each,
   * wrapped by `keys.current`. The manifest's sizes and sha256 are of the plaintext.
   */
  keys?: KeyRing;
}

export interface ExportResult {
  source: string;
  manifestKey: string;
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
  /** Files that kept changing while read: exported as last read, marked unstable. */
  unstable: { path: string; reason: string }[];
  /** Directories whose listing changed during the walk (entries added or removed meanwhile may be missing or extra). */
  changed: string[];
  /** Entries that were listed but gone when read. */
  vanished: string[];
  /** Objects of a replaced (--force) export that were deleted after the new manifest was written. */
  replacedObjects: number;
}

export async function exportTree(client: Strata, tier: ObjectTier, source: string, options: ExportOptions = {}): Promise<ExportResult> {
  const prefix = tier.target.prefix;
  const manifestKey = `${prefix}${MANIFEST_NAME}`;
  const rootStat = await client.stat(source); // NotFound here: nothing written anywhere
  await tier.check();
  let previous: Manifest | undefined;
  if (await tier.head(manifestKey)) {
    if (!options.force) throw new StrataError('Exists', `s3://${tier.target.bucket}/${manifestKey}: an export is already there (use --force to replace it)`);
    previous = await readManifestIfValid(tier, manifestKey, options.keys);
  }

  const result: ExportResult = { source, manifestKey, files: 0, dirs: 0, symlinks: 0, bytes: 0, unstable: [], changed: [], vanished: [], replacedObjects: 0 };
  const entries = await walk(client, source, rootStat, result);

  // Files: streamed a few at a time, each to its own object.
  const runId = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const files = entries.filter((e): e is FileEntry => e.type === 'file');
  const total = files.reduce((sum, e) => sum + e.size, 0);
  let done = 0;
  const progress = (bytes: number) => {
    done += bytes;
    options.onProgress?.(done, total);
  };
  files.forEach((entry, n) => (entry.key = `data/${runId}/${n}`));
  const gone = new Set<FileEntry>();
  await forEachLimited(files, EXPORT_CONCURRENCY, async (entry) => {
    const outcome = await exportFile(client, tier, joinPath(source, entry.path), prefix + entry.key, entry, progress, options.keys);
    if (outcome === 'vanished') {
      gone.add(entry);
      await tier.delete(prefix + entry.key).catch(() => undefined); // a partial upload, if any
      result.vanished.push(joinPath(source, entry.path));
    } else if (outcome !== 'ok') result.unstable.push({ path: joinPath(source, entry.path), reason: outcome });
  });

  const kept = entries.filter((e) => !(e.type === 'file' && gone.has(e)));
  for (const e of kept) {
    if (e.type === 'file') (result.files++, (result.bytes += e.size));
    else if (e.type === 'dir') result.dirs++;
    else result.symlinks++;
  }
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    createdAtMs: Date.now(),
    source,
    totals: { files: result.files, dirs: result.dirs, symlinks: result.symlinks, bytes: result.bytes },
    entries: kept,
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  await tier.put(manifestKey, options.keys ? await sealBuffer(options.keys, manifestBytes) : manifestBytes);

  // A replaced export's objects are garbage only once the new manifest is in place.
  if (previous) {
    for (const entry of previous.entries) {
      if (entry.type !== 'file') continue;
      await tier.delete(prefix + entry.key).then(() => result.replacedObjects++, () => undefined);
    }
  }
  return result;
}

/** Every entry under the root, parents before children, each directory read page by page. */
async function walk(client: Strata, source: string, rootStat: FileStat, result: ExportResult): Promise<ManifestEntry[]> {
  const entries: ManifestEntry[] = [entryOf('', rootStat)];
  const dirs: string[] = rootStat.isDirectory() ? [''] : [];
  while (dirs.length > 0) {
    const relative = dirs.shift()!;
    const path = joinPath(source, relative);
    const before = await statOrUndefined(client, path);
    if (!before?.isDirectory()) {
      result.vanished.push(path);
      continue;
    }
    try {
      for await (const child of client.list(path, { withStats: true })) {
        if (!child.stat) continue; // removed between the listing and its lookup
        // Fifos, sockets and device nodes hold no bytes, and the manifest has no kind for them.
        if (!child.stat.isFile() && !child.stat.isDirectory() && !child.stat.isSymbolicLink()) continue;
        const childRelative = relative === '' ? child.name : `${relative}/${child.name}`;
        entries.push(entryOf(childRelative, child.stat));
        if (child.stat.isDirectory()) dirs.push(childRelative);
      }
    } catch (err) {
      if (!(err instanceof StrataError) || err.kind !== 'NotFound') throw err;
      result.vanished.push(path);
      continue;
    }
    const after = await statOrUndefined(client, path);
    if (!after || after.mtimeMs !== before.mtimeMs || after.ino !== before.ino) result.changed.push(path);
  }
  // A directory that vanished mid-walk takes what was listed under it along (parents come first).
  const vanished = new Set(result.vanished);
  const keptDirs = new Set<string>();
  return entries.filter((e) => {
    const keep = e.path === '' || keptDirs.has(parentOf(e.path));
    if (keep && e.type === 'dir' && !vanished.has(joinPath(source, e.path))) keptDirs.add(e.path);
    return keep && !(e.type === 'dir' && vanished.has(joinPath(source, e.path)) && e.path !== '');
  });
}

function entryOf(path: string, stat: FileStat): ManifestEntry {
  const base = { path, mode: stat.mode, uid: stat.uid, gid: stat.gid, mtimeMs: stat.mtimeMs, atimeMs: stat.atimeMs };
  if (stat.isDirectory()) return { ...base, type: 'dir' };
  if (stat.isSymbolicLink()) return { ...base, type: 'symlink', target: stat.target };
  return { ...base, type: 'file', size: stat.size, sha256: '', key: '' };
}

/**
 * Streams one file to its object, re-reading while it changes under us. Returns 'ok', 'vanished',
 * or why it could not be read consistently. On return the entry describes the uploaded bytes.
 */
async function exportFile(client: Strata, tier: ObjectTier, path: string, key: string, entry: FileEntry, progress: (bytes: number) => void, keys?: KeyRing): Promise<string> {
  let reason = '';
  for (let attempt = 1; attempt <= READ_ATTEMPTS; attempt++) {
    const before = await statOrUndefined(client, path);
    if (!before?.isFile()) return 'vanished';
    let meter: HashMeter;
    try {
      meter = await uploadOnce(client, tier, path, key, progress, keys);
    } catch (err) {
      if (err instanceof StrataError && err.kind === 'NotFound') return 'vanished';
      throw err;
    }
    const after = await statOrUndefined(client, path);
    if (!after?.isFile()) return 'vanished';
    Object.assign(entry, { mode: after.mode, uid: after.uid, gid: after.gid, mtimeMs: after.mtimeMs, atimeMs: after.atimeMs });
    Object.assign(entry, { size: meter.bytes, sha256: meter.digest });
    reason = changeBetween(before, after, meter.bytes);
    if (reason === '') {
      delete entry.unstable;
      return 'ok';
    }
    entry.unstable = true;
    progress(-meter.bytes); // read again: the progress bar goes back
  }
  progress(entry.size);
  return `still changing after ${READ_ATTEMPTS} reads (${reason})`;
}

function changeBetween(before: FileStat, after: FileStat, bytesRead: number): string {
  if (after.ino !== before.ino) return 'replaced by another file';
  if (after.size !== before.size) return `size changed ${before.size} -> ${after.size}`;
  if (bytesRead !== before.size) return `read ${bytesRead} of ${before.size} bytes`;
  if (after.mtimeMs !== before.mtimeMs || after.ctimeMs !== before.ctimeMs || after.chunks !== before.chunks) return 'modified while read';
  return '';
}

async function uploadOnce(client: Strata, tier: ObjectTier, path: string, key: string, progress: (bytes: number) => void, keys?: KeyRing): Promise<HashMeter> {
  // A backup is not an access: atimes stay as they were (and as the manifest records them).
  const source = await client.createReadStream(path, { keepAtime: true });
  let sourceError: unknown;
  source.once('error', (err) => (sourceError ??= err));
  const meter = new HashMeter(progress); // the plaintext's size and sha256
  const sealer = keys ? new SealingStream(keys) : undefined;
  const piping = sealer ? pipeline(source, meter, sealer) : pipeline(source, meter);
  try {
    await Promise.all([piping, tier.put(key, sealer ?? meter)]);
  } catch (err) {
    source.destroy();
    meter.destroy();
    sealer?.destroy();
    await piping.catch(() => undefined);
    // A strata read failure shows up in the upload too: report the cause, not the symptom.
    throw sourceError ?? err;
  }
  return meter;
}

/** Passes bytes through, counting them and hashing them (sha256). */
export class HashMeter extends Transform {
  bytes = 0;
  private readonly hash = createHash('sha256');
  private hex = '';
  constructor(private readonly onBytes: (bytes: number) => void = () => undefined) {
    super();
  }
  get digest(): string {
    return (this.hex ||= this.hash.digest('hex'));
  }
  override _transform(piece: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.bytes += piece.length;
    this.hash.update(piece);
    this.onBytes(piece.length);
    done(null, piece);
  }
}

async function readManifestIfValid(tier: ObjectTier, key: string, keys: KeyRing | undefined): Promise<Manifest | undefined> {
  try {
    const chunks: Buffer[] = [];
    for await (const piece of await tier.get(key)) chunks.push(piece as Buffer);
    const bytes = Buffer.concat(chunks);
    return parseManifest((isSealedStream(bytes) ? await openBuffer(keys, bytes, key) : bytes).toString('utf8'), key);
  } catch {
    return undefined; // an unreadable old manifest only means its objects are not cleaned up
  }
}

async function statOrUndefined(client: Strata, path: string): Promise<FileStat | undefined> {
  try {
    return await client.stat(path);
  } catch (err) {
    if (err instanceof StrataError && (err.kind === 'NotFound' || err.kind === 'NotDir')) return undefined;
    throw err;
  }
}

const parentOf = (path: string) => (path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '');

/** Runs fn over items with at most `limit` at once; the first failure stops new starts and is thrown. */
export async function forEachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) throw failure.reason;
}
