// Starts a real strata cluster for tests and benchmarks: coordinator and data node processes
// of the built binary (dist/), on free loopback ports, data in one temp dir; optional real
// etcd. Every process it starts it stops (and only those).
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Strata } from '../../client/index.js';
import { devCertPaths, initDevCerts } from '../../common/dev-certs.js';
import { newNodeSecretText } from '../../common/node-credentials.js';
import { startEtcd, type EtcdMember } from './etcd.js';
import { freePort, tempDir, type TempDir } from './ports.js';

/** The repo root: two levels above test/harness/ in source, three above dist/test/harness/. */
function repoRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const source = path.resolve(here, '../..');
  return existsSync(path.join(source, 'package.json')) ? source : path.resolve(here, '../../..');
}
const REPO_ROOT = repoRoot();
export const STRATA_MAIN = path.join(REPO_ROOT, 'dist/cli/main.js');

export interface ClusterOptions {
  meta?: 'embedded' | 'etcd';
  /** A metadata URL the test already runs (a TLS etcd, say): used instead of `meta`. */
  metaUrl?: string;
  coordinators?: number;
  datanodes?: number;
  chunkSize?: string;
  replication?: number;
  deadAfterMs?: number;
  logLevel?: string;
  /** More coordinator flags (e.g. --gc-grace-ms for the self-healing tests). */
  coordinatorArgs?: string[];
  /** More data node flags (e.g. --capacity-bytes). */
  datanodeArgs?: string[];
  /** More environment for the coordinator and data node processes (e.g. s3Env from harness/s3.ts). */
  env?: Record<string, string>;
  /** Where the harness's own clients get a token, for coordinators started with --auth oidc. */
  tokenProvider?: () => string | Promise<string>;
  /** TLS on every port (common/tls.ts): a dev CA and node certificates made in the cluster dir; clients get the CA. */
  tls?: boolean;
  /**
   * A node secret (common/node-credentials.ts) in the cluster dir, given to every coordinator and
   * data node with --node-secret-file. Default: on when the coordinators run with --auth oidc
   * (which refuses to start without mTLS or one), off otherwise.
   */
  nodeSecret?: boolean;
  /**
   * Every coordinator and data node serves /metrics, /healthz, /readyz on a free port
   * (RoleProcess.metricsAddress). Default: STRATA_TEST_METRICS=1 (benches run with and without).
   */
  metrics?: boolean;
}

/** A TLS cluster's files: the CA clients verify with, a client certificate, the node certificates' dir. */
export interface ClusterTls {
  dir: string;
  ca: string;
  client: { cert: string; key: string };
}

export class RoleProcess {
  process!: ChildProcess;
  constructor(
    readonly name: string,
    readonly args: string[],
    readonly logFile: string,
    readonly address: string,
    readonly env: Record<string, string> = {},
    /** host:port of its /metrics, /healthz, /readyz (ClusterOptions.metrics). */
    readonly metricsAddress?: string,
  ) {}

  start(): void {
    const fd = openSync(this.logFile, 'a');
    this.process = spawn(process.execPath, [STRATA_MAIN, ...this.args], { stdio: ['ignore', fd, fd], env: { ...process.env, ...this.env } });
  }

  get running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  kill9(): void {
    if (this.running) this.process.kill('SIGKILL');
  }

