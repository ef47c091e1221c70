// `strata cluster up`: a whole local cluster from one command. One coordinator (embedded
// LevelDB metadata unless --meta names etcd) and N data nodes, each its own process on
// 127.0.0.1, all data under one directory. Ctrl-C stops them all.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { Strata } from '../../client/index.js';
import { devCertPaths, initDevCerts } from '../../common/dev-certs.js';
import { tokenProviderFrom } from '../../client/auth/token-sources.js';
import { StrataError } from '../../common/errors.js';
import { loadKeyRing, newMasterKeyText } from '../../common/master-key.js';
import { parseSize } from '../../common/units.js';
import { NodeSecret, newNodeSecretText } from '../../common/node-credentials.js';
import { isMounted } from '../../fuse/unmount.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../main.js');
const READY_TIMEOUT_MS = 30_000;

interface Child {
  name: string;
  process: ChildProcess;
  log: string;
}

export function registerClusterUpCommand(program: Command): void {
  const cluster = program.command('cluster').description('run a local cluster');
  cluster
    .command('up')
    .description('start a coordinator and data nodes on 127.0.0.1 (Ctrl-C stops them)')
    .option('--data-dir <dir>', 'where all data and logs live', './.strata-data')
    .option('--datanodes <n>', 'number of data nodes', '3')
    .option('--port <port>', 'coordinator port; data nodes take the ports after it', '7400')
    .option('--chunk-size <size>', 'default chunk size', '8MiB')
    .option('--replication <n>', 'default replication factor (capped by data nodes)', '3')
    .option('--meta <url>', 'etcd://host:port,... to keep metadata in etcd (default: embedded LevelDB in DATA_DIR/meta)')
    .option('--console-port <port|off>', 'the web console on 127.0.0.1 (default: --port + 80); off = none')
    .option('--metrics-listen <host:port|off>', 'where the coordinator serves /metrics, /healthz and /readyz; data nodes (and the mount) take the ports after it (default: 127.0.0.1 and the port after the data nodes\' ports); off = none')
    .option('--mount <dir>', 'also mount the cluster at DIR (FUSE, `strata mount`); unmounted before the cluster stops')
    .option('--auth <mode>', 'off = anonymous access (the default for a local cluster; said at start) | oidc = require tokens of --oidc-issuer (cluster up itself needs one: STRATA_TOKEN or strata login); the node plane then authenticates with a node secret made in DATA_DIR/node.secret (mode 0600)', 'off')
    .option('--oidc-issuer <url>', 'with --auth oidc: the Keycloak realm, https://HOST/realms/NAME')
    .option('--oidc-audience <client-id>', 'with --auth oidc: the client id tokens must name in aud')
    .option('--tier <spec>', 'an S3-compatible tier for cold chunks, repeatable: name=s3://bucket/prefix?endpoint=URL&path_style=true (credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)', (spec: string, all: string[]) => [...all, spec], [] as string[])
    .option('--tls', 'TLS on every port, mutual between nodes: a dev CA and certificates in DATA_DIR/tls (made once, as `strata certs init`)')
    .option('--encrypt', 'encryption at rest: data nodes encrypt every chunk (AES-256-GCM) under a master key in DATA_DIR/master.key (made once, mode 0600; without it the data cannot be read); without --tls the node plane gets a node secret (DATA_DIR/node.secret), so a data node with a wrong key or none is refused')
    .action(async (options) => {
      const datanodes = wholeNumber(options.datanodes, '--datanodes', 1, 64);
      const port = wholeNumber(options.port, '--port', 1, 65535 - datanodes);
      const metricsAt = metricsBase(options.metricsListen, port + datanodes + 1, datanodes);
      const metricsArgs = (index: number) => (metricsAt ? ['--metrics-listen', `${metricsAt.host}:${metricsAt.port + index}`] : []);
      const replication = wholeNumber(options.replication, '--replication', 1, 16);
      parseSize(options.chunkSize, '--chunk-size');
      if (options.auth !== 'off' && options.auth !== 'oidc') throw new StrataError('Invalid', `invalid --auth '${options.auth}': use off or oidc`);
      if (options.auth === 'oidc' && (!options.oidcIssuer || !options.oidcAudience)) throw new StrataError('Invalid', '--auth oidc needs --oidc-issuer and --oidc-audience');
      const authArgs = options.auth === 'oidc' ? ['--auth', 'oidc', '--oidc-issuer', options.oidcIssuer, '--oidc-audience', options.oidcAudience] : ['--auth', 'off'];
      // The cluster's own readiness check (and the mount, which inherits this environment) log in like any client.
      const tokenProvider = options.auth === 'oidc' ? tokenProviderFrom({ env: process.env }) : undefined;
      // Without one the readiness check could only time out, blaming the data nodes.
      if (options.auth === 'oidc' && !tokenProvider) {
        throw new StrataError('Unauthenticated', 'cluster up --auth oidc checks the cluster is ready as a client: give it a token first (STRATA_TOKEN, or strata login --issuer ...)');
      }
      const dataDir = path.resolve(options.dataDir);
      const logDir = path.join(dataDir, 'logs');
      mkdirSync(logDir, { recursive: true });
      const coordinator = `127.0.0.1:${port}`;
      const consolePort = options.consolePort === 'off' ? undefined : wholeNumber(options.consolePort ?? String(port + 80), '--console-port', 1, 65535);
      const consoleUrl = consolePort === undefined ? undefined : `${options.tls ? 'https' : 'http'}://127.0.0.1:${consolePort}/`;
      const nodeNames = ['coordinator', ...Array.from({ length: datanodes }, (_, i) => `dn${i + 1}`)];
      const tlsDir = path.join(dataDir, 'tls');
      const tls = options.tls ? await initDevCerts(tlsDir, { nodes: nodeNames, clients: ['client'] }) : undefined;
      const tlsArgs = (name: string) => (tls ? ['--tls-ca', tls.ca, '--tls-cert', tls.certs[name].cert, '--tls-key', tls.certs[name].key] : []);
      const keyFile = options.encrypt ? masterKeyFile(dataDir) : undefined;
      const encryptArgs = keyFile ? ['--encrypt-key-file', keyFile.path] : [];
      // With auth on, the node plane is authenticated too: a shared secret every process gets by file.
      // So it is with --encrypt (TLS alone authenticates it too): the cluster's master key record is only
      // set from authenticated heartbeats (coordinator/master-key-check.ts); without, a wrong key or none is not refused.
      const nodeSecret = options.auth === 'oidc' || (options.encrypt && !options.tls) ? nodeSecretFile(dataDir) : undefined;
      const nodeSecretArgs = nodeSecret ? ['--node-secret-file', nodeSecret] : [];
      const children: Child[] = [];
      const start = (name: string, args: string[]) => {
        const log = path.join(logDir, `${name}.log`);
        const fd = openSync(log, 'a');
        const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', fd, fd] });
        children.push({ name, process: child, log });
      };
      start('coordinator', [
        'coordinator', '--listen', coordinator, '--meta', options.meta ?? path.join(dataDir, 'meta'),
        '--chunk-size', options.chunkSize, '--replication', String(Math.min(replication, datanodes)), ...authArgs,
        ...(options.tier as string[]).flatMap((spec) => ['--tier', spec]),
        ...tlsArgs('coordinator'), ...nodeSecretArgs, ...metricsArgs(0),
        ...(consolePort !== undefined ? ['--console-listen', `127.0.0.1:${consolePort}`] : []),
      ]);
      for (let i = 1; i <= datanodes; i++) {
        start(`datanode-${i}`, [
          'datanode', '--node-id', `dn${i}`, '--data-dir', path.join(dataDir, `dn${i}`),
          '--listen', `127.0.0.1:${port + i}`, '--coordinators', coordinator,
          ...tlsArgs(`dn${i}`), ...encryptArgs, ...nodeSecretArgs, ...metricsArgs(i),
        ]);
      }
      const stopAll = stopper(children);
      let stopping = false;
      const exited = firstExit(children);
      try {
        await Promise.race([waitReady(coordinator, datanodes, tls?.ca, tokenProvider), exited.then((c) => Promise.reject(diedEarly(c)))]);
      } catch (err) {
        await stopAll();
        throw err;
      }
      let mount: Child | undefined;
      if (options.mount) {
        try {
          mount = await startMount(coordinator, path.resolve(options.mount), logDir, tls?.ca, metricsArgs(datanodes + 1));
        } catch (err) {
          await stopAll();
          throw err;
        }
        // Losing the mount (an external fusermount -u, say) leaves the cluster running.
        mount.process.once('exit', (code) => console.error(`strata: the mount exited (code ${code}); see ${mount!.log}`));
      }
      printWelcome(coordinator, datanodes, port, dataDir, logDir, options.meta, mount && path.resolve(options.mount), tls && { ca: tls.ca, dir: tlsDir, client: devCertPaths(tlsDir, 'client') }, options.auth === 'oidc' ? options.oidcIssuer : undefined, keyFile, nodeSecret, consoleUrl, metricsAt && { ...metricsAt, scheme: tls ? 'https' : 'http' });
      // A data node that dies is what self-healing is for: say so and keep serving. Without
      // its coordinator the cluster is gone, so that stops everything.
      for (const child of children.filter((c) => c.name !== 'coordinator')) {
        child.process.once('exit', (code, signal) => {
          if (stopping) return;
          console.error(`strata: ${child.name} exited (${signal ?? `code ${code}`}); the others keep serving and its chunks are re-replicated after the dead-node grace; see ${child.log}`);
        });
      }
      const coordinatorExited = new Promise<Child>((resolve) => children[0].process.once('exit', () => resolve(children[0])));
      const reason = await Promise.race([
        coordinatorExited.then((c) => diedEarly(c)),
        new Promise<string>((resolve) => {
          process.once('SIGINT', () => resolve('stopping (Ctrl-C)…'));
          process.once('SIGTERM', () => resolve('stopping (SIGTERM)…'));
          // A closed terminal must not orphan the data nodes.
          process.once('SIGHUP', () => resolve('stopping (SIGHUP)…'));
        }),
      ]);
      stopping = true;
      if (reason instanceof StrataError) console.error(`strata: ${reason.message}`);
      else console.log(reason);
      // First the mount, which may still store buffered writes, while the cluster can take them.
      if (mount) {
        mount.process.removeAllListeners('exit'); // its exit is expected now
        await stopper([mount], 60_000)();
      }
      await stopAll();
      if (reason instanceof StrataError) process.exitCode = 1;
      else console.log('cluster stopped; data kept in ' + dataDir);
    });
}

