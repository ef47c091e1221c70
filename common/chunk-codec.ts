// The on-disk chunk format (see FORMAT.md beside this file): a checksummed head (header and block
// table) followed by independently LZ4-compressed blocks, so a small ranged read touches one block
// and every byte handed out has been verified against two crc32c values. An encrypted chunk
// (version 3; version 2 still reads) also seals each block, after compression, with AES-256-GCM
// under a data key of its own, wrapped by a master key in its header: the GCM tag is checked too,
// before decompression. In version 3 the blocks' tags do not cover the key section, so a master
// key rotation re-wraps the data key in the head and leaves every block as it is (chunk-rewrap.ts).
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { compress, compressSync, uncompress } from 'lz4-napi';
import { crc32c } from '@node-rs/crc32';
import { StrataError, invalid } from './errors.js';
import { DATA_KEY_BYTES, keyUnavailable, noMasterKey, type KeyRing, type KeyWrapper } from './master-key.js';

export const CHUNK_MAGIC = 'STRC';
export const FORMAT_VERSION = 1;
/** Encrypted chunks: version 1's layout plus a key section in the header and sealed blocks. */
export const SEALED_FORMAT_VERSION = 3;
/** Encrypted chunks written before version 3: the blocks' tags also cover the key section. */
export const SEALED_V2_FORMAT_VERSION = 2;
const FLAG_SEALED = 1;
/** A GCM tag after each sealed block's ciphertext. */
export const SEAL_TAG_BYTES = 16;
const MAX_KEY_ID_BYTES = 64;
const MAX_WRAPPED_KEY_BYTES = 512;
/** The key section at most: key id length, key id, wrapped key length, wrapped key. */
export const MAX_KEY_SECTION_BYTES = 1 + MAX_KEY_ID_BYTES + 2 + MAX_WRAPPED_KEY_BYTES;
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
  /** Sealed (encrypted chunks): the payload is the codec's bytes under AES-256-GCM, then its tag. */
  sealed: boolean;
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
  /** The master key an encrypted chunk's data key is wrapped by; undefined for a plain chunk. */
  keyId?: string;
}

/**
 * One chunk's encryption: a fresh random data key, used for that one chunk only, and the same key
 * wrapped by the master key (what the header stores). With a key per chunk, a block's nonce can
 * be its index: no nonce is ever used twice under one key. An encoder takes a seal once.
 */
export interface ChunkSeal {
  readonly dataKey: Buffer;
  readonly keyId: string;
  readonly wrappedKey: Buffer;
  used?: boolean;
}

export async function newChunkSeal(wrapper: KeyWrapper): Promise<ChunkSeal> {
  const dataKey = randomBytes(DATA_KEY_BYTES);
  const wrappedKey = await wrapper.wrap(dataKey);
  const keyIdBytes = Buffer.byteLength(wrapper.keyId);
  if (keyIdBytes < 1 || keyIdBytes > MAX_KEY_ID_BYTES || wrappedKey.length < 1 || wrappedKey.length > MAX_WRAPPED_KEY_BYTES) {
    throw new Error(`chunk codec: key id of ${keyIdBytes} bytes or wrapped key of ${wrappedKey.length} bytes out of bounds`);
  }
  return { dataKey, keyId: wrapper.keyId, wrappedKey };
}

function keySectionBytes(seal: Pick<ChunkSeal, 'keyId' | 'wrappedKey'> | undefined): number {
  return seal ? 1 + Buffer.byteLength(seal.keyId) + 2 + seal.wrappedKey.length : 0;
}

/** The nonce of block `index` (under a data key used for one chunk only). */
function blockNonce(index: number): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeUInt32LE(index, 0);
  return nonce;
}

/** What a block's tag also covers: the header (id, lengths, key) and the block's codec. */
function blockAad(headerAad: Buffer, codecByte: number): Buffer {
  return Buffer.concat([headerAad, Buffer.of(codecByte)]);
}

function sealBlock(dataKey: Buffer, headerAad: Buffer, index: number, codecByte: number, inner: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-gcm', dataKey, blockNonce(index));
  cipher.setAAD(blockAad(headerAad, codecByte));
  const first = cipher.update(inner);
  const last = cipher.final();
  return Buffer.concat([first, last, cipher.getAuthTag()], inner.length + SEAL_TAG_BYTES);
}

/** The codec's bytes of a sealed block, or null when its tag does not hold. */
function openBlock(dataKey: Buffer, headerAad: Buffer, index: number, codecByte: number, stored: Buffer): Buffer | null {
  try {
    const decipher = createDecipheriv('aes-256-gcm', dataKey, blockNonce(index));
    decipher.setAAD(blockAad(headerAad, codecByte));
    decipher.setAuthTag(stored.subarray(stored.length - SEAL_TAG_BYTES));
    const inner = stored.subarray(0, stored.length - SEAL_TAG_BYTES);
    const first = decipher.update(inner);
    const last = decipher.final();
    return last.length === 0 ? first : Buffer.concat([first, last]);
  } catch {
    return null;
  }
}

