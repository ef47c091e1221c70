import { describe, expect, test } from 'vitest';
import type { Attr } from '../meta/types.js';
import { R, W, X, access, changeIn, fileData, linkTo, may, mknod, removeFrom, search, setattr, stickyApplies, type PosixCaller } from './posix-access.js';

const alice: PosixCaller = { uid: 1000, gids: [1000, 50] };
const bob: PosixCaller = { uid: 1001, gids: [1001] };
const carol: PosixCaller = { uid: 1002, gids: [1002, 50] };

const attr = (mode: number, uid = 1000, gid = 1000, type: Attr['type'] = 'file'): Attr => ({
  ino: 9, type, mode, uid, gid, size: 10, mtimeMs: 0, ctimeMs: 0, atimeMs: 0, nlink: 1, parent: 1,
  replication: 1, chunkSize: 1 << 20, target: '', chunks: 0, rdev: 0,
});

describe('mode classes', () => {
  test('owner, else group, else other: one class only', () => {
    const f = attr(0o640, 1000, 50);
    expect(may(alice, f, R | W)).toBe(true);
    expect(may(carol, f, R)).toBe(true); // group 50
    expect(may(carol, f, W)).toBe(false);
    expect(may(bob, f, R)).toBe(false);
    // An owner without a bit lacks it even where others have it.
    expect(may(alice, attr(0o077), R)).toBe(false);
    expect(may(bob, attr(0o077), R)).toBe(true);
  });

  test('a refusal names the bits, the entry and the caller', () => {
    expect(access(bob, attr(0o600), R, 'the file')).toBe('needs read (r) on the file (mode 0600 owner 1000:1000) for uid 1001 (groups 1001)');
    expect(access(alice, attr(0o600), R)).toBeUndefined();
  });

  test('search on directories walked through; w and x on a directory changed', () => {
    const dir = attr(0o750, 1000, 1000, 'dir');
    expect(search(alice, dir)).toBeUndefined();
    expect(search(bob, dir)).toMatch(/search \(x\)/);
    expect(changeIn(bob, attr(0o755, 1000, 1000, 'dir'))).toMatch(/write and search/);
    expect(changeIn(alice, attr(0o755, 1000, 1000, 'dir'))).toBeUndefined();
    // w without x is not enough.
    expect(changeIn(bob, attr(0o772, 1000, 1000, 'dir'))).toMatch(/write and search/);
  });
});

describe('file data', () => {
  test('the owner reads and writes its bytes whatever the bits (it could chmod them); others need the bits', () => {
    expect(fileData(alice, attr(0o444), W)).toBeUndefined();
    expect(fileData(alice, attr(0o000), R)).toBeUndefined();
    expect(fileData(bob, attr(0o644), W)).toMatch(/needs write \(w\) on the file/);
    expect(fileData(bob, attr(0o640, 1000, 1001), R)).toBeUndefined(); // group
    expect(fileData(bob, attr(0o604), R | X)).toMatch(/needs/);
  });
});

describe('links and device nodes', () => {
  test('a link needs the file\'s owner or a reader and writer of it', () => {
    expect(linkTo(alice, attr(0o600))).toBeUndefined();
    expect(linkTo(bob, attr(0o666))).toBeUndefined();
    expect(linkTo(bob, attr(0o644))).toMatch(/link: only the owner/);
  });
  test('devices are root\'s; fifos and sockets anyone\'s', () => {
    expect(mknod(alice, 'fifo')).toBeUndefined();
    expect(mknod(alice, 'socket')).toBeUndefined();
    expect(mknod(alice, 'chardev')).toMatch(/character device: only root/);
    expect(mknod(alice, 'blockdev')).toMatch(/block device: only root/);
  });
});

