// Chaos: a workload of writes, overwrites, reads, deletes and renames through the SDK while data
// nodes and coordinators are killed (-9) and restarted at random; then the cluster heals and
// everything that was acknowledged must be there, byte for byte. Decisions come from a seeded
// PRNG (STRATA_CHAOS_SEED replays the same choices; process timing still varies run to run).
//
// The model: per path, the set of outcomes still possible. An acknowledged operation leaves one
// outcome; a failed one adds its possible effects (it may or may not have happened, or half: a
// failed write truncated the file and then committed some of its chunks, the rest read as zeros).
// Every read, during the chaos and after it, must match one of the outcomes. Then GC must have
// left each node exactly the copies the records name.
import { randomInt } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Strata } from '../client/index.js';
import { StrataError } from '../common/errors.js';
import { startCluster, type RoleProcess, type TestCluster } from './harness/cluster.js';
import { waitFor } from './harness/wait.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 256 * KiB;
const SIZE_MAX = 2 * MiB;
const WORKERS = 3;
const CHAOS_MS = 60_000;
/** Pause between one worker's operations: keeps the load modest on a 2-core machine. */
const OP_PAUSE_MS_MAX = 500;
const COORDINATOR_KILLS_MAX = 2;

const SEED = process.env.STRATA_CHAOS_SEED ? Number(process.env.STRATA_CHAOS_SEED) : randomInt(2 ** 31);

