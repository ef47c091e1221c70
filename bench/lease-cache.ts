// Lease cache benchmark: prints `name value unit` lines (never asserted anywhere).
// µs per lookup and getattr through `strata.inodes` of one name, warm (answered by the client's
// lease cache, client/meta-cache.ts) against the same read sent on the session stream every time
// (the `lookup` / `getAttr` ops, no cache): on each engine, one coordinator, no data nodes. And the
// cost leases add to a change: µs per mkdir in a directory another client holds a lease on (its
// push and ack are on the change's path) against one nobody caches.
//
// Then a mount-like workload through `strata.inodes` (as the kernel calls it: a lookup of each
// name before the change that makes it), 1 and 16 clients each in its own leased directory:
// ops/s and requests per op of mkdir, create, stat of the new files, rename, unlink, rmdir. A
// writer that keeps its lease (its own changes go into its cache) answers those lookups locally.
//
// Env: LEASE_N (repeats; 5000), LEASE_ENGINES (embedded,etcd), LEASE_OPS_N (ops per phase, split
// over the clients; 1000), LEASE_CLIENTS (1,16).
import { Strata } from '../client/index.js';
import { startCluster } from '../test/harness/cluster.js';

const repeats = Number(process.env.LEASE_N ?? 5000);
const engines = (process.env.LEASE_ENGINES ?? 'embedded,etcd').split(',') as ('embedded' | 'etcd')[];
const print = (name: string, value: number, unit: string) => console.log(`${name} ${Number(value.toFixed(value < 10 ? 2 : 0))} ${unit}`);

async function usPerOp(n: number, op: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 100; i++) await op(-1 - i); // warm up: stream, JIT, leases
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await op(i);
  return Number(process.hrtime.bigint() - started) / 1e3 / n;
}

const opsPerPhase = Number(process.env.LEASE_OPS_N ?? 1000);
const clientCounts = (process.env.LEASE_CLIENTS ?? '1,16').split(',').map(Number);

const absent = (p: Promise<unknown>) => p.then(() => undefined, (e: { kind?: string }) => (e?.kind === 'NotFound' ? undefined : Promise.reject(e)));

/** The mount-like phases on `clients` SDK instances, each in its own directory. */
async function mountLike(coordinators: string, engine: string, clients: number): Promise<void> {
  const sdks = Array.from({ length: clients }, () => Strata.connect({ coordinators }));
  try {
    // The root by stat('/'), not inode 1: under a tenant's token `/` is the tenant's root.
    const root = (await sdks[0]!.stat('/')).ino;
    const dirs = await Promise.all(sdks.map(async (sdk, c) => (await sdk.inodes.mkdir(root, `mount-c${clients}-w${c}`, 0o755)).ino));
    await Promise.all(sdks.map((sdk, c) => sdk.inodes.readdirplus(dirs[c]!))); // each holds its directory
    const per = Math.max(1, Math.ceil(opsPerPhase / clients));
    const run = async (op: string, step: (sdk: Strata, dir: number, i: number) => Promise<unknown>) => {
      const requests = sdks.reduce((n, sdk) => n + sdk.metadataRequests, 0);
      const started = process.hrtime.bigint();
      await Promise.all(sdks.map(async (sdk, c) => {
        for (let i = 0; i < per; i++) await step(sdk, dirs[c]!, i);
      }));
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      print(`lease_mount_${op}_${engine}_c${clients}`, (per * clients) / seconds, 'ops/s');
      print(`lease_mount_${op}_requests_per_op_${engine}_c${clients}`, (sdks.reduce((n, sdk) => n + sdk.metadataRequests, 0) - requests) / (per * clients), 'requests/op');
    };
    await run('mkdir', async (sdk, dir, i) => {
      await absent(sdk.inodes.lookup(dir, `d${i}`));
      await sdk.inodes.mkdir(dir, `d${i}`, 0o755);
    });
    await run('create', async (sdk, dir, i) => {
      await absent(sdk.inodes.lookup(dir, `f${i}`));
      await sdk.inodes.create(dir, `f${i}`, { exclusive: true });
    });
    await run('stat', (sdk, dir, i) => sdk.inodes.lookup(dir, `f${i}`));
    await run('rename', async (sdk, dir, i) => {
      await sdk.inodes.lookup(dir, `f${i}`);
      await absent(sdk.inodes.lookup(dir, `r${i}`));
      await sdk.inodes.rename(dir, `f${i}`, dir, `r${i}`);
    });
    await run('unlink', async (sdk, dir, i) => {
      await sdk.inodes.lookup(dir, `r${i}`);
      await sdk.inodes.unlink(dir, `r${i}`);
    });
    await run('rmdir', async (sdk, dir, i) => {
      await sdk.inodes.lookup(dir, `d${i}`);
      await sdk.inodes.rmdir(dir, `d${i}`);
    });
  } finally {
    await Promise.all(sdks.map((sdk) => sdk.close()));
  }
}

for (const engine of engines) {
  const cluster = await startCluster({ meta: engine, datanodes: 0 });
  const reader = Strata.connect({ coordinators: cluster.coordinatorList });
  const writer = Strata.connect({ coordinators: cluster.coordinatorList });
  try {
    const root = (await writer.stat('/')).ino;
    const dir = await writer.inodes.mkdir(root, 'bench', 0o755);
    const file = (await writer.inodes.create(dir.ino, 'hot')).stat;
    // The uncached reads: the plain session ops (what strata.inodes sent before leases).
    const session = (reader as unknown as { coordinator: { session(op: string, body: unknown): Promise<unknown> } }).coordinator;
    print(`lease_lookup_uncached_${engine}`, await usPerOp(repeats, () => session.session('lookup', { parent: dir.ino, name: 'hot' })), 'us/op');
    print(`lease_getattr_uncached_${engine}`, await usPerOp(repeats, () => session.session('getAttr', { ino: file.ino })), 'us/op');
    const before = reader.metadataRequests;
    print(`lease_lookup_warm_${engine}`, await usPerOp(repeats, () => reader.inodes.lookup(dir.ino, 'hot')), 'us/op');
    print(`lease_getattr_warm_${engine}`, await usPerOp(repeats, () => reader.inodes.getattr(file.ino)), 'us/op');
    print(`lease_warm_requests_per_op_${engine}`, (reader.metadataRequests - before) / (2 * (repeats + 100)), 'requests/op');

    const quiet = await writer.inodes.mkdir(root, 'quiet', 0o755);
    const mkdirN = Math.min(repeats, 1000);
    print(`lease_mkdir_uncached_dir_${engine}`, await usPerOp(mkdirN, (i) => writer.inodes.mkdir(quiet.ino, `d${i}`, 0o755)), 'us/op');
    const watched = await writer.inodes.mkdir(root, 'watched', 0o755);
    let mkdirNs = 0n;
    for (let i = 0; i < mkdirN; i++) {
      await reader.inodes.readdirplus(watched.ino, { limit: 1 }); // the reader holds the directory (again)
      const started = process.hrtime.bigint();
      await writer.inodes.mkdir(watched.ino, `d${i}`, 0o755); // pushed to the reader, acked, then answered
      mkdirNs += process.hrtime.bigint() - started;
    }
    print(`lease_mkdir_leased_dir_${engine}`, Number(mkdirNs) / 1e3 / mkdirN, 'us/op');
    for (const clients of clientCounts) await mountLike(cluster.coordinatorList, engine, clients);
  } finally {
    reader.close();
    writer.close();
    await cluster.stop();
  }
}
