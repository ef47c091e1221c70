// df and nodes: cluster capacity and data node status.
import type { Command } from 'commander';
import { formatBytes } from '../../common/units.js';
import { clientCommand, jsonOption, printJson, remotePath, withClient } from '../context.js';
import type { FsStats } from '../../client/index.js';
import { describe as describeQuota } from './quota.js';

export function registerClusterInfoCommands(program: Command): void {
  clientCommand(program.command('df').description('cluster capacity, usage, files and chunks; with PATH, also the nearest quota at or above it'))
    .argument('[path]', 'remote path: show the quota of the nearest quota directory at or above it (default /)')
    .addOption(jsonOption())
    .addHelpText(
      'after',
      `
The Quota line (when a quota applies) counts bytes as the logical size of the files under the
quota directory and files as its inodes (strata quota --help). Capacity, Used and Free are the
live data nodes' disks: every replica's chunk files. A tenant's caller sees its tenant instead:
Used is the logical size of its files, Free what is left of its quota (never more than the
cluster has free), Size its quota (none: Used + Free), Files its inodes.

Examples:
  $ strata df
  $ strata df /projects/x/report.csv
  $ strata df /projects/x --json`,
    )
    .action(async (path: string | undefined, options) =>
      withClient(options, async (client) => {
        const fs = await client.statfs({ path: path === undefined ? '/' : remotePath(path) });
        if (options.json) return printJson(fs);
        if (fs.quota) console.log(`Quota:      ${fs.quota.path}: ${describeQuota(fs.quota)}`);
        if (fs.tenant) return printTenant(fs);
        const usedPct = fs.capacityBytes ? ((100 * fs.usedBytes) / fs.capacityBytes).toFixed(1) : '0.0';
        console.log(
          [
            `Capacity:   ${formatBytes(fs.capacityBytes)} on ${fs.liveNodes} live data node(s)${fs.deadNodes ? `, ${fs.deadNodes} dead` : ''}`,
            `Used:       ${formatBytes(fs.usedBytes)} (${usedPct}%, chunk files on disk, all replicas)`,
            `Free:       ${formatBytes(fs.freeBytes)}`,
            `Files:      ${fs.files}`,
            `Dirs:       ${fs.directories}`,
            `Chunks:     ${fs.chunks}`,
          ].join('\n'),
        );
      }),
    );

  clientCommand(program.command('nodes').description('data nodes: address, state, capacity, used, chunks'))
    .addOption(jsonOption())
    .action(async (options) =>
      withClient(options, async (client) => {
        const nodes = await client.nodes();
        if (options.json) return printJson(nodes);
        const rows = [['NODE', 'ADDRESS', 'STATE', 'CAPACITY', 'USED', 'FREE', 'CHUNKS', 'LAST SEEN']];
        for (const n of nodes) {
          const ago = Math.max(0, Math.round((Date.now() - Number(n.lastHeartbeatMs)) / 1000));
          rows.push([n.nodeId, n.address, n.state, formatBytes(Number(n.capacityBytes)), formatBytes(Number(n.usedBytes)), formatBytes(Number(n.freeBytes)), String(n.chunks), `${ago}s ago`]);
        }
        const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)));
        for (const row of rows) console.log(row.map((cell, col) => cell.padEnd(widths[col])).join('  ').trimEnd());
      }),
    );
}

/** A tenant's own figures (StatFsReply.tenant set): never the cluster's totals. */
function printTenant(fs: FsStats): void {
  const usedPct = fs.capacityBytes ? ((100 * fs.usedBytes) / fs.capacityBytes).toFixed(1) : '0.0';
  console.log(
    [
      `Tenant:     ${fs.tenant}`,
      `Size:       ${formatBytes(fs.capacityBytes)} (its quota, else used + the cluster's free) on ${fs.liveNodes} live data node(s)${fs.deadNodes ? `, ${fs.deadNodes} dead` : ''}`,
      `Used:       ${formatBytes(fs.usedBytes)} (${usedPct}%, logical size of the tenant's files)`,
      `Free:       ${formatBytes(fs.freeBytes)}`,
      `Files:      ${fs.files} (inodes: files, directories, symlinks)`,
    ].join('\n'),
  );
}
