// strata keys rotate-master | rotate-grants: the key rotations an admin runs (admin role when auth is on).
import type { Command } from 'commander';
import { StrataError, invalid } from '../../common/errors.js';
import type { RewrapPage } from '../../client/index.js';
import { clientCommand, jsonOption, printJson, withClient } from '../context.js';

type NodeTotals = Omit<RewrapPage, 'nextAfter' | 'done'> & { nodeId: string; done: boolean };

export function registerKeysCommands(program: Command): void {
  const keys = program.command('keys').description('key rotation: master keys (encryption at rest) and chunk grant keys');
  clientCommand(
    keys
      .command('rotate-master')
      .description(
        "re-wrap every encrypted chunk's data key under its node's newest master key (only the chunk's head changes). " +
          'First append the new key to every data node\'s --encrypt-key-file and send each a SIGHUP; after this, the old key can leave the files ' +
          '(keep it while tier objects or exports made under it exist)',
      ),
  )
    .option('--node <id>', 'only this data node (default: every live one)')
    .option('--batch <n>', 'chunks per request', '256')
    .addOption(jsonOption())
    .action(async (options) =>
      withClient(options, async (client) => {
        const batch = Number(options.batch);
        if (!Number.isInteger(batch) || batch < 1 || batch > 4096) throw invalid(`invalid --batch '${options.batch}': a whole number 1..4096`);
        const known = await client.nodes();
        const chosen = options.node ? known.filter((n) => n.nodeId === options.node) : known;
        if (options.node && chosen.length === 0) throw new StrataError('NotFound', `no data node '${options.node}' (strata nodes lists them)`);
        const results: NodeTotals[] = [];
        const skipped: { nodeId: string; reason: string }[] = [];
        for (const node of chosen) {
          if (node.state === 'dead') {
            skipped.push({ nodeId: node.nodeId, reason: 'not live' });
            continue;
          }
          const totals: NodeTotals = { nodeId: node.nodeId, keyId: '', checked: 0, rewrapped: 0, resealed: 0, current: 0, plain: 0, failed: 0, failures: [], done: false };
          let after = '';
          try {
            for (;;) {
              const page = await client.rewrapMasterKeys(node.nodeId, after, batch);
              totals.keyId = page.keyId;
              for (const field of ['checked', 'rewrapped', 'resealed', 'current', 'plain', 'failed'] as const) totals[field] += page[field];
              totals.failures.push(...page.failures.slice(0, Math.max(0, 10 - totals.failures.length)));
              after = page.nextAfter;
              // Progress on stderr, also with --json (its report is stdout's).
              process.stderr.write(`${node.nodeId}: ${totals.checked} chunks checked, ${totals.rewrapped + totals.resealed} re-wrapped\n`);
              if (page.done) break;
            }
            totals.done = true;
          } catch (err) {
            // The caller's own problem (no admin role, bad input) is the command's error, not a node's.
            const kind = (err as StrataError).kind;
            if (kind === 'PermissionDenied' || kind === 'Unauthenticated' || kind === 'NotPermitted' || kind === 'Invalid') throw err;
            skipped.push({ nodeId: node.nodeId, reason: (err as Error).message });
          }
          results.push(totals);
        }
        const failed = results.reduce((sum, r) => sum + r.failed, 0);
        const complete = skipped.length === 0 && failed === 0;
        if (options.json) printJson({ complete, nodes: results, skipped });
        else {
          for (const r of results) {
            console.log(`${r.nodeId}: ${r.checked} chunks: ${r.rewrapped} re-wrapped, ${r.resealed} sealed again (format 2), ${r.current} already under ${r.keyId || '(no key)'}, ${r.plain} plain, ${r.failed} failed`);
            for (const why of r.failures) console.log(`  ${why}`);
          }
          for (const s of skipped) console.log(`${s.nodeId}: skipped: ${s.reason}`);
          console.log(
            complete
              ? "done: every encrypted chunk is under its node's newest master key; older keys can leave the key files (keep them while tier objects or exports made under them exist)"
              : 'not done: run it again once the skipped nodes are live and the failures are dealt with; keep the old keys until then',
          );
        }
        if (!complete) process.exitCode = 8;
      }),
    );

  clientCommand(
    keys
      .command('rotate-grants')
      .description('add a chunk grant signing key: it signs once every coordinator and data node knows it; grants signed before stay valid until they expire, then the old key is dropped'),
  )
    .option('--activate-after-ms <ms>', 'sign with the new key from this long on (default: 30 s and 3 heartbeats, so every coordinator re-read the keys)')
    .addOption(jsonOption())
    .action(async (options) =>
      withClient(options, async (client) => {
        const activateAfterMs = options.activateAfterMs === undefined ? 0 : Number(options.activateAfterMs);
        if (!Number.isSafeInteger(activateAfterMs) || activateAfterMs < 1 && options.activateAfterMs !== undefined || activateAfterMs > 86_400_000) {
          throw invalid(`invalid --activate-after-ms '${options.activateAfterMs}': a whole number of ms, 1..86400000`);
        }
        const rotated = await client.rotateGrantKeys(activateAfterMs);
        if (options.json) return printJson(rotated);
        console.log(`grant key ${rotated.keyId} added: it signs from ${new Date(Number(rotated.activeFromMs)).toISOString()}; keys published: ${rotated.keyIds.join(', ')}`);
      }),
    );
}
