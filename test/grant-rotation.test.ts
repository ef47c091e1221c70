// Chunk grant key rotation on real processes, auth on (a Keycloak-shaped realm on loopback):
// `strata keys rotate-grants` (and rotate-master) need the admin role; after a rotation the new key
// signs once active, and a grant signed before it still reads from the data node until it expires.
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CoordinatorClient } from '../client/coordinator-client.js';
import { TokenSource } from '../client/auth/token-source.js';
import { peekGrant } from '../common/chunk-grants.js';
import { DataNodeChannels, fromServiceError } from '../common/grpc.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { expectOneLineError } from './harness/cli-errors.js';
import { OidcRealm } from './harness/oidc-realm.js';
import { tempDir, type TempDir } from './harness/ports.js';
import { waitFor } from './harness/wait.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- the generated DataNode client is untyped */

describe('grant key rotation (auth on, 1 data node)', () => {
  let realm: OidcRealm;
  let scratch: TempDir;
  let cluster: TestCluster;
  let coordinator: CoordinatorClient;
  const channels = new DataNodeChannels();
  const admin = () => realm.token('ops', { realm_access: { roles: ['strata-admin'] } });
  const alice = () => realm.token('alice', { tenant: 'a' });
  const cli = (token: string, args: string[]) => cluster.cli(args, { env: { STRATA_TOKEN: token, XDG_CONFIG_HOME: path.join(scratch.path, 'no-login') } });
  const data = Buffer.from('read with a grant signed before the rotation\n'.repeat(2000));

  /** The file's first chunk and a read grant for it, as a coordinator hands them out now. */
  const readGrant = async () => {
    const attr = await coordinator.call<{ attr: { ino: number } }>('Stat', { path: '/g.bin' });
    const reply = await coordinator.call<{ chunks: { chunkId: string }[]; grant: string }>('GetChunks', { ino: attr.attr.ino, fromIndex: 0, count: 1 });
    return { chunkId: reply.chunks[0]!.chunkId, grant: reply.grant };
  };
  const readChunk = async (chunkId: string, grant: string): Promise<Buffer> => {
    const call = (channels.get(cluster.datanodes[0].address) as any).ReadChunk({ chunkId, offset: 0, length: 0, grant }, { deadline: Date.now() + 10_000 }) as grpc.ClientReadableStream<{ data: Buffer }>;
    const pieces: Buffer[] = [];
    try {
      for await (const reply of call) pieces.push(reply.data);
    } catch (err) {
      throw fromServiceError(err, 'dn1');
    }
    return Buffer.concat(pieces);
  };

  beforeAll(async () => {
    realm = await OidcRealm.start();
    scratch = await tempDir('grant-rotation');
    cluster = await startCluster({ datanodes: 1, replication: 1, coordinatorArgs: [...realm.coordinatorArgs(), '--grant-ttl-ms', '120000'], tokenProvider: admin });
    coordinator = new CoordinatorClient({ addresses: [cluster.coordinatorList], callTimeoutMs: 5000, failoverTimeoutMs: 10_000, session: false, tokens: new TokenSource(admin) });
    await cluster.client().writeFile('/g.bin', data);
  }, 120_000);

  afterAll(async () => {
    channels.close();
    coordinator?.close();
    await cluster?.stop();
    await realm?.stop();
    await scratch?.cleanup();
  });

  test('admin only: a tenant user is refused (exit 6, one line)', async () => {
    const token = alice();
    for (const args of [['keys', 'rotate-grants'], ['keys', 'rotate-master']]) {
      expectOneLineError(await cli(token, args), 6, /permission denied: .*needs the strata-admin role/, [token]);
    }
  });

  test('a rotation: the new key signs once active, and a grant signed before still reads', async () => {
    const before = await readGrant();
    const oldKey = peekGrant(before.grant)!.k;
    const rotated = await cli(admin(), ['keys', 'rotate-grants', '--activate-after-ms', '2000', '--json']);
    expect(rotated.code, rotated.stderr).toBe(0);
    const report = JSON.parse(rotated.stdout) as { keyId: string; keyIds: string[] };
    expect(report.keyIds).toEqual([oldKey, report.keyId]);
    const after = await waitFor('grants signed by the new key', async () => {
      const fresh = await readGrant();
      return peekGrant(fresh.grant)!.k === report.keyId ? fresh : undefined;
    }, 30_000);
    expect((await readChunk(after.chunkId, after.grant)).length).toBeGreaterThan(0); // the data node learnt the new key
    expect((await readChunk(before.chunkId, before.grant)).equals(await readChunk(after.chunkId, after.grant))).toBe(true); // the old grant: still good
    expect((await cluster.client().readFile('/g.bin')).equals(data)).toBe(true);
    const text = await cli(admin(), ['keys', 'rotate-grants']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^grant key [0-9a-f]{12} added: it signs from \\S+; keys published: ${oldKey}, ${report.keyId}, [0-9a-f]{12}\\n$`));
  });
});
