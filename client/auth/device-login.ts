// `strata login --device`: the OAuth 2.0 device authorization grant (RFC 8628), for a user at a
// terminal with no browser (an SSH session, a pod): the realm hands out a user code, the user
// approves it in a browser anywhere, and the CLI polls the token endpoint meanwhile.
// keycloak-connect has no device grant, so openid-client (panva's certified OIDC client, the one
// widely kept for Node) runs the protocol: the authorization request, then polling at the
// realm's interval, slowing down on slow_down, ending on expired_token or access_denied. The
// tokens it gets are then checked by keycloak-connect like every other grant's (signature,
// issuer, type), and kept and refreshed the same way (realm-login.ts, token-sources.ts).
import * as oidc from 'openid-client';
import { StrataError, invalid } from '../../common/errors.js';
import { realmGrants, refused, stored, type StoredLogin } from './realm-login.js';

export interface DeviceLoginRequest {
  issuer: string;
  clientId: string;
  /** A confidential client's secret; none = a public client (the usual for a CLI). */
  clientSecret?: string;
}

/** What the user must see to approve the login. */
export interface DevicePrompt {
  verificationUri: string;
  /** The same page with the code filled in, when the realm offers one. */
  verificationUriComplete?: string;
  userCode: string;
  expiresInS: number;
}

/** Never poll longer than this, whatever expires_in the realm sends. */
const MAX_DEVICE_WAIT_S = 30 * 60;
/** Polling goes on this long past expires_in, to hear the realm's own expired_token. */
const EXPIRY_GRACE_S = 15;

export async function deviceLogin(request: DeviceLoginRequest, show: (prompt: DevicePrompt) => void): Promise<StoredLogin> {
  const { manager, discovery } = await realmGrants(request);
  if (typeof discovery.device_authorization_endpoint !== 'string') {
    throw invalid(`${request.issuer} offers no device login (its discovery document names no device_authorization_endpoint); enable "OAuth 2.0 Device Authorization Grant" on the client`);
  }
  const { clientSecret } = request;
  const config = new oidc.Configuration(discovery as oidc.ServerMetadata, request.clientId, clientSecret, clientSecret ? oidc.ClientSecretPost(clientSecret) : oidc.None());
  // An http:// realm is the user's explicit choice (as for the other grants); https is the norm.
  if (discovery.issuer.startsWith('http:')) oidc.allowInsecureRequests(config);

  let authorization: Awaited<ReturnType<typeof oidc.initiateDeviceAuthorization>>;
  try {
    authorization = await oidc.initiateDeviceAuthorization(config, {});
  } catch (err) {
    throw deviceRefused(request.issuer, err);
  }
  show({
    verificationUri: authorization.verification_uri,
    verificationUriComplete: authorization.verification_uri_complete,
    userCode: authorization.user_code,
    expiresInS: authorization.expires_in,
  });

  const boundS = Math.min(authorization.expires_in, MAX_DEVICE_WAIT_S) + EXPIRY_GRACE_S;
  const signal = AbortSignal.timeout(boundS * 1000);
  let tokens: Awaited<ReturnType<typeof oidc.pollDeviceAuthorizationGrant>>;
  try {
    tokens = await oidc.pollDeviceAuthorizationGrant(config, authorization, undefined, { signal });
  } catch (err) {
    if (signal.aborted) throw new StrataError('Timeout', `device login not approved within ${boundS} s; run strata login --device again`);
    throw deviceRefused(request.issuer, err);
  }
  try {
    return stored(request, await manager.createGrant(JSON.stringify(tokens)));
  } catch (err) {
    throw refused(request.issuer, err, 'the realm sent tokens that do not validate');
  }
}

/** The realm's OAuth error (RFC 8628 section 3.5), in words and with the way on. */
function deviceRefused(issuer: string, err: unknown): StrataError {
  const code = err instanceof oidc.ResponseBodyError ? err.error : undefined;
  switch (code) {
    case 'expired_token':
      return new StrataError('Unauthenticated', `device login: the code expired before it was approved (expired_token); run strata login --device again`);
    case 'access_denied':
      return new StrataError('Unauthenticated', `device login: the request was denied at ${issuer} (access_denied)`);
    case 'invalid_client':
    case 'unauthorized_client':
      return new StrataError('Unauthenticated', `device login refused by ${issuer} (${code}): check the client id, and that the client allows the device grant`);
    case undefined:
      return refused(issuer, err);
    default:
      return new StrataError('Unauthenticated', `device login refused by ${issuer} (${code})`);
  }
}
