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
