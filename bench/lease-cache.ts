// Lease cache benchmark: prints `name value unit` lines (never asserted anywhere).
// µs per lookup and getattr through `strata.inodes` of one name, warm (answered by the client's
// lease cache, client/meta-cache.ts) against the same read sent on the session stream every time
// (the `lookup` / `getAttr` ops, no cache): on each engine, one coordinator, no data nodes. And the
// cost leases add to a change: µs per mkdir in a directory another client holds a lease on (its
// push and ack are on the change's path) against one nobody caches.
//
// Env: LEASE_N (repeats; 5000), LEASE_ENGINES (embedded,etcd).
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

for (const engine of engines) {
  const cluster = await startCluster({ meta: engine, datanodes: 0 });
  const reader = Strata.connect({ coordinators: cluster.coordinatorList });
  const writer = Strata.connect({ coordinators: cluster.coordinatorList });
  try {
    const dir = await writer.inodes.mkdir(1, 'bench', 0o755);
    const file = (await writer.inodes.create(dir.ino, 'hot')).stat;
    // The uncached reads: the plain session ops (what strata.inodes sent before leases).
    const session = (reader as unknown as { coordinator: { session(op: string, body: unknown): Promise<unknown> } }).coordinator;
    print(`lease_lookup_uncached_${engine}`, await usPerOp(repeats, () => session.session('lookup', { parent: dir.ino, name: 'hot' })), 'us/op');
    print(`lease_getattr_uncached_${engine}`, await usPerOp(repeats, () => session.session('getAttr', { ino: file.ino })), 'us/op');
    const before = reader.metadataRequests;
    print(`lease_lookup_warm_${engine}`, await usPerOp(repeats, () => reader.inodes.lookup(dir.ino, 'hot')), 'us/op');
    print(`lease_getattr_warm_${engine}`, await usPerOp(repeats, () => reader.inodes.getattr(file.ino)), 'us/op');
    print(`lease_warm_requests_per_op_${engine}`, (reader.metadataRequests - before) / (2 * (repeats + 100)), 'requests/op');

    const quiet = await writer.inodes.mkdir(1, 'quiet', 0o755);
    const mkdirN = Math.min(repeats, 1000);
    print(`lease_mkdir_uncached_dir_${engine}`, await usPerOp(mkdirN, (i) => writer.inodes.mkdir(quiet.ino, `d${i}`, 0o755)), 'us/op');
    const watched = await writer.inodes.mkdir(1, 'watched', 0o755);
    let mkdirNs = 0n;
    for (let i = 0; i < mkdirN; i++) {
      await reader.inodes.readdirplus(watched.ino, { limit: 1 }); // the reader holds the directory (again)
      const started = process.hrtime.bigint();
      await writer.inodes.mkdir(watched.ino, `d${i}`, 0o755); // pushed to the reader, acked, then answered
      mkdirNs += process.hrtime.bigint() - started;
    }
    print(`lease_mkdir_leased_dir_${engine}`, Number(mkdirNs) / 1e3 / mkdirN, 'us/op');
  } finally {
    reader.close();
    writer.close();
    await cluster.stop();
  }
}