/** mulberry32: small, fast, good enough to drive choices. Returns [0, 1). */
function prng(seed: number): () => number {
  let a = seed | 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(rand: () => number, items: T[]): T => items[Math.floor(rand() * items.length)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Pseudo-random (incompressible) content from the PRNG, so a seed replays the same bytes. */
function content(rand: () => number, size: number): Buffer {
  const data = Buffer.allocUnsafe(size);
  let x = Math.floor(rand() * 2 ** 32) | 1;
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data.writeInt32LE(x | 0, i);
  }
  for (; i < size; i++) data[i] = Math.floor(rand() * 256);
  return data;
}

type Outcome = { kind: 'absent' } | { kind: 'exact'; data: Buffer } | { kind: 'partial'; data: Buffer };
const ABSENT: Outcome = { kind: 'absent' };

/** Whether `found` is what a write of `data` that failed part way may have left: whole chunks of it or zeros. */
function isPartialOf(found: Buffer, data: Buffer): boolean {
  if (found.length > data.length || (found.length % CHUNK !== 0 && found.length !== data.length)) return false;
  for (let at = 0; at < found.length; at += CHUNK) {
    const got = found.subarray(at, at + CHUNK);
    if (!got.equals(data.subarray(at, at + CHUNK)) && got.some((b) => b !== 0)) return false;
  }
  return true;
}

function matches(found: Buffer, outcomes: Outcome[]): boolean {
  return outcomes.some((o) => (o.kind === 'exact' && o.data.equals(found)) || (o.kind === 'partial' && isPartialOf(found, o.data)));
}

const mayExist = (outcomes: Outcome[]) => outcomes.some((o) => o.kind !== 'absent');
const describeOutcomes = (outcomes: Outcome[]) => outcomes.map((o) => (o.kind === 'absent' ? 'absent' : `${o.kind} ${o.data.length} B`)).join(' | ');

/** One worker's files, in its own directory: no other worker touches them, so the model is exact. */
class Worker {
  readonly model = new Map<string, Outcome[]>(); // absent from the map: certainly absent
  readonly violations: string[] = [];
  readonly counts = new Map<string, number>();
  private next = 0;

  constructor(
    readonly dir: string,
    private readonly client: Strata,
    private readonly rand: () => number,
  ) {}

  private count(what: string): void {
    this.counts.set(what, (this.counts.get(what) ?? 0) + 1);
  }

  private outcomes(path: string): Outcome[] {
    return this.model.get(path) ?? [ABSENT];
  }

  private set(path: string, outcomes: Outcome[]): void {
    if (outcomes.length === 1 && outcomes[0]!.kind === 'absent') this.model.delete(path);
    else this.model.set(path, outcomes);
  }

  private existing(): string[] {
    return [...this.model.keys()];
  }

  async run(until: number): Promise<void> {
    while (Date.now() < until) {
      const r = this.rand();
      const existing = this.existing();
      if (existing.length === 0 || r < 0.3) await this.write(`${this.dir}/n${this.next++}`);
      else if (r < 0.45) await this.write(pick(this.rand, existing));
      else if (r < 0.7) await this.read(pick(this.rand, existing));
      else if (r < 0.85) await this.remove(pick(this.rand, existing));
      else await this.rename(pick(this.rand, existing), `${this.dir}/n${this.next++}`);
      await sleep(this.rand() * OP_PAUSE_MS_MAX);
    }
  }

  private async write(path: string): Promise<void> {
    // Mostly small files, some up to SIZE_MAX (several chunks).
    const data = content(this.rand, Math.floor(this.rand() ** 2 * SIZE_MAX));
    const before = this.outcomes(path);
    try {
      await this.client.writeFile(path, data);
      this.set(path, [{ kind: 'exact', data }]);
      this.count('write ok');
    } catch (err) {
      this.set(path, [...before, { kind: 'exact', data }, { kind: 'partial', data }]);
      this.count(`write failed (${kindOf(err)})`);
    }
  }

  private async remove(path: string): Promise<void> {
    const before = this.outcomes(path);
    try {
      await this.client.rm(path);
      this.set(path, [ABSENT]);
      this.count('rm ok');
    } catch (err) {
      if (kindOf(err) === 'NotFound' && !before.some((o) => o.kind === 'absent')) this.violations.push(`rm ${path}: NotFound, but it must exist (${describeOutcomes(before)})`);
      this.set(path, [...before.filter((o) => o.kind !== 'absent'), ABSENT]);
      this.count(`rm failed (${kindOf(err)})`);
    }
  }

  private async rename(from: string, to: string): Promise<void> {
    const moved = this.outcomes(from).filter((o) => o.kind !== 'absent');
    try {
      await this.client.rename(from, to);
      if (moved.length === 0) this.violations.push(`rename ${from} ${to}: succeeded, but ${from} cannot exist`);
      this.set(to, moved);
      this.set(from, [ABSENT]);
      this.count('rename ok');
    } catch (err) {
      this.set(to, [ABSENT, ...moved]);
      this.set(from, [ABSENT, ...moved]);
      this.count(`rename failed (${kindOf(err)})`);
    }
  }

  private async read(path: string): Promise<void> {
    try {
      const found = await this.client.readFile(path);
      if (!matches(found, this.outcomes(path))) this.violations.push(`read ${path} during chaos: ${found.length} B matching none of ${describeOutcomes(this.outcomes(path))}`);
      this.count('read ok');
    } catch (err) {
      if (kindOf(err) === 'NotFound' && !this.outcomes(path).some((o) => o.kind === 'absent')) this.violations.push(`read ${path} during chaos: NotFound, but it must exist`);
      this.count(`read failed (${kindOf(err)})`);
    }
  }

  /** After the chaos, on a healed cluster: the directory holds exactly what the model allows. */
  async verify(): Promise<{ checked: number; acknowledged: number }> {
    const listed = new Set((await this.client.readdir(this.dir)).map((e) => `${this.dir}/${e.name}`));
    let acknowledged = 0;
    for (const path of listed) if (!this.model.has(path)) this.violations.push(`${path} exists, but no operation could have left it there`);
    for (const [path, outcomes] of this.model) {
      const certain = outcomes.length === 1 && outcomes[0]!.kind === 'exact';
      if (certain) acknowledged++;
      if (!listed.has(path)) {
        if (!outcomes.some((o) => o.kind === 'absent')) this.violations.push(`${path} is gone, but it must exist (${describeOutcomes(outcomes)})`);
        continue;
      }
      if (!mayExist(outcomes)) continue; // reported above
      try {
        const found = await this.client.readFile(path);
        if (!matches(found, outcomes)) this.violations.push(`${path}: ${found.length} B matching none of ${describeOutcomes(outcomes)}`);
      } catch (err) {
        this.violations.push(`${path}: read failed on the healed cluster: ${(err as Error).message}`);
      }
    }
    return { checked: this.model.size, acknowledged };
  }
}

const kindOf = (err: unknown) => (err instanceof StrataError ? err.kind : (err as Error).name);

describe('chaos: kill -9 and restart data nodes and coordinators under a mixed workload (etcd, 2 coordinators, 4 data nodes, RF 3)', () => {
  let cluster: TestCluster;
  let client: Strata;

  beforeAll(async () => {
    console.log(`chaos seed ${SEED} (replay: STRATA_CHAOS_SEED=${SEED} npx vitest run test/chaos.test.ts)`);
    cluster = await startCluster({
      meta: 'etcd',
      coordinators: 2,
      datanodes: 4,
      chunkSize: '256KiB',
      replication: 3,
      deadAfterMs: 2000,
      coordinatorArgs: ['--scan-interval-ms', '500', '--gc-grace-ms', '20000', '--leader-ttl-ms', '2000'], logLevel: 'info', // the GC pass lines are printed when GC leaves surplus copies
    });
    client = Strata.connect({ coordinators: cluster.coordinatorList, callTimeoutMs: 5000, failoverTimeoutMs: 15_000, transferTimeoutMs: 30_000 });
  });
  afterAll(async () => {
    client?.close();
    await cluster?.stop();
  });

  test(`acknowledged writes, deletes and renames survive (seed ${SEED})`, async () => {
    const rand = prng(SEED);
    const workers = Array.from({ length: WORKERS }, (_, i) => new Worker(`/w${i}`, client, prng(SEED + 1 + i)));
    for (const w of workers) await client.mkdir(w.dir);

    const until = Date.now() + CHAOS_MS;
    const load = Promise.all(workers.map((w) => w.run(until)));
    const log = await chaos(cluster, client, rand, until);
    await load;

    // Heal: everything back up, then no chunk short of copies.
    // A process killed in the chaos's last moments may not have exited yet (running still says
    // so): wait for it, or it would be left dead, holding copies GC cannot list.
    for (const p of [...cluster.coordinators, ...cluster.datanodes]) {
      if (p.process.killed && p.running) await new Promise((resolve) => p.process.once('exit', resolve));
      if (!p.running) p.start();
    }
    await cluster.waitForLiveNodes(cluster.datanodes.length, 60_000);
    const health = await waitFor('a healed cluster', async () => {
      const h = await client.health();
      return h.leader !== '' && h.missing === 0 && h.underReplicated === 0 && h.corrupt === 0 && h;
    }, 180_000);

    const summary = new Map<string, number>();
    for (const w of workers) for (const [what, n] of w.counts) summary.set(what, (summary.get(what) ?? 0) + n);
    let checked = 0;
    let acknowledged = 0;
    for (const w of workers) {
      const v = await w.verify();
      checked += v.checked;
      acknowledged += v.acknowledged;
    }
    console.log(`chaos seed ${SEED}: ${log.join(', ')}`);
    console.log(`chaos seed ${SEED}: ${[...summary].map(([k, n]) => `${k} ${n}`).join(', ')}; ${checked} paths checked, ${acknowledged} acknowledged files, ${health.chunks} chunks healthy`);
    const violations = workers.flatMap((w) => w.violations);
    expect(violations, `seed ${SEED}`).toEqual([]);

    // GC after the chaos leaves every node exactly the copies the records name: none taken that
    // a record names, every leftover (deleted, overwritten, abandoned, moved away) collected.
    const expected = new Map<string, number>(cluster.datanodes.map((n) => [n.name, 0]));
    for (const w of workers) {
      for (const entry of await client.readdir(w.dir)) {
        for (const chunk of await client.locate(`${w.dir}/${entry.name}`)) for (const nodeId of chunk.nodes) expected.set(nodeId, (expected.get(nodeId) ?? 0) + 1);
      }
    }
    const settledHolding = await waitFor('every node to hold only referenced chunks', async () => {
      const nodes = await client.nodes();
      return nodes.every((n) => n.chunks === expected.get(n.nodeId)) && nodes;
    }, 90_000).catch(() => undefined);
    if (!settledHolding) {
      // What the leaders' GC did (coordinators log each pass that deletes or keeps a stale copy).
      const gcLines = (await Promise.all(cluster.coordinators.map((c) => readFile(c.logFile, 'utf8').catch(() => ''))))
        .flatMap((text) => text.split('\n'))
        .filter((line) => /GC|elected|healing pass|dead/.test(line));
      console.log(gcLines.slice(-40).join('\n'));
      // Each coordinator's own view of the data nodes (the leader's decides what GC lists).
      for (const coordinator of cluster.coordinators) {
        const one = Strata.connect({ coordinators: coordinator.address, failoverTimeoutMs: 2000 });
        const view = await one.nodes().catch((err: Error) => err.message);
        console.log(`${coordinator.name} sees: ${typeof view === 'string' ? view : view.map((n) => `${n.nodeId} ${n.state} ${n.chunks} (${Date.now() - n.lastHeartbeatMs} ms ago)`).join(', ')}`);
        one.close();
      }
    }
    const holding = settledHolding ?? (await client.nodes());
    const held = Object.fromEntries(holding.map((n) => [n.nodeId, n.chunks]));
    expect(held, `seed ${SEED}: copies each node holds, after 90 s of GC`).toEqual(Object.fromEntries(expected));
    // The workload did something worth checking.
    expect(summary.get('write ok') ?? 0).toBeGreaterThan(20);
    expect(acknowledged).toBeGreaterThan(0);
  }, 330_000);
});

/**
 * Kills and restarts until `until`: one data node at a time (RF 3 keeps two live copies of every
 * chunk), and a coordinator once or twice (the other one serves and leads meanwhile).
 */
async function chaos(cluster: TestCluster, client: Strata, rand: () => number, until: number): Promise<string[]> {
  const log: string[] = [];
  const startedAt = Date.now();
  const coordinatorKills = 1 + Math.floor(rand() * COORDINATOR_KILLS_MAX);
  // When each coordinator kill is due: spread over the chaos window.
  const coordinatorDue = Array.from({ length: coordinatorKills }, (_, i) => startedAt + ((i + 0.2 + rand() * 0.6) * CHAOS_MS) / coordinatorKills);
  let downNode: RoleProcess | undefined;
  let downCoordinator: RoleProcess | undefined;
  const at = () => `${((Date.now() - startedAt) / 1000).toFixed(1)}s`;
  while (Date.now() < until) {
    await sleep(1500 + rand() * 3500);
    if (downCoordinator) {
      downCoordinator.start();
      log.push(`${at()} restart ${downCoordinator.name}`);
      downCoordinator = undefined;
    } else if (coordinatorDue.length > 0 && Date.now() >= coordinatorDue[0]!) {
      coordinatorDue.shift();
      downCoordinator = pick(rand, cluster.coordinators);
      downCoordinator.kill9();
      log.push(`${at()} kill -9 ${downCoordinator.name}`);
    }
    if (downNode) {
      const node = downNode;
      const restartedAt = Date.now();
      node.start();
      log.push(`${at()} restart ${node.name}`);
      // Heard from since the restart before the next kill: never two data nodes down at once.
      await waitFor(`${node.name} live again`, async () => {
        const seen = (await client.nodes()).find((n) => n.nodeId === node.name);
        return seen?.state === 'live' && seen.lastHeartbeatMs > restartedAt;
      }, 60_000);
      downNode = undefined;
    } else if (rand() < 0.8) {
      downNode = pick(rand, cluster.datanodes);
      downNode.kill9();
      log.push(`${at()} kill -9 ${downNode.name}`);
    }
  }
  return log;
}
