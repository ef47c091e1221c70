// strata export / import: a subtree to a real S3-protocol server (s3rver) and back into a second,
// empty cluster, byte-identical with modes, owners, times and symlinks; and the refusals.
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Strata } from '../client/index.js';
import { exportTree } from '../client/backup/export.js';
import type { ObjectTier } from '../common/object-tier.js';
import { startCluster, type CliResult, type TestCluster } from './harness/cluster.js';
import { expectOneLineError as expectOneLineErrorWith } from './harness/cli-errors.js';

const expectOneLineError = (result: CliResult, code: number, pattern: RegExp) => expectOneLineErrorWith(result, code, pattern, [S3_SECRET_KEY]);
import { tempDir, type TempDir } from './harness/ports.js';
import { S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, s3Env } from './harness/s3.js';

const MiB = 1024 * 1024;
const BUCKET = 'backups';


interface Snapshot {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  atimeMs: number;
  size?: number;
  sha256?: string;
  target?: string;
}

/** Every entry under root (root itself as ''), with attributes and a content hash. */
async function snapshot(client: Strata, root: string): Promise<Record<string, Snapshot>> {
  const out: Record<string, Snapshot> = {};
  const visit = async (relative: string) => {
    const full = relative === '' ? root : `${root}/${relative}`;
    const s = await client.stat(full);
    const entry: Snapshot = { type: s.type, mode: s.mode, uid: s.uid, gid: s.gid, mtimeMs: s.mtimeMs, atimeMs: s.atimeMs };
    if (s.isFile()) {
      entry.size = s.size;
      entry.sha256 = createHash('sha256').update(await client.readFile(full, { keepAtime: true })).digest('hex');
    }
    if (s.isSymbolicLink()) entry.target = s.target;
    out[relative] = entry;
    if (s.isDirectory()) for (const child of await client.readdir(full)) await visit(relative === '' ? child.name : `${relative}/${child.name}`);
  };
  await visit('');
  return out;
}

