// Coherent client caches on real processes: two SDK clients (on etcd, each on its own
// coordinator); client 1 caches a listing, a lookup, a negative lookup and attributes (then
// answers them with no request at all); client 2 creates, removes, renames, chmods there; as soon
// as client 2's call returns, client 1 sees the change (its invalidation already arrived). And a
// client process holding leases that is stopped or killed -9 does not block a change for longer
// than its lease, after which the coordinator forgets it.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Strata, StrataError, type InvalidateEvent } from '../client/index.js';
import { CHANNEL_OPTIONS, callUnary, strataProto } from '../common/grpc.js';
import { STRATA_MAIN, startCluster, type TestCluster } from './harness/cluster.js';

const ROOT = 1;
const TTL_MS = 3000;

async function notFound(promise: Promise<unknown>): Promise<boolean> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  if (err === undefined) return false;
  if (err instanceof StrataError && err.kind === 'NotFound') return true;
  throw err;
}

/**
 * Repeats `read` until a repeat costs no request (the coordinator granted a lease and the answer
 * is cached); bounded. A coordinator on etcd grants only once its links to its peers are up.
 */
async function warm(client: Strata, read: () => Promise<unknown>): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    await read().catch((e) => (e instanceof StrataError && e.kind === 'NotFound' ? undefined : Promise.reject(e)));
    const before = client.metadataRequests;
    await read().catch((e) => (e instanceof StrataError && e.kind === 'NotFound' ? undefined : Promise.reject(e)));
    if (client.metadataRequests === before) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the answer never got cached');
}

