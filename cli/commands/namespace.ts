// ls, stat, mkdir, rm, mv: namespace commands.
import type { Command } from 'commander';
import { StrataError } from '../../common/errors.js';
import { clientCommand, jsonOption, printJson, remotePath, withClient } from '../context.js';
import { longListing, statJson, statText } from '../format.js';

export function registerNamespaceCommands(program: Command): void {
  clientCommand(program.command('ls').description('list a directory (or show one file)'))
    .argument('[path]', 'remote path', '/')
    .option('-l, --long', 'long listing: mode, links, owner, size, modified time')
    .addOption(jsonOption())
    .action(async (path: string, options) =>
      withClient(options, async (client) => {
        const target = remotePath(path);
        const stat = await client.stat(target);
        const withStats = options.long || options.json;
        const entries = stat.isDirectory()
          ? await client.readdir(target, { withStats })
          : [{ name: target.split('/').pop()!, ino: stat.ino, type: stat.type, stat }];
        if (options.json) printJson(entries.map((e) => ({ name: e.name, ...statJson(e.stat!) })));
        else if (options.long) {
          if (entries.length) console.log(longListing(entries));
        } else for (const e of entries) console.log(e.type === 'directory' ? e.name + '/' : e.name);
      }),
    );

  clientCommand(program.command('stat').description('show a file or directory\'s attributes'))
    .argument('<path>', 'remote path')
    .addOption(jsonOption())
    .action(async (path: string, options) =>
      withClient(options, async (client) => {
        const stat = await client.stat(remotePath(path));
        if (options.json) printJson({ path: remotePath(path), ...statJson(stat) });
        else console.log(statText(remotePath(path), stat));
      }),
    );

  clientCommand(program.command('mkdir').description('create directories'))
    .argument('<paths...>', 'remote paths')
    .option('-p, --parents', 'create missing parents; no error if the directory exists')
    .option('-m, --mode <octal>', 'permission bits', '755')
    .action(async (paths: string[], options) =>
      withClient(options, async (client) => {
        const mode = parseMode(options.mode);
        for (const path of paths) await client.mkdir(remotePath(path), { parents: !!options.parents, mode });
      }),
    );

  clientCommand(program.command('rm').description('remove files, symlinks, or (with -r) directory trees'))
    .argument('<paths...>', 'remote paths')
    .option('-r, --recursive', 'remove directories and their contents')
    .option('-f, --force', 'ignore paths that do not exist')
    .option('-v, --verbose', 'print each path removed')
    .action(async (paths: string[], options) =>
      withClient(options, async (client) => {
        for (const path of paths.map(remotePath)) {
          if (path === '/') throw new StrataError('Invalid', "refusing to remove '/'");
          try {
            const stat = await client.stat(path);
            if (stat.isDirectory() && !options.recursive) {
              throw new StrataError('IsDir', `${path}: is a directory (use rm -r)`);
            }
            await client.rm(path, { recursive: !!options.recursive, onRemoved: options.verbose ? (p) => console.log(`removed ${p}`) : undefined });
          } catch (err) {
            if (options.force && err instanceof StrataError && err.kind === 'NotFound') continue;
            throw err;
          }
        }
      }),
    );

  clientCommand(program.command('mv').description('rename or move a file or directory (atomic; replaces a file or empty directory)'))
    .argument('<from>', 'remote source path')
    .argument('<to>', 'remote destination path (an existing directory receives the source inside it)')
    .option('-T, --no-target-directory', 'treat <to> as the new name even when it is a directory')
    .action(async (from: string, to: string, options) =>
      withClient(options, async (client) => {
        let destination = remotePath(to);
        const source = remotePath(from);
        const existing = options.targetDirectory ? await client.stat(destination).catch(() => undefined) : undefined;
        if (existing?.isDirectory()) destination = `${destination.replace(/\/$/, '')}/${source.split('/').pop()}`;
        await client.rename(source, destination);
      }),
    );
}

export function parseMode(text: string): number {
  if (!/^[0-7]{1,4}$/.test(text)) throw new StrataError('Invalid', `invalid mode '${text}': use octal digits, e.g. 755`);
  return parseInt(text, 8);
}
