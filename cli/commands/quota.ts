// `strata quota`: limits of bytes and files on a directory (a tenant's: on its root), enforced on
// create and on the write that grows a file (exit 7, EDQUOT through the mount).
import type { Command } from 'commander';
import { invalid } from '../../common/errors.js';
import { isTenantName, tenantRootPath } from '../../common/tenants.js';
import { formatBytes, parseSize } from '../../common/units.js';
import type { QuotaInfo } from '../../client/index.js';
import { clientCommand, jsonOption, printJson, remotePath, withClient } from '../context.js';

const examples = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;
/** Past this, `quota set` says on stderr that it is still counting. */
const SLOW_SET_NOTICE_MS = 2000;

export function registerQuotaCommands(program: Command): void {
  const quota = program
    .command('quota')
    .description('quotas of bytes and files on a directory or a tenant: set, get, ls, rm')
    .addHelpText(
      'after',
      `
A quota on a directory limits what lies under it: bytes (the logical size of its files, as ls
shows them, not the replicated bytes stored) and files (every inode under it: files,
directories, links). Nested quotas all apply. A create or a write that would pass a limit fails
with "disk quota exceeded" (exit 7; EDQUOT through a mount) and what was stored stays as it was.
A tenant's quota is the quota on its root, ${tenantRootPath('<tenant>')} (--tenant T).
Moving a directory that has no quota of its own between quota directories is refused (EXDEV;
mv copies instead). Setting, removing and listing quotas need the admin role (the
coordinator's --admin-role, default strata-admin) when auth is on; a tenant's user sees its own
quota with strata quota get / and strata df /.
strata df PATH shows the nearest quota at or above PATH.
${examples(['strata quota set /projects/x --bytes 10G --files 100000', 'strata quota set --tenant acme --bytes 1T', 'strata quota get /projects/x', 'strata quota ls', 'strata quota rm /projects/x'])}`,
    );

  clientCommand(quota.command('set').description('set or change the quota on a directory (a new one counts the usage under it first)'))
    .argument('[path]', 'remote directory (or --tenant)')
    .option('--tenant <name>', `the tenant's root directory, ${tenantRootPath('<name>')}`)
    .option('--bytes <size>', 'limit of bytes, e.g. 10G, 500MiB (binary units: 1G = 1 GiB); 0 or none = no limit (default: keep the current one)')
    .option('--files <n>', 'limit of files (inodes); 0 or none = no limit (default: keep the current one)')
    .option('--recount', 'count the usage again by walking the tree (a new quota always does)')
    .addOption(jsonOption())
    .addHelpText(
      'after',
      `
A new quota (or --recount) walks the whole tree under the directory once to count its usage:
one pass over its entries on the coordinator (a nested quota directory adds its own kept usage
instead of being walked again). Writes landing during the walk may be missed by the count.
${examples(['strata quota set /projects/x --bytes 10G', 'strata quota set /projects/x --files 100000', 'strata quota set --tenant acme --bytes 1T --files 1000000', 'strata quota set /projects/x --bytes none'])}`,
    )
    .action(async (path: string | undefined, options) =>
      withClient(options, async (client) => {
        const target = targetOf(path, options.tenant);
        const bytes = limitOption(options.bytes, 'bytes', (v) => parseSize(v, '--bytes'));
        const files = limitOption(options.files, 'files', (v) => wholeNumber(v, '--files'));
        if (bytes === undefined && files === undefined && !options.recount) throw invalid('give --bytes and/or --files (or --recount)');
        const notice = setTimeout(() => process.stderr.write(`counting the usage under ${target} (walking its tree)...\n`), SLOW_SET_NOTICE_MS);
        let info: QuotaInfo;
        try {
          info = await client.quotaSet(target, { bytes, files }, { recount: !!options.recount });
        } finally {
          clearTimeout(notice);
        }
        if (options.json) return printJson(info);
        console.log(`quota on ${info.path} set: ${describe(info)}`);
      }),
    );

  clientCommand(quota.command('get').description('the quota on a directory: limits and usage'))
    .argument('[path]', 'remote directory (or --tenant)')
    .option('--tenant <name>', `the tenant's root directory, ${tenantRootPath('<name>')}`)
    .addOption(jsonOption())
    .addHelpText('after', examples(['strata quota get /projects/x', 'strata quota get --tenant acme --json']))
    .action(async (path: string | undefined, options) =>
      withClient(options, async (client) => {
        const info = await client.quotaGet(targetOf(path, options.tenant));
        if (options.json) return printJson(info);
        console.log(`${info.path}: ${describe(info)}`);
      }),
    );

  clientCommand(quota.command('ls').description('every quota: path, limits, usage (a tenant caller: those inside its tenant, paths from its /)'))
    .addOption(jsonOption())
    .action(async (options) =>
      withClient(options, async (client) => {
        const quotas = await client.quotaList();
        if (options.json) return printJson(quotas);
        if (quotas.length === 0) return console.log('no quotas set (strata quota set PATH --bytes SIZE --files N)');
        const rows = [['PATH', 'BYTES USED', 'BYTES LIMIT', 'FILES USED', 'FILES LIMIT']];
        for (const q of quotas) {
          rows.push([q.path, formatBytes(q.usedBytes), q.limitBytes ? formatBytes(q.limitBytes) : '-', String(q.usedFiles), q.limitFiles ? String(q.limitFiles) : '-']);
        }
        const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)));
        for (const row of rows) console.log(row.map((cell, col) => cell.padEnd(widths[col])).join('  ').trimEnd());
      }),
    );

  clientCommand(quota.command('rm').description('remove the quota on a directory (its files stay)'))
    .argument('[path]', 'remote directory (or --tenant)')
    .option('--tenant <name>', `the tenant's root directory, ${tenantRootPath('<name>')}`)
    .addOption(jsonOption())
    .action(async (path: string | undefined, options) =>
      withClient(options, async (client) => {
        const target = targetOf(path, options.tenant);
        await client.quotaRemove(target);
        if (options.json) return printJson({ path: target, removed: true });
        console.log(`quota on ${target} removed`);
      }),
    );
}

