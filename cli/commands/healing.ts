// health (fsck), node drain, node rm, rebalance: the self-healing commands.
import type { Command } from 'commander';
import { invalid } from '../../common/errors.js';
import { formatBytes } from '../../common/units.js';
import type { HealthReport } from '../../client/index.js';
import { clientCommand, jsonOption, printJson, withClient } from '../context.js';
import { EXIT_HEALTH_MISSING } from '../exit-codes.js';

export function registerHealingCommands(program: Command): void {
  clientCommand(
    program
      .command('health')
      .alias('fsck')
      .description(`chunk health (healthy, under-replicated, missing, corrupt), affected files, repair queue; exit ${EXIT_HEALTH_MISSING} while chunks are missing`),
  )
    .option('--max-files <n>', 'affected files to list', '100')
    .addOption(jsonOption())
    .action(async (options) =>
      withClient(options, async (client) => {
        const maxFiles = Number(options.maxFiles);
        if (!Number.isInteger(maxFiles) || maxFiles < 1) throw invalid(`invalid --max-files '${options.maxFiles}': a whole number >= 1`);
        const report = await client.health({ maxFiles });
        if (options.json) printJson(report);
        else console.log(healthText(report));
        if (report.missing > 0) process.exitCode = EXIT_HEALTH_MISSING;
      }),
    );

  const node = program.command('node').description('data node administration: drain, rm');
  clientCommand(node.command('drain').description('stop placing chunks on a node and move all its chunks to other nodes'))
    .argument('<id>', 'data node id (see strata nodes)')
    .addOption(jsonOption())
    .action(async (nodeId: string, options) =>
      withClient(options, async (client) => {
        const status = await client.drainNode(nodeId);
        if (options.json) return printJson(status);
        console.log(
          status.state === 'drained'
            ? `${nodeId} is drained: it holds no referenced chunk; stop it, then run strata node rm ${nodeId}`
            : `${nodeId} is draining: its chunks are being copied to other nodes (progress: strata health, strata nodes)`,
        );
      }),
    );
  clientCommand(node.command('rm').description('forget a data node; refused while it holds the only copy of any chunk'))
    .argument('<id>', 'data node id')
    .action(async (nodeId: string, options) =>
      withClient(options, async (client) => {
        await client.removeNode(nodeId);
        console.log(`${nodeId} removed (if it heartbeats again, it rejoins)`);
      }),
    );

  clientCommand(program.command('rebalance').description('move chunks from fuller to emptier nodes until usage is within a threshold of the mean'))
    .option('--threshold <pct>', 'percentage points from the mean usage each node may differ by', '10')
    .addOption(jsonOption())
    .action(async (options) =>
      withClient(options, async (client) => {
        const thresholdPercent = Number(options.threshold);
        if (!Number.isFinite(thresholdPercent) || thresholdPercent <= 0 || thresholdPercent > 100) {
          throw invalid(`invalid --threshold '${options.threshold}': a percentage above 0 and at most 100`);
        }
        const reply = await client.rebalance({ thresholdPercent });
        if (options.json) printJson(reply);
        else console.log(reply.message);
      }),
    );
}

function healthText(r: HealthReport): string {
  const verdict =
    r.missing > 0
      ? `MISSING DATA: ${r.missing} chunk(s) have no live, uncorrupted copy`
      : r.underReplicated + r.corrupt > 0
        ? `DEGRADED: ${r.underReplicated} under-replicated, ${r.corrupt} corrupt (being repaired while the leader can)`
        : 'HEALTHY';
  const q = r.queue;
  const lines = [
    `Status:     ${verdict}`,
    `Chunks:     ${r.chunks} (${r.healthy} healthy, ${r.underReplicated} under-replicated, ${r.missing} missing, ${r.corrupt} corrupt, ${r.overReplicated} over-replicated)`,
    `Leader:     ${r.leader || '(none elected)'}`,
    `Repair:     ${q.queued} queued, ${q.running} running; since the leader took over: ${q.repaired} repaired, ${q.failed} failed, ` +
      `${formatBytes(Number(q.bytesCopied))} copied, ${q.trimmed} trimmed, ${q.gcDeleted} garbage copies deleted`,
    `Rebalance:  ${q.rebalance}`,
  ];
  if (r.files.length > 0) {
    lines.push('Affected files:');
    for (const f of r.files) lines.push(`  ${f.state.padEnd(16)} ${String(f.chunks).padStart(6)} chunk(s)  ${f.path}`);
  }
  if (r.events.length > 0) {
    lines.push('Recent events:');
    for (const e of r.events.slice(-10)) lines.push(`  ${new Date(Number(e.atMs)).toISOString().slice(11, 19)}  ${e.kind.padEnd(13)} ${e.message}`);
  }
  return lines.join('\n');
}
