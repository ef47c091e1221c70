// Loopback ports and scratch directories for tests and benchmarks that start real processes.

import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Ports come from below Linux's ephemeral range (32768-60999). A port the kernel picks (an
// outgoing connection's source port, a server on port 0 such as a data node's byte path) can
// take an ephemeral port between our check and the server's bind, and the server then exits
// with EADDRINUSE: a cluster that never starts. Each vitest worker scans its own slice (two test
// files run at once), from a random point, and never hands out a port twice.
const PORT_RANGE_START = 20_000;
const PORT_RANGE_END = 32_700;
const PORT_SLICES = 8;
const SLICE_SIZE = Math.floor((PORT_RANGE_END - PORT_RANGE_START) / PORT_SLICES);
const slice = Number(process.env.VITEST_POOL_ID ?? 0) % PORT_SLICES;
const sliceStart = PORT_RANGE_START + slice * SLICE_SIZE;
let nextOffset = Math.floor(Math.random() * SLICE_SIZE);
const portsHandedOut = new Set<number>();

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A loopback TCP port that was free a moment ago, outside the ephemeral range, and that this process has not handed out before. */
export async function freePort(): Promise<number> {
  for (let tried = 0; tried < SLICE_SIZE; tried++) {
    const port = sliceStart + (nextOffset++ % SLICE_SIZE);
    if (portsHandedOut.has(port)) continue;
    if (await isFree(port)) {
      portsHandedOut.add(port);
      return port;
    }
  }
  throw new Error(`freePort: no free loopback port in ${sliceStart}..${sliceStart + SLICE_SIZE - 1}`);
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
