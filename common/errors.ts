// The one error taxonomy. Every failure a user or a peer can see is one of these kinds;
// edges map kinds once: to gRPC status (common/grpc-errors.ts), to exit codes (cli/), to errno (fuse/).

export const ERROR_KINDS = [
  'NotFound',
  'Exists',
  'NotEmpty',
  'NotDir',
  'IsDir',
  'Invalid',
  'PermissionDenied',
  // No valid credentials at all (a missing, expired or forged token): who is asking is unknown.
  'Unauthenticated',
  // Not allowed whatever the permission bits say (EPERM): another name for a directory, say.
  'NotPermitted',
  'TooManyLinks',
  'NoSpace',
  // A directory's (or a tenant's) quota of bytes or files would be passed (EDQUOT): distinct from
  // NoSpace (the cluster is full) and Busy (try later), though gRPC says RESOURCE_EXHAUSTED for all three.
  'QuotaExceeded',
  // A move or link across quota directories that the quotas cannot follow (EXDEV: mv copies instead).
  'CrossQuota',
  // Refused before it started: this client has too many requests in flight or starts them too fast.
  'Busy',
  'Unavailable',
  'Timeout',
  'Conflict',
  'Corrupt',
  // Encrypted data this process cannot open: no master key, or another one. The bytes may be
  // intact, so this is never Corrupt (nothing quarantines or repairs over it).
  'KeyUnavailable',
  'Internal',
] as const;

export type ErrorKind = (typeof ERROR_KINDS)[number];

export class StrataError extends Error {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = `${kind}Error`;
  }
}

export const isErrorKind = (value: string): value is ErrorKind =>
  (ERROR_KINDS as readonly string[]).includes(value);

export const notFound = (what: string) => new StrataError('NotFound', `${what}: no such file or directory`);
export const exists = (what: string) => new StrataError('Exists', `${what}: already exists`);
export const notEmpty = (what: string) => new StrataError('NotEmpty', `${what}: directory not empty`);
export const notDir = (what: string) => new StrataError('NotDir', `${what}: not a directory`);
export const isDir = (what: string) => new StrataError('IsDir', `${what}: is a directory`);
export const invalid = (message: string) => new StrataError('Invalid', message);
export const notPermitted = (message: string) => new StrataError('NotPermitted', message);
/** What every refused token says, whatever the reason: how to get a good one. */
export const unauthenticated = (reason: string) =>
  new StrataError('Unauthenticated', `not authenticated: ${reason}; run strata login or set STRATA_TOKEN`);
export const corrupt = (message: string) => new StrataError('Corrupt', message);

/** Wraps anything thrown into a StrataError; unknown failures become Internal. */
export function asStrataError(err: unknown): StrataError {
  if (err instanceof StrataError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new StrataError('Internal', message, { cause: err });
}
