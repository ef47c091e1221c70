// Prometheus metrics of one role process (docs/metrics.md names them all). prom-client owns the
// registry, the text format, gauges read at scrape time and the default process metrics. The
// per-request series are this module's own: prom-client's labelled observe builds a label object
// and a hash string on every call, and these sit on the hot path (every session op, every gRPC
// call, every FUSE request), so a series is looked up once per method and then only adds numbers.
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import * as grpc from '@grpc/grpc-js';

/** Request latency buckets in seconds: 50 µs (a cached stat) to 10 s (a stuck etcd). */
export const LATENCY_BUCKETS_S = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

type Labels = Readonly<Record<string, string>>;

/** One histogram series: its buckets, sum and count, only ever added to. */
export class LatencySeries {
  private readonly buckets: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.buckets = new Float64Array(bounds.length);
  }

  observe(seconds: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    if (i < bounds.length) this.buckets[i]!++;
    this.sum += seconds;
    this.count++;
  }

  /** Since `startedMs` (performance.now()). */
  observeSince(startedMs: number): void {
    this.observe((performance.now() - startedMs) / 1000);
  }

  cumulative(): number[] {
    let total = 0;
    return Array.from(this.buckets, (n) => (total += n));
  }
}

/** One counter series. */
export class CountSeries {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(by = 1): void {
    this.value += by;
  }
}

interface MetricValue {
  labels: Labels;
  value: number;
  metricName?: string;
}

/** What prom-client's Registry needs of a metric: a name, help, type, and values at scrape time. */
interface Collectable {
  readonly name: string;
  get(): Promise<{ name: string; help: string; type: string; values: MetricValue[]; aggregator: string }>;
}

function seriesKey(labels: Labels): string {
  return Object.values(labels).join('\u0000');
}

export class LatencyFamily implements Collectable {
  private readonly series = new Map<string, LatencySeries>();
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[] = LATENCY_BUCKETS_S,
  ) {}

  /** The series of these labels, made on first use: callers keep it (one per method). */
  of(labels: Labels): LatencySeries {
    const key = seriesKey(labels);
    let series = this.series.get(key);
    if (!series) this.series.set(key, (series = new LatencySeries(labels, this.bounds)));
    return series;
  }

  async get() {
    const values: MetricValue[] = [];
    for (const series of this.series.values()) {
      const cumulative = series.cumulative();
      this.bounds.forEach((le, i) => values.push({ labels: { ...series.labels, le: String(le) }, value: cumulative[i]!, metricName: `${this.name}_bucket` }));
      values.push({ labels: { ...series.labels, le: '+Inf' }, value: series.count, metricName: `${this.name}_bucket` });
      values.push({ labels: series.labels, value: series.sum, metricName: `${this.name}_sum` });
      values.push({ labels: series.labels, value: series.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
  }
}

export class CountFamily implements Collectable {
  private readonly series = new Map<string, CountSeries>();
  constructor(
    readonly name: string,
    readonly help: string,
    /** Read at scrape time instead of counted (a total kept elsewhere, e.g. the scrubber's). */
    private readonly read?: () => number,
  ) {}

  of(labels: Labels = {}): CountSeries {
    const key = seriesKey(labels);
    let series = this.series.get(key);
    if (!series) this.series.set(key, (series = new CountSeries(labels)));
    return series;
  }

  async get() {
    const values: MetricValue[] = this.read ? [{ labels: {}, value: this.read() }] : [...this.series.values()].map((s) => ({ labels: s.labels, value: s.value }));
    return { name: this.name, help: this.help, type: 'counter', values, aggregator: 'sum' };
  }
}

/** gRPC status codes by number, as the `code` label says them (OK, NOT_FOUND, ...). */
const CODE_NAMES: string[] = [];
for (const [name, value] of Object.entries(grpc.status)) if (typeof value === 'number') CODE_NAMES[value] = name;

/** Requests of one method: a latency series and a count per status code, made on first use. */
export class RequestSeries {
  readonly latency: LatencySeries;
  private readonly byCode: (CountSeries | undefined)[] = [];
  constructor(
    private readonly family: RequestFamilies,
    private readonly transport: string,
    private readonly method: string,
  ) {
    this.latency = family.latency.of({ transport, method });
  }

  /** One request answered with `code` (a gRPC status), `startedMs` from performance.now(). */
  done(code: number, startedMs: number): void {
    this.latency.observeSince(startedMs);
    (this.byCode[code] ??= this.family.count.of({ transport: this.transport, method: this.method, code: CODE_NAMES[code] ?? String(code) })).inc();
  }
}

class RequestFamilies {
  readonly latency = new LatencyFamily('strata_requests_duration_seconds', 'Time from a request\'s arrival to its answer, by transport (grpc, session) and method');
  readonly count = new CountFamily('strata_requests_total', 'Requests answered, by transport (grpc, session), method and gRPC status code');
}

export type Role = 'coordinator' | 'datanode' | 'mount';

/**
 * One process's metrics. Made only when the role serves them (--metrics-listen): with metrics off
 * the hot paths see `undefined` and do nothing.
 */
export class RoleMetrics {
  readonly registry = new Registry();
  private readonly requestFamilies = new RequestFamilies();
  private readonly requestSeries = new Map<string, RequestSeries>();

  constructor(readonly role: Role) {
    collectDefaultMetrics({ register: this.registry });
    this.add(this.requestFamilies.latency);
    this.add(this.requestFamilies.count);
    this.gauge('strata_info', 'Always 1; the role label says which role this process runs', () => 1, { role });
  }

  /** Registers a metric made elsewhere (a LatencyFamily, a CountFamily, a prom-client metric). */
  add<T extends Collectable>(metric: T): T {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    this.registry.registerMetric(metric as any);
    return metric;
  }

  /** The series of one method on one transport ('grpc', 'session'): look it up once, keep it. */
  requests(transport: string, method: string): RequestSeries {
    const key = `${transport}/${method}`;
    let series = this.requestSeries.get(key);
    if (!series) this.requestSeries.set(key, (series = new RequestSeries(this.requestFamilies, transport, method)));
    return series;
  }

  latency(name: string, help: string, bounds?: readonly number[]): LatencyFamily {
    return this.add(new LatencyFamily(name, help, bounds));
  }

  counter(name: string, help: string, read?: () => number): CountFamily {
    return this.add(new CountFamily(name, help, read));
  }

  /** A gauge read when scraped; `read` may be async (a statfs) and should be cheap. */
  gauge(name: string, help: string, read: () => number | Promise<number>, labels?: Labels): void {
    new Gauge({
      name,
      help,
      labelNames: labels ? Object.keys(labels) : [],
      registers: [this.registry],
      async collect() {
        const value = await read();
        if (labels) this.set(labels, value);
        else this.set(value);
      },
    });
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * A gRPC server interceptor counting every call of every service by method and final status, and
 * timing it from its metadata's arrival to its status (for a stream: its whole life).
 */
export function metricsInterceptor(metrics: RoleMetrics): grpc.ServerInterceptor {
  const byPath = new Map<string, RequestSeries>();
  const seriesOf = (path: string) => {
    let series = byPath.get(path);
    if (!series) byPath.set(path, (series = metrics.requests('grpc', path.slice(path.lastIndexOf('/') + 1))));
    return series;
  };
  return (descriptor, call) => {
    const series = seriesOf(descriptor.path);
    const startedMs = performance.now();
    return new grpc.ServerInterceptingCall(call, {
      sendStatus(status, next) {
        series.done(status.code, startedMs);
        next(status);
      },
    });
  };
}
