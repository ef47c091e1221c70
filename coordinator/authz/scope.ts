// Who is asking, for the length of one request: set by the authentication edges (auth/guard.ts,
// once per unary call and per session op) and read by the namespace gate (gate.ts) under every
// MetaStore call the request makes. An async context rather than an argument, so no handler can
// reach the namespace without it: a call outside any request fails closed (Internal).
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Principal } from '../../common/auth-principal.js';
import { StrataError } from '../../common/errors.js';

export interface RequestScope {
  readonly principal: Principal;
  /** The method or session op, for denial logs. */
  readonly op: string;
}

const scopes = new AsyncLocalStorage<RequestScope>();

/** Runs `fn` (and everything it awaits) as a request of `principal`. */
export function runAs<T>(principal: Principal, op: string, fn: () => T): T {
  return scopes.run({ principal, op }, fn);
}

/** The request running here; an assertion (a wiring bug), never a denial. */
export function currentScope(): RequestScope {
  const scope = scopes.getStore();
  if (!scope) throw new StrataError('Internal', 'namespace reached outside an authenticated request');
  return scope;
}
