// The CLI edge of the error taxonomy: one exit code per kind, documented in `strata --help`.
import type { ErrorKind } from '../common/errors.js';

export const EXIT_CODES: Record<ErrorKind, number> = {
  Internal: 1,
  Invalid: 2,
  NotFound: 3,
  Exists: 4,
  NotEmpty: 5,
  NotDir: 5,
  IsDir: 5,
  PermissionDenied: 6,
  // A denial too (the exit 6); its message says how to log in.
  Unauthenticated: 6,
  NotPermitted: 6,
  TooManyLinks: 5,
  NoSpace: 7,
  QuotaExceeded: 7,
  CrossQuota: 7,
  Busy: 8,
  Unavailable: 8,
  Timeout: 8,
  Corrupt: 9,
  Conflict: 10,
  KeyUnavailable: 12,
};

/** `strata health`: not an error, a finding: some chunk has no live, uncorrupted copy. */
export const EXIT_HEALTH_MISSING = 11;

export const EXIT_CODES_HELP = `
Exit codes:
  0 ok   1 internal error   2 invalid input or usage   3 not found   4 already exists
  5 not empty / not a directory / is a directory   6 permission denied or not authenticated
  7 no space, quota exceeded (strata quota), or a move across quota directories
  8 cluster unreachable, busy or timed out   9 corrupt data   10 conflict (retry)
  11 (strata health) chunks missing: no live, uncorrupted copy   12 encrypted data and no (or a wrong) master key`;
