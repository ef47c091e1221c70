// A Keycloak-shaped OIDC realm on loopback, for tests (no Keycloak server is installable here):
// the discovery document, the realm's JWKS, a token endpoint (client_credentials, password,
// refresh_token and device_code grants) and the device authorization endpoint (RFC 8628) at
// Keycloak's paths, signing RS256 with keys made here by node:crypto. A test plays the user of
// a device login: it approves or denies a user code the CLI printed.
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
  /** Device logins: how long a device code lives, and the polling interval the realm asks for. */
  deviceCodeLifeS?: number;
  deviceIntervalS?: number;
}

/** One device authorization (RFC 8628 section 3.2) and what the user did with it. */
interface DeviceAuthorization {
  deviceCode: string;
  userCode: string;
  clientId: string;
  expiresAtMs: number;
  state: 'pending' | 'approved' | 'denied';
  user?: RealmUser;
  /** Answer this many polls with slow_down first, as a loaded realm would. */
  slowDowns: number;
  /** The interval the client must keep now (RFC 8628: 5 s more after each slow_down). */
  intervalS: number;
  lastPollMs: number;
  polls: number;
  /** Polls that came sooner than the interval allowed (a client that ignores slow_down). */
  early: number;
}

/** Timers and the network may round an interval down this much. */
const POLL_TOLERANCE_MS = 100;

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
  private devices: DeviceAuthorization[] = [];

  private constructor(private readonly options: Required<Omit<RealmOptions, 'audience'>> & { audience: string }) {
    this.audience = options.audience;
  }

  static async start(options: RealmOptions = {}): Promise<OidcRealm> {
    const realm = new OidcRealm({ realm: 'strata', audience: 'strata', clients: [], users: [], accessTokenLifeS: 300, deviceCodeLifeS: 600, deviceIntervalS: 1, ...options });
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

  /** Device logins from now on: their codes' life and polling interval. */
  setDeviceCodes(options: { lifeS?: number; intervalS?: number }): void {
    if (options.lifeS !== undefined) this.options.deviceCodeLifeS = options.lifeS;
    if (options.intervalS !== undefined) this.options.deviceIntervalS = options.intervalS;
  }

  /** The device login with this user code (as the CLI printed it), for a test to act on. */
  device(userCode: string): { approve(username: string): void; deny(): void; slowDown(polls: number): void; readonly polls: number; readonly early: number } {
    const device = this.devices.find((d) => d.userCode === userCode);
    if (!device) throw new Error(`no device login with user code ${userCode}`);
    return {
      approve: (username) => {
        device.user = this.options.users.find((u) => u.username === username);
        if (!device.user) throw new Error(`no user ${username}`);
        device.state = 'approved';
      },
      deny: () => (device.state = 'denied'),
      slowDown: (polls) => (device.slowDowns = polls),
      get polls() {
        return device.polls;
      },
      get early() {
        return device.early;
      },
    };
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
        device_authorization_endpoint: `${this.issuer}/protocol/openid-connect/auth/device`,
        jwks_uri: `${this.issuer}/protocol/openid-connect/certs`,
        grant_types_supported: ['client_credentials', 'password', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
        id_token_signing_alg_values_supported: ['RS256'],
      });
    }
    if (req.method === 'GET' && req.url === `${realmPath}/protocol/openid-connect/certs`) {
      this.jwksFetches++;
      return reply(200, { keys: this.keys.map((k) => k.jwk) });
    }
    if (req.method === 'POST' && (req.url === `${realmPath}/protocol/openid-connect/token` || req.url === `${realmPath}/protocol/openid-connect/auth/device`)) {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        const params = new URLSearchParams(body);
        if (req.url!.endsWith('/auth/device')) {
          const device = this.authorizeDevice(params, req.headers.authorization);
          return 'error' in device ? reply(device.status as number, { error: device.error }) : reply(200, device);
        }
        this.tokenRequests++;
        const grant = this.grant(params, req.headers.authorization);
        if ('error' in grant) reply(grant.status as number, { error: grant.error });
        else reply(200, grant);
      });
      return;
    }
    reply(404, { error: 'not found' });
  }

  private client(params: URLSearchParams, authorization: string | undefined): RealmClient | undefined {
    let clientId = params.get('client_id') ?? '';
    let secret = params.get('client_secret') ?? undefined;
    const basic = /^Basic (.+)$/.exec(authorization ?? '');
    if (basic) [clientId, secret] = Buffer.from(basic[1], 'base64').toString().split(':').map(decodeURIComponent);
    const client = this.options.clients.find((c) => c.clientId === clientId);
    return !client || (client.secret !== undefined && client.secret !== secret) ? undefined : client;
  }

  /** RFC 8628 section 3.1-3.2: a device code for the client, a user code for its user. */
  private authorizeDevice(params: URLSearchParams, authorization: string | undefined): Record<string, unknown> | { error: string; status: number } {
    const client = this.client(params, authorization);
    if (!client) return { error: 'invalid_client', status: 401 };
    const userCode = `${randomUUID().slice(0, 4)}-${randomUUID().slice(0, 4)}`.toUpperCase();
    const device: DeviceAuthorization = {
      deviceCode: randomUUID(),
      userCode,
      clientId: client.clientId,
      expiresAtMs: Date.now() + this.options.deviceCodeLifeS * 1000,
      state: 'pending',
      slowDowns: 0,
      intervalS: this.options.deviceIntervalS,
      lastPollMs: Date.now(),
      polls: 0,
      early: 0,
    };
    this.devices.push(device);
    return {
      device_code: device.deviceCode,
      user_code: userCode,
      verification_uri: `${this.issuer}/device`,
      verification_uri_complete: `${this.issuer}/device?user_code=${userCode}`,
      expires_in: this.options.deviceCodeLifeS,
      interval: this.options.deviceIntervalS,
    };
  }

  private grant(params: URLSearchParams, authorization: string | undefined): Record<string, unknown> | { error: string; status: number } {
    const client = this.client(params, authorization);
    if (!client) return { error: 'invalid_client', status: 401 };
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
      case 'urn:ietf:params:oauth:grant-type:device_code': {
        const device = this.devices.find((d) => d.deviceCode === params.get('device_code') && d.clientId === client.clientId);
        if (!device) return { error: 'invalid_grant', status: 400 };
        device.polls++;
        const sinceMs = Date.now() - device.lastPollMs;
        device.lastPollMs = Date.now();
        if (Date.now() > device.expiresAtMs) return { error: 'expired_token', status: 400 };
        const early = sinceMs + POLL_TOLERANCE_MS < device.intervalS * 1000;
        if (early) device.early++;
        if (early || device.slowDowns > 0) {
          if (!early) device.slowDowns--;
          device.intervalS += 5;
          return { error: 'slow_down', status: 400 };
        }
        if (device.state === 'denied') return { error: 'access_denied', status: 400 };
        if (device.state === 'pending' || !device.user) return { error: 'authorization_pending', status: 400 };
        this.devices = this.devices.filter((d) => d !== device); // a device code is good once
        sub = device.user.username;
        claims = device.user.claims ?? {};
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
