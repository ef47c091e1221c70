// Metadata benchmark: prints `name value unit` lines (never asserted anywhere).
// A real cluster on loopback per engine (embedded LevelDB, then real etcd): one coordinator, no
// data nodes (nothing here moves bytes). Through the SDK's public API: mkdir, create (an empty
// file), stat, rename and unlink in ops/s with 1 client and with 16 concurrent clients (one SDK
// instance, so one session stream, each, working in its own directory), plus lookup and getattr
// through `strata.inodes` (session only); then µs/op of a warm stat, lookup and getattr repeated
// on one name by one client.
//
// With META_FSYNCS=1, a second, slower pass counts fsync+fdatasync calls per write op (strace on
// the process that makes metadata durable: the coordinator for embedded, etcd for etcd). It runs
// apart from the timed pass because strace slows every syscall it watches.
//
// The session travels on plain TCP frames by default (client/session-link.ts); with
// META_TRANSPORTS=tcp,grpc each engine also runs on the gRPC Session call, its figures named
// with a `_grpc` suffix, so the two transports are compared in the same minute.
//
// Env: META_N (ops per phase, split over the clients; 2000), META_WARM_N (warm repeats; 5000),
// META_CLIENTS (1,16), META_ENGINES (embedded,etcd), META_SESSION (1; 0 = unary RPCs),
// META_TRANSPORTS (tcp; tcp,grpc = both), META_PAIRED (0; 1 = also the paired c1 latencies below),
// META_AUTH (0; 1 = also auth on vs off, bench/auth.ts),
// META_FSYNCS (0), META_FSYNC_N (ops per counted phase; 400), META_TLS (off; on | both: every port
// TLS, figures named `_tls`; both = a plain and a TLS cluster per engine, up together, each phase run
// on one then the other, and `<name>_tls_ratio` = TLS / plain).
//
// With META_PAIRED=1, one client per transport on the same coordinator takes turns op by op (who
// goes first rotates), and the median µs of each c1 op is printed per transport
// (meta_p50_<op>_<engine>_c1_tcp / _grpc): on a loaded machine, where ops/s swing by 2-3x from
// one minute to the next, only a comparison interleaved like this is fair.
//
// Where a c1 change spends its time (profile, 2-core box under load, median µs, embedded):
// mkdir ~1.7 ms = gRPC transport both ways ~440 (TCP: ~190) + store logic ~190 + LevelDB synced
// batch ~850 (fdatasync + thread-pool hop; ~220 on a quiet disk) + reply ~70. One KV txn per
// change; on etcd one etcd txn (one WAL fsync) per change, reads served from the watch-fed cache.
import { spawn } from 'node:child_process';

import { Strata } from '../client/index.js';
import { startCluster, type TestCluster } from '../test/harness/cluster.js';
import { authBench } from './auth.js';
import { Figures, pairedMedians } from './figures.js';

type Engine = 'embedded' | 'etcd';

const opsPerPhase = Number(process.env.META_N ?? 2000);
const warmN = Number(process.env.META_WARM_N ?? 5000);
const clientCounts = (process.env.META_CLIENTS ?? '1,16').split(',').map(Number);
const engines = (process.env.META_ENGINES ?? 'embedded,etcd').split(',') as Engine[];
const session = process.env.META_SESSION !== '0';
type Transport = 'tcp' | 'grpc';
const transports = (process.env.META_TRANSPORTS ?? 'tcp').split(',') as Transport[];
/** The transport of this pass, and the suffix its figures carry. */
let transport: Transport = 'tcp';
const suffix = () => (transport === 'grpc' ? '_grpc' : '');
const countFsyncs = process.env.META_FSYNCS === '1';
const fsyncOps = Number(process.env.META_FSYNC_N ?? 400);

const figures = new Figures('META_TLS');
const { tlsPasses, print } = figures;

interface Worker {
  sdk: Strata;
  dir: string;
  dirIno: number;
}

/** Runs `op(worker, i)` for i < perWorker on every worker at once; returns ops/s over all. */
async function phase(workers: Worker[], perWorker: number, op: (w: Worker, i: number) => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  await Promise.all(workers.map(async (w) => {
    for (let i = 0; i < perWorker; i++) await op(w, i);
  }));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return (perWorker * workers.length) / seconds;
}

async function openWorkers(cluster: TestCluster, clients: number, tag: string): Promise<Worker[]> {
  const workers = Array.from({ length: clients }, (_, c) => ({
    sdk: Strata.connect({ coordinators: cluster.coordinatorList, session, sessionTransport: transport === 'grpc' ? 'grpc' : 'auto', tls: cluster.clientTls }),
    dir: `/${tag}${suffix()}-c${clients}/w${c}`,
    dirIno: 0,
  }));
  for (const w of workers) w.dirIno = (await w.sdk.mkdir(w.dir, { parents: true })).ino;
  return workers;
}

