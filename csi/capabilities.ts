// Which volume capabilities a strata volume has: a directory mounted with FUSE, so the mount
// access type only, and every access mode whose promise holds when any number of nodes may read
// and write at once. MULTI_NODE_SINGLE_WRITER is refused: it promises that only one of the nodes
// writes, which nothing here would enforce.
import { invalid } from '../common/errors.js';
import type { AccessModeName, VolumeCapability } from './proto.js';

const SUPPORTED_MODES: ReadonlySet<AccessModeName> = new Set([
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_READER_ONLY',
  'MULTI_NODE_READER_ONLY',
  'MULTI_NODE_MULTI_WRITER',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
]);
const READ_ONLY_MODES: ReadonlySet<AccessModeName> = new Set(['SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY']);
/** The file system is always strata's; these names of it are accepted, '' meaning unspecified. */
const FS_TYPES = new Set(['', 'strata', 'fuse', 'fuse.strata']);
const MOUNT_FLAGS = new Set(['ro', 'rw']);

/** Required fields of a capability (the spec's "missing required field": INVALID_ARGUMENT). */
export function requireWellFormed(capability: VolumeCapability, what = 'volume capability'): void {
  const mode = capability.accessMode?.mode;
  if (!mode || mode === 'UNKNOWN') throw invalid(`${what}: access_mode is required`);
  if (!capability.accessType) throw invalid(`${what}: access_type (mount or block) is required`);
}

/** Why strata cannot give a well-formed capability, or undefined when it can. */
export function unsupportedReason(capability: VolumeCapability): string | undefined {
  if (capability.accessType === 'block') return 'block access is not supported: a strata volume is a file system (use access type mount)';
  const mode = capability.accessMode?.mode ?? 'UNKNOWN';
  if (!SUPPORTED_MODES.has(mode)) return `access mode ${mode} is not supported (supported: ${[...SUPPORTED_MODES].join(', ')})`;
  const fsType = capability.mount?.fsType ?? '';
  if (!FS_TYPES.has(fsType)) return `fs_type '${fsType}' is not supported: a strata volume is always a strata (FUSE) file system; leave it empty`;
  const flags = (capability.mount?.mountFlags ?? []).filter((flag) => !MOUNT_FLAGS.has(flag));
  if (flags.length > 0) return `mount flags ${flags.join(', ')} are not supported (only ro, rw)`;
  return undefined;
}

/** Both checks, as CreateVolume and NodePublishVolume need them: any failure is INVALID_ARGUMENT. */
export function requireSupported(capability: VolumeCapability, what = 'volume capability'): void {
  requireWellFormed(capability, what);
  const reason = unsupportedReason(capability);
  if (reason) throw invalid(`${what}: ${reason}`);
}

/** A reader-only mode or an `ro` mount flag: the volume is published read-only whatever `readonly` says. */
export function impliesReadOnly(capability: VolumeCapability): boolean {
  return READ_ONLY_MODES.has(capability.accessMode?.mode ?? 'UNKNOWN') || (capability.mount?.mountFlags ?? []).includes('ro');
}
