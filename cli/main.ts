// The one binary: `strata <role|command>`. Parses, dispatches, and maps every error to one
// line on stderr and an exit code (cli/exit-codes.ts) — never a stack trace for a mistake.
import { Command, CommanderError } from 'commander';
import { asStrataError } from '../common/errors.js';
import { registerBackupCommands } from './commands/backup.js';
import { registerClusterInfoCommands } from './commands/cluster-info.js';
import { registerCertsCommands } from './commands/certs.js';
import { registerClusterUpCommand } from './commands/cluster-up.js';
import { registerCsiCommand } from './commands/csi.js';
import { registerHealingCommands } from './commands/healing.js';
import { registerKeysCommands } from './commands/keys.js';
import { registerLoginCommands } from './commands/login.js';
import { registerNamespaceCommands } from './commands/namespace.js';
import { registerRoleCommands } from './commands/roles.js';
import { registerTierCommands } from './commands/tier.js';
import { registerQuotaCommands } from './commands/quota.js';
import { registerTransferCommands } from './commands/transfer.js';
import { EXIT_CODES, EXIT_CODES_HELP } from './exit-codes.js';

const program = new Command('strata')
  .description('strata: a distributed filesystem. Start a local cluster with `strata cluster up`.')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .addHelpText('after', `\nEnvironment:\n  STRATA_COORDINATOR  coordinator address(es) for client commands (comma-separated)\n  STRATA_TOKEN        an OIDC access token for coordinators with auth on (else --token-file, else strata login's)\n${EXIT_CODES_HELP}`)
  .exitOverride();

registerClusterUpCommand(program);
registerCertsCommands(program);
registerRoleCommands(program);
registerTransferCommands(program);
registerNamespaceCommands(program);
registerClusterInfoCommands(program);
registerHealingCommands(program);
registerKeysCommands(program);
registerTierCommands(program);
registerQuotaCommands(program);
registerBackupCommands(program);
registerLoginCommands(program);
registerCsiCommand(program);
(await import('./commands/mount.js')).registerMountCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Commander already printed its message (or the help/version text).
    process.exitCode = err.exitCode === 0 ? 0 : EXIT_CODES.Invalid;
  } else {
    const error = asStrataError(err);
    process.stderr.write(`strata: ${error.message}\n`);
    if (error.kind === 'Internal' && process.env.STRATA_DEBUG) process.stderr.write(`${(err as Error)?.stack}\n`);
    process.exitCode = EXIT_CODES[error.kind];
  }
}

