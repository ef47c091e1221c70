// Bounds the healing jobs share: one job at a time per chunk, and a byte rate for copies.

/** Chunks some job is working on (repair, move, or a GC delete): the others leave them alone. */
export class ChunkLocks {
  private readonly held = new Set<string>();
  tryLock(chunkId: string): boolean {
    if (this.held.has(chunkId)) return false;
    this.held.add(chunkId);
    return true;
  }
  unlock(chunkId: string): void {
    this.held.delete(chunkId);
  }
  get size(): number {
    return this.held.size;
  }
}

/** Paces copies to `bytesPerSec` in total (0 = unlimited): each copy waits its turn. */
export class ByteRate {
  private nextFreeMs = 0;
  constructor(private readonly bytesPerSec: number) {}

  async take(bytes: number): Promise<void> {
    if (this.bytesPerSec <= 0) return;
    const now = Date.now();
    const startMs = Math.max(now, this.nextFreeMs);
    this.nextFreeMs = startMs + (1000 * bytes) / this.bytesPerSec;
    if (startMs > now) await new Promise((resolve) => setTimeout(resolve, startMs - now));
  }
}

/**
 * Bytes that copies may have in flight at once: each copy holds its chunk's encoding in memory on
 * its source and its target, so with large chunks the count of copies alone would not bound that.
 * A copy larger than the whole budget runs alone.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: { bytes: number; resolve: () => void }[] = [];
  constructor(private readonly maxBytes: number) {}

  async take(bytes: number): Promise<void> {
    if (this.fits(bytes) && this.waiting.length === 0) {
      this.used += bytes;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push({ bytes, resolve }));
  }

  give(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
    while (this.waiting.length > 0 && this.fits(this.waiting[0]!.bytes)) {
      const next = this.waiting.shift()!;
      this.used += next.bytes;
      next.resolve();
    }
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.maxBytes;
  }
}
