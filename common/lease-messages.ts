// What a lease push and a lease grant carry on the session stream: one shape for the coordinator
// that sends them and the client that reads them.

/** What changed: `{ ino, name }` the entry `name` in directory `ino`; `{ ino }` the inode's attributes. */
export interface Invalidation {
  ino: number;
  name?: string;
}

export interface LeasePush {
  pushId: number;
  events: Invalidation[];
  /** Drop everything (the coordinator may have missed changes). */
  all?: boolean;
}

export interface LeaseGrant {
  epoch: number;
  /** From the coordinator's receipt of the request; the client counts from its send time. */
  validForMs: number;
}

/**
 * What a session's own change lets its client update in its cache from the reply, as the
 * entries and attributes it sets: the coordinator keeps the writer's leases on exactly these
 * (coordinator/leases.ts OwnChange) and the client applies exactly these (client/meta-cache.ts),
 * so both sides read the rule from here. `op` is the session op; `request` and `reply` its
 * messages (camelCase, as proto-loader gives them). [] = nothing kept: the change's items are
 * revoked as for anyone's change.
 */
export function ownChangeEvents(op: string, request: unknown, reply: unknown): Invalidation[] {
  /* eslint-disable @typescript-eslint/no-explicit-any -- plain proto-loader messages */
  const req = request as any;
  const attrIno = Number((reply as any)?.attr?.ino);
  const hasAttr = Number.isSafeInteger(attrIno) && attrIno > 0;
  switch (op) {
    case 'mkdirAt':
    case 'createAt':
    case 'symlinkAt':
      return hasAttr ? [{ ino: Number(req.parent), name: String(req.name) }, { ino: attrIno }] : [];
    case 'unlink':
    case 'rmdir': {
      // The removed inode when it lives on under another name: its new link count and ctime.
      const entry = { ino: Number(req.parent), name: String(req.name) };
      return hasAttr && Number((reply as any).attr.nlink) > 0 ? [entry, { ino: attrIno }] : [entry];
    }
    case 'renameAt': {
      const src = { ino: Number(req.srcParent), name: String(req.srcName) };
      const dst = { ino: Number(req.dstParent), name: String(req.dstName) };
      if (src.ino === dst.ino && src.name === dst.name) return [];
      return hasAttr ? [src, dst, { ino: attrIno }] : [src, dst];
    }
    case 'setAttrIno':
    case 'commitChunk':
      return hasAttr && attrIno === Number(req.ino) ? [{ ino: attrIno }] : [];
    default:
      return [];
  }
}

/**
 * What a session's own change removed for good, so its client drops it from its cache on the
 * reply, whatever else happens: an inode gone with its last name (nlink 0 in the reply). The
 * coordinator releases the writer's lease on it without a push: no change can touch it again
 * (inode numbers are never reused), so nothing the writer still answers until the reply lands
 * can go stale behind another client's acknowledged change.
 */
export function ownChangeDrops(op: string, reply: unknown): Invalidation[] {
  if (op !== 'unlink' && op !== 'rmdir') return [];
  const attr = (reply as any)?.attr;
  const ino = Number(attr?.ino);
  return Number.isSafeInteger(ino) && ino > 0 && Number(attr.nlink) === 0 ? [{ ino }] : [];
}

/**
 * The directory a session's own change made, whose whole listing (empty) the coordinator may
 * lease to the writer with the reply (its `listingLeased` says whether it did): mkdirAt's new
 * directory. The client then answers every name in it absent with no request, and its own
 * changes there keep the listing whole, until a change by anyone else there revokes it.
 */
export function ownChangeListing(op: string, reply: unknown): number | undefined {
  if (op !== 'mkdirAt') return undefined;
  const ino = Number((reply as any)?.attr?.ino);
  return Number.isSafeInteger(ino) && ino > 0 ? ino : undefined;
}

/** Session ops whose replies their client applies to its cache (see ownChangeEvents). */
export const OWN_CHANGE_OPS: ReadonlySet<string> = new Set(['mkdirAt', 'createAt', 'symlinkAt', 'unlink', 'rmdir', 'renameAt', 'setAttrIno', 'commitChunk']);
