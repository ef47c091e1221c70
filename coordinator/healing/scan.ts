// Reading what the healing jobs decide on: every chunk record with its file's replication, in
// pages (never one unbounded range), and the cluster facts from the node registry.
import type { Kv } from '../meta/kv.js';
import * as k from '../meta/keys.js';
import type { ChunkRecord } from '../meta/types.js';
import type { NodeRegistry, NodeView } from '../nodes.js';
import type { ClusterView } from './planner.js';

export interface ScannedChunk {
  key: string;
  modRevision: number;
  ino: number;
  record: ChunkRecord;
  /** The file's replication factor. */
  replication: number;
}

export const SCAN_PAGE = 1000;

/**
 * Every chunk record in key order (grouped by file), a page at a time. Not one snapshot: a
 * record written after its page was read is missed until the next scan, which every caller
 * tolerates (a scan repeats; GC's safety argument does not rely on it).
 */
export async function* scanChunks(kv: Kv, pageSize = SCAN_PAGE): AsyncGenerator<ScannedChunk> {
  const end = k.rangeOf(k.CHUNK_PREFIX).end;
  let start = k.CHUNK_PREFIX;
  let replicationOf = new Map<number, number>();
  for (;;) {
    const page = await kv.range({ start, end, limit: pageSize });
    if (page.length === 0) return;
    // Records are grouped by file: only a file spanning the page boundary is known already.
    const pageInos = [...new Set(page.map((row) => k.inoFromChunkKey(row.key)))];
    const known = new Map(pageInos.filter((ino) => replicationOf.has(ino)).map((ino) => [ino, replicationOf.get(ino)!]));
    const missing = pageInos.filter((ino) => !known.has(ino));
    const inodes = missing.length > 0 ? await kv.getMany(missing.map(k.inodeKey)) : [];
    missing.forEach((ino, i) => known.set(ino, inodes[i] ? k.decodeAttr(ino, inodes[i]!.value).replication : 0));
    replicationOf = known;
    for (const row of page) {
      const ino = k.inoFromChunkKey(row.key);
      const replication = replicationOf.get(ino) ?? 0;
      // No inode: the file went away between reads (its records go in the same transaction).
      if (replication === 0) continue;
      yield { key: row.key, modRevision: row.modRevision, ino, record: k.decodeChunk(k.chunkIndexFromKey(row.key), row.value), replication };
    }
    if (page.length < pageSize) return;
    start = page[page.length - 1]!.key + '\0';
  }
}

/** One file's chunk records in index order, a page at a time (a big file is many keys). */
export async function* scanFileChunks(kv: Kv, ino: number, pageSize = SCAN_PAGE): AsyncGenerator<{ key: string; record: ChunkRecord }> {
  const { end } = k.rangeOf(k.chunkPrefix(ino));
  let start = k.chunkPrefix(ino);
  for (;;) {
    const page = await kv.range({ start, end, limit: pageSize });
    for (const row of page) yield { key: row.key, record: k.decodeChunk(k.chunkIndexFromKey(row.key), row.value) };
    if (page.length < pageSize) return;
    start = page[page.length - 1]!.key + '\0';
  }
}

/** Re-reads one record and its file's replication (a queued repair acts on fresh facts). */
export async function readChunk(kv: Kv, key: string): Promise<ScannedChunk | undefined> {
  const ino = k.inoFromChunkKey(key);
  const [row, inode] = await kv.getMany([key, k.inodeKey(ino)]);
  if (!row || !inode) return undefined;
  const record = k.decodeChunk(k.chunkIndexFromKey(key), row.value);
  return { key, modRevision: row.modRevision, ino, record, replication: k.decodeAttr(ino, inode.value).replication };
}

export function clusterView(nodes: NodeView[], corrupt: Map<string, Set<string>>): ClusterView {
  const live = new Set(nodes.filter((n) => n.live).map((n) => n.nodeId));
  const leaving = new Set(nodes.filter((n) => n.admin === 'draining' || n.admin === 'drained').map((n) => n.nodeId));
  const placeable = nodes.filter((n) => n.live && !leaving.has(n.nodeId) && n.admin !== 'removed').length;
  return { live, leaving, corrupt, placeable };
}

/** The registry's current facts, as the planner wants them. */
export async function currentView(registry: NodeRegistry): Promise<{ nodes: NodeView[]; view: ClusterView }> {
  const nodes = await registry.list();
  return { nodes, view: clusterView(nodes, registry.corruptReports()) };
}
