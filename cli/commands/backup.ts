// export, import: a subtree to and from any S3-compatible bucket (client/backup/*).
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { exportTree } from '../../client/backup/export.js';
import { importTree, readManifest } from '../../client/backup/import.js';
import { StrataError, invalid } from '../../common/errors.js';
import { S3ObjectTier, resolveTierTarget, type TierConfig } from '../../common/object-tier.js';
import { formatBytes } from '../../common/units.js';
import { loadKeyRing, type KeyRing } from '../../common/master-key.js';
import { clientCommand, jsonOption, printJson, remotePath, withClient } from '../context.js';
import { EXIT_CODES } from '../exit-codes.js';
import { createProgress, type Progress } from '../progress.js';

interface S3Flags {
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
  credentialsFile?: string;
}

function s3Command(command: Command): Command {
  return clientCommand(command)
    .addOption(new Option('--endpoint <url>', 'S3 endpoint (MinIO, Ceph RGW, Garage, ...); default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS'))
    .addOption(new Option('--region <region>', 'S3 region; default: AWS_REGION, AWS_DEFAULT_REGION, or us-east-1'))
    .option('--path-style', 'path-style bucket addressing (http://host/bucket/key), as most self-hosted stores need')
    .option('--credentials-file <file>', 'JSON {"accessKeyId", "secretAccessKey"[, "sessionToken"]}; default: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, then the AWS default chain')
    .option('--encrypt-key-file <file>', 'master key (32 bytes: raw, hex or base64; or STRATA_MASTER_KEY): export encrypts every object and the manifest (AES-256-GCM); import opens an encrypted export')
    .option('--no-progress', 'no progress bar')
    .addOption(jsonOption());
}

export function registerBackupCommands(program: Command): void {
  s3Command(program.command('export').description('write a subtree (data + a manifest) to an S3-compatible bucket'))
    .argument('<path>', 'strata path to export (a directory, file or symlink)')
    .argument('<url>', 'destination, s3://bucket/prefix')
    .option('--force', 'replace an export already at the destination')
    .action(async (path: string, url: string, options) => {
      const source = remotePath(path);
      const keys = masterKeys(options);
      const tier = openTier(url, options, 'export');
      const started = Date.now();
      const progress = lazyProgress(`export ${source}`, options);
      try {
        const result = await withClient(options, (client) => exportTree(client, tier, source, { force: !!options.force, onProgress: progress.update, keys }));
        progress.stop();
        const seconds = (Date.now() - started) / 1000;
        const destination = `s3://${tier.target.bucket}/${tier.target.prefix}`;
        if (options.json) printJson({ ...result, destination, seconds, encryptedWith: keys?.current.keyId ?? null });
        else {
          console.log(`exported ${source} to ${destination}: ${summary(result, seconds)}${keys ? `, encrypted with master key ${keys.current.keyId}` : ''}`);
          for (const u of result.unstable) process.stderr.write(`strata: warning: ${u.path}: ${u.reason}; exported as last read\n`);
          for (const d of result.changed) process.stderr.write(`strata: warning: ${d}: directory changed while it was listed\n`);
          if (result.vanished.length) process.stderr.write(`strata: note: ${result.vanished.length} entr(ies) disappeared during the export and were left out\n`);
        }
        if (result.unstable.length || result.changed.length) process.exitCode = EXIT_CODES.Conflict;
      } catch (err) {
        throw s3Wording(err, 'export');
      } finally {
        progress.stop();
        tier.close();
      }
    });

  s3Command(program.command('import').description('rebuild an export into an absent path or an empty directory'))
    .argument('<url>', 'source, s3://bucket/prefix (where strata export wrote)')
    .argument('<path>', 'strata path to create (absent, or an empty directory)')
    .action(async (url: string, path: string, options) => {
      const destination = remotePath(path);
      const keys = masterKeys(options);
      const tier = openTier(url, options, 'import');
      const started = Date.now();
      const progress = lazyProgress(`import ${destination}`, options);
      try {
        const manifest = await readManifest(tier, keys);
        const result = await withClient(options, (client) => importTree(client, tier, manifest, destination, { onProgress: progress.update, keys }));
        progress.stop();
        const seconds = (Date.now() - started) / 1000;
        const source = `s3://${tier.target.bucket}/${tier.target.prefix}`;
        if (options.json) printJson({ ...result, source, seconds });
        else console.log(`imported ${source} into ${destination}: ${summary(result, seconds)}`);
      } catch (err) {
        throw s3Wording(err, 'import');
      } finally {
        progress.stop();
        tier.close();
      }
    });
}

