// Whether the kernel checks permission bits for this mount (FUSE `default_permissions`): when other
// users may enter (--allow-other), and whenever the mount authenticates to the cluster (a token
// file, STRATA_TOKEN or a stored login): there a tenant's files belong to many users, and the mode
// bits of another user's file must hold for whoever mounted. Without either, the mount is its
// user's alone, as before (the kernel then asks this process, which refuses nothing by mode).
import type { MountConfig } from './config.js';

export function kernelChecksPermissions(config: Pick<MountConfig, 'allowOther'>, authenticated: boolean): boolean {
  return config.allowOther || authenticated;
}
