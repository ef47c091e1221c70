// Two FUSE mounts of one cluster, caches warm (the kernel's and the client's): mount A creates,
// writes, renames, removes, makes and removes directories, chmods; mount B sees each change as
// soon as A's system call returned (B's stat/ls/cat run right after it, in the same script). On the
// embedded engine, and on etcd with two coordinators (A on the first, B on the second), where a
// change reaches B's coordinator only through the peers' links.
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CHANNEL_OPTIONS, callUnary, strataProto } from '../common/grpc.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { fuseUnavailableReason, type MountProcess, sh, type ShResult, startMount } from './harness/mount.js';
import { tempDir, type TempDir } from './harness/ports.js';

const skipReason = fuseUnavailableReason();
if (skipReason) console.log(`skipping the mount coherence tests: ${skipReason}`);

function ok(result: ShResult): string {
  expect(result.code, `exit ${result.code}\n${result.stderr}\n${result.stdout}`).toBe(0);
  return result.stdout;
}

async function leasesHeld(address: string): Promise<number> {
  const client = new strataProto.LeasePeers(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  try {
    return Number((await callUnary<{ leases: number }>(client, 'Stats', {}, 5000, `coordinator ${address}`)).leases);
  } finally {
    client.close();
  }
}

for (const meta of ['embedded', 'etcd'] as const) {
  describe.skipIf(!!skipReason)(`two mounts stay coherent (${meta}${meta === 'etcd' ? ', a coordinator per mount' : ''})`, () => {
    let cluster: TestCluster;
    let work: TempDir;
    let a: MountProcess | undefined;
    let b: MountProcess | undefined;
    let A: string; // the working directory through mount A
    let B: string; // the same directory through mount B
    let coordinatorOfB: string;

    beforeAll(async () => {
      work = await tempDir('coherence');
      cluster = await startCluster({ meta, coordinators: meta === 'etcd' ? 2 : 1, datanodes: 1, replication: 1, chunkSize: '1MiB' });
      const first = cluster.coordinators[0]!.address;
      coordinatorOfB = cluster.coordinators[cluster.coordinators.length - 1]!.address;
      a = await startMount(cluster, path.join(work.path, 'a'), ['--coordinator', first]);
      b = await startMount(cluster, path.join(work.path, 'b'), ['--coordinator', coordinatorOfB]);
      A = path.join(a.dir, 'work');
      B = path.join(b.dir, 'work');
      ok(await sh(`mkdir ${A} && echo seed > ${A}/seed`));
    }, 120_000);

    afterAll(async () => {
      for (const m of [a, b]) await m?.stop().catch((err) => console.error(err));
      await cluster?.stop().catch((err) => console.error(err));
      await work?.cleanup();
    });

    /** B reads until its coordinator holds leases for what it read: its caches are warm. */
    async function warmB(): Promise<void> {
      for (let attempt = 0; attempt < 50; attempt++) {
        ok(await sh(`ls -la ${B} > /dev/null; stat ${B}/seed > /dev/null; ls ${B} > /dev/null; stat ${B}/absent 2>/dev/null; true`));
        if ((await leasesHeld(coordinatorOfB)) > 0) return;
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`mount B's coordinator never granted a lease`);
    }

    test('each change through A is seen through B right after its system call returned', async () => {
      await warmB();
      // Every step: warm B (ls twice: the second one answers from the kernel's cached listing;
      // stat the names involved), the change on A, then B's checks at once. A failed check prints
      // what B saw.
      const script = String.raw`
        set -u
        fail() { echo "FAIL $*"; exit 1; }
        warm() { ls -la ${B} > /dev/null; ls ${B} > /dev/null; for n in "$@"; do stat ${B}/$n > /dev/null 2>&1; cat ${B}/$n > /dev/null 2>&1; done; true; }
        for i in 1 2 3 4 5 6 7 8; do
          warm f$i g$i d$i
          echo "one $i" > ${A}/f$i
          [ "$(cat ${B}/f$i 2>&1)" = "one $i" ] || fail "create+write $i: B read '$(cat ${B}/f$i 2>&1)'"
          ls ${B} | grep -qx f$i || fail "create $i: B's listing lacks f$i: $(ls ${B} | tr '\n' ' ')"

          warm f$i
          echo "two $i" >> ${A}/f$i
          [ "$(cat ${B}/f$i)" = "$(printf 'one %s\ntwo %s' $i $i)" ] || fail "append $i: B read '$(cat ${B}/f$i)'"
          [ "$(stat -c %s ${B}/f$i)" = "$(stat -c %s ${A}/f$i)" ] || fail "append $i: sizes differ"

          warm f$i g$i
          chmod 600 ${A}/f$i
          [ "$(stat -c %a ${B}/f$i)" = 600 ] || fail "chmod $i: B sees mode $(stat -c %a ${B}/f$i)"

          warm f$i g$i
          mv ${A}/f$i ${A}/g$i
          [ ! -e ${B}/f$i ] || fail "rename $i: B still sees f$i"
          [ "$(cat ${B}/g$i 2>&1)" = "$(printf 'one %s\ntwo %s' $i $i)" ] || fail "rename $i: B read g$i as '$(cat ${B}/g$i 2>&1)'"
          [ "$(ls ${B} | grep -c "^[fg]$i$")" = 1 ] || fail "rename $i: B's listing: $(ls ${B} | tr '\n' ' ')"

          warm d$i
          mkdir ${A}/d$i
          [ "$(stat -c %F ${B}/d$i 2>&1)" = directory ] || fail "mkdir $i: B sees '$(stat -c %F ${B}/d$i 2>&1)'"
          ls ${B} | grep -qx d$i || fail "mkdir $i: B's listing lacks d$i"
          echo inner > ${A}/d$i/x
          [ "$(cat ${B}/d$i/x 2>&1)" = inner ] || fail "file in new dir $i: B read '$(cat ${B}/d$i/x 2>&1)'"

          warm d$i d$i/x
          rm ${A}/d$i/x && rmdir ${A}/d$i
          [ ! -e ${B}/d$i ] || fail "rmdir $i: B still sees d$i"
          ls ${B} | grep -qx d$i && fail "rmdir $i: B's listing still has d$i"

          warm g$i
          rm ${A}/g$i
          [ ! -e ${B}/g$i ] || fail "unlink $i: B still sees g$i"
          ls ${B} | grep -qx g$i && fail "unlink $i: B's listing still has g$i"
        done
        [ "$(ls ${B} | tr '\n' ' ')" = "seed " ] || fail "at the end B lists: $(ls ${B} | tr '\n' ' ')"
        echo done`;
      const out = ok(await sh(script, { timeoutMs: 180_000 }));
      expect(out.trim().split('\n').pop()).toBe('done');
    }, 240_000);

    test("a change in a directory revokes B's lease on all of it: B's kernel then drops every name it held there", async () => {
      ok(await sh(`touch ${A}/x ${A}/y`));
      await warmB();
      // B's kernel holds x and y; A's create of z revokes B's lease on the directory (no push
      // about it will come any more); A's later removal of x must not leave x visible to B.
      const out = ok(
        await sh(`set -e
          stat ${B}/x > /dev/null; stat ${B}/y > /dev/null; ls ${B} > /dev/null; ls ${B} > /dev/null
          touch ${A}/z
          rm ${A}/x
          mv ${A}/y ${A}/y2
          test -e ${B}/x && echo "x still there"; test -e ${B}/y && echo "y still there"
          ls ${B} | tr '\n' ' '; echo
          rm ${A}/y2 ${A}/z`),
      );
      expect(out).toBe('seed y2 z \n');
    }, 60_000);

    test('names B found absent (which its kernel may cache as absent) appear on B right after A creates or renames onto them', async () => {
      // A's first change revokes B's lease on the directory: the later ones are not pushed to B,
      // so B's kernel must have dropped every absent name it held there at the first.
      await warmB();
      const out = ok(
        await sh(`set -e
          for n in nd nf nr; do stat ${B}/$n 2>/dev/null || true; stat ${B}/$n 2>/dev/null || true; done
          touch ${A}/first
          mkdir ${A}/nd
          echo in > ${A}/nd/x
          cat ${B}/nd/x
          echo f > ${A}/nf
          cat ${B}/nf
          echo r > ${A}/src
          stat ${B}/src > /dev/null
          mv ${A}/src ${A}/nr
          cat ${B}/nr
          test -e ${B}/src && echo "src still there"
          rm -r ${A}/nd ${A}/nf ${A}/nr ${A}/first
          for n in nd nf nr; do test -e ${B}/$n && echo "$n still there"; done
          ls ${B} | tr '\n' ' '; echo`),
      );
      expect(out).toBe('in\nf\nr\nseed \n');
    }, 60_000);

    test('B, having cached a name as absent and a listing, sees a file A creates and B then writes', async () => {
      await warmB();
      const out = ok(
        await sh(`set -e
          stat ${B}/late 2>/dev/null || true; ls ${B} > /dev/null; ls ${B} > /dev/null
          echo a > ${A}/late
          cat ${B}/late
          echo b >> ${B}/late
          cat ${A}/late
          ls ${A} | tr '\n' ' '; echo`),
      );
      expect(out).toBe('a\na\nb\nlate seed \n');
    }, 60_000);

    test("A's own changes in a directory whose whole listing it holds: each name it made is there and each it removed gone right after, and a name B makes there shows on A", async () => {
      // A made own/ (so its lease covers the whole listing) and looked up absent names in it: its
      // binding then answers absent names there itself, and only A's replies and pushes keep that true.
      const out = ok(
        await sh(`set -e
          mkdir ${A}/own; cd ${A}/own
          ls > /dev/null; stat a 2>/dev/null || true
          touch a; test -e a; mkdir d; test -d d; ln -s a s; test -L s; ln a h; test -e h
          mv a b; test -e b; test -e a && echo "a still there"
          echo x > d/x; rmdir d 2>/dev/null && echo "rmdir of a full directory worked"; test -d d
          mv d e; test -d e; test -e d && echo "d still there"
          rm b h s e/x; rmdir e
          for n in a b d e h s; do test -e $n && echo "$n still there"; done
          touch ${B}/own/fromb; test -e fromb
          mkdir ${B}/own/dirb; test -d dirb
          ls | tr '\n' ' '; echo
          cd /; rm -r ${A}/own`),
      );
      expect(out).toBe('dirb fromb \n');
    }, 60_000);
  });
}
