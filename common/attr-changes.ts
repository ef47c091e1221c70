// Attribute changes (chmod, chown, truncate, utimes), as the SDK sends them and the coordinator
// applies them: one shape on both sides of the wire.

/**
 * A time marked `Now` is the coordinator's clock at the change, as utimensat's UTIME_NOW: a writer
 * of the file may set that, a chosen time needs its owner (the marked time's own value, if any, is ignored).
 */
export interface AttrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  mtimeMs?: number;
  atimeMs?: number;
  size?: number;
  atimeNow?: boolean;
  mtimeNow?: boolean;
}
