// What a lease push and a lease grant carry on the session stream: one shape for the coordinator
// that sends them and the client that reads them.

/** What changed: `{ ino, name }` the entry `name` in directory `ino`; `{ ino }` the inode's attributes. */
export interface Invalidation {
  ino: number;
  name?: string;
}

export interface LeasePush {
  pushId: number;
  events: Invalidation[];
  /** Drop everything (the coordinator may have missed changes). */
  all?: boolean;
}

export interface LeaseGrant {
  epoch: number;
  /** From the coordinator's receipt of the request; the client counts from its send time. */
  validForMs: number;
}
