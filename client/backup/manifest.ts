// The export manifest: what `strata export` writes and `strata import` reads.
//
// Layout under the destination prefix P (s3://bucket/P):
//   P + "data/<runId>/<n>"  one object per regular file: its bytes, nothing else (n = 0, 1, ...;
//                           runId is unique per export run, so a --force re-export never
//                           overwrites objects an older manifest still points at)
//   P + "manifest.json"     this manifest, written LAST: no manifest = no (complete) export
//
// Encrypted exports (export with a master key): every object, the manifest too, is a sealed
// stream (common/sealed-stream.ts, starting "STRE"): AES-256-GCM under a data key of its own,
// wrapped by the master key. The manifest's size and sha256 are then of the plaintext.
//
// manifest.json (UTF-8 JSON, one object):
//   format      "strata-export"
//   version     1
//   createdAtMs when the export finished writing data (ms since the epoch)
//   source      the strata path that was exported (informational)
//   totals      { files, dirs, symlinks, bytes }
//   entries     every entry of the subtree, parents before children:
//     path      relative to the exported root, '/'-separated; "" is the root itself
//     type      "file" | "dir" | "symlink"
//     mode      permission bits (0o7777 at most), as a number
//     uid, gid  numbers
//     mtimeMs, atimeMs   ms since the epoch
//     size      files: bytes in the object
//     sha256    files: lowercase hex sha256 of the object's bytes (computed while streaming)
//     key       files: object key relative to P
//     target    symlinks: where the link points (verbatim)
//     unstable  files: true when the file kept changing while read (see export.ts); its object
//               still matches size and sha256, but the bytes may mix two versions of the file
import { z } from 'zod';
import { invalid } from '../../common/errors.js';

export const MANIFEST_NAME = 'manifest.json';
export const MANIFEST_FORMAT = 'strata-export';
export const MANIFEST_VERSION = 1;

const time = z.number().finite().nonnegative();
const base = {
  path: z.string(),
  mode: z.number().int().min(0).max(0o7777),
  uid: z.number().int().nonnegative(),
  gid: z.number().int().nonnegative(),
  mtimeMs: time,
  atimeMs: time,
};

const entrySchema = z.discriminatedUnion('type', [
  z.object({ ...base, type: z.literal('dir') }),
  z.object({ ...base, type: z.literal('symlink'), target: z.string().min(1) }),
  z.object({
    ...base,
    type: z.literal('file'),
    size: z.number().int().nonnegative(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    key: z.string().min(1).max(1024),
    unstable: z.boolean().optional(),
  }),
]);

const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  version: z.literal(MANIFEST_VERSION),
  createdAtMs: time,
  source: z.string(),
  totals: z.object({ files: z.number(), dirs: z.number(), symlinks: z.number(), bytes: z.number() }),
  entries: z.array(entrySchema).min(1),
});

export type ManifestEntry = z.infer<typeof entrySchema>;
export type FileEntry = Extract<ManifestEntry, { type: 'file' }>;
export type Manifest = z.infer<typeof manifestSchema>;

/** Parses and checks a manifest; throws Invalid with one line naming the first problem. */
export function parseManifest(text: string, where: string): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw invalid(`${where}: not a strata export manifest (not valid JSON)`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(`${where}: not a strata export manifest (${issue.path.join('.') || 'top level'}: ${issue.message})`);
  }
  const manifest = parsed.data;
  const seen = new Map<string, ManifestEntry['type']>();
  for (const entry of manifest.entries) {
    if (!validRelativePath(entry.path)) throw invalid(`${where}: invalid entry path '${entry.path}'`);
    if (seen.has(entry.path)) throw invalid(`${where}: entry '${entry.path}' appears twice`);
    if (entry.path !== '') {
      const parent = entry.path.includes('/') ? entry.path.slice(0, entry.path.lastIndexOf('/')) : '';
      if (seen.get(parent) !== 'dir') throw invalid(`${where}: entry '${entry.path}' comes before (or without) its directory`);
    } else if (seen.size > 0) throw invalid(`${where}: the root entry must come first`);
    seen.set(entry.path, entry.type);
  }
  if (!seen.has('')) throw invalid(`${where}: no root entry`);
  return manifest;
}

/** "" or names joined by '/', none empty, '.' or '..', no NUL. */
function validRelativePath(path: string): boolean {
  if (path === '') return true;
  return path.split('/').every((name) => name !== '' && name !== '.' && name !== '..' && !name.includes('\0'));
}

/** A strata path under a root: joinPath('/a', 'b/c') = '/a/b/c'; joinPath('/a', '') = '/a'. */
export function joinPath(root: string, relative: string): string {
  if (relative === '') return root;
  return root === '/' ? `/${relative}` : `${root}/${relative}`;
}
