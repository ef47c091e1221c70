// The FUSE edge of the error taxonomy: every StrataError kind maps to one errno, here only.
// fuse-native wants negative numbers (`cb(-ENOENT)`).
import { constants } from 'node:os';
import { type ErrorKind, StrataError } from '../common/errors.js';

const E = constants.errno;

export const KIND_TO_ERRNO: Record<ErrorKind, number> = {
  NotFound: E.ENOENT,
  Exists: E.EEXIST,
  NotEmpty: E.ENOTEMPTY,
  NotDir: E.ENOTDIR,
  IsDir: E.EISDIR,
  Invalid: E.EINVAL,
  PermissionDenied: E.EACCES,
  Unauthenticated: E.EACCES,
  NotPermitted: E.EPERM,
  TooManyLinks: E.EMLINK,
  NoSpace: E.ENOSPC,
  // "Disk quota exceeded"
  QuotaExceeded: E.EDQUOT,
  // rename(2)/link(2) across quota directories: mv then copies and removes, as across file systems.
  CrossQuota: E.EXDEV,
  // Too many requests from this client at once: the caller may try again.
  Busy: E.EAGAIN,
  // The cluster could not answer: to a program this is an I/O error, the kernel's word for it.
  Unavailable: E.EIO,
  Timeout: E.EIO,
  Corrupt: E.EIO,
  // Encrypted and the key is missing or wrong: to a program, data it cannot read.
  KeyUnavailable: E.EIO,
  Internal: E.EIO,
  // Lost a race in metadata too many times: the caller may simply try again.
  Conflict: E.EAGAIN,
};

/** An error that already is an errno (raised by the mount itself, e.g. EROFS, EBADF). */
export class ErrnoError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
    this.name = 'ErrnoError';
  }
}

export const errnoError = (name: keyof typeof E, message: string) => new ErrnoError(E[name], message);

/** The positive errno for anything thrown; unknown failures are EIO. */
export function toErrno(err: unknown): number {
  if (err instanceof ErrnoError) return err.errno;
  if (err instanceof StrataError) return KIND_TO_ERRNO[err.kind];
  return E.EIO;
}

export const ERRNO = E;
