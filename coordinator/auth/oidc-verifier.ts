// OIDC bearer tokens from a Keycloak realm, checked with keycloak-connect's GrantManager (the
// project's chosen package): expiry, signature against the realm's JWKS (keys cached, fetched
// again for an unknown kid: rotation), issuer, audience and Keycloak's `typ: Bearer`. What it does
// not check is checked here first: the algorithm (RS256 only, so `alg: none` and HS256 tricks
// never reach a key), not-before, a subject. Verified tokens are remembered until they expire,
// so a unary call with a token seen before costs a map lookup, not an RSA verification.
import Config from 'keycloak-connect/middleware/auth-utils/config.js';
import GrantManager from 'keycloak-connect/middleware/auth-utils/grant-manager.js';
import Token from 'keycloak-connect/middleware/auth-utils/token.js';
import type { Principal } from '../../common/auth-principal.js';
import { StrataError, invalid, unauthenticated } from '../../common/errors.js';
import { splitIssuer } from '../../common/oidc-issuer.js';
import type { Authenticator } from './authenticator.js';

export interface OidcSettings {
  /** The realm's issuer: https://keycloak.example/realms/NAME (Keycloak's shape). */
  issuer: string;
  /** The client id tokens must name in `aud`. */
  audience: string;
  /** The claim naming the caller's tenant. */
  tenantClaim: string;
  /** The claims of the caller's uid, primary gid and further gids (absent: uid, gid, gids). */
  idClaims?: { uid: string; gid: string; gids: string };
  /** Fewest ms between two JWKS fetches (an unknown kid in between is refused). */
  jwksRefetchMs: number;
}

/** The only signature algorithm accepted (Keycloak's default; keycloak-connect verifies RSA-SHA256 only). */
const ACCEPTED_ALG = 'RS256';
/** Clock difference tolerated on not-before. */
const NBF_SKEW_MS = 5_000;
/** Verified tokens kept (each until its expiry); the oldest goes first. */
const MAX_REMEMBERED = 4096;
/** Longest wait for the realm's keys (keycloak-connect's request has no timeout of its own). */
const JWKS_TIMEOUT_MS = 10_000;
/** Longer than any JWT a realm issues: refused before it is decoded. */
const MAX_TOKEN_BYTES = 16 * 1024;

export class OidcVerifier implements Authenticator {
  readonly mode = 'oidc' as const;
  private readonly manager: GrantManager;
  private readonly remembered = new Map<string, Principal>();

  constructor(private readonly settings: OidcSettings) {
    const { authServerUrl, realm } = (() => {
      try {
        return splitIssuer(settings.issuer);
      } catch (err) {
        throw invalid(`invalid config: oidcIssuer: ${(err as Error).message}`);
      }
    })();
    this.manager = new GrantManager(
      new Config({
        'auth-server-url': authServerUrl,
        realm,
        resource: settings.audience,
        'bearer-only': true,
        'verify-token-audience': true,
        // keycloak-connect counts this in seconds, and takes 0 for "unset" (10 s): 1 ms is "any time".
        'min-time-between-jwks-requests': Math.max(1, settings.jwksRefetchMs) / 1000,
      }),
    );
    if (this.manager.realmUrl !== settings.issuer.replace(/\/$/, '')) throw invalid(`invalid config: oidcIssuer: '${settings.issuer}' does not round-trip as a realm URL`);
    // keycloak-connect's own key fetch has no timeout, and parses the body in a response handler
    // where a body that is not JSON (a proxy's error page) throws past every catch and ends the
    // process. Its rotation keeps deciding when to fetch and which key to use; the fetch is ours.
    const certsUrl = `${this.manager.realmUrl}/protocol/openid-connect/certs`;
    (this.manager.rotation as unknown as { retrieveJWKs: () => Promise<{ keys: unknown[] }> }).retrieveJWKs = () => fetchJwks(certsUrl);
  }

  async verify(raw: string): Promise<Principal> {
    if (!raw) throw unauthenticated('no token');
    const known = this.remembered.get(raw);
    if (known) {
      if (known.expiresAtMs > Date.now()) return known;
      this.remembered.delete(raw);
    }
    if (raw.length > MAX_TOKEN_BYTES) throw unauthenticated(`token of ${raw.length} bytes is over ${MAX_TOKEN_BYTES}`);
    const token = new Token(raw, this.settings.audience);
    if (!token.header || typeof token.content !== 'object' || token.content === null || raw.split('.').length !== 3) throw unauthenticated('malformed token');
    const alg = token.header.alg;
    if (alg !== ACCEPTED_ALG) throw unauthenticated(`token signed with '${alg ?? 'none'}': only ${ACCEPTED_ALG} is accepted`);
    const { nbf, sub } = token.content;
    if (typeof nbf === 'number' && nbf * 1000 > Date.now() + NBF_SKEW_MS) throw unauthenticated('token not valid yet (nbf)');
    if (typeof sub !== 'string' || sub === '') throw unauthenticated('token names no subject');
    if (!this.keyMayBeFetched(token.header.kid)) throw unauthenticated(`token signed by an unknown key '${token.header.kid ?? ''}'`);
    await this.validate(token);
    const principal = this.principalOf(token);
    if (this.remembered.size >= MAX_REMEMBERED) this.remembered.delete(this.remembered.keys().next().value!);
    this.remembered.set(raw, principal);
    return principal;
  }

