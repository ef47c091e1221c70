// `strata ls -l` of special files: their type letter, and a device's major, minor in place of a size.
import { describe, expect, test } from 'vitest';
import type { FileStat, FileType } from '../client/index.js';
import { longListing, major, minor, modeString } from './format.js';

const stat = (type: FileType, mode: number, rdev = 0): FileStat => ({
  ino: 7, type, mode, uid: 0, gid: 0, size: 0, mtimeMs: 0, ctimeMs: 0, atimeMs: 0, nlink: 1, replication: 0, chunkSize: 0, chunks: 0, target: '', rdev,
  isFile: () => type === 'file', isDirectory: () => type === 'directory', isSymbolicLink: () => type === 'symlink',
});

describe('ls -l of special files', () => {
  test('type letters as ls prints them', () => {
    expect(['fifo', 'char-device', 'block-device', 'socket'].map((t) => modeString(stat(t as FileType, 0o640)))).toEqual(['prw-r-----', 'crw-r-----', 'brw-r-----', 'srw-r-----']);
  });

  test("device numbers decode as glibc's major() and minor(), small and large", () => {
    expect([major(0x0801), minor(0x0801)]).toEqual([8, 1]);
    const big = ((300 & 0xfff) << 8) | (1000 & 0xff) | ((1000 & ~0xff) << 12); // major 300, minor 1000
    expect([major(big), minor(big)]).toEqual([300, 1000]);
    const listing = longListing([{ name: 'sda1', ino: 7, type: 'block-device', stat: stat('block-device', 0o660, 0x0801) }]);
    expect(listing).toMatch(/^brw-rw---- 1 0 0 8, 1 .* sda1$/);
  });
});
