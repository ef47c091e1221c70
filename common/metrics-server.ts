// The HTTP port of a role (--metrics-listen): GET /metrics (Prometheus text), /healthz (the
// process is alive: answering at all proves its event loop turns) and /readyz (the role's own
// check: 200 "ok", or 503 and one line saying why not). With TLS configured for the role it
// serves HTTPS with the role's certificates (reloaded with them), else plain HTTP.
import http from 'node:http';
import type net from 'node:net';
import { StrataError } from './errors.js';
import type { Logger } from './log.js';
import type { RoleMetrics } from './metrics.js';
import type { TlsContext } from './tls.js';

/** undefined = ready; a string = not ready, and why (one line). */
export type ReadinessCheck = () => Promise<string | undefined>;

/** A readiness check that has not answered by then is an answer: not ready. */
export const READY_CHECK_TIMEOUT_MS = 2_000;

export interface MetricsServer {
  /** host:port it listens on. */
  address: string;
  close(): Promise<void>;
}

export async function startMetricsServer(options: { listen: string; metrics: RoleMetrics; ready: ReadinessCheck; log: Logger; tls?: TlsContext }): Promise<MetricsServer> {
  const { metrics, ready, log } = options;
  const at = options.listen.lastIndexOf(':');
  const host = options.listen.slice(0, at) || '127.0.0.1';
  const port = Number(options.listen.slice(at + 1));
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(res, 405, 'only GET\n', { allow: 'GET, HEAD' });
    if (path === '/healthz') return answer(res, 200, 'ok\n');
    if (path === '/readyz') {
      return void withDeadline(ready(), READY_CHECK_TIMEOUT_MS).then(
        (reason) => answer(res, reason === undefined ? 200 : 503, `${reason ?? 'ok'}\n`),
        (err) => answer(res, 503, `${oneLine((err as Error)?.message ?? String(err))}\n`),
      );
    }
    if (path === '/metrics') {
      return void metrics.metrics().then(
        (text) => answer(res, 200, text, { 'content-type': metrics.contentType }),
        (err) => {
          log.warn({ err: (err as Error)?.message }, 'metrics: collecting failed');
          answer(res, 500, 'collecting metrics failed\n');
        },
      );
    }
    answer(res, 404, 'not found: try /metrics, /healthz or /readyz\n');
  });
  // A slow or idle scraper must not hold sockets open forever.
  server.requestTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  let listener: net.Server = server;
  if (options.tls) {
    // The role's TLS listener (its certificates reloaded with the rest); HTTP runs on its sockets.
    listener = options.tls.createServer({}, (socket) => server.emit('connection', socket));
  }
  await new Promise<void>((resolve, reject) => {
    listener.once('error', (err) => reject(new StrataError('Unavailable', `cannot listen on ${options.listen} (metrics): ${err.message}`, { cause: err })));
    listener.listen(port, host, () => resolve());
  });
  const bound = listener.address() as net.AddressInfo;
  return {
    address: `${host}:${bound.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        listener.close(() => resolve());
        server.closeAllConnections();
        if (listener !== server) server.close();
      }),
  };
}

function answer(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** `work`, or a rejection naming the deadline once it passed. */
export function withDeadline<T>(work: Promise<T>, timeoutMs: number, what = 'readiness check'): Promise<T> {
  let timer: NodeJS.Timeout;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StrataError('Timeout', `${what} did not answer within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