/**
 * Bytes before the first block payload: the writer reserves them and fills them in last.
 * `keySection`: an encrypted chunk's key section bytes (0 for a plain chunk).
 */
export function headSizeBytes(chunkId: string, rawLengthBytes: number, blockSizeBytes = BLOCK_SIZE_BYTES, keySection = 0): number {
  const blockCount = Math.ceil(rawLengthBytes / blockSizeBytes);
  return FIXED_HEADER_BYTES + Buffer.byteLength(chunkId) + keySection + CRC_BYTES + blockCount * TABLE_ENTRY_BYTES + CRC_BYTES;
}

/**
 * The most bytes any valid encoding of a chunk of this length can have: the largest head (the
 * smallest block size a reader accepts, the largest key section), and every block stored raw
 * and sealed. What a receiver of someone else's encoding bounds it by.
 */
export function maxEncodingBytes(chunkId: string, rawLengthBytes: number): number {
  const blocks = Math.ceil(rawLengthBytes / MIN_BLOCK_SIZE_BYTES);
  return headSizeBytes(chunkId, rawLengthBytes, MIN_BLOCK_SIZE_BYTES, MAX_KEY_SECTION_BYTES) + rawLengthBytes + blocks * SEAL_TAG_BYTES;
}

interface Sealing {
  dataKey: Buffer;
  headerAad: Buffer;
}

async function encodeBlock(raw: Buffer, index: number, sealing: Sealing | undefined): Promise<{ entry: BlockEntry; stored: Buffer }> {
  const rawCrc = crc32c(raw);
  let codec: BlockCodec = 'raw';
  let inner = raw;
  if (worthCompressing(raw)) {
    // A small block compresses in less time than a threadpool round trip takes.
    const packed = raw.length <= SYNC_COMPRESS_MAX_BYTES ? compressSync(raw) : await compress(raw);
    if (packed.length < raw.length) {
      codec = 'lz4';
      inner = packed;
    }
  }
  if (sealing) {
    // Sealed after compression: ciphertext does not compress.
    const stored = sealBlock(sealing.dataKey, sealing.headerAad, index, codecByteOf(codec), inner);
    return { entry: { codec, sealed: true, storedBytes: stored.length, rawBytes: raw.length, storedCrc: crc32c(stored), rawCrc }, stored };
  }
  const storedCrc = codec === 'raw' ? rawCrc : crc32c(inner);
  return { entry: { codec, sealed: false, storedBytes: inner.length, rawBytes: raw.length, storedCrc, rawCrc }, stored: inner };
}

function codecByteOf(codec: BlockCodec): number {
  return codec === 'lz4' ? CODEC_LZ4 : CODEC_RAW;
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
  /** The header up to its crc: known up front, and what every sealed block's tag covers. */
  private readonly header: Buffer;
  private readonly sealing: Sealing | undefined;

  /**
   * `seal`: encrypt this chunk (a fresh seal from newChunkSeal, used by no other encoder).
   * `sealedVersion` 2: as writers before version 3 did (tests of chunks stored then).
   */
  constructor(
    readonly chunkId: string,
    readonly rawLengthBytes: number,
    seal?: ChunkSeal,
    sealedVersion: number = SEALED_FORMAT_VERSION,
  ) {
    if (!Number.isSafeInteger(rawLengthBytes) || rawLengthBytes < 0 || rawLengthBytes > MAX_CHUNK_BYTES) {
      throw invalid(`chunk ${chunkId}: length ${rawLengthBytes} outside 0..${MAX_CHUNK_BYTES} bytes`);
    }
    const idBytes = Buffer.byteLength(chunkId);
    if (idBytes < 1 || idBytes > MAX_CHUNK_ID_BYTES) throw invalid(`chunk id must be 1..${MAX_CHUNK_ID_BYTES} bytes`);
    if (seal?.used) throw new Error('ChunkEncoder: a data key seals one chunk only'); // block nonces would repeat
    if (seal) seal.used = true;
    this.payloadOffsetBytes = headSizeBytes(chunkId, rawLengthBytes, BLOCK_SIZE_BYTES, keySectionBytes(seal));
    this.header = encodeHeader(chunkId, rawLengthBytes, seal, sealedVersion);
    this.sealing = seal && { dataKey: seal.dataKey, headerAad: sealedAad(this.header, sealedVersion, idBytes) };
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
      const head = encodeHead(this.header, this.entries);
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
    const first = this.entries.length;
    const encoded = await Promise.all(rawBlocks.map((raw, i) => encodeBlock(raw, first + i, this.sealing)));
    for (const { entry } of encoded) {
      this.entries.push(entry);
      this.storedBytes += entry.storedBytes;
    }
    return encoded.map((block) => block.stored);
  }
}