  /**
   * keycloak-connect refetches the JWKS for an unknown kid at most once per interval and, inside
   * it, logs to the console and fails oddly: refuse such a token here, quietly.
   */
  private keyMayBeFetched(kid: string | undefined): boolean {
    const rotation = this.manager.rotation as unknown as { jwks: { kid?: string }[]; lastTimeRequesTime: number; minTimeBetweenJwksRequests: number };
    if (rotation.jwks.some((key) => key.kid === kid)) return true;
    return Date.now() / 1000 > rotation.lastTimeRequesTime + rotation.minTimeBetweenJwksRequests;
  }

  private async validate(token: Token): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StrataError('Unavailable', `the realm's keys (${this.settings.issuer}) did not arrive within ${JWKS_TIMEOUT_MS} ms`)), JWKS_TIMEOUT_MS);
    });
    try {
      await Promise.race([this.manager.validateToken(token, 'Bearer'), timeout]);
    } catch (err) {
      if (err instanceof StrataError) throw err;
      throw refusal((err as Error).message ?? String(err), this.settings.issuer);
    } finally {
      clearTimeout(timer);
    }
  }

  private principalOf(token: Token): Principal {
    const claims = token.content as Record<string, unknown>;
    const realmRoles = rolesIn(claims.realm_access);
    const clientRoles = rolesIn((claims.resource_access as Record<string, unknown> | undefined)?.[this.settings.audience]);
    const tenant = claims[this.settings.tenantClaim];
    const names = this.settings.idClaims ?? { uid: 'uid', gid: 'gid', gids: 'gids' };
    const uid = idClaim(claims, names.uid);
    const gid = idClaim(claims, names.gid);
    const more = claims[names.gids];
    if (more !== undefined && (!Array.isArray(more) || more.length > MAX_GIDS)) throw unauthenticated(`token claim '${names.gids}' is not a list of at most ${MAX_GIDS} gids`);
    const listed = ((more as unknown[] | undefined) ?? []).map((_, i) => idClaim(more as unknown[], i, names.gids));
    const gids = [...new Set([gid, ...listed].filter((g): g is number => g !== undefined))];
    return Object.freeze({
      subject: String(claims.sub),
      tenant: typeof tenant === 'string' ? tenant : '',
      ...(uid === undefined ? {} : { uid }),
      ...(gids.length === 0 ? {} : { gids: Object.freeze(gids) }),
      roles: Object.freeze([...new Set([...realmRoles, ...clientRoles])]),
      clientId: typeof claims.azp === 'string' ? claims.azp : '',
      expiresAtMs: Number(claims.exp) * 1000,
      anonymous: false,
    });
  }
}

async function fetchJwks(url: string): Promise<{ keys: unknown[] }> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(JWKS_TIMEOUT_MS), redirect: 'error' });
  } catch (err) {
    throw new StrataError('Unavailable', `cannot fetch the realm's keys from ${url}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`);
  }
  if (!response.ok) throw new StrataError('Unavailable', `cannot fetch the realm's keys from ${url}: ${response.status} ${response.statusText}`);
  const text = await response.text();
  let body: { keys?: unknown };
  try {
    body = JSON.parse(text);
  } catch {
    throw new StrataError('Unavailable', `the realm's keys at ${url} are not JSON`);
  }
  if (!Array.isArray(body?.keys)) throw new StrataError('Unavailable', `the realm's keys at ${url} are not a JWKS (no keys array)`);
  // Only RSA signing keys: jwk-to-pem throws on others, and keycloak-connect verifies RSA only.
  return { keys: body.keys.filter((key) => (key as { kty?: unknown; use?: unknown })?.kty === 'RSA' && (key as { use?: unknown }).use !== 'enc') };
}

/** Supplementary groups a token may list (Linux's NGROUPS_MAX is 65536; realms list a few). */
const MAX_GIDS = 1024;

/**
 * A numeric id claim (Keycloak maps user attributes to strings: "1000" is taken too); absent =
 * undefined. Anything else refuses the token: a realm mapper gone wrong must not make a user someone else.
 */
function idClaim(claims: Record<string, unknown> | unknown[], key: string | number, label = String(key)): number | undefined {
  const value = (claims as Record<string, unknown>)[key];
  if (value === undefined || value === null) return undefined;
  const id = typeof value === 'string' && /^\d{1,10}$/.test(value) ? Number(value) : value;
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 0xfffffffe) throw unauthenticated(`token claim '${label}' is not a uid/gid (a whole number 0..4294967294)`);
  return id;
}

function rolesIn(access: unknown): string[] {
  const roles = (access as { roles?: unknown } | undefined)?.roles;
  return Array.isArray(roles) ? roles.filter((r): r is string => typeof r === 'string') : [];
}

/** keycloak-connect's reasons, in a few words; a realm that cannot be reached is Unavailable, not the caller's fault. */
function refusal(message: string, issuer: string): StrataError {
  // fetchJwks's Unavailable comes back wrapped by keycloak-connect ('failed to load public key ... Reason: ...').
  if (/realm's keys/.test(message)) return new StrataError('Unavailable', message.replace(/^.*Reason: /, ''));
  if (/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|Error fetching JWK/i.test(message)) {
    return new StrataError('Unavailable', `cannot fetch the keys of realm ${issuer}: ${message.replace(/^.*Reason: /, '')}`);
  }
  const reasons: [RegExp, string][] = [
    [/expired/, 'token expired'],
    [/wrong ISS/, 'token from another issuer'],
    [/wrong audience/, 'token for another audience'],
    [/wrong type/, 'not an access token (typ is not Bearer)'],
    [/signature/, 'bad token signature'],
    [/stale/, 'token issued before the realm\'s not-before'],
    [/not signed/, 'token not signed'],
    [/public key/, 'token signed by an unknown key'],
  ];
  return unauthenticated(reasons.find(([pattern]) => pattern.test(message))?.[1] ?? 'token refused');
}
