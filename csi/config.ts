// `strata csi` settings: flags, STRATA_* environment variables (CSI_ENDPOINT too, the CSI
// convention) and an optional JSON file, merged and validated once like every role's.
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { loadConfig } from '../common/config.js';

const hostPort = z.string().regex(/^[^\s/]+:\d{1,5}$/, 'expected host:port');

export const csiSchema = z.object({
  /** unix:///path/to/csi.sock: where the CO (kubelet, the sidecars) calls. */
  endpoint: z
    .string()
    .regex(/^unix:\/\/?\//, 'expected unix:///absolute/path.sock')
    .transform((v) => path.resolve(v.replace(/^unix:\/*/, '/'))),
  coordinator: z
    .string()
    .default('127.0.0.1:7400')
    .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .pipe(z.array(hostPort).min(1)),
  /** What NodeGetInfo answers: the CO's name for this node (Kubernetes: spec.nodeName). */
  nodeId: z.string().min(1).max(128).default(os.hostname()),
  /** controller: volumes (one Deployment); node: mounts (a DaemonSet); both: one process for everything. */
  mode: z.enum(['controller', 'node', 'both']).default('both'),
  /** The strata directory volumes are made in. */
  baseDir: z
    .string()
    .regex(/^\/./, 'must be an absolute directory other than /')
    .transform((v) => path.posix.normalize(v).replace(/\/+$/, ''))
    .default('/volumes'),
  tokenFile: z.string().min(1).optional(),
  tlsCa: z.string().min(1).optional(),
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
});

export type CsiConfig = Readonly<z.infer<typeof csiSchema>>;

export function loadCsiConfig(flags: Record<string, unknown>, file?: string, env: NodeJS.ProcessEnv = process.env): CsiConfig {
  const endpoint = flags.endpoint ?? (env.STRATA_ENDPOINT ? undefined : env.CSI_ENDPOINT);
  return loadConfig(csiSchema, { ...flags, endpoint }, { file, env });
}