  async stop(timeoutMs = 10_000): Promise<void> {
    if (!this.running) return;
    const exited = new Promise<void>((resolve) => this.process.once('exit', () => resolve()));
    this.process.kill('SIGTERM');
    const timer = setTimeout(() => this.kill9(), timeoutMs);
    await exited;
    clearTimeout(timer);
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class TestCluster {
  readonly coordinators: RoleProcess[] = [];
  readonly datanodes: RoleProcess[] = [];
  etcd?: EtcdMember;
  /** Set when started with `tls`. */
  tls?: ClusterTls;
  /** The node secret's file, when the cluster has one. */
  nodeSecretFile?: string;
  private readonly clients: Strata[] = [];

  constructor(
    readonly dir: TempDir,
    private readonly options: ClusterOptions = {},
  ) {}

  get coordinatorList(): string {
    return this.coordinators.map((c) => c.address).join(',');
  }

  client(): Strata {
    const client = Strata.connect({ coordinators: this.coordinatorList, failoverTimeoutMs: 10_000, tokenProvider: this.options.tokenProvider, tls: this.clientTls });
    this.clients.push(client);
    return client;
  }

  /** What clients of this cluster use for TLS (none without it). */
  get clientTls(): { ca: string } | false {
    return this.tls ? { ca: this.tls.ca } : false;
  }

  /** A node's TLS flags (certificate `name`, made on first use); none without TLS. */
  async nodeTlsArgs(name: string): Promise<string[]> {
    if (!this.tls) return [];
    const files = (await initDevCerts(this.tls.dir, { nodes: [name] })).certs[name];
    return ['--tls-ca', this.tls.ca, '--tls-cert', files.cert, '--tls-key', files.key];
  }

  /** The node secret flags every node gets (none without one). */
  get nodeSecretArgs(): string[] {
    return this.nodeSecretFile ? ['--node-secret-file', this.nodeSecretFile] : [];
  }

  dataDir(nodeIndex: number): string {
    return path.join(this.dir.path, `dn${nodeIndex + 1}`);
  }

  /** Runs the strata CLI against this cluster; bounded in time. */
  cli(args: string[], options: { input?: Buffer | string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<CliResult> {
    const tls: Record<string, string> = this.tls ? { STRATA_TLS_CA: this.tls.ca } : {};
    return runCli(args, { ...options, env: { STRATA_COORDINATOR: this.coordinatorList, ...tls, ...options.env } });
  }

  /** Starts one more data node (dn<N+1>) and waits until the coordinators see it live. */
  async addDatanode(): Promise<RoleProcess> {
    const node = await startDatanode(this, this.datanodes.length, this.options);
    this.datanodes.push(node);
    await this.waitForLiveNodes(this.datanodes.filter((n) => n.running).length);
    return node;
  }

  /** Each process's state and last log lines: what a failed start needs to be understood from CI output alone. */
  processReport(lines = 6): string {
    return [...this.coordinators, ...this.datanodes]
      .map((role) => {
        const state = role.running ? 'running' : `exited (${role.process.exitCode ?? role.process.signalCode})`;
        let tail = '';
        try {
          tail = readFileSync(role.logFile, 'utf8').trimEnd().split('\n').slice(-lines).map((line) => `    ${line.slice(0, 400)}`).join('\n');
        } catch {
          tail = '    (no log)';
        }
        return `  ${role.name}: ${state}\n${tail}`;
      })
      .join('\n');
  }

  async waitForLiveNodes(count: number, timeoutMs = 60_000): Promise<void> {
    const client = Strata.connect({ coordinators: this.coordinatorList, callTimeoutMs: 1000, failoverTimeoutMs: 1000, tokenProvider: this.options.tokenProvider, tls: this.clientTls });
    const giveUpAt = Date.now() + timeoutMs;
    try {
      for (;;) {
        const fs = await client.statfs().catch(() => undefined);
        if (fs && fs.liveNodes === count) return;
        if (Date.now() > giveUpAt) throw new Error(`cluster: ${fs?.liveNodes ?? 0}/${count} live data nodes after ${timeoutMs} ms\n${this.processReport()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      client.close();
    }
  }

  async stop(): Promise<void> {
    for (const client of this.clients) client.close();
    await Promise.all([...this.datanodes, ...this.coordinators].map((p) => p.stop()));
    await this.etcd?.stop();
    await this.dir.cleanup();
  }
}

export async function startCluster(options: ClusterOptions = {}): Promise<TestCluster> {
  const dir = await tempDir('cluster');
  const cluster = new TestCluster(dir, options);
  try {
    let meta = options.metaUrl ?? path.join(dir.path, 'meta');
    if (options.meta === 'etcd' && !options.metaUrl) {
      cluster.etcd = await startEtcd();
      meta = cluster.etcd.url;
    }
    if (options.tls) {
      const tlsDir = path.join(dir.path, 'tls');
      await initDevCerts(tlsDir, { nodes: [], clients: ['client'] });
      cluster.tls = { dir: tlsDir, ca: devCertPaths(tlsDir, 'ca').cert, client: devCertPaths(tlsDir, 'client') };
    }
    const coordinatorArgs = options.coordinatorArgs ?? [];
    const authOn = coordinatorArgs.some((arg, i) => arg === '--auth' && coordinatorArgs[i + 1] === 'oidc');
    if (options.nodeSecret ?? authOn) {
      cluster.nodeSecretFile = path.join(dir.path, 'node.secret');
      writeFileSync(cluster.nodeSecretFile, newNodeSecretText(), { mode: 0o600 });
    }
    const logLevel = options.logLevel ?? process.env.STRATA_TEST_LOG_LEVEL ?? 'warn';
    for (let i = 0; i < (options.coordinators ?? 1); i++) {
      const address = `127.0.0.1:${await freePort()}`;
      const args = ['coordinator', '--listen', address, '--meta', meta, '--log-level', logLevel];
      if (options.chunkSize) args.push('--chunk-size', options.chunkSize);
      if (options.replication) args.push('--replication', String(options.replication));
      args.push('--dead-after-ms', String(options.deadAfterMs ?? 3000));
      args.push(...coordinatorArgs, ...cluster.nodeSecretArgs, ...(await cluster.nodeTlsArgs(`coordinator-${i + 1}`)));
      const metricsAddress = metricsOn(options) ? `127.0.0.1:${await freePort()}` : undefined;
      if (metricsAddress) args.push('--metrics-listen', metricsAddress);
      cluster.coordinators.push(new RoleProcess(`coordinator-${i + 1}`, args, path.join(dir.path, `coordinator-${i + 1}.log`), address, options.env, metricsAddress));
    }
    for (const c of cluster.coordinators) c.start();
    for (let i = 0; i < (options.datanodes ?? 3); i++) cluster.datanodes.push(await startDatanode(cluster, i, options));
    await cluster.waitForLiveNodes(cluster.datanodes.length);
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

async function startDatanode(cluster: TestCluster, i: number, options: ClusterOptions): Promise<RoleProcess> {
  const address = `127.0.0.1:${await freePort()}`;
  const args = ['datanode', '--node-id', `dn${i + 1}`, '--data-dir', cluster.dataDir(i), '--listen', address];
  args.push('--coordinators', cluster.coordinatorList, '--log-level', options.logLevel ?? process.env.STRATA_TEST_LOG_LEVEL ?? 'warn', '--heartbeat-interval-ms', '500');
  args.push(...(options.datanodeArgs ?? []), ...cluster.nodeSecretArgs, ...(await cluster.nodeTlsArgs(`dn${i + 1}`)));
  const metricsAddress = metricsOn(options) ? `127.0.0.1:${await freePort()}` : undefined;
  if (metricsAddress) args.push('--metrics-listen', metricsAddress);
  const node = new RoleProcess(`dn${i + 1}`, args, path.join(cluster.dir.path, `dn${i + 1}.log`), address, options.env, metricsAddress);
  node.start();
  return node;
}

const metricsOn = (options: ClusterOptions) => options.metrics ?? process.env.STRATA_TEST_METRICS === '1';

export function runCli(
  args: string[],
  options: { input?: Buffer | string; timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [STRATA_MAIN, ...args], {
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (d) => stdout.push(d));
    child.stderr.on('data', (d) => stderr.push(d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`strata ${args.join(' ')}: no exit within ${options.timeoutMs ?? 120_000} ms`));
    }, options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}
