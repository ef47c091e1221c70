// Core benchmark: prints `name value unit` lines (never asserted anywhere).
// 1 coordinator + 3 data nodes on loopback, RF=3: sequential SDK write/read of a file
// (1 GiB by default), the local-disk ceiling (dd conv=fsync) in the same run, small-file
// creates/s and stats/s with 1 and 16 clients on each metadata engine, and peak RSS.
//
// Env: BENCH_SIZE_MIB (1024), BENCH_FILES (2000 per run), BENCH_ENGINES (embedded,etcd);
// STRATA_BYTE_PATH=off moves chunk bytes over gRPC instead of the byte path (to compare).
// BENCH_TLS: off (default) | on | both: every port TLS (common/tls.ts), figures named `_tls`;
// with both, first sequential MB/s in rounds alternating between a plain and a TLS cluster (up
// together; BENCH_TLS_ROUNDS, 8), then each pass as usual, and `<name>_tls_ratio` = TLS / plain.
// BENCH_DATANODE_ARGS: more data node flags, space-separated (e.g. `--grants off`, to measure
// what chunk grants cost), named in the first line.
// BENCH_AB_DATANODE_ARGS: data node flags to compare (e.g. `--grants off`, `--encrypt-key-file F`):
// first sequential MB/s and 4 KiB writes in alternating rounds between a cluster without and one
// with them (up together), figures named `_ab`, `<name>_paired_ab_ratio` = with / without;
// BENCH_AB_ONLY=1 stops after that comparison.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';

import { Strata } from '../client/index.js';
import { startCluster, type TestCluster } from '../test/harness/cluster.js';
import { tempDir } from '../test/harness/ports.js';
import { Figures, median } from './figures.js';

const MiB = 1024 * 1024;
const sizeMiB = Number(process.env.BENCH_SIZE_MIB ?? 1024);
const filesPerRun = Number(process.env.BENCH_FILES ?? 2000);
const engines = (process.env.BENCH_ENGINES ?? 'embedded,etcd').split(',') as ('embedded' | 'etcd')[];
const splitArgs = (value: string | undefined) => (value ?? '').split(/\s+/).filter(Boolean);
const datanodeArgs = splitArgs(process.env.BENCH_DATANODE_ARGS);
const abDatanodeArgs = splitArgs(process.env.BENCH_AB_DATANODE_ARGS);

const figures = new Figures('BENCH_TLS');
const { tlsPasses, print } = figures;

/** CPU seconds a process used so far: user + system, and system alone (the kernel's share). */
function cpuSeconds(pid: number): { total: number; system: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const [user, system] = [Number(fields[11]) / 100, Number(fields[12]) / 100]; // utime, stime in clock ticks (USER_HZ = 100)
  return { total: user + system, system };
}

function nodesCpu(pids: number[]): { total: number; system: number } {
  return pids.map(cpuSeconds).reduce((sum, cpu) => ({ total: sum.total + cpu.total, system: sum.system + cpu.system }), { total: 0, system: 0 });
}

/**
 * CPU seconds per GiB moved, of this process and of all data nodes together: on a shared,
 * noisy machine these vary far less than MB/s, so they show what a change saved.
 */
function cpuMeter(cluster: TestCluster): () => { client: number; nodes: number; nodesSystem: number } {
  const pids = cluster.datanodes.map((d) => d.process.pid!);
  const client = process.cpuUsage();
  const nodes = nodesCpu(pids);
  return () => {
    const used = process.cpuUsage(client);
    const now = nodesCpu(pids);
    return { client: (used.user + used.system) / 1e6, nodes: now.total - nodes.total, nodesSystem: now.system - nodes.system };
  };
}

function printCpu(name: string, used: { client: number; nodes: number; nodesSystem: number }): void {
  const gib = sizeMiB / 1024;
  print(`${name}_cpu_client`, used.client / gib, 's/GiB');
  print(`${name}_cpu_datanodes`, used.nodes / gib, 's/GiB');
  // The kernel's part (sockets, page cache, fsync): what user-space changes cannot save.
  print(`${name}_cpu_datanodes_system`, used.nodesSystem / gib, 's/GiB');
}

function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) / 1024 : 0;
}

