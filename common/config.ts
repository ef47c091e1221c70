// Role configuration: an optional JSON file, then STRATA_* environment variables, then
// flags, merged once and validated once into a frozen typed object. Nothing else reads
// process.env. A bad value is one line naming the key: `invalid config: chunkSize: ...`.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { StrataError, invalid } from './errors.js';
import { parseTierSpec, tierConfigSchema } from './tier-config.js';
import { parseSize } from './units.js';

const hostPort = z.string().regex(/^[^\s/]+:\d{1,5}$/, 'expected host:port');
const size = z.union([z.number(), z.string()]).transform((v, ctx) => {
  try {
    return parseSize(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});
const int = z.coerce.number().int();
const logLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info');
const list = z.union([z.array(z.string()), z.string()]).transform((v) =>
  (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter(Boolean),
);

/**
 * Object tiers: a JSON array in the config file (objects in tierConfigSchema's shape, or `--tier`
 * specs), repeated `--tier name=s3://bucket/prefix?endpoint=...` flags, or STRATA_TIERS as
 * comma-separated specs. Names must be unique.
 */
const tiers = z
  .union([z.string(), z.array(z.union([z.string(), z.record(z.string(), z.unknown())]))])
  .transform((v, ctx) => {
    const items = typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v;
    try {
      return items.map((item) => (typeof item === 'string' ? parseTierSpec(item) : item));
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  })
  .pipe(
    z.array(tierConfigSchema).refine((list) => new Set(list.map((t) => t.name)).size === list.length, 'tier names must be unique'),
  );

// z.coerce.boolean() reads the string 'false' as true; environment variables are strings.
const bool = z.union([z.boolean(), z.enum(['true', 'false', '1', '0'])]).transform((v) => v === true || v === 'true' || v === '1');

/**
 * TLS on every port of a node (common/tls.ts), on when any is set: PEM files of the cluster CA,
 * this node's certificate (OU=strata-node) and key (`strata certs init DIR` makes them).
 */
const tlsKeys = {
  tlsCa: z.string().min(1).optional(),
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  /** Refuse every peer without a certificate the CA signed (clients too), at the handshake. */
  tlsRequireClientCert: bool.optional(),
  /** Reload the TLS files when they change on disk, as on SIGHUP (common/tls-reload.ts). */
  tlsWatch: bool.optional(),
};

/**
 * The role's HTTP port for Prometheus and probes (common/metrics-server.ts): GET /metrics,
 * /healthz, /readyz. Absent = none.
 */
export const metricsListen = z.union([hostPort, z.literal('off')]).optional();

/**
 * Node-plane credentials (common/node-credentials.ts): the secret every coordinator and data node
 * of a cluster shares, to authenticate the calls only nodes make. A file, or the text itself in
 * STRATA_NODE_SECRET (no flag: it would show in ps).
 */
const nodeSecretKeys = {
  nodeSecretFile: z.string().min(1).optional(),
  nodeSecret: z.string().optional(),
};

export const MIN_CHUNK_BYTES = 64 * 1024;
export const MAX_CHUNK_BYTES = 64 * 1024 * 1024;

export const coordinatorSchema = z.object({
  listen: hostPort.default('127.0.0.1:7400'),
  /** `etcd://host:port,...`, `leveldb:///path`, or a directory path (embedded engine). */
  meta: z.string().min(1).default('./.strata-data/meta'),
  /** TLS to etcd (coordinator/meta/etcd-tls.ts): the CA that signed etcd's certificate; with it, a client certificate and key for etcd's --client-cert-auth. */
  etcdCa: z.string().min(1).optional(),
  etcdCert: z.string().min(1).optional(),
  etcdKey: z.string().min(1).optional(),
  replication: int.min(1).max(16).default(3),
  chunkSize: size.pipe(z.number().int().min(MIN_CHUNK_BYTES).max(MAX_CHUNK_BYTES)).default(8 * 1024 * 1024),
  ackPolicy: z.enum(['one', 'quorum', 'all']).default('all'),
  heartbeatIntervalMs: int.min(100).max(60_000).default(1000),
  deadAfterMs: int.min(500).max(3_600_000).default(5000),
  // Self-healing (coordinator/healing/): the elected leader runs these jobs.
  /** etcd lease of the leader: a dead leader is replaced within about this long. */
  leaderTtlMs: int.min(1000).max(60_000).default(5000),
  /** How often the leader rescans chunk records (repair queue, drains, health). */
  scanIntervalMs: int.min(100).max(3_600_000).default(10_000),
  /** Chunk copies being re-replicated or moved at once (the repairer also caps copies per target node and bytes in flight). */
  repairConcurrency: int.min(1).max(64).default(12),
  /** Bytes per second that repair, drain and rebalance may copy in total; 0 = no cap. */
  repairBandwidth: size.pipe(z.number().int().min(0)).default(0),
  /** Unreferenced chunks are deleted only after this long (and a commit must come within half of it). */
  gcGraceMs: int.min(1000).max(30 * 24 * 3_600_000).default(3_600_000),
  // Tiering (coordinator/tiering/): the leader moves cold chunks to the tiers.
  /** Pause between the leader's passes over the tiering policies. */
  tierIntervalMs: int.min(100).max(24 * 3_600_000).default(60_000),
  /** Chunks uploaded to (or recalled from) the tiers at once. */
  tierConcurrency: int.min(1).max(64).default(4),
  /** S3-compatible object tiers that policies move cold chunks to (coordinator/tiering/). */
  tiers: tiers.default([]),
  /** Requests one client session stream may have unanswered at once (more are refused, unstarted). */
  sessionMaxInFlight: int.min(1).max(65_536).default(256),
  /** The session over plain TCP (coordinator/session-tcp.ts): host:port, or 'off'; absent = the listen host, a free port. */
  sessionListen: z.union([hostPort, z.literal('off')]).optional(),
  /** host:port clients dial for it; absent = the listen host (127.0.0.1 for a wildcard), the session port. */
  sessionAdvertise: hostPort.optional(),
  /** The web console (console/server.ts): host:port to serve it on; absent or 'off' = none. */
  consoleListen: z.union([hostPort, z.literal('off')]).optional(),
  /** How long a chunk grant (common/chunk-grants.ts) handed out with a placement or location stays valid. */
  grantTtlMs: int.min(1000).max(24 * 3_600_000).default(600_000),
  /** Client cache leases (coordinator/leases.ts): how long a silent holder can hold a change up. */
  leaseTtlMs: int.min(1000).max(300_000).default(5000),
  /** Who may call (coordinator/auth/): 'oidc' = bearer tokens of a Keycloak realm; 'off' = anyone. Absent: off on loopback only, else refused. */
  auth: z.enum(['off', 'oidc']).optional(),
  /** The realm's issuer URL, https://HOST/realms/NAME (with auth oidc). */
  oidcIssuer: z.url({ protocol: /^https?$/ }).optional(),
  /** The client id tokens must carry in `aud` (with auth oidc). */
  oidcAudience: z.string().min(1).max(256).optional(),
  /** The token claim naming the caller's tenant. */
  oidcTenantClaim: z.string().min(1).max(128).default('tenant'),
  /** The token claims of the caller's uid, primary gid and further gids (numbers, or decimal strings; coordinator/authz/posix-access.ts). */
  oidcUidClaim: z.string().min(1).max(128).default('uid'),
  oidcGidClaim: z.string().min(1).max(128).default('gid'),
  oidcGidsClaim: z.string().min(1).max(128).default('gids'),
  /** Fewest ms between two fetches of the realm's keys (a token with an unknown kid triggers one). */
  oidcJwksRefetchMs: int.min(0).max(3_600_000).default(10_000),
  /** The token role that sees the whole namespace (every tenant's) and may drain, remove nodes, rebalance, tier (coordinator/authz/). */
  adminRole: z.string().min(1).max(256).default('strata-admin'),
  /** A JSON file of per-path rules by role (coordinator/authz/rules.ts); absent = none. */
  authzRules: z.string().min(1).optional(),
  // Per client host (common/client-limits.ts): gRPC calls and session connections open at once, and
  // started per second; 0 = no bound. Generous: every client of a one-host cluster is 127.0.0.1.
  clientMaxInFlight: int.min(0).max(1_000_000).default(4096),
  clientRatePerSec: int.min(0).max(10_000_000).default(100_000),
  /** With auth on: serve anyway when the node plane has neither mTLS nor a node secret (logged as a warning). */
  insecureNodePlane: bool.optional(),
  metricsListen,
  ...nodeSecretKeys,
  ...tlsKeys,
  logLevel,
});
export type CoordinatorConfig = Readonly<z.infer<typeof coordinatorSchema>>;

export const dataNodeSchema = z.object({
  nodeId: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1..64)').optional(),
  dataDir: z.string().min(1),
  listen: hostPort.default('127.0.0.1:7500'),
  advertise: hostPort.optional(),
  /** The byte path (chunk bytes without gRPC): host:port, or 'off'; absent = the listen host, a free port. */
  dataListen: z.union([hostPort, z.literal('off')]).optional(),
  /** host:port others dial for the byte path; absent = the advertised (or listen) host, the byte port. */
  dataAdvertise: hostPort.optional(),
  coordinators: list.pipe(z.array(hostPort).min(1)),
  heartbeatIntervalMs: int.min(100).max(60_000).default(1000),
  zone: z.string().max(64).default(''),
  capacityBytes: size.optional(),
  /** Background scrub: raw bytes verified per second at most (0 disables it). */
  scrubBytesPerSec: size.pipe(z.number().int().min(0)).default(32 * 1024 * 1024),
  /** Pause between full scrub passes (0 disables scrubbing). */
  scrubIntervalMs: int.min(0).max(30 * 24 * 3_600_000).default(3_600_000),
  /** Byte budget of the read-through cache of tiered chunks (<dataDir>/tier-cache); 0 = no cache. */
  tierCacheBytes: size.pipe(z.number().int().min(0)).default(1024 * 1024 * 1024),
  /**
   * Encryption at rest (common/master-key.ts): chunks written are AES-256-GCM encrypted under a
   * data key each, wrapped by this master key. A file of 32 bytes (raw, 64 hex digits or base64).
   */
  encryptKeyFile: z.string().min(1).optional(),
  /** The master key itself, hex or base64 (STRATA_MASTER_KEY; no flag: it would show in ps). */
  masterKey: z
    .string()
    .trim()
    .regex(/^(?:[0-9a-fA-F]{64}|[A-Za-z0-9+/]{43}=?)$/, 'expected 32 bytes as 64 hex digits or base64 (the value is not shown)')
    .optional(),
  // Per client host (common/client-limits.ts): gRPC calls and byte path connections open at once,
  // and started per second; 0 = no bound. Peers replicating count as clients too.
  clientMaxInFlight: int.min(0).max(1_000_000).default(4096),
  clientRatePerSec: int.min(0).max(10_000_000).default(100_000),
  /** 'enforce': chunk reads and writes need a coordinator's grant (common/chunk-grants.ts); 'off': anyone who reaches the ports may. */
  grants: z.enum(['enforce', 'off']).default('enforce'),
  metricsListen,
  ...nodeSecretKeys,
  ...tlsKeys,
  logLevel,
});
export type DataNodeConfig = Readonly<z.infer<typeof dataNodeSchema>>;

/** chunkSize -> STRATA_CHUNK_SIZE */
const envName = (key: string) => 'STRATA_' + key.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
/** chunkSize -> chunk-size */
const flagName = (key: string) => key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());

export function loadConfig<S extends z.ZodObject>(
  schema: S,
  flags: Record<string, unknown>,
  options: { file?: string; env?: NodeJS.ProcessEnv } = {},
): Readonly<z.infer<S>> {
  const env = options.env ?? process.env;
  const fromFile = options.file ? readConfigFile(options.file) : {};
  const fromEnv: Record<string, unknown> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = env[envName(key)];
    if (value !== undefined && value !== '') fromEnv[key] = value;
  }
  const fromFlags = Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined));
  const result = schema.strict().safeParse({ ...fromFile, ...fromEnv, ...fromFlags });
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = issue.path.join('.') || (issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : '(root)');
    const topKey = String(issue.path[0] ?? '');
    if (issue.code === 'invalid_type' && /received undefined/.test(issue.message)) {
      throw invalid(`invalid config: ${key} is required: set --${flagName(topKey)} or ${envName(topKey)}`);
    }
    throw invalid(`invalid config: ${key}: ${issue.message}`);
  }
  return Object.freeze(result.data) as Readonly<z.infer<S>>;
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new StrataError('Invalid', `cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  try {
    const parsed = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    return parsed;
  } catch (err) {
    throw invalid(`config file ${file} is not a JSON object: ${(err as Error).message}`);
  }
}
