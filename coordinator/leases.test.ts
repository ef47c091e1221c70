import { describe, expect, it } from 'vitest';
import { grantAll, LeaseTable, type LeaseClock, type LeasePush, type LeaseSession } from './leases.js';

/** Time moves only when the test says so. */
class ManualClock implements LeaseClock {
  ms = 0;
  private timers: { at: number; fn: () => void; live: boolean }[] = [];
  now = () => this.ms;
  setTimer(fn: () => void, ms: number) {
    const timer = { at: this.ms + Math.max(0, ms), fn, live: true };
    this.timers.push(timer);
    return { cancel: () => void (timer.live = false) };
  }
  advance(ms: number): void {
    const until = this.ms + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.live && t.at <= until).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.ms = Math.max(this.ms, due.at);
      due.live = false;
      due.fn();
    }
    this.ms = until;
    this.timers = this.timers.filter((t) => t.live);
  }
}

const TTL = 10_000;

function setup() {
  const clock = new ManualClock();
  const expired: string[] = [];
  const table = new LeaseTable({ ttlMs: TTL, clock, onExpired: (id) => expired.push(id) });
  const open = (id: string) => {
    const pushes: LeasePush[] = [];
    const session = table.openSession(id, (push) => pushes.push(push));
    return { session, pushes };
  };
  return { clock, table, open, expired };
}

/** True once the promise has settled (after pending microtasks run). */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => (done = true));
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return done;
}

