// The data node role: open the chunk store, serve the DataNode service, scrub the chunks in the
// background, heartbeat to every coordinator (with the corrupt chunks found, scrub progress and
// the tier cache's state), hold a NodeLink open to each (its drop tells the coordinator at once
// that this process died) and take the object tiers each heartbeat reply names.
// The CLI builds the config; this module only runs it.
import * as grpc from '@grpc/grpc-js';
import { mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { LocalChunkStore } from './chunk-store.js';
import { Scrubber } from './scrub.js';
import { createDataNodeService, type NodeInfo } from './service.js';
import { ClientLimiter, limitInterceptor } from '../common/client-limits.js';
import { startByteServer, type ByteServer } from './byte-server.js';
import { DEFAULT_TIER_CACHE_BYTES, TierCache } from './tier-cache.js';
import { TierRegistry } from './tier-registry.js';
import { openNodeLink, type NodeLinkHello } from './node-link.js';
import type { TierTarget } from '../common/object-tier.js';
import { GrantVerifier, type WireGrantKey } from '../common/chunk-grants.js';
import { CHANNEL_OPTIONS, bindServer, callUnary, shutdownServer, strataProto } from '../common/grpc.js';
import { StrataError, invalid } from '../common/errors.js';
import { COORDINATORS_RECEIVER, NODE_PLANE_METHODS, NODE_SECRET_FLAGS, NodeSecret, nodeChannelOptions, nodePlaneInterceptor, type NodeSecretConfigKeys } from '../common/node-credentials.js';
import { loadKeyRing } from '../common/master-key.js';
import { TlsContext, channelCredentials, serverCredentials, type TlsConfigKeys } from '../common/tls.js';
import type { Logger } from '../common/log.js';
import { reloadCertificates, watchCertificates } from '../common/tls-reload.js';
import { RoleMetrics, metricsInterceptor } from '../common/metrics.js';
import { startMetricsServer, type MetricsServer } from '../common/metrics-server.js';
import { dataNodeGauges, dataNodeReadiness, dataPathMetrics } from './metrics.js';

export interface DataNodeConfig extends TlsConfigKeys, NodeSecretConfigKeys {
  /** Empty or absent: the id stored in `<dataDir>/node-id`, or a new one persisted there. */
  nodeId?: string;
  dataDir: string;
  /** host:port; a bare port or ':port' listens on 127.0.0.1. Port 0 picks a free port. */
  listen: string;
  /** host:port others dial, when it differs from `listen` (NAT, containers, 0.0.0.0). */
  advertise?: string;
  coordinators: readonly string[];
  heartbeatIntervalMs: number;
  zone?: string;
  capacityBytes?: number;
  /** Background scrub rate in raw bytes per second; absent or 0: no scrub (the CLI defaults it on). */
  scrubBytesPerSec?: number;
  /** Pause between full scrub passes; absent or 0: no scrub. */
  scrubIntervalMs?: number;
  /**
   * host:port of the byte path (chunk bytes without gRPC). Absent: the gRPC host, a free port.
   * 'off': none; clients then move bytes over gRPC.
   */
  dataListen?: string;
  /** host:port others dial for the byte path, when it differs from `dataListen`. */
  dataAdvertise?: string;
  /** Byte budget of the read-through cache of tiered chunks; 0 = no cache; absent = 1 GiB. */
  tierCacheBytes?: number;
  /** Per client host: gRPC calls and byte path connections open at once; absent or 0 = no bound. */
  clientMaxInFlight?: number;
  /** Per client host: gRPC calls and byte path connections started per second; absent or 0 = no bound. */
  clientRatePerSec?: number;
  /**
   * 'enforce' (absent): chunk bytes only against a coordinator's grant (common/chunk-grants.ts),
   * whose keys the heartbeat replies bring; 'off': to anyone who reaches the ports.
   */
  grants?: 'enforce' | 'off';
  /** Encryption at rest: the master key's file (common/master-key.ts); absent with masterKey: chunks are written plain. */
  encryptKeyFile?: string;
  /** The master key itself (hex or base64), as STRATA_MASTER_KEY gives it. */
  masterKey?: string;
  /** host:port of GET /metrics, /healthz, /readyz (common/metrics-server.ts); absent or 'off' = none. */
  metricsListen?: string;
}

export interface RunningDataNode {
  nodeId: string;
  address: string;
  /** Where /metrics, /healthz and /readyz are served; absent = nowhere. */
  metricsAddress?: string;
  /** The object tiers this node knows (heartbeat replies set them; tests may too). */
  tiers: TierRegistry;
  stop(): Promise<void>;
  /** Reads the TLS files again (SIGHUP): new connections use them; a bad file keeps the old (common/tls-reload.ts). */
  reloadTls(): void;
  /**
   * Reads the key file again (SIGHUP): a ring with a new newest key writes with it from then on,
   * once a coordinator accepted it; a bad file, or a ring refused, keeps the old keys.
   */
  reloadKeys(): Promise<void>;
  /** Settles when the node must stop on its own: a coordinator refused its master key (KeyUnavailable). */
  failed: Promise<StrataError>;
}

const NODE_ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
const SHUTDOWN_GRACE_MS = 5_000;
/** A down coordinator's grant keys outlive its grants' lifetime by this (clock skew, the last heartbeat's age). */
const GRANT_KEYS_MARGIN_MS = 60_000;
const HEARTBEAT_TIMEOUT_MS = 5_000;
/** Readiness: registered while a coordinator accepted a heartbeat this recently (or five intervals, if longer). */
const REGISTERED_FOR_MS = 5_000;
// The coordinator chooses the pace, within bounds that neither flood it nor let a lease lapse.
const MIN_HEARTBEAT_INTERVAL_MS = 100;
const MAX_HEARTBEAT_INTERVAL_MS = 60_000;

export async function runDataNode(config: DataNodeConfig, log: Logger): Promise<RunningDataNode> {
  const listen = parseListen(config.listen);
  // Certificates are read and checked before anything opens: a bad one is one Invalid line.
  const tls = TlsContext.forServer(config);
  if (!config.dataDir) throw invalid('invalid config: dataDir: required');
  if (!(config.heartbeatIntervalMs >= MIN_HEARTBEAT_INTERVAL_MS)) {
    throw invalid(`invalid config: heartbeatIntervalMs: ${config.heartbeatIntervalMs} is below ${MIN_HEARTBEAT_INTERVAL_MS}`);
  }
  for (const key of ['scrubBytesPerSec', 'scrubIntervalMs', 'tierCacheBytes'] as const) {
    const value = config[key];
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) throw invalid(`invalid config: ${key}: ${value} is not a whole number >= 0`);
  }
  // Read before anything opens: a bad key is one Invalid line and nothing started.
  const keys = loadKeyRing(config);
  // Both ways: heartbeats and links carry its credential, and coordinators' node-plane calls here must too.
  const nodeSecret = NodeSecret.load(config);
  await mkdir(config.dataDir, { recursive: true });
  const nodeId = await resolveNodeId(config.dataDir, config.nodeId);
  const store = await LocalChunkStore.open(config.dataDir, { keys });
  // A chunk written under a key the other nodes lack is unreadable to them, and one written by a
  // keyless node of a cluster that encrypts is in clear: none is stored until a coordinator has
  // checked this node's keys (or its lack of one) against the cluster's (coordinator/master-key-check.ts).
  // A keyless node on an open node plane (no secret, no TLS) has no check to wait for: a record
  // is trusted only when authenticated heartbeats wrote it, and a cluster that encrypts
  // authenticates its node plane (`cluster up --encrypt` does).
  if (keys || nodeSecret || tls) store.refuseWrites(new StrataError('Unavailable', keys ? `data node ${nodeId}: not writing until a coordinator accepts its master key '${keys.current.keyId}'` : `data node ${nodeId}: not writing until a coordinator accepts it (this node has no master key: it writes in clear)`));
  let fail: (err: StrataError) => void = () => {};
  const failed = new Promise<StrataError>((resolve) => (fail = resolve));
  const tiers = new TierRegistry(log);
  let tierCache: TierCache;
  try {
    tierCache = await TierCache.open({ dataDir: store.dir, budgetBytes: config.tierCacheBytes ?? DEFAULT_TIER_CACHE_BYTES, tiers, log, keys });
  } catch (err) {
    await store.close();
    throw err;
  }
  const scrubber = new Scrubber(store, { bytesPerSec: config.scrubBytesPerSec ?? 0, intervalMs: config.scrubIntervalMs ?? 0, log });

  // Only when served: with metrics off the data paths see none and count nothing.
  const metrics = config.metricsListen && config.metricsListen !== 'off' ? new RoleMetrics('datanode') : undefined;
  const dataPaths = metrics && dataPathMetrics(metrics);
  const grants = new GrantVerifier(config.grants !== 'off');
  if (!grants.enforce) log.warn('chunk grants are off (--grants off): anyone who reaches this node can read, write and delete its chunks');
  let address = config.advertise ?? '';
  let dataAddress = '';
  const service = createDataNodeService({
    nodeId,
    address: () => address,
    dataAddress: () => dataAddress,
    zone: config.zone,
    capacityBytes: config.capacityBytes,
    store,
    log,
    scrubStatus: () => scrubber.status(),
    tiers,
    tierCache,
    tls,
    grants,
    grpcBytes: dataPaths?.grpcBytes,
  });
  // One bound per client host over both transports (common/client-limits.ts).
  const limiter = new ClientLimiter({ maxInFlight: config.clientMaxInFlight ?? 0, ratePerSec: config.clientRatePerSec ?? 0 });
  const server = new grpc.Server({ ...CHANNEL_OPTIONS, interceptors: [...(metrics ? [metricsInterceptor(metrics)] : []), limitInterceptor(limiter), ...nodePlaneInterceptor(nodeSecret, log, () => address)] });
  server.addService(strataProto.DataNode.service, service.handlers);
  let port: number;
  let byteServer: ByteServer | null = null;
  let metricsServer: MetricsServer | undefined;
  // When a coordinator last accepted a heartbeat (readiness: registered).
  let acceptedAtMs = 0;
  const registered = () => Date.now() - acceptedAtMs < Math.max(REGISTERED_FOR_MS, 5 * config.heartbeatIntervalMs);
  try {
    port = await bindServer(server, `${listen.host}:${listen.port}`, serverCredentials(tls, NODE_PLANE_METHODS));
    if (config.dataListen !== 'off') {
      const dataListen = config.dataListen ? parseListen(config.dataListen) : { host: listen.host, port: 0 };
      byteServer = await startByteServer(dataListen.host, dataListen.port, service.byteHandlers, log, (client) => limiter.admit(client), tls, dataPaths?.byte);
      // Reached like the gRPC port: on the host it is advertised as, unless told otherwise.
      const wildcard = dataListen.host === '0.0.0.0' || dataListen.host === '[::]';
      const advertisedHost = config.advertise ? parseListen(config.advertise).host : wildcard ? '127.0.0.1' : dataListen.host;
      dataAddress = config.dataAdvertise ?? `${advertisedHost}:${byteServer.port}`;
    }
    if (metrics) {
      dataNodeGauges(metrics, { store, nodeInfo: () => service.nodeInfo(), scrub: () => scrubber.status(), registered });
      metricsServer = await startMetricsServer({ listen: config.metricsListen!, metrics, ready: dataNodeReadiness(store.dir, registered), log, tls });
    }
  } catch (err) {
    server.forceShutdown();
    await byteServer?.close();
    service.close();
    tierCache.close();
    tiers.close();
    await store.close();
    throw err;
  }
  if (!address) {
    const wildcard = listen.host === '0.0.0.0' || listen.host === '[::]';
    if (wildcard) log.warn({ listen: config.listen }, 'listening on all interfaces without advertise: advertising 127.0.0.1');
    address = `${wildcard ? '127.0.0.1' : listen.host}:${port}`;
  }

  const channel = { tls, options: nodeChannelOptions(CHANNEL_OPTIONS, nodeSecret, () => nodeId)(COORDINATORS_RECEIVER) };
  const heartbeats = config.coordinators.map((coordinator) =>
    startHeartbeat(coordinator, async () => ({ ...(await service.nodeInfo()), masterKeyIds: keys?.ids() ?? [] }), (reply) => {
      acceptedAtMs = Date.now();
      tiers.update(reply.tiers ?? []);
      // Counted until its grants could have expired, were this coordinator never heard again.
      grants.setKeys(coordinator, reply.grantKeys ?? [], (Number(reply.grantTtlMs) || 24 * 3_600_000) + GRANT_KEYS_MARGIN_MS);
      store.refuseWrites(undefined);
    }, (err) => {
      store.refuseWrites(err);
      log.debug({ coordinator }, 'master key refused; stopping'); // the role's caller prints why, once
      fail(err);
    }, () => {
      // Without a secret this node can never be let in: say which flag, once, and stop.
      if (nodeSecret) return false;
      fail(new StrataError('Unauthenticated', `coordinator ${coordinator} requires a node credential: start this data node with ${NODE_SECRET_FLAGS}, the cluster's node secret`));
      return true;
    }, config.heartbeatIntervalMs, log, () => ({ nodeId, address, dataAddress }), channel),
  );
  scrubber.start();
  const quarantined = store.quarantined().length;
  if (metricsServer) log.info({ metrics: metricsServer.address, scheme: tls ? 'https' : 'http' }, 'serving /metrics, /healthz, /readyz');
  log.info({ nodeId, address, dataAddress, dataDir: store.dir, chunks: store.usage().chunks, quarantined, scrub: scrubber.enabled, tls: tls ? 'on' : 'off', grants: grants.enforce ? 'enforced' : 'off', nodeSecret: nodeSecret ? 'on' : 'off', encryption: keys ? keys.current.keyId : 'off' }, 'data node started');
  const tlsWatch = tls && config.tlsWatch ? watchCertificates(tls, log) : undefined;

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      tlsWatch?.close();
      await metricsServer?.close();
      // The goodbye first: coordinators then wait out the grace instead of repairing at once.
      await Promise.all(heartbeats.map((heartbeat) => heartbeat.stop()));
      await Promise.all([scrubber.stop(), shutdownServer(server, SHUTDOWN_GRACE_MS), byteServer?.close()]);
      service.close();
      tierCache.close();
      tiers.close();
      await store.close();
      log.info({ nodeId }, 'data node stopped');
    })());
  let reloading = Promise.resolve();
  // One reload at a time (SIGHUPs in a row are checked in their order); a bad file keeps the ring in use.
  const reloadKeys = () => (reloading = reloading.then(reloadKeyRing).catch((err) => log.warn({ err: (err as Error).message }, 'master keys not reloaded; keeping the ones in use')));
  const reloadKeyRing = async () => {
    if (!keys) return;
    const fresh = loadKeyRing(config);
    if (!fresh) return;
    if (fresh.current.keyId !== keys.current.keyId) {
      // A new writing key is checked the way one at start is, before it wraps anything: a key the
      // cluster does not know would store chunks the other nodes cannot read. Until then, and if
      // it is refused, the ring in use stays (it keeps writing and reading).
      const verdict = await checkRing(heartbeats, fresh.ids());
      if (verdict !== 'accepted') {
        log.error({ keyId: fresh.current.keyId, err: verdict.message }, `master keys not reloaded; keeping the ones in use (writing key '${keys.current.keyId}'): ${verdict.message}`);
        return;
      }
    }
    // Which keys this node's chunks use is not known without reading every head: a dropped key is
    // allowed (after rotate-master it is how one is retired), but said.
    const dropped = keys.ids().filter((id) => !fresh.ids().includes(id));
    if (dropped.length > 0) log.warn({ dropped }, 'reloaded master keys drop keys this node had: chunks still under them no longer read here (run `strata keys rotate-master` before removing a key)');
    keys.replaceWith(fresh);
    log.info({ keyId: keys.current.keyId, keys: keys.ids().length }, 'master keys reloaded');
  };
  return { nodeId, address, metricsAddress: metricsServer?.address, tiers, stop, reloadTls: () => void reloadCertificates(tls, log), reloadKeys, failed };
}