async function leaseStats(address: string): Promise<{ sessions: number; leases: number; holders: number }> {
  const client = new strataProto.LeasePeers(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  try {
    return await callUnary(client, 'Stats', {}, 5000, `coordinator ${address}`);
  } finally {
    client.close();
  }
}

for (const meta of ['embedded', 'etcd'] as const) {
  describe(`coherent caches (${meta}${meta === 'etcd' ? ', a coordinator per client' : ''})`, () => {
    let cluster: TestCluster;
    let c1: Strata;
    let c2: Strata;
    let dir: number;
    const pushed: InvalidateEvent[] = [];

    beforeAll(async () => {
      cluster = await startCluster({ meta, coordinators: meta === 'etcd' ? 2 : 1, datanodes: 0, coordinatorArgs: ['--lease-ttl-ms', String(TTL_MS)] });
      const [first, last] = [cluster.coordinators[0]!, cluster.coordinators[cluster.coordinators.length - 1]!];
      c1 = Strata.connect({ coordinators: first.address, failoverTimeoutMs: 10_000 });
      c2 = Strata.connect({ coordinators: last.address, failoverTimeoutMs: 10_000 });
      c1.inodes.onInvalidate((event) => pushed.push(event));
      dir = (await c2.inodes.mkdir(ROOT, `d-${meta}`, 0o755)).ino;
    });
    afterAll(async () => {
      c1?.close();
      c2?.close();
      await cluster?.stop();
    });

    test('cached lookups, negative lookups, stats and listings cost no request', async () => {
      const a = (await c2.inodes.create(dir, 'a')).stat;
      await warm(c1, () => c1.inodes.readdirplus(dir));
      await warm(c1, () => c1.inodes.lookup(dir, 'a'));
      await warm(c1, () => c1.inodes.lookup(dir, 'absent'));
      await warm(c1, () => c1.inodes.getattr(a.ino));
      const before = c1.metadataRequests;
      for (let i = 0; i < 20; i++) {
        expect((await c1.inodes.lookup(dir, 'a')).ino).toBe(a.ino);
        expect(await notFound(c1.inodes.lookup(dir, 'absent'))).toBe(true);
        expect((await c1.inodes.getattr(a.ino)).mode & 0o777).toBe(0o644);
        expect((await c1.inodes.readdirplus(dir)).entries.map((e) => e.name)).toEqual(['a']);
      }
      expect(c1.metadataRequests).toBe(before);
      // What a mount caps its kernel timeouts to: the lease left, on the client's clock.
      expect(c1.inodes.leaseRemainingMs()).toBeGreaterThan(0);
      expect(c1.inodes.leaseRemainingMs()).toBeLessThanOrEqual(TTL_MS);
      const fresh = Strata.connect({ coordinators: cluster.coordinators[0]!.address });
      expect(fresh.inodes.leaseRemainingMs()).toBe(0);
      fresh.close();
    });

    test('a third lookup in a leased directory lists it once: later lookups there cost no request, absent names too', async () => {
      const sub = (await c2.inodes.mkdir(ROOT, `listed-${meta}`, 0o755)).ino;
      const files = await Promise.all(['f1', 'f2', 'f3', 'f5'].map(async (name) => (await c2.inodes.create(sub, name)).stat));
      await warm(c1, () => c1.inodes.lookup(sub, 'f1'));
      await c1.inodes.lookup(sub, 'f5'); // two names per change (a rename and its target) list nothing
      const before = c1.metadataRequests;
      expect((await c1.inodes.lookup(sub, 'f2')).ino).toBe(files[1].ino);
      expect(c1.metadataRequests).toBeLessThanOrEqual(before + 1);
      const listed = c1.metadataRequests;
      expect((await c1.inodes.lookup(sub, 'f3')).ino).toBe(files[2].ino);
      expect(await notFound(c1.inodes.lookup(sub, 'f4'))).toBe(true);
      expect(c1.metadataRequests).toBe(listed);
      // Still coherent: client 2's create of the absent name is seen right after it returns.
      const f4 = (await c2.inodes.create(sub, 'f4')).stat;
      expect((await c1.inodes.lookup(sub, 'f4')).ino).toBe(f4.ino);
    });

    test("a create of a name cached as absent: visible to client 1 as soon as client 2's call returns", async () => {
      await warm(c1, () => c1.inodes.lookup(dir, 'new'));
      await warm(c1, () => c1.inodes.readdirplus(dir));
      pushed.length = 0;
      const created = (await c2.inodes.create(dir, 'new')).stat;
      // Client 1 was told before client 2 was answered.
      expect(pushed).toContainEqual({ ino: dir, name: 'new' });
      expect((await c1.inodes.lookup(dir, 'new')).ino).toBe(created.ino);
      expect((await c1.inodes.readdirplus(dir)).entries.map((e) => e.name)).toEqual(['a', 'new']);
    });

    test('a remove, a rename and a chmod by client 2 are seen by client 1 right after each returns', async () => {
      const b = (await c2.inodes.create(dir, 'b')).stat;
      await warm(c1, () => c1.inodes.lookup(dir, 'b'));
      await warm(c1, () => c1.inodes.lookup(dir, 'c'));
      await warm(c1, () => c1.inodes.getattr(b.ino));

      await c2.inodes.rename(dir, 'b', dir, 'c');
      expect(await notFound(c1.inodes.lookup(dir, 'b'))).toBe(true);
      expect((await c1.inodes.lookup(dir, 'c')).ino).toBe(b.ino);

      await warm(c1, () => c1.inodes.getattr(b.ino));
      await c2.inodes.setattr(b.ino, { mode: 0o600 });
      expect(pushed).toContainEqual({ ino: b.ino });
      expect((await c1.inodes.getattr(b.ino)).mode & 0o777).toBe(0o600);

      await warm(c1, () => c1.inodes.lookup(dir, 'c'));
      await c2.inodes.unlink(dir, 'c');
      expect(await notFound(c1.inodes.lookup(dir, 'c'))).toBe(true);

      await warm(c1, () => c1.inodes.readdirplus(dir));
      const sub = await c2.inodes.mkdir(dir, 'sub', 0o755);
      expect((await c1.inodes.readdirplus(dir)).entries.map((e) => e.name)).toEqual(['a', 'new', 'sub']);
      await warm(c1, () => c1.inodes.lookup(dir, 'sub'));
      await c2.inodes.rmdir(dir, 'sub');
      expect(await notFound(c1.inodes.lookup(dir, 'sub'))).toBe(true);
      expect(await notFound(c1.inodes.getattr(sub.ino))).toBe(true);
    });

    test("the writer keeps its lease: its own changes go into its cache (no request to see them) and the other client sees each at once", async () => {
      const sub = (await c1.inodes.mkdir(ROOT, `own-${meta}`, 0o755)).ino;
      const names = async (client: Strata) => (await client.inodes.readdirplus(sub)).entries.map((e) => e.name);
      await warm(c1, () => c1.inodes.readdirplus(sub));
      // A rename also changes the moved inode's ctime (as on Linux; pjdfstest rename/22): the
      // reply carries the moved inode, so the writer keeps that too.
      const steps: { change: () => Promise<unknown>; listing: string[]; check: () => Promise<void> }[] = [];
      let f = 0;
      let d = 0;
      steps.push({
        change: async () => (f = (await c1.inodes.create(sub, 'f')).stat.ino),
        listing: ['f'],
        check: async () => {
          expect((await c1.inodes.lookup(sub, 'f')).ino).toBe(f);
          expect((await c1.inodes.getattr(f)).type).toBe('file');
        },
      });
      steps.push({
        change: async () => (d = (await c1.inodes.mkdir(sub, 'd', 0o755)).ino),
        listing: ['d', 'f'],
        check: async () => expect((await c1.inodes.lookup(sub, 'd')).ino).toBe(d),
      });
      steps.push({
        change: () => c1.inodes.rename(sub, 'f', sub, 'g'),
        listing: ['d', 'g'],
        check: async () => {
          expect((await c1.inodes.lookup(sub, 'g')).ino).toBe(f);
          expect(await notFound(c1.inodes.lookup(sub, 'f'))).toBe(true);
        },
      });
      steps.push({
        change: () => c1.inodes.setattr(f, { mode: 0o600 }),
        listing: ['d', 'g'],
        check: async () => expect((await c1.inodes.getattr(f)).mode & 0o777).toBe(0o600),
      });
      steps.push({
        change: () => c1.inodes.unlink(sub, 'g'),
        listing: ['d'],
        check: async () => expect(await notFound(c1.inodes.lookup(sub, 'g'))).toBe(true),
      });
      steps.push({
        change: () => c1.inodes.rmdir(sub, 'd'),
        listing: [],
        check: async () => expect(await notFound(c1.inodes.lookup(sub, 'd'))).toBe(true),
      });
      let kept = 0;
      for (const step of steps) {
        await warm(c2, () => c2.inodes.readdirplus(sub)); // client 2 holds the directory
        await step.change();
        // Client 2 was told before client 1 was answered: it sees the change at once.
        expect(await names(c2)).toEqual(step.listing);
        const before = c1.metadataRequests;
        await step.check();
        expect(await names(c1)).toEqual(step.listing);
        if (c1.metadataRequests === before) kept++;
      }
      // Every one kept (on etcd too: the change's own watch event is not taken for another's).
      expect(kept).toBe(steps.length);
    });

    test("a directory client 1 makes comes with its whole (empty) listing leased: lookups there cost no request, client 2's changes there are seen at once", async () => {
      await warm(c1, () => c1.inodes.lookup(dir, 'a')); // a lease held: client 1's changes go into its cache
      const made = (await c1.inodes.mkdir(ROOT, `made-${meta}`, 0o755)).ino;
      const lookups = () => (c1.metadataRequestsByOp.leasedLookup ?? 0) + (c1.metadataRequestsByOp.leasedReadDirPlus ?? 0);
      const before = lookups();
      const requests = c1.metadataRequests;
      // What a mount does for each create, mkdir, rename target: look the name up (absent), then make it.
      for (let i = 0; i < 5; i++) {
        expect(await notFound(c1.inodes.lookup(made, `f${i}`))).toBe(true);
        await c1.inodes.create(made, `f${i}`);
        expect((await c1.inodes.lookup(made, `f${i}`)).type).toBe('file');
      }
      expect(await notFound(c1.inodes.lookup(made, 'sub'))).toBe(true);
      const sub = (await c1.inodes.mkdir(made, 'sub', 0o755)).ino;
      expect(await notFound(c1.inodes.lookup(sub, 'deeper'))).toBe(true); // the new one's listing too
      expect((await c1.inodes.readdirplus(made)).entries.map((e) => e.name)).toEqual(['f0', 'f1', 'f2', 'f3', 'f4', 'sub']);
      expect(lookups()).toBe(before);
      expect(c1.metadataRequests - requests).toBeLessThanOrEqual(6 + 2); // the changes (and maybe a renewal or two)

      // Client 2's create there: client 1 never answers the name absent after client 2's call returned.
      const x = (await c2.inodes.create(made, 'x')).stat;
      expect((await c1.inodes.lookup(made, 'x')).ino).toBe(x.ino);
      expect((await c1.inodes.readdirplus(made)).entries.map((e) => e.name)).toEqual(['f0', 'f1', 'f2', 'f3', 'f4', 'sub', 'x']);
      await c2.inodes.mkdir(sub, 'deeper', 0o755);
      expect((await c1.inodes.lookup(sub, 'deeper')).type).toBe('directory');
    });

    test("a change through the path-based API reaches the inode cache too (one seam for every change)", async () => {
      await warm(c1, () => c1.inodes.lookup(dir, 'by-path'));
      await c2.mkdir(`/d-${meta}/by-path`);
      expect((await c1.inodes.lookup(dir, 'by-path')).type).toBe('directory');
    });

    test('a client that closes gives its leases back at once: a change is not held up by it, even stopped', async () => {
      const address = cluster.coordinators[0]!.address;
      const baseline = await leaseStats(address);
      const closed = await startHolder(cluster, address, dir, 'close');
      try {
        // It cached the directory (so held leases) and closed: the coordinator holds nothing of it.
        expect((await leaseStats(address)).holders).toBeLessThanOrEqual(baseline.holders);
        closed.kill('SIGSTOP'); // could ack nothing now: a lease still held would hold the change up
        await c2.inodes.create(dir, 'after-close'); // nobody to wait for (bounded by the test's timeout)
        expect((await c1.inodes.lookup(dir, 'after-close')).type).toBe('file');
      } finally {
        closed.kill('SIGKILL');
      }
    });

    test('a holder stopped (SIGSTOP) or killed -9 holds a change up at most until its lease lapses; then the coordinator forgets it', async () => {
      const address = cluster.coordinators[0]!.address;
      const holders = [await startHolder(cluster, address, dir), await startHolder(cluster, address, dir)];
      try {
        expect((await leaseStats(address)).holders).toBeGreaterThanOrEqual(2);
        holders[0]!.kill('SIGSTOP'); // connected, but never acks: only the lease's lapse lets the change through
        holders[1]!.kill('SIGKILL');
        await c2.inodes.create(dir, 'held'); // bounded by the test's timeout; no timing asserted
        expect((await c1.inodes.lookup(dir, 'held')).type).toBe('file');
        holders[0]!.kill('SIGKILL');
        // Left at the end: client 1's own session (and, embedded, client 2's).
        const ownSessions = meta === 'etcd' ? 1 : 2;
        let stats = await leaseStats(address);
        for (let i = 0; i < 100 && (stats.holders > 1 || stats.sessions > ownSessions); i++) {
          await new Promise((r) => setTimeout(r, 200));
          stats = await leaseStats(address);
        }
        expect(stats.sessions).toBeLessThanOrEqual(ownSessions);
        expect(stats.holders).toBeLessThanOrEqual(1);
      } finally {
        for (const holder of holders) holder.kill('SIGKILL');
      }
    });
  });
}

/** A separate client process that caches `dir` (a listing and a negative lookup) and keeps using it. */
async function startHolder(cluster: TestCluster, coordinator: string, dir: number, then: 'keep using' | 'close' = 'keep using'): Promise<ChildProcess> {
  const script = path.join(cluster.dir.path, `holder-${then.replace(' ', '-')}.mjs`);
  const sdk = path.resolve(path.dirname(STRATA_MAIN), '../client/index.js');
  writeFileSync(
    script,
    `import { Strata } from ${JSON.stringify(sdk)};
const strata = Strata.connect({ coordinators: ${JSON.stringify(coordinator)} });
const read = () => Promise.all([strata.inodes.readdirplus(${dir}), strata.inodes.lookup(${dir}, 'held').catch(() => undefined)]);
for (let i = 0; ; i++) {
  await read();
  const before = strata.metadataRequests;
  await read();
  if (strata.metadataRequests === before) break;
  if (i > 100) process.exit(3);
  await new Promise((r) => setTimeout(r, 100));
}
console.log('cached');
${
      then === 'close'
        ? `await strata.close(); // gives its leases back
console.log('closed');
setInterval(() => undefined, 1000); // alive, but its client is closed`
        : `setInterval(() => void read(), 100); // in use: keeps renewing its lease`
    }
`,
  );
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('holder: never cached')), 30_000);
    child.stdout!.on('data', (data: Buffer) => {
      if (data.toString().includes(then === 'close' ? 'closed' : 'cached')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`holder exited ${code}`)));
  });
  return child;
}

