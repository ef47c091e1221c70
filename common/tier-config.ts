// Object tier configuration: the config-file shape, the `--tier` flag form, credential
// resolution. Kept apart from common/object-tier.ts so that loading a role's config (every CLI
// start) does not load the AWS SDK; object-tier.ts re-exports these.
import { z } from 'zod';
import { invalid } from './errors.js';
import type { TierTarget } from './object-tier.js';

const tierName = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, 'tier names are 1..32 of a-z 0-9 _ - (starting with a letter or digit)');

/** One tier as written in a coordinator's config file. Credentials: inline, a file, or env. */
export const tierConfigSchema = z
  .object({
    name: tierName,
    endpoint: z.string().url().or(z.literal('')).default(''),
    region: z.string().default('us-east-1'),
    bucket: z.string().min(3).max(63),
    prefix: z
      .string()
      .default('')
      .transform((p) => (p === '' || p.endsWith('/') ? p : p + '/')),
    forcePathStyle: z.boolean().default(false),
    /** A JSON file {"accessKeyId": ..., "secretAccessKey": ..., "sessionToken"?: ...}. */
    credentialsFile: z.string().optional(),
    /** Environment variables holding the keys (default AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). */
    accessKeyIdEnv: z.string().default('AWS_ACCESS_KEY_ID'),
    secretAccessKeyEnv: z.string().default('AWS_SECRET_ACCESS_KEY'),
  })
  .strict();
export type TierConfig = z.infer<typeof tierConfigSchema>;

/**
 * `--tier` flag form: `name=s3://bucket/prefix?endpoint=http://host:port&region=r&path_style=true&credentials_file=/p`.
 * Returns the config-file shape, validated by tierConfigSchema with the rest.
 */
export function parseTierSpec(spec: string): Record<string, unknown> {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw invalid(`invalid tier '${spec}': use name=s3://bucket/prefix?endpoint=URL&region=R&path_style=true`);
  let url: URL;
  try {
    url = new URL(spec.slice(eq + 1));
  } catch {
    throw invalid(`invalid tier '${spec}': ${spec.slice(eq + 1)} is not an s3:// URL`);
  }
  if (url.protocol !== 's3:') throw invalid(`invalid tier '${spec}': the URL must start with s3://`);
  const out: Record<string, unknown> = { name: spec.slice(0, eq), bucket: url.hostname, prefix: decodeURIComponent(url.pathname.replace(/^\//, '')) };
  for (const [key, value] of url.searchParams) {
    if (key === 'endpoint') out.endpoint = value;
    else if (key === 'region') out.region = value;
    else if (key === 'path_style') out.forcePathStyle = value === 'true' || value === '1';
    else if (key === 'credentials_file') out.credentialsFile = value;
    else throw invalid(`invalid tier '${spec}': unknown option '${key}' (endpoint, region, path_style, credentials_file)`);
  }
  return out;
}

/** Resolves a tier's credentials (file, then env) into a target; throws Invalid naming what is wrong. */
export function resolveTierTarget(config: TierConfig, env: NodeJS.ProcessEnv, readFile: (p: string) => string): TierTarget {
  let accessKeyId = env[config.accessKeyIdEnv] ?? '';
  let secretAccessKey = env[config.secretAccessKeyEnv] ?? '';
  let sessionToken = env.AWS_SESSION_TOKEN ?? '';
  if (config.credentialsFile) {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(readFile(config.credentialsFile));
    } catch (err) {
      // Never echo a JSON.parse message: V8 quotes the text around the error, i.e. the secret.
      const why = err instanceof SyntaxError ? 'not valid JSON' : (err as Error).message.split('\n')[0];
      throw invalid(`tier '${config.name}': cannot read credentials file ${config.credentialsFile}: ${why}`);
    }
    if (typeof parsed.accessKeyId !== 'string' || typeof parsed.secretAccessKey !== 'string') {
      throw invalid(`tier '${config.name}': credentials file ${config.credentialsFile} needs "accessKeyId" and "secretAccessKey" strings`);
    }
    accessKeyId = parsed.accessKeyId;
    secretAccessKey = parsed.secretAccessKey;
    sessionToken = typeof parsed.sessionToken === 'string' ? parsed.sessionToken : '';
  }
  if ((accessKeyId === '') !== (secretAccessKey === '')) {
    throw invalid(`tier '${config.name}': set both an access key id and a secret access key, or neither`);
  }
  return {
    name: config.name,
    endpoint: config.endpoint,
    region: config.region,
    bucket: config.bucket,
    prefix: config.prefix,
    forcePathStyle: config.forcePathStyle,
    accessKeyId,
    secretAccessKey,
    sessionToken,
  };
}
