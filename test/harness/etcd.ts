// Starts the real etcd binary on loopback ports in a temp dir, for tests and benchmarks.
// Every wait is bounded, and a failure says why in one message (with etcd's last log lines).

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { freePort, tempDir, type TempDir } from './ports.js';

export interface EtcdMember {
  name: string;
  /** Client URL, e.g. `http://127.0.0.1:P`. */
  endpoints: string;
  /** The strata meta URL for this member alone: `etcd://127.0.0.1:P`. */
  url: string;
  dataDir: string;
  pid: number;
  /** SIGTERM, then SIGKILL after a bound; removes the member's temp dir. */
  stop(): Promise<void>;
  /** Kills the process at once and leaves its data dir for inspection; call stop() later to clean up. */
  kill9(): void;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** Client URLs of all members, comma-separated. */
  endpoints: string;
  /** `etcd://127.0.0.1:P1,127.0.0.1:P2,...` */
  url: string;
  /** The member currently leading, by asking the running members (bounded wait during elections). */
  leader(): Promise<EtcdMember>;
  /** Kills every member and removes their temp dirs. */
  stop(): Promise<void>;
}

export interface StartEtcdOptions {
  /** How long to wait for every member to report healthy. */
  readyTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL. */
  stopTimeoutMs?: number;
  extraArgs?: string[];
  /**
   * Serve clients over TLS with these PEM files and require client certificates signed by `ca`
   * (etcd's --cert-file --key-file --trusted-ca-file --client-cert-auth). Health is then read
   * from a plain-HTTP metrics listener on loopback.
   */
  tls?: { ca: string; cert: string; key: string };
}

const READY_TIMEOUT_MS_DEFAULT = 20_000;
const STOP_TIMEOUT_MS_DEFAULT = 5_000;
const HEALTH_POLL_INTERVAL_MS = 100;
const HEALTH_REQUEST_TIMEOUT_MS = 1_000;
const LOG_TAIL_LINES_MAX = 40;
// A port freePort() found may be taken by another process before etcd binds it.
const START_ATTEMPTS_MAX = 3;

export function findEtcdBinary(): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/bin'];
  for (const dir of dirs) {
    const candidate = join(dir, 'etcd');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next directory
    }
  }
  throw new Error('etcd binary not found on PATH or in /usr/bin: install it with `apt-get install -y etcd-server`');
}

interface MemberPlan {
  name: string;
  clientPort: number;
  peerPort: number;
  metricsPort: number;
  dir: TempDir;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts one etcd member alone in its own cluster. */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdMember> {
  const cluster = await startEtcdCluster(1, options);
  return cluster.members[0]!;
}

/** Starts `size` members that form one new cluster; each member can be stopped or killed alone. */
export async function startEtcdCluster(size: number, options: StartEtcdOptions = {}): Promise<EtcdCluster> {
  if (!Number.isInteger(size) || size < 1 || size > 7) throw new Error(`startEtcdCluster: size ${size} not in 1..7`);
  const binary = findEtcdBinary();
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(binary, size, options);
    } catch (err) {
      const portClash = err instanceof Error && /address already in use/.test(err.message);
      if (!portClash || attempt >= START_ATTEMPTS_MAX) throw err;
    }
  }
}

async function startOnce(binary: string, size: number, options: StartEtcdOptions): Promise<EtcdCluster> {
  const plans: MemberPlan[] = [];
  for (let i = 0; i < size; i++) {
    plans.push({ name: `m${i}`, clientPort: await freePort(), peerPort: await freePort(), metricsPort: await freePort(), dir: await tempDir('etcd') });
  }
  const initialCluster = plans.map((p) => `${p.name}=http://127.0.0.1:${p.peerPort}`).join(',');
  const clusterToken = `strata-${randomBytes(6).toString('hex')}`;
  const members = plans.map((plan) => launch(binary, plan, initialCluster, clusterToken, options));
  const readiness = members.map((m) => m.ready);
  try {
    await Promise.all(readiness);
  } catch (err) {
    members.forEach((m) => m.member.kill9());
    await Promise.allSettled(readiness);
    await Promise.all(members.map((m) => m.member.stop()));
    throw err;
  }
  const list = members.map((m) => m.member);
  return {
    members: list,
    endpoints: list.map((m) => m.endpoints).join(','),
    url: `etcd://${plans.map((p) => `127.0.0.1:${p.clientPort}`).join(',')}`,
    leader: () => findLeader(list, options.readyTimeoutMs ?? READY_TIMEOUT_MS_DEFAULT),
    stop: async () => {
      // Members stopping gracefully together can wait seconds on each other (leader transfer,
      // lost quorum); the data is deleted anyway, so nothing is lost by killing them.
      list.forEach((m) => m.kill9());
      await Promise.all(list.map((m) => m.stop()));
    },
  };
}

