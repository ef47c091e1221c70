// Node-plane credentials (common/node-credentials.ts) on real processes, without TLS: a cluster
// whose nodes share a node secret refuses heartbeats, node links and chunk listings that lack a
// good credential (forged, replayed, for another method), keeps a data node with a wrong secret
// out, stops one with none, replicates (pipeline writes and leader repairs) with it, and never
// logs it. And the start-up rule: auth on with neither mTLS nor a node secret is refused.
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CHANNEL_OPTIONS, callUnary, strataProto } from '../common/grpc.js';
import { COORDINATORS_RECEIVER, NODE_AUTH_METADATA_KEY, NodeSecret, bodyDigest, newNodeSecretText } from '../common/node-credentials.js';
import { StrataError } from '../common/errors.js';
import { RoleProcess, runCli, startCluster, type TestCluster } from './harness/cluster.js';
import { expectOneLineError } from './harness/cli-errors.js';
import { freePort, tempDir } from './harness/ports.js';
import { waitFor } from './harness/wait.js';

const KiB = 1024;
const CHUNK = 128 * KiB;
const HEARTBEAT = strataProto.Coordinator.service.Heartbeat.path;
const LIST_CHUNKS = strataProto.DataNode.service.ListChunks.path;
const STAT_CHUNK = strataProto.DataNode.service.StatChunk.path;

const credentialMetadata = (value: string) => {
  const metadata = new grpc.Metadata();
  metadata.set(NODE_AUTH_METADATA_KEY, value);
  return metadata;
};

/** The error a call ends with (or 'ok'), as a StrataError kind. */
async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return 'ok';
  } catch (err) {
    return err instanceof StrataError ? `${err.kind}: ${err.message}` : String(err);
  }
}

/** ListChunks on a data node with `metadata`: the chunk ids, or the error's status code. */
function listChunks(client: grpc.Client, metadata = new grpc.Metadata()): Promise<{ ids: string[] } | { code: number; details: string }> {
  return new Promise((resolve) => {
    const ids: string[] = [];
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const call = (client as any).ListChunks({}, metadata, { deadline: new Date(Date.now() + 10_000) }) as grpc.ClientReadableStream<{ chunks: { chunkId: string }[] }>;
    call.on('data', (reply) => ids.push(...reply.chunks.map((c) => c.chunkId)));
    call.on('error', (err: grpc.ServiceError) => resolve({ code: err.code, details: err.details }));
    call.on('end', () => resolve({ ids }));
  });
}

const logText = (cluster: TestCluster) =>
  readdirSync(cluster.dir.path)
    .filter((name) => name.endsWith('.log'))
    .map((name) => readFileSync(path.join(cluster.dir.path, name), 'utf8'))
    .join('\n');

