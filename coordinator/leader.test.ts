import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createLogger } from '../common/log.js';
import { startEtcd, type EtcdMember } from '../test/harness/etcd.js';
import { waitFor } from '../test/harness/wait.js';
import { EtcdLeadership, SoleLeadership } from './leader.js';
import type { Kv } from './meta/kv.js';
import { etcdEngineOf, openKv } from './meta/open-kv.js';

const log = createLogger('test', 'silent');

describe('leadership', () => {
  let etcd: EtcdMember;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  test('etcd: one of two coordinators leads; when it goes, the other takes over; the old fence no longer holds', async () => {
    const kvs: Kv[] = [await openKv(etcd.url), await openKv(etcd.url)];
    const leaders = kvs.map((kv, i) => new EtcdLeadership(`c${i}`, etcdEngineOf(kv)!.etcdClient, kv, { ttlMs: 1000, log }));
    const changes: string[] = [];
    leaders.forEach((l) => l.onChange((leading) => changes.push(`${l.selfId}:${leading}`)));
    try {
      await waitFor('a leader', async () => leaders.some((l) => l.isLeader()));
      const [first, second] = leaders[0]!.isLeader() ? leaders : [leaders[1]!, leaders[0]!];
      expect(second!.isLeader()).toBe(false);
      expect(await second!.currentLeader()).toBe(first!.selfId);
      const put = (fence: ReturnType<typeof first.fence>) =>
        kvs[0]!.txn({ compares: fence, ops: [{ type: 'put', key: 'x/fenced', value: Buffer.from('1') }] });
      const oldFence = first!.fence();
      expect(await put(oldFence)).toBe(true);
      expect(await put(second!.fence())).toBe(false); // not leading: its writes never land
      await first!.close();
      await waitFor('the second leads', async () => second!.isLeader());
      expect(await second!.currentLeader()).toBe(second!.selfId);
      expect(await put(oldFence)).toBe(false); // a deposed leader's writes fail
      expect(await put(second!.fence())).toBe(true);
      expect(changes).toEqual([`${first!.selfId}:true`, `${first!.selfId}:false`, `${second!.selfId}:true`]);
    } finally {
      for (const l of leaders) await l.close();
      for (const kv of kvs) await kv.close();
    }
  });

  test('etcd: jobs that subscribe after the election was won are told they lead (they once never ran)', async () => {
    const kv = await openKv(etcd.url);
    const leader = new EtcdLeadership('late', etcdEngineOf(kv)!.etcdClient, kv, { ttlMs: 1000, log });
    try {
      await waitFor('elected', async () => leader.isLeader());
      const seen: boolean[] = [];
      leader.onChange((leading) => seen.push(leading));
      await waitFor('told', async () => seen.length > 0, 10_000);
      expect(seen).toEqual([true]);
      await leader.close();
      expect(seen).toEqual([true, false]);
    } finally {
      await leader.close();
      await kv.close();
    }
  });

  test('embedded: the single coordinator leads, with nothing to fence', async () => {
    const sole = new SoleLeadership('only');
    const seen: boolean[] = [];
    sole.onChange((leading) => seen.push(leading));
    await waitFor('told', async () => seen.length > 0);
    expect(sole.isLeader()).toBe(true);
    expect(sole.fence()).toEqual([]);
    expect(await sole.currentLeader()).toBe('only');
    await sole.close();
    expect(seen).toEqual([true, false]);
  });
});
