// The authentication seam: a bearer token in, a Principal out. Two implementations: off
// (everyone is ANONYMOUS, only when chosen explicitly or on a loopback-only coordinator) and
// OIDC against a Keycloak realm (oidc-verifier.ts). Edges (guard.ts) call only this.
import { ANONYMOUS, type Principal } from '../../common/auth-principal.js';

export interface Authenticator {
  readonly mode: 'off' | 'oidc';
  /** The principal of a token; rejects Unauthenticated (a bad token) or Unavailable (the realm cannot be reached). */
  verify(token: string): Promise<Principal>;
}

export const AUTH_OFF: Authenticator = Object.freeze({
  mode: 'off' as const,
  verify: () => Promise.resolve(ANONYMOUS),
});
