// Who owns what an SDK program or the CLI makes when it names no owner: its process's uid and gid,
// as a local file system would give them (the mount names its kernel caller's instead). Without
// process ids (Windows): root, as before.
import type { Owner } from './inodes.js';

export function processOwner(): Owner {
  return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
}
