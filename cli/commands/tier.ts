// `strata tier`: tiering policies (when files move to an S3-compatible object tier), pins,
// recall, and the tiers' status. The elected leader moves the chunks in the background.
import type { Command } from 'commander';
import { StrataError, invalid } from '../../common/errors.js';
import { formatBytes, formatDuration, parseDuration, parseSize } from '../../common/units.js';
import type { Strata, TierPathInfo, TierPolicy, TierStatusReport } from '../../client/index.js';
import { clientCommand, jsonOption, printJson, remotePath, withClient } from '../context.js';
import { createProgress } from '../progress.js';

const RECALL_POLL_MS = 1000;

const examples = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`;

export function registerTierCommands(program: Command): void {
  const tier = program
    .command('tier')
    .description('object tiering: policies that move cold files to S3-compatible tiers, pins, recall, status')
    .addHelpText(
      'after',
      `
A policy on a directory applies to everything below it (a file's own policy, or a nearer
directory's, wins); --never stops an inherited one. Where none is set, the cluster-wide policy
applies (to files under its --path-prefix). Pinned files and subtrees are never tiered.
Tiers are configured on the coordinators: --tier name=s3://bucket/prefix?endpoint=URL.
${examples([
  'strata tier set /archive --tier cold --cold-after 30d --min-size 1MiB',
  'strata tier set --cluster --tier cold --cold-after 90d --path-prefix /data',
  'strata tier set /archive/hot --never',
  'strata tier get /archive',
  'strata tier recall /archive/2023',
  'strata tier status',
])}`,
    );

  clientCommand(tier.command('set').description('set the tiering policy of a directory (inherited below it) or a file, or the cluster-wide policy'))
    .argument('[path]', 'remote directory or file (omit with --cluster)')
    .option('--tier <name>', 'the tier to move matching files to (as configured on the coordinators)')
    .option('--never', 'never tier files here, whatever is inherited from above')
    .option('--cold-after <duration>', 'only files neither read nor written for this long, e.g. 30d, 12h, 10m (default: any age)')
    .option('--min-size <size>', 'only files of at least this size, e.g. 1GiB (default: any size)')
    .option('--cluster', 'set the cluster-wide policy: applies where no directory or file policy does')
    .option('--path-prefix <path>', 'with --cluster: only files under this path (default: everywhere)')
    .addOption(jsonOption())
    .addHelpText(
      'after',
      examples([
        'strata tier set /archive --tier cold --cold-after 30d',
        'strata tier set /videos --tier cold --min-size 1GiB',
        'strata tier set /archive/current --never',
        'strata tier set --cluster --tier cold --cold-after 90d --path-prefix /data',
      ]),
    )
    .action(async (path: string | undefined, options) =>
      withClient(options, async (client) => {
        const policy = policyFromOptions(options);
        const cluster = !!options.cluster;
        if (cluster && path !== undefined && remotePath(path) !== '/') throw invalid('--cluster takes no path: limit the cluster-wide policy with --path-prefix');
        if (!cluster && path === undefined) throw invalid('missing path (or --cluster for the cluster-wide policy)');
        if (!cluster && options.pathPrefix !== undefined) throw invalid('--path-prefix is only for --cluster: set the policy on that directory instead');
        const target = cluster ? '' : remotePath(path!);
        const info = await client.tierSet(target, policy, { cluster });
        if (options.json) return printJson(info);
        const where = cluster ? 'cluster-wide policy' : `policy of ${info.path}`;
        console.log(`${where} set: ${describePolicy(policy)}`);
        if (!cluster) console.log(pathText(info));
        if (policy.tier) console.log('The leader moves matching chunks on its next pass (coordinator --tier-interval-ms); strata tier status shows the progress.');
      }),
    );

  clientCommand(tier.command('clear').description('remove the policy set on a path (or the cluster-wide one): inherited policies apply again'))
    .argument('[path]', 'remote directory or file (omit with --cluster)')
    .option('--cluster', 'remove the cluster-wide policy')
    .addOption(jsonOption())
    .addHelpText('after', examples(['strata tier clear /archive', 'strata tier clear --cluster']))
    .action(async (path: string | undefined, options) =>
      withClient(options, async (client) => {
        if (options.cluster && path !== undefined && remotePath(path) !== '/') throw invalid('--cluster takes no path');
        if (!options.cluster && path === undefined) throw invalid('missing path (or --cluster for the cluster-wide policy)');
        const info = await client.tierClear(options.cluster ? { cluster: true } : remotePath(path!));
        if (options.json) return printJson(info);
        console.log(options.cluster ? 'cluster-wide policy cleared' : `policy of ${info.path} cleared; now: ${policyText(info)}`);
      }),
    );

  clientCommand(tier.command('get').description('effective policy and pin of a path, and its chunks: local vs tiered'))
    .argument('<path>', 'remote file or directory')
    .addOption(jsonOption())
    .addHelpText('after', examples(['strata tier get /archive', 'strata tier get /archive/report.pdf --json']))
    .action(async (path: string, options) =>
      withClient(options, async (client) => {
        const info = await client.tierGet(remotePath(path));
        if (options.json) printJson(info);
        else console.log(pathText(info));
      }),
    );

  for (const pin of [true, false]) {
    clientCommand(
      tier
        .command(pin ? 'pin' : 'unpin')
        .description(pin ? 'keep a file or subtree local: never tiered, whatever the policy' : 'remove a pin: policies apply to the file or subtree again'),
    )
      .argument('<path>', 'remote file or directory')
      .addOption(jsonOption())
      .addHelpText('after', examples([`strata tier ${pin ? 'pin' : 'unpin'} /archive/current`]))
      .action(async (path: string, options) =>
        withClient(options, async (client) => {
          const info = await client.tierPin(remotePath(path), pin);
          if (options.json) return printJson(info);
          if (pin) console.log(`${info.path} pinned: its files stay local (tiered chunks come back with strata tier recall ${info.path})`);
          else if (info.pinned) console.log(`${info.path} unpinned, but still pinned by ${info.pinnedFrom}`);
          else console.log(`${info.path} unpinned: policies apply again (now: ${policyText(info)})`);
        }),
      );
  }

  clientCommand(tier.command('recall').description('bring a file or subtree back from tiers to local replicas, and pin it there'))
    .argument('<path>', 'remote file or directory')
    .option('--no-wait', 'ask and return; do not wait until every chunk is local')
    .option('--timeout <duration>', 'how long to wait, e.g. 10m, 1h', '10m')
    .addOption(jsonOption())
    .addHelpText('after', examples(['strata tier recall /archive/2023', 'strata tier recall /archive --no-wait', 'strata tier recall /big --timeout 2h']))
    .action(async (path: string, options) =>
      withClient(options, async (client) => {
        const timeoutMs = parseDuration(options.timeout, '--timeout');
        const target = remotePath(path);
        const reply = await client.tierRecall(target);
        let remaining = reply.chunksTiered;
        if (options.wait && remaining > 0) remaining = await waitForRecall(client, target, timeoutMs, !options.json);
        if (options.json) return printJson({ ...reply, chunksTieredAtRequest: reply.chunksTiered, chunksTiered: remaining });
        console.log(reply.message);
        if (options.wait && reply.chunksTiered > 0) console.log(`${target}: every chunk is local again`);
      }),
    );

  clientCommand(tier.command('status').description('configured tiers (chunks, bytes, state), local chunks, and the leader\'s tiering queue'))
    .addOption(jsonOption())
    .addHelpText('after', examples(['strata tier status', 'strata tier status --json']))
    .action(async (options) =>
      withClient(options, async (client) => {
        const status = await client.tierStatus();
        if (options.json) printJson(status);
        else console.log(statusText(status));
      }),
    );
}

function policyFromOptions(options: { tier?: string; never?: boolean; coldAfter?: string; minSize?: string; pathPrefix?: string }): TierPolicy {
  if (options.never && options.tier !== undefined) throw invalid('use either --tier NAME or --never, not both');
  if (!options.never && options.tier === undefined) throw invalid('missing --tier NAME (or --never)');
  if (options.never && (options.coldAfter !== undefined || options.minSize !== undefined || options.pathPrefix !== undefined)) {
    throw invalid('--never takes no conditions (--cold-after, --min-size, --path-prefix)');
  }
  if (options.tier === '') throw invalid('empty --tier: name a configured tier (or use --never)');
  const minSize = options.minSize === undefined ? 0 : parseSize(options.minSize, '--min-size');
  if (!Number.isSafeInteger(minSize) || minSize < 0) throw invalid(`invalid --min-size '${options.minSize}'`);
  const pathPrefix = options.pathPrefix === undefined ? '' : remotePath(options.pathPrefix);
  return {
    tier: options.never ? '' : options.tier!,
    coldAfterMs: options.coldAfter === undefined ? 0 : parseDuration(options.coldAfter, '--cold-after'),
    minSize,
    pathPrefix: pathPrefix === '/' ? '' : pathPrefix,
  };
}

/** Polls until no chunk under `path` is tiered; Timeout (exit 8) with one line when it takes too long. */
async function waitForRecall(client: Strata, path: string, timeoutMs: number, showProgress: boolean): Promise<number> {
  const first = await client.tierGet(path);
  const total = first.bytesTiered;
  const progress = createProgress(`recalling ${path}`, total || undefined, showProgress);
  const giveUpAt = Date.now() + timeoutMs;
  let info = first;
  try {
    while (info.chunksTiered > 0) {
      progress.update(Math.max(total - info.bytesTiered, 0));
      if (Date.now() >= giveUpAt) {
        throw new StrataError(
          'Timeout',
          `recall of ${path} not done after ${formatDuration(timeoutMs)}: ${info.chunksTiered} chunk(s) (${formatBytes(info.bytesTiered)}) still in tiers; ` +
            `the leader keeps going (watch: strata tier get ${path}, strata tier status)`,
        );
      }
      await new Promise((r) => setTimeout(r, RECALL_POLL_MS));
      info = await client.tierGet(path);
    }
    progress.update(total);
  } finally {
    progress.stop();
  }
  return info.chunksTiered;
}

export function describePolicy(p: TierPolicy): string {
  if (p.tier === '') return 'never tier';
  const parts = [`tier ${p.tier}`];
  if (p.coldAfterMs) parts.push(`cold after ${formatDuration(p.coldAfterMs)}`);
  if (p.minSize) parts.push(`min size ${formatBytes(p.minSize)}`);
  if (p.pathPrefix) parts.push(`files under ${p.pathPrefix}`);
  return parts.join(', ');
}

function policyText(info: TierPathInfo): string {
  return info.policy ? `${describePolicy(info.policy)} (from ${info.policyFrom})` : 'no policy (stays local)';
}

function pathText(info: TierPathInfo): string {
  return [
    `Path:    ${info.path}`,
    `Policy:  ${policyText(info)}`,
    `Pinned:  ${info.pinned ? `yes (by ${info.pinnedFrom})` : 'no'}`,
    `Files:   ${info.files}`,
    `Local:   ${info.chunksLocal} chunk(s), ${formatBytes(info.bytesLocal)}`,
    `Tiered:  ${info.chunksTiered} chunk(s), ${formatBytes(info.bytesTiered)}`,
  ].join('\n');
}

function statusText(s: TierStatusReport): string {
  const lines: string[] = [];
  if (s.tiers.length === 0) lines.push('Tiers:   none configured (start the coordinators with --tier name=s3://bucket/prefix?endpoint=URL)');
  else {
    lines.push('Tiers:');
    for (const t of s.tiers) {
      const where = t.bucket ? `s3://${t.bucket}/${t.prefix}${t.endpoint ? ` at ${t.endpoint}` : ''}` : '(unknown location)';
      lines.push(`  ${t.name.padEnd(12)} ${String(t.chunks).padStart(8)} chunk(s) ${formatBytes(t.bytes).padStart(10)}  ${t.state}  ${where}`);
      if (t.errors > 0) lines.push(`  ${''.padEnd(12)} ${t.errors} error(s); last: ${t.lastError}`);
    }
  }
  lines.push(`Local:   ${s.localChunks} chunk(s), ${formatBytes(s.localBytes)}`);
  lines.push(`Leader:  ${s.leader || '(none elected)'}`);
  lines.push(
    `Queue:   ${s.queued} to move, ${s.running} moving, ${s.recallQueued} to recall; since the leader took over: ` +
      `${s.moved} moved, ${s.recalled} recalled, ${s.failed} failed, ${s.objectsDeleted} objects deleted`,
  );
  if (s.events.length > 0) {
    lines.push('Recent events:');
    for (const e of s.events.slice(-10)) lines.push(`  ${new Date(e.atMs).toISOString().slice(11, 19)}  ${e.kind.padEnd(13)} ${e.message}`);
  }
  return lines.join('\n');
}
