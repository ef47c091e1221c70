// What every client command shares: the connection from --coordinator / STRATA_COORDINATOR,
// remote path normalisation, and output helpers.
import { Option, type Command } from 'commander';
import { Strata } from '../client/index.js';

export const coordinatorOption = () =>
  new Option('-c, --coordinator <host:port,...>', 'coordinator address(es), comma-separated; the client fails over between them')
    .env('STRATA_COORDINATOR')
    .default('127.0.0.1:7400');

export const jsonOption = () => new Option('--json', 'print machine-readable JSON');

/** Adds the connection option to a client command. */
export function clientCommand(command: Command): Command {
  return command.addOption(coordinatorOption());
}

export function connect(options: { coordinator: string }): Strata {
  // A CLI user waits a few seconds for a failover, not minutes.
  return Strata.connect({ coordinators: options.coordinator, failoverTimeoutMs: 5000 });
}

/** Remote paths are absolute; a relative one is taken from the root. */
export function remotePath(path: string): string {
  return path.startsWith('/') ? path : '/' + path;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export async function withClient<T>(options: { coordinator: string }, fn: (client: Strata) => Promise<T>): Promise<T> {
  const client = connect(options);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}
