// The error taxonomy's one mapping to HTTP status codes, for the HTTP edges (the web console).
import { StrataError, type ErrorKind } from './errors.js';

const STATUS: Record<ErrorKind, number> = {
  NotFound: 404,
  Exists: 409,
  NotEmpty: 409,
  NotDir: 400,
  IsDir: 400,
  Invalid: 400,
  PermissionDenied: 403,
  Unauthenticated: 401,
  NotPermitted: 403,
  TooManyLinks: 400,
  NoSpace: 507,
  QuotaExceeded: 507,
  CrossQuota: 400,
  Busy: 429,
  Unavailable: 503,
  Timeout: 504,
  Conflict: 409,
  Corrupt: 500,
  KeyUnavailable: 500,
  Internal: 500,
};

/** The status for an error, and what the reply may say of it (an unexpected error's text stays in the log). */
export function httpStatusOf(err: unknown): { status: number; kind: ErrorKind; message: string } {
  if (err instanceof StrataError) return { status: STATUS[err.kind], kind: err.kind, message: err.message };
  return { status: 500, kind: 'Internal', message: 'internal error (see the coordinator log)' };
}