async function localDdWrite(dir: string): Promise<number> {
  const file = path.join(dir, 'dd.bin');
  const started = process.hrtime.bigint();
  execFileSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${sizeMiB}`, 'conv=fsync'], { stdio: 'ignore' });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  rmSync(file);
  return sizeMiB / seconds;
}

async function sequential(cluster: TestCluster): Promise<void> {
  const client = cluster.client();
  // Pre-generated random pieces, reused: incompressible, and generation stays out of the timing.
  const pieces = Array.from({ length: 16 }, () => randomBytes(MiB));
  const source = () =>
    Readable.from(
      (function* () {
        for (let i = 0; i < sizeMiB; i++) yield pieces[i % pieces.length];
      })(),
    );
  let meter = cpuMeter(cluster);
  let started = process.hrtime.bigint();
  await client.writeFile('/bench/seq.bin', source());
  const writeSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  print('sdk_seq_write', sizeMiB / writeSeconds, 'MB/s');
  printCpu('sdk_seq_write', meter());
  print('datanode_peak_rss', Math.max(...cluster.datanodes.map((d) => peakRssMiB(d.process.pid!))), 'MiB');
  print('client_peak_rss', process.resourceUsage().maxRSS / 1024, 'MiB');

  meter = cpuMeter(cluster);
  started = process.hrtime.bigint();
  let bytes = 0;
  for await (const piece of await client.createReadStream('/bench/seq.bin')) bytes += piece.length;
  const readSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (bytes !== sizeMiB * MiB) throw new Error(`read ${bytes} bytes, expected ${sizeMiB * MiB}`);
  print('sdk_seq_read', sizeMiB / readSeconds, 'MB/s');
  printCpu('sdk_seq_read', meter());
  await client.rm('/bench/seq.bin');
}

/**
 * Sequential write and read MB/s on two clusters up together (BENCH_TLS=both: plain and TLS;
 * BENCH_AB_DATANODE_ARGS: without and with those data node flags), in rounds that alternate
 * between them (who goes first rotates), so both see the same machine; then the data nodes' CPU
 * per GiB on each side, and `<name>_<label>_ratio` = second / first (throughput: below 1 = slower).
 */
async function pairedSequential(first: TestCluster, second: TestCluster, rounds: number, label: string): Promise<void> {
  const pieces = Array.from({ length: 16 }, () => randomBytes(MiB));
  const perRoundMiB = Math.max(1, Math.floor(sizeMiB / rounds));
  const sides = [first, second].map((cluster, i) => ({
    name: i === 0 ? '' : `_${label}`, client: cluster.client(), pids: cluster.datanodes.map((d) => d.process.pid!),
    writeS: 0, readS: 0, writeCpu: 0, readCpu: 0,
  }));
  const source = () => Readable.from((function* () {
    for (let i = 0; i < perRoundMiB; i++) yield pieces[i % pieces.length];
  })());
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < sides.length; k++) {
      const side = sides[(r + k) % sides.length]!;
      let cpu = nodesCpu(side.pids).total;
      let started = process.hrtime.bigint();
      await side.client.writeFile(`/bench/seq-${r}.bin`, source());
      side.writeS += Number(process.hrtime.bigint() - started) / 1e9;
      side.writeCpu += nodesCpu(side.pids).total - cpu;
      cpu = nodesCpu(side.pids).total;
      started = process.hrtime.bigint();
      let bytes = 0;
      for await (const piece of await side.client.createReadStream(`/bench/seq-${r}.bin`)) bytes += piece.length;
      side.readS += Number(process.hrtime.bigint() - started) / 1e9;
      side.readCpu += nodesCpu(side.pids).total - cpu;
      if (bytes !== perRoundMiB * MiB) throw new Error(`read ${bytes} bytes, expected ${perRoundMiB * MiB}`);
      await side.client.rm(`/bench/seq-${r}.bin`);
    }
  }
  const total = perRoundMiB * rounds;
  const gib = total / 1024;
  const ratio = (name: string, value: number) => console.log(`${name}_paired_${label}_ratio ${Number(value.toFixed(3))} x`);
  for (const side of sides) {
    console.log(`sdk_seq_write_paired${side.name} ${Math.round(total / side.writeS)} MB/s`);
    console.log(`sdk_seq_read_paired${side.name} ${Math.round(total / side.readS)} MB/s`);
    console.log(`sdk_seq_write_paired_cpu_datanodes${side.name} ${Number((side.writeCpu / gib).toFixed(2))} s/GiB`);
    console.log(`sdk_seq_read_paired_cpu_datanodes${side.name} ${Number((side.readCpu / gib).toFixed(2))} s/GiB`);
  }
  const [a, b] = [sides[0]!, sides[1]!];
  ratio('sdk_seq_write', a.writeS / b.writeS);
  ratio('sdk_seq_read', a.readS / b.readS);
  ratio('sdk_seq_write_cpu_datanodes', b.writeCpu / a.writeCpu);
  ratio('sdk_seq_read_cpu_datanodes', b.readCpu / a.readCpu);
}

/** 4 KiB whole-file writes (create, place, 3 fsynced replicas, commit), taking turns file by file: median µs per side. */
async function pairedSmallWrites(first: TestCluster, second: TestCluster, files: number, label: string): Promise<void> {
  const payload = randomBytes(4096);
  const clients = [first, second].map((cluster) => cluster.client());
  const micros: number[][] = [[], []];
  for (let i = 0; i < files; i++) {
    for (let k = 0; k < 2; k++) {
      const at = (i + k) % 2;
      const started = process.hrtime.bigint();
      await clients[at]!.writeFile(`/bench/small-${i}`, payload);
      micros[at]!.push(Number(process.hrtime.bigint() - started) / 1e3);
    }
  }
  const [a, b] = micros.map(median);
  console.log(`create_4k_paired_p50 ${Math.round(a!)} us`);
  console.log(`create_4k_paired_p50_${label} ${Math.round(b!)} us`);
  console.log(`create_4k_paired_${label}_ratio ${Number((a! / b!).toFixed(3))} x`);
}

async function smallFiles(cluster: TestCluster, engine: string): Promise<void> {
  const payload = randomBytes(4096);
  for (const clients of [1, 16]) {
    const sdks = Array.from({ length: clients }, () => Strata.connect({ coordinators: cluster.coordinatorList, tls: cluster.clientTls }));
    const perClient = Math.ceil(filesPerRun / clients);
    await Promise.all(sdks.map((sdk, c) => sdk.mkdir(`/small-${clients}/c${c}`, { parents: true })));
    // Metadata only: an empty file is one Create call.
    let started = process.hrtime.bigint();
    await Promise.all(sdks.map(async (sdk, c) => {
      for (let i = 0; i < perClient; i++) await sdk.writeFile(`/small-${clients}/c${c}/e${i}`, '');
    }));
    let seconds = Number(process.hrtime.bigint() - started) / 1e9;
    print(`create_empty_${engine}_c${clients}`, (perClient * clients) / seconds, 'files/s');

    // A whole 4 KiB file: create, place, write 3 fsynced replicas, commit.
    started = process.hrtime.bigint();
    await Promise.all(sdks.map(async (sdk, c) => {
      for (let i = 0; i < perClient; i++) await sdk.writeFile(`/small-${clients}/c${c}/f${i}`, payload);
    }));
    seconds = Number(process.hrtime.bigint() - started) / 1e9;
    print(`create_4k_${engine}_c${clients}`, (perClient * clients) / seconds, 'files/s');

    started = process.hrtime.bigint();
    await Promise.all(sdks.map(async (sdk, c) => {
      for (let i = 0; i < perClient; i++) await sdk.stat(`/small-${clients}/c${c}/f${i}`);
    }));
    seconds = Number(process.hrtime.bigint() - started) / 1e9;
    print(`stat_${engine}_c${clients}`, (perClient * clients) / seconds, 'stats/s');

    started = process.hrtime.bigint();
    await Promise.all(sdks.map(async (sdk, c) => {
      for (let i = 0; i < perClient; i++) await sdk.mkdir(`/small-${clients}/c${c}/d${i}`);
    }));
    seconds = Number(process.hrtime.bigint() - started) / 1e9;
    print(`mkdir_${engine}_c${clients}`, (perClient * clients) / seconds, 'dirs/s');
    for (const sdk of sdks) sdk.close();
  }
}

async function main(): Promise<void> {
  const scratch = await tempDir('bench');
  try {
    if (datanodeArgs.length > 0) console.log(`# data nodes run with: ${datanodeArgs.join(' ')}`);
    print('local_dd_write', await localDdWrite(scratch.path), 'MB/s');
    if (tlsPasses.length === 2) {
      const [plain, tls] = await Promise.all([false, true].map((tls) => startCluster({ meta: engines[0], datanodes: 3, replication: 3, tls, datanodeArgs })));
      try {
        for (const cluster of [plain, tls]) await cluster.client().mkdir('/bench', { parents: true });
        await pairedSequential(plain!, tls!, Number(process.env.BENCH_TLS_ROUNDS ?? 8), 'tls');
      } finally {
        await Promise.all([plain, tls].map((cluster) => cluster!.stop()));
      }
    }
    if (abDatanodeArgs.length > 0) {
      console.log(`# ab: the second cluster's data nodes also run with: ${abDatanodeArgs.join(' ')}`);
      const [without, withArgs] = await Promise.all([datanodeArgs, [...datanodeArgs, ...abDatanodeArgs]].map((args) =>
        startCluster({ meta: engines[0], datanodes: 3, replication: 3, datanodeArgs: args })));
      try {
        for (const cluster of [without, withArgs]) await cluster!.client().mkdir('/bench', { parents: true });
        await pairedSequential(without!, withArgs!, Number(process.env.BENCH_TLS_ROUNDS ?? 8), 'ab');
        await pairedSmallWrites(without!, withArgs!, Math.min(filesPerRun, 400), 'ab');
      } finally {
        await Promise.all([without, withArgs].map((cluster) => cluster!.stop()));
      }
      if (process.env.BENCH_AB_ONLY === '1') return;
    }
    for (const engine of engines) {
      for (const tls of tlsPasses) {
        figures.tls = tls;
        const cluster = await startCluster({ meta: engine, datanodes: 3, replication: 3, tls, datanodeArgs });
        try {
          await cluster.client().mkdir('/bench', { parents: true });
          if (engine === engines[0]) await sequential(cluster);
          await smallFiles(cluster, engine);
        } finally {
          await cluster.stop();
        }
      }
    }
    figures.tls = false;
    figures.printTlsRatios();
  } finally {
    await scratch.cleanup();
  }
}

await main();
