// Import: rebuilds an export (manifest.ts) under an absent path or an empty directory.
// Order: directories (parents first), symlinks, files (content streamed from the object store and
// checked against the manifest's size and sha256 before the last chunk is committed), then
// attributes: files and symlinks as they finish, directories last and deepest first, so creating
// children never bumps a restored directory's mtime.
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StrataError, corrupt } from '../../common/errors.js';
import type { ObjectTier } from '../../common/object-tier.js';
import type { KeyRing } from '../../common/master-key.js';
import { OpeningStream, isSealedStream, openBuffer } from '../../common/sealed-stream.js';
import type { Strata } from '../strata.js';
import { HashMeter, forEachLimited } from './export.js';
import { MANIFEST_NAME, joinPath, parseManifest, type FileEntry, type Manifest, type ManifestEntry } from './manifest.js';

export const IMPORT_CONCURRENCY = 3;

export interface ImportOptions {
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /** Master keys to open an encrypted export with (readManifest needs them too). */
  keys?: KeyRing;
}

/** A manifest as read: `encrypted` when it (and so every object of its export) was sealed. */
export type ReadManifest = Manifest & { encrypted?: boolean };

export interface ImportResult {
  destination: string;
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
}

/**
 * The manifest at the tier's prefix; one-line errors for a missing bucket, no export, a bad
 * manifest, or an encrypted one without its master key in `keys` (KeyUnavailable).
 */
export async function readManifest(tier: ObjectTier, keys?: KeyRing): Promise<ReadManifest> {
  const key = `${tier.target.prefix}${MANIFEST_NAME}`;
  const where = `s3://${tier.target.bucket}/${key}`;
  await tier.check();
  let body;
  try {
    body = await tier.get(key);
  } catch (err) {
    if (err instanceof StrataError && err.kind === 'NotFound') {
      throw new StrataError('NotFound', `${where}: no export manifest there (wrong prefix, or an export that never finished)`);
    }
    throw err;
  }
  const pieces: Buffer[] = [];
  for await (const piece of body) pieces.push(piece as Buffer);
  const bytes = Buffer.concat(pieces);
  if (!isSealedStream(bytes)) return parseManifest(bytes.toString('utf8'), where);
  return { ...parseManifest((await openBuffer(keys, bytes, where)).toString('utf8'), where), encrypted: true };
}

export async function importTree(client: Strata, tier: ObjectTier, manifest: ReadManifest, destination: string, options: ImportOptions = {}): Promise<ImportResult> {
  const root = manifest.entries[0];
  await checkDestination(client, destination, root);

  const result: ImportResult = { destination, files: 0, dirs: 0, symlinks: 0, bytes: 0 };
  const dirs = manifest.entries.filter((e) => e.type === 'dir');
  for (const dir of dirs) {
    const path = joinPath(destination, dir.path);
    if (dir.path === '') await client.mkdir(path, { parents: true });
    else await client.mkdir(path);
    result.dirs++;
  }
  if (root.type !== 'dir') {
    const parent = destination.slice(0, destination.lastIndexOf('/')) || '/';
    if (parent !== '/') await client.mkdir(parent, { parents: true });
  }

  for (const link of manifest.entries.filter((e) => e.type === 'symlink')) {
    const path = joinPath(destination, link.path);
    await client.symlink(link.target, path);
    await applyAttrs(client, path, link);
    result.symlinks++;
  }

  const files = manifest.entries.filter((e): e is FileEntry => e.type === 'file');
  const total = files.reduce((sum, e) => sum + e.size, 0);
  let done = 0;
  const progress = (bytes: number) => {
    done += bytes;
    options.onProgress?.(done, total);
  };
  await forEachLimited(files, IMPORT_CONCURRENCY, async (file) => {
    const path = joinPath(destination, file.path);
    await importFile(client, tier, path, file, progress, manifest.encrypted ? options.keys : undefined, manifest.encrypted === true);
    await applyAttrs(client, path, file);
    result.files++;
    result.bytes += file.size;
  });

  // Deepest first: setting a directory's attributes never touches its parent.
  const depth = (p: string) => (p === '' ? 0 : p.split('/').length);
  for (const dir of [...dirs].sort((a, b) => depth(b.path) - depth(a.path))) {
    await applyAttrs(client, joinPath(destination, dir.path), dir);
  }
  return result;
}

