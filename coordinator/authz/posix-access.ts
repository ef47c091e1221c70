// Owner, group and mode bits, as a POSIX kernel applies them, for callers the coordinator checks
// itself (authenticated tenant users on every route: unary RPCs, the session stream, export and
// import). Pure functions over attributes the operation has already read: each answers
// undefined (allowed) or the rule that refuses, in words, for the denial log (denials.ts).
//
// Root is not a caller here: the admin role acts as root inside a tenant and is not checked at
// all (gate.ts), like auth off. A uid 0 in a token owns what uid 0 owns and nothing more.
import type { Attr, SetAttrChanges } from '../meta/types.js';

/** A checked caller: its uid and its groups (the primary first). */
export interface PosixCaller {
  readonly uid: number;
  readonly gids: readonly number[];
}

export const R = 4;
export const W = 2;
export const X = 1;
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISVTX = 0o1000;

/** Who a token without uid (or gid) claim is: one unprivileged user per tenant (Linux's nobody/nogroup). */
export const NOBODY_UID = 65534;
export const NOBODY_GID = 65534;

type Perms = Pick<Attr, 'mode' | 'uid' | 'gid'>;

const WORDS: Record<number, string> = { [R]: 'read (r)', [W]: 'write (w)', [X]: 'search (x)', [W | X]: 'write and search (wx)', [R | X]: 'read and search (rx)' };

const octal = (mode: number) => '0' + (mode & 0o7777).toString(8).padStart(3, '0');
const describe = (attr: Perms) => `mode ${octal(attr.mode)} owner ${attr.uid}:${attr.gid}`;
const who = (caller: PosixCaller) => `uid ${caller.uid} (groups ${caller.gids.join(',')})`;

export function inGroup(caller: PosixCaller, gid: number): boolean {
  return caller.gids.includes(gid);
}

/**
 * The mode class that applies (owner, else group, else other: only one, as POSIX says, so an
 * owner without a bit lacks it even where others have it) holds every bit of `want`.
 */
export function may(caller: PosixCaller, attr: Perms, want: number): boolean {
  const shift = caller.uid === attr.uid ? 6 : inGroup(caller, attr.gid) ? 3 : 0;
  return ((attr.mode >> shift) & want) === want;
}

/** `want` on `attr`, or the refusal: which bits, on what, for whom. */
export function access(caller: PosixCaller, attr: Perms, want: number, what = 'the entry'): string | undefined {
  if (may(caller, attr, want)) return undefined;
  return `needs ${WORDS[want] ?? want} on ${what} (${describe(attr)}) for ${who(caller)}`;
}

/**
 * Reading or writing a file's bytes (GetChunks' read grant; AllocateChunk, CommitChunk, truncate).
 * A kernel checks at open, the coordinator sees no open: so a file made 0444 (cp of a read-only
 * file) could not be written after its create. Its owner may always: it could chmod itself the
 * bit, so this lets no one do more than they could.
 */
export function fileData(caller: PosixCaller, attr: Perms, want: number): string | undefined {
  return caller.uid === attr.uid ? undefined : access(caller, attr, want, 'the file');
}

/** A path walk: search on each directory whose entry is looked up. */
export const search = (caller: PosixCaller, dir: Perms) => access(caller, dir, X, 'a directory on the path');

/** Making, removing or renaming an entry of `dir` (create, mkdir, symlink, mknod, link, unlink, rmdir, rename). */
export const changeIn = (caller: PosixCaller, dir: Perms) => access(caller, dir, W | X, 'the directory');

/**
 * Another name for `file` (link): its owner, or a caller who may read and write it (Linux's
 * protected_hardlinks), so no one pins another's file in a directory of their own.
 */
export function linkTo(caller: PosixCaller, file: Perms): string | undefined {
  if (caller.uid === file.uid || may(caller, file, R | W)) return undefined;
  return `link: only the owner (${file.uid}) or a reader and writer of the file (${describe(file)}) links it, not ${who(caller)}`;
}

