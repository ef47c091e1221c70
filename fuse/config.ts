// `strata mount` settings: flags, STRATA_* environment variables and an optional JSON file,
// merged and validated once (common/config.ts), like every other role.
import { z } from 'zod';
import { loadConfig, metricsListen } from '../common/config.js';

const hostPort = z.string().regex(/^[^\s/]+:\d{1,5}$/, 'expected host:port');
const int = z.coerce.number().int();
// z.coerce.boolean() reads the string 'false' as true; environment variables are strings.
const bool = z.union([z.boolean(), z.enum(['true', 'false', '1', '0'])]).transform((v) => v === true || v === 'true' || v === '1');

export const mountSchema = z.object({
  mountpoint: z.string().min(1),
  /** Coordinator addresses, comma-separated (STRATA_COORDINATOR, as for every client command). */
  coordinator: z
    .string()
    .default('127.0.0.1:7400')
    .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .pipe(z.array(hostPort).min(1)),
  /** The remote directory shown at the mount point. */
  path: z.string().regex(/^\//, 'must be absolute (start with /)').default('/'),
  /**
   * How long the kernel trusts attributes and directory entries when the metadata source has no
   * leases (the path-based fallback). Under leases (strata.inodes) the kernel trusts an answer
   * for what its lease has left, and not at all when no lease covers it.
   */
  attrTimeoutMs: int.min(0).max(3_600_000).default(1000),
  /** Deadline of one metadata call; an unreachable cluster answers EIO after about this long. */
  callTimeoutMs: int.min(100).max(600_000).default(5000),
  /** Deadline of one chunk transfer to or from a data node. */
  transferTimeoutMs: int.min(1000).max(600_000).default(30_000),
  /** Backstop for any one file system operation: past it the caller gets EIO, never a hang. */
  opTimeoutMs: int.min(1000).max(3_600_000).default(60_000),
  /** Partly written chunks buffered per open file before the oldest is flushed. */
  maxDirtyChunks: int.min(1).max(64).default(2),
  /** Chunk uploads in flight per open file (the replication pipeline overlaps them). */
  writeConcurrency: int.min(1).max(16).default(3),
  foreground: bool.default(true),
  allowOther: bool.default(false),
  readOnly: bool.default(false),
  /** Owner shown for every file (like sshfs -o uid=); default: the stored owner. */
  uid: int.min(0).max(0xfffffffe).optional(),
  gid: int.min(0).max(0xfffffffe).optional(),
  /**
   * fuse3: strata's own binding on libfuse 3's low-level API (native/); fuse2: fuse-native on
   * libfuse 2's path-based API, the fallback.
   */
  binding: z.enum(['fuse3', 'fuse2']).default('fuse3'),
  /**
   * The kernel's writeback cache (fuse3 only): writes are gathered in the page cache and reach the
   * mount in big pieces, but the kernel then trusts its own size and mtime of a file over the
   * cluster's, so another client's change of a file this kernel has cached may not show. Safe only
   * when no other client writes the files this mount uses.
   */
  writebackCache: bool.default(false),
  /** A file holding an OIDC access token (STRATA_TOKEN_FILE), for coordinators with auth on. */
  tokenFile: z.string().min(1).optional(),
  /** Or the token itself: STRATA_TOKEN (never a flag: argv is public). Never logged. */
  token: z.string().min(1).optional(),
  /** TLS to the cluster (common/tls.ts): the CA that signed its servers turns it on; a client certificate is optional. */
  tlsCa: z.string().min(1).optional(),
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  /** host:port of GET /metrics, /healthz, /readyz (common/metrics-server.ts); absent or 'off' = none. */
  metricsListen,
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
});

export type MountConfig = Readonly<z.infer<typeof mountSchema>>;

export function loadMountConfig(flags: Record<string, unknown>, file?: string): MountConfig {
  return loadConfig(mountSchema, flags, { file });
}