/** A path, or --tenant T's root: exactly one. */
function targetOf(path: string | undefined, tenant: string | undefined): string {
  if (tenant !== undefined) {
    if (path !== undefined) throw invalid('give a path or --tenant, not both');
    if (!isTenantName(tenant)) throw invalid(`invalid tenant name '${tenant}': letters, digits, '.', '_', '-'`);
    return tenantRootPath(tenant);
  }
  if (path === undefined) throw invalid('missing path (or --tenant NAME)');
  return remotePath(path);
}

function limitOption(value: string | undefined, what: string, parse: (v: string) => number): number | undefined {
  if (value === undefined) return undefined;
  if (/^\s*(none|unlimited)\s*$/i.test(value)) return 0;
  const n = parse(value);
  if (!Number.isSafeInteger(n) || n < 0) throw invalid(`invalid ${what} limit '${value}'`);
  return n;
}

function wholeNumber(value: string, label: string): number {
  if (!/^\s*\d+\s*$/.test(value)) throw invalid(`invalid ${label} '${value}': a whole number of files`);
  return Number(value);
}

/** "1.0 GiB of 10 GiB (10%), 12 of 100000 files" */
export function describe(q: QuotaInfo): string {
  const pct = (used: number, limit: number) => (limit ? ` (${((100 * used) / limit).toFixed(0)}%)` : '');
  const bytes = q.limitBytes ? `${formatBytes(q.usedBytes)} of ${formatBytes(q.limitBytes)}${pct(q.usedBytes, q.limitBytes)}` : `${formatBytes(q.usedBytes)} (no byte limit)`;
  const files = q.limitFiles ? `${q.usedFiles} of ${q.limitFiles} files${pct(q.usedFiles, q.limitFiles)}` : `${q.usedFiles} files (no file limit)`;
  return `${bytes}, ${files}`;
}
