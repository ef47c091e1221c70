// Per-handle read cache with read-ahead. The kernel reads in pieces of at most 128 KiB; a
// sequential reader gets whole chunks fetched once (and the next ones fetched while it
// reads this one), a random reader gets small aligned windows. Segments carry the file's
// data version and are dropped once a commit or truncate changed the stored bytes.

/** Window of a random (non-sequential) read: small, so a 4 KiB read does not pull a chunk. */
const RANDOM_WINDOW_BYTES = 128 * 1024;
/** Whole chunks fetched ahead of a sequential reader (each a transfer overlapping the rest). */
const READ_AHEAD_CHUNKS = 2;
/** Segments kept per handle: the current chunk, those read ahead, one random window. */
const MAX_SEGMENTS = READ_AHEAD_CHUNKS + 2;

interface Segment {
  start: number;
  end: number;
  version: number;
  data: Promise<Buffer>;
}

export interface StoredBytes {
  chunkSize: number;
  /** Bytes stored in the cluster as this mount knows it (reads past it are zeros). */
  storedSize: number;
  /** Bumped whenever stored bytes change under this mount (commit, truncate). */
  version: number;
  fetch(start: number, end: number): Promise<Buffer>;
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
    const data = await segment.data;
    return data.subarray(start - segment.start, end - segment.start);
  }

  private add(file: StoredBytes, start: number, end: number): Segment {
    const segment: Segment = { start, end, version: file.version, data: file.fetch(start, end) };
    // A failed fetch must not stay cached; read-ahead failures are reported when read.
    segment.data.catch(() => {
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
