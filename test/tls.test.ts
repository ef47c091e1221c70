// TLS on every port (common/tls.ts), on real processes: a cluster whose coordinator, data nodes,
// session port and byte paths all serve TLS with a dev CA (`strata certs init`) works end to end
// (SDK, CLI, repair copies between data nodes); a client without the CA, a data node without a
// valid node certificate, and plain text on a TLS port are refused cleanly.
import { randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, statSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Strata } from '../client/index.js';
import { initDevCerts } from '../common/dev-certs.js';
import { CHANNEL_OPTIONS, callUnary, strataProto } from '../common/grpc.js';
import { NOT_SIGNED_BY_CA, TlsContext, type TlsFiles } from '../common/tls.js';
import { chunkFilePath } from '../datanode/chunk-store.js';
import { RoleProcess, runCli, startCluster, type TestCluster } from './harness/cluster.js';
import { tempDir, type TempDir } from './harness/ports.js';
import { waitFor } from './harness/wait.js';

const KiB = 1024;
const CHUNK = 128 * KiB; // random 128 KiB chunks encode past the inline limit: each copy is a file
/** The error line (a role may log before it). */
const lastLine = (text: string) => text.trim().split('\n').at(-1) ?? '';
const HEALING_FLAGS = ['--scan-interval-ms', '300', '--repair-concurrency', '4', '--leader-ttl-ms', '2000'];

describe('strata certs init', () => {
  let dir: TempDir;
  beforeAll(async () => {
    dir = await tempDir('certs');
  });
  afterAll(async () => {
    await dir?.cleanup();
  });

  test('a CA and node certificates with the SANs asked for, keys 0600; a second run keeps them', async () => {
    const first = await runCli(['certs', 'init', dir.path, '--node', 'coordinator,dn1', '--host', 'storage.example', '--host', '10.1.2.3']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const ca = new X509Certificate(readFileSync(path.join(dir.path, 'ca.crt')));
    expect(ca.ca).toBe(true);
    for (const name of ['coordinator', 'dn1', 'client']) {
      const cert = new X509Certificate(readFileSync(path.join(dir.path, `${name}.crt`)));
      expect(cert.checkIssued(ca) && cert.verify(ca.publicKey), name).toBe(true);
      expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
      expect(cert.subjectAltName).toContain('DNS:localhost');
      expect(cert.subjectAltName).toContain('DNS:storage.example');
      expect(cert.subjectAltName).toContain('IP Address:10.1.2.3');
      expect(cert.subject).toContain(name === 'client' ? 'OU=strata-client' : 'OU=strata-node');
    }
    for (const key of readdirSync(dir.path).filter((f) => f.endsWith('.key'))) expect(statSync(path.join(dir.path, key)).mode & 0o777, key).toBe(0o600);
    const caBefore = readFileSync(path.join(dir.path, 'ca.crt'));
    const second = await runCli(['certs', 'init', dir.path, '--node', 'coordinator,dn2']);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/coordinator .*\(kept\)/);
    expect(readFileSync(path.join(dir.path, 'ca.crt')).equals(caBefore)).toBe(true);
    expect(new X509Certificate(readFileSync(path.join(dir.path, 'dn2.crt'))).checkIssued(ca)).toBe(true);
  });

  test('a node with incomplete or wrong TLS settings stops at start-up with one line naming the fix (exit 2)', async () => {
    const meta = path.join(dir.path, 'meta-never');
    const missingKey = await runCli(['coordinator', '--listen', '127.0.0.1:0', '--meta', meta, '--tls-ca', path.join(dir.path, 'ca.crt'), '--tls-cert', path.join(dir.path, 'dn1.crt')]);
    expect(missingKey.code).toBe(2);
    expect(lastLine(missingKey.stderr)).toMatch(/^strata: TLS: --tls-key is required/);
    const missingFile = await runCli(['coordinator', '--listen', '127.0.0.1:0', '--meta', meta, '--tls-ca', path.join(dir.path, 'nope.crt'), '--tls-cert', path.join(dir.path, 'dn1.crt'), '--tls-key', path.join(dir.path, 'dn1.key')]);
    expect(missingFile.code).toBe(2);
    expect(lastLine(missingFile.stderr)).toMatch(/^strata: TLS: cannot read --tls-ca .*nope\.crt \(ENOENT\)/);
    const clientCert = await runCli(['coordinator', '--listen', '127.0.0.1:0', '--meta', meta, '--tls-ca', path.join(dir.path, 'ca.crt'), '--tls-cert', path.join(dir.path, 'client.crt'), '--tls-key', path.join(dir.path, 'client.key')]);
    expect(clientCert.code).toBe(2);
    expect(lastLine(clientCert.stderr)).toMatch(/^strata: TLS: .* is not a node certificate/);
    expect(existsSync(meta)).toBe(false);
  });
});

