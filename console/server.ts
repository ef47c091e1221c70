// The web console, served by a coordinator on its own HTTP port (--console-listen): the page
// (console/web, bundled into dist/console at build) and a small JSON API over the SDK. The
// console is one more client of the coordinator: every call carries the browser's bearer token
// (auth on), so what it shows and may change is what the namespace gate lets that caller see and
// do. Uploads need the admin role (read-only for everyone else), as do cluster-wide figures a
// tenant's caller is not shown (health, tiering, capacity samples).
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import type { Principal } from '../common/auth-principal.js';
import { StrataError, invalid, unauthenticated } from '../common/errors.js';
import { httpStatusOf } from '../common/http-status.js';
import type { Logger } from '../common/log.js';
import { Strata, type TlsFiles } from '../client/index.js';
import type { Authenticator } from '../coordinator/auth/authenticator.js';
import type { AdminPolicy } from '../coordinator/authz/admin.js';
import { SampleRing, type ClusterTotals } from './samples.js';

export interface ConsoleOptions {
  /** host:port to serve on (127.0.0.1 unless told otherwise, like every strata server). */
  listen: string;
  /** The coordinator(s) the console's SDK clients call: this coordinator's own address. */
  coordinators: string[];
  auth: Authenticator;
  admin: AdminPolicy;
  /** TLS: the SDK reaches the coordinator with these files, and the page is served over HTTPS with its cert and key. */
  tls?: TlsFiles;
  totals: ClusterTotals;
  log: Logger;
}

export interface RunningConsole {
  url: string;
  close(): Promise<void>;
}

/** Built page assets (console/build.mjs): dist/console next to this file once compiled. */
const ASSETS_DIR = path.dirname(fileURLToPath(import.meta.url));
const ASSETS: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/assets/app.js': 'app.js',
  '/assets/app.css': 'app.css',
};
const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };
/** SDK clients kept per bearer token; the oldest idle one goes past this. */
const CLIENTS_MAX = 32;
const CLIENT_IDLE_MS = 5 * 60_000;
/** Damaged files the overview names at most. */
const HEALTH_FILES = 20;
/** Entries one listing shows (the browser pages on with ?after=). */
const LIST_PAGE = 500;
/** Writes from a page must say so: a cross-site form cannot set this header without a CORS preflight, which is never answered. */
const WRITE_HEADER = 'x-strata-console';

interface Caller {
  principal: Principal;
  sdk: Strata;
  admin: boolean;
}

export async function startConsole(options: ConsoleOptions): Promise<RunningConsole> {
  if (!existsSync(path.join(ASSETS_DIR, 'index.html'))) {
    throw new StrataError('Unavailable', `the web console's page is not built (${ASSETS_DIR}/index.html): run npm run build`);
  }
  const samples = new SampleRing(options.totals);
  const clients = new ClientCache(options);
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    serve(req, res, options, clients, samples).catch((err) => fail(res, err, options.log));
  };
  const { cert, key } = options.tls ?? {};
  const server: Server = cert && key ? createTlsServer({ cert: readFileSync(cert), key: readFileSync(key) }, handle) : createServer(handle);
  const at = options.listen.lastIndexOf(':');
  const host = options.listen.slice(0, at) || '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new StrataError(err.code === 'EADDRINUSE' ? 'Unavailable' : 'Invalid', `console: cannot listen on ${options.listen}: ${err.message}`)),
    );
    server.listen(Number(options.listen.slice(at + 1)), host, resolve);
  });
  samples.start();
  const port = (server.address() as { port: number }).port;
  const url = `${cert && key ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}/`;
  options.log.info({ url, auth: options.auth.mode }, 'web console serving');
  return {
    url,
    async close() {
      samples.stop();
      await closeServer(server);
      await clients.close();
    },
  };
}

async function serve(req: IncomingMessage, res: ServerResponse, options: ConsoleOptions, clients: ClientCache, samples: SampleRing): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://console');
  const asset = ASSETS[url.pathname];
  if (asset && req.method === 'GET') return sendAsset(res, asset);
  if (!url.pathname.startsWith('/api/')) return sendJson(res, 404, { error: 'NotFound', message: `${url.pathname}: no such page` });
  const caller = await clients.callerOf(req);
  const route = `${req.method} ${url.pathname}`;
  switch (route) {
    case 'GET /api/overview':
      return sendJson(res, 200, await overview(caller, options));
    case 'GET /api/tiering':
      // It scans every chunk: the page asks for it now and then, not with every overview.
      requireAdmin(caller, 'the tiering status');
      return sendJson(res, 200, await caller.sdk.tierStatus());
    case 'GET /api/samples':
      requireAdmin(caller, 'the capacity samples');
      return sendJson(res, 200, { samples: samples.list() });
    case 'GET /api/list':
      return sendJson(res, 200, await listing(caller, pathParam(url), url.searchParams.get('after') ?? ''));
    case 'GET /api/file':
      return download(res, caller, pathParam(url));
    case 'PUT /api/file':
      if (req.headers[WRITE_HEADER] !== '1') throw invalid(`an upload must carry the ${WRITE_HEADER}: 1 header`);
      requireAdmin(caller, 'uploads');
      return upload(req, res, caller, pathParam(url), options.log);
    default:
      return sendJson(res, 404, { error: 'NotFound', message: `${route}: no such API call` });
  }
}

