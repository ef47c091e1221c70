// Name and path rules, checked once at the edge that receives them (the coordinator's services and
// session ops; the mount and the CLI check the same before sending). Wire limits: common/limits.ts.
// A name is 1..255 bytes of UTF-8, not '.' or '..', without '/' or NUL, and well-formed: protobuf
// strings arrive decoded, and bytes that were not UTF-8 arrive as U+FFFD, so a name holding U+FFFD
// (or a lone surrogate, which encodes as U+FFFD) is refused rather than stored as another name
// than the client meant (ZFS's utf8only does the same). Paths are absolute, at most 4096 bytes;
// empty components and '.' are dropped and '..' resolves lexically, never above the root, so a
// path can never name anything outside the tree it is resolved in.
import { invalid } from './errors.js';
import { quoted } from './limits.js';

export const NAME_MAX_BYTES = 255;
export const PATH_MAX_BYTES = 4096;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function validateName(name: string): string {
  if (typeof name !== 'string' || name.length === 0) throw invalid('invalid name: empty');
  if (name === '.' || name === '..') throw invalid(`invalid name '${name}': reserved`);
  if (Buffer.byteLength(name) > NAME_MAX_BYTES) {
    throw invalid(`invalid name '${name.slice(0, 32)}…': longer than ${NAME_MAX_BYTES} bytes`);
  }
  if (name.includes('/')) throw invalid(`invalid name ${quoted(name)}: contains '/'`);
  if (name.includes('\0')) throw invalid(`invalid name ${quoted(name)}: contains NUL`);
  if (name.includes('\uFFFD') || LONE_SURROGATE.test(name)) throw invalid(`invalid name ${quoted(name)}: not valid UTF-8`);
  return name;
}

/**
 * Splits an absolute path into validated components. Empty components and '.' are
 * dropped ('/a//b/./c' = '/a/b/c'); '..' is resolved lexically, never above the root.
 */
export function splitPath(path: string): string[] {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw invalid(`invalid path ${quoted(path)}: must be absolute (start with '/')`);
  }
  if (Buffer.byteLength(path) > PATH_MAX_BYTES) throw invalid(`invalid path: longer than ${PATH_MAX_BYTES} bytes`);
  const components: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      components.pop();
      continue;
    }
    components.push(validateName(part));
  }
  return components;
}

/** Parent components and final name; the root has no name. */
export function splitParent(path: string): { parent: string[]; name: string } {
  const components = splitPath(path);
  const name = components.pop();
  if (name === undefined) throw invalid(`invalid path ${quoted(path)}: the root has no parent`);
  return { parent: components, name };
}
