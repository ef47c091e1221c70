// The inode-based namespace ops of the session stream: by inode, or by (parent inode, name),
// so a mount never has the coordinator walk a whole path per call. Each is one MetaStore call.
import type { Namespace } from './authz/gate.js';
import type { Owner, SetAttrChanges, SpecialKind } from './meta/types.js';
import { ROOT_INO } from './meta/types.js';
import { toWireAttr, toWireEntry } from './proto-map.js';
import { invalid } from '../common/errors.js';
import { validateName } from '../common/paths.js';
import type { SessionOps } from './session.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire requests are validated field by field below */
type Req = any;

export interface InodeOpsDeps {
  /** The Create RPC's rules (replication, chunk size, first-chunk placement) in a known directory. */
  createIn(parent: number, name: string, req: Req): Promise<unknown>;
  setAttrChanges(req: Req): SetAttrChanges;
}

export function inodeOps(meta: Namespace, { createIn, setAttrChanges }: InodeOpsDeps): SessionOps {
  const stat = (attr: Parameters<typeof toWireAttr>[0]) => ({ attr: toWireAttr(attr) });
  const statOrEmpty = (attr: Parameters<typeof toWireAttr>[0] | null) => (attr ? stat(attr) : {});
  return {
    lookup: async (req: Req) => stat(await meta.lookup(ino(req.parent, 'parent'), name(req.name))),
    getAttr: async (req: Req) => stat(await meta.getattr(ino(req.ino))),
    readDirPlus: async (req: Req) => {
      const { entries, more } = await meta.readdir(ino(req.ino), String(req.after ?? ''), Number(req.limit) || 0, true);
      // An entry whose inode went between the two reads is gone: leave it out, never half of it.
      return { entries: entries.filter((e) => e.attr).map(toWireEntry), more };
    },
    mkdirAt: async (req: Req) => stat(await meta.mkdir(ino(req.parent, 'parent'), name(req.name), Number(req.mode) || 0o755, ownerOf(req.owner))),
    createAt: async (req: Req) => createIn(ino(req.parent, 'parent'), name(req.name), req),
    symlinkAt: async (req: Req) => stat(await meta.symlink(ino(req.parent, 'parent'), name(req.name), String(req.target ?? ''), ownerOf(req.owner))),
    mknodAt: async (req: Req) => {
      const kind = SPECIAL_TYPES[String(req.type)];
      if (!kind) throw invalid(`mknod: type '${req.type}' is not FIFO, CHAR_DEVICE, BLOCK_DEVICE or SOCKET`);
      return stat(await meta.mknod(ino(req.parent, 'parent'), name(req.name), kind, Number(req.mode) & 0o7777, Number(req.rdev ?? 0), ownerOf(req.owner)));
    },
    linkAt: async (req: Req) => stat(await meta.link(ino(req.ino), ino(req.newParent, 'new_parent'), name(req.newName))),
    // The removed inode as the change left it (nlink 0: gone), so its writer updates or drops
    // its copy from the reply (common/lease-messages.ts).
    unlink: async (req: Req) => statOrEmpty(await meta.unlink(ino(req.parent, 'parent'), name(req.name))),
    rmdir: async (req: Req) => statOrEmpty(await meta.rmdir(ino(req.parent, 'parent'), name(req.name))),
    removeAt: async (req: Req) => {
      await meta.remove(ino(req.parent, 'parent'), name(req.name));
      return {};
    },
    renameAt: async (req: Req) => {
      const srcParent = ino(req.srcParent, 'src_parent');
      const dstParent = ino(req.dstParent, 'dst_parent');
      // The moved inode as the rename left it (its ctime): its writer keeps it from the reply.
      return statOrEmpty(await meta.rename(srcParent, name(req.srcName), dstParent, name(req.dstName), { noReplace: !!req.noReplace }));
    },
    setAttrIno: async (req: Req) => stat(await meta.setattr(ino(req.ino), setAttrChanges(req))),
    readlink: async (req: Req) => ({ target: await meta.readlink(ino(req.ino)) }),
  };
}

const SPECIAL_TYPES: Record<string, SpecialKind> = { FIFO: 'fifo', CHAR_DEVICE: 'chardev', BLOCK_DEVICE: 'blockdev', SOCKET: 'socket' };

/** The creator's owner from the wire (the mount: its caller's; the SDK and CLI: their process's); absent = root (older clients). */
export function ownerOf(value: unknown): Owner | undefined {
  if (value === undefined || value === null) return undefined;
  const { uid, gid } = value as { uid?: unknown; gid?: unknown };
  const id = (v: unknown, field: string) => {
    const n = Number(v ?? 0);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw invalid(`invalid owner ${field} '${v}'`);
    return n;
  };
  return { uid: id(uid, 'uid'), gid: id(gid, 'gid') };
}

/** An inode number from the wire: validated once, at the edge. */
export function ino(value: unknown, field = 'ino'): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < ROOT_INO) throw invalid(`invalid ${field} inode number '${value}'`);
  return n;
}

/** The rules of names the namespace stores, for reads too ('' would look up the directory's key prefix). */
export function name(value: unknown): string {
  if (typeof value !== 'string' || value === '') throw invalid('missing name');
  validateName(value);
  return value;
}
