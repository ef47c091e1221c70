// The console page: polls the coordinator's console API and draws the cluster. Plain DOM; the
// charts are uPlot's. A token (auth on) stays in this tab's sessionStorage and goes out only as
// an Authorization header to the console's own origin.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './app.css';

interface NodeStatus {
  nodeId: string;
  address: string;
  state: string;
  capacityBytes: number;
  usedBytes: number;
  chunks: number;
  zone: string;
  lastHeartbeatMs: number;
}
interface Overview {
  auth: 'off' | 'oidc';
  subject: string;
  admin: boolean;
  nodes: NodeStatus[];
  fs: { capacityBytes: number; usedBytes: number; files: number; directories: number; chunks: number; liveNodes: number; tenant?: string };
  health?: {
    error?: string;
    underReplicated: number;
    missing: number;
    corrupt: number;
    leader: string;
    files: { path: string; state: string; chunks: number }[];
    queue: { queued: number; running: number; repaired: number; failed: number; bytesCopied: number };
    events: { atMs: number; kind: string; message: string }[];
  };
}
interface Sample {
  atMs: number;
  usedBytes: number;
  storedBytesPerSec: number;
}
interface Entry {
  name: string;
  type: string;
  size: number;
  mtimeMs: number;
}

const OVERVIEW_EVERY_MS = 2_000;
const TIERING_EVERY_MS = 15_000;
const TOKEN_KEY = 'strata-console-token';

const $ = <T extends Element = HTMLElement>(selector: string): T => {
  const found = document.querySelector<T>(selector);
  if (!found) throw new Error(`page: ${selector} missing`);
  return found;
};
const byTestId = (id: string) => $(`[data-testid="${id}"]`);

class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function authHeaders(): Record<string, string> {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { authorization: `Bearer ${token}` } : {};
}

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(path, { ...init, headers: { ...authHeaders(), ...(init.headers as Record<string, string>) } });
  if (!res.ok) {
    const body = await res.json().catch(() => ({ message: res.statusText }));
    throw new ApiError(res.status, body.message ?? res.statusText);
  }
  return res.json() as Promise<T>;
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function cell(row: HTMLTableRowElement, text: string, field?: string): HTMLTableCellElement {
  const td = row.insertCell();
  td.textContent = text;
  if (field) td.dataset.field = field;
  return td;
}

function ago(ms: number): string {
  if (!ms) return 'never';
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return seconds < 120 ? `${seconds} s ago` : `${Math.round(seconds / 60)} min ago`;
}

// ------------------------------------------------------------------ overview

function showOverview(o: Overview): void {
  byTestId('who').textContent = o.auth === 'off' ? 'auth off (anonymous)' : `${o.subject}${o.admin ? ' (admin)' : ' (read-only)'}`;
  document.body.classList.toggle('admin', o.admin);
  const live = o.nodes.filter((n) => n.state === 'live').length;
  byTestId('nodes-live').textContent = String(live);
  byTestId('nodes-total').textContent = String(o.nodes.length);
  byTestId('used').textContent = bytes(o.fs.usedBytes);
  byTestId('capacity').textContent = bytes(o.fs.capacityBytes);
  (byTestId('used-bar') as HTMLProgressElement).value = o.fs.capacityBytes ? o.fs.usedBytes / o.fs.capacityBytes : 0;
  byTestId('files').textContent = String(o.fs.files);
  byTestId('dirs').textContent = String(o.fs.directories);
  byTestId('chunks').textContent = String(o.fs.chunks);

  const body = $<HTMLTableElement>('[data-testid="nodes"]').tBodies[0]!;
  body.replaceChildren();
  for (const node of o.nodes) {
    const row = body.insertRow();
    row.dataset.testid = 'node-row';
    row.dataset.nodeId = node.nodeId;
    row.className = `state-${node.state}`;
    cell(row, node.nodeId, 'nodeId');
    cell(row, node.address, 'address');
    cell(row, node.zone || '—', 'zone');
    cell(row, node.state, 'state');
    cell(row, bytes(node.usedBytes), 'used');
    cell(row, bytes(node.capacityBytes), 'capacity');
    cell(row, String(node.chunks), 'chunks');
    cell(row, ago(node.lastHeartbeatMs), 'heartbeat');
  }

  const h = o.health;
  if (!h) return;
  if (h.error) {
    byTestId('repair-queue').textContent = `health unavailable: ${h.error}`;
    return;
  }
  byTestId('under').textContent = String(h.underReplicated);
  byTestId('missing').textContent = String(h.missing);
  byTestId('corrupt').textContent = String(h.corrupt);
  byTestId('leader').textContent = h.leader || 'none elected';
  const q = h.queue;
  byTestId('repair-queue').textContent = `${q.queued} queued, ${q.running} running, ${q.repaired} repaired, ${q.failed} failed, ${bytes(q.bytesCopied)} copied`;
  const damaged = byTestId('damaged');
  damaged.replaceChildren(...h.files.map((f) => item(`${f.path}: ${f.state} (${f.chunks} chunks)`)));
  if (h.files.length === 0) damaged.replaceChildren(item('none'));
  const events = byTestId('events');
  events.replaceChildren(...h.events.slice(-20).reverse().map((e) => item(`${new Date(e.atMs).toLocaleTimeString()} ${e.kind}: ${e.message}`)));
}

