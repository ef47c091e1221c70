// The web console (console/): a real cluster whose coordinator serves it, driven in real headless
// Chromium (Debian's, through playwright-core) for what a user sees and does, and by plain HTTP
// for its API's refusals with auth on (a Keycloak-shaped realm on loopback).
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Strata } from '../client/index.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { OidcRealm } from './harness/oidc-realm.js';
import { freePort } from './harness/ports.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((file) => existsSync(file));
/** Where the screenshot goes (kept after the run: the test output). */
const OUTPUT_DIR = path.resolve('test-output');

interface NodeJson {
  nodeId: string;
  state: string;
  chunks: number;
}

describe.skipIf(!CHROMIUM)('web console in headless Chromium (auth off)', () => {
  let cluster: TestCluster;
  let sdk: Strata;
  let browser: Browser;
  let url: string;
  const original = randomBytes(300_000);

  beforeAll(async () => {
    const port = await freePort();
    url = `http://127.0.0.1:${port}/`;
    cluster = await startCluster({ datanodes: 3, replication: 2, coordinatorArgs: ['--console-listen', `127.0.0.1:${port}`] });
    sdk = Strata.connect({ coordinators: cluster.coordinatorList });
    await sdk.mkdir('/docs', { parents: true });
    await sdk.writeFile('/docs/hello.bin', original);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await sdk?.close();
    await cluster?.stop();
  });

  test('the overview shows what `strata nodes --json` says; a browsed file downloads identical; an upload lands', async () => {
    const page = await browser.newPage({ acceptDownloads: true, viewport: { width: 1280, height: 1000 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(url);
    await page.waitForSelector('body[data-ready="1"]', { timeout: 30_000 });

    // The nodes table against the CLI: once the nodes' heartbeats carry the file's chunks, both
    // show the same ids, states and chunk counts (the page polls every 2 s).
    const cliNodes = async () => {
      const run = await cluster.cli(['nodes', '--json']);
      expect(run.code, run.stderr).toBe(0);
      return (JSON.parse(run.stdout) as NodeJson[]).map((n) => `${n.nodeId} ${n.state} ${n.chunks}`).sort();
    };
    const pageNodes = async () =>
      (
        await page.$$eval('[data-testid="node-row"]', (rows) =>
          rows.map((row) => ['nodeId', 'state', 'chunks'].map((f) => row.querySelector(`[data-field="${f}"]`)?.textContent ?? '').join(' ')),
        )
      ).sort();
    await expect.poll(async () => (await cliNodes()).reduce((sum, line) => sum + Number(line.split(' ')[2]), 0), { timeout: 20_000 }).toBe(2); // one chunk, 2 copies
    await expect.poll(async () => JSON.stringify(await pageNodes()), { timeout: 20_000 }).toBe(JSON.stringify(await cliNodes()));
    expect(await page.textContent('[data-testid="nodes-live"]')).toBe('3');
    expect(await page.textContent('[data-testid="leader"]')).toBe(cluster.coordinatorList);

    // The file browser: into /docs, then the file, which downloads byte for byte.
    await page.click('[data-testid="file-row"][data-name="docs"] a');
    await page.waitForSelector('[data-testid="file-row"][data-name="hello.bin"]');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-testid="file-row"][data-name="hello.bin"] a')]);
    expect(download.suggestedFilename()).toBe('hello.bin');
    expect(Buffer.compare(readFileSync((await download.path())!), original)).toBe(0);

    // An upload into the directory shown lands there, readable through the SDK.
    const uploaded = Buffer.from(`uploaded from the console ${Date.now()}\n`);
    await page.setInputFiles('[data-testid="upload-file"]', { name: 'from-browser.txt', mimeType: 'text/plain', buffer: uploaded });
    await page.click('#upload-form button[type="submit"]');
    await page.waitForSelector('[data-testid="file-row"][data-name="from-browser.txt"]', { timeout: 30_000 });
    expect(await page.textContent('[data-testid="upload-result"]')).toContain('/docs/from-browser.txt');
    expect(Buffer.compare(await sdk.readFile('/docs/from-browser.txt'), uploaded)).toBe(0);

    // The capacity chart has samples to draw (the nodes' heartbeats, every 2 s).
    await page.waitForSelector('#chart-used canvas');
    mkdirSync(OUTPUT_DIR, { recursive: true });
    const shot = path.join(OUTPUT_DIR, 'console.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(readFileSync(shot).subarray(1, 4).toString()).toBe('PNG');
    console.log(`console screenshot: ${shot}`);
    expect(pageErrors).toEqual([]);
    await page.close();
  }, 120_000);

  test('bad requests: one JSON error line each, nothing stored', async () => {
    const api = (p: string, init?: RequestInit) => fetch(new URL(p, url), init);
    const notFound = await api('/api/file?path=/docs/nope');
    expect(notFound.status).toBe(404);
    expect(await notFound.json()).toMatchObject({ error: 'NotFound' });
    expect((await api('/api/list')).status).toBe(400);
    expect((await api('/api/list?path=/docs/hello.bin')).status).toBe(400); // not a directory
    expect((await api('/no/such/page')).status).toBe(404);
    // A write without the console's header (what a cross-site form would send) is refused.
    const forged = await api('/api/file?path=/docs/forged.txt', { method: 'PUT', body: 'x' });
    expect(forged.status).toBe(400);
    expect(await sdk.exists('/docs/forged.txt')).toBe(false);
  });
});

describe('web console API with auth on: a token is required, and it is read-only without the admin role', () => {
  let realm: OidcRealm;
  let cluster: TestCluster;
  let url: string;
  const admin = () => realm.token('ops', { realm_access: { roles: ['strata-admin'] } });
  const user = () => realm.token('ann', { tenant: 't', uid: 3001, gid: 3001 });

  beforeAll(async () => {
    realm = await OidcRealm.start();
    const port = await freePort();
    url = `http://127.0.0.1:${port}/`;
    cluster = await startCluster({ datanodes: 1, replication: 1, coordinatorArgs: [...realm.coordinatorArgs(), '--console-listen', `127.0.0.1:${port}`], tokenProvider: admin });
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    await realm?.stop();
  });

  const call = (p: string, token?: string, init: RequestInit = {}) =>
    fetch(new URL(p, url), { ...init, headers: { ...(token && { authorization: `Bearer ${token}` }), ...(init.headers as Record<string, string>) } });
  const upload = (p: string, token: string) => call(`/api/file?path=${p}`, token, { method: 'PUT', body: 'hello', headers: { 'x-strata-console': '1' } });

  test('no token or a forged one: 401; the page itself loads (it asks for a token)', async () => {
    expect((await call('/')).status).toBe(200);
    const none = await call('/api/overview');
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ error: 'Unauthenticated' });
    expect((await call('/api/overview', `${user()}x`)).status).toBe(401);
  });

  test('a tenant user sees its own tree, may not upload or read cluster-wide figures; the admin may', async () => {
    const overview = await call('/api/overview', user());
    expect(overview.status).toBe(200);
    expect(await overview.json()).toMatchObject({ auth: 'oidc', admin: false, subject: 'ann' });
    expect((await call('/api/samples', user())).status).toBe(403);
    expect((await call('/api/tiering', user())).status).toBe(403);
    expect((await upload('/ann.txt', user())).status).toBe(403);
    const sdk = Strata.connect({ coordinators: cluster.coordinatorList, tokenProvider: admin });
    try {
      expect(await sdk.exists('/tenants/t/ann.txt')).toBe(false);
      expect((await upload('/by-admin.txt', admin())).status).toBe(201);
      expect((await sdk.readFile('/by-admin.txt')).toString()).toBe('hello');
      expect((await call('/api/samples', admin())).status).toBe(200);
    } finally {
      await sdk.close();
    }
  });
});
