// Per-handle read cache with read-ahead. The kernel reads in pieces of at most 128 KiB; a
// sequential reader gets whole chunks fetched once (and the next ones fetched while it
// reads this one), a random reader gets small aligned windows. A segment is served as its
// bytes arrive: a read waits only for the bytes it asks for, not for the whole chunk, and
// the pieces are kept as received (a read inside one piece is a view, not a copy).
// Segments carry the file's data version and are dropped once a commit or truncate changed
// the stored bytes. Memory: at most MAX_SEGMENTS segments (each at most a chunk) per handle.

/** Window of a random (non-sequential) read: small, so a 4 KiB read does not pull a chunk. */
const RANDOM_WINDOW_BYTES = 128 * 1024;
/** Whole chunks fetched ahead of a sequential reader (each a transfer overlapping the rest). */
const READ_AHEAD_CHUNKS = 2;
/** Segments kept per handle: the current chunk, those read ahead, one random window. */
const MAX_SEGMENTS = READ_AHEAD_CHUNKS + 2;

export interface StoredBytes {
  chunkSize: number;
  /** Bytes stored in the cluster as this mount knows it (reads past it are zeros). */
  storedSize: number;
  /** Bumped whenever stored bytes change under this mount (commit, truncate). */
  version: number;
  /** Stored bytes [start, end) in order, exactly end - start of them. */
  stream(start: number, end: number): AsyncIterable<Buffer>;
}

/** Stored bytes [start, end) arriving in pieces; readers wait for the part they need. */
class Segment {
  private readonly pieces: Buffer[] = [];
  /** Offset (from `start`) of each piece. */
  private readonly offsets: number[] = [];
  private received = 0;
  private finished = false;
  private failure: unknown;
  private waiters: (() => void)[] = [];

  constructor(
    readonly start: number,
    readonly end: number,
    readonly version: number,
    source: AsyncIterable<Buffer>,
    onFailure: () => void,
  ) {
    this.pump(source).catch((err) => {
      this.failure = err;
      onFailure();
    }).finally(() => {
      this.finished = true;
      this.wakeAll();
    });
  }

  /** Bytes [from, to) (absolute, within the segment), once received. */
  async read(from: number, to: number): Promise<Buffer> {
    const needed = to - this.start;
    while (this.received < needed) {
      if (this.failure !== undefined) throw this.failure;
      if (this.finished) throw new Error(`short read: ${this.received} of ${this.end - this.start} bytes`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return this.slice(from - this.start, needed);
  }

  private async pump(source: AsyncIterable<Buffer>): Promise<void> {
    for await (const piece of source) {
      if (piece.length === 0) continue;
      this.offsets.push(this.received);
      this.pieces.push(piece);
      this.received += piece.length;
      this.wakeAll();
    }
  }

  private wakeAll(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** [from, to) relative to `start`: a view when one piece holds it, else a copy. */
  private slice(from: number, to: number): Buffer {
    let i = this.pieceAt(from);
    const first = this.pieces[i];
    const within = from - this.offsets[i];
    if (within + (to - from) <= first.length) return first.subarray(within, within + (to - from));
    const out = Buffer.allocUnsafe(to - from);
    for (let at = 0; at < out.length; i++) {
      const pieceFrom = from + at - this.offsets[i];
      at += this.pieces[i].copy(out, at, pieceFrom, Math.min(this.pieces[i].length, pieceFrom + out.length - at));
    }
    return out;
  }

  /** Index of the piece holding relative offset `at` (binary search: pieces are in order). */
  private pieceAt(at: number): number {
    let low = 0;
    let high = this.offsets.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.offsets[mid] <= at) low = mid;
      else high = mid - 1;
    }
    return low;
  }
}

export class ReadCache {
  private segments: Segment[] = [];
  /** Where the last read ended: a read starting there continues a sequential stream. */
  private lastEnd = 0;

  /** Stored bytes [start, end) of one chunk (end ≤ storedSize), from cache or fetched. */
  async read(file: StoredBytes, start: number, end: number): Promise<Buffer> {
    this.segments = this.segments.filter((s) => s.version === file.version);
    // The kernel's read-ahead may deliver a stream's pieces slightly out of order.
    const sequential = Math.abs(start - this.lastEnd) <= 2 * RANDOM_WINDOW_BYTES;
    this.lastEnd = end;
    let segment = this.segments.find((s) => s.start <= start && end <= s.end);
    if (!segment) {
      const chunkStart = start - (start % file.chunkSize);
      const chunkEnd = Math.min(chunkStart + file.chunkSize, file.storedSize);
      const windowStart = sequential ? chunkStart : start - (start % RANDOM_WINDOW_BYTES);
      const windowEnd = sequential ? chunkEnd : Math.min(chunkEnd, roundUp(end, RANDOM_WINDOW_BYTES));
      segment = this.add(file, windowStart, windowEnd);
    }
    // A sequential stream reading whole chunks: fetch the next ones meanwhile.
    if (sequential && segment.end % file.chunkSize === 0) {
      for (let ahead = 0, next = segment.end; ahead < READ_AHEAD_CHUNKS && next < file.storedSize; ahead++, next += file.chunkSize) {
        if (!this.segments.some((s) => s.start === next)) this.add(file, next, Math.min(next + file.chunkSize, file.storedSize));
      }
    }
    return segment.read(start, end);
  }

  private add(file: StoredBytes, start: number, end: number): Segment {
    // A failed fetch must not stay cached; read-ahead failures are reported when read.
    const segment: Segment = new Segment(start, end, file.version, file.stream(start, end), () => {
      this.segments = this.segments.filter((s) => s !== segment);
    });
    this.segments.push(segment);
    if (this.segments.length > MAX_SEGMENTS) this.segments.shift();
    return segment;
  }
}

function roundUp(value: number, unit: number): number {
  return Math.ceil(value / unit) * unit;
}
