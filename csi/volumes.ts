// A CSI volume is a directory under the base dir (default /volumes) with a byte quota: its
// capacity. The volume id is the directory's name, made from CreateVolume's name, so a retried
// create finds what the first made. A volume appears whole or not at all: it is made under a
// staging name, given its quota, then renamed into place.
import { createHash } from 'node:crypto';
import path from 'node:path/posix';
import { StrataError, exists, invalid } from '../common/errors.js';
import type { Strata } from '../client/index.js';
import type { CapacityRange, Volume } from './proto.js';

/** What a volume id may be: also a safe single path component ('.'/'..'/'' and slashes excluded). */
const VOLUME_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** The spec bans these in a name: control characters other than common whitespace. */
const BANNED_IN_NAME = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/;
/** New volume directories are open to every pod user: the pod's own security context narrows it. */
const VOLUME_DIR_MODE = 0o777;

export const isVolumeId = (id: string) => VOLUME_ID.test(id);

/** The name itself when it is a safe directory name (Kubernetes' pvc-<uuid> is), else a digest of it. */
export function volumeIdOf(name: string): string {
  if (BANNED_IN_NAME.test(name)) throw invalid('name has control characters the CSI spec bans');
  return isVolumeId(name) ? name : `v-${createHash('sha256').update(name).digest('hex').slice(0, 40)}`;
}

/** The byte quota a create asks for: required_bytes, else limit_bytes, else 0 (no limit). */
export function requestedCapacity(range: CapacityRange | null | undefined): number {
  const required = range?.requiredBytes ?? 0;
  const limit = range?.limitBytes ?? 0;
  for (const [field, value] of [['required_bytes', required], ['limit_bytes', limit]] as const) {
    if (!Number.isSafeInteger(value) || value < 0) throw invalid(`capacity_range.${field} ${value} is not a byte count`);
  }
  if (limit > 0 && required > limit) throw invalid(`capacity_range: required_bytes ${required} is more than limit_bytes ${limit}`);
  return required || limit;
}

/** Whether a volume of `capacity` (0 = no limit) answers a request for `range`. */
export function capacityFits(capacity: number, range: CapacityRange | null | undefined): boolean {
  const required = range?.requiredBytes ?? 0;
  const limit = range?.limitBytes ?? 0;
  if (!required && !limit) return true;
  if (capacity === 0) return false;
  return capacity >= required && (!limit || capacity <= limit);
}

export class Volumes {
  constructor(
    private readonly client: Strata,
    readonly baseDir: string,
  ) {}

  pathOf(volumeId: string): string {
    return path.join(this.baseDir, volumeId);
  }

  /** The volume's capacity (0 = no byte limit), or undefined when there is no such volume. */
  async capacityOf(volumeId: string): Promise<number | undefined> {
    if (!isVolumeId(volumeId)) return undefined;
    const dir = this.pathOf(volumeId);
    try {
      const stat = await this.client.stat(dir);
      if (!stat.isDirectory()) throw exists(`${dir} (a volume's name, taken by something other than a directory)`);
    } catch (err) {
      if (err instanceof StrataError && err.kind === 'NotFound') return undefined;
      throw err;
    }
    try {
      return (await this.client.quotaGet(dir)).limitBytes;
    } catch (err) {
      if (err instanceof StrataError && err.kind === 'NotFound') return 0;
      throw err;
    }
  }

  /** Makes the volume, or answers the one a former call made if its capacity fits; else Exists. */
  async create(name: string, range: CapacityRange | null | undefined): Promise<Volume> {
    const volumeId = volumeIdOf(name);
    const capacity = requestedCapacity(range);
    const existing = await this.capacityOf(volumeId);
    if (existing !== undefined) return this.answer(volumeId, existing, range);

    const staging = path.join(this.baseDir, `.creating-${volumeId}`);
    await this.client.mkdir(this.baseDir, { parents: true, mode: 0o755 });
    // What a create that died half-way left: never visible as a volume, so safe to drop.
    await this.client.rm(staging, { recursive: true }).catch((err) => {
      if (!(err instanceof StrataError && err.kind === 'NotFound')) throw err;
    });
    await this.client.mkdir(staging, { mode: VOLUME_DIR_MODE });
    if (capacity > 0) await this.client.quotaSet(staging, { bytes: capacity });
    try {
      await this.client.rename(staging, this.pathOf(volumeId));
    } catch (err) {
      // Another controller made it meanwhile (rename does not replace a non-empty directory).
      const now = await this.capacityOf(volumeId);
      if (now === undefined) throw err;
      await this.client.rm(staging, { recursive: true }).catch(() => undefined);
      return this.answer(volumeId, now, range);
    }
    return { volumeId, capacityBytes: capacity, volumeContext: {} };
  }

  /** Removes the volume and everything in it; an unknown id is already deleted. */
  async delete(volumeId: string): Promise<void> {
    if (!isVolumeId(volumeId)) return;
    try {
      await this.client.rm(this.pathOf(volumeId), { recursive: true });
    } catch (err) {
      if (!(err instanceof StrataError && err.kind === 'NotFound')) throw err;
    }
  }

  private answer(volumeId: string, capacity: number, range: CapacityRange | null | undefined): Volume {
    if (!capacityFits(capacity, range)) {
      const has = capacity ? `a capacity of ${capacity} bytes` : 'no byte limit';
      const asked = `${range?.requiredBytes || 0}..${range?.limitBytes || 'any'}`;
      throw new StrataError('Exists', `volume ${volumeId} already exists with ${has}; the request asks for ${asked} bytes (use another name, or the same capacity)`);
    }
    return { volumeId, capacityBytes: capacity, volumeContext: {} };
  }
}
