// What the benches share: `name value unit` lines for a plain and a TLS pass of the same work
// (the TLS pass's names carry `_tls`, then `_tls_ratio` = TLS / plain), and metadata ops timed
// in pairs: clients taking turns op by op, so a loaded machine's swings hit every side alike.
import type { Strata } from '../client/index.js';

export class Figures {
  /** The passes `envName` asks for (off | on | both): false = plain, true = TLS. */
  readonly tlsPasses: boolean[];
  /** The pass running now: its figures carry `_tls`. */
  tls = false;
  private readonly printed = new Map<string, number>();

  constructor(envName: string) {
    const passes = ({ off: [false], on: [true], both: [false, true] } as Record<string, boolean[]>)[process.env[envName] ?? 'off'];
    if (!passes) throw new Error(`${envName} must be off, on or both, not ${process.env[envName]}`);
    this.tlsPasses = passes;
  }

  readonly print = (name: string, value: number, unit: string): void => {
    const full = this.tls ? `${name}_tls` : name;
    this.printed.set(full, value);
    console.log(`${full} ${Number(value.toFixed(value < 10 ? 2 : 0))} ${unit}`);
  };

  /** TLS / plain for every figure both passes printed. */
  printTlsRatios(): void {
    for (const [name, value] of this.printed) {
      const tls = this.printed.get(`${name}_tls`);
      if (tls !== undefined && value > 0) console.log(`${name}_tls_ratio ${Number((tls / value).toFixed(3))} x`);
    }
  }
}

export type PairedOp = (sdk: Strata, dir: string, i: number) => Promise<unknown>;

/** The ops timed in pairs; each works on what the one before it made. */
export const PAIRED_OPS: [string, PairedOp][] = [
  ['mkdir', (sdk, dir, i) => sdk.mkdir(`${dir}/d${i}`)],
  ['create', (sdk, dir, i) => sdk.create(`${dir}/f${i}`, { exclusive: true })],
  ['stat', (sdk, dir, i) => sdk.stat(`${dir}/f${i}`)],
  ['rename', (sdk, dir, i) => sdk.rename(`${dir}/f${i}`, `${dir}/r${i}`)],
  ['unlink', (sdk, dir, i) => sdk.rm(`${dir}/r${i}`)],
];

export const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1] ?? NaN;

/**
 * Each of PAIRED_OPS `perOp` times on every side, taking turns (who goes first rotates), after
 * a warm-up (connection, JIT, token cache); `report` gets each op's median µs per side.
 */
export async function pairedMedians(sides: { sdk: Strata; dir: string }[], perOp: number, report: (op: string, medians: number[]) => void): Promise<void> {
  for (const side of sides) {
    await side.sdk.mkdir(side.dir, { parents: true });
    for (let i = 0; i < 50; i++) await side.sdk.stat('/');
  }
  for (const [op, run] of PAIRED_OPS) {
    const micros = sides.map(() => [] as number[]);
    for (let i = 0; i < perOp; i++) {
      for (let k = 0; k < sides.length; k++) {
        const at = (i + k) % sides.length;
        const started = process.hrtime.bigint();
        await run(sides[at]!.sdk, sides[at]!.dir, i);
        micros[at]!.push(Number(process.hrtime.bigint() - started) / 1e3);
      }
    }
    report(op, micros.map(median));
  }
}
