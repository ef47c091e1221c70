// `strata coordinator`: opens the metadata engine, serves the Coordinator service.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { CoordinatorConfig } from '../common/config.js';
import { CHANNEL_OPTIONS, bindServer, shutdownServer, strataProto } from '../common/grpc.js';
import type { Logger } from '../common/log.js';
import { reloadCertificates, watchCertificates } from '../common/tls-reload.js';
import { resolveTierTarget } from '../common/tier-config.js';
import { TlsContext, serverCredentials } from '../common/tls.js';
import { GrpcDataNodeOps } from './healing/datanode-ops.js';
import { Healer } from './healing/healer.js';
import { EtcdLeadership, SoleLeadership, type Leadership } from './leader.js';
import type { Kv } from './meta/kv.js';
import { MasterKeyCheck } from './master-key-check.js';
import { keyAdminHandlers } from './key-admin.js';
import { CACHED_PREFIXES } from './meta/keys.js';
import { etcdEngineOf, openKv } from './meta/open-kv.js';
import { etcdCredentials } from './meta/etcd-tls.js';
import { MetaStore } from './meta/store.js';
import { NodeRegistry } from './nodes.js';
import { coordinatorService } from './service.js';
import { openAuthenticator } from './auth/open.js';
import { AUTH_OFF } from './auth/authenticator.js';
import { AdminPolicy } from './authz/admin.js';
import { Denials } from './authz/denials.js';
import { NamespaceGate } from './authz/gate.js';
import { RuleSet } from './authz/rules.js';
import { SESSION_DEFAULTS, withSessionLimits, type SessionAcceptor } from './session.js';
import { startSessionListener, type SessionListener } from './session-tcp.js';
import { ClientLimiter, limitInterceptor } from '../common/client-limits.js';
import { S3ObjectTier, type ObjectTier, type TierTarget } from '../common/object-tier.js';
import { StrataError } from '../common/errors.js';
import { ChunkLocks } from './healing/limits.js';
import { Coherence } from './coherence.js';
import { currentWriter } from './lease-kv.js';
import { leaseSessionDeps } from './lease-ops.js';
import { TieringJob } from './tiering/job.js';
import { GrantKeys } from './grant-keys.js';
import { grantMinter } from './grant-minter.js';
import type { NodeRecord } from './meta/types.js';
import { startConsole } from '../console/server.js';
import type { ClusterTotals } from '../console/samples.js';
import { RoleMetrics, metricsInterceptor } from '../common/metrics.js';
import { startMetricsServer, type MetricsServer } from '../common/metrics-server.js';
import { coordinatorGauges, coordinatorReadiness, metaStoreTimer } from './metrics.js';
import { NODE_PLANE_METHODS, NODE_SECRET_FLAGS, NodeSecret, nodeChannelOptions, nodePlaneInterceptor } from '../common/node-credentials.js';

export interface RunningCoordinator {
  address: string;
  /** The web console's URL, when it serves one (--console-listen). */
  consoleUrl?: string;
  /** Where /metrics, /healthz and /readyz are served (--metrics-listen); absent = nowhere. */
  metricsAddress?: string;
  stop(): Promise<void>;
  /** Reads the TLS files again (SIGHUP): new connections use them; a bad file keeps the old (common/tls-reload.ts). */
  reloadTls(): void;
}

const SHUTDOWN_GRACE_MS = 3000;
/** How often each coordinator re-reads node admin states (a drain asked elsewhere). */
const ADMIN_REFRESH_MS = 1000;