/** What a sealed block's tag covers of the header: all of it in version 2; in 3 all but the key section. */
function sealedAad(header: Buffer, version: number, idBytes: number): Buffer {
  return version === SEALED_V2_FORMAT_VERSION ? header : header.subarray(0, FIXED_HEADER_BYTES + idBytes);
}

/** The header without its crc: a plain chunk's (version 1), or an encrypted one's with its key section. */
function encodeHeader(chunkId: string, rawLengthBytes: number, seal: Pick<ChunkSeal, 'keyId' | 'wrappedKey'> | undefined, sealedVersion = SEALED_FORMAT_VERSION): Buffer {
  const idBytes = Buffer.byteLength(chunkId);
  const header = Buffer.alloc(FIXED_HEADER_BYTES + idBytes + keySectionBytes(seal));
  header.write(CHUNK_MAGIC, 0, 'latin1');
  header.writeUInt16LE(seal ? sealedVersion : FORMAT_VERSION, 4);
  header.writeUInt16LE(seal ? FLAG_SEALED : 0, 6);
  header.writeUInt32LE(BLOCK_SIZE_BYTES, 8);
  header.writeBigUInt64LE(BigInt(rawLengthBytes), 12);
  header.writeUInt32LE(Math.ceil(rawLengthBytes / BLOCK_SIZE_BYTES), 20);
  header.writeUInt16LE(idBytes, 24);
  header.write(chunkId, FIXED_HEADER_BYTES, 'utf8');
  if (seal) {
    let at = FIXED_HEADER_BYTES + idBytes;
    at = header.writeUInt8(Buffer.byteLength(seal.keyId), at);
    at += header.write(seal.keyId, at, 'latin1');
    at = header.writeUInt16LE(seal.wrappedKey.length, at);
    seal.wrappedKey.copy(header, at);
  }
  return header;
}

