// Chunk grants as a client gets them (common/chunk-grants.ts), for tests that call data nodes
// directly: a read grant comes with a file's chunk locations (GetChunks).
import { CoordinatorClient } from '../../client/coordinator-client.js';
import type { Strata } from '../../client/index.js';
import type { TestCluster } from './cluster.js';

/** The read grant for chunk `index` of the file at `path` (auth off; plain text). */
export async function readGrantFor(cluster: TestCluster, client: Strata, path: string, index: number): Promise<string> {
  const coordinator = new CoordinatorClient({ addresses: cluster.coordinatorList.split(','), callTimeoutMs: 5000, failoverTimeoutMs: 10_000, session: false });
  try {
    const { ino } = await client.stat(path);
    const reply = await coordinator.call<{ grant: string }>('GetChunks', { ino, fromIndex: index, count: 1 });
    return reply.grant;
  } finally {
    coordinator.close();
  }
}
