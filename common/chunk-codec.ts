// The on-disk chunk format (see FORMAT.md beside this file): a checksummed head (header and block
// table) followed by independently LZ4-compressed blocks, so a small ranged read touches one block
// and every byte handed out has been verified against two crc32c values.
import { compress, compressSync, uncompress } from 'lz4-napi';
import { crc32c } from '@node-rs/crc32';
import { StrataError, invalid } from './errors.js';

export const CHUNK_MAGIC = 'STRC';
export const FORMAT_VERSION = 1;
export const BLOCK_SIZE_BYTES = 256 * 1024;
export const DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024;
export const MAX_CHUNK_BYTES = 64 * 1024 * 1024;

const FIXED_HEADER_BYTES = 26; // magic 4, version 2, flags 2, blockSize 4, rawLength 8, blockCount 4, idLength 2
const CRC_BYTES = 4;
const TABLE_ENTRY_BYTES = 20;
const MAX_CHUNK_ID_BYTES = 128;
// Bounds a reader accepts for a recorded block size: other sizes are a damaged header, not a choice.
const MIN_BLOCK_SIZE_BYTES = 4 * 1024;
const MAX_BLOCK_SIZE_BYTES = 16 * 1024 * 1024;
// Compressing incompressible data costs several ms per MiB; a small sample predicts the outcome.
const SAMPLE_BYTES = 8 * 1024;
/** Blocks up to this size compress on the calling thread (LZ4: ~40 µs for 32 KiB). */
const SYNC_COMPRESS_MAX_BYTES = 32 * 1024;
const SAMPLE_MAX_RATIO = 0.9;

const CODEC_RAW = 0;
const CODEC_LZ4 = 1;
export type BlockCodec = 'raw' | 'lz4';

export interface BlockEntry {
  codec: BlockCodec;
  storedBytes: number;
  rawBytes: number;
  storedCrc: number;
  rawCrc: number;
}

export interface ChunkLayout {
  chunkId: string;
  blockSizeBytes: number;
  rawLengthBytes: number;
  blocks: BlockEntry[];
  /** File offset of each block's payload. */
  blockOffsets: number[];
  fileSizeBytes: number;
}

/** Bytes before the first block payload: the writer reserves them and fills them in last. */
export function headSizeBytes(chunkId: string, rawLengthBytes: number, blockSizeBytes = BLOCK_SIZE_BYTES): number {
  const blockCount = Math.ceil(rawLengthBytes / blockSizeBytes);
  return FIXED_HEADER_BYTES + Buffer.byteLength(chunkId) + CRC_BYTES + blockCount * TABLE_ENTRY_BYTES + CRC_BYTES;
}

async function encodeBlock(raw: Buffer): Promise<{ entry: BlockEntry; stored: Buffer }> {
  const rawCrc = crc32c(raw);
  if (worthCompressing(raw)) {
    // A small block compresses in less time than a threadpool round trip takes.
    const packed = raw.length <= SYNC_COMPRESS_MAX_BYTES ? compressSync(raw) : await compress(raw);
    if (packed.length < raw.length) {
      const entry: BlockEntry = { codec: 'lz4', storedBytes: packed.length, rawBytes: raw.length, storedCrc: crc32c(packed), rawCrc };
      return { entry, stored: packed };
    }
  }
  return { entry: { codec: 'raw', storedBytes: raw.length, rawBytes: raw.length, storedCrc: rawCrc, rawCrc }, stored: raw };
}

// The sample is compressed synchronously: ~35 µs, less than a threadpool round trip costs.
// It comes from the middle of the block, where a file's own header is least likely to sit.
function worthCompressing(raw: Buffer): boolean {
  if (raw.length <= 2 * SAMPLE_BYTES) return true;
  const start = (raw.length - SAMPLE_BYTES) >> 1;
  const packed = compressSync(raw.subarray(start, start + SAMPLE_BYTES));
  return packed.length <= SAMPLE_BYTES * SAMPLE_MAX_RATIO;
}

/**
 * Incremental encoder: feed pieces as they arrive, append the returned payloads to the file in order,
 * then write `head` at offset 0. Holds at most one partial block between calls.
 */
export class ChunkEncoder {
  readonly payloadOffsetBytes: number;
  private readonly entries: BlockEntry[] = [];
  private pending: Buffer | null = null;
  private pendingBytes = 0;
  private receivedBytes = 0;
  private storedBytes = 0;
  private busy = false;

