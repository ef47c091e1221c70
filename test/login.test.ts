// `strata login` grants beyond client credentials, on real processes against a Keycloak-shaped
// realm on loopback (harness/oidc-realm.ts): the device grant (RFC 8628: the CLI prints a URL
// and code, the test approves or denies it as the user would, slow_down is honoured, an expired
// code ends cleanly), the password grant from a file and from a prompt that does not echo, and
// a stored login refreshed through the SDK. No secret ever reaches the output.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Strata, storedLoginTokens } from '../client/index.js';
import { expectOneLineError } from './harness/cli-errors.js';
import { STRATA_MAIN, runCli, startCluster, type CliResult, type TestCluster } from './harness/cluster.js';
import { OidcRealm } from './harness/oidc-realm.js';
import { tempDir, type TempDir } from './harness/ports.js';
import { waitFor } from './harness/wait.js';

/** A running `strata` whose output the test reads as it comes (to act on a printed code or prompt). */
function startCli(command: string, args: string[], env: Record<string, string>) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  child.stdin.on('error', () => undefined);
  const done = new Promise<CliResult>((resolve) => child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr })));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  void done.then(() => clearTimeout(timer));
  return { child, done, output: () => stdout + stderr };
}

describe('strata login: device and password grants, refresh', () => {
  let realm: OidcRealm;
  let cluster: TestCluster;
  let scratch: TempDir;
  let homes = 0;
  const home = () => {
    const dir = path.join(scratch.path, `home-${++homes}`);
    mkdirSync(dir, { recursive: true });
    return dir;
  };
  const storedFile = (dir: string) => path.join(dir, 'strata', 'token.json');

  beforeAll(async () => {
    realm = await OidcRealm.start({
      clients: [{ clientId: 'strata-cli' }],
      users: [
        { username: 'carol', password: 'carol-password', claims: { tenant: 'acme' } },
        { username: 'bob', password: 'bob-password', claims: { tenant: 'acme' } },
      ],
    });
    cluster = await startCluster({ datanodes: 1, replication: 1, coordinatorArgs: realm.coordinatorArgs(), tokenProvider: () => realm.token('admin', { tenant: 'acme' }) });
    scratch = await tempDir('login');
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    await realm?.stop();
    await scratch?.cleanup();
  });

  /** `strata login --device` until it prints its user code; then `act` on that code as the user. */
  async function deviceLogin(dir: string, act: (code: string) => void): Promise<CliResult> {
    const cli = startCli(process.execPath, [STRATA_MAIN, 'login', '--device', '--issuer', realm.issuer, '--client-id', 'strata-cli'], { XDG_CONFIG_HOME: dir });
    const code = await waitFor('the user code', async () => /enter the code (\S+)/.exec(cli.output())?.[1], 30_000);
    expect(cli.output()).toContain(`${realm.issuer}/device`);
    act(code);
    return cli.done;
  }

  test('device grant: URL and code printed, slow_down honoured, the approved login stored 0600 and used', async () => {
    const dir = home();
    let device: ReturnType<OidcRealm['device']> | undefined;
    const result = await deviceLogin(dir, (code) => {
      device = realm.device(code);
      device.slowDown(1); // the realm asks the CLI to poll 5 s slower once
      device.approve('carol');
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/logged in as carol \(tenant acme\)/);
    expect(device!.polls).toBe(2); // slowed down once, then the token
    expect(device!.early).toBe(0); // never sooner than the interval the realm asked for
    expect(statSync(storedFile(dir)).mode & 0o777).toBe(0o600);
    const stored = JSON.parse(readFileSync(storedFile(dir), 'utf8'));
    expect(stored.subject).toBe('carol');
    expect(typeof stored.refreshToken).toBe('string');
    expect(result.stdout + result.stderr).not.toContain(stored.accessToken);
    const made = await cluster.cli(['mkdir', '/by-device'], { env: { XDG_CONFIG_HOME: dir } });
    expect(made.code, made.stderr).toBe(0);
    const listed = await cluster.cli(['ls', '/'], { env: { XDG_CONFIG_HOME: dir } });
    expect(listed.stdout).toMatch(/by-device/);
  }, 90_000);

  test('device grant: a denied code and an expired code each end with one line, exit 6, nothing stored', async () => {
    const denied = home();
    const refused = await deviceLogin(denied, (code) => realm.device(code).deny());
    expect(refused.code).toBe(6);
    expect(refused.stderr.trimEnd().split('\n').at(-1)).toMatch(/^strata: device login: the request was denied .*access_denied/);
    expect(() => statSync(storedFile(denied))).toThrow();

    realm.setDeviceCodes({ lifeS: 2 });
    try {
      const expired = home();
      const result = await deviceLogin(expired, () => undefined); // nobody approves
      expect(result.code).toBe(6);
      expect(result.stderr.trimEnd().split('\n').at(-1)).toMatch(/^strata: device login: the code expired before it was approved \(expired_token\); run strata login --device again$/);
      expect(() => statSync(storedFile(expired))).toThrow();
    } finally {
      realm.setDeviceCodes({ lifeS: 600 });
    }
  }, 90_000);

  test('--device with --username is a usage error', async () => {
    const result = await runCli(['login', '--device', '--username', 'bob', '--issuer', realm.issuer, '--client-id', 'strata-cli'], { env: { XDG_CONFIG_HOME: home() } });
    expectOneLineError(result, 2, /--device and --username are two different grants/);
  });

  test('password grant from --password-file; a wrong one refused; no password on stdin and no terminal: one line naming the sources', async () => {
    const dir = home();
    const file = path.join(scratch.path, 'bob.password');
    writeFileSync(file, 'bob-password\n', { mode: 0o600 });
    const ok = await runCli(['login', '--issuer', realm.issuer, '--client-id', 'strata-cli', '--username', 'bob', '--password-file', file], { env: { XDG_CONFIG_HOME: dir } });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/logged in as bob/);
    expect(ok.stdout + ok.stderr).not.toContain('bob-password');

    writeFileSync(file, 'not-his-password\n');
    const wrong = await runCli(['login', '--issuer', realm.issuer, '--client-id', 'strata-cli', '--username', 'bob', '--password-file', file], { env: { XDG_CONFIG_HOME: dir } });
    expectOneLineError(wrong, 6, /login refused/, ['not-his-password']);

    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'STRATA_PASSWORD')) as Record<string, string>;
    const none = await runCli(['login', '--issuer', realm.issuer, '--client-id', 'strata-cli', '--username', 'bob'], { env: { ...env, XDG_CONFIG_HOME: dir } });
    expectOneLineError(none, 2, /no terminal to ask for the password: .*--password-file FILE, --password-stdin or STRATA_PASSWORD/);
  });

  test('password grant from a prompt at a terminal: the typed password is not echoed', async () => {
    const dir = home();
    // script(1) runs the CLI on a pseudo-terminal, as a user's shell would.
    const command = `${process.execPath} ${STRATA_MAIN} login --issuer ${realm.issuer} --client-id strata-cli --username bob`;
    const cli = startCli('script', ['-qec', command, '/dev/null'], { XDG_CONFIG_HOME: dir });
    await waitFor('the password prompt', async () => cli.output().includes('Password for bob: '), 30_000);
    cli.child.stdin.write('bob-password\r');
    const result = await cli.done;
    expect(result.stdout).toMatch(/logged in as bob/);
    expect(result.stdout + result.stderr).not.toContain('bob-password');
    expect(JSON.parse(readFileSync(storedFile(dir), 'utf8')).subject).toBe('bob');
  }, 60_000);

  test('the SDK refreshes a stored login before it expires (refresh grant) and writes it back', async () => {
    const dir = home();
    realm.setAccessTokenLife(20); // inside the 30 s refresh margin from the start
    let sdk: Strata | undefined;
    try {
      const login = await runCli(['login', '--issuer', realm.issuer, '--client-id', 'strata-cli', '--username', 'bob'], { env: { XDG_CONFIG_HOME: dir, STRATA_PASSWORD: 'bob-password' } });
      expect(login.code, login.stderr).toBe(0);
      const before = JSON.parse(readFileSync(storedFile(dir), 'utf8'));
      const requests = realm.tokenRequests;
      sdk = Strata.connect({ coordinators: cluster.coordinatorList, tokenProvider: storedLoginTokens({ XDG_CONFIG_HOME: dir }) });
      await sdk.mkdir('/by-sdk');
      expect(realm.tokenRequests).toBeGreaterThan(requests);
      const after = JSON.parse(readFileSync(storedFile(dir), 'utf8'));
      expect(after.accessToken).not.toBe(before.accessToken);
      expect(after.refreshToken).toBeTruthy();
      expect(after.subject).toBe('bob');
      expect(statSync(storedFile(dir)).mode & 0o777).toBe(0o600);
      expect(await sdk.exists('/by-sdk')).toBe(true);
    } finally {
      sdk?.close();
      realm.setAccessTokenLife(300);
    }
  });
});
