// `strata mount` end to end: a real cluster (embedded metadata, 3 data nodes, 1 MiB chunks so
// multi-chunk paths run quickly) and real FUSE mounts, each its own process. Every access to a
// mount happens in a child process with a deadline, so a hung mount fails a test, not the run.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { fuseUnavailableReason, type MountProcess, sh, type ShResult, startMount } from './harness/mount.js';
import { tempDir, type TempDir } from './harness/ports.js';

const skipReason = fuseUnavailableReason();
if (skipReason) console.log(`skipping FUSE tests: ${skipReason}`);

/** Fails with the script's stderr, so a failed step says what went wrong. */
function ok(result: ShResult): string {
  expect(result.code, `exit ${result.code}\n${result.stderr}\n${result.stdout}`).toBe(0);
  return result.stdout;
}

async function mountsList(): Promise<string> {
  return readFile('/proc/mounts', 'utf8');
}

describe.skipIf(!!skipReason)('strata mount (FUSE)', () => {
  let cluster: TestCluster;
  let work: TempDir;
  let mount: MountProcess | undefined;
  const extraMounts: MountProcess[] = [];
  const extraClusters: TestCluster[] = [];
  let M: string; // the main mount point
  let L: string; // a local scratch directory, outside every mount

  beforeAll(async () => {
    work = await tempDir('fuse');
    M = path.join(work.path, 'mnt');
    L = path.join(work.path, 'local');
    ok(await sh(`mkdir -p ${L}`));
    cluster = await startCluster({ chunkSize: '1MiB' });
    mount = await startMount(cluster, M);
  });

  afterAll(async () => {
    // Each step on its own: a failed one must not leave mounts or processes behind.
    for (const m of [...extraMounts, mount]) await m?.stop().catch((err) => console.error(err));
    for (const c of [...extraClusters, cluster]) await c?.stop().catch((err) => console.error(err));
    await work?.cleanup();
  });

  test('a 200 MiB file written with dd (bs=1M) reads back identical', async () => {
    const script = `head -c 200M /dev/urandom > ${L}/big && dd if=${L}/big of=${M}/big bs=1M status=none
      sha256sum < ${L}/big; sha256sum < ${M}/big; stat -c %s ${M}/big; rm ${L}/big`;
    const sums = ok(await sh(script, { timeoutMs: 110_000 })).split('\n');
    expect(sums[1]).toBe(sums[0]);
    expect(sums[2]).toBe(String(200 * 1024 * 1024));
  });

  test('cp of a file, then cmp', async () => {
    ok(await sh(`head -c 3500000 /dev/urandom > ${L}/cp-src && cp ${L}/cp-src ${M}/cp-dst && cmp ${L}/cp-src ${M}/cp-dst`));
  });

  test('random writes into an existing file equal a local model', async () => {
    // Python writes the same bytes at the same offsets into the mounted file and a model
    // buffer, re-reading the file through its open descriptor as it goes.
    const script = path.join(L, 'random-writes.py');
    await writeFile(
      script,
      `import random, sys
path, model = sys.argv[1], sys.argv[2]
rnd = random.Random(20240611)
data = bytearray(rnd.randbytes(3 * 1024 * 1024 + 4321))
with open(path, 'wb') as f: f.write(data)
with open(path, 'r+b', buffering=0) as f:
    for i in range(150):
        off, n = rnd.randrange(0, len(data) + 300000), rnd.randrange(1, 100000)
        b = rnd.randbytes(n)
        f.seek(off); f.write(b)
        if off > len(data): data.extend(bytes(off - len(data)))
        data[off:off + n] = b
        if i % 50 == 0:
            f.seek(0)
            assert f.read() == bytes(data), 'read-back mismatch after write %d' % i
with open(model, 'wb') as f: f.write(data)
`,
    );
    ok(await sh(`python3 ${script} ${M}/random ${L}/random-model && cmp ${M}/random ${L}/random-model`));
  });

  test('append, truncate shorter and longer, sparse file', async () => {
    const out = ok(
      await sh(`set -e
        printf abc > ${M}/log; printf def >> ${M}/log; printf ghi >> ${M}/log; cat ${M}/log; echo
        head -c 2500000 /dev/urandom > ${L}/t; cp ${L}/t ${M}/t
        truncate -s 1000001 ${M}/t; truncate -s 1000001 ${L}/t; cmp ${M}/t ${L}/t
        truncate -s 3000000 ${M}/t; truncate -s 3000000 ${L}/t; cmp ${M}/t ${L}/t
        stat -c %s ${M}/t
        head -c 1000 /dev/urandom > ${L}/tail
        dd if=${L}/tail of=${M}/sparse bs=1000 seek=5000 status=none
        dd if=${L}/tail of=${L}/sparse bs=1000 seek=5000 status=none
        cmp ${M}/sparse ${L}/sparse
        head -c 5000000 ${M}/sparse | tr -d '\\0' | wc -c`),
    ).split('\n');
    expect(out[0]).toBe('abcdefghi');
    expect(out[1]).toBe('3000000');
    expect(out[2].trim()).toBe('0'); // the hole reads as zeros
  });

  test('open(O_TRUNC) of a file this mount holds open with unstored bytes, as on a local disk', async () => {
    // One descriptor writes (unstored), a second opens with O_TRUNC and writes: the first's
    // bytes are gone, the second's stay; then a shell overwrite (>) shrinks the file.
    const script = path.join(L, 'trunc-open.py');
    await writeFile(
      script,
      `import os, sys
for d in sys.argv[1:]:
    p = d + '/trunc-open'
    with open(p, 'wb') as f: f.write(b'x' * 300000)
    a = os.open(p, os.O_RDWR)
    os.pwrite(a, b'A' * 5000, 100)
    b = os.open(p, os.O_WRONLY | os.O_TRUNC)
    os.pwrite(b, b'BB', 3)
    os.close(b); os.close(a)
`,
    );
    ok(await sh(`python3 ${script} ${M} ${L} && cmp ${M}/trunc-open ${L}/trunc-open && echo short > ${M}/trunc-open && cat ${M}/trunc-open`));
    expect(ok(await sh(`stat -c %s ${M}/trunc-open; od -An -c -N5 ${L}/trunc-open | tr -s ' '`))).toBe('6\n \\0 \\0 \\0 B B\n');
  });

  test('2,000 small files: created, listed, stat-ed, deleted', async () => {
    // One Python process does every step: no fork per file.
    const script = path.join(L, 'many.py');
    await writeFile(
      script,
      `import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.mkdir(d)
for i in range(n):
    with open('%s/f%d' % (d, i), 'w') as f: f.write('file %d\\n' % i)
names = os.listdir(d)
print(len(names), len(set(names) ^ {'f%d' % i for i in range(n)}))
print(sum(os.stat('%s/%s' % (d, name)).st_size == len('file %s\\n' % name[1:]) for name in names))
for name in names: os.unlink('%s/%s' % (d, name))
print(len(os.listdir(d)))
os.rmdir(d)
`,
    );
    // Bounded, not timed: on a loaded 2-core machine 2,000 fsynced creates can take minutes.
    const out = ok(await sh(`python3 ${script} ${M}/many 2000`, { timeoutMs: 230_000 })).split('\n');
    // Listed: 2,000 names, none missing or extra; stat-ed: each its size; deleted: none left.
    expect(out.slice(0, 3)).toEqual(['2000 0', '2000', '0']);
  }, 240_000);

  test('rename over an existing file is atomic for a concurrent reader', async () => {
    // The editor pattern: a writer stores each whole version under a temporary name and renames
    // it over `target`, while a reader opens and reads `target` in a loop. Versions differ in
    // size (every tenth spans two chunks) and can be rebuilt from their first line, so a read
    // that is not exactly one whole version (mixed, truncated, failing) is caught.
    // One race is libfuse's, not strata's: an open that the kernel resolved to the replaced file
    // just before the rename can reach libfuse just after it, and libfuse's path-based API answers
    // ENOENT for a file without a name before the mount sees the open. The reader opens again
    // then (once the kernel's entry for the name times out it resolves to the new file); it must
    // never stay missing past that, and a file once open
    // must read whole (the mount keeps a replaced file until its last close and opens under way).
    const script = path.join(L, 'rename.py');
    await writeFile(
      script,
      `import hashlib, os, sys, time
role, d, local = sys.argv[1], sys.argv[2], sys.argv[3]
target, done = d + '/target', local + '/rename-done'
def version(v):
    n = 1100000 if v % 10 == 9 else 3000 + (v * 7919) % 40000
    line = b'version %06d\\n' % v
    body = (line * (n // len(line) + 1))[:n]
    return body + hashlib.sha256(body).hexdigest().encode() + b'\\n'
def store(v):
    tmp = '%s/.target.%d.tmp' % (d, v)
    with open(tmp, 'wb') as f: f.write(version(v))
    os.rename(tmp, target)
if role == 'init':
    store(0)
elif role == 'write':
    try:
        for v in range(1, int(sys.argv[4]) + 1): store(v)
    finally:
        open(done, 'w').close()
else:
    reads, seen, bad, versions, vanished = 0, set(), [], {}, 0
    while not os.path.exists(done):
        # The kernel may keep resolving the name to the replaced file for the entry timeout
        # (1 s): retry for longer than that before calling the name missing.
        for attempt in range(60):
            try:
                f = open(target, 'rb')
                break
            except FileNotFoundError:
                vanished += 1
                time.sleep(0.05)
        else:
            bad.append('read %d: target missing for 3 s of opens' % reads); continue
        try:
            with f: data = f.read()
        except OSError as e:
            bad.append('read %d: %s' % (reads, e)); continue
        reads += 1
        v = int(data[8:14]) if data[:8] == b'version ' and data[8:14].isdigit() else -1
        if v >= 0 and v not in versions: versions[v] = version(v)
        if v < 0 or data != versions[v]: bad.append('read %d: %d bytes, not one whole version: %r' % (reads, len(data), data[:15]))
        else: seen.add(v)
    print(reads, len(seen), vanished)
    for b in bad[:5]: print(b)
`,
    );
    ok(await sh(`mkdir ${M}/editor && python3 ${script} init ${M}/editor ${L}`));
    const [reader, writer] = await Promise.all([
      sh(`python3 ${script} read ${M}/editor ${L}`, { timeoutMs: 100_000 }),
      sh(`python3 ${script} write ${M}/editor ${L} 100`, { timeoutMs: 90_000 }),
    ]);
    ok(writer);
    const [counts, ...bad] = ok(reader).trim().split('\n');
    expect(bad).toEqual([]);
    const [reads, versionsSeen, vanished] = counts.split(' ').map(Number);
    if (vanished > 0) console.log(`rename test: ${vanished} opens met libfuse's replaced-file race and were retried`);
    expect(reads).toBeGreaterThan(20);
    expect(versionsSeen).toBeGreaterThan(1); // the reads overlapped the renames
    expect(ok(await sh(`head -1 ${M}/editor/target; ls -A ${M}/editor`))).toBe('version 000100\ntarget\n');
  });

  test('kill -9 of a data node during a cp of a large file loses nothing', async () => {
    // Four data nodes, so replication 3 still finds three live ones with one dead.
    const MiB = 1024 * 1024;
    const four = await startCluster({ chunkSize: '1MiB', datanodes: 4, deadAfterMs: 1500 });
    extraClusters.push(four);
    const mnt = await startMount(four, path.join(work.path, 'mnt-kill'));
    extraMounts.push(mnt);
    ok(await sh(`head -c 100M /dev/urandom > ${L}/cp-big`));
    let cpDone = false;
    const cp = sh(`cp ${L}/cp-big ${mnt.dir}/big`, { timeoutMs: 100_000 }).finally(() => (cpDone = true));
    // Kill once the destination has grown past 20 MiB (as the mount sees it), while cp runs.
    let size = 0;
    while (size < 20 * MiB && !cpDone) {
      await new Promise((r) => setTimeout(r, 100));
      size = Number((await sh(`stat -c %s ${mnt.dir}/big 2>/dev/null || echo 0`, { timeoutMs: 10_000 })).stdout) || 0;
    }
    expect(cpDone, 'cp finished before a node was killed').toBe(false);
    four.datanodes[1].kill9();
    ok(await cp);
    const sums = ok(await sh(`sha256sum < ${L}/cp-big; sha256sum < ${mnt.dir}/big; rm ${L}/cp-big`, { timeoutMs: 60_000 })).split('\n');
    expect(sums[1]).toBe(sums[0]);
    await mnt.stop();
    await four.stop();
  });

  test('directories and errors: ENOTEMPTY, ENOENT, EEXIST, rename over a file; hard links and special files', async () => {
    const run = (cmd: string) => sh(`cd ${M} && ${cmd}`);
    ok(await run('mkdir d1 && mkdir d1/sub && rmdir d1/sub && touch d1/f'));
    expect((await run('rmdir d1')).stderr).toMatch(/Directory not empty/);
    expect((await run('cat missing')).stderr).toMatch(/No such file or directory/);
    expect((await run('mkdir d1')).stderr).toMatch(/File exists/);
    ok(await run('echo old > r-target && echo new > r-source && mv r-source r-target'));
    expect(ok(await run('cat r-target; ls | grep -c "^r-"'))).toBe('new\n1\n');
    // Hard links: one inode, two names; removing one keeps the bytes under the other.
    ok(await run('ln r-target d1/hard'));
    expect(ok(await run('stat -c "%h %i" r-target; stat -c "%h %i" d1/hard'))).toMatch(/^2 (\d+)\n2 \1\n$/);
    ok(await run('rm r-target'));
    expect(ok(await run('stat -c %h d1/hard; cat d1/hard'))).toBe('1\nnew\n');
    expect((await run('ln d1 d1-again')).stderr).toMatch(/hard link not allowed for directory|Operation not permitted/);
    // Special files: metadata only, with their type and device number.
    ok(await run('mkfifo d1/fifo && mknod d1/chr c 4 5 && mknod d1/blk b 8 1'));
    expect(ok(await run('stat -c "%F %t %T" d1/fifo d1/chr d1/blk'))).toBe('fifo 0 0\ncharacter special file 4 5\nblock special file 8 1\n');
    expect(ok(await run('stat -c "%h" d1 && mkdir d1/sub2 && stat -c "%h" d1'))).toBe('2\n3\n');
    ok(await run('rm d1/f d1/hard d1/fifo d1/chr d1/blk && rmdir d1/sub2 d1 && test ! -e d1'));
  });

  test('a name that is not UTF-8 is refused with EINVAL and creates nothing; UTF-8 names work', async () => {
    const run = (cmd: string) => sh(`cd ${M} && ${cmd}`);
    // The kernel passes names as bytes; bytes that are not UTF-8 would reach the coordinator as
    // U+FFFD (common/paths.ts): refused, not stored under another name than the one asked for.
    const refused = await run(`touch "$(printf 'bad\\377\\376name')"`);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/Invalid argument/);
    expect(ok(await run('ls')).split('\n').filter((n) => n.startsWith('bad'))).toEqual([]);
    ok(await run(`touch "$(printf 'caf\\303\\251')" && stat -c %s café && rm café`));
  });

  test('chmod, utimens, symlink and readlink show in stat', async () => {
    const out = ok(
      await sh(`set -e; cd ${M}; echo x > attrs; chmod 640 attrs; touch -d '2021-02-03 04:05:06' attrs
        ln -s attrs link; stat -c '%a %Y %F' attrs; stat -c %F link; readlink link; cat link
        date -d '2021-02-03 04:05:06' +%s`),
    ).split('\n');
    expect(out[0]).toBe(`640 ${out[4]} regular file`);
    expect(out.slice(1, 4)).toEqual(['symbolic link', 'attrs', 'x']);
  });

  test('git init, add, commit and fsck inside the mount', async () => {
    const git = (await sh('command -v git')).code === 0;
    if (!git) return console.log('git is not installed: skipping the git test');
    const out = ok(
      await sh(`set -e; mkdir ${M}/repo; cd ${M}/repo; export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@e GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@e
        git init -q .; seq 1 2000 > numbers; mkdir src; echo 'int main;' > src/a.c; git add .; git commit -qm first
        echo more >> numbers; git commit -qam second; git fsck --full --strict; git log --oneline | wc -l; git status --porcelain | wc -l`),
    );
    expect(out.trim().split('\n').slice(-2)).toEqual(['2', '0']);
  });

  test('df on the mount shows the cluster capacity', async () => {
    const [total, avail] = ok(await sh(`df -B1 --output=size,avail ${M} | tail -1`)).trim().split(/\s+/).map(Number);
    const fs = await cluster.client().statfs();
    expect(total).toBeGreaterThan(0);
    expect(Math.abs(total - fs.capacityBytes)).toBeLessThan(total * 0.01);
    expect(avail).toBeGreaterThan(0);
  });

  test('two mounts of one cluster see each other’s closed files', async () => {
    const other = await startMount(cluster, path.join(work.path, 'mnt2'), ['--attr-timeout-ms', '200']);
    extraMounts.push(other);
    const O = other.dir;
    expect(ok(await sh(`echo from-one > ${M}/shared && cat ${O}/shared`))).toBe('from-one\n');
    expect(ok(await sh(`echo from-two > ${O}/back && cat ${M}/back`))).toBe('from-two\n');
    // Close-to-open once the other mount's attribute timeout has passed.
    expect(ok(await sh(`echo version-two-longer > ${M}/shared && sleep 0.4 && cat ${O}/shared`))).toBe('version-two-longer\n');
  });

  test('--path, --read-only, --uid/--gid; an unreachable coordinator fails with EIO, not a hang', async () => {
    ok(await sh(`mkdir -p ${M}/exported/unread && echo inside > ${M}/exported/file`));
    const args = ['--path', '/exported', '--read-only', '--uid', '4242', '--gid', '4343', '--call-timeout-ms', '1000'];
    const ro = await startMount(cluster, path.join(work.path, 'mnt-ro'), args);
    extraMounts.push(ro);
    expect(ok(await sh(`cat ${ro.dir}/file; stat -c '%u %g' ${ro.dir}/file`))).toBe('inside\n4242 4343\n');
    expect((await sh(`echo x > ${ro.dir}/nope`)).stderr).toMatch(/Read-only file system/);
    expect((await sh(`mkdir ${ro.dir}/nope`)).stderr).toMatch(/Read-only file system/);
    const coordinator = cluster.coordinators[0].process;
    coordinator.kill('SIGSTOP'); // a coordinator that accepts connections but never answers
    try {
      // A hang would be killed at the deadline and fail the match: the answer must be EIO.
      // (In a directory this mount never read: names it holds a leased listing of are answered locally.)
      const result = await sh(`stat ${ro.dir}/unread/never-seen`, { timeoutMs: 20_000 });
      expect(result.stderr).toMatch(/Input\/output error/);
    } finally {
      coordinator.kill('SIGCONT');
    }
  });

  test('SIGTERM unmounts cleanly: the process exits and /proc/mounts has no entry', async () => {
    const victim = await startMount(cluster, path.join(work.path, 'mnt-term'));
    extraMounts.push(victim);
    ok(await sh(`echo bye > ${victim.dir}/bye`));
    expect(await mountsList()).toContain(` ${victim.dir} `);
    const exited = new Promise<number | null>((resolve) => victim.process.once('exit', (code) => resolve(code)));
    victim.process.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(await mountsList()).not.toContain(` ${victim.dir} `);
    expect(ok(await sh(`cat ${M}/bye`))).toBe('bye\n');
  });
});