/** Absent, or (for a directory export) an empty directory; anything else is refused before writing. */
async function checkDestination(client: Strata, destination: string, root: ManifestEntry): Promise<void> {
  let stat;
  try {
    stat = await client.stat(destination);
  } catch (err) {
    if (err instanceof StrataError && err.kind === 'NotFound') return;
    throw err;
  }
  if (!stat.isDirectory()) throw new StrataError('Exists', `${destination}: already exists; import into an absent path or an empty directory`);
  if (root.type !== 'dir') throw new StrataError('Exists', `${destination}: already exists (the export holds a single ${root.type}); import into an absent path`);
  for await (const _ of client.list(destination, { pageSize: 1 })) {
    throw new StrataError('NotEmpty', `${destination}: directory not empty; import into an absent path or an empty directory`);
  }
}

async function importFile(client: Strata, tier: ObjectTier, path: string, file: FileEntry, progress: (bytes: number) => void, keys: KeyRing | undefined, encrypted: boolean): Promise<void> {
  const key = tier.target.prefix + file.key;
  const source = await tier.get(key);
  const check = new VerifyingMeter(file, path, key, progress);
  const sink = await client.createWriteStream(path, { mode: file.mode });
  try {
    // An encrypted export's objects are opened (their tags checked) before the size and sha256 are.
    if (encrypted) await pipeline(source, new OpeningStream(keys, `s3://${tier.target.bucket}/${key}`), check, sink);
    else await pipeline(source, check, sink);
  } catch (err) {
    progress(-check.bytes);
    // Never leave a file whose bytes are not the exported ones.
    if (err instanceof StrataError && (err.kind === 'Corrupt' || err.kind === 'KeyUnavailable')) await client.rm(path).catch(() => undefined);
    throw err;
  }
}

/**
 * Counts and hashes bytes on their way into strata, and fails the stream (before its end reaches
 * the writer, so the last chunk is never committed) when they do not match the manifest.
 */
class VerifyingMeter extends Transform {
  private readonly meter: HashMeter;
  constructor(
    private readonly file: FileEntry,
    private readonly path: string,
    private readonly key: string,
    progress: (bytes: number) => void,
  ) {
    super();
    this.meter = new HashMeter(progress);
  }
  get bytes(): number {
    return this.meter.bytes;
  }
  override _transform(piece: Buffer, encoding: BufferEncoding, done: TransformCallback): void {
    this.meter._transform(piece, encoding, () => undefined);
    if (this.meter.bytes > this.file.size) return done(this.mismatch(`more than the ${this.file.size} bytes the manifest records`));
    done(null, piece);
  }
  override _flush(done: TransformCallback): void {
    if (this.meter.bytes !== this.file.size) return done(this.mismatch(`${this.meter.bytes} bytes, the manifest records ${this.file.size}`));
    if (this.meter.digest !== this.file.sha256) return done(this.mismatch('sha256 differs from the manifest'));
    done();
  }
  private mismatch(detail: string): StrataError {
    return corrupt(`${this.path}: exported object ${this.key} is damaged (${detail}); import stopped, the file was not written`);
  }
}

async function applyAttrs(client: Strata, path: string, entry: ManifestEntry): Promise<void> {
  const times = { mtimeMs: entry.mtimeMs, atimeMs: entry.atimeMs };
  try {
    await client.setattr(path, { mode: entry.mode, uid: entry.uid, gid: entry.gid, ...times });
  } catch (err) {
    // A caller who may not give files away (not the admin, where the coordinator checks owners)
    // keeps them as its own, as tar does when not run as root; the rest of the entry still applies.
    if (!(err instanceof StrataError && err.kind === 'PermissionDenied')) throw err;
    await client.setattr(path, { mode: entry.mode, ...times });
  }
}
