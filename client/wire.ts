// Wire (proto) shapes into SDK shapes, in one place.
import type { DirEntry, FileStat, FileType } from './types.js';

const TYPES: Record<string, FileType> = {
  FILE: 'file', DIRECTORY: 'directory', SYMLINK: 'symlink', FIFO: 'fifo', CHAR_DEVICE: 'char-device', BLOCK_DEVICE: 'block-device', SOCKET: 'socket',
};

/** SDK special file types as the wire names them. */
export const WIRE_SPECIAL_TYPES = { fifo: 'FIFO', 'char-device': 'CHAR_DEVICE', 'block-device': 'BLOCK_DEVICE', socket: 'SOCKET' } as const;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function toFileStat(wire: any): FileStat {
  const type = TYPES[wire.type] ?? 'file';
  return {
    ino: Number(wire.ino),
    type,
    mode: wire.mode,
    uid: wire.uid,
    gid: wire.gid,
    size: Number(wire.size),
    mtimeMs: Number(wire.mtimeMs),
    ctimeMs: Number(wire.ctimeMs),
    atimeMs: Number(wire.atimeMs),
    nlink: wire.nlink,
    replication: wire.replication,
    chunkSize: Number(wire.chunkSize),
    chunks: Number(wire.chunks),
    target: wire.target ?? '',
    rdev: Number(wire.rdev ?? 0),
    isFile: () => type === 'file',
    isDirectory: () => type === 'directory',
    isSymbolicLink: () => type === 'symlink',
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function toDirEntry(wire: any): DirEntry {
  return { name: wire.name, ino: Number(wire.ino), type: TYPES[wire.type] ?? 'file', stat: wire.attr ? toFileStat(wire.attr) : undefined };
}