describe('a TLS cluster (coordinator, 4 data nodes, RF 3; every port TLS)', () => {
  let cluster: TestCluster;
  let client: Strata;
  /** Another CA's certificates: what a rogue data node has. */
  let other: TempDir;
  let otherCerts: Awaited<ReturnType<typeof initDevCerts>>;
  const files = new Map<string, Buffer>();
  const grpcClients: grpc.Client[] = [];

  const tlsClient = (files: TlsFiles) => TlsContext.forClient(files)!.channelCredentials();
  const coordinatorWith = (credentials: grpc.ChannelCredentials) => {
    const c = new strataProto.Coordinator(cluster.coordinators[0].address, credentials, CHANNEL_OPTIONS);
    grpcClients.push(c);
    return c;
  };
  const dataNodeWith = (address: string, credentials: grpc.ChannelCredentials) => {
    const c = new strataProto.DataNode(address, credentials, CHANNEL_OPTIONS);
    grpcClients.push(c);
    return c;
  };
  const nodeIndex = (nodeId: string) => Number(nodeId.slice(2)) - 1;

  beforeAll(async () => {
    cluster = await startCluster({ tls: true, datanodes: 4, replication: 3, deadAfterMs: 2000, coordinatorArgs: HEALING_FLAGS });
    client = cluster.client();
    other = await tempDir('other-ca');
    otherCerts = await initDevCerts(other.path, { nodes: ['rogue'] });
  }, 120_000);
  afterAll(async () => {
    for (const c of grpcClients) c.close();
    await cluster?.stop();
    await other?.cleanup();
  });

  test('the SDK writes and reads back over TLS: metadata on the TLS session port, bytes on the TLS byte paths', async () => {
    await client.mkdir('/tls', { parents: true });
    for (let i = 0; i < 4; i++) {
      const data = randomBytes(Math.round(2.5 * CHUNK));
      await client.writeFile(`/tls/f${i}`, data, { chunkSize: CHUNK });
      files.set(`/tls/f${i}`, data);
    }
    for (const [file, data] of files) expect((await client.readFile(file)).equals(data), file).toBe(true);
    expect(client.sessionTransports).toEqual(['tcp']);
  });

  test('the CLI puts and cats with only the CA (STRATA_TLS_CA), no client certificate', async () => {
    const local = path.join(cluster.dir.path, 'cli-input.txt');
    const text = 'over TLS\n'.repeat(50_000);
    writeFileSync(local, text);
    const put = await cluster.cli(['put', local, '/tls/cli.txt']);
    expect(put.stderr).toBe('');
    expect(put.code).toBe(0);
    const cat = await cluster.cli(['cat', '/tls/cli.txt']);
    expect(cat.code).toBe(0);
    expect(cat.stdout).toBe(text);
  });

  test('a client without the CA is refused: the SDK, and the CLI with one line and exit 8', async () => {
    const plain = await import('../client/index.js').then(({ Strata }) => Strata.connect({ coordinators: cluster.coordinatorList, failoverTimeoutMs: 1000, callTimeoutMs: 2000, tls: false }));
    try {
      await expect(plain.stat('/tls')).rejects.toMatchObject({ kind: 'Unavailable' });
    } finally {
      plain.close();
    }
    const noCa = await cluster.cli(['ls', '/tls'], { env: { STRATA_TLS_CA: '' } });
    expect(noCa.code).toBe(8);
    expect(noCa.stderr.trim().split('\n')).toHaveLength(1);
    expect(noCa.stderr).toMatch(/--tls-ca/);
    const wrongCa = await cluster.cli(['ls', '/tls'], { env: { STRATA_TLS_CA: otherCerts.ca } });
    expect(wrongCa.code).toBe(8);
    expect(wrongCa.stderr.trim().split('\n')).toHaveLength(1);
    expect(wrongCa.stderr).toContain(NOT_SIGNED_BY_CA);
  });

  test('plain text on a TLS port fails cleanly: gRPC, the session port and a byte port close it, and keep serving', async () => {
    const insecure = coordinatorWith(grpc.credentials.createInsecure());
    await expect(callUnary(insecure, 'StatFs', {}, 3000, 'coordinator')).rejects.toMatchObject({ kind: 'Unavailable' });
    const secure = coordinatorWith(tlsClient({ ca: cluster.tls!.ca }));
    const { address: sessionAddress } = await callUnary<{ address: string }>(secure, 'SessionEndpoint', {}, 3000);
    const dn = (await client.nodes())[0];
    const { dataAddress } = await callUnary<{ dataAddress: string }>(dataNodeWith(dn.address, tlsClient({ ca: cluster.tls!.ca })), 'NodeStatus', {}, 3000);
    for (const address of [sessionAddress, dataAddress]) {
      const at = address.lastIndexOf(':');
      const socket = net.connect({ host: address.slice(0, at), port: Number(address.slice(at + 1)) });
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.on('error', () => undefined);
      socket.write(Buffer.concat([Buffer.from([0, 0, 0, 16, 1]), randomBytes(64)]));
      await closed; // bounded by the test's timeout: the server hangs up on the failed handshake
    }
    expect((await client.stat('/tls')).isDirectory()).toBe(true);
  });

  test('a data node without a valid node certificate is refused by the coordinator (it never joins)', async () => {
    const bundle = path.join(other.path, 'bundle.crt');
    writeFileSync(bundle, Buffer.concat([readFileSync(cluster.tls!.ca), readFileSync(otherCerts.ca)]));
    const rogueFiles = otherCerts.certs.rogue;
    // It trusts the cluster's CA (so it can talk to the coordinator) but its own certificate is another CA's.
    const rogue = new RoleProcess(
      'rogue',
      ['datanode', '--node-id', 'rogue', '--data-dir', path.join(other.path, 'rogue-data'), '--listen', '127.0.0.1:0', '--coordinators', cluster.coordinatorList,
        '--heartbeat-interval-ms', '200', '--log-level', 'warn', '--tls-ca', bundle, '--tls-cert', rogueFiles.cert, '--tls-key', rogueFiles.key],
      path.join(other.path, 'rogue.log'),
      '127.0.0.1:0',
    );
    rogue.start();
    try {
      await waitFor('the rogue refused', async () => readFileSync(rogue.logFile, 'utf8').includes('Heartbeat: only cluster nodes may call this'), 30_000);
      expect((await client.nodes()).map((n) => n.nodeId)).not.toContain('rogue');
    } finally {
      await rogue.stop();
    }
    // The same calls from a client with only the CA, or with a client (not node) certificate.
    const clientCert = { ca: cluster.tls!.ca, ...cluster.tls!.client };
    for (const credentials of [tlsClient({ ca: cluster.tls!.ca }), tlsClient(clientCert)]) {
      const c = coordinatorWith(credentials);
      await expect(callUnary(c, 'Heartbeat', { nodeId: 'dn9', address: '127.0.0.1:1' }, 3000)).rejects.toMatchObject({ kind: 'PermissionDenied' });
    }
    expect((await client.nodes()).map((n) => n.nodeId)).not.toContain('dn9');
  });

  test('peers refuse node-only calls without a node certificate; with one they answer', async () => {
    const [chunk] = await client.locate('/tls/f0');
    const holder = (await client.nodes()).find((n) => n.nodeId === chunk.nodes[0])!;
    const bundle = path.join(other.path, 'bundle.crt');
    const refused = [
      tlsClient({ ca: cluster.tls!.ca }),
      tlsClient({ ca: cluster.tls!.ca, ...cluster.tls!.client }),
      tlsClient({ ca: bundle, cert: otherCerts.certs.rogue.cert, key: otherCerts.certs.rogue.key }),
    ];
    for (const credentials of refused) {
      const dn = dataNodeWith(holder.address, credentials);
      await expect(callUnary(dn, 'DeleteChunk', { chunkId: chunk.chunkId }, 3000)).rejects.toMatchObject({ kind: 'PermissionDenied' });
      await expect(callUnary(dn, 'ReplicateChunk', { chunkId: chunk.chunkId, length: 1, crc32c: 0, sources: [] }, 3000)).rejects.toMatchObject({ kind: 'PermissionDenied' });
    }
    expect(existsSync(chunkFilePath(cluster.dataDir(nodeIndex(holder.nodeId)), chunk.chunkId))).toBe(true);
    const nodeCert = (await initDevCerts(cluster.tls!.dir, { nodes: ['dn1'] })).certs.dn1;
    const asNode = dataNodeWith(holder.address, tlsClient({ ca: cluster.tls!.ca, cert: nodeCert.cert, key: nodeCert.key }));
    await expect(callUnary(asNode, 'StatChunk', { chunkId: chunk.chunkId }, 3000)).resolves.toMatchObject({ chunkId: chunk.chunkId });
  });

  test('repair copies chunks between data nodes over mutual TLS after a node dies', async () => {
    const victim = (await client.locate('/tls/f0'))[0].nodes[0];
    cluster.datanodes[nodeIndex(victim)].kill9();
    await waitFor(`${victim} dead`, async () => (await client.nodes()).find((n) => n.nodeId === victim)?.state === 'dead');
    const live = (await client.nodes()).filter((n) => n.state === 'live').map((n) => n.nodeId);
    await waitFor('every chunk back on 3 live nodes', async () => {
      for (const file of files.keys()) {
        for (const chunk of await client.locate(file)) {
          const holders = chunk.nodes.filter((n) => live.includes(n) && existsSync(chunkFilePath(cluster.dataDir(nodeIndex(n)), chunk.chunkId)));
          if (holders.length < 3) return false;
        }
      }
      return true;
    }, 120_000);
    for (const [file, data] of files) expect((await client.readFile(file)).equals(data), file).toBe(true);
  }, 180_000);
});
