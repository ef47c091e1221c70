// Scrapes a role's /metrics, /healthz, /readyz (common/metrics-server.ts) and parses the
// Prometheus text format: `name{label="value",...} number` lines, comments skipped.
import http from 'node:http';

export interface HttpAnswer {
  status: number;
  body: string;
}

/** One plain HTTP GET, bounded in time. */
export function httpGet(address: string, path: string, timeoutMs = 10_000): Promise<HttpAnswer> {
  const at = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = http.get({ host: address.slice(0, at), port: Number(address.slice(at + 1)), path, timeout: timeoutMs, agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${address}${path}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = SAMPLE.exec(line);
    if (!match) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(LABEL)) labels[key!] = value!.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** What one scrape said. */
export class Scrape {
  constructor(readonly samples: Sample[]) {}

  names(): Set<string> {
    return new Set(this.samples.map((s) => s.name));
  }

  /** Sum of the samples named `name` whose labels include `labels`. */
  sum(name: string, labels: Record<string, string> = {}): number {
    return this.samples
      .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
      .reduce((total, s) => total + s.value, 0);
  }
}

export async function scrape(address: string): Promise<Scrape> {
  const answer = await httpGet(address, '/metrics');
  if (answer.status !== 200) throw new Error(`GET ${address}/metrics: ${answer.status} ${answer.body.slice(0, 200)}`);
  return new Scrape(parseMetrics(answer.body));
}
