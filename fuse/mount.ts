// `strata mount`: the binding picked by --binding. Each is loaded only when picked, so a machine
// without libfuse 2 still mounts with fuse3, and one without the built addon with fuse2.
import type { Logger } from '../common/log.js';
import type { MountConfig } from './config.js';

export async function runMount(config: MountConfig, log: Logger): Promise<number> {
  if (config.binding === 'fuse3') return (await import('./lowlevel/mount.js')).runLowLevelMount(config, log);
  return (await import('./fuse2-mount.js')).runFuse2Mount(config, log);
}