function wholeNumber(text: string, flag: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new StrataError('Invalid', `invalid ${flag} '${text}': use a whole number from ${min} to ${max}`);
  return value;
}

/** Where the coordinator's metrics go (the others take the next ports), or undefined for 'off'. */
function metricsBase(option: string | undefined, defaultPort: number, datanodes: number): { host: string; port: number } | undefined {
  if (option === 'off') return undefined;
  if (option === undefined) return { host: '127.0.0.1', port: Math.min(defaultPort, 65535 - datanodes - 1) };
  const match = /^(.+):(\d{1,5})$/.exec(option);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port < 1 || port > 65535 - datanodes - 1) throw new StrataError('Invalid', `invalid --metrics-listen '${option}': use host:port (the port and the ${datanodes + 1} after it) or off`);
  return { host: match[1]!, port };
}

function firstExit(children: Child[]): Promise<Child> {
  return new Promise((resolve) => {
    for (const child of children) child.process.once('exit', () => resolve(child));
  });
}

function diedEarly(child: Child): StrataError {
  return new StrataError('Unavailable', `${child.name} exited (code ${child.process.exitCode}); see ${child.log}`);
}

/** `strata mount` as one more child; resolves once the kernel shows the mount. */
async function startMount(coordinator: string, dir: string, logDir: string, tlsCa: string | undefined, metricsArgs: string[]): Promise<Child> {
  const log = path.join(logDir, 'mount.log');
  // Its own process group: Ctrl-C reaches only us, and we stop the mount first, once.
  const child = spawn(process.execPath, [MAIN, 'mount', '--coordinator', coordinator, ...(tlsCa ? ['--tls-ca', tlsCa] : []), ...metricsArgs, dir], {
    detached: true,
    stdio: ['ignore', openSync(log, 'a'), openSync(log, 'a')],
  });
  const giveUpAt = Date.now() + READY_TIMEOUT_MS;
  while (!(await isMounted(dir))) {
    if (child.exitCode !== null || Date.now() > giveUpAt) {
      child.kill('SIGTERM');
      throw new StrataError('Unavailable', `could not mount at ${dir}; see ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { name: 'mount', process: child, log };
}

function stopper(children: Child[], graceMs = 10_000): () => Promise<void> {
  return async () => {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.process.exitCode !== null || child.process.signalCode !== null) return resolve();
            const timer = setTimeout(() => child.process.kill('SIGKILL'), graceMs);
            child.process.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            child.process.kill('SIGTERM');
          }),
      ),
    );
  };
}

async function waitReady(coordinator: string, datanodes: number, tlsCa: string | undefined, tokenProvider?: () => string | Promise<string>): Promise<void> {
  const client = Strata.connect({ coordinators: coordinator, callTimeoutMs: 1000, failoverTimeoutMs: 1000, tls: tlsCa ? { ca: tlsCa } : false, tokenProvider });
  const giveUpAt = Date.now() + READY_TIMEOUT_MS;
  try {
    for (;;) {
      const fs = await client.statfs().catch((err) => {
        // A refused token stays refused: say why now rather than time out.
        if (err instanceof StrataError && (err.kind === 'Unauthenticated' || err.kind === 'PermissionDenied')) {
          throw new StrataError(err.kind, `the coordinator refused cluster up's readiness check: ${err.message}`);
        }
        return undefined;
      });
      if (fs && fs.liveNodes >= datanodes) return;
      if (Date.now() > giveUpAt) throw new StrataError('Timeout', `cluster not ready after ${READY_TIMEOUT_MS / 1000}s (${fs?.liveNodes ?? 0}/${datanodes} data nodes live)`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    client.close();
  }
}

