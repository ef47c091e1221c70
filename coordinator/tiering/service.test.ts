// The Tier RPC handlers in process, on the embedded engine: what needs no cluster to show.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { TierTarget } from '../../common/object-tier.js';
import { tempDir, type TempDir } from '../../test/harness/ports.js';
import { SoleLeadership } from '../leader.js';
import type { Kv } from '../meta/kv.js';
import * as k from '../meta/keys.js';
import { openKv } from '../meta/open-kv.js';
import { MetaStore } from '../meta/store.js';
import { ROOT_INO } from '../meta/types.js';
import { TierStatus, publishTierStatus } from './status.js';
import { tieringService, type TieringServiceDeps } from './service.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- handlers are called as gRPC would */
type Handlers = ReturnType<typeof tieringService>;
const call = (handlers: Handlers, method: keyof Handlers, request: unknown): Promise<any> =>
  new Promise((resolve, reject) => (handlers[method] as any)({ request }, (err: any, reply: any) => (err ? reject(err) : resolve(reply))));

const target = (name: string): TierTarget => ({
  name, endpoint: 'http://127.0.0.1:9', region: 'us-east-1', bucket: `b-${name}`, prefix: '', forcePathStyle: true,
  accessKeyId: 'AKIDSECRETISH', secretAccessKey: 'VERYSECRET', sessionToken: 'TOKENSECRET',
});

describe('tiering service', () => {
  let dir: TempDir;
  let kv: Kv;
  let meta: MetaStore;
  let fileIno: number;
  const leadership = new SoleLeadership('coord-a');
  let pokes = 0;
  const deps = (targets: TierTarget[], isLeading = false): TieringServiceDeps => ({
    kv, meta, leadership, targets,
    job: { isLeading, snapshot: () => new TierStatus().snapshot('coord-a'), poke: () => void pokes++ },
  });

  beforeAll(async () => {
    dir = await tempDir('tier-service');
    kv = await openKv(dir.path + '/meta');
    meta = new MetaStore(kv);
    await meta.init();
    fileIno = (await meta.create(ROOT_INO, 'f', { mode: 0o644, replication: 1, chunkSize: 65536, exclusive: true, truncate: false })).ino;
    // One local chunk, one in the configured tier 'cold', one in a tier no coordinator knows now.
    await meta.commitChunk(fileIno, { index: 0, chunkId: 'c0', length: 100, crc32c: 0, nodes: ['dn1'] });
    await meta.commitChunk(fileIno, { index: 1, chunkId: 'c1', length: 200, crc32c: 0, nodes: ['dn1'] });
    await meta.commitChunk(fileIno, { index: 2, chunkId: 'c2', length: 300, crc32c: 0, nodes: ['dn1'] });
    const tiered = (index: number, tier: string, storedBytes: number) =>
      kv.txn({ compares: [], ops: [{ type: 'put', key: k.chunkKey(fileIno, index), value: k.encodeChunk({ index, chunkId: `c${index}`, length: 0, crc32c: 0, nodes: [], tier: { tier, key: `chunks/c${index}`, storedBytes, crc32c: 0 } }) }] });
    await tiered(1, 'cold', 150);
    await tiered(2, 'gone', 250);
  });
  afterAll(async () => {
    await kv?.close();
    await dir?.cleanup();
  });

  test('with no tier configured, an unknown tier says how to configure one; never is still allowed', async () => {
    const handlers = tieringService(deps([]));
    const err = await call(handlers, 'TierSet', { path: '/f', policy: { tier: 'cold' } }).catch((e) => e);
    expect(err.details ?? err.message).toMatch(/no object tiers are configured; start the coordinators with --tier name=s3:\/\/bucket\/prefix\?endpoint=URL/);
    const reply = await call(handlers, 'TierSet', { path: '/f', policy: { tier: '' } });
    expect(reply).toMatchObject({ policy: { tier: '' }, policyFrom: '/f', files: 1, chunksLocal: 1, chunksTiered: 2 });
    await call(handlers, 'TierSet', { path: '/f', clear: true });
  });

  test('bad numbers, a path prefix off the cluster policy, a cluster policy with a path: Invalid', async () => {
    const handlers = tieringService(deps([target('cold')]));
    for (const request of [
      { path: '/f', policy: { tier: 'cold', coldAfterMs: -1 } },
      { path: '/f', policy: { tier: 'cold', minSize: Number.NaN } },
      { path: '/f', policy: { tier: 'cold', pathPrefix: '/x' } },
      { path: '/f' },
      { path: 'f', policy: { tier: 'cold' } },
      { path: '/f', cluster: true, policy: { tier: 'cold' } },
      { cluster: true, policy: { tier: 'cold', pathPrefix: 'relative' } },
    ]) {
      const err = await call(handlers, 'TierSet', request).catch((e) => e);
      expect(err?.code, JSON.stringify(request)).toBe(3); // INVALID_ARGUMENT
    }
  });

  test('recall pins, records the request, pokes the job, and counts tiered chunks', async () => {
    const handlers = tieringService(deps([target('cold')]));
    const before = pokes;
    const reply = await call(handlers, 'TierRecall', { path: '/f' });
    expect(reply.chunksTiered).toBe(2);
    expect(reply.message).toMatch(/^2 chunk\(s\) of \/f are coming back.*strata tier unpin \/f/);
    expect(pokes).toBe(before + 1);
    const [pin, recall] = await kv.getMany([k.pinKey(fileIno), k.recallKey(fileIno)]);
    expect(pin).toBeDefined();
    expect(JSON.parse(recall!.value.toString())).toMatchObject({ path: '/f' });
  });

  test('status: per tier sums of object bytes, unknown tiers shown, no credentials; the job status only when it is the leader\'s', async () => {
    const handlers = tieringService(deps([target('cold'), target('warm')]));
    let status = await call(handlers, 'TierStatus', {});
    expect(status.tiers).toEqual([
      { name: 'cold', endpoint: 'http://127.0.0.1:9', bucket: 'b-cold', prefix: '', chunks: 1, bytes: 150, state: 'ok', errors: 0, lastError: '' },
      { name: 'warm', endpoint: 'http://127.0.0.1:9', bucket: 'b-warm', prefix: '', chunks: 0, bytes: 0, state: 'ok', errors: 0, lastError: '' },
      { name: 'gone', endpoint: '', bucket: '', prefix: '', chunks: 1, bytes: 250, state: 'not configured on this coordinator', errors: 0, lastError: '' },
    ]);
    expect(status).toMatchObject({ localChunks: 1, localBytes: 100, queued: 0, leader: 'coord-a' });
    expect(JSON.stringify(status)).not.toMatch(/SECRET/);

    const job = new TierStatus();
    job.queued = 7;
    job.target('cold').state = 'unreachable: refused; retrying in 8s';
    job.target('cold').errors = 3;
    await publishTierStatus(kv, { ...job.snapshot('someone-else') }, []);
    status = await call(handlers, 'TierStatus', {});
    expect(status.queued).toBe(0); // a former leader's status says nothing now
    await publishTierStatus(kv, job.snapshot('coord-a'), []);
    status = await call(handlers, 'TierStatus', {});
    expect(status.queued).toBe(7);
    expect(status.tiers[0]).toMatchObject({ state: 'unreachable: refused; retrying in 8s', errors: 3 });
  });
});
