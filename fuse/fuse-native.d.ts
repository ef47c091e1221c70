// Types for fuse-native 2.2.6 (CommonJS, no typings of its own): only what strata uses.
// Callback conventions are the binding's: `cb(0, ...)` or `cb(-errno)`; read and write answer
// with the byte count (`cb(n)`) or a negative errno.
declare module 'fuse-native' {
  namespace Fuse {
    type Done = (result: number) => void;

    interface Stat {
      mode: number;
      uid: number;
      gid: number;
      size: number;
      nlink: number;
      /** 32 bits on the wire (the binding's stat array). */
      ino?: number;
      blksize?: number;
      blocks?: number;
      /** Milliseconds since the epoch (the binding accepts numbers or Dates). */
      atime: number;
      mtime: number;
      ctime: number;
    }

    interface StatFs {
      bsize: number;
      frsize: number;
      /** Each field is 32 bits on the wire. */
      blocks: number;
      bfree: number;
      bavail: number;
      files: number;
      ffree: number;
      favail: number;
      fsid?: number;
      flag?: number;
      namemax: number;
    }

    interface Operations {
      init?(cb: Done): void;
      getattr?(path: string, cb: (result: number, stat?: Stat) => void): void;
      readdir?(path: string, cb: (result: number, names?: string[], stats?: Stat[]) => void): void;
      readlink?(path: string, cb: (result: number, target?: string) => void): void;
      statfs?(path: string, cb: (result: number, statfs?: StatFs) => void): void;
      open?(path: string, flags: number, cb: (result: number, fd?: number) => void): void;
      create?(path: string, mode: number, cb: (result: number, fd?: number) => void): void;
      read?(path: string, fd: number, buffer: Buffer, length: number, position: number, cb: Done): void;
      write?(path: string, fd: number, buffer: Buffer, length: number, position: number, cb: Done): void;
      flush?(path: string, fd: number, cb: Done): void;
      fsync?(path: string, datasync: number, fd: number, cb: Done): void;
      release?(path: string, fd: number, cb: Done): void;
      truncate?(path: string, size: number, cb: Done): void;
      ftruncate?(path: string, fd: number, size: number, cb: Done): void;
      unlink?(path: string, cb: Done): void;
      rename?(from: string, to: string, cb: Done): void;
      link?(from: string, to: string, cb: Done): void;
      /** `target` is the link's content, `path` the new link. */
      symlink?(target: string, path: string, cb: Done): void;
      mkdir?(path: string, mode: number, cb: Done): void;
      rmdir?(path: string, cb: Done): void;
      chmod?(path: string, mode: number, cb: Done): void;
      chown?(path: string, uid: number, gid: number, cb: Done): void;
      /** Milliseconds since the epoch. */
      utimens?(path: string, atime: number, mtime: number, cb: Done): void;
    }

    interface Options {
      /** Per-op deadline in ms, after which the binding answers ETIMEDOUT itself; false = none. */
      timeout?: number | false;
      force?: boolean;
      mkdir?: boolean;
      debug?: boolean;
      allowOther?: boolean;
      defaultPermissions?: boolean;
      fsname?: string;
      subtype?: string;
    }
  }

  class Fuse {
    constructor(mountpoint: string, ops: Fuse.Operations, options?: Fuse.Options);
    readonly mnt: string;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    /** The `-o` argument handed to libfuse; overridden to add options the binding lacks. */
    protected _fuseOptions(): string;
    static unmount(mountpoint: string, cb: (err: Error | null) => void): void;
  }

  export = Fuse;
}
