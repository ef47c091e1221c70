// Turns on keys within this process: callers that would all compare and rewrite one key take
// it in turn instead of racing. Racing N optimistic transactions on one key (mkdir and rmdir on a
// directory's subdirectory count, s/<ino>) commits one per round: O(N^2) attempts, and on a
// loaded etcd the last ones of a burst took tens of seconds (each loser reads again and backs
// off). Taking turns commits each on its first attempt. Across coordinators nothing changes: the
// transactions still compare what they read.

export class KeyTurns {
  /** The end of each key's line: resolves when the last caller in it released. */
  private readonly tails = new Map<string, Promise<void>>();

  /** Waits for the turn on every key (taken in sorted order, so two callers never deadlock); returns the release (idempotent). */
  async take(keys: string[]): Promise<() => void> {
    const releases: Array<() => void> = [];
    for (const key of [...new Set(keys)].sort()) releases.push(await this.takeOne(key));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const release of releases.reverse()) release();
    };
  }

  /** Keys someone holds or waits for now (tests). */
  get busy(): number {
    return this.tails.size;
  }

  private async takeOne(key: string): Promise<() => void> {
    const before = this.tails.get(key);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = before ? before.then(() => mine) : mine;
    this.tails.set(key, tail);
    await before;
    return () => {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
  }
}
