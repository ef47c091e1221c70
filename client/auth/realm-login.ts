// `strata login`'s grants against a Keycloak realm, through keycloak-connect's GrantManager (the
// project's chosen package): client credentials (a service account: client id and secret) or the
// password grant (a user, through a public or confidential client), and refreshing with the
// refresh token. The realm's discovery document is read first, so a wrong --issuer fails with a
// clear line instead of a 404 from a guessed path.
import Config from 'keycloak-connect/middleware/auth-utils/config.js';
import GrantManager, { type Grant } from 'keycloak-connect/middleware/auth-utils/grant-manager.js';
import Token from 'keycloak-connect/middleware/auth-utils/token.js';
import { StrataError, invalid } from '../../common/errors.js';
import { splitIssuer } from '../../common/oidc-issuer.js';

export interface LoginRequest {
  issuer: string;
  clientId: string;
  /** A confidential client's secret: with no username, the client-credentials grant. */
  clientSecret?: string;
  username?: string;
  password?: string;
}

/** What `strata login` keeps (in a 0600 file: login-store.ts). */
export interface StoredLogin {
  issuer: string;
  clientId: string;
  clientSecret?: string;
  username?: string;
  accessToken: string;
  refreshToken?: string;
  /** The access token's expiry, ms since the epoch. */
  expiresAtMs: number;
  subject: string;
  tenant: string;
}

const DISCOVERY_TIMEOUT_MS = 10_000;

export async function login(request: LoginRequest): Promise<StoredLogin> {
  const manager = await grantManager(request);
  let grant: Grant;
  try {
    grant = request.username !== undefined
      ? await manager.obtainDirectly(request.username, request.password ?? '')
      : await manager.obtainFromClientCredentials();
  } catch (err) {
    throw refused(request.issuer, err);
  }
  return stored(request, grant);
}

/** A fresh access token for a stored login: its refresh token, else (a service account) its secret again. */
export async function refresh(current: StoredLogin): Promise<StoredLogin> {
  const request: LoginRequest = { issuer: current.issuer, clientId: current.clientId, clientSecret: current.clientSecret, username: current.username };
  const manager = await grantManager(request);
  const refreshToken = current.refreshToken ? new Token(current.refreshToken) : undefined;
  if (refreshToken && !refreshToken.isExpired()) {
    try {
      // ensureFreshness refreshes only a grant that says it expired: this one does (it is about to).
      return stored(request, await manager.ensureFreshness({ isExpired: () => true, refresh_token: refreshToken }));
    } catch (err) {
      if (request.username !== undefined || !request.clientSecret) throw refused(current.issuer, err, 'the stored login could not be refreshed; run strata login again');
    }
  }
  if (request.username === undefined && request.clientSecret) return login(request);
  throw new StrataError('Unauthenticated', 'not authenticated: the stored login expired; run strata login again');
}

/** keycloak-connect's grant handling for the realm (its discovery document checked first, and returned). */
export async function grantManager(request: LoginRequest): Promise<GrantManager> {
  return (await realmGrants(request)).manager;
}

export async function realmGrants(request: LoginRequest): Promise<{ manager: GrantManager; discovery: RealmDiscovery }> {
  const { authServerUrl, realm } = splitIssuer(request.issuer);
  const discovery = await checkDiscovery(request.issuer);
  const secret = request.clientSecret;
  const manager = new GrantManager(new Config({ 'auth-server-url': authServerUrl, realm, resource: request.clientId, ...(secret ? { credentials: { secret } } : { 'public-client': true }) }));
  return { manager, discovery };
}

/** The parts of a realm's discovery document strata reads. */
export interface RealmDiscovery {
  issuer: string;
  token_endpoint: string;
  device_authorization_endpoint?: string;
  [field: string]: unknown;
}

/** The realm says who it is and where tokens come from; keycloak-connect uses Keycloak's token path, so they must agree. */
async function checkDiscovery(issuer: string): Promise<RealmDiscovery> {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  let document: { issuer?: unknown; token_endpoint?: unknown };
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(DISCOVERY_TIMEOUT_MS) });
    if (!response.ok) throw invalid(`${url}: ${response.status} ${response.statusText}: is --issuer a realm URL (https://HOST/realms/NAME)?`);
    document = (await response.json()) as typeof document;
  } catch (err) {
    if (err instanceof StrataError) throw err;
    throw new StrataError('Unavailable', `cannot reach the realm at ${url}: ${(err as Error).cause ?? (err as Error).message}`);
  }
  if (document.issuer !== issuer.replace(/\/$/, '')) throw invalid(`${url} names issuer '${document.issuer}', not ${issuer}`);
  if (document.token_endpoint !== `${document.issuer}/protocol/openid-connect/token`) {
    throw invalid(`${issuer}: token endpoint ${document.token_endpoint} is not Keycloak's; only Keycloak realms are supported`);
  }
  return document as RealmDiscovery;
}

export function stored(request: LoginRequest, grant: Grant): StoredLogin {
  const access = grant.access_token;
  if (!access?.token) throw new StrataError('Unauthenticated', `login refused by ${request.issuer}: no access token in the reply`);
  const claims = access.content;
  return {
    issuer: request.issuer,
    clientId: request.clientId,
    ...(request.clientSecret ? { clientSecret: request.clientSecret } : {}),
    ...(request.username !== undefined ? { username: request.username } : {}),
    accessToken: access.token,
    refreshToken: grant.refresh_token?.token,
    expiresAtMs: Number(claims.exp) * 1000,
    subject: String(claims.sub ?? ''),
    tenant: typeof claims.tenant === 'string' ? claims.tenant : '',
  };
}

/** keycloak-connect rejects with 'STATUS:Text' for an HTTP failure, or a validation reason. */
export function refused(issuer: string, err: unknown, hint = 'check the client id, secret, user name and password'): StrataError {
  const message = (err as Error)?.message ?? String(err);
  if (/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET/.test(message)) return new StrataError('Unavailable', `cannot reach the realm ${issuer}: ${message}`);
  return new StrataError('Unauthenticated', `login refused by ${issuer}: ${message.replace(/^(\d{3}):/, '$1 ')} (${hint})`);
}