  constructor(
    readonly chunkId: string,
    readonly rawLengthBytes: number,
  ) {
    if (!Number.isSafeInteger(rawLengthBytes) || rawLengthBytes < 0 || rawLengthBytes > MAX_CHUNK_BYTES) {
      throw invalid(`chunk ${chunkId}: length ${rawLengthBytes} outside 0..${MAX_CHUNK_BYTES} bytes`);
    }
    const idBytes = Buffer.byteLength(chunkId);
    if (idBytes < 1 || idBytes > MAX_CHUNK_ID_BYTES) throw invalid(`chunk id must be 1..${MAX_CHUNK_ID_BYTES} bytes`);
    this.payloadOffsetBytes = headSizeBytes(chunkId, rawLengthBytes);
  }

  /** Encoded payloads for every block this piece completed (possibly none). */
  async push(piece: Buffer): Promise<Buffer[]> {
    this.enter();
    try {
      if (this.receivedBytes + piece.length > this.rawLengthBytes) {
        throw invalid(`chunk ${this.chunkId}: more data than the declared ${this.rawLengthBytes} bytes`);
      }
      this.receivedBytes += piece.length;
      const rawBlocks: Buffer[] = [];
      let position = 0;
      while (position < piece.length) {
        // Whole blocks inside the piece are encoded in place: no copy.
        if (this.pendingBytes === 0 && piece.length - position >= BLOCK_SIZE_BYTES) {
          rawBlocks.push(piece.subarray(position, position + BLOCK_SIZE_BYTES));
          position += BLOCK_SIZE_BYTES;
          continue;
        }
        this.pending ??= Buffer.allocUnsafe(BLOCK_SIZE_BYTES);
        const copied = piece.copy(this.pending, this.pendingBytes, position, position + BLOCK_SIZE_BYTES - this.pendingBytes);
        this.pendingBytes += copied;
        position += copied;
        if (this.pendingBytes === BLOCK_SIZE_BYTES) {
          rawBlocks.push(this.pending);
          this.pending = null;
          this.pendingBytes = 0;
        }
      }
      return await this.encodeAll(rawBlocks);
    } finally {
      this.busy = false;
    }
  }

  /** The last payloads and the head; fails with Invalid when fewer bytes came than declared. */
  async finish(): Promise<{ payloads: Buffer[]; head: Buffer; fileSizeBytes: number; blocks: number }> {
    this.enter();
    try {
      if (this.receivedBytes !== this.rawLengthBytes) {
        throw invalid(`chunk ${this.chunkId}: declared ${this.rawLengthBytes} bytes, received ${this.receivedBytes}`);
      }
      const payloads = this.pending ? await this.encodeAll([this.pending.subarray(0, this.pendingBytes)]) : [];
      this.pending = null;
      const head = encodeHead(this.chunkId, this.rawLengthBytes, this.entries);
      if (head.length !== this.payloadOffsetBytes) throw new Error('chunk codec: head size differs from the reserved size');
      return { payloads, head, fileSizeBytes: head.length + this.storedBytes, blocks: this.entries.length };
    } finally {
      this.busy = false;
    }
  }

  private enter(): void {
    if (this.busy) throw new Error('ChunkEncoder: push/finish called before the previous call settled');
    this.busy = true;
  }

  // Blocks of one piece compress in parallel on the libuv threadpool; order is kept.
  private async encodeAll(rawBlocks: Buffer[]): Promise<Buffer[]> {
    const encoded = await Promise.all(rawBlocks.map(encodeBlock));
    for (const { entry } of encoded) {
      this.entries.push(entry);
      this.storedBytes += entry.storedBytes;
    }
    return encoded.map((block) => block.stored);
  }
}

function encodeHead(chunkId: string, rawLengthBytes: number, entries: BlockEntry[]): Buffer {
  const idBytes = Buffer.byteLength(chunkId);
  const tableStart = FIXED_HEADER_BYTES + idBytes + CRC_BYTES;
  const head = Buffer.alloc(tableStart + entries.length * TABLE_ENTRY_BYTES + CRC_BYTES);
  head.write(CHUNK_MAGIC, 0, 'latin1');
  head.writeUInt16LE(FORMAT_VERSION, 4);
  head.writeUInt16LE(0, 6);
  head.writeUInt32LE(BLOCK_SIZE_BYTES, 8);
  head.writeBigUInt64LE(BigInt(rawLengthBytes), 12);
  head.writeUInt32LE(entries.length, 20);
  head.writeUInt16LE(idBytes, 24);
  head.write(chunkId, FIXED_HEADER_BYTES, 'utf8');
  head.writeUInt32LE(crc32c(head.subarray(0, tableStart - CRC_BYTES)), tableStart - CRC_BYTES);
  entries.forEach((entry, index) => {
    const at = tableStart + index * TABLE_ENTRY_BYTES;
    head.writeUInt8(entry.codec === 'lz4' ? CODEC_LZ4 : CODEC_RAW, at);
    head.writeUInt32LE(entry.storedBytes, at + 4);
    head.writeUInt32LE(entry.rawBytes, at + 8);
    head.writeUInt32LE(entry.storedCrc, at + 12);
    head.writeUInt32LE(entry.rawCrc, at + 16);
  });
  const tableEnd = head.length - CRC_BYTES;
  head.writeUInt32LE(crc32c(head.subarray(tableStart, tableEnd)), tableEnd);
  return head;
}

