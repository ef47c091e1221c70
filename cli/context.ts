// What every client command shares: the connection from --coordinator / STRATA_COORDINATOR,
// remote path normalisation, and output helpers.
import { Option, type Command } from 'commander';
import { Strata } from '../client/index.js';
import { tokenProviderFrom } from '../client/auth/token-sources.js';

export const coordinatorOption = () =>
  new Option('-c, --coordinator <host:port,...>', 'coordinator address(es), comma-separated; the client fails over between them')
    .env('STRATA_COORDINATOR')
    .default('127.0.0.1:7400');

export const jsonOption = () => new Option('--json', 'print machine-readable JSON');

/** Adds the connection option to a client command. */
export function clientCommand(command: Command): Command {
  return command.addOption(coordinatorOption()).addOption(tokenFileOption());
}

/** Where a token comes from for coordinators with auth on: this file, else STRATA_TOKEN, else `strata login`'s. */
export const tokenFileOption = () => new Option('--token-file <file>', 'a file holding an OIDC access token (read again when it nears expiry)');

export interface ClientOptions {
  coordinator: string;
  tokenFile?: string;
}

export function connect(options: ClientOptions): Strata {
  // A CLI user waits a few seconds for a failover, not minutes. The CLI is an edge: it reads its
  // own environment for the token (STRATA_TOKEN), as commander does for STRATA_COORDINATOR.
  const tokenProvider = tokenProviderFrom({ tokenFile: options.tokenFile, env: process.env });
  return Strata.connect({ coordinators: options.coordinator, failoverTimeoutMs: 5000, tokenProvider });
}

/** Remote paths are absolute; a relative one is taken from the root. */
export function remotePath(path: string): string {
  return path.startsWith('/') ? path : '/' + path;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export async function withClient<T>(options: ClientOptions, fn: (client: Strata) => Promise<T>): Promise<T> {
  const client = connect(options);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}
