// `strata health`: counts every chunk's state with one scan (any coordinator can do it), and
// names the affected files. Files do not store their names, so only the affected inodes are
// resolved to paths, by one paged pass over directory entries.
import type { Kv } from '../meta/kv.js';
import * as k from '../meta/keys.js';
import { ROOT_INO } from '../meta/types.js';
import { assess, chunkHealth, type ClusterView } from './planner.js';
import { SCAN_PAGE, scanChunks } from './scan.js';

export type AffectedState = 'missing' | 'corrupt' | 'under-replicated';

export interface AffectedFile {
  path: string;
  ino: number;
  state: AffectedState;
  chunks: number;
}

export interface HealthCounts {
  chunks: number;
  healthy: number;
  underReplicated: number;
  missing: number;
  corrupt: number;
  overReplicated: number;
  files: AffectedFile[];
  scannedAtMs: number;
}

const STATE_ORDER: AffectedState[] = ['missing', 'corrupt', 'under-replicated'];
const MAX_DEPTH = 4096;

export async function computeHealth(kv: Kv, view: ClusterView, maxFiles: number): Promise<HealthCounts> {
  const counts: HealthCounts = { chunks: 0, healthy: 0, underReplicated: 0, missing: 0, corrupt: 0, overReplicated: 0, files: [], scannedAtMs: Date.now() };
  // ino -> state -> chunks; bounded by maxFiles per state (the count stays exact).
  const affected = new Map<AffectedState, Map<number, number>>(STATE_ORDER.map((s) => [s, new Map()]));
  const note = (state: AffectedState, ino: number) => {
    const perIno = affected.get(state)!;
    if (perIno.has(ino) || perIno.size < maxFiles) perIno.set(ino, (perIno.get(ino) ?? 0) + 1);
  };
  for await (const chunk of scanChunks(kv)) {
    const health = chunkHealth(assess(chunk.record, chunk.replication, view), chunk.replication);
    counts.chunks++;
    if (health.healthy) counts.healthy++;
    if (health.underReplicated) counts.underReplicated++;
    if (health.missing) counts.missing++;
    if (health.corrupt) counts.corrupt++;
    if (health.overReplicated) counts.overReplicated++;
    if (health.missing) note('missing', chunk.ino);
    else if (health.corrupt) note('corrupt', chunk.ino);
    else if (health.underReplicated) note('under-replicated', chunk.ino);
  }
  const listed: Omit<AffectedFile, 'path'>[] = [];
  for (const state of STATE_ORDER) {
    for (const [ino, chunks] of affected.get(state)!) if (listed.length < maxFiles) listed.push({ ino, state, chunks });
  }
  const paths = await resolvePaths(kv, new Set(listed.map((f) => f.ino)));
  counts.files = listed.map((f) => ({ ...f, path: paths.get(f.ino) ?? `<inode ${f.ino}>` }));
  return counts;
}

/** Paths of the given inodes (absent: the file went away meanwhile). */
export async function resolvePaths(kv: Kv, inos: Set<number>): Promise<Map<number, string>> {
  const paths = new Map<number, string>();
  if (inos.size === 0) return paths;
  // One pass over d/: every directory's name and parent (needed to build any path), and the
  // names of the wanted inodes.
  const dirs = new Map<number, { parent: number; name: string }>();
  const wanted = new Map<number, { parent: number; name: string }>();
  const { end } = k.rangeOf(k.DENTRY_PREFIX);
  let start = k.DENTRY_PREFIX;
  for (;;) {
    const page = await kv.range({ start, end, limit: SCAN_PAGE });
    for (const row of page) {
      const entry = k.decodeDentry(row.value);
      const where = k.splitDentryKey(row.key);
      if (entry.type === 'dir') dirs.set(entry.ino, where);
      if (inos.has(entry.ino)) wanted.set(entry.ino, where);
    }
    if (page.length < SCAN_PAGE) break;
    start = page[page.length - 1]!.key + '\0';
  }
  for (const [ino, { parent, name }] of wanted) {
    const parts = [name];
    let dir = parent;
    for (let depth = 0; dir !== ROOT_INO && depth < MAX_DEPTH; depth++) {
      const up = dirs.get(dir);
      if (!up) break;
      parts.push(up.name);
      dir = up.parent;
    }
    paths.set(ino, '/' + parts.reverse().join('/'));
  }
  return paths;
}
