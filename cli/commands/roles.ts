// `strata coordinator` and `strata datanode`: long-running roles. Flags, STRATA_* env and
// an optional JSON --config file are merged and validated once (common/config.ts).
import type { Command } from 'commander';
import { coordinatorSchema, dataNodeSchema, loadConfig } from '../../common/config.js';
import { createLogger } from '../../common/log.js';

export function registerRoleCommands(program: Command): void {
  program
    .command('coordinator')
    .description('run a coordinator: the namespace service (metadata in etcd or embedded LevelDB)')
    .option('--listen <host:port>', 'address to serve on (default 127.0.0.1:7400)')
    .option('--meta <url>', 'metadata engine: etcd://host:port[,host:port...] or a directory for embedded LevelDB (default ./.strata-data/meta)')
    .option('--replication <n>', 'default replication factor of new files (default 3)')
    .option('--chunk-size <size>', 'default chunk size of new files (default 8MiB)')
    .option('--ack-policy <policy>', 'default replicas that must fsync per chunk: one | quorum | all (default all)')
    .option('--heartbeat-interval-ms <ms>', 'how often data nodes report (default 1000)')
    .option('--dead-after-ms <ms>', 'silence after which a data node counts as dead and its chunks are re-replicated (default 5000)')
    .option('--leader-ttl-ms <ms>', 'etcd lease of the leader that runs repair, GC, rebalance: failover time (default 5000)')
    .option('--scan-interval-ms <ms>', 'how often the leader rescans chunk records for repair work (default 10000)')
    .option('--repair-concurrency <n>', 'chunk copies made at once by repair, drain and rebalance (default 12)')
    .option('--repair-bandwidth <size>', 'bytes per second those copies may move in total, e.g. 50MiB; 0 = no cap (default 0)')
    .option('--gc-grace-ms <ms>', 'unreferenced chunks are deleted only after this long (default 3600000 = 1 h)')
    .option('--tier-interval-ms <ms>', 'pause between the leader\'s passes over tiering policies (default 60000)')
    .option('--tier-concurrency <n>', 'chunks uploaded to or recalled from object tiers at once (default 4)')
    .option('--session-max-in-flight <n>', 'requests one client session may have unanswered at once; more are refused unstarted (default 256)')
    .option('--session-listen <host:port|off>', 'the metadata session over plain TCP, without gRPC (default: the --listen host, a free port); off = gRPC only')
    .option('--session-advertise <host:port>', 'address clients dial for it (default: the --listen host, the session port)')
    .option('--console-listen <host:port|off>', 'serve the web console (cluster overview, charts, file browser; read-only without the admin role) on this address, HTTPS with --tls-cert (default off)')
    .option(
      '--tier <name=s3://bucket/prefix?endpoint=URL&region=R&path_style=true&credentials_file=F>',
      'an S3-compatible object tier that policies (strata tier set) move cold chunks to; repeat for more (env STRATA_TIERS: comma-separated). ' +
        'Credentials: credentials_file (JSON {accessKeyId, secretAccessKey}) or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY',
      (spec: string, previous: string[] | undefined) => [...(previous ?? []), spec],
    )
    .option('--etcd-ca <file>', 'TLS to etcd: PEM CA that signed etcd\'s certificate (or STRATA_ETCD_CA)')
    .option('--etcd-cert <file>', 'PEM client certificate for etcd\'s --client-cert-auth, with --etcd-key (or STRATA_ETCD_CERT)')
    .option('--etcd-key <file>', 'PEM key of --etcd-cert (or STRATA_ETCD_KEY)')
    .option('--auth <mode>', 'oidc = require OIDC bearer tokens from a Keycloak realm; off = anonymous access (default: off when every port is on loopback, otherwise required)')
    .option('--oidc-issuer <url>', 'the realm tokens come from: https://HOST/realms/NAME (with --auth oidc)')
    .option('--oidc-audience <client-id>', 'the client id tokens must name in aud (with --auth oidc)')
    .option('--oidc-tenant-claim <claim>', 'token claim naming the caller\'s tenant (default tenant)')
    .option('--oidc-uid-claim <claim>', 'token claim with the caller\'s numeric uid: owner of what it makes, mode bits checked against it (default uid; none: the tenant\'s nobody, 65534)')
    .option('--oidc-gid-claim <claim>', 'token claim with the caller\'s primary numeric gid (default gid; none: 65534)')
    .option('--oidc-gids-claim <claim>', 'token claim with the caller\'s further numeric gids, an array (default gids)')
    .option('--oidc-jwks-refetch-ms <ms>', 'fewest ms between fetches of the realm\'s keys for an unknown kid (default 10000)')
    .option('--admin-role <role>', 'token role that sees every tenant\'s files and may run admin operations: drain, node rm, rebalance, health, tier (default strata-admin)')
    .option('--authz-rules <file>', 'JSON rules giving roles read-only, read-write or admin access to path prefixes (README: Tenants and authorization)')
    .option('--insecure-node-plane', 'with --auth oidc: start even though the node plane has neither mutual TLS nor --node-secret-file (anyone who reaches the ports can heartbeat as a data node); logged as a warning')
    .option('--grant-ttl-ms <ms>', 'how long the chunk grants handed out with placements and locations stay valid (default 600000 = 10 min)')
    .option('--lease-ttl-ms <ms>', 'lease of a client cache: a client that stops answering holds others\' changes up at most this long (default 5000)')
    .option('--client-max-in-flight <n>', 'gRPC calls and sessions one client host may have open at once; more are refused (Busy); 0 = no bound (default 4096)')
    .option('--client-rate-per-sec <n>', 'gRPC calls and sessions one client host may start per second; 0 = no bound (default 100000)')
    .option('--node-secret-file <file>', 'the cluster\'s node secret (32+ characters, the same on every coordinator and data node; or STRATA_NODE_SECRET): heartbeats, node links, chunk listings, repair copies and other node-only calls carry an HMAC credential of it, and are refused (UNAUTHENTICATED) without one')
    .option('--tls-ca <file>', 'TLS on every port: PEM CA that signs every node (`strata certs init DIR`)')
    .option('--tls-cert <file>', 'this node\'s PEM certificate (OU=strata-node), for serving and dialing peers')
    .option('--tls-key <file>', 'PEM key of --tls-cert (SIGHUP reads --tls-ca, --tls-cert and --tls-key again: renewed certificates without a restart)')
    .option('--tls-require-client-cert', 'refuse every peer, clients too, without a certificate the CA signed')
    .option('--tls-watch', 'also reload --tls-ca/--tls-cert/--tls-key when they change on disk (renamed over, or a Kubernetes secret volume updated)')
    .option('--metrics-listen <host:port|off>', 'serve GET /metrics (Prometheus), /healthz and /readyz over HTTP on this address (HTTPS with the --tls-* certificates); default off (or STRATA_METRICS_LISTEN)')
    .option('--log-level <level>', 'trace | debug | info | warn | error (default info)')
    .option('--config <file>', 'JSON config file (flags and STRATA_* env override it)')
    .action(async (options) => {
      const { config: file, tier, ...flags } = options;
      const config = loadConfig(coordinatorSchema, { ...flags, tiers: tier }, { file });
      const log = createLogger('coordinator', config.logLevel);
      // Loaded on demand: client commands should not pay for etcd, LevelDB and LZ4 start-up.
      const { runCoordinator } = await import('../../coordinator/run.js');
      const running = await runCoordinator(config, log).catch((err) => {
        // A failed start exits once main printed why, even if a library (etcd3's watch retries)
        // left a handle open: a coordinator that cannot start must not hang.
        setTimeout(() => process.exit(), 1000).unref();
        throw err;
      });
      await untilSignal(log, running.stop, running.reloadTls);
    });

  program
    .command('datanode')
    .description('run a data node: stores replicated, checksummed, LZ4-compressed chunks')
    .option('--data-dir <dir>', 'where chunks and the chunk index live (required)')
    .option('--listen <host:port>', 'address to serve on (default 127.0.0.1:7500)')
    .option('--advertise <host:port>', 'address clients and peers use to reach this node (default: --listen)')
    .option('--data-listen <host:port|off>', 'byte path for chunk data (default: the --listen host, a free port); off = gRPC only')
    .option('--data-advertise <host:port>', 'byte path address clients and peers use (default: the advertised host, the byte port)')
    .option('--coordinators <list>', 'coordinator addresses to heartbeat, comma-separated (required)')
    .option('--node-id <id>', 'stable node id (default: generated once, kept in DATA_DIR/node-id)')
    .option('--zone <name>', 'failure zone label: replicas go to distinct zones first')
    .option('--capacity-bytes <size>', 'capacity to report (default: the disk\'s)')
    .option('--heartbeat-interval-ms <ms>', 'how often to report to the coordinators (default 1000)')
    .option('--scrub-bytes-per-sec <size>', 'background scrub rate, raw bytes verified per second; 0 disables (default 32MiB)')
    .option('--scrub-interval-ms <ms>', 'pause between full scrub passes; 0 disables (default 3600000)')
    .option('--grants <mode>', 'enforce = serve chunk bytes only against a coordinator-signed grant for that chunk and operation; off = to anyone who reaches the ports (default enforce)')
    .option('--tier-cache-bytes <size>', 'disk budget of the LRU cache of chunks read through from object tiers; 0 = no cache (default 1GiB)')
    .option('--encrypt-key-file <file>', 'encryption at rest: chunks written are AES-256-GCM encrypted, their data keys wrapped by the 32-byte master key in FILE (raw, hex or base64; or set STRATA_MASTER_KEY), or a key ring: one key per line, the last one writes, every one reads (rotation: append a key, SIGHUP, then `strata keys rotate-master`). Every node of a cluster needs the same keys')
    .option('--client-max-in-flight <n>', 'gRPC calls and byte path connections one client host may have open at once; more are refused (Busy); 0 = no bound (default 4096)')
    .option('--client-rate-per-sec <n>', 'gRPC calls and byte path connections one client host may start per second; 0 = no bound (default 100000)')
    .option('--node-secret-file <file>', 'the cluster\'s node secret (32+ characters, the same on every coordinator and data node; or STRATA_NODE_SECRET): heartbeats, node links, chunk listings, repair copies and other node-only calls carry an HMAC credential of it, and are refused (UNAUTHENTICATED) without one')
    .option('--tls-ca <file>', 'TLS on every port: PEM CA that signs every node (`strata certs init DIR`)')
    .option('--tls-cert <file>', 'this node\'s PEM certificate (OU=strata-node), for serving and dialing peers')
    .option('--tls-key <file>', 'PEM key of --tls-cert (SIGHUP reads --tls-ca, --tls-cert and --tls-key again: renewed certificates without a restart)')
    .option('--tls-require-client-cert', 'refuse every peer, clients too, without a certificate the CA signed')
    .option('--tls-watch', 'also reload --tls-ca/--tls-cert/--tls-key when they change on disk (renamed over, or a Kubernetes secret volume updated)')
    .option('--metrics-listen <host:port|off>', 'serve GET /metrics (Prometheus), /healthz and /readyz over HTTP on this address (HTTPS with the --tls-* certificates); default off (or STRATA_METRICS_LISTEN)')
    .option('--log-level <level>', 'trace | debug | info | warn | error (default info)')
    .option('--config <file>', 'JSON config file (flags and STRATA_* env override it)')
    .action(async (options) => {
      const { config: file, ...flags } = options;
      const config = loadConfig(dataNodeSchema, flags, { file });
      const log = createLogger('datanode', config.logLevel);
      const { runDataNode } = await import('../../datanode/run.js');
      const running = await runDataNode(config, log);
      const reload = () => {
        running.reloadTls();
        void running.reloadKeys();
      };
      const failed = await Promise.race([untilSignal(log, running.stop, reload).then(() => undefined), running.failed]);
      if (failed) {
        // A coordinator refused this node's master key (exit 12) or its missing node credential (exit 6): stop, then main prints the one line.
        setTimeout(() => process.exit(), 5000).unref();
        await running.stop();
        throw failed;
      }
    });
}

/** Serves until SIGINT/SIGTERM, then stops cleanly once; SIGHUP reloads the TLS certificates. */
export function untilSignal(log: { info: (msg: string) => void }, stop: () => Promise<void>, reload?: () => void): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onReload = () => reload?.();
    const onSignal = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info(`${signal}: shutting down`);
      stop().finally(resolve);
    };
    // Renewed certificates without dropping the service (common/tls-reload.ts); without this
    // listener a SIGHUP would end the process (also while stopping: let the stop finish).
    if (reload) process.on('SIGHUP', onReload);
    process.once('SIGINT', () => onSignal('SIGINT'));
    process.once('SIGTERM', () => onSignal('SIGTERM'));
  });
}