export async function runCoordinator(config: CoordinatorConfig, log: Logger): Promise<RunningCoordinator> {
  // Certificates are read and checked before anything opens: a bad one is one Invalid line.
  const tls = TlsContext.forServer(config);
  const etcdTls = etcdCredentials(config);
  // Decided before anything opens: a coordinator that may not run anonymously stops here.
  const auth = openAuthenticator(config, log);
  // Read once here; a bad one is one Invalid line. Node-plane calls need it both ways (common/node-credentials.ts).
  const nodeSecret = NodeSecret.load(config);
  checkNodePlane(auth !== AUTH_OFF, tls, nodeSecret, config.insecureNodePlane ?? false, log);
  // Read and validated before anything opens too: a bad rules file is one Invalid line.
  const rules = config.authzRules ? RuleSet.load(config.authzRules) : undefined;
  if (rules) log.info({ file: config.authzRules, rules: rules.rules.length, default: rules.defaultLevel }, 'authz: per-path rules loaded');
  // Credentials (a file, or the environment) are read once here; a bad one is one Invalid line.
  const tierTargets = config.tiers.map((tier) => resolveTierTarget(tier, process.env, (file) => readFileSync(file, 'utf8')));
  const tiers = await openTiers(tierTargets);
  // Only when served: with metrics off the request paths see none and count nothing.
  const metrics = config.metricsListen && config.metricsListen !== 'off' ? new RoleMetrics('coordinator') : undefined;
  const kv = await openKv(config.meta, { cachePrefixes: CACHED_PREFIXES, etcdTls, etcdTlsFiles: config, timer: metrics && metaStoreTimer(metrics) }).catch((err) => {
    for (const tier of tiers.values()) tier.close();
    throw err;
  });
  const coherence = new Coherence(kv, config.leaseTtlMs, log);
  let grantKeys: GrantKeys | undefined;
  let metricsServer: MetricsServer | undefined;
  try {
    // Shared by every coordinator through the metadata store: any of them signs, data nodes check.
    grantKeys = await GrantKeys.open(kv, log, config.grantTtlMs);
    const grants = grantMinter(grantKeys, config.grantTtlMs);
    // Every namespace change goes through the leases' KV hook: acknowledged once caches were told.
    const meta = new MetaStore(coherence.kv, { commitGroup: currentWriter });
    await meta.init();
    const denials = new Denials(log);
    // What requests see of the namespace: their tenant's tree, within their rules (authz/gate.ts).
    const admin = new AdminPolicy(config.adminRole, denials);
    const namespace = new NamespaceGate(meta, { admin, tenantClaim: config.oidcTenantClaim, rules }, denials);
    const nodes = new NodeRegistry(kv, {
      deadAfterMs: config.deadAfterMs,
      persistIntervalMs: Math.max(config.heartbeatIntervalMs * 10, 5000),
      log,
    });
    await nodes.load();
    // One bound per client host over gRPC calls and TCP sessions (common/client-limits.ts).
    const limiter = new ClientLimiter({ maxInFlight: config.clientMaxInFlight ?? 0, ratePerSec: config.clientRatePerSec ?? 0 });
    // Known once bound; lease peers name it as their credentials' receiver (they dial what it registers).
    let selfAddress = '';
    const server = new grpc.Server({ ...CHANNEL_OPTIONS, interceptors: [...(metrics ? [metricsInterceptor(metrics)] : []), limitInterceptor(limiter), ...nodePlaneInterceptor(nodeSecret, log, () => selfAddress)] });
    const port = await bindServer(server, config.listen, serverCredentials(tls, NODE_PLANE_METHODS));
    const host = config.listen.slice(0, config.listen.lastIndexOf(':'));
    const address = `${host}:${port}`;
    selfAddress = address;
    // How this coordinator's node-plane calls (to data nodes, to peer coordinators) go out.
    const nodeChannel = nodeChannelOptions(CHANNEL_OPTIONS, nodeSecret, () => address);
    const leadership = openLeadership(kv, address, config, log);
    const ops = new GrpcDataNodeOps({ replicateTimeoutMs: 120_000, callTimeoutMs: 10_000, listTimeoutMs: 300_000, tls, grants, channelOptions: nodeChannel });
    const locks = new ChunkLocks();
    const tieringJob = new TieringJob({ kv, meta, registry: nodes, leadership, ops, locks, log, tiers, intervalMs: config.tierIntervalMs, concurrency: config.tierConcurrency });
    const healer = new Healer({
      kv, registry: nodes, leadership, ops, config, log, locks,
      tiers: [...tiers.values()],
      otherInFlight: (chunkId, nodeId) => tieringJob.isInFlight(chunkId, nodeId),
      onTierObjectDeleted: (tier) => tieringJob.objectDeleted(tier),
    });
    const tiering = { kv, meta, leadership, targets: tierTargets, job: tieringJob };
    let acceptSession: SessionAcceptor | undefined;
    let sessionAddress = '';
    const session = {
      limits: { ...SESSION_DEFAULTS, maxInFlight: config.sessionMaxInFlight },
      ...leaseSessionDeps(coherence.table, namespace),
      accept: (acceptor: SessionAcceptor) => (acceptSession = acceptor),
      endpoint: () => sessionAddress,
      requests: metrics && ((op: string) => metrics.requests('session', op)),
    };
    const keyAdmin = keyAdminHandlers({ nodes, tls, kv, grantKeys, grantTtlMs: config.grantTtlMs, heartbeatIntervalMs: config.heartbeatIntervalMs, channelOptions: nodeChannel });
    // The master key record is written only from authenticated heartbeats: with a node secret or TLS,
    // every heartbeat reaching the handler passed the node-plane check (master-key-check.ts).
    server.addService(
      withSessionLimits(strataProto.Coordinator.service, session.limits),
      coordinatorService(namespace, nodes, config, { kv, leadership, healer, tiering, session, auth, admin, grants, store: meta, log, masterKeys: new MasterKeyCheck(kv, log, nodeSecret !== undefined || tls !== undefined), keyAdmin: keyAdmin.handlers }),
    );
    server.addService(strataProto.LeasePeers.service, coherence.service());
    let sessionListener: SessionListener | undefined;
    if (config.sessionListen !== 'off') {
      const at = config.sessionListen ? splitHostPort(config.sessionListen) : { host, port: 0 };
      sessionListener = await startSessionListener(at.host, at.port, acceptSession!, session.limits, (client) => limiter.admit(client), tls);
      const wildcard = at.host === '0.0.0.0' || at.host === '[::]' || at.host === '::';
      sessionAddress = config.sessionAdvertise ?? `${wildcard ? '127.0.0.1' : at.host}:${sessionListener.port}`;
    }
    // The console calls this coordinator as a client would, so it sees what its caller may.
    const webConsole = config.consoleListen && config.consoleListen !== 'off'
      ? await startConsole({
          listen: config.consoleListen,
          coordinators: [address],
          auth,
          admin,
          tls: tls ? { ca: config.tlsCa, cert: config.tlsCert, key: config.tlsKey } : undefined,
          totals: () => clusterTotals(nodes.liveNodes()),
          log,
        })
      : undefined;
    await coherence.start(address, tls, nodeChannel);
    healer.start();
    tieringJob.start();
    const adminRefresh = setInterval(() => nodes.refreshAdmin().catch(() => undefined), ADMIN_REFRESH_MS);
    if (metrics) {
      coordinatorGauges(metrics, { leadership, healer, tiering: tieringJob, nodes });
      metricsServer = await startMetricsServer({ listen: config.metricsListen!, metrics, ready: coordinatorReadiness(kv, leadership), log, tls });
    }
    log.info({ address, session: sessionAddress || 'grpc only', meta: redactMeta(config.meta), tls: tls ? (tls.requireClientCert ? 'on, client certificates required' : 'on') : 'off', nodeSecret: nodeSecret ? 'on' : 'off' }, 'coordinator serving');
    if (metricsServer) log.info({ metrics: metricsServer.address, scheme: tls ? 'https' : 'http' }, 'serving /metrics, /healthz, /readyz');
    const tlsWatch = tls && config.tlsWatch ? watchCertificates(tls, log) : undefined;
    return {
      address,
      reloadTls: () => void reloadCertificates(tls, log),
      consoleUrl: webConsole?.url,
      metricsAddress: metricsServer?.address,
      async stop() {
        tlsWatch?.close();
        await metricsServer?.close();
        await webConsole?.close();
        clearInterval(adminRefresh);
        nodes.closeLinks(); // ends the data nodes' NodeLink streams (they reopen them once this coordinator is back)
        // Ending the peer streams first lets the server drain without waiting out its grace.
        await Promise.all([shutdownServer(server, SHUTDOWN_GRACE_MS), sessionListener?.close(SHUTDOWN_GRACE_MS), coherence.close()]);
        await healer.close();
        await tieringJob.close();
        await leadership.close();
        for (const tier of tiers.values()) tier.close();
        ops.close();
        keyAdmin.close();
        grantKeys?.close();
        await kv.close();
      },
    };
  } catch (err) {
    await metricsServer?.close();
    grantKeys?.close();
    await coherence.close().catch(() => undefined);
    await kv.close().catch(() => undefined);
    for (const tier of tiers.values()) tier.close();
    throw err;
  }
}

