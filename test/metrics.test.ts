// Metrics and health endpoints of real role processes (--metrics-listen): the names documented
// in docs/metrics.md are served, counters rise with real traffic, /readyz follows the metadata
// store and a data node's registration and disk, bad paths are 404, and the port binds loopback only.
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { RoleProcess, startCluster, type TestCluster } from './harness/cluster.js';
import { httpGet, scrape } from './harness/metrics.js';
import { freePort, tempDir } from './harness/ports.js';
import { fuseUnavailableReason, sh, startMount } from './harness/mount.js';
import { waitFor } from './harness/wait.js';

const COORDINATOR_NAMES = [
  'strata_info', 'strata_requests_total', 'strata_requests_duration_seconds_bucket', 'strata_requests_duration_seconds_count',
  'strata_meta_request_duration_seconds_bucket', 'strata_leader', 'strata_datanodes_live', 'strata_repair_queue_length', 'strata_repair_running',
  'strata_tiering_queue_length', 'strata_chunks', 'strata_chunks_under_replicated', 'strata_chunks_missing', 'strata_chunks_corrupt',
  'process_cpu_seconds_total', 'nodejs_eventloop_lag_seconds',
];
const DATANODE_NAMES = [
  'strata_info', 'strata_requests_total', 'strata_requests_duration_seconds_bucket', 'strata_data_received_bytes_total', 'strata_data_sent_bytes_total',
  'strata_datanode_chunks', 'strata_datanode_stored_bytes', 'strata_datanode_quarantined_chunks', 'strata_datanode_capacity_bytes', 'strata_datanode_free_bytes',
  'strata_datanode_registered', 'strata_scrub_passes_total', 'strata_scrub_chunks_checked_total', 'strata_scrub_checked_bytes_total',
  'strata_scrub_corrupt_found_total', 'strata_scrub_last_pass_timestamp_seconds', 'process_resident_memory_bytes',
];

/** Waits until `address`/readyz answers `status`; returns the body. */
function readyz(address: string, status: number, timeoutMs = 30_000): Promise<string> {
  return waitFor(`${address}/readyz to answer ${status}`, async () => {
    const answer = await httpGet(address, '/readyz', 5_000);
    return answer.status === status ? answer.body : undefined;
  }, timeoutMs);
}