async function throughput(cluster: TestCluster, engine: Engine, clients: number): Promise<void> {
  const workers = await openWorkers(cluster, clients, 'ops');
  const perWorker = Math.max(1, Math.ceil(opsPerPhase / clients));
  const name = (op: string) => `meta_${op}_${engine}_c${clients}${suffix()}`;
  try {
    print(name('mkdir'), await phase(workers, perWorker, (w, i) => w.sdk.mkdir(`${w.dir}/d${i}`)), 'ops/s');
    print(name('create'), await phase(workers, perWorker, (w, i) => w.sdk.create(`${w.dir}/f${i}`, { exclusive: true })), 'ops/s');
    print(name('stat'), await phase(workers, perWorker, (w, i) => w.sdk.stat(`${w.dir}/f${i}`)), 'ops/s');
    if (session) {
      const inos = await Promise.all(workers.map((w) => Promise.all(Array.from({ length: perWorker }, (_, i) => w.sdk.stat(`${w.dir}/f${i}`).then((s) => s.ino)))));
      const byWorker = new Map(workers.map((w, c) => [w, inos[c]!]));
      print(name('lookup'), await phase(workers, perWorker, (w, i) => w.sdk.inodes.lookup(w.dirIno, `f${i}`)), 'ops/s');
      print(name('getattr'), await phase(workers, perWorker, (w, i) => w.sdk.inodes.getattr(byWorker.get(w)![i]!)), 'ops/s');
    }
    print(name('rename'), await phase(workers, perWorker, (w, i) => w.sdk.rename(`${w.dir}/f${i}`, `${w.dir}/r${i}`)), 'ops/s');
    print(name('unlink'), await phase(workers, perWorker, (w, i) => w.sdk.rm(`${w.dir}/r${i}`)), 'ops/s');
  } finally {
    for (const w of workers) w.sdk.close();
  }
}

/** µs per call of a stat / lookup / getattr repeated on one name: what a warm cache should make cheap. */
async function warm(cluster: TestCluster, engine: Engine): Promise<void> {
  const [w] = await openWorkers(cluster, 1, 'warm');
  const { sdk, dir, dirIno } = w!;
  try {
    const { ino } = await sdk.create(`${dir}/hot`);
    const usPerOp = async (op: () => Promise<unknown>) => {
      for (let i = 0; i < 100; i++) await op(); // warm up: connection, JIT, caches
      const started = process.hrtime.bigint();
      for (let i = 0; i < warmN; i++) await op();
      return Number(process.hrtime.bigint() - started) / 1e3 / warmN;
    };
    print(`meta_warm_stat_${engine}${suffix()}`, await usPerOp(() => sdk.stat(`${dir}/hot`)), 'us/op');
    if (session) {
      const inodes = sdk.inodes;
      print(`meta_warm_lookup_${engine}${suffix()}`, await usPerOp(() => inodes.lookup(dirIno, 'hot')), 'us/op');
      print(`meta_warm_getattr_${engine}${suffix()}`, await usPerOp(() => inodes.getattr(ino)), 'us/op');
    }
  } finally {
    sdk.close();
  }
}

/** c1 latencies of both transports, interleaved op by op on one coordinator (META_PAIRED=1). */
async function pairedTransports(cluster: TestCluster, engine: Engine, perOp: number): Promise<void> {
  const sides = (['tcp', 'grpc'] as const).map((t) => ({
    t,
    sdk: Strata.connect({ coordinators: cluster.coordinatorList, sessionTransport: t === 'grpc' ? 'grpc' : 'auto' }),
    dir: `/paired-${t}`,
  }));
  try {
    await pairedMedians(sides, perOp, (op, medians) => {
      for (const [i, side] of sides.entries()) print(`meta_p50_${op}_${engine}_c1_${side.t}`, medians[i]!, 'us');
    });
  } finally {
    for (const side of sides) side.sdk.close();
  }
}

/**
 * c1 latencies on a plain and a TLS cluster (META_TLS=both), interleaved op by op (who goes first
 * rotates): the median µs of each op per side, and TLS / plain. On a loaded machine, where ops/s
 * swing from one minute to the next, only this comparison is fair.
 */
