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
    case 'rmdir':
      return [{ ino: Number(req.parent), name: String(req.name) }];
    case 'renameAt': {
      const src = { ino: Number(req.srcParent), name: String(req.srcName) };
      const dst = { ino: Number(req.dstParent), name: String(req.dstName) };
      return src.ino === dst.ino && src.name === dst.name ? [] : [src, dst];
    }
    case 'setAttrIno':
      return hasAttr && attrIno === Number(req.ino) ? [{ ino: attrIno }] : [];
    default:
      return [];
  }
}

/** Session ops whose replies their client applies to its cache (see ownChangeEvents). */
export const OWN_CHANGE_OPS: ReadonlySet<string> = new Set(['mkdirAt', 'createAt', 'symlinkAt', 'unlink', 'rmdir', 'renameAt', 'setAttrIno']);