describe('metrics and health (embedded metadata)', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await startCluster({ datanodes: 2, replication: 2, chunkSize: '64KiB', metrics: true });
  }, 60_000);
  afterAll(async () => cluster?.stop());

  test('each role serves the documented names, and counters rise after puts and gets through the SDK', async () => {
    const coordinator = cluster.coordinators[0]!.metricsAddress!;
    const nodes = cluster.datanodes.map((n) => n.metricsAddress!);
    const before = await scrape(coordinator);
    for (const name of COORDINATOR_NAMES) expect(before.names(), name).toContain(name);
    expect(before.sum('strata_info', { role: 'coordinator' })).toBe(1);
    expect(before.sum('strata_leader')).toBe(1);
    expect(before.sum('strata_datanodes_live')).toBe(2);
    const nodesBefore = await Promise.all(nodes.map(scrape));

    const fs = cluster.client();
    const data = randomBytes(3 * 64 * 1024 + 100);
    await fs.mkdir('/m', { parents: true });
    for (let i = 0; i < 3; i++) await fs.writeFile(`/m/${i}.bin`, data);
    for (let i = 0; i < 3; i++) expect((await fs.readFile(`/m/${i}.bin`)).equals(data)).toBe(true);

    const after = await scrape(coordinator);
    const created = (s: typeof after) => s.sum('strata_requests_total', { method: 'create', code: 'OK' });
    expect(created(after)).toBeGreaterThanOrEqual(created(before) + 3);
    expect(after.sum('strata_requests_total', { method: 'commitChunk', code: 'OK' })).toBeGreaterThanOrEqual(12);
    expect(after.sum('strata_requests_duration_seconds_count', { method: 'commitChunk' })).toBeGreaterThanOrEqual(12);
    // Heartbeats come every second, whatever the traffic: a fast run may scrape twice between two.
    const heartbeats = (s: typeof after) => s.sum('strata_requests_total', { transport: 'grpc', method: 'Heartbeat', code: 'OK' });
    await expect.poll(async () => heartbeats(await scrape(coordinator)), { timeout: 10_000 }).toBeGreaterThan(heartbeats(before));
    expect(after.sum('strata_meta_request_duration_seconds_count', { engine: 'leveldb', op: 'txn' })).toBeGreaterThan(before.sum('strata_meta_request_duration_seconds_count', { engine: 'leveldb', op: 'txn' }));

    const nodesAfter = await Promise.all(nodes.map(scrape));
    // Request series appear with a method's first request: after traffic every name is there.
    for (const node of nodesAfter) for (const name of DATANODE_NAMES) expect(node.names(), name).toContain(name);
    const total = (scrapes: typeof nodesAfter, name: string) => scrapes.reduce((sum, s) => sum + s.sum(name), 0);
    // Both nodes hold every chunk (RF 2): 3 files of 4 chunks each, received once per node.
    expect(total(nodesAfter, 'strata_data_received_bytes_total') - total(nodesBefore, 'strata_data_received_bytes_total')).toBeGreaterThanOrEqual(2 * 3 * data.length);
    expect(total(nodesAfter, 'strata_data_sent_bytes_total') - total(nodesBefore, 'strata_data_sent_bytes_total')).toBeGreaterThanOrEqual(3 * data.length);
    for (const node of nodesAfter) {
      expect(node.sum('strata_datanode_chunks')).toBeGreaterThanOrEqual(12);
      expect(node.sum('strata_datanode_stored_bytes')).toBeGreaterThan(0);
      expect(node.sum('strata_datanode_free_bytes')).toBeGreaterThan(0);
      expect(node.sum('strata_datanode_registered')).toBe(1);
    }
  }, 60_000);

  test('/healthz and /readyz answer ok; a bad path is 404 and a POST 405', async () => {
    for (const role of [...cluster.coordinators, ...cluster.datanodes]) {
      const address = role.metricsAddress!;
      expect(await httpGet(address, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
      expect(await readyz(address, 200)).toBe('ok\n');
      expect((await httpGet(address, '/nope')).status).toBe(404);
      expect((await httpGet(address, '/metrics/../../etc/passwd')).status).toBe(404);
    }
    const address = cluster.coordinators[0]!.metricsAddress!;
    const status = await new Promise<number>((resolve, reject) => {
      const at = address.lastIndexOf(':');
      const req = http.request({ host: address.slice(0, at), port: Number(address.slice(at + 1)), path: '/metrics', method: 'POST' }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(405);
  }, 60_000);

  test('a mount serves FUSE op latencies by op, and /readyz answers ok once mounted with a session open', async (context) => {
    const why = fuseUnavailableReason();
    if (why) return context.skip(why);
    const work = await tempDir('metrics-mnt');
    const address = `127.0.0.1:${await freePort()}`;
    const dir = path.join(work.path, 'mnt');
    const mount = await startMount(cluster, dir, ['--metrics-listen', address]);
    try {
      expect(await readyz(address, 200)).toBe('ok\n');
      const before = await scrape(address);
      expect(before.sum('strata_info', { role: 'mount' })).toBe(1);
      // Through the kernel, from another process: this one must not do I/O on a mount (its own or not).
      const done = await sh(`mkdir ${dir}/fusedir && echo hello > ${dir}/fusedir/f && cat ${dir}/fusedir/f`);
      expect(done.stdout).toBe('hello\n');
      const after = await scrape(address);
      for (const op of ['mkdir', 'create', 'write']) {
        expect(after.sum('strata_fuse_op_duration_seconds_count', { op }), op).toBeGreaterThan(before.sum('strata_fuse_op_duration_seconds_count', { op }));
      }
      expect(after.sum('strata_fuse_op_duration_seconds_bucket', { op: 'mkdir', le: '+Inf' })).toBe(after.sum('strata_fuse_op_duration_seconds_count', { op: 'mkdir' }));
      expect(after.sum('strata_mount_session_open')).toBe(1);
      expect(after.names()).toContain('strata_client_coordinator_requests_total');
    } finally {
      await mount.stop();
      await work.cleanup();
    }
  }, 60_000);

  test('the metrics port is not reachable on a non-loopback address by default', async () => {
    const external = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
    if (!external) return console.warn('no non-loopback IPv4 address on this machine: nothing to check');
    const port = Number(cluster.coordinators[0]!.metricsAddress!.split(':')[1]);
    // The same port answers on loopback...
    expect((await httpGet(`127.0.0.1:${port}`, '/healthz')).status).toBe(200);
    // ...and refuses on the machine's other address.
    const refused = await new Promise<string>((resolve) => {
      const socket = net.connect({ host: external.address, port, timeout: 5_000 });
      socket.once('connect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.once('timeout', () => {
        socket.destroy();
        resolve('timeout');
      });
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
  }, 30_000);
});

describe('readiness follows the metadata store (etcd engine)', () => {
  let cluster: TestCluster;
  let restarted: ChildProcess | undefined;

  beforeAll(async () => {
    cluster = await startCluster({ meta: 'etcd', datanodes: 1, replication: 1, metrics: true });
  }, 60_000);
  afterAll(async () => {
    if (restarted && restarted.exitCode === null) {
      const exited = new Promise((resolve) => restarted!.once('exit', resolve));
      restarted.kill('SIGKILL');
      await exited;
    }
    await cluster?.stop();
  });

  test('/readyz of a coordinator turns 503 when etcd is stopped and 200 again once it is back', async () => {
    const address = cluster.coordinators[0]!.metricsAddress!;
    expect(await readyz(address, 200)).toBe('ok\n');
    const etcd = cluster.etcd!;
    // The same command line on the same data dir and ports: etcd restarted, not a new one.
    const argv = readFileSync(`/proc/${etcd.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    etcd.kill9();
    const reason = await readyz(address, 503);
    expect(reason).toMatch(/metadata store unreachable|no leader known/);
    expect(reason.trim().split('\n')).toHaveLength(1);
    // Alive all the while: liveness must not restart a coordinator for its store's outage.
    expect((await httpGet(address, '/healthz')).status).toBe(200);
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));
    restarted = spawn(argv[0]!, argv.slice(1), { env, stdio: 'ignore' });
    expect(await readyz(address, 200, 45_000)).toBe('ok\n');
  }, 90_000);
});

describe('readiness of a data node', () => {
  test('503 until a coordinator accepts its heartbeats, 200 after, 503 while its data dir takes no new file', async () => {
    const dir = await tempDir('metrics-dn');
    const coordinatorAddress = `127.0.0.1:${await freePort()}`;
    const metricsAddress = `127.0.0.1:${await freePort()}`;
    const dataDir = path.join(dir.path, 'dn1');
    const node = new RoleProcess('dn1', ['datanode', '--node-id', 'dn1', '--data-dir', dataDir, '--listen', `127.0.0.1:${await freePort()}`, '--coordinators', coordinatorAddress, '--heartbeat-interval-ms', '300', '--log-level', 'warn', '--metrics-listen', metricsAddress], path.join(dir.path, 'dn1.log'), '');
    const coordinator = new RoleProcess('coordinator', ['coordinator', '--listen', coordinatorAddress, '--meta', path.join(dir.path, 'meta'), '--log-level', 'warn'], path.join(dir.path, 'coordinator.log'), coordinatorAddress);
    const tmp = path.join(dataDir, 'tmp');
    let locked = false;
    try {
      node.start();
      // No coordinator listens yet: the node serves, but is not ready.
      expect(await readyz(metricsAddress, 503)).toMatch(/^not registered/);
      expect((await httpGet(metricsAddress, '/healthz')).status).toBe(200);
      coordinator.start();
      expect(await readyz(metricsAddress, 200)).toBe('ok\n');
      // Root writes through any mode bits, so as root the fault is an immutable directory (ext4's chattr +i).
      if (process.getuid?.() === 0) execFileSync('chattr', ['+i', tmp]);
      else execFileSync('chmod', ['0500', tmp]);
      locked = true;
      expect(await readyz(metricsAddress, 503)).toMatch(/^data dir not writable: E(PERM|ACCES)/);
      if (process.getuid?.() === 0) execFileSync('chattr', ['-i', tmp]);
      else execFileSync('chmod', ['0700', tmp]);
      locked = false;
      expect(await readyz(metricsAddress, 200)).toBe('ok\n');
    } finally {
      if (locked) {
        if (process.getuid?.() === 0) execFileSync('chattr', ['-i', tmp]);
        else execFileSync('chmod', ['0700', tmp]);
      }
      await Promise.all([node.stop(), coordinator.stop()]);
      await dir.cleanup();
    }
  }, 90_000);
});
