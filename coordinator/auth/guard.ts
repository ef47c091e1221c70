// The two edges where a coordinator learns who is asking, each in one place:
// - unary RPCs: the `authorization: Bearer <token>` metadata of every call (guardUnaryCalls);
// - the session stream: an `authenticate` request, first on the session and again with a fresh
//   token before the last one expires (guardSessionOps). Requests that arrive while the first
//   is being verified wait for it; without a valid token they fail Unauthenticated, unapplied.
// What later layers read: principalOfCall(call) and principalOfSession(session).
import type * as grpc from '@grpc/grpc-js';
import { ANONYMOUS, type Principal } from '../../common/auth-principal.js';
import { StrataError, invalid, unauthenticated } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc.js';
import type { ServerSession, SessionOps } from '../session.js';
import type { Authenticator } from './authenticator.js';
import { runAs } from '../authz/scope.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- handlers are the service's untyped ones */

const callPrincipals = new WeakMap<object, Principal>();

/** Who made this unary call (set before its handler ran). */
export function principalOfCall(call: object): Principal {
  const principal = callPrincipals.get(call);
  // An assertion, not a denial: a handler reached without the guard is a wiring bug.
  if (!principal) throw new StrataError('Internal', 'call reached a handler without authentication');
  return principal;
}

/** The bearer token of a call's metadata ('' when there is none). */
export function bearerToken(metadata: grpc.Metadata): string {
  const value = metadata.get('authorization')[0];
  if (typeof value !== 'string') return '';
  const match = /^Bearer\s+(\S+)$/i.exec(value.trim());
  return match ? match[1] : '';
}

/**
 * The service with each unary handler behind the token check. `exempt` names the methods that
 * are not the client plane (data nodes' heartbeats and links: the node plane, for mTLS to guard)
 * and the Session call (it authenticates in-stream); streaming methods are never wrapped.
 */
export function guardUnaryCalls(
  service: grpc.UntypedServiceImplementation,
  definition: grpc.ServiceDefinition,
  auth: Authenticator,
  exempt: ReadonlySet<string>,
): grpc.UntypedServiceImplementation {
  const guarded: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(service)) {
    const method = definition[name];
    const unary = method && !method.requestStream && !method.responseStream;
    guarded[name] = !unary || exempt.has(name) ? handler : guardUnary(name, handler as grpc.handleUnaryCall<any, any>, auth);
  }
  return guarded;
}

/** The handler runs as its caller (authz/scope.ts): what the namespace gate checks it against. */
function guardUnary(name: string, handler: grpc.handleUnaryCall<any, any>, auth: Authenticator): grpc.handleUnaryCall<any, any> {
  if (auth.mode === 'off') {
    return (call, callback) => {
      callPrincipals.set(call, ANONYMOUS);
      runAs(ANONYMOUS, name, () => handler(call, callback));
    };
  }
  return (call, callback) => {
    auth.verify(bearerToken(call.metadata)).then(
      (principal) => {
        callPrincipals.set(call, principal);
        runAs(principal, name, () => handler(call, callback));
      },
      (err) => callback(toServiceError(err) as grpc.ServiceError),
    );
  };
}

interface SessionAuthState {
  principal?: Principal;
  /** The first authenticate being verified: requests behind it wait for it. */
  pending?: Promise<void>;
}

const sessionStates = new WeakMap<ServerSession, SessionAuthState>();

function stateOf(session: ServerSession): SessionAuthState {
  let state = sessionStates.get(session);
  if (!state) sessionStates.set(session, (state = {}));
  return state;
}

const isValid = (principal: Principal | undefined): principal is Principal => !!principal && principal.expiresAtMs > Date.now();

/** Who this session is (undefined before a valid authenticate). */
export function principalOfSession(session: ServerSession): Principal | undefined {
  const principal = sessionStates.get(session)?.principal;
  return isValid(principal) ? principal : undefined;
}

/** The session's ops behind the session's token, plus `authenticate`. Outermost: it runs as each request is read. */
export function guardSessionOps(dispatch: SessionOps, auth: Authenticator): SessionOps {
  const guarded: Record<string, SessionOps[string]> = {};
  if (auth.mode === 'off') {
    for (const [name, op] of Object.entries(dispatch)) {
      guarded[name] = (request, session) => {
        stateOf(session).principal ??= ANONYMOUS;
        return runAs(ANONYMOUS, name, () => op(request, session));
      };
    }
    guarded.authenticate = async (_request, session) => wireAuthenticated((stateOf(session).principal ??= ANONYMOUS));
    return guarded;
  }
  for (const [name, op] of Object.entries(dispatch)) {
    guarded[name] = (request, session) => {
      const state = stateOf(session);
      if (state.pending && !isValid(state.principal)) return state.pending.then(() => admit(state, name, op, request, session));
      return admit(state, name, op, request, session);
    };
  }
  guarded.authenticate = (request: any, session) => {
    const state = stateOf(session);
    const previous = state.principal;
    const verifying = auth.verify(typeof request?.token === 'string' ? request.token : '').then(
      (principal) => {
        // One session, one identity: caches and leases held on it belong to that subject.
        if (previous && previous.subject !== principal.subject) throw invalid(`this session is authenticated as '${previous.subject}': open a new session for '${principal.subject}'`);
        state.principal = principal;
        return wireAuthenticated(principal);
      },
      (err) => {
        state.principal = undefined;
        throw err;
      },
    );
    if (!isValid(previous)) {
      const pending = verifying.then(
        () => undefined,
        () => undefined,
      );
      state.pending = pending;
      void pending.then(() => {
        if (state.pending === pending) state.pending = undefined;
      });
    }
    return verifying;
  };
  return guarded;
}

function admit(state: SessionAuthState, name: string, op: SessionOps[string], request: unknown, session: ServerSession): Promise<unknown> {
  const principal = state.principal;
  if (!principal) return Promise.reject(unauthenticated('this session has not authenticated'));
  if (principal.expiresAtMs <= Date.now()) return Promise.reject(unauthenticated("the session's token expired"));
  return runAs(principal, name, () => op(request, session));
}

function wireAuthenticated(principal: Principal) {
  return { subject: principal.subject, tenant: principal.tenant, expiresAtMs: Number.isFinite(principal.expiresAtMs) ? principal.expiresAtMs : 0 };
}
