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

/** TLS to the cluster (common/tls.ts): the CA verifies the servers; a client certificate is optional. */
export const tlsOptions = () => [
  new Option('--tls-ca <file>', 'PEM CA that signed the cluster\'s servers: turns TLS on (`strata certs init`)').env('STRATA_TLS_CA'),
  new Option('--tls-cert <file>', 'PEM client certificate (optional)').env('STRATA_TLS_CERT'),
  new Option('--tls-key <file>', 'PEM key of --tls-cert').env('STRATA_TLS_KEY'),
];

/** Adds the connection options to a client command. */
export function clientCommand(command: Command): Command {
  command.addOption(coordinatorOption()).addOption(tokenFileOption());
  for (const option of tlsOptions()) command.addOption(option);
  return command;
}

/** Where a token comes from for coordinators with auth on: this file, else STRATA_TOKEN, else `strata login`'s. */
export const tokenFileOption = () => new Option('--token-file <file>', 'a file holding an OIDC access token (read again when it nears expiry)');

export interface ClientOptions {
  coordinator: string;
  tokenFile?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

export function connect(options: ClientOptions): Strata {
  // A CLI user waits a few seconds for a failover, not minutes. The CLI is an edge: it reads its
  // own environment for the token (STRATA_TOKEN), as commander does for STRATA_COORDINATOR.
  const tokenProvider = tokenProviderFrom({ tokenFile: options.tokenFile, env: process.env });
  const tls = { ca: options.tlsCa, cert: options.tlsCert, key: options.tlsKey };
  return Strata.connect({ coordinators: options.coordinator, failoverTimeoutMs: 5000, tokenProvider, tls });
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
