// Leases on the session stream: each session gets a LeaseSession; leased reads (lookup,
// getattr, readdirplus) answer with a grant the client may cache under; pushes go out as
// `leasePush`; the client acks them and renews on the same stream. Changes made on a session run
// as that session's writes (lease-kv.ts asWriter), so its own leases do not hold them up.
import { StrataError, invalid } from '../common/errors.js';
import { OWN_CHANGE_OPS, ownChangeDrops, ownChangeEvents, ownChangeListing } from '../common/lease-messages.js';
import { ino, name } from './inode-ops.js';
import { asWriter } from './lease-kv.js';
import { grantAll, type LeaseGrant, type LeasePush, type LeaseSession, type LeaseTable } from './leases.js';
import type { Namespace } from './authz/gate.js';
import { toWireAttr, toWireEntry } from './proto-map.js';
import type { ServerSession, SessionHooks, SessionOps } from './session.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire requests are validated field by field below */
type Req = any;

/** Release lists longer than this are refused (a session holds at most the table's cap anyway). */
const RELEASE_MAX = 10_000;

export function leaseSessionDeps(table: LeaseTable, meta: Namespace): { hooks: SessionHooks; ops: SessionOps } {
  const leases = new WeakMap<ServerSession, LeaseSession>();
  const leaseOf = (session: ServerSession): LeaseSession => {
    const lease = leases.get(session);
    if (!lease) throw new StrataError('Internal', 'session has no lease state');
    return lease;
  };
  const wireGrant = (grant: LeaseGrant | undefined) => (grant ? { epoch: grant.epoch, validForMs: Math.floor(grant.validForMs) } : null);

  const hooks: SessionHooks = {
    opened(session) {
      const lease = table.openSession(`session-${session.id}`, (push: LeasePush) => {
        if (!session.isOpen) throw new Error('session closed');
        session.push({ leasePush: { pushId: push.pushId, events: push.events, all: !!push.all } });
      });
      leases.set(session, lease);
    },
    closed(session) {
      leases.get(session)?.close();
    },
    run: async (session, work, op, request) => {
      const lease = leases.get(session);
      // Only for a client that says it caches (so listens for pushes, and acks them).
      if (!lease || !op || !OWN_CHANGE_OPS.has(op) || !(request as { ownCache?: boolean } | undefined)?.ownCache) return asWriter(lease, work);
      // The client applies this change's reply to its cache: it keeps its leases on what that
      // updates (leases.ts OwnChange), decided once the reply is known, before it is written.
      // A mkdir may also get the new directory's whole (empty) listing: the reply says so.
      const own = lease.ownChange(op === 'mkdirAt');
      let reply;
      try {
        reply = await asWriter(lease, work, own);
      } catch (err) {
        own.finish(undefined);
        throw err;
      }
      const listed = own.finish(ownChangeEvents(op, request, reply), ownChangeDrops(op, reply), ownChangeListing(op, reply));
      return listed ? ({ ...reply, listingLeased: true } as typeof reply) : reply;
    },
  };

  const ops: SessionOps = {
    leasedLookup: async (req: Req, session) => {
      const lease = leaseOf(session);
      const parent = ino(req.parent, 'parent');
      const entryName = name(req.name);
      // Another tenant's directory is not there at all: no lease on it, no "absent" answer.
      await meta.requireVisible(parent);
      const dirRead = lease.begin([{ kind: 'dir', ino: parent }]);
      let found;
      try {
        found = await meta.lookup(parent, entryName);
      } catch (err) {
        // An absent name is an answer too: cached as such under the directory's lease.
        if (err instanceof StrataError && err.kind === 'NotFound') return { absent: true, lease: wireGrant(grantAll([dirRead])) };
        dirRead.abandon();
        throw err;
      }
      // The child's inode is known only now: lease it, then read its attributes under that lease.
      const attrRead = lease.begin([{ kind: 'attr', ino: found.ino }]);
      try {
        const attr = await meta.getattr(found.ino);
        return { attr: toWireAttr(attr), lease: wireGrant(grantAll([dirRead, attrRead])) };
      } catch (err) {
        dirRead.abandon();
        attrRead.abandon();
        throw err;
      }
    },

    leasedGetAttr: async (req: Req, session) => {
      const read = leaseOf(session).begin([{ kind: 'attr', ino: ino(req.ino) }]);
      try {
        const attr = await meta.getattr(ino(req.ino));
        return { attr: toWireAttr(attr), lease: wireGrant(grantAll([read])) };
      } catch (err) {
        read.abandon();
        throw err;
      }
    },

    leasedReadDirPlus: async (req: Req, session) => {
      const lease = leaseOf(session);
      const dir = ino(req.ino);
      const after = String(req.after ?? '');
      const limit = Number(req.limit) || 0;
      const dirRead = lease.begin([{ kind: 'dir', ino: dir }]);
      const reads = [dirRead];
      try {
        // Names first, then the children's leases, then their attributes under those leases.
        const names = await meta.readdir(dir, after, limit, false);
        reads.push(lease.begin(names.entries.map((e) => ({ kind: 'attr' as const, ino: e.ino }))));
        const { entries, more } = await meta.readdir(dir, after, limit, true);
        const sameNames = entries.length === names.entries.length && entries.every((e, i) => e.ino === names.entries[i]!.ino);
        const complete = entries.filter((e) => e.attr);
        const grant = sameNames && complete.length === entries.length ? grantAll(reads) : (reads.forEach((r) => r.abandon()), undefined);
        return { entries: complete.map(toWireEntry), more, lease: wireGrant(grant) };
      } catch (err) {
        reads.forEach((r) => r.abandon());
        throw err;
      }
    },

    leaseRenew: async (req: Req, session) => {
      const lease = leaseOf(session);
      if (req.releaseAll) lease.releaseAll();
      const dirs = list(req.releaseDirs);
      const attrs = list(req.releaseAttrs);
      lease.release([...dirs.map((i) => ({ kind: 'dir' as const, ino: i })), ...attrs.map((i) => ({ kind: 'attr' as const, ino: i }))]);
      return wireGrant(lease.renew());
    },

    leaseAck: async (req: Req, session) => {
      leaseOf(session).ack(Number(req.pushId));
      return {};
    },
  };
  return { hooks, ops };
}

function list(value: unknown): number[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.length > RELEASE_MAX) throw invalid(`lease release: at most ${RELEASE_MAX} inode numbers`);
  return value.map((v) => ino(v));
}