describe('node-plane credentials without TLS', () => {
  let cluster: TestCluster;
  let secret: NodeSecret;
  let coordinator: grpc.Client;
  let dn1: grpc.Client;

  beforeAll(async () => {
    cluster = await startCluster({
      datanodes: 3,
      replication: 3,
      nodeSecret: true,
      logLevel: 'info',
      coordinatorArgs: ['--scan-interval-ms', '300', '--gc-grace-ms', '600000', '--leader-ttl-ms', '2000'],
    });
    expect(statSync(cluster.nodeSecretFile!).mode & 0o777).toBe(0o600);
    secret = NodeSecret.load({ nodeSecretFile: cluster.nodeSecretFile })!;
    coordinator = new strataProto.Coordinator(cluster.coordinators[0].address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    dn1 = new strataProto.DataNode(cluster.datanodes[0].address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  }, 120_000);

  afterAll(async () => {
    coordinator?.close();
    dn1?.close();
    await cluster?.stop();
  });

  test('a pipeline write with RF 3 reads back byte-identical, stored on all three nodes', async () => {
    const client = cluster.client();
    const data = randomBytes(5 * CHUNK + 1000);
    await client.writeFile('/rf3', data, { replication: 3, chunkSize: CHUNK });
    expect((await client.readFile('/rf3')).equals(data)).toBe(true);
    for (const chunk of await client.locate('/rf3')) expect(new Set(chunk.nodes).size).toBe(3);
    // The leader lists every node's chunks (ListChunks, a node-plane call) with the credential.
    const listed = await listChunks(dn1, credentialMetadata(secret.credential(LIST_CHUNKS, 'test', cluster.datanodes[0].address)));
    expect(listed).toHaveProperty('ids');
    expect((listed as { ids: string[] }).ids).toEqual(expect.arrayContaining((await client.locate('/rf3')).map((c) => c.chunkId)));
  });

  test('forged heartbeats and node links are refused and the forged node is never counted', async () => {
    const info = { nodeId: 'forged', address: '127.0.0.1:1', capacityBytes: 1 << 30, freeBytes: 1 << 30 };
    expect(await outcome(callUnary(coordinator, 'Heartbeat', info, 5000))).toMatch(/^Unauthenticated: Heartbeat: no node credential.*--node-secret-file/);
    const other = NodeSecret.load({ nodeSecret: 'a'.repeat(40) })!;
    expect(await outcome(callUnary(coordinator, 'Heartbeat', info, 5000, undefined, credentialMetadata(other.credential(HEARTBEAT, 'forged', COORDINATORS_RECEIVER, bodyDigest(HEARTBEAT, info)))))).toMatch(/^Unauthenticated: .*another secret/);
    // The right secret, but made for another method: its MAC does not hold for a heartbeat.
    expect(await outcome(callUnary(coordinator, 'Heartbeat', info, 5000, undefined, credentialMetadata(secret.credential(LIST_CHUNKS, 'forged', COORDINATORS_RECEIVER))))).toMatch(/^Unauthenticated: /);
    expect(await outcome(callUnary(coordinator, 'Heartbeat', info, 5000, undefined, credentialMetadata('v1.garbage')))).toMatch(/^Unauthenticated: .*malformed/);
    // A good credential of dn1 cannot register another node (say, dn9 at an attacker's address).
    const asDn9 = { ...info, nodeId: 'dn9' };
    expect(await outcome(callUnary(coordinator, 'Heartbeat', asDn9, 5000, undefined, credentialMetadata(secret.credential(HEARTBEAT, 'dn1', COORDINATORS_RECEIVER, bodyDigest(HEARTBEAT, asDn9)))))).toMatch(/^Unauthenticated: .*"dn9" sent with the node credential of "dn1"/);
    // Nor can dn1's credential carry another body than the one it was made for.
    const dn1Body = { ...info, nodeId: 'dn1', address: cluster.datanodes[0].address };
    expect(await outcome(callUnary(coordinator, 'Heartbeat', { ...dn1Body, address: '127.0.0.1:1' }, 5000, undefined, credentialMetadata(secret.credential(HEARTBEAT, 'dn1', COORDINATORS_RECEIVER, bodyDigest(HEARTBEAT, dn1Body)))))).toMatch(/^Unauthenticated: .*not the one/);
    // NodeLink: the stream ends UNAUTHENTICATED before the hello is read.
    const linkStatus = await new Promise<number>((resolve) => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const link = (coordinator as any).NodeLink() as grpc.ClientDuplexStream<unknown, unknown>;
      link.on('data', () => undefined);
      link.on('error', (err: grpc.ServiceError) => resolve(err.code));
      link.on('end', () => resolve(-1));
      link.write({ nodeId: 'forged', address: '127.0.0.1:1', dataAddress: '' });
    });
    expect(linkStatus).toBe(grpc.status.UNAUTHENTICATED);
    const client = cluster.client();
    expect((await client.nodes()).map((n) => n.nodeId).sort()).toEqual(['dn1', 'dn2', 'dn3']);
    expect((await client.statfs()).liveNodes).toBe(3);
    // One line per refusal, naming the peer's address and what was missing.
    const log = readFileSync(cluster.coordinators[0].logFile, 'utf8');
    expect(log).toMatch(/node plane: refused Heartbeat from [^ ]*127\.0\.0\.1:\d+: no node credential/);
  });

  test('ListChunks and StatChunk without a good credential are refused; a replayed one too', async () => {
    const none = await listChunks(dn1);
    expect(none).toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    expect((none as { details: string }).details).toMatch(/ListChunks: no node credential/);
    const forStat = await listChunks(dn1, credentialMetadata(secret.credential(STAT_CHUNK, 'test', cluster.datanodes[0].address)));
    expect(forStat).toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    const good = credentialMetadata(secret.credential(LIST_CHUNKS, 'test', cluster.datanodes[0].address));
    expect(await listChunks(dn1, good)).toHaveProperty('ids');
    const replayed = await listChunks(dn1, good);
    expect(replayed).toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    expect((replayed as { details: string }).details).toMatch(/replay/);
    const [chunk] = await cluster.client().locate('/rf3');
    expect(await outcome(callUnary(dn1, 'StatChunk', { chunkId: chunk.chunkId }, 5000))).toMatch(/^Unauthenticated: StatChunk: no node credential/);
    expect(await outcome(callUnary(dn1, 'StatChunk', { chunkId: chunk.chunkId }, 5000, undefined, credentialMetadata(secret.credential(STAT_CHUNK, 'test', cluster.datanodes[0].address, bodyDigest(STAT_CHUNK, { chunkId: chunk.chunkId })))))).toBe('ok');
    // A credential made for dn1 is refused at dn2, even for the same request.
    const dn2 = new strataProto.DataNode(cluster.datanodes[1].address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    try {
      const forDn1 = secret.credential(STAT_CHUNK, 'test', cluster.datanodes[0].address, bodyDigest(STAT_CHUNK, { chunkId: chunk.chunkId }));
      expect(await outcome(callUnary(dn2, 'StatChunk', { chunkId: chunk.chunkId }, 5000, undefined, credentialMetadata(forDn1)))).toMatch(/^Unauthenticated: StatChunk: a node credential made for .*not this node/);
    } finally {
      dn2.close();
    }
    expect(readFileSync(cluster.datanodes[0].logFile, 'utf8')).toMatch(/node plane: refused ListChunks from [^ ]*127\.0\.0\.1:\d+: no node credential/);
  });

  test('a data node with a wrong secret is refused and not counted live; one without a secret exits naming the flag', async () => {
    const wrongFile = path.join(cluster.dir.path, 'wrong.secret');
    writeFileSync(wrongFile, newNodeSecretText(), { mode: 0o600 });
    const address = `127.0.0.1:${await freePort()}`;
    const args = ['datanode', '--node-id', 'dn-wrong', '--data-dir', path.join(cluster.dir.path, 'dn-wrong'), '--listen', address, '--coordinators', cluster.coordinatorList, '--heartbeat-interval-ms', '300', '--log-level', 'warn'];
    const wrong = new RoleProcess('dn-wrong', [...args, '--node-secret-file', wrongFile], path.join(cluster.dir.path, 'dn-wrong.log'), address);
    wrong.start();
    try {
      await waitFor('the wrong-secret heartbeats refused', async () => /refused Heartbeat .*another secret/.test(readFileSync(cluster.coordinators[0].logFile, 'utf8')) && /"caller":"dn-wrong"/.test(readFileSync(cluster.coordinators[0].logFile, 'utf8')));
      // Refused beats keep coming (it keeps retrying) and none of them counts.
      await waitFor('its own refusal logged', async () => readFileSync(wrong.logFile, 'utf8').split('\n').some((line) => line.includes('heartbeat failed') && line.includes('another secret')));
      expect(wrong.running).toBe(true);
      const client = cluster.client();
      expect((await client.nodes()).map((n) => n.nodeId)).not.toContain('dn-wrong');
      expect((await client.statfs()).liveNodes).toBe(3);
    } finally {
      await wrong.stop();
    }
    const withoutSecret = args.map((arg) => (arg === 'dn-wrong' ? 'dn-none' : arg.endsWith('dn-wrong') ? `${arg}-none` : arg));
    withoutSecret[withoutSecret.indexOf('--log-level') + 1] = 'error';
    const result = await runCli(withoutSecret, { timeoutMs: 60_000 });
    expectOneLineError(result, 6, /requires a node credential: start this data node with --node-secret-file FILE \(or STRATA_NODE_SECRET\)/);
    expect((await cluster.client().nodes()).map((n) => n.nodeId)).not.toContain('dn-none');
  });

  test('the leader repairs a lost copy onto another node with the credential (ReplicateChunk, ListChunks)', async () => {
    const client = cluster.client();
    // Only what is logged from here on: the earlier tests' refusals were theirs.
    const logs = [...cluster.coordinators, ...cluster.datanodes].map((p) => ({ file: p.logFile, from: statSync(p.logFile).size }));
    const data = randomBytes(3 * CHUNK);
    await client.writeFile('/rf2', data, { replication: 2, chunkSize: CHUNK });
    const before = await client.locate('/rf2');
    const victim = before[0].nodes[0];
    cluster.datanodes[Number(victim.slice(2)) - 1].kill9();
    await waitFor('the lost copies re-replicated', async () => {
      const now = await client.locate('/rf2');
      return now.every((chunk) => chunk.nodes.filter((n) => n !== victim).length >= 2) || undefined;
    }, 120_000);
    expect((await client.readFile('/rf2')).equals(data)).toBe(true);
    for (const { file, from } of logs) {
      const added = readFileSync(file).subarray(from).toString('utf8');
      expect(added, file).not.toMatch(/node plane: refused/);
      expect(added, file).not.toMatch(/heartbeat failed/);
    }
    // The copies were made: a data node logs each one it pulled from a peer.
    expect(logs.some(({ file, from }) => /chunk replicated/.test(readFileSync(file).subarray(from).toString('utf8')))).toBe(true);
  });

  test('no log file holds the node secret', () => {
    const text = readFileSync(cluster.nodeSecretFile!, 'utf8').trim();
    const logs = logText(cluster);
    expect(logs.length).toBeGreaterThan(0);
    expect(logs).not.toContain(text);
    expect(logs).not.toContain(text.slice(0, 16));
  });
});

describe('node-plane start-up rules', () => {
  const oidc = ['--auth', 'oidc', '--oidc-issuer', 'https://keycloak.example/realms/strata', '--oidc-audience', 'strata'];

  test('auth on with neither mTLS nor a node secret refuses to start, naming the flags; --insecure-node-plane starts with a warning', async () => {
    const dir = await tempDir('node-plane-start');
    try {
      const refused = await runCli(['coordinator', '--listen', `127.0.0.1:${await freePort()}`, '--meta', path.join(dir.path, 'meta'), ...oidc, '--log-level', 'error'], { timeoutMs: 30_000 });
      expectOneLineError(refused, 2, /--node-secret-file FILE .*--tls-ca.*--insecure-node-plane/);
      const shortFile = path.join(dir.path, 'short.secret');
      writeFileSync(shortFile, 'too-short-secret');
      const short = await runCli(['coordinator', '--listen', `127.0.0.1:${await freePort()}`, '--meta', path.join(dir.path, 'meta'), ...oidc, '--node-secret-file', shortFile, '--log-level', 'error'], { timeoutMs: 30_000 });
      expectOneLineError(short, 2, /node secret: .* holds 16 characters; use 32/, ['too-short-secret']);
      const address = `127.0.0.1:${await freePort()}`;
      const insecure = new RoleProcess('coordinator', ['coordinator', '--listen', address, '--meta', path.join(dir.path, 'meta'), ...oidc, '--insecure-node-plane', '--log-level', 'info'], path.join(dir.path, 'coordinator.log'), address);
      insecure.start();
      try {
        await waitFor('the coordinator serving', async () => /coordinator serving/.test(readFileSync(insecure.logFile, 'utf8')));
        expect(readFileSync(insecure.logFile, 'utf8')).toMatch(/"level":40.*--insecure-node-plane/);
        expect(insecure.running).toBe(true);
      } finally {
        await insecure.stop();
      }
    } finally {
      await dir.cleanup();
    }
  });
});