describe('export / import', () => {
  let s3: S3Server;
  let source: TestCluster;
  let target: TestCluster;
  let tmp: TempDir;
  let credentialsFile: string;
  let s3Flags: string[];
  let original: Record<string, Snapshot>;

  beforeAll(async () => {
    s3 = await S3Server.start();
    await s3.createBucket(BUCKET);
    tmp = await tempDir('export-test');
    credentialsFile = path.join(tmp.path, 'creds.json');
    writeFileSync(credentialsFile, JSON.stringify({ accessKeyId: S3_ACCESS_KEY, secretAccessKey: S3_SECRET_KEY }));
    s3Flags = ['--endpoint', s3.endpoint, '--path-style'];
    [source, target] = await Promise.all([
      startCluster({ datanodes: 1, replication: 1, chunkSize: '1MiB' }),
      startCluster({ datanodes: 1, replication: 1, chunkSize: '1MiB' }),
    ]);

    // The tree: nested dirs, files of several sizes (empty; > 16 MiB = several chunks AND a
    // multipart upload), symlinks (one dangling), distinctive modes, owners and times.
    const client = source.client();
    await client.mkdir('/data/sub/deeper', { parents: true });
    await client.mkdir('/data/empty-dir');
    await client.writeFile('/data/empty.txt', Buffer.alloc(0));
    await client.writeFile('/data/small.txt', 'hello, strata');
    await client.writeFile('/data/sub/three-chunks.bin', randomBytes(2 * MiB + 777));
    await client.writeFile('/data/sub/deeper/big.bin', randomBytes(17 * MiB + 5));
    await client.symlink('sub/deeper/big.bin', '/data/link-to-big');
    await client.symlink('../nowhere', '/data/sub/dangling');
    const attrs: [string, number][] = [
      ['/data/empty.txt', 0o600],
      ['/data/small.txt', 0o644],
      ['/data/sub/three-chunks.bin', 0o4755],
      ['/data/sub/deeper/big.bin', 0o640],
      ['/data/link-to-big', 0o777],
      ['/data/sub/dangling', 0o777],
      ['/data/empty-dir', 0o700],
      ['/data/sub/deeper', 0o751],
      ['/data/sub', 0o2775],
      ['/data', 0o750],
    ];
    // Children before parents, as import does, so the times stick.
    for (const [i, [p, mode]] of attrs.entries()) {
      await client.setattr(p, { mode, uid: 1000 + i, gid: 2000 + i, mtimeMs: 1_500_000_000_000 + i * 86_400_123, atimeMs: 1_600_000_000_000 + i * 1_000 });
    }
    original = await snapshot(client, '/data');
  });

  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
    await s3?.stop();
    await tmp?.cleanup();
  });

  test('round trip into a second cluster is identical: bytes, modes, owners, times, symlinks', async () => {
    const exported = await source.cli(['export', '/data', `s3://${BUCKET}/run1`, ...s3Flags, '--json'], { env: s3Env });
    expect(exported.code, exported.stderr).toBe(0);
    const summary = JSON.parse(exported.stdout);
    expect(summary).toMatchObject({ files: 4, dirs: 4, symlinks: 2, bytes: 13 + 2 * MiB + 777 + 17 * MiB + 5, unstable: [], changed: [], vanished: [] });

    // Plain text summary + credentials from a file (no AWS_* variables) on the import side.
    const imported = await target.cli(['import', `s3://${BUCKET}/run1/`, '/restored', ...s3Flags, '--credentials-file', credentialsFile]);
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stdout).toMatch(/^imported s3:\/\/backups\/run1\/ into \/restored: 4 files, 4 dirs, 2 symlinks, .* in [\d.]+ s\n$/);

    const restored = await snapshot(target.client(), '/restored');
    expect(Object.keys(restored).sort()).toEqual(Object.keys(original).sort());
    expect(restored).toEqual(original);
    expect(original['sub/three-chunks.bin'].mode).toBe(0o4755);
    expect(original['sub'].mtimeMs).toBe(1_500_000_000_000 + 8 * 86_400_123);

    // The manifest is there, lists every entry, and each file's object holds exactly its bytes.
    const tier = s3.tier('check', BUCKET, 'run1/');
    try {
      const manifest = JSON.parse((await readObject(tier, 'run1/manifest.json')).toString());
      expect(manifest.format).toBe('strata-export');
      expect(manifest.entries.map((e: { path: string }) => e.path).sort()).toEqual(Object.keys(original).sort());
      for (const entry of manifest.entries.filter((e: { type: string }) => e.type === 'file')) {
        const bytes = await readObject(tier, 'run1/' + entry.key);
        expect(createHash('sha256').update(bytes).digest('hex')).toBe(original[entry.path].sha256);
      }
    } finally {
      tier.close();
    }
  });

  test('refusals: an existing export without --force, a non-empty target, a missing bucket, bad input', async () => {
    const again = await source.cli(['export', '/data', `s3://${BUCKET}/run2`, ...s3Flags], { env: s3Env });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^exported \/data to s3:\/\/backups\/run2\/: 4 files, 4 dirs, 2 symlinks/);
    const keysBefore = await listKeys('run2/');

    expectOneLineError(await source.cli(['export', '/data', `s3://${BUCKET}/run2`, ...s3Flags], { env: s3Env }), 4, /already there.*--force/);
    expect(await listKeys('run2/')).toEqual(keysBefore);

    // --force replaces it, and the replaced export's objects are deleted once the new manifest is in.
    const forced = await source.cli(['export', '/data', `s3://${BUCKET}/run2`, ...s3Flags, '--force', '--json'], { env: s3Env });
    expect(forced.code, forced.stderr).toBe(0);
    expect(JSON.parse(forced.stdout).replacedObjects).toBe(4);
    const keysAfter = await listKeys('run2/');
    expect(keysAfter).toHaveLength(5);
    expect(keysAfter.filter((k) => keysBefore.includes(k))).toEqual(['run2/manifest.json']);

    // Import target not empty: refused, nothing changed.
    const client = target.client();
    await client.mkdir('/occupied');
    await client.writeFile('/occupied/keep.txt', 'mine');
    expectOneLineError(await target.cli(['import', `s3://${BUCKET}/run2`, '/occupied', ...s3Flags], { env: s3Env }), 5, /\/occupied: directory not empty/);
    expect((await client.readdir('/occupied')).map((e) => e.name)).toEqual(['keep.txt']);
    expectOneLineError(await target.cli(['import', `s3://${BUCKET}/run2`, '/occupied/keep.txt', ...s3Flags], { env: s3Env }), 4, /already exists/);

    // An empty directory is a fine target.
    await client.mkdir('/empty-target');
    const intoEmpty = await target.cli(['import', `s3://${BUCKET}/run2`, '/empty-target', ...s3Flags], { env: s3Env });
    expect(intoEmpty.code, intoEmpty.stderr).toBe(0);
    expect(await snapshot(client, '/empty-target')).toEqual(original);

    // Missing bucket, missing source, bad URL, no manifest: one line, non-zero, nothing written.
    expectOneLineError(await source.cli(['export', '/data', 's3://no-such-bucket/x', ...s3Flags], { env: s3Env }), 3, /bucket does not exist/);
    expectOneLineError(await source.cli(['export', '/nope', `s3://${BUCKET}/run3`, ...s3Flags], { env: s3Env }), 3, /\/nope: no such file or directory/);
    expectOneLineError(await source.cli(['export', '/data', 'http://bucket/x', ...s3Flags], { env: s3Env }), 2, /invalid URL 'http:\/\/bucket\/x'/);
    expectOneLineError(await source.cli(['export', '/data', `s3://${BUCKET}/run3`, '--endpoint', 'ftp://x', '--path-style'], { env: s3Env }), 2, /invalid endpoint/);
    expect(await listKeys('run3/')).toEqual([]);
    expectOneLineError(await target.cli(['import', `s3://${BUCKET}/never`, '/from-nothing', ...s3Flags], { env: s3Env }), 3, /no export manifest/);
    expectOneLineError(await target.cli(['import', 's3://no-such-bucket/x', '/from-nothing', ...s3Flags], { env: s3Env }), 3, /bucket does not exist/);
    expect(await client.exists('/from-nothing')).toBe(false);

    // A manifest that is not one: one line.
    const tier = s3.tier('check', BUCKET);
    try {
      await tier.put('junk/manifest.json', Buffer.from('{"format": "something else"}'));
    } finally {
      tier.close();
    }
    expectOneLineError(await target.cli(['import', `s3://${BUCKET}/junk`, '/from-junk', ...s3Flags], { env: s3Env }), 2, /not a strata export manifest/);
    expect(await client.exists('/from-junk')).toBe(false);
  });

  test('a damaged object fails the import, naming the file, which is not left behind', async () => {
    const exported = await source.cli(['export', '/data', `s3://${BUCKET}/run4`, ...s3Flags], { env: s3Env });
    expect(exported.code, exported.stderr).toBe(0);
    const tier = s3.tier('check', BUCKET);
    try {
      const manifest = JSON.parse((await readObject(tier, 'run4/manifest.json')).toString());
      const entry = manifest.entries.find((e: { path: string }) => e.path === 'sub/three-chunks.bin');
      // Same size, one byte different: only the sha256 can tell.
      const bytes = await readObject(tier, 'run4/' + entry.key);
      bytes[MiB + 3] ^= 0xff;
      await tier.put('run4/' + entry.key, bytes);
    } finally {
      tier.close();
    }
    const result = await target.cli(['import', `s3://${BUCKET}/run4`, '/damaged', ...s3Flags], { env: s3Env });
    expectOneLineError(result, 9, /\/damaged\/sub\/three-chunks\.bin: .*damaged \(sha256 differs/);
    expect(await target.client().exists('/damaged/sub/three-chunks.bin')).toBe(false);
  });

  test('a single file exports and imports too (into an absent path, parents created)', async () => {
    const exported = await source.cli(['export', '/data/sub/three-chunks.bin', `s3://${BUCKET}/single`, ...s3Flags], { env: s3Env });
    expect(exported.code, exported.stderr).toBe(0);
    expect(exported.stdout).toMatch(/: 1 files, 0 dirs, 0 symlinks/);
    const imported = await target.cli(['import', `s3://${BUCKET}/single`, '/singles/copy.bin', ...s3Flags], { env: s3Env });
    expect(imported.code, imported.stderr).toBe(0);
    const copy = await snapshot(target.client(), '/singles/copy.bin');
    expect(copy['']).toEqual(original['sub/three-chunks.bin']);
  });

  test('a file changed while read is read again; one that never holds still is reported unstable', async () => {
    const client = source.client();
    await client.mkdir('/moving');
    await client.writeFile('/moving/once.txt', 'first version');
    await client.writeFile('/moving/always.txt', 'first version');
    // A client whose reads of these files race a writer: once.txt changes during its first read
    // only, always.txt during every read.
    let writes = 0;
    const racing = Object.create(client) as Strata;
    racing.createReadStream = async (p, options) => {
      const stream = await client.createReadStream(p, options);
      if (p === '/moving/always.txt' || (p === '/moving/once.txt' && !racedOnce)) {
        if (p === '/moving/once.txt') racedOnce = true;
        await client.writeFile(p, `version ${++writes} ` + 'x'.repeat(writes));
      }
      return stream;
    };
    let racedOnce = false;
    const tier = s3.tier('check', BUCKET, 'moving/');
    try {
      const result = await exportTree(racing, tier, '/moving');
      expect(result.unstable.map((u) => u.path)).toEqual(['/moving/always.txt']);
      expect(result.unstable[0].reason).toMatch(/still changing after 3 reads/);
      const manifest = JSON.parse((await readObject(tier, 'moving/manifest.json')).toString());
      const byPath = Object.fromEntries(manifest.entries.map((e: { path: string }) => [e.path, e]));
      // once.txt: read again after the change, so its entry describes the file as it is now.
      const now = await client.readFile('/moving/once.txt');
      expect(byPath['once.txt'].sha256).toBe(createHash('sha256').update(now).digest('hex'));
      expect(byPath['once.txt'].unstable).toBeUndefined();
      expect(byPath['once.txt'].mtimeMs).toBe((await client.stat('/moving/once.txt')).mtimeMs);
      // always.txt: the object still matches its entry's size and sha256, flagged unstable.
      const object = await readObject(tier, 'moving/' + byPath['always.txt'].key);
      expect(byPath['always.txt']).toMatchObject({ unstable: true, size: object.length, sha256: createHash('sha256').update(object).digest('hex') });
    } finally {
      tier.close();
    }
  });

  async function listKeys(prefix: string): Promise<string[]> {
    const tier = s3.tier('check', BUCKET);
    try {
      const keys: string[] = [];
      for await (const page of tier.list(prefix)) keys.push(...page.map((o) => o.key));
      return keys.sort();
    } finally {
      tier.close();
    }
  }
});

async function readObject(tier: ObjectTier, key: string): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of await tier.get(key)) pieces.push(piece as Buffer);
  return Buffer.concat(pieces);
}