/** --encrypt-key-file, else STRATA_MASTER_KEY, else none (a plain export; an encrypted one is refused on import). */
function masterKeys(options: { encryptKeyFile?: string }): KeyRing | undefined {
  if (options.encryptKeyFile) return loadKeyRing({ encryptKeyFile: options.encryptKeyFile });
  return loadKeyRing({ masterKey: process.env.STRATA_MASTER_KEY || undefined });
}

/** The object-tier names its target "tier '<name>'"; here there is no tier, just a bucket. */
function s3Wording(err: unknown, name: string): unknown {
  const head = `tier '${name}'`;
  if (!(err instanceof StrataError) || !err.message.startsWith(head)) return err;
  return new StrataError(err.kind, `S3${err.message.slice(head.length)}`, { cause: err });
}

function summary(r: { files: number; dirs: number; symlinks: number; bytes: number }, seconds: number): string {
  return `${r.files} files, ${r.dirs} dirs, ${r.symlinks} symlinks, ${formatBytes(r.bytes)} (${r.bytes} bytes) in ${seconds.toFixed(1)} s`;
}

/** A progress bar made once the total is known (after the walk / from the manifest). */
function lazyProgress(label: string, options: { json?: boolean; progress?: boolean }): { update: (done: number, total: number) => void; stop: () => void } {
  let bar: Progress | undefined;
  return {
    update: (done, total) => (bar ??= createProgress(label, total, !options.json && options.progress !== false)).update(Math.max(0, done)),
    stop: () => {
      bar?.stop();
      bar = undefined;
    },
  };
}

/** s3://bucket/prefix plus the S3 flags and environment as an object tier; secrets never printed. */
export function openTier(url: string, flags: S3Flags, name: string): S3ObjectTier {
  const { bucket, prefix } = parseS3Url(url);
  try {
    return new S3ObjectTier(resolveTierTarget(tierConfig(bucket, prefix, flags, name), process.env, (file) => readFileSync(file, 'utf8')));
  } catch (err) {
    throw s3Wording(err, name);
  }
}

function tierConfig(bucket: string, prefix: string, flags: S3Flags, name: string): TierConfig {
  const endpoint = flags.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL ?? '';
  if (endpoint !== '') {
    let parsed: URL | undefined;
    try {
      parsed = new URL(endpoint);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      throw invalid(`invalid endpoint '${endpoint}': use http(s)://host[:port]`);
    }
  }
  return {
    name,
    endpoint,
    region: flags.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    bucket,
    prefix,
    forcePathStyle: !!flags.pathStyle,
    credentialsFile: flags.credentialsFile,
    accessKeyIdEnv: 'AWS_ACCESS_KEY_ID',
    secretAccessKeyEnv: 'AWS_SECRET_ACCESS_KEY',
  };
}

/** `s3://bucket[/prefix]` -> bucket and a prefix that is '' or ends in '/'. */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([^/?#]*)(?:\/([^?#]*))?$/.exec(url);
  if (!match) throw invalid(`invalid URL '${url}': use s3://bucket/prefix`);
  const bucket = match[1];
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$/.test(bucket)) {
    throw invalid(`invalid URL '${url}': '${bucket}' is not a bucket name (3-63 letters, digits, '.', '-', '_')`);
  }
  let prefix = match[2] ?? '';
  if (prefix.split('/').some((part, i, all) => part === '' && i < all.length - 1)) throw invalid(`invalid URL '${url}': empty path component in the prefix`);
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  if (Buffer.byteLength(prefix) > 512) throw new StrataError('Invalid', `invalid URL '${url}': the prefix is longer than 512 bytes`);
  return { bucket, prefix };
}
