// `strata login` / `strata logout`: a token from a Keycloak realm for every later client command
// (and mount), stored 0600 under ~/.config/strata/ and refreshed before it expires
// (client/auth/). Three grants: client credentials (a service account), the password grant
// (--username) and the device grant (--device: approve in a browser anywhere). Secrets come from
// a file, the environment, stdin or a prompt that does not echo; never from argv (ps shows argv)
// and never into a log.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { invalid } from '../../common/errors.js';
import { loginStorePath, removeStoredLogin, writeStoredLogin } from '../../client/auth/login-store.js';
import type { StoredLogin } from '../../client/auth/realm-login.js';
import { promptSecret } from '../secret-prompt.js';

const PASSWORD_SOURCES = '--password-file FILE, --password-stdin or STRATA_PASSWORD';

export function registerLoginCommands(program: Command): void {
  program
    .command('login')
    .description('get a token from a Keycloak realm and keep it for later commands: --device (approve in a browser), --username (password grant), or neither (client credentials)')
    .option('--issuer <url>', 'the realm: https://HOST/realms/NAME (or STRATA_OIDC_ISSUER)')
    .option('--client-id <id>', 'the realm client to log in through (or STRATA_CLIENT_ID)')
    .option('--client-secret-file <file>', "a confidential client's secret (or STRATA_CLIENT_SECRET); none = a public client")
    .option('--device', 'device grant: prints a URL and a code to approve in any browser, then waits for it')
    .option('--username <name>', 'log in as this user (password grant); without it or --device, as the client\'s service account')
    .option('--password-file <file>', 'read the password from this file (else --password-stdin, STRATA_PASSWORD, or a prompt)')
    .option('--password-stdin', 'read the password from standard input (or STRATA_PASSWORD)')
    .action(async (options) => {
      // The CLI is an edge: it reads its own environment (a role's config never does).
      const env = process.env;
      const issuer = options.issuer ?? env.STRATA_OIDC_ISSUER;
      const clientId = options.clientId ?? env.STRATA_CLIENT_ID;
      if (!issuer) throw invalid('strata login needs --issuer https://HOST/realms/NAME (or STRATA_OIDC_ISSUER)');
      if (!clientId) throw invalid('strata login needs --client-id (or STRATA_CLIENT_ID)');
      const clientSecret = options.clientSecretFile ? readSecret(options.clientSecretFile, '--client-secret-file').trim() : env.STRATA_CLIENT_SECRET || undefined;
      let stored: StoredLogin;
      if (options.device) {
        if (options.username !== undefined) throw invalid('strata login: --device and --username are two different grants; give one');
        const { deviceLogin } = await import('../../client/auth/device-login.js');
        stored = await deviceLogin({ issuer, clientId, clientSecret }, (prompt) => {
          const complete = prompt.verificationUriComplete ? `\n  (or open ${prompt.verificationUriComplete})` : '';
          process.stderr.write(`To log in, open ${prompt.verificationUri} and enter the code ${prompt.userCode}${complete}\nWaiting for approval (the code is good for ${prompt.expiresInS} s)...\n`);
        });
      } else {
        let password: string | undefined;
        if (options.username !== undefined) password = await readPassword(options, env);
        else if (!clientSecret) {
          throw invalid('strata login without --username or --device is the client-credentials grant: give the client secret (--client-secret-file or STRATA_CLIENT_SECRET)');
        }
        const { login } = await import('../../client/auth/realm-login.js');
        stored = await login({ issuer, clientId, clientSecret, username: options.username, password });
      }
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

function readSecret(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw invalid(`cannot read ${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}

/** The password from the first of: --password-file, --password-stdin, STRATA_PASSWORD, a prompt at the terminal. */
async function readPassword(options: { passwordFile?: string; passwordStdin?: boolean; username: string }, env: NodeJS.ProcessEnv): Promise<string> {
  if (options.passwordFile) return readSecret(options.passwordFile, '--password-file');
  if (options.passwordStdin) return readFileSync(0, 'utf8').replace(/\r?\n$/, '');
  if (env.STRATA_PASSWORD !== undefined) return env.STRATA_PASSWORD;
  return promptSecret(`Password for ${options.username}: `, `strata login --username needs the password from ${PASSWORD_SOURCES}`);
}