function parseListen(listen: string): { host: string; port: number } {
  const match = /^(?:(.*):)?(\d{1,5})$/.exec(listen ?? '');
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) throw invalid(`invalid config: listen: '${listen}' is not host:port`);
  return { host: match[1] || '127.0.0.1', port };
}

/** A data dir belongs to one node for life: its chunks are placed under that id. */
async function resolveNodeId(dataDir: string, configured: string | undefined): Promise<string> {
  const file = path.join(dataDir, 'node-id');
  const stored = await readFile(file, 'utf8').then(
    (text) => text.trim(),
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    },
  );
  if (configured && stored && configured !== stored) {
    throw invalid(`invalid config: nodeId: '${configured}', but ${dataDir} belongs to node '${stored}'`);
  }
  const nodeId = configured || stored || `dn-${randomBytes(6).toString('hex')}`;
  if (!NODE_ID_PATTERN.test(nodeId)) throw invalid(`invalid config: nodeId: '${nodeId}': use 1..64 of A-Z a-z 0-9 _ . -`);
  if (!stored) {
    const tmp = `${file}.tmp`;
    await writeFile(tmp, `${nodeId}\n`, { flush: true });
    await rename(tmp, file);
    const dir = await open(dataDir, 'r');
    await dir.sync().finally(() => dir.close());
  }
  return nodeId;
}

