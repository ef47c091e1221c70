/// <reference path="./fuse-native.d.ts" />
// `strata mount --binding fuse2` (fuse-native, libfuse 2's high-level path-based API): serves a
// remote directory at a local mount point until SIGINT/SIGTERM/SIGHUP
// (or an external `fusermount -u`), then stores what open files still buffer and unmounts,
// falling back to fusermount/fusermount3 so no stale mount is left behind.
// This process serves its own mount: it must never do synchronous I/O on the mount point.
import { tokenProviderFrom } from '../client/auth/token-sources.js';
import path from 'node:path';
import Fuse from 'fuse-native';
import { Strata } from '../client/index.js';
import { StrataError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { AttrCache } from './cache.js';
import type { MountConfig } from './config.js';
import type { MountContext } from './context.js';
import { HandleTable } from './handles.js';
import { DirListings } from './listings.js';
import { createOperations, fetchWindow } from './ops.js';
import { checkMountpoint, flushOpenFiles, reportUnmount, stopSignals, unmountOnCrash, watchUnmount } from './lifecycle.js';
import { kernelChecksPermissions } from './permissions.js';
import { isMounted, unmountWithFallbacks } from './unmount.js';

/** fuse-native exposes no switch for these libfuse options; append them to its -o list. */
class StrataFuse extends Fuse {
  private readonly extraOptions: string[];

  constructor(mountpoint: string, ops: Fuse.Operations, options: Fuse.Options, extraOptions: string[]) {
    super(mountpoint, ops, options);
    this.extraOptions = extraOptions;
  }

  protected override _fuseOptions(): string {
    const base = super._fuseOptions();
    const extra = this.extraOptions.join(',');
    return base ? `${base},${extra}` : `-o${extra}`;
  }
}

export async function runFuse2Mount(config: MountConfig, log: Logger): Promise<number> {
  const mountpoint = path.resolve(config.mountpoint);
  await checkMountpoint(mountpoint);
  // Without a token file or STRATA_TOKEN: strata login's stored token (found under $HOME), if any.
  const tokenProvider = tokenProviderFrom({ tokenFile: config.tokenFile, token: config.token, env: process.env });
  const strata = Strata.connect({
    coordinators: config.coordinator,
    callTimeoutMs: config.callTimeoutMs,
    failoverTimeoutMs: config.callTimeoutMs,
    transferTimeoutMs: config.transferTimeoutMs,
    writeConcurrency: config.writeConcurrency,
    tokenProvider,
    tls: { ca: config.tlsCa, cert: config.tlsCert, key: config.tlsKey },
  });
  try {
    const root = await strata.stat(config.path);
    if (!root.isDirectory()) throw new StrataError('NotDir', `${config.path}: not a directory`);
  } catch (err) {
    strata.close();
    throw err;
  }
  const cache = new AttrCache(config.attrTimeoutMs);
  const listings = new DirListings(cache, (dir, after, count) => fetchWindow(ctx, dir, after, count), config.attrTimeoutMs);
  const ctx: MountContext = { strata, config, cache, listings, handles: new HandleTable(strata, config), log };
  const fuse = new StrataFuse(mountpoint, createOperations(ctx), fuseOptions(config, tokenProvider !== undefined), libfuseOptions(config));
  const signals = stopSignals();
  try {
    await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
  } catch (err) {
    strata.close();
    throw new StrataError('Internal', `cannot mount at ${mountpoint}: ${(err as Error).message}`, { cause: err });
  }
  const stopCrashGuard = unmountOnCrash(mountpoint, log);
  log.info({ mountpoint, remote: config.path }, 'mounted');
  console.log(`strata: mounted ${config.path} at ${mountpoint} (Ctrl-C or SIGTERM unmounts)`);

  watchUnmount(mountpoint, signals);
  const reason = await signals.stopped;
  log.info({ reason }, 'unmounting');
  await flushOpenFiles(ctx.handles, log, config.opTimeoutMs, signals.secondSignal);
  const failures = await unmount(fuse, mountpoint, log);
  strata.close();
  stopCrashGuard();
  return reportUnmount(mountpoint, failures);
}

function fuseOptions(config: MountConfig, authenticated: boolean): Fuse.Options {
  return {
    // Our own deadline (opTimeoutMs) answers EIO; the binding's would answer ETIMEDOUT.
    timeout: false,
    allowOther: config.allowOther,
    defaultPermissions: kernelChecksPermissions(config, authenticated),
    fsname: `strata:${config.path}`.replace(/[,\s]/g, '_'),
    subtype: 'strata',
  };
}

function libfuseOptions(config: MountConfig): string[] {
  const seconds = String(config.attrTimeoutMs / 1000);
  const options = [
    // 128 KiB writes instead of 4 KiB ones: 32× fewer round trips into this process.
    'big_writes',
    'max_write=131072',
    `attr_timeout=${seconds}`,
    `entry_timeout=${seconds}`,
    // Names another client creates show at once.
    'negative_timeout=0',
    // open(O_TRUNC) truncates in our open callback: one SetAttr instead of Stat, SetAttr, Stat.
    'atomic_o_trunc',
  ];
  if (config.readOnly) options.push('ro');
  return options;
}

async function unmount(fuse: StrataFuse, mountpoint: string, log: Logger): Promise<string[]> {
  if (!(await isMounted(mountpoint))) return [];
  const error = await new Promise<Error | null>((resolve) => fuse.unmount((err) => resolve(err)));
  if (!error) return (await isMounted(mountpoint)) ? unmountWithFallbacks(mountpoint) : [];
  log.warn({ err: error }, 'unmount failed; trying fusermount');
  return unmountWithFallbacks(mountpoint);
}
