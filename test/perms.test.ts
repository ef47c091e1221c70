// Owner, group and mode bits enforced by the coordinator (coordinator/authz/posix-access.ts) for
// two users of one tenant: a real coordinator with --auth oidc against a Keycloak-shaped realm on
// loopback (harness/oidc-realm.ts), a real data node, the SDK (session stream and unary RPCs, by
// path and by inode), the CLI and the mount. And a cluster with auth off, unchanged.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TokenSource } from '../client/auth/token-source.js';
import { CoordinatorClient } from '../client/coordinator-client.js';
import { Strata, StrataError } from '../client/index.js';
import { expectOneLineError } from './harness/cli-errors.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { fuseUnavailableReason, sh, startMount } from './harness/mount.js';
import { OidcRealm } from './harness/oidc-realm.js';
import { tempDir, type TempDir } from './harness/ports.js';

const ANN = 3001;
const BEN = 3002;
const TEAM = 3100;

describe('owner, group and mode bits, enforced by the coordinator (auth on)', () => {
  let realm: OidcRealm;
  let cluster: TestCluster;
  let scratch: TempDir;
  const clients: Strata[] = [];
  const ann = () => realm.token('ann', { tenant: 't', uid: ANN, gid: ANN, gids: [TEAM] });
  const ben = () => realm.token('ben', { tenant: 't', uid: String(BEN), gid: BEN });
  const admin = () => realm.token('ops', { realm_access: { roles: ['strata-admin'] } });
  const connect = (token: () => string, options: { session?: boolean } = {}) => {
    const client = Strata.connect({ coordinators: cluster.coordinatorList, failoverTimeoutMs: 3000, tokenProvider: token, ...options });
    clients.push(client);
    return client;
  };
  const cli = (token: string, args: string[]) => cluster.cli(args, { env: { STRATA_TOKEN: token, XDG_CONFIG_HOME: path.join(scratch.path, 'no-login') } });
  const unary: CoordinatorClient[] = [];
  /** Raw unary RPCs as `token`'s holder (what a caller not using the SDK may send). */
  const rpc = (token: () => string) => {
    const client = new CoordinatorClient({ addresses: [cluster.coordinatorList], callTimeoutMs: 10_000, failoverTimeoutMs: 10_000, session: false, tokens: new TokenSource(token) });
    unary.push(client);
    return client;
  };
  const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as StrataError);
  const denied = async (what: string, p: Promise<unknown>) => {
    const err = await failure(p);
    expect(err?.kind, `${what}: ${err?.message}`).toBe('PermissionDenied');
  };

  beforeAll(async () => {
    realm = await OidcRealm.start();
    scratch = await tempDir('perms');
    cluster = await startCluster({ datanodes: 1, replication: 1, coordinatorArgs: realm.coordinatorArgs(), tokenProvider: admin });
    const a = connect(ann);
    await a.mkdir('/home', { mode: 0o755 });
    await a.writeFile('/home/private.txt', 'ann only', { mode: 0o600 });
    await a.writeFile('/home/public.txt', 'anyone reads', { mode: 0o644 });
    await a.mkdir('/home/closed', { mode: 0o700 });
    await a.writeFile('/home/closed/inside.txt', 'behind a 0700 dir', { mode: 0o644 });
    await a.writeFile('/home/closed/open.txt', 'writable, behind a 0700 dir', { mode: 0o666 });
    await a.mkdir('/shared', { mode: 0o1777 });
    await a.writeFile('/shared/ann.txt', 'in a sticky dir', { mode: 0o666 });
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    unary.forEach((c) => c.close());
    await cluster?.stop();
    await realm?.stop();
    await scratch?.cleanup();
  });

  test('the tenant root is sticky and world-writable; entries belong to the token\'s uid and gid', async () => {
    const a = connect(ann);
    expect((await a.stat('/')).mode & 0o7777).toBe(0o1777);
    expect(await a.stat('/home/private.txt')).toMatchObject({ uid: ANN, gid: ANN });
    expect((await a.stat('/shared')).mode & 0o7777).toBe(0o1777);
    // A decimal-string uid claim (Keycloak's user attributes) is taken too; a client-sent owner is not.
    expect(await connect(ben).mkdir('/ben-dir', { owner: { uid: ANN, gid: 0 } })).toMatchObject({ uid: BEN, gid: BEN });
  });

  test('by path, session and unary: ben cannot read a 0600 file of ann, write in her 0755 dir, chmod/chown her files or delete in a sticky dir', async () => {
    for (const session of [true, false]) {
      const b = connect(ben, { session });
      const at = (what: string) => `${what} session=${session}`;
      await denied(at('read 0600'), b.readFile('/home/private.txt'));
      expect((await b.readFile('/home/public.txt')).toString()).toBe('anyone reads');
      await denied(at('create in 0755'), b.writeFile('/home/evil.txt', 'x'));
      await denied(at('mkdir in 0755'), b.mkdir('/home/evil'));
      await denied(at('symlink in 0755'), b.symlink('/etc/passwd', '/home/evil-link'));
      await denied(at('truncate 0644'), b.writeFile('/home/public.txt', 'overwritten'));
      await denied(at('rm in 0755'), b.rm('/home/public.txt'));
      await denied(at('rename out of 0755'), b.rename('/home/public.txt', '/shared/taken.txt'));
      await denied(at('chmod'), b.setattr('/home/private.txt', { mode: 0o666 }));
      await denied(at('chown'), b.setattr('/home/private.txt', { uid: BEN }));
      await denied(at('chgrp'), b.setattr('/home/private.txt', { gid: BEN }));
      await denied(at('utimes'), b.setattr('/home/public.txt', { mtimeMs: 1000 }));
      await denied(at('path through 0700'), b.stat('/home/closed/inside.txt'));
      await denied(at('list 0700'), b.readdir('/home/closed'));
      // Sticky: the file is 0666 and the directory 1777, yet only ann (or the dir's owner) removes it.
      await denied(at('rm in sticky'), b.rm('/shared/ann.txt'));
      await denied(at('rename in sticky'), b.rename('/shared/ann.txt', '/shared/mine.txt'));
      // What 0666 does allow: writing the file's bytes.
      await b.writeFile('/shared/ann.txt', `ben wrote ${session}`);
      // His own entries in the sticky dir are his to remove.
      await b.writeFile(`/shared/ben-${session}.txt`, 'ben');
      await b.rm(`/shared/ben-${session}.txt`);
    }
    const a = connect(ann);
    expect((await a.readFile('/home/private.txt')).toString()).toBe('ann only');
    expect((await a.readFile('/home/public.txt')).toString()).toBe('anyone reads');
    expect(await a.stat('/home/private.txt')).toMatchObject({ uid: ANN, gid: ANN, mode: expect.any(Number) });
    expect((await a.stat('/home/private.txt')).mode & 0o7777).toBe(0o600);
    expect((await a.readdir('/home')).map((e) => e.name).sort()).toEqual(['closed', 'private.txt', 'public.txt']);
    expect((await a.readFile('/shared/ann.txt')).toString()).toBe('ben wrote false');
    // Each denial is logged with who, the uid, and the rule.
    const log = readFileSync(cluster.coordinators[0].logFile, 'utf8');
    expect(log).toMatch(/"subject":"ben".*"uid":3002.*sticky directory/);
    expect(log).toMatch(/"uid":3002.*needs read \(r\) on the file \(mode 0600 owner 3001:3001\)/);
  });

  test('by inode on the session stream: the same refusals', async () => {
    const a = connect(ann);
    const b = connect(ben).inodes;
    const home = (await a.stat('/home')).ino;
    const closed = (await a.stat('/home/closed')).ino;
    const shared = (await a.stat('/shared')).ino;
    const priv = (await a.stat('/home/private.txt')).ino;
    await denied('create', b.create(home, 'evil.txt', { mode: 0o644 }));
    await denied('mkdir', b.mkdir(home, 'evil', 0o755));
    await denied('unlink', b.unlink(home, 'public.txt'));
    await denied('unlink in sticky', b.unlink(shared, 'ann.txt'));
    await denied('rename in sticky', b.rename(shared, 'ann.txt', shared, 'x.txt'));
    await denied('lookup in 0700', b.lookup(closed, 'inside.txt'));
    await denied('readdirplus of 0700', b.readdirplus(closed));
    await denied('chmod', b.setattr(priv, { mode: 0o777 }));
    await denied('truncate', b.setattr(priv, { size: 0 }));
    await denied('link into 0755', b.link(priv, home, 'another-name'));
    // Linux's protected_hardlinks: no name of ann's 0600 file in ben's own (writable) directory.
    const bens = (await connect(ben).stat('/ben-dir')).ino;
    await denied('link of a file he cannot read and write', b.link(priv, bens, 'pinned'));
    await denied('a device node', b.mknod(bens, 'dev', 'char-device', 0o666, 0x0103));
    expect((await b.mknod(bens, 'pipe', 'fifo', 0o644)).uid).toBe(BEN);
    await b.unlink(bens, 'pipe');
    expect((await a.readFile('/home/private.txt')).toString()).toBe('ann only');
    expect((await a.readdir('/shared')).map((e) => e.name)).toContain('ann.txt');
  });

  test('by a guessed inode number: nothing behind ann\'s 0700 dir, though the files are 0644 and 0666', async () => {
    // Inode numbers are sequential: ben, who may stat /home/closed, could guess its files' (ann's stat stands for the guess).
    const a = connect(ann);
    const inside = (await a.stat('/home/closed/inside.txt')).ino;
    const open = (await a.stat('/home/closed/open.txt')).ino;
    const pub = (await connect(ben).stat('/home/public.txt')).ino;
    const bens = (await connect(ben).stat('/ben-dir')).ino;
    const b = connect(ben).inodes;
    const raw = rpc(ben);
    await denied('session getattr', b.getattr(inside));
    expect((await failure(b.getattr(inside)))?.message).toMatch(/needs search \(x\) on a directory on the path \(mode 0700 owner 3001:3001\)/);
    await denied('unary GetChunks (the read grant)', raw.call('GetChunks', { ino: inside, fromIndex: 0, count: 0 }));
    await denied('unary AllocateChunk of a 0666 file', raw.call('AllocateChunk', { ino: open, ackPolicy: 'one' }));
    await denied('setattr (times) of a 0666 file', b.setattr(open, { mtimeMs: 1000 }));
    await denied('linkAt of a 0666 file into his own dir', b.link(open, bens, 'pinned-open'));
    // Outside the 0700 dir the same routes answer him; and ann, who may search it, reaches hers by number.
    expect((await b.getattr(pub)).ino).toBe(pub);
    expect((await raw.call<{ chunks: unknown[] }>('GetChunks', { ino: pub, fromIndex: 0, count: 0 })).chunks.length).toBe(1);
    expect((await connect(ann).inodes.getattr(inside)).ino).toBe(inside);
    expect((await rpc(ann).call<{ chunks: unknown[] }>('GetChunks', { ino: inside, fromIndex: 0, count: 0 })).chunks.length).toBe(1);
  });

  test('utimes as utimensat: a writer who is not the owner sets "now" (the coordinator\'s clock), only the owner a chosen time', async () => {
    const a = connect(ann);
    await a.writeFile('/shared/touched.txt', 'ann', { mode: 0o666 });
    await a.setattr('/shared/touched.txt', { mtimeMs: 1_000, atimeMs: 1_000 });
    for (const session of [true, false]) {
      const b = connect(ben, { session });
      const before = Date.now();
      // The time sent beside a "now" is not taken: 5 would be a chosen time in disguise.
      const touched = await b.setattr('/shared/touched.txt', { mtimeMs: 5, mtimeNow: true, atimeNow: true });
      expect(touched.mtimeMs).toBeGreaterThanOrEqual(before - 1_000);
      expect(touched.atimeMs).toBeGreaterThanOrEqual(before - 1_000);
      await denied(`chosen time on a 0666 file session=${session}`, b.setattr('/shared/touched.txt', { mtimeMs: 1_000 }));
      await denied(`"now" on a 0644 file session=${session}`, b.setattr('/home/public.txt', { mtimeNow: true }));
    }
    const ino = (await a.stat('/shared/touched.txt')).ino;
    await denied('session setattr by inode, chosen time', connect(ben).inodes.setattr(ino, { atimeMs: 1_000 }));
    expect((await connect(ben).inodes.setattr(ino, { atimeNow: true })).atimeMs).toBeGreaterThan(1_000);
    expect((await a.setattr('/shared/touched.txt', { mtimeMs: 2_000 })).mtimeMs).toBe(2_000);
  });

  test('opening an existing file with create + allocate_first_chunk: a write grant only to a writer', async () => {
    // In the sticky 1777 dir ben may make entries, so his create of ann's existing 0644 file opens it.
    const a = connect(ann);
    await a.writeFile('/shared/ann-ro.txt', 'ann writes', { mode: 0o644 });
    const shared = (await a.stat('/shared')).ino;
    const b = connect(ben).inodes;
    const opened = await b.create(shared, 'ann-ro.txt', { allocateFirstChunk: true });
    expect(opened.stat.size).toBe('ann writes'.length);
    expect(opened.grant, 'a grant to write ann\'s 0644 file').toBeUndefined();
    const reply = await rpc(ben).call<{ firstChunk?: { pipeline?: unknown[] } | null }>('Create', { path: '/shared/ann-ro.txt', allocateFirstChunk: true });
    expect(reply.firstChunk?.pipeline ?? []).toEqual([]);
    // A file he may write (0666) still comes with its grant.
    expect((await b.create(shared, 'ann.txt', { allocateFirstChunk: true })).grant).toBeDefined();
    expect((await a.readFile('/shared/ann-ro.txt')).toString()).toBe('ann writes');
    await a.rm('/shared/ann-ro.txt');
  });

  test('create (open O_CREAT) of an existing file in a directory he may not write: opened as POSIX says, not refused', async () => {
    // /home is ann's 0755: ben searches it but may not make entries there; open-rw.txt is 0666.
    const a = connect(ann);
    await a.writeFile('/home/open-rw.txt', 'ann wrote', { mode: 0o666 });
    const home = (await a.stat('/home')).ino;
    const closed = (await a.stat('/home/closed')).ino;
    for (const session of [true, false]) {
      const b = connect(ben, { session });
      const at = (what: string) => `${what} session=${session}`;
      // By path: the SDK's writeFile is Create with truncate, then the chunks.
      await b.writeFile('/home/open-rw.txt', `ben wrote ${session}`);
      expect((await a.readFile('/home/open-rw.txt')).toString()).toBe(`ben wrote ${session}`);
      expect((await b.create('/home/open-rw.txt')).size).toBe(`ben wrote ${session}`.length);
      // O_EXCL on an existing name: Exists (he may search /home, so he may know it is there).
      expect((await failure(b.create('/home/open-rw.txt', { exclusive: true })))?.kind, at('exclusive')).toBe('Exists');
      // Truncating a file he may not write, and a new name, stay refused.
      await denied(at('truncate 0644'), b.create('/home/public.txt', { truncate: true }));
      await denied(at('a new file in 0755'), b.create('/home/new.txt'));
      await denied(at('a new exclusive file in 0755'), b.create('/home/new.txt', { exclusive: true }));
    }
    // By inode on the session stream: opened, with its first chunk's write grant (he may write it).
    const b = connect(ben).inodes;
    const opened = await b.create(home, 'open-rw.txt', { allocateFirstChunk: true });
    expect(opened.stat.ino).toBe((await a.stat('/home/open-rw.txt')).ino);
    expect(opened.grant).toBeDefined();
    expect((await failure(b.create(home, 'open-rw.txt', { exclusive: true })))?.kind).toBe('Exists');
    await denied('a new file by inode', b.create(home, 'new.txt'));
    // Without search (x) on the directory the name's existence is not told: refused as before.
    await denied('existing 0666 file behind 0700', b.create(closed, 'open.txt'));
    await denied('exclusive behind 0700', b.create(closed, 'open.txt', { exclusive: true }));
    await denied('by path behind 0700', connect(ben).writeFile('/home/closed/open.txt', 'x'));
    expect((await a.readFile('/home/closed/open.txt')).toString()).toBe('writable, behind a 0700 dir');
    // The CLI: put over it works; a new name there is one line, exit 6.
    const local = path.join(scratch.path, 'ben-local.txt');
    writeFileSync(local, 'ben put');
    const token = ben();
    const put = await cli(token, ['put', local, '/home/open-rw.txt']);
    expect(put.code, put.stderr).toBe(0);
    expect((await a.readFile('/home/open-rw.txt')).toString()).toBe('ben put');
    expectOneLineError(await cli(token, ['put', local, '/home/new.txt']), 6, /permission denied: .*needs write and search \(wx\) on the directory/, [token]);
    expect((await a.readdir('/home')).map((e) => e.name)).not.toContain('new.txt');
    await a.rm('/home/open-rw.txt');
  });

  test('ann, the owner, can; chgrp only to her own groups; the admin acts as root', async () => {
    const a = connect(ann);
    expect((await a.setattr('/home/private.txt', { mode: 0o640 })).mode & 0o777).toBe(0o640);
    expect(await a.setattr('/home/private.txt', { gid: TEAM })).toMatchObject({ gid: TEAM });
    await denied('chgrp to a group she is not in', a.setattr('/home/private.txt', { gid: BEN }));
    await denied('chown even by the owner', a.setattr('/home/private.txt', { uid: BEN }));
    await a.setattr('/home/public.txt', { mtimeMs: 1_000_000 });
    // A file made 0444 (cp of a read-only file) is written by its owner after the create; not by others.
    await a.writeFile('/home/ro.txt', 'read-only copy', { mode: 0o444 });
    expect((await a.readFile('/home/ro.txt')).toString()).toBe('read-only copy');
    await denied('write 0444 of another', connect(ben).writeFile('/home/ro.txt', 'x'));
    await a.rm('/home/ro.txt');
    await a.rename('/shared/ann.txt', '/shared/ann2.txt');
    await a.rm('/shared/ann2.txt');
    // The admin: reads anything, chowns.
    const ops = connect(admin);
    expect((await ops.readFile('/tenants/t/home/private.txt')).toString()).toBe('ann only');
    expect(await ops.setattr('/tenants/t/home/private.txt', { uid: BEN, gid: BEN })).toMatchObject({ uid: BEN, gid: BEN });
    // Now ben's (mode 0640): he reads it, ann (other) does not.
    expect((await connect(ben).readFile('/home/private.txt')).toString()).toBe('ann only');
    await denied('ann reads what is now ben\'s 0640', a.readFile('/home/private.txt'));
    await ops.setattr('/tenants/t/home/private.txt', { uid: ANN, gid: ANN, mode: 0o600 });
  });

  test('the CLI: refusals are one line, exit 6; an unusable uid claim refuses the token', async () => {
    const token = ben();
    expectOneLineError(await cli(token, ['cat', '/home/private.txt']), 6, /permission denied: .*needs read \(r\) on the file/, [token]);
    expectOneLineError(await cli(token, ['rm', '/home/public.txt']), 6, /permission denied: .*needs write and search \(wx\) on the directory/, [token]);
    expectOneLineError(await cli(token, ['mkdir', '/home/x']), 6, /permission denied/, [token]);
    const ok = await cli(token, ['cat', '/home/public.txt']);
    expect(ok.stdout, ok.stderr).toBe('anyone reads');
    const bad = realm.token('eve', { tenant: 't', uid: 'root' });
    expectOneLineError(await cli(bad, ['ls', '/']), 6, /token claim 'uid' is not a uid/, [bad]);
  });

  test.skipIf(!!fuseUnavailableReason())('through ben\'s mount (local root): the coordinator refuses what ben may not do', async () => {
    const file = path.join(scratch.path, 'ben-token');
    writeFileSync(file, ben(), { mode: 0o600 });
    const dir = path.join(scratch.path, 'mnt-ben');
    const mount = await startMount(cluster, dir, ['--token-file', file]);
    try {
      for (const cmd of [`cat ${dir}/home/private.txt`, `echo x > ${dir}/home/evil.txt`, `rm -f ${dir}/home/public.txt`, `chmod 777 ${dir}/home/public.txt`]) {
        const refused = await sh(cmd);
        expect(refused.code, cmd).not.toBe(0);
        expect(refused.stderr, cmd).toMatch(/Permission denied|Operation not permitted/);
      }
      expect((await sh(`cat ${dir}/home/public.txt`)).stdout).toBe('anyone reads');
      const made = await sh(`echo mine > ${dir}/shared/via-mount.txt && stat -c %u:%g ${dir}/shared/via-mount.txt`);
      expect(made.stdout.trim(), made.stderr).toBe(`${BEN}:${BEN}`);
    } finally {
      await mount.stop();
    }
    const a = connect(ann);
    expect((await a.readFile('/home/private.txt')).toString()).toBe('ann only');
    expect((await a.stat('/home/public.txt')).mode & 0o777).toBe(0o644);
  });
});

describe('auth off: unchanged', () => {
  let cluster: TestCluster;
  const clients: Strata[] = [];
  beforeAll(async () => {
    cluster = await startCluster({ datanodes: 1, replication: 1 });
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await cluster?.stop();
  });

  test('the client-sent owner is kept, and mode bits are not checked by the coordinator', async () => {
    const client = Strata.connect({ coordinators: cluster.coordinatorList });
    clients.push(client);
    expect(await client.mkdir('/locked', { mode: 0o700, owner: { uid: 5, gid: 6 } })).toMatchObject({ uid: 5, gid: 6 });
    await client.writeFile('/locked/f.txt', 'x', { mode: 0o600 });
    expect(await client.setattr('/locked/f.txt', { uid: 7, gid: 8, mode: 0o000 })).toMatchObject({ uid: 7, gid: 8 });
    expect((await client.readFile('/locked/f.txt')).toString()).toBe('x');
    await client.rm('/locked', { recursive: true });
  });
});
