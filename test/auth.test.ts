// Authentication against a Keycloak-shaped realm on loopback (harness/oidc-realm.ts): a real
// coordinator process with --auth oidc, real data node, the SDK (session stream and unary RPCs)
// and the CLI. Every refused token leaves the namespace unchanged.
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CHANNEL_OPTIONS, bearerMetadata, strataProto } from '../common/grpc.js';
import { Strata, StrataError } from '../client/index.js';
import { expectOneLineError } from './harness/cli-errors.js';
import { runCli, startCluster, type TestCluster } from './harness/cluster.js';
import { fuseUnavailableReason, sh, startMount } from './harness/mount.js';
import { OidcRealm } from './harness/oidc-realm.js';
import { freePort, tempDir, type TempDir } from './harness/ports.js';

describe('authentication (OIDC, Keycloak realm)', () => {
  let realm: OidcRealm;
  let cluster: TestCluster;
  let scratch: TempDir;
  const clients: Strata[] = [];
  const connect = (options: { token?: string; tokenProvider?: () => string; session?: boolean }) => {
    const client = Strata.connect({ coordinators: cluster.coordinatorList, failoverTimeoutMs: 3000, ...options });
    clients.push(client);
    return client;
  };
  const good = () => realm.token('alice', { tenant: 'acme', realm_access: { roles: ['strata-user'] } });
  /** The namespace as a valid caller sees it. */
  const exists = (path: string) => connect({ token: good() }).exists(path);

  beforeAll(async () => {
    realm = await OidcRealm.start({
      clients: [
        { clientId: 'strata-ci', secret: 'ci-secret', claims: { tenant: 'acme' } },
        { clientId: 'strata-cli' },
      ],
      users: [{ username: 'bob', password: 'bob-password', claims: { tenant: 'acme' } }],
    });
    cluster = await startCluster({ datanodes: 1, replication: 1, coordinatorArgs: realm.coordinatorArgs(), tokenProvider: good });
    scratch = await tempDir('auth');
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await cluster?.stop();
    await realm?.stop();
    await scratch?.cleanup();
  });

  test('a valid token works on the session stream and on unary calls', async () => {
    const session = connect({ token: good() });
    await session.mkdir('/alice');
    await session.writeFile('/alice/a.txt', 'hello');
    expect((await session.readFile('/alice/a.txt')).toString()).toBe('hello');
    expect(session.sessionTransports).toEqual(['tcp']);
    const unary = connect({ token: good(), session: false });
    expect((await unary.stat('/alice/a.txt')).size).toBe(5);
    await unary.mkdir('/alice/unary');
    expect((await unary.statfs()).liveNodes).toBe(1);
  });

  const now = () => Math.floor(Date.now() / 1000);
  const refusals: [string, () => string | undefined, RegExp][] = [
    ['missing', () => undefined, /no token|not authenticated/],
    ['expired', () => realm.token('alice', { iat: now() - 600, exp: now() - 60 }), /expired/],
    ['not yet valid', () => realm.token('alice', { nbf: now() + 3600 }), /not valid yet/],
    ['from another issuer', () => realm.token('alice', { iss: 'http://127.0.0.1:1/realms/other' }), /another issuer/],
    ['for another audience', () => realm.token('alice', { aud: 'someone-else' }), /another audience/],
    ['with a bad signature', () => good().replace(/\.[^.]+$/, '.' + Buffer.alloc(256, 7).toString('base64url')), /signature/],
    ['unsigned (alg none)', () => {
      const [, payload] = good().split('.');
      return `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${payload}.`;
    }, /'none'/],
    ['signed by an unknown key', () => realm.token('alice', {}, { kid: 'no-such-key' }), /unknown key/],
    ['garbage', () => 'not-a-jwt', /malformed/],
  ];

  for (const [what, token, reason] of refusals) {
    test(`a token ${what} is refused (session, unary, CLI) and changes nothing`, async () => {
      const raw = token();
      const dir = `/refused-${what.replace(/\W+/g, '-')}`;
      for (const session of [true, false]) {
        const client = connect(raw === undefined ? { session } : { token: raw, session });
        const err = await client.mkdir(dir).then(() => undefined, (e: unknown) => e);
        expect(err, `session=${session}`).toBeInstanceOf(StrataError);
        expect((err as StrataError).kind).toBe('Unauthenticated');
        expect((err as StrataError).message).toMatch(reason);
        expect((err as StrataError).message).toMatch(/run strata login or set STRATA_TOKEN/);
        await expect(client.stat('/')).rejects.toMatchObject({ kind: 'Unauthenticated' });
      }
      const env: Record<string, string> = { XDG_CONFIG_HOME: path.join(scratch.path, 'no-login') };
      if (raw !== undefined) env.STRATA_TOKEN = raw;
      const cli = await cluster.cli(['mkdir', dir], { env });
      expectOneLineError(cli, 6, /not authenticated: .*run strata login or set STRATA_TOKEN/, raw ? [raw] : []);
      expect(await exists(dir)).toBe(false);
    });
  }

  test('on the wire: UNAUTHENTICATED for a bare unary call and for each request of a session that never authenticated', async () => {
    const client = new strataProto.Coordinator(cluster.coordinatorList, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    try {
      const unary = (metadata: grpc.Metadata) =>
        new Promise<grpc.ServiceError | null>((resolve) => (client as any).Mkdir({ path: '/wire' }, metadata, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null) => resolve(err)));
      const bare = await unary(new grpc.Metadata());
      expect(bare?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(bare?.metadata.get('strata-error')[0]).toBe('Unauthenticated');
      const basic = new grpc.Metadata();
      basic.set('authorization', 'Basic YWxpY2U6c2VjcmV0');
      expect((await unary(basic))?.code).toBe(grpc.status.UNAUTHENTICATED);
      // The gRPC Session call: requests without an authenticate first each fail, and the stream lives on.
      const call = (client as any).Session() as grpc.ClientDuplexStream<any, any>;
      const replies: any[] = [];
      call.on('data', (reply: any) => replies.push(reply));
      call.on('error', () => undefined);
      call.write({ id: 1, mkdir: { path: '/wire' } });
      call.write({ id: 2, stat: { path: '/' } });
      call.write({ id: 3, authenticate: { token: good() } });
      call.write({ id: 4, stat: { path: '/' } });
      const giveUpAt = Date.now() + 10_000;
      while (replies.filter((r) => Number(r.id) > 0).length < 4 && Date.now() < giveUpAt) await new Promise((r) => setTimeout(r, 20));
      const byId = new Map(replies.filter((r) => Number(r.id) > 0).map((r) => [Number(r.id), r]));
      expect(byId.get(1)?.error).toMatchObject({ code: grpc.status.UNAUTHENTICATED, kind: 'Unauthenticated' });
      expect(byId.get(2)?.error).toMatchObject({ code: grpc.status.UNAUTHENTICATED });
      expect(byId.get(3)?.authenticate).toMatchObject({ subject: 'alice', tenant: 'acme' });
      expect(byId.get(4)?.error ?? null).toBeNull();
      // The caller's `/` is its tenant's root (test/tenants.test.ts).
      expect(Number(byId.get(4)?.stat?.attr?.ino)).toBe((await connect({ token: good() }).stat('/')).ino);
      call.end();
      // A unary call with a good token works (the same client, another metadata).
      expect(await unary(bearerMetadata(good()))).toBeNull();
      expect(await exists('/wire')).toBe(true);
    } finally {
      client.close();
    }
  });

  test('a rotated realm key (new kid) is fetched and works; the old key is gone', async () => {
    const before = good();
    await connect({ token: before }).stat('/');
    realm.rotate();
    const fetches = realm.jwksFetches;
    const client = connect({ token: good() });
    await client.mkdir('/rotated');
    expect(realm.jwksFetches).toBe(fetches + 1);
    // A token of the retired key, never seen before: refused.
    const stale = connect({ token: realm.sign({ ...JSON.parse(Buffer.from(before.split('.')[1], 'base64url').toString()), jti: 'x' }, { kid: JSON.parse(Buffer.from(before.split('.')[0], 'base64url').toString()).kid }) });
    await expect(stale.mkdir('/stale-key')).rejects.toMatchObject({ kind: 'Unauthenticated' });
    expect(await exists('/stale-key')).toBe(false);
  });

  test('a long session re-authenticates on the open stream before its token expires', async () => {
    let minted = 0;
    // Tokens that live 4 s: the session sends a fresh one about 1.3 s before each runs out.
    const provider = () => {
      minted++;
      return realm.token('alice', { tenant: 'acme', exp: now() + 4 });
    };
    const client = connect({ tokenProvider: provider });
    await client.mkdir('/long');
    // A leased read: the client now listens for lease pushes, which keeps its session open.
    const { ino } = await client.inodes.lookup((await client.stat('/')).ino, 'long');
    const mintedBeforeQuiet = minted;
    // Nothing is asked for 6 s (no session opens): only the open session's refresh asks for tokens.
    await new Promise((r) => setTimeout(r, 6000));
    expect(minted).toBeGreaterThan(mintedBeforeQuiet);
    // The first token ran out 2 s ago: the session works on the fresh one.
    expect((await client.inodes.getattr(ino)).ino).toBe(ino);
    expect((await client.stat('/long')).ino).toBe(ino);
  });

  test('a token file and STRATA_TOKEN work for the CLI; the token is never printed', async () => {
    const token = good();
    const file = path.join(scratch.path, 'token');
    writeFileSync(file, token + '\n');
    chmodSync(file, 0o600);
    const env = { XDG_CONFIG_HOME: path.join(scratch.path, 'no-login') };
    const made = await cluster.cli(['mkdir', '/from-file', '--token-file', file], { env });
    expect(made.code, made.stderr).toBe(0);
    const listed = await cluster.cli(['ls', '/'], { env: { ...env, STRATA_TOKEN: token } });
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/from-file/);
    expect(listed.stdout + listed.stderr).not.toContain(token);
  });

  test.skipIf(!!fuseUnavailableReason())('the mount takes a token file; without a token it does not come up, saying why', async () => {
    const file = path.join(scratch.path, 'mount-token');
    writeFileSync(file, good(), { mode: 0o600 });
    await connect({ token: good() }).mkdir('/mounted');
    const dir = path.join(scratch.path, 'mnt');
    const mount = await startMount(cluster, dir, ['--token-file', file]);
    try {
      const wrote = await sh(`echo through-the-mount > ${dir}/mounted/m.txt && cat ${dir}/mounted/m.txt`);
      expect(wrote.stdout.trim(), wrote.stderr).toBe('through-the-mount');
      expect((await connect({ token: good() }).readFile('/mounted/m.txt')).toString()).toBe('through-the-mount\n');
    } finally {
      await mount.stop();
    }
    const refused = await startMount(cluster, path.join(scratch.path, 'mnt-anon'), ['--token-file', path.join(scratch.path, 'no-such-token')]).then(
      () => new Error('mounted without a token'),
      (err: Error) => err,
    );
    expect(refused.message).toMatch(/did not come up/);
    expect(refused.message).toMatch(/not authenticated: cannot read token file/);
  });

  test('strata login (client credentials, then password) stores a 0600 token that CLI commands use', async () => {
    const home = path.join(scratch.path, 'home');
    mkdirSync(home, { recursive: true });
    const env = { XDG_CONFIG_HOME: home, STRATA_CLIENT_SECRET: 'ci-secret' };
    const login = await runCli(['login', '--issuer', realm.issuer, '--client-id', 'strata-ci'], { env });
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout + login.stderr).not.toContain('ci-secret');
    const stored = path.join(home, 'strata', 'token.json');
    expect(statSync(stored).mode & 0o777).toBe(0o600);
    const made = await cluster.cli(['mkdir', '/logged-in'], { env: { XDG_CONFIG_HOME: home } });
    expect(made.code, made.stderr).toBe(0);
    expect(await exists('/logged-in')).toBe(true);

    const wrong = await runCli(['login', '--issuer', realm.issuer, '--client-id', 'strata-cli', '--username', 'bob'], { env: { XDG_CONFIG_HOME: home, STRATA_PASSWORD: 'nope' } });
    expectOneLineError(wrong, 6, /login refused/, ['nope']);
    const user = await runCli(['login', '--issuer', realm.issuer, '--client-id', 'strata-cli', '--username', 'bob'], { env: { XDG_CONFIG_HOME: home, STRATA_PASSWORD: 'bob-password' } });
    expect(user.code, user.stderr).toBe(0);
    const listed = await cluster.cli(['ls', '/'], { env: { XDG_CONFIG_HOME: home } });
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/logged-in/);
  });

  test('a stored login near its expiry is refreshed (refresh grant) and written back before a command uses it', async () => {
    const home = path.join(scratch.path, 'home-refresh');
    mkdirSync(home, { recursive: true });
    const stored = path.join(home, 'strata', 'token.json');
    // Tokens of 20 s: inside the CLI's 30 s refresh margin from the start.
    realm.setAccessTokenLife(20);
    try {
      const login = await runCli(['login', '--issuer', realm.issuer, '--client-id', 'strata-cli', '--username', 'bob'], { env: { XDG_CONFIG_HOME: home, STRATA_PASSWORD: 'bob-password' } });
      expect(login.code, login.stderr).toBe(0);
      const before = JSON.parse(readFileSync(stored, 'utf8'));
      const requests = realm.tokenRequests;
      const made = await cluster.cli(['mkdir', '/refreshed'], { env: { XDG_CONFIG_HOME: home } });
      expect(made.code, made.stderr).toBe(0);
      expect(realm.tokenRequests).toBeGreaterThan(requests);
      const after = JSON.parse(readFileSync(stored, 'utf8'));
      expect(after.accessToken).not.toBe(before.accessToken);
      expect(after.subject).toBe('bob');
      expect(statSync(stored).mode & 0o777).toBe(0o600);
      expect(await exists('/refreshed')).toBe(true);
    } finally {
      realm.setAccessTokenLife(300);
    }
  });
});

