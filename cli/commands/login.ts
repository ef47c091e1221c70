// `strata login` / `strata logout`: a token from a Keycloak realm for every later client command
// (and mount), stored 0600 under ~/.config/strata/ and refreshed before it expires
// (client/auth/). Secrets come from the environment or stdin, never from argv (ps shows argv).
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { invalid } from '../../common/errors.js';
import { loginStorePath, removeStoredLogin, writeStoredLogin } from '../../client/auth/login-store.js';

export function registerLoginCommands(program: Command): void {
  program
    .command('login')
    .description('get a token from a Keycloak realm (client credentials, or --username for the password grant) and keep it for later commands')
    .option('--issuer <url>', 'the realm: https://HOST/realms/NAME (or STRATA_OIDC_ISSUER)')
    .option('--client-id <id>', 'the realm client to log in through (or STRATA_CLIENT_ID)')
    .option('--client-secret-file <file>', "a confidential client's secret (or STRATA_CLIENT_SECRET); none = a public client")
    .option('--username <name>', 'log in as this user (password grant); without it, as the client\'s service account')
    .option('--password-stdin', 'read the password from standard input (or STRATA_PASSWORD)')
    .action(async (options) => {
      // The CLI is an edge: it reads its own environment (a role's config never does).
      const env = process.env;
      const issuer = options.issuer ?? env.STRATA_OIDC_ISSUER;
      const clientId = options.clientId ?? env.STRATA_CLIENT_ID;
      if (!issuer) throw invalid('strata login needs --issuer https://HOST/realms/NAME (or STRATA_OIDC_ISSUER)');
      if (!clientId) throw invalid('strata login needs --client-id (or STRATA_CLIENT_ID)');
      const clientSecret = options.clientSecretFile ? readSecret(options.clientSecretFile) : env.STRATA_CLIENT_SECRET || undefined;
      let password: string | undefined;
      if (options.username !== undefined) {
        password = options.passwordStdin ? readFileSync(0, 'utf8').replace(/\r?\n$/, '') : env.STRATA_PASSWORD;
        if (password === undefined) throw invalid('strata login --username needs the password on stdin (--password-stdin) or in STRATA_PASSWORD');
      } else if (!clientSecret) {
        throw invalid('strata login without --username is the client-credentials grant: give the client secret (--client-secret-file or STRATA_CLIENT_SECRET)');
      }
      const { login } = await import('../../client/auth/realm-login.js');
      const stored = await login({ issuer, clientId, clientSecret, username: options.username, password });
      const file = loginStorePath(env);
      writeStoredLogin(file, stored);
      const tenant = stored.tenant ? ` (tenant ${stored.tenant})` : '';
      process.stdout.write(`logged in as ${stored.subject}${tenant} until ${new Date(stored.expiresAtMs).toISOString()}${stored.refreshToken ? ' (refreshed as needed)' : ''}; token kept in ${file}\n`);
    });

  program
    .command('logout')
    .description('forget the token strata login kept')
    .action(() => {
      const file = loginStorePath(process.env);
      process.stdout.write(removeStoredLogin(file) ? `removed ${file}\n` : 'not logged in\n');
    });
}

function readSecret(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw invalid(`cannot read --client-secret-file ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}
