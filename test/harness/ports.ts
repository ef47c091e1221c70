// Loopback ports and scratch directories for tests and benchmarks that start real processes.

import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The kernel may hand the same ephemeral port back once it is released; remembering what this
// process already gave out keeps two servers started side by side from colliding.
const portsHandedOut = new Set<number>();
const FREE_PORT_ATTEMPTS_MAX = 50;

function listenOnce(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

/** A loopback TCP port that was free a moment ago and that this process has not handed out before. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < FREE_PORT_ATTEMPTS_MAX; attempt++) {
    const port = await listenOnce();
    if (port > 0 && !portsHandedOut.has(port)) {
      portsHandedOut.add(port);
      return port;
    }
  }
  throw new Error(`freePort: no new loopback port after ${FREE_PORT_ATTEMPTS_MAX} attempts`);
}

export interface TempDir {
  path: string;
  /** Removes the directory and everything in it; safe to call twice. */
  cleanup(): Promise<void>;
}

/** A fresh directory under os.tmpdir(), named `strata-<prefix>-XXXXXX`. */
export async function tempDir(prefix: string): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), `strata-${prefix}-`));
  return {
    path,
    // STRATA_TEST_KEEP_DIRS=1 keeps the logs and data of a run to read after it.
    cleanup: async () => {
      if (process.env.STRATA_TEST_KEEP_DIRS === '1') return console.log(`kept ${path}`);
      await rm(path, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}
