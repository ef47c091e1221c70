// Conversions between MetaStore records and the wire shapes of proto/strata.proto.
import type { Attr, DirEntry, FileKind } from './meta/types.js';

const WIRE_TYPE: Record<FileKind, string> = {
  file: 'FILE', dir: 'DIRECTORY', symlink: 'SYMLINK', fifo: 'FIFO', chardev: 'CHAR_DEVICE', blockdev: 'BLOCK_DEVICE', socket: 'SOCKET',
};

export function toWireAttr(attr: Attr) {
  return {
    ino: attr.ino,
    type: WIRE_TYPE[attr.type],
    mode: attr.mode,
    uid: attr.uid,
    gid: attr.gid,
    size: attr.size,
    mtimeMs: attr.mtimeMs,
    ctimeMs: attr.ctimeMs,
    atimeMs: attr.atimeMs,
    nlink: attr.nlink,
    replication: attr.replication,
    chunkSize: attr.chunkSize,
    target: attr.target,
    chunks: attr.chunks,
    rdev: attr.rdev,
  };
}

export function toWireEntry(entry: DirEntry) {
  return { name: entry.name, ino: entry.ino, type: WIRE_TYPE[entry.type], attr: entry.attr ? toWireAttr(entry.attr) : null };
}