/** Heartbeats one coordinator on its own timer: a dead coordinator never delays the others. */
function startHeartbeat(
  coordinator: string,
  nodeInfo: () => Promise<NodeInfo & { masterKeyIds: string[] }>,
  onReply: (reply: { tiers?: TierTarget[]; grantKeys?: WireGrantKey[]; grantTtlMs?: number | string }) => void,
  onKeyRefused: (err: StrataError) => void,
  /** A refused heartbeat (Unauthenticated); true: this node gives up (it stops beating). */
  onRefused: () => boolean,
  intervalMs: number,
  log: Logger,
  hello: () => NodeLinkHello,
  channel: { tls: TlsContext | undefined; options: grpc.ClientOptions },
): RunningHeartbeat {
  // The options add this node's credential to heartbeats and links when it has a node secret.
  const client = new strataProto.Coordinator(coordinator, channelCredentials(channel.tls), channel.options);
  // On the heartbeats' connection: it is the one whose loss the coordinator must notice.
  const link = openNodeLink(client, coordinator, hello, log);
  let nextMs = intervalMs;
  let failing = false;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const beat = async () => {
    try {
      const reply = await callUnary<{ intervalMs: number; tiers?: TierTarget[]; grantKeys?: WireGrantKey[]; grantTtlMs?: number | string }>(client, 'heartbeat', await nodeInfo(), HEARTBEAT_TIMEOUT_MS, coordinator);
      if (stopped) return;
      // Coordinators own tier configuration and grant keys: every reply carries the whole lists.
      onReply(reply);
      if (failing) log.info({ coordinator }, 'heartbeats accepted again');
      failing = false;
      if (reply.intervalMs > 0) nextMs = Math.min(MAX_HEARTBEAT_INTERVAL_MS, Math.max(MIN_HEARTBEAT_INTERVAL_MS, reply.intervalMs));
    } catch (err) {
      if (stopped) return;
      if (err instanceof StrataError && err.kind === 'KeyUnavailable') {
        stopped = true; // the node stops: no use beating on
        onKeyRefused(err);
        return;
      }
      // Warn once per outage, not once per beat.
      const fields = { coordinator, err: (err as Error).message };
      if (err instanceof StrataError && err.kind === 'Unauthenticated' && onRefused()) {
        stopped = true; // the node stops: no use beating on
        return;
      }
      if (failing) log.debug(fields, 'heartbeat failed');
      else log.warn(fields, 'heartbeat failed; retrying every interval');
      failing = true;
    }
    if (!stopped) timer = setTimeout(beat, nextMs).unref();
  };
  void beat();

  return {
    async checkKeys(masterKeyIds) {
      try {
        await callUnary(client, 'heartbeat', { ...(await nodeInfo()), masterKeyIds }, HEARTBEAT_TIMEOUT_MS, coordinator);
        return 'accepted';
      } catch (err) {
        return err instanceof StrataError ? err : new StrataError('Unavailable', (err as Error).message);
      }
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await link.stop();
      client.close();
    },
  };
}

interface RunningHeartbeat {
  /** One heartbeat naming `masterKeyIds` instead of the ring in use: 'accepted', or why not. */
  checkKeys(masterKeyIds: string[]): Promise<'accepted' | StrataError>;
  stop(): Promise<void>;
}

/**
 * Whether the coordinators accept a ring of `masterKeyIds` (writing key first): the first one to
 * answer decides (they share the cluster's record); a refusal (KeyUnavailable) is final, other
 * errors try the next one.
 */
async function checkRing(heartbeats: readonly RunningHeartbeat[], masterKeyIds: string[]): Promise<'accepted' | StrataError> {
  let last: StrataError = new StrataError('Unavailable', 'no coordinator configured to check the new master key');
  for (const heartbeat of heartbeats) {
    const verdict = await heartbeat.checkKeys(masterKeyIds);
    if (verdict === 'accepted' || verdict.kind === 'KeyUnavailable') return verdict;
    last = new StrataError('Unavailable', `no coordinator could check the new writing key (${verdict.message}); send SIGHUP again once one is reachable`);
  }
  return last;
}
