// Name and path rules, checked once at the edge that receives them.
import { invalid } from './errors.js';

export const NAME_MAX_BYTES = 255;
export const PATH_MAX_BYTES = 4096;

export function validateName(name: string): string {
  if (name.length === 0) throw invalid('invalid name: empty');
  if (name === '.' || name === '..') throw invalid(`invalid name '${name}': reserved`);
  if (name.includes('/')) throw invalid(`invalid name '${name}': contains '/'`);
  if (name.includes('\0')) throw invalid(`invalid name ${JSON.stringify(name)}: contains NUL`);
  if (Buffer.byteLength(name) > NAME_MAX_BYTES) {
    throw invalid(`invalid name '${name.slice(0, 32)}…': longer than ${NAME_MAX_BYTES} bytes`);
  }
  return name;
}

/**
 * Splits an absolute path into validated components. Empty components and '.' are
 * dropped ('/a//b/./c' = '/a/b/c'); '..' is resolved lexically, never above the root.
 */
export function splitPath(path: string): string[] {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw invalid(`invalid path '${path}': must be absolute (start with '/')`);
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
  if (name === undefined) throw invalid(`invalid path '${path}': the root has no parent`);
  return { parent: components, name };
}
