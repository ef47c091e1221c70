// put, get, cat: streaming transfers between local files (or stdin/stdout) and strata.
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat as localStat } from 'node:fs/promises';
import { basename } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Option, type Command } from 'commander';
import type { AckPolicy, Strata } from '../../client/index.js';
import { StrataError } from '../../common/errors.js';
import { parseSize } from '../../common/units.js';
import { clientCommand, remotePath, withClient } from '../context.js';
import { createProgress } from '../progress.js';

export function registerTransferCommands(program: Command): void {
  clientCommand(program.command('put').description('upload a local file (or - for stdin) to strata'))
    .argument('<local>', "local file, or '-' for standard input")
    .argument('[remote]', 'remote path; a directory or a path ending in / receives the file under its name')
    .option('-r, --replication <n>', 'copies of each chunk (default: the cluster default, 3)')
    .option('--chunk-size <size>', 'chunk size, e.g. 8MiB (default: the cluster default)')
    .addOption(new Option('--ack <policy>', 'replicas that must fsync before a chunk counts').choices(['one', 'quorum', 'all']))
    .option('--no-progress', 'no progress bar')
    .action(async (local: string, remote: string | undefined, options) =>
      withClient(options, async (client) => {
        const target = await uploadTarget(client, local, remote);
        // Like `aws s3 cp`: missing parent directories are created.
        const parent = target.slice(0, target.lastIndexOf('/')) || '/';
        if (parent !== '/') await client.mkdir(parent, { parents: true });
        const size = local === '-' ? undefined : await localFileSize(local);
        // A refused upload (quota, no space, a lost node) must not leave a broken file that was not there before.
        const existed = await client.exists(target);
        const progress = createProgress(`put ${basename(target)}`, size, options.progress);
        /** Only a file this put made is removed: a refused create made none (and a retried removal would be refused, and logged, too). */
        let made = false;
        try {
          const source = local === '-' ? process.stdin : createReadStream(local, { highWaterMark: 1024 * 1024 });
          source.on('error', () => undefined); // surfaced by pipeline
          const sink = await client.createWriteStream(target, {
            replication: options.replication === undefined ? undefined : parsePositiveInt(options.replication, '--replication'),
            chunkSize: options.chunkSize === undefined ? undefined : parseSize(options.chunkSize, '--chunk-size'),
            ackPolicy: options.ack as AckPolicy | undefined,
            onProgress: (bytes) => progress.update(bytes),
          });
          made = true;
          await pipeline(source, sink);
          const wanted = sink.stat?.replication ?? 0;
          if (sink.fewestCopies < wanted) {
            process.stderr.write(`strata: warning: some chunks of ${target} have ${sink.fewestCopies} of ${wanted} copies (too few live data nodes)\n`);
          }
        } catch (err) {
          if (!existed && made) await client.rm(target).catch(() => undefined);
          throw localError(err, local);
        } finally {
          progress.stop();
        }
      }),
    );

  clientCommand(program.command('get').description('download a file from strata (to - for stdout)'))
    .argument('<remote>', 'remote path')
    .argument('[local]', "local path (default: the remote file's name here), or '-' for standard output")
    .option('--no-progress', 'no progress bar')
    .action(async (remote: string, local: string | undefined, options) =>
      withClient(options, async (client) => {
        const source = remotePath(remote);
        const target = local ?? basename(source);
        if (target === '-') return downloadTo(client, source, process.stdout, false);
        const stat = await client.stat(source);
        const partial = `${target}.strata-part`;
        try {
          await downloadTo(client, source, createWriteStream(partial), options.progress, stat.size);
          await rename(partial, target); // a failed download never leaves a truncated file under the real name
        } catch (err) {
          await rm(partial, { force: true });
          throw localError(err, target);
        }
      }),
    );

  clientCommand(program.command('cat').description('print files to standard output'))
    .argument('<remotes...>', 'remote paths')
    .action(async (remotes: string[], options) =>
      withClient(options, async (client) => {
        for (const remote of remotes) await downloadTo(client, remotePath(remote), process.stdout, false);
      }),
    );
}

async function downloadTo(client: Strata, source: string, sink: NodeJS.WritableStream, showProgress: boolean, size?: number): Promise<void> {
  const progress = createProgress(`get ${basename(source)}`, size, showProgress);
  let bytes = 0;
  const counter = new Transform({
    transform(piece: Buffer, _enc, done) {
      bytes += piece.length;
      progress.update(bytes);
      done(null, piece);
    },
  });
  try {
    const stream = await client.createReadStream(source);
    await pipeline(stream, counter, sink as NodeJS.WritableStream, { end: sink !== process.stdout });
  } catch (err) {
    // A closed pipe (e.g. `| head`) is the reader's choice, not a failure.
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') return;
    throw err;
  } finally {
    progress.stop();
  }
}

async function uploadTarget(client: Strata, local: string, remote: string | undefined): Promise<string> {
  if (local === '-' && (!remote || remote.endsWith('/'))) {
    throw new StrataError('Invalid', 'put from stdin needs a remote file path, e.g. strata put - /dir/name');
  }
  const name = basename(local);
  if (!remote) return remotePath(name);
  const target = remotePath(remote);
  if (target.endsWith('/')) return target + name;
  const existing = await client.stat(target).catch(() => undefined);
  return existing?.isDirectory() ? `${target}/${name}` : target;
}

async function localFileSize(path: string): Promise<number> {
  try {
    const info = await localStat(path);
    if (info.isDirectory()) throw new StrataError('IsDir', `${path}: is a directory (put uploads one file)`);
    return info.size;
  } catch (err) {
    throw localError(err, path);
  }
}

function parsePositiveInt(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new StrataError('Invalid', `invalid ${flag} '${text}': use a whole number ≥ 1`);
  return value;
}

/** Local filesystem errors become taxonomy errors naming the local path. */
function localError(err: unknown, path: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT') return new StrataError('NotFound', `${path}: no such local file or directory`);
  if (code === 'EACCES' || code === 'EPERM') return new StrataError('PermissionDenied', `${path}: permission denied`);
  if (code === 'EISDIR') return new StrataError('IsDir', `${path}: is a directory`);
  if (code === 'ENOSPC') return new StrataError('NoSpace', `${path}: no space left on the local disk`);
  return err;
}