async function pairedTls(clusters: TestCluster[], engine: Engine, perOp: number): Promise<void> {
  const sides = clusters.map((cluster, i) => ({
    name: i === 0 ? 'plain' : 'tls',
    sdk: Strata.connect({ coordinators: cluster.coordinatorList, tls: cluster.clientTls }),
    dir: '/paired-tls',
  }));
  try {
    await pairedMedians(sides, perOp, (op, medians) => {
      for (const [i, side] of sides.entries()) console.log(`meta_p50_${op}_${engine}_c1_${side.name} ${Math.round(medians[i]!)} us`);
      console.log(`meta_p50_${op}_${engine}_c1_tls_ratio ${Number((medians[1]! / medians[0]!).toFixed(3))} x`);
    });
  } finally {
    for (const side of sides) side.sdk.close();
  }
}

/** Counts fsync-family syscalls of `pid` (all its threads) while `work` runs. */
async function fsyncsDuring(pid: number, work: () => Promise<void>): Promise<number> {
  const tracer = spawn('strace', ['-f', '-c', '-e', 'trace=fsync,fdatasync', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let report = '';
  tracer.stderr.on('data', (piece: Buffer) => (report += piece.toString()));
  const exited = new Promise<void>((resolve) => tracer.once('exit', () => resolve()));
  // strace says "Process N attached" per thread once it is tracing.
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`strace did not attach to ${pid}: ${report}`)), 10_000);
    const check = () => {
      if (/attached/.test(report)) {
        clearTimeout(timer);
        tracer.stderr.off('data', check);
        setTimeout(resolve, 200); // let the other threads attach too
      }
    };
    tracer.stderr.on('data', check);
    tracer.once('exit', () => reject(new Error(`strace exited: ${report}`)));
  });
  try {
    await work();
  } finally {
    tracer.kill('SIGINT');
    await exited;
  }
  let calls = 0;
  for (const match of report.matchAll(/^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$/gm)) calls += Number(match[1]);
  return calls;
}

/** fsyncs per op of each write phase, each counted apart (strace slows the op it watches). */
async function fsyncsPerOp(cluster: TestCluster, engine: Engine, clients: number): Promise<void> {
  const workers = await openWorkers(cluster, clients, 'fsync');
  const perWorker = Math.max(1, Math.ceil(fsyncOps / clients));
  const pid = engine === 'etcd' ? cluster.etcd!.pid : cluster.coordinators[0]!.process.pid!;
  const writes: [string, (w: Worker, i: number) => Promise<unknown>][] = [
    ['mkdir', (w, i) => w.sdk.mkdir(`${w.dir}/d${i}`)],
    ['create', (w, i) => w.sdk.create(`${w.dir}/f${i}`, { exclusive: true })],
    ['rename', (w, i) => w.sdk.rename(`${w.dir}/f${i}`, `${w.dir}/r${i}`)],
    ['unlink', (w, i) => w.sdk.rm(`${w.dir}/r${i}`)],
  ];
  try {
    for (const [op, run] of writes) {
      const calls = await fsyncsDuring(pid, async () => {
        await phase(workers, perWorker, run);
      });
      print(`meta_fsyncs_per_${op}_${engine}_c${clients}`, calls / (perWorker * clients), 'fsyncs/op');
    }
  } finally {
    for (const w of workers) w.sdk.close();
  }
}

async function main(): Promise<void> {
  for (const engine of engines) {
    const clusters = await Promise.all(tlsPasses.map((tls) => startCluster({ meta: engine, datanodes: 0, tls })));
    const cluster = clusters[0]!;
    // Each phase on the plain cluster, then at once on the TLS one: compared in the same minute.
    const onEach = async (run: (c: TestCluster) => Promise<void>) => {
      for (const [i, c] of clusters.entries()) {
        figures.tls = tlsPasses[i]!;
        await run(c);
      }
      figures.tls = tlsPasses[0]!;
    };
    try {
      for (const pass of transports) {
        transport = pass;
        for (const clients of clientCounts) await onEach((c) => throughput(c, engine, clients));
        await onEach((c) => warm(c, engine));
      }
      transport = transports[0]!;
      if (clusters.length === 2) await pairedTls(clusters, engine, Math.max(50, Math.ceil(opsPerPhase / 2)));
      if (process.env.META_PAIRED === '1') await pairedTransports(cluster, engine, Math.max(50, Math.ceil(opsPerPhase / 2)));
      if (countFsyncs) for (const clients of clientCounts) await fsyncsPerOp(cluster, engine, clients);
    } finally {
      await Promise.all(clusters.map((c) => c.stop()));
    }
  }
  figures.printTlsRatios();
  // META_AUTH=1: what authentication costs the same ops, on vs off in this run (bench/auth.ts).
  if (process.env.META_AUTH === '1') await authBench();
}

await main();
