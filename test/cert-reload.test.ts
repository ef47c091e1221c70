// Certificate reload without a restart (common/tls-reload.ts), on real processes: a TLS cluster
// whose node certificates and CA are replaced by another CA's and reloaded with SIGHUP serves the
// new certificate on every port (gRPC, session, byte path), a client trusting only the new CA
// reads what was stored before and writes, the reloaded nodes dial each other with the new files,
// and a bad replacement is refused with one log line while the current certificate keeps serving.
// With --tls-watch the same happens when the files change on disk, without a signal.
import { randomBytes, X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Strata } from '../client/index.js';
import { initDevCerts, type DevCertFiles } from '../common/dev-certs.js';
import { NOT_SIGNED_BY_CA } from '../common/tls.js';
import { RoleProcess, startCluster, type TestCluster } from './harness/cluster.js';
import { tempDir, type TempDir } from './harness/ports.js';
import { waitFor } from './harness/wait.js';

const CHUNK = 128 * 1024; // random 128 KiB chunks are stored as files and move on the byte paths
const RELOADED = 'TLS: certificates reloaded';
const REFUSED = 'TLS: reload refused, still serving the previous certificates';

/** A role's JSON log lines (pino). */
function logLines(role: RoleProcess): { msg: string; serial?: string; address?: string; session?: string; dataAddress?: string }[] {
  return readFileSync(role.logFile, 'utf8').split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line));
}