/** Device nodes are root's to make (CAP_MKNOD); fifos and sockets anyone's. */
export function mknod(caller: PosixCaller, kind: string): string | undefined {
  return kind === 'chardev' || kind === 'blockdev' ? `mknod of a ${kind === 'chardev' ? 'character' : 'block'} device: only root, not ${who(caller)}` : undefined;
}

/** True when removing an entry of `dir` depends on whose the entry is (sticky directory, not the caller's). */
export function stickyApplies(caller: PosixCaller, dir: Perms): boolean {
  return (dir.mode & S_ISVTX) !== 0 && dir.uid !== caller.uid;
}

/** Removing (or renaming away, or replacing) `victim` from `dir`: w+x, and in a sticky directory only its owner or the directory's. */
export function removeFrom(caller: PosixCaller, dir: Perms, victim: Perms | undefined): string | undefined {
  const refused = changeIn(caller, dir);
  if (refused) return refused;
  if (victim && stickyApplies(caller, dir) && victim.uid !== caller.uid) {
    return `sticky directory (${describe(dir)}): only the entry's owner (${victim.uid}) or the directory's may remove or rename it, not ${who(caller)}`;
  }
  return undefined;
}

/**
 * A setattr, checked: chmod only by the owner (setgid on a file dropped for a non-member of its
 * group, as Linux does); chown only by root, so never here (a no-op chown to the same uid
 * passes); chgrp by the owner to one of its groups (dropping setuid/setgid of a file); times as
 * utimensat(2): "now" by the owner or a writer, a chosen time by the owner only; size (truncate) by a writer or the owner (fileData). Answers the changes to apply, or the refusal.
 */
export function setattr(caller: PosixCaller, attr: Attr, changes: SetAttrChanges): { refused: string } | { changes: SetAttrChanges } {
  const owner = caller.uid === attr.uid;
  const next: SetAttrChanges = { ...changes };
  if (changes.uid !== undefined && changes.uid !== attr.uid) {
    return { refused: `only root changes an owner (chown ${attr.uid} to ${changes.uid}), not ${who(caller)}` };
  }
  if (changes.uid !== undefined && !owner) return { refused: `chown: only the owner (${attr.uid}) or root, not ${who(caller)}` };
  const gidChanges = changes.gid !== undefined && changes.gid !== attr.gid;
  if (changes.gid !== undefined) {
    if (!owner) return { refused: `chgrp: only the owner (${attr.uid}) or root, not ${who(caller)}` };
    if (gidChanges && !inGroup(caller, changes.gid)) return { refused: `chgrp to ${changes.gid}: not one of the groups of ${who(caller)}` };
  }
  if (changes.mode !== undefined) {
    if (!owner) return { refused: `chmod: only the owner (${attr.uid}) or root, not ${who(caller)}` };
    const group = changes.gid ?? attr.gid;
    if (attr.type !== 'dir' && !inGroup(caller, group)) next.mode = changes.mode & ~S_ISGID;
  } else if (gidChanges && attr.type !== 'dir' && (attr.mode & (S_ISUID | S_ISGID)) !== 0) {
    next.mode = attr.mode & ~(S_ISUID | S_ISGID);
  }
  const chosenTime = (changes.mtimeMs !== undefined && !changes.mtimeNow) || (changes.atimeMs !== undefined && !changes.atimeNow);
  if (chosenTime && !owner) return { refused: `setting a chosen time: only the owner (${attr.uid}) or root, not ${who(caller)}` };
  if ((changes.mtimeNow || changes.atimeNow) && !owner && !may(caller, attr, W)) {
    return { refused: `setting times to now: only the owner (${attr.uid}) or a writer; ${access(caller, attr, W, 'the file')}` };
  }
  if (changes.size !== undefined && changes.size !== attr.size) {
    const refused = fileData(caller, attr, W);
    if (refused) return { refused: `truncate ${refused}` };
  }
  return { changes: next };
}