describe('LeaseTable', () => {
  it('grants a read its lease and names the epoch and how long it lasts', () => {
    const { open } = setup();
    const { session } = open('a');
    const grant = session.begin([{ kind: 'dir', ino: 1 }]).grant();
    expect(grant).toEqual({ epoch: session.epoch, validForMs: TTL });
    // Another session (a reconnect) is another epoch: its client knows to drop the old cache.
    expect(open('b').session.epoch).not.toBe(session.epoch);
    expect(session.leaseCount).toBe(1);
  });

  it('a change to a leased directory is pushed to its holder and completes only when the holder acks', async () => {
    const { table, open } = setup();
    const a = open('a');
    a.session.begin([{ kind: 'dir', ino: 7 }]).grant();
    const change = table.invalidate([{ ino: 7, name: 'x' }]);
    expect(a.pushes).toEqual([{ pushId: expect.any(Number), events: [{ ino: 7, name: 'x' }] }]);
    expect(await settled(change)).toBe(false);
    a.session.ack(a.pushes[0]!.pushId + 1); // not this push
    expect(await settled(change)).toBe(false);
    a.session.ack(a.pushes[0]!.pushId);
    expect(await settled(change)).toBe(true);
    expect(a.session.leaseCount).toBe(0);
  });

  it('does not push to sessions that lease something else, nor wait for them', async () => {
    const { table, open } = setup();
    const a = open('a');
    a.session.begin([{ kind: 'dir', ino: 7 }, { kind: 'attr', ino: 8 }]).grant();
    expect(await settled(table.invalidate([{ ino: 8, name: 'x' }, { ino: 7 }]))).toBe(true);
    expect(a.pushes).toEqual([]);
    expect(a.session.leaseCount).toBe(2);
  });

  it('a change during a read revokes the lease the read would get (its answer may predate the change)', async () => {
    const { table, open } = setup();
    const a = open('a');
    const read = a.session.begin([{ kind: 'dir', ino: 7 }]);
    expect(await settled(table.invalidate([{ ino: 7, name: 'x' }]))).toBe(true);
    expect(a.pushes).toEqual([]); // nothing was cached yet, so nothing to tell
    expect(read.grant()).toBeUndefined();
    // The next read is leased again, and a change after it is pushed.
    a.session.begin([{ kind: 'dir', ino: 7 }]).grant();
    void table.invalidate([{ ino: 7, name: 'y' }]);
    expect(a.pushes.map((p) => p.events)).toEqual([[{ ino: 7, name: 'y' }]]);
  });

  it('an abandoned read on a revoked item does not unregister a later read of it', () => {
    const { table, open } = setup();
    const a = open('a');
    const first = a.session.begin([{ kind: 'attr', ino: 3 }]);
    void table.invalidate([{ ino: 3 }]);
    const second = a.session.begin([{ kind: 'attr', ino: 3 }]);
    first.abandon();
    expect(second.grant()).toBeDefined();
    void table.invalidate([{ ino: 3 }]);
    expect(a.pushes).toHaveLength(1);
  });

  it("the writer's own session is told but not waited for", async () => {
    const { table, open } = setup();
    const a = open('a');
    const b = open('b');
    a.session.begin([{ kind: 'dir', ino: 1 }]).grant();
    b.session.begin([{ kind: 'dir', ino: 1 }]).grant();
    const change = table.invalidate([{ ino: 1, name: 'n' }], a.session);
    expect(a.pushes).toHaveLength(1);
    expect(b.pushes).toHaveLength(1);
    expect(await settled(change)).toBe(false);
    b.session.ack(b.pushes[0]!.pushId);
    expect(await settled(change)).toBe(true);
  });

  it('a holder that never acks holds a change up only until its lease lapses, then loses all it held', async () => {
    const { table, open, clock, expired } = setup();
    const a = open('a');
    const epoch = a.session.epoch;
    a.session.begin([{ kind: 'dir', ino: 1 }, { kind: 'attr', ino: 2 }]).grant();
    clock.advance(4000);
    const change = table.invalidate([{ ino: 1, name: 'n' }]);
    // Renewals while a push is unacknowledged do not extend the lease.
    expect(a.session.renew().validForMs).toBe(TTL - 4000);
    clock.advance(TTL - 4000 - 1);
    expect(await settled(change)).toBe(false);
    clock.advance(1);
    expect(await settled(change)).toBe(true);
    expect(expired).toEqual(['a']);
    expect(a.session.leaseCount).toBe(0);
    // Coming back, the session is in a new epoch: its client must drop what it cached.
    expect(a.session.renew()).toEqual({ epoch: epoch + 1, validForMs: TTL });
    // A read begun in the old epoch and answered now is not leased.
  });

  it('a read begun before the lease lapsed gets no lease after it', () => {
    const { open, clock } = setup();
    const a = open('a');
    a.session.begin([{ kind: 'attr', ino: 5 }]).grant();
    const read = a.session.begin([{ kind: 'attr', ino: 6 }]);
    clock.advance(TTL);
    a.session.renew(); // lapsed: new epoch
    expect(read.grant()).toBeUndefined();
  });

  it('a session idle past its lease, or lapsed, is granted leases again on its next read', () => {
    const { open, clock } = setup();
    const a = open('a');
    clock.advance(TTL * 2); // never read within its first TTL
    expect(a.session.begin([{ kind: 'attr', ino: 5 }]).grant()).toEqual({ epoch: a.session.epoch, validForMs: TTL });
    const epoch = a.session.epoch;
    const inFlight = a.session.begin([{ kind: 'attr', ino: 6 }]);
    clock.advance(TTL * 2); // lapsed holding a lease and a read
    const again = a.session.begin([{ kind: 'attr', ino: 7 }]).grant();
    expect(again?.validForMs).toBe(TTL);
    expect(again!.epoch).toBeGreaterThan(epoch);
    expect(inFlight.grant()).toBeUndefined();
  });

  it('renewals and grants keep an acked session alive', async () => {
    const { table, open, clock } = setup();
    const a = open('a');
    a.session.begin([{ kind: 'dir', ino: 1 }]).grant();
    for (let i = 0; i < 5; i++) {
      clock.advance(TTL / 2);
      a.session.renew();
    }
    const change = table.invalidate([{ ino: 1, name: 'n' }]);
    expect(a.pushes).toHaveLength(1);
    expect(await settled(change)).toBe(false);
    a.session.ack(a.pushes[0]!.pushId);
    expect(await settled(change)).toBe(true);
  });

  it('a session whose stream ended keeps what it held until its lease lapses (its client may not know yet), then is forgotten', async () => {
    const { table, open, clock, expired } = setup();
    const a = open('a');
    a.session.begin([{ kind: 'dir', ino: 1 }]).grant();
    const b = open('b');
    b.session.begin([{ kind: 'dir', ino: 2 }]).grant();
    clock.advance(1000);
    a.session.close();
    b.session.close();
    const change = table.invalidate([{ ino: 1, name: 'n' }]);
    expect(a.pushes).toEqual([]); // nowhere to push
    expect(a.session.begin([{ kind: 'dir', ino: 1 }]).grant()).toBeUndefined();
    clock.advance(TTL - 1000 - 1);
    expect(await settled(change)).toBe(false);
    expect(table.stats().sessions).toBe(2);
    clock.advance(1);
    expect(await settled(change)).toBe(true);
    expect(expired.sort()).toEqual(['a', 'b']);
    expect(table.stats()).toEqual({ sessions: 0, leases: 0, holders: 0 });
  });

  it('a closed session that held nothing, or released all, is forgotten at once', async () => {
    const { table, open } = setup();
    open('a').session.close();
    const b = open('b');
    b.session.begin([{ kind: 'dir', ino: 1 }]).grant();
    b.session.close();
    b.session.releaseAll();
    expect(await settled(table.invalidate([{ ino: 1, name: 'n' }]))).toBe(true);
    expect(table.stats().sessions).toBe(0);
  });

  it('a push the stream cannot take is waited out like a vanished holder', async () => {
    const { table, clock } = setup();
    const session = table.openSession('a', () => {
      throw new Error('stream closed');
    });
    session.begin([{ kind: 'dir', ino: 1 }]).grant();
    const change = table.invalidate([{ ino: 1, name: 'n' }]);
    expect(await settled(change)).toBe(false);
    clock.advance(TTL);
    expect(await settled(change)).toBe(true);
    expect(table.stats().sessions).toBe(0);
  });

  it('the sweep forgets sessions that stopped renewing', () => {
    const { table, open, clock, expired } = setup();
    const a = open('a');
    open('b').session.begin([{ kind: 'attr', ino: 9 }]).grant();
    a.session.begin([{ kind: 'attr', ino: 9 }]).grant();
    clock.advance(TTL * 2 + 1);
    expect(expired.sort()).toEqual(['a', 'b']);
    expect(table.stats().leases).toBe(0);
  });

  it('released items are not pushed', async () => {
    const { table, open } = setup();
    const a = open('a');
    a.session.begin([{ kind: 'dir', ino: 1 }]).grant();
    a.session.release([{ kind: 'dir', ino: 1 }]);
    expect(await settled(table.invalidate([{ ino: 1, name: 'n' }]))).toBe(true);
    expect(a.pushes).toEqual([]);
  });

  it('all events on a revoked directory go in one push', () => {
    const { table, open } = setup();
    const a = open('a');
    a.session.begin([{ kind: 'dir', ino: 1 }, { kind: 'attr', ino: 1 }]).grant();
    void table.invalidate([{ ino: 1, name: 'a' }, { ino: 1, name: 'b' }, { ino: 1 }]);
    expect(a.pushes).toEqual([{ pushId: expect.any(Number), events: [{ ino: 1, name: 'a' }, { ino: 1, name: 'b' }, { ino: 1 }] }]);
  });

  it('invalidateAll pushes a drop-everything to every holder', async () => {
    const { table, open } = setup();
    const a = open('a');
    const b = open('b');
    a.session.begin([{ kind: 'dir', ino: 1 }]).grant();
    const change = table.invalidateAll();
    expect(a.pushes).toEqual([{ pushId: expect.any(Number), events: [], all: true }]);
    expect(b.pushes).toEqual([]);
    a.session.ack(a.pushes[0]!.pushId);
    expect(await settled(change)).toBe(true);
  });

  it('a session past its lease cap is answered without leases', () => {
    const clock = new ManualClock();
    const table = new LeaseTable({ ttlMs: TTL, clock, maxItemsPerSession: 2 });
    const session = table.openSession('a', () => undefined);
    expect(session.begin([{ kind: 'attr', ino: 1 }, { kind: 'attr', ino: 2 }]).grant()).toBeDefined();
    expect(session.begin([{ kind: 'attr', ino: 3 }]).grant()).toBeUndefined();
    expect(session.leaseCount).toBe(2);
  });
});

