// Coordinators to etcd over TLS (--etcd-ca, --etcd-cert, --etcd-key), against a real etcd that
// serves TLS only and requires client certificates (--cert-file --key-file --trusted-ca-file
// --client-cert-auth, on loopback), certificates from `strata certs init`. A coordinator with
// the right files works end to end; bad flags are one line at start-up (exit 2); a coordinator
// whose TLS does not match etcd's (no CA, no client certificate, another CA, TLS to a plain etcd)
// never starts, with one line naming the flags to give.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { devCertPaths, initDevCerts } from '../common/dev-certs.js';
import { runCli, startCluster, type TestCluster } from './harness/cluster.js';
import { startEtcd, type EtcdMember } from './harness/etcd.js';
import { tempDir, type TempDir } from './harness/ports.js';

// The CLI's one error line. The logger writes asynchronously, so a log line may come after it:
// pick the error line by its prefix and require exactly one.
const errorLine = (text: string) => {
  const lines = text.split('\n').filter((line) => line.startsWith('strata: '));
  expect(lines).toHaveLength(1);
  return lines[0];
};

describe('etcd over TLS with client certificates', () => {
  let dir: TempDir;
  let etcd: EtcdMember;
  let cluster: TestCluster | undefined;
  let ca: string;
  let coordinatorCert: { cert: string; key: string };
  let hostPort: string;

  beforeAll(async () => {
    dir = await tempDir('etcd-tls');
    const certs = await initDevCerts(dir.path, { nodes: ['etcd', 'coordinator-1', 'other'], clients: ['client'] });
    ca = devCertPaths(dir.path, 'ca').cert;
    coordinatorCert = certs.certs['coordinator-1'];
    etcd = await startEtcd({ tls: { ca, ...certs.certs.etcd } });
    hostPort = etcd.url.replace(/^etcd:\/\//, '');
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
    await etcd?.stop();
    await dir?.cleanup();
  });

  const etcdFlags = () => ['--etcd-ca', ca, '--etcd-cert', coordinatorCert.cert, '--etcd-key', coordinatorCert.key];

  test('a coordinator with --etcd-ca/--etcd-cert/--etcd-key keeps its namespace in the TLS etcd; files read back', async () => {
    cluster = await startCluster({ metaUrl: etcd.url, datanodes: 1, replication: 1, coordinatorArgs: etcdFlags() });
    const client = cluster.client();
    const data = randomBytes(200_000);
    await client.mkdir('/secure');
    await client.writeFile('/secure/f', data);
    expect((await client.readFile('/secure/f')).equals(data)).toBe(true);
    // The keys are in that etcd, readable only with a client certificate.
    const direct = new Etcd3({
      hosts: `https://${hostPort}`,
      credentials: { rootCertificate: readFileSync(ca), certChain: readFileSync(coordinatorCert.cert), privateKey: readFileSync(coordinatorCert.key) },
    });
    try {
      expect((await direct.getAll().prefix('').keys()).length).toBeGreaterThan(0);
    } finally {
      direct.close();
    }
    // The CLI's view through the coordinator, and the same after a coordinator restart.
    await cluster.coordinators[0].stop();
    cluster.coordinators[0].start();
    await cluster.waitForLiveNodes(1);
    const listed = await cluster.cli(['ls', '/secure']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/\bf\b/);
  }, 120_000);

  test('bad --etcd-* flags stop the coordinator at start-up with one line (exit 2)', async () => {
    const run = (args: string[], meta = etcd.url) => runCli(['coordinator', '--listen', '127.0.0.1:0', '--meta', meta, ...args], { timeoutMs: 60_000 });
    const cases: [string[], RegExp][] = [
      [['--etcd-cert', coordinatorCert.cert, '--etcd-key', coordinatorCert.key], /^strata: etcd TLS: --etcd-cert\/--etcd-key need --etcd-ca/],
      [['--etcd-ca', ca, '--etcd-cert', coordinatorCert.cert], /^strata: etcd TLS: --etcd-cert and --etcd-key go together$/],
      [['--etcd-ca', path.join(dir.path, 'nope.crt')], /^strata: TLS: cannot read --etcd-ca .*nope\.crt \(ENOENT\)/],
      [['--etcd-ca', coordinatorCert.cert], /^strata: etcd TLS: --etcd-ca .* is not a CA certificate$/],
      [['--etcd-ca', ca, '--etcd-cert', coordinatorCert.cert, '--etcd-key', devCertPaths(dir.path, 'other').key], /^strata: etcd TLS: --etcd-key .*other\.key does not belong to --etcd-cert/],
    ];
    for (const [args, pattern] of cases) {
      const result = await run(args);
      expect(result.code, result.stderr).toBe(2);
      expect(errorLine(result.stderr)).toMatch(pattern);
    }
    const meta = path.join(dir.path, 'meta-never');
    const notEtcd = await run(['--etcd-ca', ca], meta);
    expect(notEtcd.code).toBe(2);
    expect(errorLine(notEtcd.stderr)).toMatch(/^strata: --etcd-ca\/--etcd-cert\/--etcd-key apply to an etcd:\/\/ metadata URL/);
    expect(existsSync(meta)).toBe(false);
  }, 120_000);

  test('without --etcd-ca, without a client certificate, with another CA, or with --etcd-ca on a plain etcd, the coordinator never starts and one line names the flags to give', async () => {
    const run = (args: string[], meta = etcd.url) => runCli(['coordinator', '--listen', '127.0.0.1:0', '--meta', meta, ...args], { timeoutMs: 90_000 });
    const wrongCa = path.join(dir.path, 'wrong-ca');
    const other = await initDevCerts(wrongCa, { nodes: ['stranger'] });
    const at = `cannot reach etcd at ${hostPort.replace(/\./g, '\\.')}: `;
    const cases: [string[], RegExp][] = [
      [[], new RegExp(`^strata: ${at}it serves TLS and no --etcd-ca was given: start the coordinator with --etcd-ca FILE \\(the CA that signed etcd's certificate\\), plus --etcd-cert FILE --etcd-key FILE if etcd requires client certificates`)],
      [['--etcd-ca', ca], new RegExp(`^strata: ${at}it requires a client certificate: give --etcd-cert FILE --etcd-key FILE`)],
      [['--etcd-ca', other.ca, '--etcd-cert', coordinatorCert.cert, '--etcd-key', coordinatorCert.key], new RegExp(`^strata: ${at}its certificate is not signed by --etcd-ca .*wrong-ca/ca\\.crt`)],
      [['--etcd-ca', ca, '--etcd-cert', other.certs.stranger.cert, '--etcd-key', other.certs.stranger.key], new RegExp(`^strata: ${at}it refused --etcd-cert .*stranger\\.crt: give a client certificate signed by a CA in etcd's --trusted-ca-file`)],
    ];
    for (const [args, pattern] of cases) {
      const result = await run(args);
      expect(result.code, args.join(' ')).toBe(8); // Unavailable: it exits, it does not hang
      expect(errorLine(result.stderr)).toMatch(pattern);
    }
    // The other way round: TLS flags for an etcd that serves plain text.
    const plain = await startEtcd();
    try {
      const result = await run(['--etcd-ca', ca], plain.url);
      expect(result.code).toBe(8);
      expect(errorLine(result.stderr)).toMatch(/^strata: cannot reach etcd at 127\.0\.0\.1:\d+: it does not serve TLS: drop --etcd-ca\/--etcd-cert\/--etcd-key/);
    } finally {
      await plain.stop();
    }
  }, 300_000);
});
