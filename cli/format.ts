// Human-readable output for file listings and stats.
import type { DirEntry, FileStat } from '../client/index.js';
import { formatBytes } from '../common/units.js';

const TYPE_CHAR = { file: '-', directory: 'd', symlink: 'l', fifo: 'p', 'char-device': 'c', 'block-device': 'b', socket: 's' } as const;

export function modeString(stat: FileStat): string {
  const bits = 'rwxrwxrwx';
  let out: string = TYPE_CHAR[stat.type];
  for (let i = 0; i < 9; i++) out += stat.mode & (1 << (8 - i)) ? bits[i] : '-';
  return out;
}

/** glibc's major()/minor() of a Linux device number. */
export const major = (rdev: number) => Number(((BigInt(rdev) >> 8n) & 0xfffn) | ((BigInt(rdev) >> 32n) & ~0xfffn));
export const minor = (rdev: number) => Number((BigInt(rdev) & 0xffn) | ((BigInt(rdev) >> 12n) & ~0xffn));

function timeString(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 16);
}

export function longListing(entries: DirEntry[]): string {
  const rows = entries.map((e) => {
    const s = e.stat!;
    const name = s.isSymbolicLink() ? `${e.name} -> ${s.target}` : e.name;
    const size = s.type === 'char-device' || s.type === 'block-device' ? `${major(s.rdev)}, ${minor(s.rdev)}` : String(s.size);
    return [modeString(s), String(s.nlink), String(s.uid), String(s.gid), size, timeString(s.mtimeMs), name];
  });
  const widths = [0, 1, 2, 3, 4].map((col) => Math.max(0, ...rows.map((r) => r[col].length)));
  return rows
    .map((r) => [r[0], r[1].padStart(widths[1]), r[2].padEnd(widths[2]), r[3].padEnd(widths[3]), r[4].padStart(widths[4]), r[5], r[6]].join(' '))
    .join('\n');
}

export function statJson(stat: FileStat) {
  const { isFile: _f, isDirectory: _d, isSymbolicLink: _l, ...plain } = stat;
  return { ...plain, mode: '0' + stat.mode.toString(8) };
}

export function statText(path: string, stat: FileStat): string {
  const lines = [
    `  Path: ${path}`,
    `  Type: ${stat.type}${stat.isSymbolicLink() ? ` -> ${stat.target}` : ''}`,
    `  Size: ${stat.size} (${formatBytes(stat.size)})`,
    ` Inode: ${stat.ino}   Links: ${stat.nlink}`,
    `Access: (0${stat.mode.toString(8)}/${modeString(stat)})  Uid: ${stat.uid}  Gid: ${stat.gid}`,
  ];
  if (stat.rdev) lines.push(`Device: ${major(stat.rdev)}, ${minor(stat.rdev)}`);
  if (stat.isFile()) lines.push(`Chunks: ${stat.chunks} x ${formatBytes(stat.chunkSize)}   Replication: ${stat.replication}`);
  lines.push(`Modify: ${new Date(stat.mtimeMs).toISOString()}`, `Change: ${new Date(stat.ctimeMs).toISOString()}`);
  return lines.join('\n');
}
