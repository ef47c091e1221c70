// Master key rotation on a data node: one page of its chunks re-wrapped under its writing key
// (LocalChunkStore.rewrap; common/chunk-rewrap.ts). Paged so a caller shows progress, stops when
// it likes and resumes where it left off; a chunk that cannot be re-wrapped is counted, named in
// the first few failures, and left exactly as it was.
import { asStrataError } from '../common/errors.js';
import type { RewrapOutcome, RewrapPage } from '../common/chunk-rewrap.js';
import type { ChunkStore } from './chunk-store.js';

export type { RewrapPage };

const DEFAULT_PAGE = 256;
const MAX_PAGE = 4096;
const MAX_FAILURES_NAMED = 10;

export async function rewrapPage(store: Pick<ChunkStore, 'listChunks' | 'rewrap' | 'keys'>, afterChunkId: string, limit: number): Promise<RewrapPage> {
  const pageSize = Math.min(MAX_PAGE, limit > 0 ? limit : DEFAULT_PAGE);
  const listed = await store.listChunks(afterChunkId || undefined, pageSize);
  const page: RewrapPage = { keyId: store.keys?.current.keyId ?? '', checked: 0, rewrapped: 0, resealed: 0, current: 0, plain: 0, failed: 0, failures: [], nextAfter: afterChunkId, done: listed.length < pageSize };
  for (const { chunkId } of listed) {
    page.checked++;
    page.nextAfter = chunkId;
    let outcome: RewrapOutcome;
    try {
      outcome = await store.rewrap(chunkId);
    } catch (err) {
      const error = asStrataError(err);
      if (error.kind === 'NotFound') continue; // deleted meanwhile: nothing left to re-wrap
      page.failed++;
      if (page.failures.length < MAX_FAILURES_NAMED) page.failures.push(error.message);
      continue;
    }
    page[outcome]++;
  }
  return page;
}