/** The certificate a TLS port presents to a new connection, and whether `ca` verifies it. */
function servedCertificate(address: string, ca: string): Promise<{ serial: string; authorized: boolean }> {
  const at = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: address.slice(0, at), port: Number(address.slice(at + 1)), ca: readFileSync(ca), ALPNProtocols: ['h2'], rejectUnauthorized: false });
    socket.once('secureConnect', () => {
      resolve({ serial: socket.getPeerCertificate().serialNumber, authorized: socket.authorized });
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

const serialOf = (certFile: string) => new X509Certificate(readFileSync(certFile)).serialNumber;

/** Replaces a file the way certificate renewers do: a new file renamed over the old. */
function replaceFile(target: string, source: string | Buffer): void {
  writeFileSync(`${target}.new`, typeof source === 'string' ? readFileSync(source) : source);
  renameSync(`${target}.new`, target);
}

describe('certificate reload on SIGHUP (coordinator, 3 data nodes, RF 3; every port TLS)', () => {
  let cluster: TestCluster;
  let renewed: TempDir;
  let next: DevCertFiles;
  let oldCa: string;
  const stored = new Map<string, Buffer>();
  const clients: Strata[] = [];
  const roles = () => [...cluster.coordinators, ...cluster.datanodes];
  const certFile = (role: RoleProcess) => path.join(cluster.tls!.dir, `${role.name}.crt`);
  const keyFile = (role: RoleProcess) => path.join(cluster.tls!.dir, `${role.name}.key`);
  /** Every TLS port of a role, as its start-up log line names them. */
  const portsOf = (role: RoleProcess) => {
    const started = logLines(role).findLast((line) => line.msg === 'coordinator serving' || line.msg === 'data node started')!;
    return [role.address, started.session ?? started.dataAddress!];
  };
  const clientWith = (ca: string) => {
    const client = Strata.connect({ coordinators: cluster.coordinatorList, failoverTimeoutMs: 10_000, tls: { ca } });
    clients.push(client);
    return client;
  };
  /** SIGHUP to `role`, then the one line it logs in answer. */
  async function hangUp(role: RoleProcess, expected: string): Promise<{ msg: string; serial?: string }> {
    const before = logLines(role).length;
    role.process.kill('SIGHUP');
    const answers = await waitFor(`${role.name}'s answer to SIGHUP`, async () => {
      const lines = logLines(role).slice(before).filter((line) => line.msg.startsWith('TLS: '));
      return lines.length > 0 && lines;
    });
    expect(answers, role.name).toHaveLength(1);
    expect(answers[0].msg, role.name).toContain(expected);
    return answers[0];
  }

  beforeAll(async () => {
    cluster = await startCluster({ tls: true, datanodes: 3, replication: 3, logLevel: 'info' });
    const client = cluster.client();
    await client.mkdir('/renew', { parents: true });
    for (let i = 0; i < 3; i++) {
      const data = randomBytes(Math.round(2.5 * CHUNK));
      await client.writeFile(`/renew/before-${i}`, data, { chunkSize: CHUNK });
      stored.set(`/renew/before-${i}`, data);
    }
    renewed = await tempDir('renewed-certs');
    // Another CA and certificates for the same names: a CA rotation, the hardest renewal.
    next = await initDevCerts(renewed.path, { nodes: [...roles().map((role) => role.name), 'dn4'], clients: ['client'] });
    oldCa = path.join(renewed.path, 'old-ca.crt');
    copyFileSync(cluster.tls!.ca, oldCa);
  }, 120_000);
  afterAll(async () => {
    for (const client of clients) client.close();
    await cluster?.stop();
    await renewed?.cleanup();
  });

  test('after new files and SIGHUP every port serves the new certificate; a client trusting only the new CA reads old data and writes; the old CA is refused', async () => {
    for (const role of roles()) {
      replaceFile(certFile(role), next.certs[role.name].cert);
      replaceFile(keyFile(role), next.certs[role.name].key);
    }
    // The CA and its key too: `strata certs init DIR` (and the harness's next data node) sign with it.
    replaceFile(cluster.tls!.ca, next.ca);
    replaceFile(path.join(cluster.tls!.dir, 'ca.key'), path.join(renewed.path, 'ca.key'));
    for (const role of roles()) {
      const answer = await hangUp(role, RELOADED);
      expect(answer.serial, role.name).toBe(serialOf(next.certs[role.name].cert));
    }
    for (const role of roles()) {
      for (const address of portsOf(role)) {
        expect(await servedCertificate(address, next.ca), `${role.name} ${address}`).toEqual({ serial: serialOf(next.certs[role.name].cert), authorized: true });
      }
    }
    for (const [file, data] of stored) {
      const local = path.join(renewed.path, path.basename(file));
      const get = await cluster.cli(['get', file, local], { env: { STRATA_TLS_CA: next.ca } });
      expect(get.stderr, file).toBe('');
      expect(get.code, file).toBe(0);
      expect(readFileSync(local).equals(data), file).toBe(true);
    }
    const client = clientWith(next.ca);
    for (const [file, data] of stored) expect((await client.readFile(file)).equals(data), file).toBe(true);
    const fresh = randomBytes(Math.round(2.5 * CHUNK));
    await client.writeFile('/renew/after', fresh, { chunkSize: CHUNK });
    stored.set('/renew/after', fresh);
    expect((await client.readFile('/renew/after')).equals(fresh)).toBe(true);
    const stale = await cluster.cli(['ls', '/renew'], { env: { STRATA_TLS_CA: oldCa } });
    expect(stale.code).toBe(8);
    expect(stale.stderr).toContain(NOT_SIGNED_BY_CA);
  }, 180_000);

  test('the reloaded nodes dial with the new files: a new data node joins the reloaded coordinator, data nodes heartbeat a restarted one', async () => {
    const client = clientWith(next.ca);
    // Heartbeats are node-only: the reloaded coordinator must verify dn4's certificate with the new CA.
    const dn4 = await cluster.addDatanode();
    expect(await servedCertificate(dn4.address, next.ca)).toMatchObject({ authorized: true });
    // A restarted coordinator knows only the new files: each data node's new connection to it
    // must verify it with the new CA and present the node's new certificate.
    const coordinator = cluster.coordinators[0];
    await coordinator.stop();
    const restartedAt = Date.now();
    coordinator.start();
    await waitFor('every data node heartbeating the restarted coordinator', async () => {
      const nodes = await client.nodes();
      return nodes.length === 4 && nodes.every((node) => node.state === 'live' && node.lastHeartbeatMs > restartedAt);
    }, 60_000);
    for (const [file, data] of stored) expect((await client.readFile(file)).equals(data), file).toBe(true);
  }, 180_000);

  test('a bad replacement (a key that is not the certificate\'s, a missing certificate) is refused with one line and the current certificate keeps serving', async () => {
    const dn1 = cluster.datanodes[0];
    const good = { cert: readFileSync(certFile(dn1)), key: readFileSync(keyFile(dn1)) };
    replaceFile(keyFile(dn1), next.certs.dn2.key);
    expect((await hangUp(dn1, REFUSED)).msg).toMatch(/--tls-key .*dn1\.key does not belong to --tls-cert .*dn1\.crt/);
    for (const address of portsOf(dn1)) expect(await servedCertificate(address, next.ca), address).toEqual({ serial: serialOf(next.certs.dn1.cert), authorized: true });

    const coordinator = cluster.coordinators[0];
    renameSync(certFile(coordinator), `${certFile(coordinator)}.away`);
    expect((await hangUp(coordinator, REFUSED)).msg).toMatch(/cannot read --tls-cert .*coordinator-1\.crt \(ENOENT\)/);
    for (const address of portsOf(coordinator)) expect(await servedCertificate(address, next.ca), address).toEqual({ serial: serialOf(next.certs['coordinator-1'].cert), authorized: true });

    // Still serving, with new connections, through both.
    const client = clientWith(next.ca);
    for (const [file, data] of stored) expect((await client.readFile(file)).equals(data), file).toBe(true);
    // Put right, the next SIGHUP takes the files again.
    renameSync(`${certFile(coordinator)}.away`, certFile(coordinator));
    replaceFile(keyFile(dn1), good.key);
    for (const role of [coordinator, dn1]) await hangUp(role, `${RELOADED} (the files are unchanged)`);
  }, 180_000);

  test('with --tls-watch a node takes renewed files when they change on disk, without a signal, and refuses a bad one the same way', async () => {
    const name = 'dn-watch';
    const first = (await initDevCerts(cluster.tls!.dir, { nodes: [name] })).certs[name];
    const watching = new RoleProcess(
      name,
      ['datanode', '--node-id', name, '--data-dir', path.join(renewed.path, name), '--listen', '127.0.0.1:0', '--coordinators', cluster.coordinatorList,
        '--heartbeat-interval-ms', '500', '--log-level', 'info', '--tls-ca', cluster.tls!.ca, '--tls-cert', first.cert, '--tls-key', first.key, '--tls-watch'],
      path.join(renewed.path, `${name}.log`),
      '127.0.0.1:0',
    );
    watching.start();
    try {
      await waitFor(`${name} started`, async () => logLines(watching).some((line) => line.msg === 'data node started'));
      const [grpcAddress, byteAddress] = (() => {
        const started = logLines(watching).find((line) => line.msg === 'data node started')! as { address?: string; dataAddress?: string };
        return [started.address!, started.dataAddress!];
      })();
      const servedSerial = async () => (await servedCertificate(grpcAddress, cluster.tls!.ca)).serial;
      const before = serialOf(first.cert);
      expect(await servedSerial()).toBe(before);
      // `strata certs init --force` rewrites the certificate and key in place.
      const renewedFiles = (await initDevCerts(cluster.tls!.dir, { nodes: [name], force: true })).certs[name];
      const after = serialOf(renewedFiles.cert);
      expect(after).not.toBe(before);
      const reloaded = await waitFor('the reload line', async () => logLines(watching).find((line) => line.msg.startsWith(RELOADED) && line.serial === after));
      expect(reloaded.msg).toContain('new connections use them');
      for (const address of [grpcAddress, byteAddress]) expect(await servedCertificate(address, cluster.tls!.ca), address).toEqual({ serial: after, authorized: true });
      // A key that is not the certificate's: refused, the renewed certificate keeps serving.
      const linesBefore = logLines(watching).length;
      replaceFile(renewedFiles.key, next.certs.dn2.key);
      const refused = await waitFor('the refusal line', async () => logLines(watching).slice(linesBefore).find((line) => line.msg.startsWith(REFUSED)));
      expect(refused.msg).toMatch(/dn-watch\.key does not belong to --tls-cert/);
      expect(await servedSerial()).toBe(after);
    } finally {
      await watching.stop();
    }
  }, 180_000);
});