function item(text: string): HTMLLIElement {
  const li = document.createElement('li');
  li.textContent = text;
  return li;
}

async function showTiering(): Promise<void> {
  try {
    const t = await api<{ tiers: { name: string; chunks: number }[]; queued: number; running: number; recallQueued: number; moved: number; recalled: number; failed: number }>('/api/tiering');
    const tiers = t.tiers.length ? t.tiers.map((x) => `${x.name}: ${x.chunks} chunks`).join(', ') : 'no tiers configured';
    byTestId('tiering').textContent = `${tiers}; ${t.queued} queued, ${t.running} running, ${t.recallQueued} recalls queued, ${t.moved} moved, ${t.recalled} recalled, ${t.failed} failed`;
  } catch (err) {
    byTestId('tiering').textContent = `unavailable: ${(err as Error).message}`;
  }
}

// ------------------------------------------------------------------ charts

class Charts {
  private used: uPlot | undefined;
  private rate: uPlot | undefined;

  show(samples: Sample[]): void {
    const times = samples.map((s) => s.atMs / 1000);
    const used: uPlot.AlignedData = [times, samples.map((s) => s.usedBytes)];
    const rate: uPlot.AlignedData = [times, samples.map((s) => s.storedBytesPerSec)];
    this.used ??= chart($('#chart-used'), 'stored', (v) => bytes(v));
    this.rate ??= chart($('#chart-rate'), 'bytes/s', (v) => `${bytes(v)}/s`);
    this.used.setData(used);
    this.rate.setData(rate);
  }
}

function chart(target: HTMLElement, label: string, format: (v: number) => string): uPlot {
  const opts: uPlot.Options = {
    width: Math.max(280, (target.parentElement?.clientWidth ?? 440) - 24),
    height: 160,
    series: [{}, { label, stroke: '#2b6cb0', fill: 'rgba(43,108,176,0.12)', value: (_u, v) => (v == null ? '—' : format(v)) }],
    axes: [{}, { values: (_u, ticks) => ticks.map(format), size: 96 }],
    legend: { show: true },
  };
  return new uPlot(opts, [[], []], target);
}

// ------------------------------------------------------------------ files

class Browser {
  private dir = '/';
  private after = '';

  async open(dir: string): Promise<void> {
    this.dir = dir;
    this.after = '';
    $<HTMLTableElement>('[data-testid="files-table"]').tBodies[0]!.replaceChildren();
    this.crumbs();
    await this.page();
  }