async function overview(caller: Caller, options: ConsoleOptions) {
  const [nodes, fs] = await Promise.all([caller.sdk.nodes(), caller.sdk.statfs()]);
  // Health names every tenant's files: the admin's only.
  const health = caller.admin ? await caller.sdk.health({ maxFiles: HEALTH_FILES }).catch(shownError) : undefined;
  return { auth: options.auth.mode, subject: caller.principal.subject, admin: caller.admin, nodes, fs, health };
}

async function listing(caller: Caller, dir: string, after: string) {
  const entries: { name: string; type: string; size: number; mtimeMs: number }[] = [];
  let more = false;
  for await (const entry of caller.sdk.list(dir, { withStats: true, after, pageSize: LIST_PAGE })) {
    if (entries.length === LIST_PAGE) {
      more = true;
      break;
    }
    entries.push({ name: entry.name, type: entry.type, size: entry.stat?.size ?? 0, mtimeMs: entry.stat?.mtimeMs ?? 0 });
  }
  return { path: dir, entries, more };
}

async function download(res: ServerResponse, caller: Caller, file: string): Promise<void> {
  const stat = await caller.sdk.stat(file);
  const stream = await caller.sdk.createReadStream(file);
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': String(stat.size),
    'content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(path.posix.basename(file))}`,
    'cache-control': 'no-store',
  });
  // Headers are gone: a failure now can only cut the body short, which the browser shows as failed.
  await pipeline(stream, res).catch((err) => res.destroy(err));
}

async function upload(req: IncomingMessage, res: ServerResponse, caller: Caller, file: string, log: Logger): Promise<void> {
  const out = await caller.sdk.createWriteStream(file);
  await pipeline(req, out);
  const stat = await caller.sdk.stat(file);
  log.info({ path: file, bytes: stat.size, by: caller.principal.subject }, 'console: file uploaded');
  sendJson(res, 201, { path: file, size: stat.size });
}

function requireAdmin(caller: Caller, what: string): void {
  if (!caller.admin) throw new StrataError('PermissionDenied', `${what}: the console is read-only without the admin role`);
}

function pathParam(url: URL): string {
  const value = url.searchParams.get('path');
  if (!value || !value.startsWith('/')) throw invalid('path: an absolute path (?path=/dir/file) is required');
  return value;
}

/** A figure the page shows as unavailable, not a failed page. */
const shownError = (err: unknown) => ({ error: httpStatusOf(err).message });

function sendAsset(res: ServerResponse, name: string): void {
  res.writeHead(200, { 'content-type': TYPES[path.extname(name)] ?? 'application/octet-stream', 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' });
  createReadStream(path.join(ASSETS_DIR, name)).pipe(res);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

function fail(res: ServerResponse, err: unknown, log: Logger): void {
  const { status, kind, message } = httpStatusOf(err);
  if (status >= 500) log.warn({ err }, 'console: request failed');
  if (res.headersSent) res.destroy();
  else sendJson(res, status, { error: kind, message });
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** One SDK client per bearer token (auth off: one for everyone), closed after a while unused. */
class ClientCache {
  private readonly byToken = new Map<string, { caller: Promise<Caller>; usedMs: number }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly options: ConsoleOptions) {
    this.sweeper = setInterval(() => this.sweep(Date.now() - CLIENT_IDLE_MS), CLIENT_IDLE_MS);
    this.sweeper.unref();
  }

  async callerOf(req: IncomingMessage): Promise<Caller> {
    const header = req.headers.authorization ?? '';
    const token = /^Bearer (\S+)$/i.exec(header)?.[1] ?? '';
    if (this.options.auth.mode !== 'off' && !token) throw unauthenticated('the console needs an access token (Authorization: Bearer)');
    const principal = await this.options.auth.verify(token);
    const key = this.options.auth.mode === 'off' ? '' : token;
    let held = this.byToken.get(key);
    if (!held) {
      const caller = Promise.resolve({
        principal,
        admin: this.options.admin.holds(principal),
        sdk: Strata.connect({ coordinators: this.options.coordinators, ...(key && { token: key }), tls: this.options.tls ?? false }),
      });
      held = { caller, usedMs: 0 };
      this.byToken.set(key, held);
      if (this.byToken.size > CLIENTS_MAX) this.sweep(Infinity, CLIENTS_MAX);
    }
    held.usedMs = Date.now();
    return held.caller;
  }

  /** Closes clients unused since `beforeMs`, or the least recently used past `keep`. */
  private sweep(beforeMs: number, keep = 0): void {
    const byAge = [...this.byToken].sort((a, b) => a[1].usedMs - b[1].usedMs);
    for (const [key, held] of byAge.slice(0, Math.max(0, byAge.length - keep))) {
      if (keep === 0 && held.usedMs >= beforeMs) continue;
      this.byToken.delete(key);
      void held.caller.then((c) => c.sdk.close());
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await Promise.all([...this.byToken.values()].map(async (held) => (await held.caller).sdk.close()));
    this.byToken.clear();
  }
}