/**
 * With auth on, the node plane must be guarded too (mTLS, a node secret, or both): otherwise
 * anyone who reaches the ports could heartbeat as a data node or read its chunk listings.
 * Refused at start unless the operator said --insecure-node-plane.
 */
function checkNodePlane(authOn: boolean, tls: TlsContext | undefined, nodeSecret: NodeSecret | undefined, insecure: boolean, log: Logger): void {
  if (!authOn) return;
  if (!tls && !nodeSecret && !insecure) {
    throw new StrataError('Invalid', `auth on, but nothing guards the node plane (heartbeats, node links, chunk listings): give every coordinator and data node ${NODE_SECRET_FLAGS}, or serve mutual TLS with --tls-ca, --tls-cert and --tls-key (cluster up: --tls); --insecure-node-plane runs without`);
  }
  if (!tls) log.warn('auth on without TLS: tokens cross the network in clear; serve TLS with --tls-ca, --tls-cert and --tls-key');
  if (tls || nodeSecret) return;
  log.warn('--insecure-node-plane: auth on, but the node plane has neither mTLS nor a node secret: anyone who reaches these ports can heartbeat as a data node');
}

/** A client per configured tier, each proven to reach its bucket: a bad tier stops start-up with one line. */
async function openTiers(targets: readonly TierTarget[]): Promise<Map<string, ObjectTier>> {
  const tiers = new Map<string, ObjectTier>();
  try {
    for (const target of targets) {
      const tier = new S3ObjectTier(target);
      tiers.set(target.name, tier);
      await tier.check().catch((err: StrataError) => {
        throw new StrataError(err.kind === 'Unavailable' ? 'Unavailable' : 'Invalid', `cannot use ${err.message.replace(/; retry later$/, '')}: fix the tier's settings (--tier / tiers) or start the store first`);
      });
    }
  } catch (err) {
    for (const tier of tiers.values()) tier.close();
    throw err;
  }
  return tiers;
}

function splitHostPort(value: string): { host: string; port: number } {
  const at = value.lastIndexOf(':');
  return { host: value.slice(0, at) || '127.0.0.1', port: Number(value.slice(at + 1)) };
}

/** What the live data nodes store, from their last heartbeats: the console's capacity samples. */
function clusterTotals(live: readonly NodeRecord[]): ReturnType<ClusterTotals> {
  let usedBytes = 0;
  let capacityBytes = 0;
  let chunks = 0;
  for (const node of live) {
    usedBytes += node.usedBytes;
    capacityBytes += node.capacityBytes;
    chunks += node.chunks;
  }
  return { usedBytes, capacityBytes, chunks, liveNodes: live.length };
}

/** etcd: an election among the coordinators; embedded: this one leads. */
function openLeadership(kv: Kv, selfId: string, config: CoordinatorConfig, log: Logger): Leadership {
  const etcd = etcdEngineOf(kv);
  return etcd ? new EtcdLeadership(selfId, etcd.etcdClient, kv, { ttlMs: config.leaderTtlMs, log }) : new SoleLeadership(selfId);
}

/** Credentials in a meta URL (etcd://user:pass@host) never reach the logs. */
export function redactMeta(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
