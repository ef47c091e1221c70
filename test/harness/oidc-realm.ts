// A Keycloak-shaped OIDC realm on loopback, for tests (no Keycloak server is installable here):
// the discovery document, the realm's JWKS and a token endpoint (client_credentials, password and
// refresh_token grants) at Keycloak's paths, signing RS256 with keys made here by node:crypto.
// Tests also mint tokens directly, good or deliberately bad (expired, wrong issuer, alg none...).
import { createHash, generateKeyPairSync, randomUUID, sign, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  jwk: Record<string, unknown>;
}

export interface RealmClient {
  clientId: string;
  /** Confidential clients have one (client_credentials); public ones none (password grant). */
  secret?: string;
  /** Claims of the service account behind client_credentials. */
  claims?: Record<string, unknown>;
}

export interface RealmUser {
  username: string;
  password: string;
  claims?: Record<string, unknown>;
}

export interface RealmOptions {
  realm?: string;
  /** The audience access tokens name (the coordinators' --oidc-audience). */
  audience?: string;
  clients?: RealmClient[];
  users?: RealmUser[];
  accessTokenLifeS?: number;
}

const b64url = (value: Buffer | string) => Buffer.from(value).toString('base64url');

function newKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = randomUUID();
  return { kid, privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' } };
}

export class OidcRealm {
  readonly audience: string;
  private keys: SigningKey[] = [newKey()];
  private server!: http.Server;
  private base = '';
  /** How many times the JWKS was fetched (the coordinator's key cache shows here). */
  jwksFetches = 0;
  tokenRequests = 0;

  private constructor(private readonly options: Required<Omit<RealmOptions, 'audience'>> & { audience: string }) {
    this.audience = options.audience;
  }

  static async start(options: RealmOptions = {}): Promise<OidcRealm> {
    const realm = new OidcRealm({ realm: 'strata', audience: 'strata', clients: [], users: [], accessTokenLifeS: 300, ...options });
    realm.server = http.createServer((req, res) => realm.handle(req, res));
    await new Promise<void>((resolve) => realm.server.listen(0, '127.0.0.1', resolve));
    realm.base = `http://127.0.0.1:${(realm.server.address() as AddressInfo).port}`;
    return realm;
  }

  get issuer(): string {
    return `${this.base}/realms/${this.options.realm}`;
  }

  /** The coordinator flags that trust this realm. */
  coordinatorArgs(): string[] {
    return ['--auth', 'oidc', '--oidc-issuer', this.issuer, '--oidc-audience', this.audience, '--oidc-jwks-refetch-ms', '0'];
  }

  /** How long access tokens issued from now on live (a short life makes clients refresh). */
  setAccessTokenLife(seconds: number): void {
    this.options.accessTokenLifeS = seconds;
  }

  /** A new signing key with a new kid; the old one leaves the JWKS (Keycloak's rotation, at once). */
  rotate(): void {
    this.keys = [newKey()];
  }

  /** A signed access token for `sub`; `claims` override the defaults, `header` the JWT header. */
  token(sub: string, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): string {
    const now = Math.floor(Date.now() / 1000);
    return this.sign(
      { iss: this.issuer, aud: this.audience, sub, typ: 'Bearer', azp: 'strata-test', iat: now, exp: now + this.options.accessTokenLifeS, jti: randomUUID(), ...claims },
      header,
    );
  }

  /** Signs any claims with the current key (or `header.kid`/`alg` as given, to forge). */
  sign(claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
    const key = this.keys[0];
    const input = `${b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: key.kid, ...header }))}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${b64url(sign('sha256', Buffer.from(input), key.privateKey))}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const realmPath = `/realms/${this.options.realm}`;
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === `${realmPath}/.well-known/openid-configuration`) {
      return reply(200, {
        issuer: this.issuer,
        token_endpoint: `${this.issuer}/protocol/openid-connect/token`,
        jwks_uri: `${this.issuer}/protocol/openid-connect/certs`,
        grant_types_supported: ['client_credentials', 'password', 'refresh_token'],
        id_token_signing_alg_values_supported: ['RS256'],
      });
    }
    if (req.method === 'GET' && req.url === `${realmPath}/protocol/openid-connect/certs`) {
      this.jwksFetches++;
      return reply(200, { keys: this.keys.map((k) => k.jwk) });
    }
    if (req.method === 'POST' && req.url === `${realmPath}/protocol/openid-connect/token`) {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        this.tokenRequests++;
        const grant = this.grant(new URLSearchParams(body), req.headers.authorization);
        if ('error' in grant) reply(grant.status as number, { error: grant.error });
        else reply(200, grant);
      });
      return;
    }
    reply(404, { error: 'not found' });
  }

  private grant(params: URLSearchParams, authorization: string | undefined): Record<string, unknown> | { error: string; status: number } {
    let clientId = params.get('client_id') ?? '';
    let secret = params.get('client_secret') ?? undefined;
    const basic = /^Basic (.+)$/.exec(authorization ?? '');
    if (basic) [clientId, secret] = Buffer.from(basic[1], 'base64').toString().split(':');
    const client = this.options.clients.find((c) => c.clientId === clientId);
    if (!client || (client.secret !== undefined && client.secret !== secret)) return { error: 'invalid_client', status: 401 };
    let sub: string;
    let claims: Record<string, unknown>;
    switch (params.get('grant_type')) {
      case 'client_credentials': {
        if (client.secret === undefined) return { error: 'unauthorized_client', status: 400 };
        sub = `service-account-${client.clientId}`;
        claims = client.claims ?? {};
        break;
      }
      case 'password': {
        const user = this.options.users.find((u) => u.username === params.get('username') && u.password === params.get('password'));
        if (!user) return { error: 'invalid_grant', status: 401 };
        sub = user.username;
        claims = user.claims ?? {};
        break;
      }
      case 'refresh_token': {
        const refresh = this.decode(params.get('refresh_token') ?? '');
        if (!refresh || refresh.typ !== 'Refresh' || Number(refresh.exp) * 1000 < Date.now() || refresh.azp !== client.clientId) return { error: 'invalid_grant', status: 400 };
        sub = String(refresh.sub);
        claims = (refresh.claims as Record<string, unknown>) ?? {};
        break;
      }
      default:
        return { error: 'unsupported_grant_type', status: 400 };
    }
    const now = Math.floor(Date.now() / 1000);
    const access = this.token(sub, { azp: client.clientId, ...claims });
    const refresh = this.sign({ iss: this.issuer, aud: this.issuer, sub, typ: 'Refresh', azp: client.clientId, iat: now, exp: now + 3600, claims, jti: randomUUID() });
    return { access_token: access, expires_in: this.options.accessTokenLifeS, refresh_token: refresh, refresh_expires_in: 3600, token_type: 'Bearer' };
  }

  /** A token this realm signed (any of its keys, unverified beyond that), or undefined. */
  private decode(token: string): Record<string, unknown> | undefined {
    try {
      const payload = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());
      return token === this.sign(payload, JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString())) ? payload : undefined;
    } catch {
      return undefined;
    }
  }
}

/** A stable short fingerprint of a token, for assertions that must not print one. */
export const fingerprint = (token: string) => createHash('sha256').update(token).digest('hex').slice(0, 12);