/** Positional read; may return fewer bytes than asked only at end of file. */
export type ReadAt = (positionBytes: number, lengthBytes: number) => Promise<Buffer>;

export interface ChunkSource {
  readAt: ReadAt;
  sizeBytes: number;
  /** Where the file lives (the node's data dir), named in every Corrupt message. */
  location: string;
  /**
   * Blocks a reader fetches ahead of its consumer (default 1): more where a read is cheap but slow
   * to come back (a local file, each read a threadpool round trip), one where each read is a
   * request of its own (a tier's ranged GETs, soon made moot by the whole object).
   */
  readAheadBlocks?: number;
}

/** An encoding held in memory as a ChunkSource (inline chunks, fetched tier objects). */
export function bufferSource(bytes: Buffer, location: string): ChunkSource {
  return { readAt: async (at, n) => bytes.subarray(at, at + n), sizeBytes: bytes.length, location };
}

/** Verifies the head once, then serves verified raw bytes of any range block by block. */
export class ChunkReader {
  private constructor(
    readonly layout: ChunkLayout,
    private readonly source: ChunkSource,
  ) {}

  static async open(chunkId: string, source: ChunkSource): Promise<ChunkReader> {
    return new ChunkReader(await readLayout(chunkId, source), source);
  }

  /** Raw bytes of [offset, offset+length), clamped to the chunk, at most readAheadBlocks + 1 blocks in memory or being read. */
  async *read(offsetBytes: number, lengthBytes: number): AsyncGenerator<Buffer> {
    const { rawLengthBytes, blockSizeBytes } = this.layout;
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || offsetBytes > rawLengthBytes || !(lengthBytes >= 0)) {
      throw invalid(`chunk ${this.layout.chunkId}: range ${offsetBytes}+${lengthBytes} outside 0..${rawLengthBytes}`);
    }
    const endBytes = Math.min(rawLengthBytes, offsetBytes + lengthBytes);
    if (endBytes === offsetBytes) return;
    const firstBlock = Math.floor(offsetBytes / blockSizeBytes);
    const lastBlock = Math.floor((endBytes - 1) / blockSizeBytes);
    // Blocks read ahead, so disk reads (each a threadpool round trip) and decompression overlap
    // one another and the consumer (the network).
    const ahead: Promise<Buffer>[] = [];
    const blocksAhead = Math.max(1, this.source.readAheadBlocks ?? 1);
    let nextToRead = firstBlock;
    const fill = () => {
      while (nextToRead <= lastBlock && ahead.length <= blocksAhead) {
        const block = this.readBlock(nextToRead++);
        block.catch(() => {}); // observed in order below; unobserved if the consumer stops early
        ahead.push(block);
      }
    };
    for (let index = firstBlock; index <= lastBlock; index++) {
      fill(); // refilled only once the consumer is back: it is done with the block it was given
      const raw = await ahead.shift()!;
      const blockStart = index * blockSizeBytes;
      yield raw.subarray(Math.max(0, offsetBytes - blockStart), Math.min(raw.length, endBytes - blockStart));
    }
  }

  private async readBlock(index: number): Promise<Buffer> {
    const entry = this.layout.blocks[index];
    const stored = await this.source.readAt(this.layout.blockOffsets[index], entry.storedBytes);
    if (stored.length !== entry.storedBytes) throw truncated(this.layout.chunkId, this.source);
    const mismatch = () => damaged(this.layout.chunkId, `block ${index} checksum mismatch`, this.source);
    if (crc32c(stored) !== entry.storedCrc) throw mismatch();
    if (entry.codec === 'raw') return stored;
    let raw: Buffer;
    try {
      raw = await uncompress(stored);
    } catch {
      throw mismatch();
    }
    if (raw.length !== entry.rawBytes || crc32c(raw) !== entry.rawCrc) throw mismatch();
    return raw;
  }
}