function printWelcome(
  coordinator: string, datanodes: number, port: number, dataDir: string, logDir: string, meta?: string, mountDir?: string,
  tls?: { ca: string; dir: string; client: { cert: string; key: string } }, issuer?: string, keyFile?: { path: string; keyId: string }, nodeSecret?: string, consoleUrl?: string,
  metrics?: { host: string; port: number; scheme: string },
): void {
  const nodes = Array.from({ length: datanodes }, (_, i) => `127.0.0.1:${port + i + 1}`).join(', ');
  const tlsLine = tls ? `\n  tls          on, every port (mutual between nodes); CA and certificates in ${tls.dir}` : '';
  const encryptLine = keyFile ? `\n  encryption   on: chunks AES-256-GCM at rest, master key ${keyFile.keyId} in ${keyFile.path} (back it up: without it the data cannot be read)` : '';
  const url = (index: number) => `${metrics!.scheme}://${metrics!.host}:${metrics!.port + index}`;
  const metricsLine = metrics
    ? `\n  metrics      ${url(0)}/metrics (coordinator), ${Array.from({ length: datanodes }, (_, i) => `${url(i + 1)}/metrics`).join(', ')} (data nodes)${mountDir ? `, ${url(datanodes + 1)}/metrics (mount)` : ''}; also /healthz, /readyz`
    : '';
  const tlsExport = tls ? `\n  export STRATA_TLS_CA=${tls.ca}\n  # optional client certificate: export STRATA_TLS_CERT=${tls.client.cert} STRATA_TLS_KEY=${tls.client.key}` : '';
  console.log(`strata cluster is up
  coordinator  ${coordinator}  (metadata: ${meta ? 'etcd' : `embedded LevelDB in ${path.join(dataDir, 'meta')}`})
  data nodes   ${nodes}
  data         ${dataDir}
  logs         ${logDir}${consoleUrl ? `\n  console      ${consoleUrl}  (web console: nodes, capacity, health, files)` : ''}${metricsLine}${tlsLine}${encryptLine}
  auth         ${issuer ? `OIDC tokens of ${issuer} (strata login, or STRATA_TOKEN)` : 'off: anonymous access for anyone who reaches these ports (--auth oidc to require tokens)'}${nodeSecret ? `\n  node plane   authenticated with the node secret in ${nodeSecret} (a node joining this cluster needs --node-secret-file)` : ''}${mountDir ? `\n  mounted at   ${mountDir}  (strata mount; unmounted first on Ctrl-C)` : ''}

Try it in another shell:
  export STRATA_COORDINATOR=${coordinator}${tlsExport}
  npx strata put ./README.md /hello/README.md
  npx strata ls -l /hello
  npx strata cat /hello/README.md
  npx strata df
  npx strata nodes${mountDir ? `\n  ls -l ${mountDir}        # the same files through the FUSE mount` : ''}

Press Ctrl-C to stop the cluster.`);
}

/** DATA_DIR/node.secret: made once (mode 0600), then reused, so a restarted node still gets in. */
function nodeSecretFile(dataDir: string): string {
  const file = path.join(dataDir, 'node.secret');
  if (!existsSync(file)) writeFileSync(file, newNodeSecretText(), { mode: 0o600, flag: 'wx' });
  NodeSecret.load({ nodeSecretFile: file }); // a damaged file fails here, before anything starts
  return file;
}

/** DATA_DIR/master.key: made once (mode 0600), then reused, so a restarted cluster reads its data. */
function masterKeyFile(dataDir: string): { path: string; keyId: string } {
  const file = path.join(dataDir, 'master.key');
  if (!existsSync(file)) writeFileSync(file, newMasterKeyText(), { mode: 0o600, flag: 'wx' });
  const keys = loadKeyRing({ encryptKeyFile: file }); // a damaged key file fails here, before anything starts
  return { path: file, keyId: keys!.current.keyId };
}
