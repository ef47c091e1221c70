// The namespace's changes, made through MetaStore over LeaseKv, are held until lease holders ack.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, type TempDir } from '../test/harness/ports.js';
import { LeaseKv, asWriter, invalidationsOf } from './lease-kv.js';
import { LeaseTable, type LeasePush } from './leases.js';
import { LevelKv } from './meta/level-kv.js';
import { MetaStore } from './meta/store.js';
import { ROOT_INO } from './meta/types.js';

describe('invalidationsOf', () => {
  it('maps entry, inode and stamp keys; ignores the rest', () => {
    const put = (key: string) => ({ type: 'put' as const, key, value: Buffer.alloc(0) });
    expect(
      invalidationsOf([put('d/12/a/b'), put('i/7'), put('t/12'), put('c/7/000000000001'), put('x/ino'), { type: 'delete', key: 'd/1/x' }]),
    ).toEqual([{ ino: 12, name: 'a/b' }, { ino: 7 }, { ino: 12 }, { ino: 1, name: 'x' }]);
  });
});

describe('LeaseKv under MetaStore (embedded engine)', () => {
  let dir: TempDir;
  let kv: LevelKv;
  let meta: MetaStore;
  const table = new LeaseTable({ ttlMs: 60_000 });

  beforeAll(async () => {
    dir = await tempDir('lease-kv');
    kv = await LevelKv.open(dir.path + '/meta', { syncWrites: false });
    meta = new MetaStore(new LeaseKv(kv, (events, _revision, writer) => table.invalidate(events, writer)));
    await meta.init();
  });
  afterAll(async () => {
    table.close();
    await kv.close();
    await dir.cleanup();
  });

  it('a mkdir in a leased directory returns only after the holder acked; the holder was told which name', async () => {
    const pushes: LeasePush[] = [];
    const holder = table.openSession('holder', (push) => pushes.push(push));
    const parent = await meta.mkdir(ROOT_INO, 'p1', 0o755);
    holder.begin([{ kind: 'dir', ino: parent.ino }]).grant();
    let done = false;
    const change = meta.mkdir(parent.ino, 'child', 0o755).then(() => (done = true));
    while (pushes.length === 0) await new Promise((r) => setTimeout(r, 5));
    expect(pushes[0]!.events).toContainEqual({ ino: parent.ino, name: 'child' });
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    holder.ack(pushes[0]!.pushId);
    await change;
    holder.close();
  });

  it("the writer's own leases do not hold its change up", async () => {
    const pushes: LeasePush[] = [];
    const writer = table.openSession('writer', (push) => pushes.push(push));
    const parent = await meta.mkdir(ROOT_INO, 'p2', 0o755);
    writer.begin([{ kind: 'dir', ino: parent.ino }]).grant();
    await asWriter(writer, () => meta.mkdir(parent.ino, 'child', 0o755));
    expect(pushes).toHaveLength(1); // told, not waited for
    writer.close();
  });

  it('a chmod reaches holders of the inode', async () => {
    const pushes: LeasePush[] = [];
    const holder = table.openSession('holder2', (push) => {
      pushes.push(push);
      queueMicrotask(() => holder.ack(push.pushId));
    });
    const file = await meta.create(ROOT_INO, 'f', { mode: 0o644, replication: 1, chunkSize: 1 << 20, exclusive: true, truncate: false });
    holder.begin([{ kind: 'attr', ino: file.ino }]).grant();
    await meta.setattr(file.ino, { mode: 0o600 });
    expect(pushes.map((p) => p.events)).toEqual([[{ ino: file.ino }]]);
    holder.close();
  });
});
