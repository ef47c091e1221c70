// The verifier against a Keycloak-shaped realm on loopback (in this process: the HTTP realm is
// real, only no coordinator process is needed for these rules).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { OidcRealm } from '../../test/harness/oidc-realm.js';
import { OidcVerifier } from './oidc-verifier.js';

describe('OidcVerifier', () => {
  let realm: OidcRealm;
  const verifier = (jwksRefetchMs = 0) => new OidcVerifier({ issuer: realm.issuer, audience: realm.audience, tenantClaim: 'tenant', jwksRefetchMs });
  beforeAll(async () => {
    realm = await OidcRealm.start();
  });
  afterAll(async () => realm?.stop());

  test('a valid token gives its principal: subject, tenant, realm and client roles, client, expiry', async () => {
    const token = realm.token('alice', { tenant: 'acme', realm_access: { roles: ['user'] }, resource_access: { strata: { roles: ['admin'] }, other: { roles: ['x'] } } });
    const principal = await verifier().verify(token);
    expect(principal).toMatchObject({ subject: 'alice', tenant: 'acme', clientId: 'strata-test', anonymous: false });
    expect([...principal.roles].sort()).toEqual(['admin', 'user']);
    expect(principal.expiresAtMs).toBeGreaterThan(Date.now());
  });

  test('a token verified once is remembered: the keys are fetched once, not per call', async () => {
    const v = verifier();
    const token = realm.token('bob');
    const fetches = realm.jwksFetches;
    for (let i = 0; i < 20; i++) await v.verify(token);
    await v.verify(realm.token('carol'));
    expect(realm.jwksFetches).toBe(fetches + 1);
  });

  test('Keycloak shapes: an ID or refresh token (typ), a token without a subject, are refused', async () => {
    const v = verifier();
    await expect(v.verify(realm.token('alice', { typ: 'ID' }))).rejects.toMatchObject({ kind: 'Unauthenticated', message: /typ/ });
    await expect(v.verify(realm.token('alice', { sub: undefined }))).rejects.toMatchObject({ kind: 'Unauthenticated', message: /no subject/ });
    await expect(v.verify(realm.token('alice', {}, { alg: 'HS256' }))).rejects.toMatchObject({ kind: 'Unauthenticated', message: /'HS256'/ });
  });

  test('an unknown kid within the refetch interval is refused quietly, without asking the realm', async () => {
    const v = verifier(60_000);
    await v.verify(realm.token('alice'));
    const fetches = realm.jwksFetches;
    const log = vi.spyOn(console, 'error');
    for (let i = 0; i < 5; i++) await expect(v.verify(realm.token('alice', {}, { kid: `forged-${i}` }))).rejects.toMatchObject({ kind: 'Unauthenticated', message: /unknown key/ });
    expect(realm.jwksFetches).toBe(fetches);
    expect(log).not.toHaveBeenCalled();
    log.mockRestore();
  });

  test('a realm that cannot be reached is Unavailable, not the caller\'s fault', async () => {
    const gone = await OidcRealm.start();
    const token = gone.token('alice');
    const v = new OidcVerifier({ issuer: gone.issuer, audience: gone.audience, tenantClaim: 'tenant', jwksRefetchMs: 0 });
    await gone.stop();
    await expect(v.verify(token)).rejects.toMatchObject({ kind: 'Unavailable', message: /cannot fetch the realm's keys/ });
  });

  test('a realm answering its keys with an error page or no key set: Unavailable, and this process lives on', async () => {
    let mode: 'html' | 'nokeys' = 'html';
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(mode === 'html' ? '<html>proxy error</html>' : '{"nothing":1}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}/realms/strata`;
      const v = new OidcVerifier({ issuer, audience: realm.audience, tenantClaim: 'tenant', jwksRefetchMs: 0 });
      const token = realm.sign({ ...JSON.parse(Buffer.from(realm.token('alice').split('.')[1], 'base64url').toString()), iss: issuer });
      await expect(v.verify(token)).rejects.toMatchObject({ kind: 'Unavailable', message: /not JSON/ });
      mode = 'nokeys';
      await expect(v.verify(token)).rejects.toMatchObject({ kind: 'Unavailable', message: /not a JWKS/ });
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('an issuer that is not a Keycloak realm URL is a config error', () => {
    expect(() => new OidcVerifier({ issuer: 'https://idp.example/oauth2', audience: 'x', tenantClaim: 'tenant', jwksRefetchMs: 0 })).toThrow(/oidcIssuer: .*not a Keycloak realm URL/);
  });
});