describe('sticky directories', () => {
  const tmp = attr(0o1777, 0, 0, 'dir');
  test('only the entry\'s owner or the directory\'s removes an entry', () => {
    expect(stickyApplies(bob, tmp)).toBe(true);
    expect(stickyApplies(bob, attr(0o777, 0, 0, 'dir'))).toBe(false);
    expect(removeFrom(bob, tmp, attr(0o644, 1000))).toMatch(/sticky directory/);
    expect(removeFrom(alice, tmp, attr(0o644, 1000))).toBeUndefined();
    expect(removeFrom(alice, attr(0o1777, 1000, 1000, 'dir'), attr(0o644, 1001))).toBeUndefined(); // the directory's owner
    expect(removeFrom(bob, attr(0o777, 0, 0, 'dir'), attr(0o644, 1000))).toBeUndefined(); // not sticky
    expect(removeFrom(bob, attr(0o755, 1000, 1000, 'dir'), attr(0o644, 1001))).toMatch(/write and search/);
  });
});

describe('setattr', () => {
  const refused = (r: ReturnType<typeof setattr>) => ('refused' in r ? r.refused : undefined);
  const applied = (r: ReturnType<typeof setattr>) => ('changes' in r ? r.changes : undefined);

  test('chmod: only the owner', () => {
    expect(applied(setattr(alice, attr(0o600), { mode: 0o644 }))).toEqual({ mode: 0o644 });
    expect(refused(setattr(bob, attr(0o666), { mode: 0o777 }))).toMatch(/chmod: only the owner/);
  });

  test('chmod of a file by an owner outside its group drops setgid', () => {
    expect(applied(setattr(alice, attr(0o644, 1000, 77), { mode: 0o2755 }))).toEqual({ mode: 0o755 });
    expect(applied(setattr(alice, attr(0o644, 1000, 50), { mode: 0o2755 }))).toEqual({ mode: 0o2755 });
    expect(applied(setattr(alice, attr(0o755, 1000, 77, 'dir'), { mode: 0o2755 }))).toEqual({ mode: 0o2755 });
  });

  test('chown: never (root only); the same uid is a no-op for the owner', () => {
    expect(refused(setattr(alice, attr(0o644), { uid: 1001 }))).toMatch(/only root changes an owner/);
    expect(refused(setattr(bob, attr(0o666), { uid: 1001 }))).toMatch(/only root/);
    expect(applied(setattr(alice, attr(0o644), { uid: 1000 }))).toEqual({ uid: 1000 });
    expect(refused(setattr(bob, attr(0o666), { uid: 1000 }))).toMatch(/chown: only the owner/);
  });

  test('chgrp: the owner, to one of its groups; setuid and setgid of a file go', () => {
    expect(applied(setattr(alice, attr(0o644), { gid: 50 }))).toEqual({ gid: 50 });
    expect(refused(setattr(alice, attr(0o644), { gid: 1001 }))).toMatch(/not one of the groups/);
    expect(refused(setattr(carol, attr(0o666, 1000, 50), { gid: 50 }))).toMatch(/chgrp: only the owner/);
    expect(applied(setattr(alice, attr(0o6755), { gid: 50 }))).toEqual({ gid: 50, mode: 0o755 });
  });

  test('times as utimensat: "now" by the owner or a writer, a chosen time by the owner only; size: a writer', () => {
    const now = { mtimeMs: 9, atimeMs: 9, mtimeNow: true, atimeNow: true };
    expect(applied(setattr(bob, attr(0o666), now))).toEqual(now);
    expect(refused(setattr(bob, attr(0o644), now))).toMatch(/setting times to now: only the owner \(1000\) or a writer/);
    expect(applied(setattr(alice, attr(0o444), now))).toEqual(now);
    expect(refused(setattr(bob, attr(0o666), { mtimeMs: 5, atimeMs: 5 }))).toMatch(/setting a chosen time: only the owner/);
    // one chosen time beside one "now" is still a chosen time
    expect(refused(setattr(bob, attr(0o666), { mtimeMs: 9, mtimeNow: true, atimeMs: 5 }))).toMatch(/chosen time/);
    expect(applied(setattr(alice, attr(0o444), { mtimeMs: 5 }))).toEqual({ mtimeMs: 5 });
    expect(refused(setattr(bob, attr(0o644), { size: 0 }))).toMatch(/truncate needs write/);
    expect(applied(setattr(alice, attr(0o444), { size: 0 }))).toEqual({ size: 0 }); // the owner: fileData
    expect(applied(setattr(bob, attr(0o666), { size: 0 }))).toEqual({ size: 0 });
  });
});
