// One chunk of an open file with bytes written but not yet stored: the written ranges and
// their bytes. Chunks are immutable in the cluster, so a partly written chunk is completed
// (read-modify-write) from the chunk's old bytes, or zeros, when it is sealed for upload.

/** First allocation for a chunk written from scratch; small files never pay for a whole chunk. */
const MIN_BUFFER_BYTES = 64 * 1024;
/**
 * Whole-chunk buffers of stored chunks kept for the next chunks, per chunk size, mount-wide.
 * A sequential writer otherwise allocates a chunk (8 MiB) per chunk, and each such external
 * allocation pushes V8 towards a full GC that stalls every FUSE callback. Idle memory bound:
 * this many chunks per chunk size in use.
 */
const POOLED_BUFFERS_MAX = 4;
const pool = new Map<number, Buffer[]>();

export type Range = [from: number, to: number];

export class DirtyChunk {
  private buffer: Buffer = Buffer.alloc(0);
  /** Written byte ranges within the chunk: sorted, disjoint, not touching. */
  private ranges: Range[] = [];
  /** Set once complete: `bytes` is then the whole chunk as it will be stored. */
  sealed: Buffer | undefined;
  /** Reads using this chunk's bytes right now: its buffer is not recycled under them. */
  private pins = 0;
  private retired = false;

  constructor(
    readonly index: number,
    private readonly chunkSize: number,
  ) {}

  /** Copies `data` to `offset` within the chunk. `streaming`: a sequential writer will fill it. */
  write(offset: number, data: Buffer, streaming: boolean): void {
    if (this.sealed) throw new Error(`chunk ${this.index} is sealed`); // a programmer error: writers wait for uploads
    const to = offset + data.length;
    if (offset < 0 || to > this.chunkSize) throw new Error(`write [${offset}, ${to}) outside chunk`);
    this.reserve(streaming ? this.chunkSize : to);
    data.copy(this.buffer, offset);
    this.addRange(offset, to);
  }

  /** End of the last written byte (0 when nothing is written). */
  get end(): number {
    return this.sealed ? this.sealed.length : (this.ranges.at(-1)?.[1] ?? 0);
  }

  /** Whether [from, to) is entirely written (or sealed and within the chunk's bytes). */
  covers(from: number, to: number): boolean {
    if (this.sealed) return to <= this.sealed.length;
    return this.ranges.some(([a, b]) => a <= from && to <= b);
  }

  get full(): boolean {
    return this.covers(0, this.chunkSize);
  }

  /** Copies the written bytes that fall in [from, to) into `target`, `from` landing at `at`. */
  overlay(target: Buffer, at: number, from: number, to: number): void {
    const source = this.sealed ?? this.buffer;
    const ranges: Range[] = this.sealed ? [[0, this.sealed.length]] : this.ranges;
    for (const [a, b] of ranges) {
      const start = Math.max(a, from);
      const end = Math.min(b, to);
      if (start < end) source.copy(target, at + start - from, start, end);
    }
  }

  /** Parts of [0, length) not written: they must come from the old chunk or be zeros. */
  gaps(length: number): Range[] {
    const gaps: Range[] = [];
    let cursor = 0;
    for (const [a, b] of this.ranges) {
      if (a >= length) break;
      if (a > cursor) gaps.push([cursor, a]);
      cursor = Math.max(cursor, b);
    }
    if (cursor < length) gaps.push([cursor, length]);
    return gaps;
  }

  /** Drops written bytes at and after `length` (a truncate). */
  truncate(length: number): void {
    this.ranges = this.ranges.filter(([a]) => a < length).map(([a, b]): Range => [a, Math.min(b, length)]);
  }

  /**
   * Completes the chunk as `length` bytes: written bytes, then `base` (the old chunk's bytes
   * from offset 0) under the gaps, zeros past it. The chunk is immutable afterwards.
   */
  seal(length: number, base: Buffer | undefined): Buffer {
    if (this.sealed) return this.sealed;
    this.reserve(length);
    for (const [a, b] of this.gaps(length)) {
      const fromBase = base ? Math.max(a, Math.min(b, base.length)) : a;
      if (fromBase > a) base!.copy(this.buffer, a, a, fromBase);
      this.buffer.fill(0, fromBase, b);
    }
    this.sealed = this.buffer.subarray(0, length);
    this.ranges = [];
    return this.sealed;
  }

  /** Makes a sealed chunk writable again, all its bytes counted as written (a failed upload). */
  unseal(): void {
    if (!this.sealed) return;
    this.ranges = this.sealed.length > 0 ? [[0, this.sealed.length]] : [];
    this.sealed = undefined;
  }

  /** A read is using the chunk's bytes (across a wait): keep them until unpin(). */
  pin(): void {
    this.pins++;
  }

  unpin(): void {
    if (--this.pins === 0 && this.retired) this.recycle();
  }

  /**
   * The chunk is stored and no longer reachable from its file: its buffer goes back to the
   * pool once no read holds it. The chunk must not be used afterwards.
   */
  retire(): void {
    this.retired = true;
    if (this.pins === 0) this.recycle();
  }

  private recycle(): void {
    const buffer = this.buffer;
    this.buffer = Buffer.alloc(0);
    this.sealed = undefined;
    this.ranges = [];
    if (buffer.length !== this.chunkSize) return;
    let free = pool.get(this.chunkSize);
    if (!free) pool.set(this.chunkSize, (free = []));
    if (free.length < POOLED_BUFFERS_MAX) free.push(buffer);
  }

  /** Grows the buffer towards `needed` bytes: doubling, capped at the chunk size. */
  private reserve(needed: number): void {
    if (this.buffer.length >= needed) return;
    const size = Math.min(this.chunkSize, Math.max(needed, this.buffer.length * 2, MIN_BUFFER_BYTES));
    // Unwritten bytes are never read: overlay() reads only ranges, seal() fills the gaps.
    const grown = (size === this.chunkSize ? pool.get(size)?.pop() : undefined) ?? Buffer.allocUnsafe(size);
    this.buffer.copy(grown);
    this.buffer = grown;
  }

  private addRange(from: number, to: number): void {
    const last = this.ranges.at(-1);
    // The common case, a sequential writer, extends the last range in O(1).
    if (last && from >= last[0] && from <= last[1]) {
      last[1] = Math.max(last[1], to);
      return;
    }
    const kept: Range[] = [];
    let merged: Range = [from, to];
    for (const range of this.ranges) {
      if (range[1] < merged[0] || range[0] > merged[1]) kept.push(range);
      else merged = [Math.min(range[0], merged[0]), Math.max(range[1], merged[1])];
    }
    kept.push(merged);
    kept.sort((a, b) => a[0] - b[0]);
    this.ranges = kept;
  }
}