describe('grantAll', () => {
  it('grants an answer of several reads only if none was revoked', () => {
    const { table, open } = setup();
    const a = open('a');
    const both = [a.session.begin([{ kind: 'dir', ino: 1 }]), a.session.begin([{ kind: 'attr', ino: 2 }])];
    expect(grantAll(both)).toEqual({ epoch: a.session.epoch, validForMs: TTL });
    const again = [a.session.begin([{ kind: 'dir', ino: 3 }]), a.session.begin([{ kind: 'attr', ino: 4 }])];
    void table.invalidate([{ ino: 4 }]);
    expect(grantAll(again)).toBeUndefined();
    expect(a.session.leaseCount).toBe(2);
  });

  describe('own changes (the writer applies its reply to its cache)', () => {
    /** A create of `name` (new inode `child`) in `dir`, as MetaStore's txn touches it, by `writer`. */
    function createTxn(table: LeaseTable, writer: LeaseSession, dir: number, name: string, child: number) {
      const own = writer.ownChange();
      const events = [{ ino: dir, name }, { ino: child }, { ino: dir }];
      own.beforeCommit(events);
      const committed = table.invalidate(events, writer, own);
      return { own, committed, expected: [{ ino: dir, name }, { ino: child }] };
    }

    it('the writer keeps its lease on the directory and gains the new inode; others are told and waited for', async () => {
      const { table, open } = setup();
      const a = open('a');
      const b = open('b');
      a.session.begin([{ kind: 'dir', ino: 1 }, { kind: 'attr', ino: 1 }]).grant();
      b.session.begin([{ kind: 'dir', ino: 1 }]).grant();
      const { own, committed, expected } = createTxn(table, a.session, 1, 'x', 20);
      expect(b.pushes).toHaveLength(1);
      expect(await settled(committed)).toBe(false);
      b.session.ack(b.pushes[0]!.pushId);
      expect(await settled(committed)).toBe(true);
      expect(a.pushes).toEqual([]);
      own.finish(expected);
      // Kept: the directory and the new inode. Not kept (the reply does not say): the parent's attributes.
      expect(a.pushes).toEqual([{ pushId: expect.any(Number), events: [{ ino: 1 }] }]);
      a.session.ack(a.pushes[0]!.pushId);
      expect(a.session.leaseCount).toBe(2);
      // Someone else's later change of either is pushed to the writer and waits for it.
      const later = table.invalidate([{ ino: 1, name: 'y' }, { ino: 20 }]);
      expect(a.pushes[1]!.events).toEqual([{ ino: 1, name: 'y' }, { ino: 20 }]);
      expect(await settled(later)).toBe(false);
      a.session.ack(a.pushes[1]!.pushId);
      expect(await settled(later)).toBe(true);
    });

    it('another change of the directory while the writer\'s change is in flight: nothing kept, the writer is told', async () => {
      for (const when of ['before the commit', 'after the commit'] as const) {
        const { table, open } = setup();
        const a = open('a');
        a.session.begin([{ kind: 'dir', ino: 1 }]).grant();
        const own = a.session.ownChange();
        const events = [{ ino: 1, name: 'x' }, { ino: 20 }];
        own.beforeCommit(events);
        if (when === 'before the commit') void table.invalidate([{ ino: 1, name: 'other' }]);
        void table.invalidate(events, a.session, own);
        if (when === 'after the commit') void table.invalidate([{ ino: 1, name: 'other' }]);
        const foreign = a.pushes.length;
        expect(foreign).toBe(1); // the writer held the directory: the other change's push
        a.session.ack(a.pushes[0]!.pushId);
        own.finish(events);
        // Its reply must not be installed: the directory and the new inode are pushed before it.
        expect(a.pushes.slice(foreign).flatMap((p) => p.events)).toEqual(expect.arrayContaining([{ ino: 1, name: 'x' }, { ino: 20 }]));
        expect(a.session.leaseCount).toBe(0);
      }
    });

    it("the writer's other reads of what its change touched, in flight at the commit, get no lease", () => {
      const { table, open } = setup();
      const a = open('a');
      const read = a.session.begin([{ kind: 'dir', ino: 1 }]); // a lookup that may have read the name absent
      const { own, expected } = createTxn(table, a.session, 1, 'x', 20);
      own.finish(expected);
      expect(read.grant()).toBeUndefined();
      expect(a.session.leaseCount).toBe(0); // nothing granted before: the session never took a lease
    });

    it('a failed change keeps nothing: what the writer held is pushed to it', () => {
      const { table, open } = setup();
      const a = open('a');
      a.session.begin([{ kind: 'dir', ino: 1 }]).grant();
      const { own } = createTxn(table, a.session, 1, 'x', 20);
      own.finish(undefined);
      expect(a.pushes.flatMap((p) => p.events)).toContainEqual({ ino: 1, name: 'x' });
      expect(a.session.leaseCount).toBe(0);
    });

    it('a txn that touched another name of the kept directory keeps nothing there', () => {
      const { table, open } = setup();
      const a = open('a');
      a.session.begin([{ kind: 'dir', ino: 1 }]).grant();
      const own = a.session.ownChange();
      const events = [{ ino: 1, name: 'x' }, { ino: 1, name: 'surprise' }];
      own.beforeCommit(events);
      void table.invalidate(events, a.session, own);
      own.finish([{ ino: 1, name: 'x' }]);
      expect(a.pushes.flatMap((p) => p.events)).toEqual(events);
      expect(a.session.leaseCount).toBe(0);
    });

    it("a push to the writer nobody waited for still holds up the next change of that item until acked", async () => {
      const { table, open } = setup();
      const a = open('a');
      a.session.begin([{ kind: 'attr', ino: 1 }]).grant();
      const { own, expected } = createTxn(table, a.session, 1, 'x', 20);
      own.finish(expected); // attr:1 pushed to the writer, unacked: its cache may still answer it
      const later = table.invalidate([{ ino: 1 }]);
      expect(await settled(later)).toBe(false);
      a.session.ack(a.pushes[0]!.pushId);
      expect(await settled(later)).toBe(true);
      // And once acked it is not held at all: no more waiting.
      expect(await settled(table.invalidate([{ ino: 1 }]))).toBe(true);
    });

    it("the writer's own next change does not wait for its ack of that push (it comes before the reply)", async () => {
      const { table, open } = setup();
      const a = open('a');
      a.session.begin([{ kind: 'attr', ino: 1 }]).grant();
      const first = createTxn(table, a.session, 1, 'x', 20);
      first.own.finish(first.expected); // attr:1 pushed to the writer, unacked
      const second = createTxn(table, a.session, 1, 'y', 21);
      expect(await settled(second.committed)).toBe(true);
      const byPath = table.invalidate([{ ino: 1 }], a.session); // a change of it without own-cache
      expect(await settled(byPath)).toBe(true);
    });

    it('a push to the writer still unacknowledged does not cost it what its change keeps; the lease is not extended and lapses', async () => {
      const { table, open, clock } = setup();
      const a = open('a');
      a.session.begin([{ kind: 'dir', ino: 1 }, { kind: 'attr', ino: 9 }]).grant();
      void table.invalidate([{ ino: 9 }]); // pushed, not acked yet
      clock.advance(TTL / 2);
      const { own, expected } = createTxn(table, a.session, 1, 'x', 20);
      own.finish(expected);
      expect(a.pushes).toHaveLength(1); // nothing of the directory or the new inode pushed
      expect(a.session.leaseCount).toBe(2);
      // Another client's change of the kept directory waits for the writer...
      const other = table.invalidate([{ ino: 1, name: 'y' }]);
      expect(await settled(other)).toBe(false);
      // ...no longer than the lease granted before the unacked push: it was not extended.
      clock.advance(TTL / 2);
      expect(await settled(other)).toBe(true);
      expect(a.session.leaseCount).toBe(0);
    });

    it('an inode the change removed for good is released without a push: the writer drops it from the reply, nobody waits for it', async () => {
      const { table, open } = setup();
      const a = open('a');
      const b = open('b');
      a.session.begin([{ kind: 'dir', ino: 1 }, { kind: 'attr', ino: 20 }]).grant();
      b.session.begin([{ kind: 'attr', ino: 20 }]).grant();
      // An unlink of the last name: the entry, the parent's stamp, the inode deleted.
      const own = a.session.ownChange();
      const events = [{ ino: 1, name: 'f' }, { ino: 1 }, { ino: 20 }];
      own.beforeCommit(events);
      const committed = table.invalidate(events, a.session, own);
      expect(b.pushes.flatMap((p) => p.events)).toEqual([{ ino: 20 }]); // another holder is told, and waited for
      expect(await settled(committed)).toBe(false);
      b.session.ack(b.pushes[0]!.pushId);
      expect(await settled(committed)).toBe(true);
      own.finish([{ ino: 1, name: 'f' }], [{ ino: 20 }]);
      expect(a.pushes).toEqual([]);
      expect(a.session.leaseCount).toBe(1); // the directory; the gone inode is not held on
      expect(await settled(table.invalidate([{ ino: 20 }]))).toBe(true);
      // A failed change drops nothing on the writer's word: what it held is pushed as before.
      a.session.begin([{ kind: 'attr', ino: 21 }]).grant();
      const failed = a.session.ownChange();
      failed.beforeCommit([{ ino: 21 }]);
      void table.invalidate([{ ino: 21 }], a.session, failed);
      failed.finish(undefined, [{ ino: 21 }]);
      expect(a.pushes.flatMap((p) => p.events)).toEqual([{ ino: 21 }]);
    });

    describe("a mkdir leases the writer the new directory's (empty) listing", () => {
      /** A mkdir of `name` (new directory `child`) in `dir`, as MetaStore's txn touches it. */
      function mkdirTxn(table: LeaseTable, writer: LeaseSession, dir: number, name: string, child: number) {
        const own = writer.ownChange(true);
        const events = [{ ino: dir, name }, { ino: child }, { ino: dir }, { ino: child }];
        own.beforeCommit(events);
        const committed = table.invalidate(events, writer, own);
        return { own, committed, expected: [{ ino: dir, name }, { ino: child }] };
      }

      it('granted with the reply; a later change there by anyone else is pushed to the writer and waits for its ack', async () => {
        const { table, open } = setup();
        const a = open('a');
        a.session.begin([{ kind: 'dir', ino: 1 }]).grant();
        const { own, committed, expected } = mkdirTxn(table, a.session, 1, 'd', 30);
        expect(await settled(committed)).toBe(true);
        expect(own.finish(expected, [], 30)).toBe(true);
        expect(a.pushes).toEqual([]); // nothing pushed to the writer: it keeps it all
        expect(a.session.leaseCount).toBe(3); // the parent's listing, the new inode, its listing
        const other = table.invalidate([{ ino: 30, name: 'x' }, { ino: 30 }]);
        expect(a.pushes.flatMap((p) => p.events)).toEqual([{ ino: 30, name: 'x' }, { ino: 30 }]);
        expect(await settled(other)).toBe(false);
        a.session.ack(a.pushes[0]!.pushId);
        expect(await settled(other)).toBe(true);
      });

      it('not granted when another change in the new directory came between the commit and the reply', () => {
        const { table, open } = setup();
        const a = open('a');
        a.session.begin([{ kind: 'dir', ino: 1 }]).grant();
        const { own, expected } = mkdirTxn(table, a.session, 1, 'd', 30);
        void table.invalidate([{ ino: 30, name: 'x' }]); // another client's create, right after the commit
        expect(own.finish(expected, [], 30)).toBe(false);
        expect(a.pushes).toEqual([]); // it never held it: nothing to push (the reply says not leased)
        expect(a.session.leaseCount).toBe(2);
        // And it is not registered either: a later change there waits for nobody.
        expect(table.stats().leases).toBe(2);
      });

      it('not granted for a directory whose read did not begin before the commit, nor past the lease cap, nor on a failure', () => {
        const { table, open } = setup();
        const a = open('a');
        a.session.begin([{ kind: 'dir', ino: 1 }]).grant();
        const plain = a.session.ownChange(); // not a mkdir: no listing read began
        plain.beforeCommit([{ ino: 1, name: 'd' }, { ino: 30 }, { ino: 1 }, { ino: 30 }]);
        expect(plain.finish([{ ino: 1, name: 'd' }, { ino: 30 }], [], 30)).toBe(false);
        const other = mkdirTxn(table, a.session, 1, 'e', 31);
        expect(other.own.finish(other.expected, [], 99)).toBe(false); // not the inode its txn made
        const failed = mkdirTxn(table, a.session, 1, 'f', 32);
        expect(failed.own.finish(undefined, [], 32)).toBe(false);

        const small = new LeaseTable({ ttlMs: TTL, clock: new ManualClock(), maxItemsPerSession: 1 });
        const s = small.openSession('s', () => undefined);
        s.begin([{ kind: 'dir', ino: 1 }]).grant();
        const full = mkdirTxn(small, s, 1, 'd', 30);
        expect(full.own.finish(full.expected, [], 30)).toBe(false);
        small.close();
      });
    });

    it('a change touching several items keeps each the reply covers, whatever order its txn wrote them in', () => {
      const { table, open } = setup();
      const a = open('a');
      a.session.begin([{ kind: 'dir', ino: 1 }, { kind: 'attr', ino: 20 }]).grant();
      // A rename's txn: the moved inode's ctime first, then both names, then the directory's stamp.
      const own = a.session.ownChange();
      const events = [{ ino: 20 }, { ino: 1, name: 'f' }, { ino: 1, name: 'g' }, { ino: 1 }];
      own.beforeCommit(events);
      void table.invalidate(events, a.session, own);
      own.finish([{ ino: 1, name: 'f' }, { ino: 1, name: 'g' }]);
      // The moved inode's attributes are not in the reply: pushed. The directory is kept.
      expect(a.pushes.flatMap((p) => p.events)).toEqual([{ ino: 20 }]);
      expect(a.session.leaseCount).toBe(1);
    });
  });
});