  async page(): Promise<void> {
    const listing = await api<{ entries: Entry[]; more: boolean }>(`/api/list?path=${encodeURIComponent(this.dir)}&after=${encodeURIComponent(this.after)}`);
    const body = $<HTMLTableElement>('[data-testid="files-table"]').tBodies[0]!;
    for (const entry of listing.entries) {
      const row = body.insertRow();
      row.dataset.testid = 'file-row';
      row.dataset.name = entry.name;
      const full = this.join(entry.name);
      const name = cell(row, '', 'name');
      const link = document.createElement('a');
      link.textContent = entry.name + (entry.type === 'directory' ? '/' : '');
      link.href = '#';
      link.dataset.testid = entry.type === 'directory' ? 'open-dir' : 'open-file';
      link.addEventListener('click', (ev) => {
        ev.preventDefault();
        if (entry.type === 'directory') void this.open(full).catch(showError);
        else void download(full).catch(showError);
      });
      name.append(link);
      cell(row, entry.type, 'type');
      cell(row, entry.type === 'file' ? bytes(entry.size) : '', 'size');
      cell(row, entry.mtimeMs ? new Date(entry.mtimeMs).toLocaleString() : '', 'mtime');
      cell(row, '');
    }
    this.after = listing.entries.at(-1)?.name ?? this.after;
    $('#more').hidden = !listing.more;
  }

  here(): string {
    return this.dir;
  }

  join(name: string): string {
    return this.dir === '/' ? `/${name}` : `${this.dir}/${name}`;
  }

  private crumbs(): void {
    const nav = byTestId('breadcrumb');
    const parts = this.dir.split('/').filter(Boolean);
    const links = [{ label: '/', path: '/' }, ...parts.map((p, i) => ({ label: p, path: '/' + parts.slice(0, i + 1).join('/') }))];
    nav.replaceChildren(
      ...links.map((l) => {
        const a = document.createElement('a');
        a.href = '#';
        a.textContent = l.label;
        a.addEventListener('click', (ev) => {
          ev.preventDefault();
          void this.open(l.path).catch(showError);
        });
        return a;
      }),
    );
  }
}

/** Through fetch, so the token goes as a header (never in a URL a log could keep). */
async function download(file: string): Promise<void> {
  const res = await fetch(`/api/file?path=${encodeURIComponent(file)}`, { headers: authHeaders() });
  if (!res.ok) throw new ApiError(res.status, (await res.json().catch(() => ({}))).message ?? res.statusText);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = file.split('/').pop() ?? 'download';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function upload(browser: Browser): Promise<void> {
  const input = $<HTMLInputElement>('#upload-file');
  const file = input.files?.[0];
  if (!file) return;
  const target = browser.join(file.name);
  const result = byTestId('upload-result');
  result.textContent = `uploading ${file.name}…`;
  const done = await api<{ path: string; size: number }>(`/api/file?path=${encodeURIComponent(target)}`, {
    method: 'PUT',
    body: file,
    headers: { 'x-strata-console': '1', 'content-type': 'application/octet-stream' },
  });
  result.textContent = `uploaded ${done.path} (${bytes(done.size)})`;
  input.value = '';
  await browser.open(browser.here());
}

function showError(err: unknown): void {
  const status = byTestId('status');
  status.textContent = (err as Error).message;
  status.className = 'error';
  if (err instanceof ApiError && err.status === 401) needToken();
}

function needToken(): void {
  $('#login').hidden = false;
  $('#main').hidden = true;
}

// ------------------------------------------------------------------ start

async function refresh(charts: Charts): Promise<Overview> {
  const overview = await api<Overview>('/api/overview');
  showOverview(overview);
  if (overview.admin) charts.show((await api<{ samples: Sample[] }>('/api/samples')).samples);
  const status = byTestId('status');
  status.textContent = `updated ${new Date().toLocaleTimeString()}`;
  status.className = '';
  return overview;
}

async function start(): Promise<void> {
  const charts = new Charts();
  const browser = new Browser();
  $('#login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $<HTMLInputElement>('#token').value.trim());
    location.reload();
  });
  $('#upload-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    void upload(browser).catch(showError);
  });
  $('#more').addEventListener('click', () => void browser.page().catch(showError));
  let overview: Overview;
  try {
    overview = await refresh(charts);
  } catch (err) {
    showError(err);
    return;
  }
  $('#main').hidden = false;
  document.body.dataset.ready = '1';
  await browser.open('/').catch(showError);
  if (overview.admin) {
    void showTiering();
    setInterval(() => void showTiering(), TIERING_EVERY_MS);
  }
  setInterval(() => void refresh(charts).catch(showError), OVERVIEW_EVERY_MS);
}

void start();
