// Group commit for the chunk store: concurrent writers share one fsync instead of paying one each.
// A wave is one call of `flush` over every item queued when it starts; items that arrive while a
// wave runs wait for the next one, because the running wave may have started before their own
// write happened and so cannot cover it.
import { open, type FileHandle } from 'node:fs/promises';

interface Member<T> {
  item: T;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class CommitWave<T> {
  private queued: Member<T>[] = [];
  private running: Promise<void> | null = null;

  /**
   * `flush` makes every item of a wave durable, or throws: then every member of that wave fails
   * and the next wave still runs. At most one flush runs at a time. A wave holds at most `maxItems`
   * items and, given `limit`, at most `limit.maxWeight` of their total weight (but always one item).
   */
  constructor(
    private readonly flush: (items: T[]) => Promise<void>,
    private readonly maxItems = 1024,
    private readonly limit?: { weigh: (item: T) => number; maxWeight: number },
  ) {}

  /** Resolves once a wave that started after this call has flushed `item`. */
  submit(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queued.push({ item, resolve, reject });
      this.running ??= this.drain();
    });
  }

  /** Resolves when nothing is queued or running. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    // One turn of the event loop first: writers whose previous step completed in this turn join
    // the first wave instead of waiting a whole wave for the second.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.queued.length > 0) {
      const wave = this.queued.splice(0, this.nextWaveItems());
      try {
        await this.flush(wave.map((member) => member.item));
        for (const member of wave) member.resolve();
      } catch (err) {
        for (const member of wave) member.reject(err);
      }
    }
    this.running = null;
  }

  private nextWaveItems(): number {
    const count = Math.min(this.queued.length, this.maxItems);
    if (!this.limit) return count;
    let weight = this.limit.weigh(this.queued[0].item);
    let taken = 1;
    while (taken < count) {
      weight += this.limit.weigh(this.queued[taken].item);
      if (weight > this.limit.maxWeight) break;
      taken++;
    }
    return taken;
  }
}

/**
 * fsync of directories, one wave per directory: writers that renamed into the same directory
 * while an fsync of it was running share the next fsync. Different directories sync in parallel.
 * Each directory's handle stays open (a chunk store has 256 shard directories, so at most 256 fds):
 * a sync is then one blocking call on the libuv threadpool instead of open, fsync and close. That
 * assumes a directory is never replaced while its handle is cached; the store never removes one.
 */
export class DirSync {
  private readonly waves = new Map<string, CommitWave<void>>();
  private readonly handles = new Map<string, Promise<FileHandle>>();

  sync(dir: string): Promise<void> {
    let wave = this.waves.get(dir);
    if (!wave) {
      wave = new CommitWave<void>(() => this.fsync(dir));
      this.waves.set(dir, wave);
    }
    return wave.submit();
  }

  /** Waits for the running syncs, then closes the handles. */
  async close(): Promise<void> {
    await Promise.all([...this.waves.values()].map((wave) => wave.idle()));
    const handles = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(handles.map(async (handle) => (await handle.catch(() => null))?.close().catch(() => {})));
  }

  private async fsync(dir: string): Promise<void> {
    let handle = this.handles.get(dir);
    if (!handle) {
      handle = open(dir, 'r');
      this.handles.set(dir, handle);
    }
    try {
      await (await handle).sync();
    } catch (err) {
      // Dropped (as is a failed open): the next wave opens the directory afresh.
      if (this.handles.get(dir) === handle) this.handles.delete(dir);
      void handle.then((h) => h.close()).catch(() => {});
      throw err;
    }
  }
}

/** Like Promise.all, but settles every promise before throwing the first failure: whoever cleans up
 * after a failure must not race a step still running. */
export async function settleAll(promises: Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(promises)).find((result) => result.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

// A rename or unlink is durable only once the directory itself is fsynced.
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
