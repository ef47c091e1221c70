// Who is asking: what authentication (coordinator/auth/) hands to every layer after it. Tenants,
// per-path rules, chunk grants and quotas read this object, never a token: one place knows tokens.

export interface Principal {
  /** The token's `sub`: a user or a service account ('anonymous' when auth is off). */
  readonly subject: string;
  /** The tenant claim ('' when the token carries none, or auth is off). */
  readonly tenant: string;
  /** Realm roles and the audience client's roles, as the token lists them. */
  readonly roles: readonly string[];
  /** The client the token was issued to (`azp`), '' when unknown. */
  readonly clientId: string;
  /** When the token stops being valid (ms since the epoch); Infinity for anonymous. */
  readonly expiresAtMs: number;
  /**
   * The caller's uid inside its tenant, from the token's uid claim (`--oidc-uid-claim`); absent
   * when the token has none (then it acts as the tenant's nobody: coordinator/authz/posix-access.ts).
   */
  readonly uid?: number;
  /** Its groups, the primary (`--oidc-gid-claim`) first, then `--oidc-gids-claim`'s; absent when the token names none. */
  readonly gids?: readonly number[];
  /** True only when the coordinator runs with auth off. */
  readonly anonymous: boolean;
}

/** Everyone, when auth is explicitly off (cluster up's default): later layers decide what it may do. */
export const ANONYMOUS: Principal = Object.freeze({
  subject: 'anonymous',
  tenant: '',
  roles: Object.freeze([]) as readonly string[],
  clientId: '',
  expiresAtMs: Infinity,
  anonymous: true,
});
