// Picks the KV engine from the metadata URL's scheme, through one explicit map.

import { isAbsolute, resolve } from 'node:path';
import { StrataError } from '../../common/errors.js';
import { CachedKv } from './cached-kv.js';
import { EtcdKv } from './etcd-kv.js';
import { explainEtcdFailure, type EtcdCredentials, type EtcdTlsFiles } from './etcd-tls.js';
import { timeKvCalls, type Kv, type KvTimer } from './kv.js';
import { LevelKv } from './level-kv.js';

export interface OpenKvOptions {
  /** etcd: bound on each call. */
  timeoutMs?: number;
  /** LevelDB: fsync each commit (default true). */
  syncWrites?: boolean;
  /** etcd: serve reads of keys under these prefixes from a watch-fed cache (coordinator/meta/cached-kv.ts). */
  cachePrefixes?: string[];
  /** etcd: TLS (coordinator/meta/etcd-tls.ts); absent = plain text. */
  etcdTls?: EtcdCredentials;
  /** etcd: the --etcd-* files `etcdTls` came from, for the error line when etcd cannot be reached. */
  etcdTlsFiles?: EtcdTlsFiles;
  /** Times each engine request (metrics); engine = 'etcd' or 'leveldb'. */
  timer?: (engine: string) => KvTimer;
}

const EXPECTED_FORMS = 'etcd://host:port[,host:port...], leveldb:///absolute/path, or a filesystem path';
const ETCD_PORT_DEFAULT = 2379;

type Engine = (location: string, metaUrl: string, options: OpenKvOptions) => Promise<Kv>;

const ENGINES: Record<string, Engine> = {
  etcd: async (location, metaUrl, options) => {
    const hosts = parseEtcdHosts(location, metaUrl);
    const etcd = new EtcdKv({ hosts, timeoutMs: options.timeoutMs, credentials: options.etcdTls, timer: options.timer?.('etcd') });
    if (!options.cachePrefixes?.length) return etcd;
    try {
      return await CachedKv.open(etcd, { prefixes: options.cachePrefixes, openTimeoutMs: options.timeoutMs });
    } catch (err) {
      await etcd.close();
      // A TLS mismatch (etcd serves TLS but no --etcd-ca, say) is named with the flags to give.
      throw await explainEtcdFailure(err, hosts, options.etcdTls, options.etcdTlsFiles ?? {});
    }
  },
  leveldb: (location, metaUrl, options) => {
    // leveldb:///abs/path: the authority is empty and the path absolute.
    if (!location.startsWith('/')) throw badUrl(metaUrl, 'leveldb needs an absolute path (leveldb:///...)');
    return openLevel(decodePath(location, metaUrl), options);
  },
};

/** Opens the engine `metaUrl` names; a malformed URL is an Invalid error naming it. */
export async function openKv(metaUrl: string, options: OpenKvOptions = {}): Promise<Kv> {
  const trimmed = metaUrl.trim();
  if (trimmed === '') throw badUrl(metaUrl, 'it is empty');
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/.exec(trimmed);
  if (!match) {
    // A bare host:port is almost surely an etcd address missing its scheme, not a directory.
    if (/^[\w.-]+:\d+$/.test(trimmed)) throw badUrl(metaUrl, `did you mean etcd://${trimmed}?`);
    if (options.etcdTls) throw new StrataError('Invalid', `--etcd-ca/--etcd-cert/--etcd-key apply to an etcd:// metadata URL, not the directory ${JSON.stringify(metaUrl)}`);
    return openLevel(isAbsolute(trimmed) ? trimmed : resolve(trimmed), options);
  }
  const scheme = match[1]!.toLowerCase();
  const engine = ENGINES[scheme];
  if (!engine) throw badUrl(metaUrl, `unknown scheme ${scheme}://`);
  if (options.etcdTls && scheme !== 'etcd') throw new StrataError('Invalid', `--etcd-ca/--etcd-cert/--etcd-key apply to an etcd:// metadata URL, not ${JSON.stringify(metaUrl)}`);
  return engine(match[2]!, metaUrl, options);
}

async function openLevel(path: string, options: OpenKvOptions): Promise<Kv> {
  const kv = await LevelKv.open(path, { syncWrites: options.syncWrites });
  if (options.timer) timeKvCalls(kv, options.timer('leveldb'));
  return kv;
}

function parseEtcdHosts(location: string, metaUrl: string): string[] {
  const list = location.replace(/\/+$/, '');
  if (list === '') throw badUrl(metaUrl, 'no etcd host given');
  return list.split(',').map((entry) => {
    const hostPort = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(entry.trim());
    if (!hostPort) throw badUrl(metaUrl, `"${entry}" is not host:port`);
    const port = hostPort[2] === undefined ? ETCD_PORT_DEFAULT : Number(hostPort[2]);
    if (port < 1 || port > 65535) throw badUrl(metaUrl, `port ${port} is out of range`);
    return `${hostPort[1]}:${port}`;
  });
}

function decodePath(location: string, metaUrl: string): string {
  try {
    return decodeURIComponent(location);
  } catch {
    throw badUrl(metaUrl, 'the path has a malformed %-escape');
  }
}

function badUrl(metaUrl: string, why: string): StrataError {
  return new StrataError('Invalid', `metadata URL ${JSON.stringify(metaUrl)}: ${why}; expected ${EXPECTED_FORMS}`);
}

/** The etcd engine under `kv`, or undefined for the embedded engine (which has one coordinator). */
export function etcdEngineOf(kv: Kv): EtcdKv | undefined {
  if (kv instanceof CachedKv) return kv.engine;
  return kv instanceof EtcdKv ? kv : undefined;
}
