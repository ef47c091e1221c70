// The native libfuse 3 binding (native/fuse3.cc, built by `npm ci` into build/Release), typed.
// Requests arrive as plain objects; each is answered exactly once by a reply*(id, ...) call.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StrataError } from '../../common/errors.js';

export interface FuseRequest {
  op: string;
  id: number;
  /** The inode the request is about (the parent directory for name operations). */
  ino: number;
  uid: number;
  gid: number;
  pid: number;
  fh?: number;
  flags: number;
  name?: string;
  target?: string;
  newParent?: number;
  newName?: string;
  mode?: number;
  /** mknod: the device number of a device node. */
  rdev?: number;
  size?: number;
  offset?: number;
  data?: Buffer;
  datasync?: boolean;
  setUid?: number;
  setGid?: number;
  /** setattr times: milliseconds, 'now' (UTIME_NOW) or absent (UTIME_OMIT). */
  atime?: number | 'now';
  mtime?: number | 'now';
  /** forget: pairs of (ino, lookups dropped). */
  forgets?: number[];
}

export interface Attr {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  blksize: number;
  blocks: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  /** Device nodes: st_rdev. */
  rdev?: number;
}

export interface Entry {
  ino: number;
  attr: Attr;
  /** Seconds the kernel may trust the attributes / the name. */
  attrTimeout: number;
  entryTimeout: number;
}

export interface OpenReply {
  fh: number;
  directIo?: boolean;
  /** Files: keep the pages cached from earlier opens. Directories: keep the cached listing. */
  keepCache?: boolean;
  /** Directories (opendir): the kernel may cache this listing (FOPEN_CACHE_DIR). */
  cacheDir?: boolean;
}

/** Numbers per entry in replyDirPacked's array, in this order. */
export const PACKED_FIELDS = ['nodeid', 'off', 'ino', 'mode', 'nlink', 'uid', 'gid', 'size', 'blocks', 'blksize', 'atimeMs', 'mtimeMs', 'ctimeMs', 'entryTimeout', 'attrTimeout', 'rdev'] as const;

export interface MountSettings {
  writeback: boolean;
  maxWrite: number;
  /** Called (on JavaScript's thread) once the kernel took every notification up to `seq`. */
  onNotified?: (seq: number) => void;
}

export interface StatFsReply {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

export interface Fuse3Binding {
  fuseVersion: number;
  mount(mountpoint: string, options: string[], handler: (request: FuseRequest) => void, settings: MountSettings): void;
  /** Unmounts through libfuse (lazily): for when the kernel is not ending the session itself. */
  unmount(): void;
  /** After the handler saw op 'ended': frees the session once every request is answered. */
  close(): void;
  replyErr(id: number, errno: number): void;
  /** `keep`: what the binding may answer later lookups/getattrs with itself, on its own thread (Keep). */
  replyEntry(id: number, entry: Entry, keep?: Keep): void;
  replyCreate(id: number, entry: Entry, open: OpenReply, keep?: Keep): void;
  replyAttr(id: number, attr: Attr, timeoutSeconds: number, keep?: Keep): void;
  replyReadlink(id: number, target: string): void;
  replyOpen(id: number, open: OpenReply): void;
  replyWrite(id: number, count: number): void;
  replyBuf(id: number, data: Buffer): void;
  replyStatfs(id: number, stats: StatFsReply): void;
  /**
   * Packs directory entries while they fit in `size` bytes: `names` joined by '/', `nums` PACKED_FIELDS.length
   * numbers per entry (nodeid 0 = no lookup given, as for '.' and '..'). Returns how many went in.
   */
  replyDirPacked(id: number, size: number, plus: boolean, names: string, nums: Float64Array): number;
  /** How many numbers per entry replyDirPacked reads (PACKED_FIELDS.length when built from these sources). */
  packedFields: number;
  /** Queued for the kernel (on a thread of the binding): a sequence number, 0 if dropped (queue full). */
  notifyInvalEntry(parent: number, name: string): number | boolean;
  notifyInvalInode(ino: number, offset?: number, length?: number): number | boolean;
  /**
   * What the binding keeps (replies with `keep`) may answer for `ms` from now: the lease's time
   * left. <= 0 drops it all and stops. Names and attributes are kept by kernel inode number.
   */
  answersValidFor(ms: number): void;
  /** Drops a directory's kept names (`name` given, any string), an inode's attributes, or (no argument) everything. */
  answersDrop(ino?: number, name?: string): void;
  /** A stamp of now: answersPutAttr(stamp, ...) is refused if the inode changed here since. */
  answersStamp(): number;
  /** Keeps attributes (attr.ino: the kernel's number) read after `stamp`, to answer with. */
  answersPutAttr(stamp: number, attr: Attr): void;
  /**
   * Keeps a directory's entries read after `stamp`: names joined by '/', nums as replyDirPacked's
   * (nodeid 0: the name only). `whole`: they are all its names, so the binding answers a name not
   * among them as absent itself while nothing changes the directory. False: refused (it changed since).
   */
  answersPutDir(stamp: number, parent: number, names: string, nums: Float64Array, whole?: boolean): boolean | undefined;
  /** [ino, lookups, ...] answered by the binding itself since the last call (the kernel holds each), then its hits so far. */
  answersTakeServed(): Float64Array;
}

/**
 * What a reply lets the binding keep to answer later requests itself: nothing, the name (an
 * entry whose attributes are not to be kept: a file open here), the name and attributes.
 */
export const KEEP = { nothing: 0, name: 1, all: 2 } as const;
export type Keep = (typeof KEEP)[keyof typeof KEEP];

const ADDON = 'strata_fuse3.node';
export const NATIVE_HINT = 'install libfuse3-dev, pkg-config and a C++ compiler (apt-get install -y libfuse3-dev pkg-config g++ make), then run: npm run build:native';

let loaded: Fuse3Binding | undefined;

/** The binding, or one clear line on what to install and how to rebuild. */
export function loadFuse3(): Fuse3Binding {
  if (loaded) return loaded;
  const here = path.dirname(fileURLToPath(import.meta.url));
  // From fuse/lowlevel (sources, tests) or dist/fuse/lowlevel (built).
  const candidates = ['../..', '../../..'].map((up) => path.resolve(here, up, 'build', 'Release', ADDON));
  const file = candidates.find((candidate) => existsSync(candidate));
  if (!file) throw new StrataError('Unavailable', `the libfuse 3 binding is not built (${ADDON} missing): ${NATIVE_HINT}, or mount with --binding fuse2`);
  let binding: Fuse3Binding;
  try {
    binding = createRequire(import.meta.url)(file) as Fuse3Binding;
  } catch (err) {
    throw new StrataError('Unavailable', `the libfuse 3 binding does not load (${(err as Error).message.split('\n')[0]}): ${NATIVE_HINT}`);
  }
  // Built from older sources (a checkout updated without `npm ci`): say so rather than fail per request.
  if (typeof binding.replyDirPacked !== 'function' || typeof binding.answersValidFor !== 'function' || binding.packedFields !== PACKED_FIELDS.length) throw new StrataError('Unavailable', `the libfuse 3 binding (${file}) is older than this code: run npm run build:native`);
  loaded = binding;
  return loaded;
}