function encodeHead(header: Buffer, entries: BlockEntry[]): Buffer {
  const tableStart = header.length + CRC_BYTES;
  const head = Buffer.alloc(tableStart + entries.length * TABLE_ENTRY_BYTES + CRC_BYTES);
  header.copy(head, 0);
  head.writeUInt32LE(crc32c(header), header.length);
  entries.forEach((entry, index) => {
    const at = tableStart + index * TABLE_ENTRY_BYTES;
    head.writeUInt8(codecByteOf(entry.codec), at);
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

/**
 * Verifies the head once, then serves verified raw bytes of any range block by block. An
 * encrypted chunk needs `keys` holding its master key: without, or with other keys, open fails
 * KeyUnavailable (never Corrupt: the bytes may be intact), before any block is read.
 */
export class ChunkReader {
  private constructor(
    readonly layout: ChunkLayout,
    private readonly source: ChunkSource,
    private readonly sealing: Sealing | undefined,
  ) {}

  static async open(chunkId: string, source: ChunkSource, keys?: KeyRing): Promise<ChunkReader> {
    const { layout, aad, wrappedKey } = await readChunkHead(chunkId, source);
    if (!layout.keyId || !wrappedKey) return new ChunkReader(layout, source, undefined);
    const what = `chunk ${chunkId} on ${source.location}`;
    if (!keys) throw noMasterKey(what, layout.keyId);
    let dataKey: Buffer;
    try {
      dataKey = await keys.get(layout.keyId, what).unwrap(wrappedKey);
    } catch (err) {
      if (err instanceof StrataError && err.kind === 'KeyUnavailable' && !err.message.startsWith(what)) throw keyUnavailable(`${what}: ${err.message}`);
      throw err;
    }
    if (dataKey.length !== DATA_KEY_BYTES) throw keyUnavailable(`${what}: master key '${layout.keyId}' unwrapped a ${dataKey.length}-byte data key`);
    return new ChunkReader(layout, source, { dataKey, headerAad: aad });
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
    let inner = stored;
    if (entry.sealed) {
      // The stored crc held, so the disk kept what was written: a tag that fails now means bytes
      // changed along with their crc, not a wrong key (the data key unwrapped).
      const opened = this.sealing && openBlock(this.sealing.dataKey, this.sealing.headerAad, index, codecByteOf(entry.codec), stored);
      if (!opened) throw damaged(this.layout.chunkId, `block ${index} failed authentication`, this.source);
      if (entry.codec === 'raw') {
        if (crc32c(opened) !== entry.rawCrc) throw mismatch();
        return opened;
      }
      inner = opened;
    }
    if (entry.codec === 'raw') return stored;
    let raw: Buffer;
    try {
      raw = await uncompress(inner);
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

export interface ChunkHead {
  layout: ChunkLayout;
  version: number;
  /** Bytes of the header and its crc: the block table starts there. */
  headerBytes: number;
  /** What sealed blocks' tags cover of the header. */
  aad: Buffer;
  wrappedKey?: Buffer;
}

/** The head (header and block table) read and checked, no block read. */
export async function readChunkHead(chunkId: string, source: ChunkSource): Promise<ChunkHead> {
  const idBytes = Buffer.byteLength(chunkId);
  const plainHeaderBytes = FIXED_HEADER_BYTES + idBytes + CRC_BYTES;
  let header = await source.readAt(0, plainHeaderBytes);
  if (header.length < plainHeaderBytes) throw truncated(chunkId, source);
  if (header.toString('latin1', 0, 4) !== CHUNK_MAGIC) throw damaged(chunkId, 'not a chunk file (bad magic)', source);
  const version = header.readUInt16LE(4);
  let headerBytes = plainHeaderBytes;
  let keyId: string | undefined;
  let wrappedKey: Buffer | undefined;
  if (version === SEALED_FORMAT_VERSION || version === SEALED_V2_FORMAT_VERSION) {
    // The key section's size is in the section itself: read the most it can be (fewer at the end).
    header = await source.readAt(0, plainHeaderBytes + MAX_KEY_SECTION_BYTES);
    const at = FIXED_HEADER_BYTES + idBytes;
    if (header.length < at + 1) throw truncated(chunkId, source);
    const keyIdBytes = header.readUInt8(at);
    if (header.length < at + 1 + keyIdBytes + 2) throw truncated(chunkId, source);
    const wrappedBytes = header.readUInt16LE(at + 1 + keyIdBytes);
    if (keyIdBytes < 1 || keyIdBytes > MAX_KEY_ID_BYTES || wrappedBytes < 1 || wrappedBytes > MAX_WRAPPED_KEY_BYTES) {
      throw damaged(chunkId, 'header checksum mismatch (key section out of range)', source);
    }
    headerBytes = at + 1 + keyIdBytes + 2 + wrappedBytes + CRC_BYTES;
    if (header.length < headerBytes) throw truncated(chunkId, source);
    header = header.subarray(0, headerBytes);
    keyId = header.toString('latin1', at + 1, at + 1 + keyIdBytes);
    wrappedKey = header.subarray(at + 1 + keyIdBytes + 2, headerBytes - CRC_BYTES);
  }
  if (crc32c(header.subarray(0, headerBytes - CRC_BYTES)) !== header.readUInt32LE(headerBytes - CRC_BYTES)) {
    throw damaged(chunkId, 'header checksum mismatch', source);
  }
  if (version !== FORMAT_VERSION && version !== SEALED_FORMAT_VERSION && version !== SEALED_V2_FORMAT_VERSION) throw damaged(chunkId, `unsupported format version ${version}`, source);
  const sealed = version !== FORMAT_VERSION;
  if (sealed && (header.readUInt16LE(6) & FLAG_SEALED) === 0) throw damaged(chunkId, 'header fields out of range', source);
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
      sealed,
      storedBytes: table.readUInt32LE(at + 4),
      rawBytes: table.readUInt32LE(at + 8),
      storedCrc: table.readUInt32LE(at + 12),
      rawCrc: table.readUInt32LE(at + 16),
    };
    const expectedRawBytes = Math.min(blockSizeBytes, rawLengthBytes - index * blockSizeBytes);
    // A sealed block is its codec's bytes plus a tag (and its stored crc is the ciphertext's).
    const innerBytes = sealed ? entry.storedBytes - SEAL_TAG_BYTES : entry.storedBytes;
    const consistent =
      (codecByte === CODEC_RAW || codecByte === CODEC_LZ4) &&
      entry.rawBytes === expectedRawBytes &&
      (entry.codec === 'raw'
        ? innerBytes === entry.rawBytes && (sealed || entry.storedCrc === entry.rawCrc)
        : innerBytes >= 0 && innerBytes < entry.rawBytes);
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
  const layout: ChunkLayout = { chunkId, blockSizeBytes, rawLengthBytes, blocks, blockOffsets, fileSizeBytes: offsetBytes, ...(keyId ? { keyId } : {}) };
  return { layout, version, headerBytes, aad: sealedAad(header.subarray(0, headerBytes - CRC_BYTES), version, idBytes), wrappedKey };
}