function launch(
  binary: string,
  plan: MemberPlan,
  initialCluster: string,
  clusterToken: string,
  options: StartEtcdOptions,
): { member: EtcdMember; ready: Promise<void> } {
  const clientUrl = `${options.tls ? 'https' : 'http'}://127.0.0.1:${plan.clientPort}`;
  const peerUrl = `http://127.0.0.1:${plan.peerPort}`;
  const metricsUrl = `http://127.0.0.1:${plan.metricsPort}`;
  const tlsArgs = options.tls
    ? [`--cert-file=${options.tls.cert}`, `--key-file=${options.tls.key}`, `--trusted-ca-file=${options.tls.ca}`, '--client-cert-auth', `--listen-metrics-urls=${metricsUrl}`]
    : [];
  const args = [
    `--name=${plan.name}`,
    `--data-dir=${join(plan.dir.path, 'data')}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=${initialCluster}`,
    `--initial-cluster-token=${clusterToken}`,
    '--initial-cluster-state=new',
    // Keeps history bounded as the design asks; an hour leaves tests' revisions readable.
    '--auto-compaction-retention=1',
    '--logger=zap',
    ...tlsArgs,
    ...(options.extraArgs ?? []),
  ];
  // ETCD_* variables from the caller's environment would silently override these flags.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));
  const child = spawn(binary, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logTail: string[] = [];
  const keepTail = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      logTail.push(line);
      if (logTail.length > LOG_TAIL_LINES_MAX) logTail.shift();
    }
  };
  child.stdout!.on('data', keepTail);
  child.stderr!.on('data', keepTail);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const exitWithin = (ms: number) =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      void exited.then(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  // A test runner that dies must not leave etcd running on the machine.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));

  const stopTimeoutMs = options.stopTimeoutMs ?? STOP_TIMEOUT_MS_DEFAULT;
  let stopped: Promise<void> | undefined;
  const member: EtcdMember = {
    name: plan.name,
    endpoints: clientUrl,
    url: `etcd://127.0.0.1:${plan.clientPort}`,
    dataDir: join(plan.dir.path, 'data'),
    pid: child.pid ?? -1,
    kill9: () => {
      if (isRunning(child)) child.kill('SIGKILL');
    },
    stop: () =>
      (stopped ??= (async () => {
        if (isRunning(child)) {
          child.kill('SIGTERM');
          if (!(await exitWithin(stopTimeoutMs))) {
            child.kill('SIGKILL');
            await exitWithin(stopTimeoutMs);
          }
        }
        process.removeListener('exit', killOnExit);
        await plan.dir.cleanup();
      })()),
  };

  const describe = (why: string) =>
    new Error(`etcd member ${plan.name} (${clientUrl}) ${why}; last etcd output:\n${logTail.join('\n')}`);
  const ready = (async () => {
    const deadlineMs = Date.now() + (options.readyTimeoutMs ?? READY_TIMEOUT_MS_DEFAULT);
    while (Date.now() < deadlineMs) {
      if (spawnError) throw describe(`failed to start: ${spawnError.message}`);
      if (!isRunning(child)) throw describe(`exited with code ${child.exitCode ?? child.signalCode}`);
      if (await isHealthy(options.tls ? metricsUrl : clientUrl)) return;
      await sleep(HEALTH_POLL_INTERVAL_MS);
    }
    throw describe(`not healthy after ${options.readyTimeoutMs ?? READY_TIMEOUT_MS_DEFAULT} ms`);
  })();
  return { member, ready };
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null && child.pid !== undefined;
}

async function isHealthy(baseUrl: string): Promise<boolean> {
  try {
    const response = await fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(HEALTH_REQUEST_TIMEOUT_MS) });
    if (!response.ok) return false;
    const body = (await response.json()) as { health?: string };
    return body.health === 'true';
  } catch {
    return false;
  }
}

interface MemberStatus {
  header?: { member_id?: string };
  leader?: string;
}

async function memberStatus(member: EtcdMember): Promise<MemberStatus | undefined> {
  try {
    // etcd's gRPC gateway: the same Status RPC as `etcdctl endpoint status`, over plain HTTP.
    const response = await fetch(`${member.endpoints}/v3/maintenance/status`, {
      method: 'POST',
      body: '{}',
      signal: AbortSignal.timeout(HEALTH_REQUEST_TIMEOUT_MS),
    });
    return response.ok ? ((await response.json()) as MemberStatus) : undefined;
  } catch {
    return undefined;
  }
}

async function findLeader(members: EtcdMember[], timeoutMs: number): Promise<EtcdMember> {
  const deadlineMs = Date.now() + timeoutMs;
  while (Date.now() < deadlineMs) {
    const statuses = await Promise.all(members.map(memberStatus));
    const leaderId = statuses.find((s) => s?.leader && s.leader !== '0')?.leader;
    const index = statuses.findIndex((s) => s?.header?.member_id === leaderId);
    if (leaderId && index >= 0) return members[index]!;
    await sleep(HEALTH_POLL_INTERVAL_MS);
  }
  throw new Error(`etcd cluster ${members.map((m) => m.endpoints).join(',')}: no leader after ${timeoutMs} ms`);
}