function damaged(chunkId: string, what: string, source: ChunkSource): StrataError {
  return new StrataError('Corrupt', `chunk ${chunkId}: ${what} on ${source.location}`);
}

function truncated(chunkId: string, source: ChunkSource): StrataError {
  return damaged(chunkId, `file truncated (${source.sizeBytes} bytes)`, source);
}

async function readLayout(chunkId: string, source: ChunkSource): Promise<ChunkLayout> {
  const idBytes = Buffer.byteLength(chunkId);
  const headerBytes = FIXED_HEADER_BYTES + idBytes + CRC_BYTES;
  const header = await source.readAt(0, headerBytes);
  if (header.length < headerBytes) throw truncated(chunkId, source);
  if (header.toString('latin1', 0, 4) !== CHUNK_MAGIC) throw damaged(chunkId, 'not a chunk file (bad magic)', source);
  if (crc32c(header.subarray(0, headerBytes - CRC_BYTES)) !== header.readUInt32LE(headerBytes - CRC_BYTES)) {
    throw damaged(chunkId, 'header checksum mismatch', source);
  }
  const version = header.readUInt16LE(4);
  if (version !== FORMAT_VERSION) throw damaged(chunkId, `unsupported format version ${version}`, source);
  const blockSizeBytes = header.readUInt32LE(8);
  const rawLengthBytes = Number(header.readBigUInt64LE(12));
  const blockCount = header.readUInt32LE(20);
  if (header.readUInt16LE(24) !== idBytes || header.toString('utf8', FIXED_HEADER_BYTES, FIXED_HEADER_BYTES + idBytes) !== chunkId) {
    throw damaged(chunkId, 'file holds a different chunk', source);
  }
  if (
    blockSizeBytes < MIN_BLOCK_SIZE_BYTES || blockSizeBytes > MAX_BLOCK_SIZE_BYTES ||
    rawLengthBytes > MAX_CHUNK_BYTES || blockCount !== Math.ceil(rawLengthBytes / blockSizeBytes)
  ) {
    throw damaged(chunkId, 'header fields out of range', source);
  }

  const tableBytes = blockCount * TABLE_ENTRY_BYTES;
  const table = await source.readAt(headerBytes, tableBytes + CRC_BYTES);
  if (table.length < tableBytes + CRC_BYTES) throw truncated(chunkId, source);
  if (crc32c(table.subarray(0, tableBytes)) !== table.readUInt32LE(tableBytes)) {
    throw damaged(chunkId, 'block table checksum mismatch', source);
  }
  const blocks: BlockEntry[] = [];
  const blockOffsets: number[] = [];
  let offsetBytes = headerBytes + tableBytes + CRC_BYTES;
  for (let index = 0; index < blockCount; index++) {
    const at = index * TABLE_ENTRY_BYTES;
    const codecByte = table.readUInt8(at);
    const entry: BlockEntry = {
      codec: codecByte === CODEC_LZ4 ? 'lz4' : 'raw',
      storedBytes: table.readUInt32LE(at + 4),
      rawBytes: table.readUInt32LE(at + 8),
      storedCrc: table.readUInt32LE(at + 12),
      rawCrc: table.readUInt32LE(at + 16),
    };
    const expectedRawBytes = Math.min(blockSizeBytes, rawLengthBytes - index * blockSizeBytes);
    const consistent =
      (codecByte === CODEC_RAW || codecByte === CODEC_LZ4) &&
      entry.rawBytes === expectedRawBytes &&
      (entry.codec === 'raw'
        ? entry.storedBytes === entry.rawBytes && entry.storedCrc === entry.rawCrc
        : entry.storedBytes < entry.rawBytes);
    if (!consistent) throw damaged(chunkId, `block ${index} table entry inconsistent`, source);
    blocks.push(entry);
    blockOffsets.push(offsetBytes);
    offsetBytes += entry.storedBytes;
  }
  if (source.sizeBytes !== offsetBytes) {
    throw source.sizeBytes < offsetBytes
      ? truncated(chunkId, source)
      : damaged(chunkId, `file has ${source.sizeBytes - offsetBytes} trailing bytes`, source);
  }
  return { chunkId, blockSizeBytes, rawLengthBytes, blocks, blockOffsets, fileSizeBytes: offsetBytes };
}
