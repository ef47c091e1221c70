// Tenants and authorization (coordinator/authz/): a real coordinator with --auth oidc against a
// Keycloak-shaped realm on loopback (harness/oidc-realm.ts) and a per-path rules file, a real data
// node, the SDK (session stream over TCP and unary RPCs), raw gRPC calls, the CLI and the mount.
// Tenant a's caller and tenant b's caller each see their own root as `/`; neither reaches the
// other's entries by path, by inode number, by rename, link, export or the mount.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CHANNEL_OPTIONS, bearerMetadata, strataProto } from '../common/grpc.js';
import { Strata, StrataError } from '../client/index.js';
import { DataNodeClients } from '../client/datanode-client.js';
import { peekGrant } from '../common/chunk-grants.js';
import { expectOneLineError } from './harness/cli-errors.js';
import { STRATA_MAIN, startCluster, type TestCluster } from './harness/cluster.js';
import { fuseUnavailableReason, sh, startMount } from './harness/mount.js';
import { OidcRealm } from './harness/oidc-realm.js';
import { tempDir, type TempDir } from './harness/ports.js';
import { S3Server, s3Env } from './harness/s3.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- raw wire replies */

describe('tenants and authorization', () => {
  let realm: OidcRealm;
  let cluster: TestCluster;
  let scratch: TempDir;
  const clients: Strata[] = [];
  const alice = () => realm.token('alice', { tenant: 'a' });
  const bob = () => realm.token('bob', { tenant: 'b' });
  const admin = () => realm.token('ops', { realm_access: { roles: ['strata-admin'] } });
  const nobody = () => realm.token('drifter', {});
  /** Tenant a, role a-reader: read-only everywhere but /drop (the rules file below). */
  const reader = () => realm.token('rita', { tenant: 'a', realm_access: { roles: ['a-reader'] } });
  const connect = (token: () => string, options: { session?: boolean } = {}) => {
    const client = Strata.connect({ coordinators: cluster.coordinatorList, failoverTimeoutMs: 3000, tokenProvider: token, ...options });
    clients.push(client);
    return client;
  };
  const cli = (token: string, args: string[], env: Record<string, string> = {}) =>
    cluster.cli(args, { env: { STRATA_TOKEN: token, XDG_CONFIG_HOME: path.join(scratch.path, 'no-login'), ...env } });
  const coordinatorLog = () => readFileSync(cluster.coordinators[0].logFile, 'utf8');
  const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as StrataError);

  /** Alice's entries as inode numbers: what another tenant might guess. */
  let aRoot: number;
  let aFile: number;
  let aDir: number;
  let bRoot: number;

  beforeAll(async () => {
    realm = await OidcRealm.start();
    scratch = await tempDir('tenants');
    const rules = path.join(scratch.path, 'rules.json');
    writeFileSync(
      rules,
      JSON.stringify({
        rules: [
          { role: 'a-reader', path: '/', access: 'read-only' },
          { role: 'a-reader', path: '/drop', access: 'read-write', tenant: 'a' },
          { role: 'a-reader', path: '/drop/locked.txt', access: 'read-only', tenant: 'a' },
          { role: 'a-split', path: '/ro', access: 'read-only', tenant: 'a' },
          { role: 'a-split', path: '/rw', access: 'read-write', tenant: 'a' },
        ],
      }),
    );
    cluster = await startCluster({ datanodes: 1, replication: 1, coordinatorArgs: [...realm.coordinatorArgs(), '--authz-rules', rules], tokenProvider: admin });
    const a = connect(alice);
    await a.mkdir('/docs');
    await a.writeFile('/docs/secret.txt', 'alice only');
    await a.mkdir('/drop');
    await a.writeFile('/drop/locked.txt', 'kept as it is');
    aRoot = (await a.stat('/')).ino;
    aDir = (await a.stat('/docs')).ino;
    aFile = (await a.stat('/docs/secret.txt')).ino;
    await connect(bob).writeFile('/mine.txt', 'bob only');
    bRoot = (await connect(bob).stat('/')).ino;
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await cluster?.stop();
    await realm?.stop();
    await scratch?.cleanup();
  });

  test('each tenant sees its own root as /, made on first use; the admin sees them all under /tenants', async () => {
    const a = connect(alice);
    expect((await a.readdir('/')).map((e) => e.name).sort()).toEqual(['docs', 'drop']);
    expect((await connect(bob).readdir('/')).map((e) => e.name)).toEqual(['mine.txt']);
    expect(aRoot).not.toBe(bRoot);
    const ops = connect(admin);
    expect((await ops.readdir('/tenants')).map((e) => e.name).sort()).toEqual(['a', 'b']);
    expect((await ops.readFile('/tenants/a/docs/secret.txt')).toString()).toBe('alice only');
    expect((await ops.stat('/tenants/a')).ino).toBe(aRoot);
    // A third tenant's first request makes its (empty) root.
    expect(await connect(() => realm.token('carol', { tenant: 'c' })).readdir('/')).toEqual([]);
    expect((await ops.readdir('/tenants')).map((e) => e.name).sort()).toEqual(['a', 'b', 'c']);
  });

  test('by path (session and unary): tenant b cannot list, stat, read, write, rename into or delete tenant a\'s entries', async () => {
    for (const session of [true, false]) {
      const b = connect(bob, { session });
      for (const p of ['/tenants/a/docs/secret.txt', '/../a/docs/secret.txt', '/docs/secret.txt', '/tenants']) {
        expect((await failure(b.stat(p)))?.kind, `${p} session=${session}`).toBe('NotFound');
      }
      expect((await failure(b.readdir('/tenants/a')))?.kind).toBe('NotFound');
      expect((await failure(b.readFile('/tenants/a/docs/secret.txt')))?.kind).toBe('NotFound');
      expect((await failure(b.writeFile('/tenants/a/docs/evil.txt', 'x')))?.kind).toBe('NotFound');
      expect((await failure(b.rename('/mine.txt', '/tenants/a/docs/stolen.txt')))?.kind).toBe('NotFound');
      expect((await failure(b.rm('/tenants/a/docs/secret.txt')))?.kind).toBe('NotFound');
    }
    const ops = connect(admin);
    expect((await ops.readdir('/tenants/a/docs')).map((e) => e.name)).toEqual(['secret.txt']);
    expect((await ops.readdir('/tenants/b')).map((e) => e.name)).toEqual(['mine.txt']);
    // Even the admin cannot move an entry between tenants (each inode keeps its tenant for life).
    expect((await failure(ops.rename('/tenants/b/mine.txt', '/tenants/a/docs/moved.txt')))?.kind).toBe('NotPermitted');
    expect((await failure(ops.rename('/tenants/b', '/tenants/a2')))?.kind).toBe('NotPermitted');
  });

  test('by inode (session stream): every guessed inode of tenant a is refused as not found, and changes nothing', async () => {
    const b = connect(bob).inodes;
    const refused = async (what: string, p: Promise<unknown>) => expect((await failure(p))?.kind, what).toBe('NotFound');
    await refused('getattr file', b.getattr(aFile));
    await refused('getattr root', b.getattr(aRoot));
    await refused('lookup', b.lookup(aDir, 'secret.txt'));
    await refused('lookup absent name', b.lookup(aDir, 'no-such'));
    await refused('readdirplus', b.readdirplus(aRoot));
    await refused('readlink', b.readlink(aFile));
    await refused('mkdir', b.mkdir(aRoot, 'evil', 0o755));
    await refused('create', b.create(aDir, 'evil.txt', { mode: 0o644 }));
    await refused('symlink', b.symlink(aDir, 'evil-link', '/etc/passwd'));
    await refused('unlink', b.unlink(aDir, 'secret.txt'));
    await refused('rmdir', b.rmdir(aRoot, 'drop'));
    await refused('setattr', b.setattr(aFile, { mode: 0o777, size: 0 }));
    await refused('link out', b.link(aFile, bRoot, 'stolen'));
    await refused('rename in', b.rename(bRoot, 'mine.txt', aDir, 'planted.txt'));
    await refused('rename out', b.rename(aDir, 'secret.txt', bRoot, 'taken.txt'));
    const ops = connect(admin);
    expect((await ops.readdir('/tenants/a/docs')).map((e) => e.name)).toEqual(['secret.txt']);
    expect((await ops.readFile('/tenants/a/docs/secret.txt')).toString()).toBe('alice only');
    expect((await ops.stat('/tenants/a/docs/secret.txt')).mode & 0o777).toBe(0o644);
    expect((await ops.readdir('/tenants/b')).map((e) => e.name)).toEqual(['mine.txt']);
  });

  test('by inode (raw gRPC: unary chunk calls and the gRPC Session call): refused as not found', async () => {
    const client = new strataProto.Coordinator(cluster.coordinatorList, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    try {
      const call = (method: string, request: unknown) =>
        new Promise<[grpc.ServiceError | null, any]>((resolve) => (client as any)[method](request, bearerMetadata(bob()), { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, reply: any) => resolve([err, reply])));
      const unary = async (method: string, request: unknown) => (await call(method, request))[0];
      expect((await unary('GetChunks', { ino: aFile }))?.code).toBe(grpc.status.NOT_FOUND);
      expect((await unary('AllocateChunk', { ino: aFile }))?.code).toBe(grpc.status.NOT_FOUND);
      // Bob's own placement (a chunk id and its write grant, for his own file) commits nowhere of a's.
      const bobFile = (await connect(bob).stat('/mine.txt')).ino;
      const [allocated, own] = await call('AllocateChunk', { ino: bobFile });
      expect(allocated).toBeNull();
      expect((await unary('CommitChunk', { ino: aFile, index: 0, chunkId: own.chunkId, length: 1, nodes: ['dn1'], grant: own.grant }))?.code).toBe(grpc.status.NOT_FOUND);
      // Nor can he adopt a's chunk into his own file: he was never handed its write grant.
      const [aChunk] = await connect(admin).locate('/tenants/a/docs/secret.txt');
      for (const grant of ['', own.grant]) {
        const refused = await unary('CommitChunk', { ino: bobFile, index: 0, chunkId: aChunk!.chunkId, length: 10, nodes: aChunk!.nodes, grant });
        expect(refused?.code, `grant '${grant.slice(0, 8)}'`).toBe(grpc.status.PERMISSION_DENIED);
      }
      expect((await connect(bob).readFile('/mine.txt')).toString()).toBe('bob only');
      const session = (client as any).Session() as grpc.ClientDuplexStream<any, any>;
      const replies = new Map<number, any>();
      session.on('data', (reply: any) => Number(reply.id) > 0 && replies.set(Number(reply.id), reply));
      session.on('error', () => undefined);
      session.write({ id: 1, authenticate: { token: bob() } });
      const requests: [string, unknown][] = [
        ['getAttr', { ino: aFile }],
        ['leasedGetAttr', { ino: aFile }],
        ['leasedLookup', { parent: aDir, name: 'secret.txt' }],
        ['leasedLookup', { parent: aDir, name: 'absent' }],
        ['leasedReadDirPlus', { ino: aRoot }],
        ['getChunks', { ino: aFile }],
        ['commitChunk', { ino: aFile, index: 0, chunkId: own.chunkId, length: 1, nodes: ['dn1'], grant: own.grant }],
        ['setAttrIno', { ino: aFile, size: 0 }],
        ['removeAt', { parent: aDir, name: 'secret.txt' }],
      ];
      requests.forEach(([op, body], i) => session.write({ id: i + 2, [op]: body }));
      const giveUpAt = Date.now() + 15_000;
      while (replies.size < requests.length + 1 && Date.now() < giveUpAt) await new Promise((r) => setTimeout(r, 20));
      session.end();
      expect(replies.get(1)?.authenticate?.tenant).toBe('b');
      requests.forEach(([op], i) => expect(replies.get(i + 2)?.error, `${op} #${i + 2}`).toMatchObject({ code: grpc.status.NOT_FOUND, kind: 'NotFound' }));
    } finally {
      client.close();
    }
    expect((await connect(admin).readFile('/tenants/a/docs/secret.txt')).toString()).toBe('alice only');
  });

  test("chunk grants name the caller and its tenant; one tenant's grant does not open another's chunk at the data node", async () => {
    const client = new strataProto.Coordinator(cluster.coordinatorList, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    const datanodes = new DataNodeClients({ writeTimeoutMs: 10_000, readTimeoutMs: 10_000 });
    type Located = { chunks: Array<{ chunkId: string; replicas: Array<{ nodeId: string; address: string }> }>; grant: string };
    const getChunks = (token: string, ino: number) =>
      new Promise<Located>((resolve, reject) =>
        (client as any).GetChunks({ ino }, bearerMetadata(token), { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, reply: Located) => (err ? reject(err) : resolve(reply))),
      );
    const read = async (replica: { nodeId: string; address: string }, chunkId: string, grant: string) => {
      const pieces: Buffer[] = [];
      for await (const piece of datanodes.readChunk(replica, chunkId, 0, 0, undefined, { grant })) pieces.push(piece);
      return Buffer.concat(pieces).toString();
    };
    try {
      const a = await getChunks(alice(), aFile);
      expect(peekGrant(a.grant)).toMatchObject({ s: 'alice', t: 'a', o: 'r', c: [a.chunks[0]!.chunkId] });
      const b = await getChunks(bob(), (await connect(bob).stat('/mine.txt')).ino);
      expect(peekGrant(b.grant)).toMatchObject({ s: 'bob', t: 'b', o: 'r' });
      const [aChunk, bChunk] = [a.chunks[0]!, b.chunks[0]!];
      expect(await read(aChunk.replicas[0]!, aChunk.chunkId, a.grant)).toBe('alice only');
      expect(await read(bChunk.replicas[0]!, bChunk.chunkId, b.grant)).toBe('bob only');
      await expect(read(aChunk.replicas[0]!, aChunk.chunkId, b.grant)).rejects.toMatchObject({ kind: 'PermissionDenied' });
    } finally {
      datanodes.close();
      client.close();
    }
  });

  test('without a tenant claim or the admin role, nothing is visible: PermissionDenied, exit 6, logged with who and why', async () => {
    const drifter = connect(nobody);
    const err = await failure(drifter.stat('/'));
    expect(err?.kind).toBe('PermissionDenied');
    expect(err?.message).toMatch(/names no tenant/);
    const token = nobody();
    expectOneLineError(await cli(token, ['ls', '/']), 6, /permission denied: .*names no tenant/, [token]);
    const log = coordinatorLog();
    expect(log).toMatch(/"subject":"drifter".*"rule":"the token names no tenant/);
    expect(log).not.toContain(token);
  });

  test('admin operations need the admin role: refused (exit 6, logged) for a tenant user, allowed for the admin', async () => {
    const token = alice();
    const nodeId = (await connect(admin).nodes())[0]!.nodeId;
    for (const args of [['node', 'drain', nodeId], ['node', 'rm', nodeId], ['rebalance'], ['health'], ['tier', 'status']]) {
      expectOneLineError(await cli(token, args), 6, /permission denied: .*needs the strata-admin role/, [token]);
    }
    expect((await connect(alice).nodes()).length).toBe(1); // the node list is not an admin operation
    expect(coordinatorLog()).toMatch(/"subject":"alice".*"op":"DrainNode".*"rule":"an admin operation: needs the strata-admin role"/);
    const health = await cli(admin(), ['health']);
    expect(health.code, health.stderr).toBe(0);
    const rebalance = await cli(admin(), ['rebalance']);
    expect(rebalance.code, rebalance.stderr).toBe(0);
    expect((await connect(admin).nodes())[0]!.state).toBe('live'); // alice's drain and rm did nothing
  });

  test('a read-only rule refuses writes with PermissionDenied (exit 6) and allows reads; its read-write subtree takes writes', async () => {
    const rita = connect(reader);
    expect((await rita.readFile('/docs/secret.txt')).toString()).toBe('alice only');
    for (const change of [
      () => rita.writeFile('/docs/new.txt', 'x'),
      () => rita.mkdir('/docs/sub'),
      () => rita.rm('/docs/secret.txt'),
      () => rita.rename('/docs/secret.txt', '/drop/secret.txt'),
      () => rita.setattr('/docs/secret.txt', { mode: 0o600 }),
      () => rita.inodes.setattr(aFile, { size: 0 }),
    ]) {
      const err = await failure(change());
      expect(err?.kind).toBe('PermissionDenied');
      expect(err?.message).toMatch(/needs read-write; .*read-only \(rule: role a-reader on \/\)/);
    }
    const token = reader();
    const file = path.join(scratch.path, 'upload.txt');
    writeFileSync(file, 'upload');
    expectOneLineError(await cli(token, ['put', file, '/docs/upload.txt']), 6, /permission denied/, [token]);
    await rita.writeFile('/drop/report.txt', 'rita wrote this');
    expect((await connect(alice).readFile('/drop/report.txt')).toString()).toBe('rita wrote this');
    // A read-only file inside her read-write directory: neither replaced by a rename nor truncated by a create.
    for (const change of [() => rita.rename('/drop/report.txt', '/drop/locked.txt'), () => rita.writeFile('/drop/locked.txt', 'overwritten')]) {
      expect((await failure(change()))?.kind).toBe('PermissionDenied');
    }
    expect((await connect(alice).readFile('/drop/locked.txt')).toString()).toBe('kept as it is');
    expect((await connect(alice).readFile('/docs/secret.txt')).toString()).toBe('alice only');
    expect(coordinatorLog()).toMatch(/"subject":"rita"/);
  });

  test('hard links: once the name a file was recorded by goes (removed or moved away), rules judge it by a name it still has', async () => {
    const a = connect(alice);
    const sam = connect(() => realm.token('sam', { tenant: 'a', realm_access: { roles: ['a-split'] } }));
    const rita = connect(reader);
    await a.mkdir('/ro');
    await a.mkdir('/rw');
    /** Made at `from`, linked at `to`, then the first name removed (or, `moved`, renamed in place first). */
    const onlyAt = async (from: string, to: string, moved = false) => {
      await a.writeFile(from, 'linked');
      const target = path.posix.parse(to);
      await a.inodes.link((await a.stat(from)).ino, (await a.stat(target.dir)).ino, target.base);
      if (moved) {
        await a.rename(from, `${from}.moved`);
        from = `${from}.moved`;
      }
      await a.rm(from);
      return (await a.stat(to)).ino;
    };
    // In /rw, linked into /ro, the /rw name gone: read-only now (it is reachable only from /ro).
    for (const moved of [false, true]) {
      const ino = await onlyAt(`/rw/f${moved}`, `/ro/f${moved}`, moved);
      const err = await failure(sam.inodes.setattr(ino, { size: 0 }));
      expect(err?.kind, `moved ${moved}`).toBe('PermissionDenied');
      expect(err?.message).toMatch(/needs read-write; .*read-only \(rule: role a-split on \/ro\)/);
      expect((await a.readFile(`/ro/f${moved}`)).toString()).toBe('linked');
    }
    // The reverse: in a read-only place, linked into a writable one, the read-only name gone: writable.
    const ino = await onlyAt('/ro/g', '/rw/g', true);
    await sam.inodes.setattr(ino, { size: 2 });
    const docs = await onlyAt('/docs/g', '/drop/g');
    await rita.inodes.setattr(docs, { size: 3 });
    expect((await a.readFile('/drop/g')).toString()).toBe('lin');
    expect((await a.readFile('/rw/g')).toString()).toBe('li');
    for (const p of ['/ro/ftrue', '/ro/ffalse', '/rw/g', '/drop/g']) await a.rm(p);
    for (const p of ['/ro', '/rw']) await a.rm(p, { recursive: true }); // later tests list a's root
  });

  test('with auth on, new entries belong to the token\'s uid and gid (claims uid, gid), never to the ones the client sends', async () => {
    const token = realm.token('ann', { tenant: 'a', uid: 2001, gid: '2002' });
    // The CLI as local user 4321 (group 4322), which sends its own ids as the owner: ignored.
    const asUser = (args: string[], input: string) =>
      new Promise<{ code: number; stderr: string }>((resolve) => {
        const env = { ...process.env, STRATA_COORDINATOR: cluster.coordinatorList, STRATA_TOKEN: token, HOME: '/nonexistent', XDG_CONFIG_HOME: '/nonexistent' };
        const child = spawn(process.execPath, [STRATA_MAIN, ...args], { uid: 4321, gid: 4322, env, stdio: ['pipe', 'ignore', 'pipe'] });
        const stderr: Buffer[] = [];
        child.stderr.on('data', (d) => stderr.push(d));
        child.on('close', (code) => resolve({ code: code ?? -1, stderr: Buffer.concat(stderr).toString() }));
        child.stdin.end(input);
      });
    for (const args of [['mkdir', '-p', '/owned/sub'], ['put', '-', '/owned/sub/by-cli.txt']]) {
      const ran = await asUser(args, 'made by 4321');
      expect(ran.code, ran.stderr).toBe(0);
    }
    const ann = connect(() => token);
    for (const p of ['/owned', '/owned/sub', '/owned/sub/by-cli.txt']) expect(await ann.stat(p), p).toMatchObject({ uid: 2001, gid: 2002 });
    // The SDK in this (root) process, naming an owner or not: the token's ids.
    expect(await ann.writeFile('/owned/by-sdk.txt', 'sdk')).toMatchObject({ uid: 2001, gid: 2002 });
    expect(await ann.mkdir('/owned/named', { owner: { uid: 7, gid: 8 } })).toMatchObject({ uid: 2001, gid: 2002 });
    const root = (await ann.stat('/')).ino;
    expect((await ann.inodes.create(root, 'by-inode.txt', { owner: { uid: 9, gid: 10 } })).stat).toMatchObject({ uid: 2001, gid: 2002 });
    // A token without uid and gid claims acts as its tenant's nobody (65534).
    expect(await connect(alice).mkdir('/by-nobody', { owner: { uid: 0, gid: 0 } })).toMatchObject({ uid: 65534, gid: 65534 });
    await ann.rm('/owned', { recursive: true });
    await ann.rm('/by-inode.txt');
    await connect(alice).rm('/by-nobody');
  });

  test('export/import: a tenant exports and imports only inside its root; the admin exports another tenant', async () => {
    const s3 = await S3Server.start();
    try {
      await s3.createBucket('backups');
      const s3Flags = ['--endpoint', s3.endpoint, '--path-style'];
      const bobToken = bob();
      expectOneLineError(await cli(bobToken, ['export', '/tenants/a/docs', 's3://backups/stolen', ...s3Flags], s3Env), 3, /no such file or directory/, [bobToken]);
      const own = await cli(alice(), ['export', '/docs', 's3://backups/alice', ...s3Flags], s3Env);
      expect(own.code, own.stderr).toBe(0);
      // A file of another user (given away by the admin): an importer who may not give files away keeps it as its own.
      await connect(admin).writeFile('/tenants/a/docs/ann.txt', 'ann');
      await connect(admin).setattr('/tenants/a/docs/ann.txt', { uid: 2001, gid: 2002 });
      const byAdmin = await cli(admin(), ['export', '/tenants/a/docs', 's3://backups/by-admin', ...s3Flags], s3Env);
      expect(byAdmin.code, byAdmin.stderr).toBe(0);
      // Bob imports into his own root only: a path naming tenant a's root lands under b's.
      const restored = await cli(bobToken, ['import', 's3://backups/by-admin', '/tenants/a/restored', ...s3Flags], s3Env);
      expect(restored.code, restored.stderr).toBe(0);
      expect((await connect(admin).readFile('/tenants/b/tenants/a/restored/secret.txt')).toString()).toBe('alice only');
      expect(await connect(admin).stat('/tenants/b/tenants/a/restored/ann.txt')).toMatchObject({ uid: 65534, gid: 65534 });
      await connect(admin).rm('/tenants/a/docs/ann.txt');
      expect((await connect(admin).readdir('/tenants/a')).map((e) => e.name).sort()).toEqual(['docs', 'drop']);
    } finally {
      await s3.stop();
    }
  });

  test.skipIf(!!fuseUnavailableReason())('the mount shows the tenant\'s root; another tenant\'s entries are not reachable through it', async () => {
    const file = path.join(scratch.path, 'bob-token');
    writeFileSync(file, bob(), { mode: 0o600 });
    const dir = path.join(scratch.path, 'mnt-bob');
    const mount = await startMount(cluster, dir, ['--token-file', file]);
    try {
      // An authenticated mount has the kernel check mode bits (default_permissions), without --allow-other too.
      const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === dir);
      expect(line, 'the mount is listed').toBeDefined();
      expect(line).toMatch(/default_permissions/);
      // Other tenants' callers pick modes and owners: no set-uid programs or device nodes through it.
      expect(line?.split(' ')[5]).toMatch(/(^|,)nosuid(,|$)/);
      expect(line?.split(' ')[5]).toMatch(/(^|,)nodev(,|$)/);
      const names = (await sh(`ls -a ${dir}`)).stdout.split('\n');
      expect(names).toContain('mine.txt');
      expect(names).not.toContain('docs');
      expect((await sh(`cat ${dir}/mine.txt`)).stdout).toBe('bob only');
      for (const p of ['tenants/a/docs/secret.txt', 'docs/secret.txt', 'docs']) expect((await sh(`stat ${dir}/${p}`)).code, p).not.toBe(0);
      // Writing, renaming into and deleting tenant a's paths through the mount: none of them is there
      // (bob's own tenants/a, from his import above, is his and holds no docs).
      for (const cmd of [
        `echo evil > ${dir}/tenants/a/docs/evil.txt`,
        `cat ${dir}/tenants/a/docs/secret.txt`,
        `mv ${dir}/mine.txt ${dir}/tenants/a/docs/stolen.txt`,
        `rm ${dir}/tenants/a/docs/secret.txt`,
        `ls ${dir}/docs`,
      ]) {
        const refused = await sh(cmd);
        expect(refused.code, cmd).not.toBe(0);
        expect(refused.stderr, cmd).toMatch(/No such file or directory/);
      }
      expect((await connect(admin).readdir('/tenants/a/docs')).map((e) => e.name)).toEqual(['secret.txt']);
      expect((await connect(admin).readFile('/tenants/b/mine.txt')).toString()).toBe('bob only');
      const wrote = await sh(`echo via-mount > ${dir}/m.txt && cat ${dir}/m.txt`);
      expect(wrote.stdout.trim(), wrote.stderr).toBe('via-mount');
      expect((await connect(admin).readFile('/tenants/b/m.txt')).toString()).toBe('via-mount\n');
    } finally {
      await mount.stop();
    }
  });

  test("a tenant's quota is its root's: the admin sets it with --tenant, the tenant sees it as / and is refused past it and lists only its own; only the admin sets quotas", async () => {
    const set = await cli(admin(), ['quota', 'set', '--tenant', 'a', '--bytes', '1MiB', '--json']);
    expect(set.code, set.stderr).toBe(0);
    const atRoot = JSON.parse(set.stdout);
    expect(atRoot).toMatchObject({ path: '/tenants/a', ino: aRoot, limitBytes: 1024 * 1024 });
    // Tenant a's own view: its root is `/`, and the quota's path is given from there.
    const a = connect(alice);
    expect(await a.quotaGet('/')).toMatchObject({ path: '/', ino: aRoot, limitBytes: 1024 * 1024, usedBytes: atRoot.usedBytes });
    expect((await a.statfs({ path: '/docs/secret.txt' })).quota).toMatchObject({ path: '/', ino: aRoot });
    const kept = await a.readFile('/docs/secret.txt');
    const refused = await failure(a.writeFile('/docs/big.bin', Buffer.alloc(2 * 1024 * 1024, 7)));
    expect(refused?.kind).toBe('QuotaExceeded');
    // The refusal names the quota's directory as the tenant sees it, not as /tenants/a.
    expect(refused?.message).toMatch(/(^|\s)\/: disk quota exceeded/);
    expect(refused?.message).not.toContain('/tenants');
    expect((await a.readFile('/docs/secret.txt')).equals(kept)).toBe(true);
    // Bob's tenant has no quota: none of a's shows through to him, by path or by his root's inode.
    const b = connect(bob);
    expect((await b.statfs({ path: '/' })).quota ?? null).toBeNull();
    expect((await b.statfs({ ino: bRoot })).quota ?? null).toBeNull();
    expect((await failure(b.statfs({ ino: aRoot })))?.kind).toBe('NotFound');
    // Setting and removing quotas are admin operations.
    const token = alice();
    for (const args of [['quota', 'set', '/', '--bytes', '1T'], ['quota', 'rm', '/']]) {
      expectOneLineError(await cli(token, args), 6, /permission denied: .*needs the strata-admin role/, [token]);
    }
    expect((await a.quotaGet('/')).limitBytes).toBe(1024 * 1024);
    // Listing: a tenant sees the quotas inside its tenant, paths from its /; the admin sees all.
    const inner = await cli(admin(), ['quota', 'set', '/tenants/a/docs', '--files', '100']);
    expect(inner.code, inner.stderr).toBe(0);
    const bobs = await cli(admin(), ['quota', 'set', '--tenant', 'b', '--files', '50']);
    expect(bobs.code, bobs.stderr).toBe(0);
    const listed = await cli(token, ['quota', 'ls', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout).map((q: any) => [q.path, q.ino])).toEqual([['/', aRoot], ['/docs', aDir]]);
    const table = await cli(token, ['quota', 'ls']);
    expect(table.stdout).toMatch(/^\/docs\s+.+\s+-\s+\d+\s+100$/m);
    expect(table.stdout).not.toContain('/tenants');
    expect((await connect(bob).quotaList()).map((q) => [q.path, q.ino])).toEqual([['/', bRoot]]);
    expect((await connect(admin).quotaList()).map((q) => q.path)).toEqual(['/tenants/a', '/tenants/a/docs', '/tenants/b']);
    expectOneLineError(await cli(nobody(), ['quota', 'ls']), 6, /names no tenant/);
    for (const args of [['quota', 'rm', '/tenants/a/docs'], ['quota', 'rm', '--tenant', 'b']]) {
      const removed = await cli(admin(), args);
      expect(removed.code, removed.stderr).toBe(0);
    }
    const rm = await cli(admin(), ['quota', 'rm', '--tenant', 'a']);
    expect(rm.code, rm.stderr).toBe(0);
    expect((await failure(a.quotaGet('/')))?.kind).toBe('NotFound');
  });
  test("df and statfs: a tenant sees its own usage (and its quota as the size), not the cluster's; the admin sees the cluster", async () => {
    const dave = () => realm.token('dave', { tenant: 'd' });
    const d = connect(dave);
    await d.writeFile('/one.txt', 'hello');
    await d.mkdir('/sub');
    await d.writeFile('/sub/two.txt', 'goodbye');
    const whole = await connect(admin).statfs();
    expect(whole.tenant ?? '').toBe('');
    const own = await d.statfs();
    expect(own).toMatchObject({ tenant: 'd', usedBytes: 12, files: 3, directories: 0, chunks: 0 });
    // No quota: the size is what it uses plus what the cluster has free (heartbeats move the latter).
    expect(own.freeBytes).toBeGreaterThan(1024 * 1024);
    expect(own.capacityBytes).toBe(12 + own.freeBytes);
    expect(whole.files + whole.directories).toBeGreaterThan(own.files); // a's and b's count there, not here
    // With a quota on its root: the quota is the size, kept usage is shown at once.
    const set = await cli(admin(), ['quota', 'set', '--tenant', 'd', '--bytes', '1MiB']);
    expect(set.code, set.stderr).toBe(0);
    await d.writeFile('/three.txt', '0123456789');
    expect(await d.statfs({ path: '/sub' })).toMatchObject({ tenant: 'd', capacityBytes: 1024 * 1024, usedBytes: 22, freeBytes: 1024 * 1024 - 22, files: 4 });
    const token = dave();
    const df = await cli(token, ['df']);
    expect(df.code, df.stderr).toBe(0);
    expect(df.stdout).toMatch(/^Tenant:\s+d$/m);
    expect(df.stdout).toMatch(/^Size:\s+1\.0 MiB/m);
    expect(df.stdout).toMatch(/^Used:\s+22 B/m);
    expect(df.stdout).toMatch(/^Files:\s+4 /m);
    expect(df.stdout).not.toMatch(/Chunks|Dirs/);
    if (!fuseUnavailableReason()) {
      const file = path.join(scratch.path, 'dave-token');
      writeFileSync(file, token, { mode: 0o600 });
      const dir = path.join(scratch.path, 'mnt-dave');
      const mount = await startMount(cluster, dir, ['--token-file', file]);
      try {
        const sizes = await sh(`df -B1 --output=size,used ${dir} | tail -1`);
        const [size, used] = sizes.stdout.trim().split(/\s+/).map(Number);
        expect(size, sizes.stderr).toBe(1024 * 1024);
        expect(used).toBe(4096); // 22 bytes: one block
      } finally {
        await mount.stop();
      }
    }
    const rm = await cli(admin(), ['quota', 'rm', '--tenant', 'd']);
    expect(rm.code, rm.stderr).toBe(0);
  });
});
