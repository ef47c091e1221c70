// What authentication costs metadata ops: two single-coordinator clusters (embedded engine, no
// data nodes) side by side, one `--auth off`, one `--auth oidc` against a Keycloak-shaped realm
// on loopback (test/harness/oidc-realm.ts), and one client each, taking turns op by op (who goes
// first rotates), so a loaded machine's swings hit both alike. Prints the median µs of each op
// per side and the ratio on/off, for the session stream (authenticated once per session) and for
// unary RPCs (a token on every call: verified once, then remembered until it expires); then
// ops/s of 16 concurrent callers per side, in alternating blocks.
// Run on its own (`npm run build && node dist/bench/auth.js`) or with `META_AUTH=1 npm run bench:meta`.
// Env: AUTH_N (paired ops per op kind; 400), AUTH_C16_N (ops per c16 block; 800), AUTH_AA (0; 1 =
// both sides auth off: the noise floor of the comparison, what the ratios mean on this machine now).
import { readFileSync } from 'node:fs';
import { Strata } from '../client/index.js';
import { startCluster, type TestCluster } from '../test/harness/cluster.js';
import { OidcRealm } from '../test/harness/oidc-realm.js';
import { pairedMedians, type PairedOp } from './figures.js';

const print = (name: string, value: number, unit: string) => console.log(`${name} ${Number(value.toFixed(value < 10 ? 3 : 0))} ${unit}`);
/** ns the process's main thread has run on a CPU (/proc/PID/schedstat, first field). */
const cpuNs = (pid: number) => Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);

interface Side {
  name: 'off' | 'on';
  /** The coordinator's pid: its main thread's CPU time is steadier than wall-clock on a loaded box. */
  pid: number;
  sdk: Strata;
  dir: string;
}

async function paired(sides: Side[], perOp: number, label: string): Promise<void> {
  await pairedMedians(sides, perOp, (op, [off, on]) => {
    print(`auth_p50_${op}_${label}_off`, off!, 'us');
    print(`auth_p50_${op}_${label}_on`, on!, 'us');
    print(`auth_ratio_${op}_${label}`, on! / off!, 'on/off');
  });
}

/** ops/s of 16 callers on each side's one client, stat then mkdir, in alternating blocks. */
async function concurrent(sides: Side[], perBlock: number, statNames: number): Promise<void> {
  const callers = 16;
  const ops: [string, PairedOp][] = [
    // The directories the paired pass made.
    ['stat', (sdk, dir, n) => sdk.stat(`${dir}/d${n % statNames}`)],
    ['mkdir', (sdk, dir, n) => sdk.mkdir(`${dir}/c16-${n}`)],
  ];
  // Whole ops per caller, and every name once (AUTH_C16_N need not divide by 16).
  const each = Math.ceil(perBlock / callers);
  for (const [op, run] of ops) {
    const seconds = new Map<string, number>(sides.map((s) => [s.name, 0]));
    const serverNs = new Map<string, number>(sides.map((s) => [s.name, 0]));
    const clientUs = new Map<string, number>(sides.map((s) => [s.name, 0]));
    for (let block = 0; block < 4; block++) {
      for (let k = 0; k < sides.length; k++) {
        const side = sides[(block + k) % sides.length]!;
        const serverBefore = cpuNs(side.pid);
        const clientBefore = process.cpuUsage();
        const started = process.hrtime.bigint();
        await Promise.all(Array.from({ length: callers }, async (_, c) => {
          for (let i = 0; i < each; i++) await run(side.sdk, side.dir, (block * callers + c) * each + i);
        }));
        seconds.set(side.name, seconds.get(side.name)! + Number(process.hrtime.bigint() - started) / 1e9);
        serverNs.set(side.name, serverNs.get(side.name)! + cpuNs(side.pid) - serverBefore);
        const client = process.cpuUsage(clientBefore);
        clientUs.set(side.name, clientUs.get(side.name)! + client.user + client.system);
      }
    }
    const total = 4 * callers * each;
    const rate = (name: string) => total / seconds.get(name)!;
    print(`auth_${op}_c16_off`, rate('off'), 'ops/s');
    print(`auth_${op}_c16_on`, rate('on'), 'ops/s');
    print(`auth_ratio_${op}_c16`, rate('on') / rate('off'), 'on/off');
    for (const name of ['off', 'on']) {
      print(`auth_${op}_c16_coordinator_cpu_${name}`, serverNs.get(name)! / 1e3 / total, 'us/op');
      print(`auth_${op}_c16_client_cpu_${name}`, clientUs.get(name)! / total, 'us/op');
    }
    print(`auth_ratio_${op}_c16_coordinator_cpu`, serverNs.get('on')! / serverNs.get('off')!, 'on/off');
  }
}

export async function authBench(perOp = Number(process.env.AUTH_N ?? 400), perBlock = Number(process.env.AUTH_C16_N ?? 800)): Promise<void> {
  const realm = await OidcRealm.start();
  const token = () => realm.token('bench', { tenant: 'bench' });
  const clusters: TestCluster[] = [];
  const clients: Strata[] = [];
  try {
    const off = await startCluster({ datanodes: 0, coordinatorArgs: ['--auth', 'off'] });
    clusters.push(off);
    const aa = process.env.AUTH_AA === '1';
    const on = await startCluster({ datanodes: 0, coordinatorArgs: aa ? ['--auth', 'off'] : realm.coordinatorArgs(), tokenProvider: token });
    clusters.push(on);
    for (const session of [true, false]) {
      const label = session ? 'session' : 'unary';
      const sides: Side[] = [
        { name: 'off', pid: off.coordinators[0]!.process.pid!, sdk: Strata.connect({ coordinators: off.coordinatorList, session }), dir: `/bench-${label}` },
        { name: 'on', pid: on.coordinators[0]!.process.pid!, sdk: Strata.connect({ coordinators: on.coordinatorList, session, tokenProvider: aa ? undefined : token }), dir: `/bench-${label}` },
      ];
      clients.push(...sides.map((s) => s.sdk));
      await paired(sides, perOp, label);
      if (session) await concurrent(sides, perBlock, perOp);
    }
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    for (const cluster of clusters) await cluster.stop();
    await realm.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await authBench();