describe('authentication start-up rules', () => {
  test('a coordinator beyond loopback without --auth refuses to start, naming the flags', async () => {
    const dir = await tempDir('auth-start');
    try {
      const result = await runCli(['coordinator', '--listen', '0.0.0.0:0', '--meta', path.join(dir.path, 'meta')], { timeoutMs: 30_000 });
      expectOneLineError(result, 2, /--auth oidc .*--auth off/);
      const noIssuer = await runCli(['coordinator', '--auth', 'oidc', '--meta', path.join(dir.path, 'meta')], { timeoutMs: 30_000 });
      expectOneLineError(noIssuer, 2, /oidcIssuer is required/);
    } finally {
      await dir.cleanup();
    }
  });

  test('cluster up --auth oidc without a token says so at once and starts nothing', async () => {
    const dir = await tempDir('auth-up');
    try {
      const dataDir = path.join(dir.path, 'data');
      const result = await runCli(
        ['cluster', 'up', '--data-dir', dataDir, '--port', String(await freePort()), '--auth', 'oidc', '--oidc-issuer', 'https://keycloak.example/realms/strata', '--oidc-audience', 'strata'],
        { timeoutMs: 30_000, env: { STRATA_TOKEN: '', XDG_CONFIG_HOME: path.join(dir.path, 'config') } },
      );
      expectOneLineError(result, 6, /give it a token first \(STRATA_TOKEN, or strata login/);
      expect(existsSync(dataDir)).toBe(false);
    } finally {
      await dir.cleanup();
    }
  });

  test('with --auth off a client that sends a token works as before', async () => {
    const cluster = await startCluster({ datanodes: 1, replication: 1, coordinatorArgs: ['--auth', 'off'] });
    try {
      const client = Strata.connect({ coordinators: cluster.coordinatorList, token: 'anything' });
      await client.writeFile('/open.txt', 'x');
      expect((await client.stat('/open.txt')).size).toBe(1);
      await client.close();
      const plain = cluster.client();
      expect((await plain.readFile('/open.txt')).toString()).toBe('x');
    } finally {
      await cluster.stop();
    }
  });
});
