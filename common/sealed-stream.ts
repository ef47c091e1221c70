// An encrypted object of any length, written and read as a stream (export objects and manifests):
// a header naming the master key and holding a fresh data key wrapped by it, then segments of
// SEGMENT_BYTES sealed with AES-256-GCM. Segment i's nonce is i plus a flag on the final segment
// (the STREAM construction), so segments cannot be reordered, dropped or cut off at the end
// without the tag failing; a data key per object means no nonce ever repeats under a key.
//
//   magic "STRE" (4) | version 1 (1) | keyIdLength k (1) | keyId (k) | wrappedLength w (2, LE)
//   | wrappedKey (w) | segmentBytes (4, LE) | segments: ciphertext ‖ tag (16) ...
//
// The last segment is shorter than segmentBytes (possibly empty: then just its tag) and is
// always there. Every segment's AAD is the header.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { StrataError } from './errors.js';
import { DATA_KEY_BYTES, keyUnavailable, noMasterKey, type KeyRing } from './master-key.js';

export const SEALED_STREAM_MAGIC = 'STRE';
const VERSION = 1;
const TAG_BYTES = 16;
export const SEGMENT_BYTES = 1024 * 1024;
const MAX_SEGMENT_BYTES = 16 * 1024 * 1024;
/** The most a header can be: fixed fields, a 255-byte key id, a 512-byte wrapped key. */
const MAX_HEADER_BYTES = 4 + 1 + 1 + 255 + 2 + 512 + 4;

/** True when `head` (an object's first bytes, at least 4) is a sealed stream. */
export function isSealedStream(head: Buffer): boolean {
  return head.length >= 4 && head.toString('latin1', 0, 4) === SEALED_STREAM_MAGIC;
}

function nonce(index: number, final: boolean): Buffer {
  const bytes = Buffer.alloc(12);
  bytes.writeUInt32LE(index, 0);
  bytes[11] = final ? 1 : 0;
  return bytes;
}

/** Encrypts what passes through; `what` names the object in errors. */
export class SealingStream extends Transform {
  private header: Buffer | null = null;
  private dataKey: Buffer | null = null;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private index = 0;

  constructor(private readonly keys: KeyRing) {
    super();
  }

  override _transform(piece: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.start().then(() => {
      this.pending.push(piece);
      this.pendingBytes += piece.length;
      // A segment goes out only once a byte beyond it has come: the final one is known at the end.
      while (this.pendingBytes > SEGMENT_BYTES) {
        const all = Buffer.concat(this.pending, this.pendingBytes);
        this.push(this.seal(all.subarray(0, SEGMENT_BYTES), false));
        this.pending = [all.subarray(SEGMENT_BYTES)];
        this.pendingBytes = all.length - SEGMENT_BYTES;
      }
      done();
    }, done);
  }

  override _flush(done: TransformCallback): void {
    this.start().then(() => {
      this.push(this.seal(Buffer.concat(this.pending, this.pendingBytes), true));
      this.pending = [];
      done();
    }, done);
  }

  private async start(): Promise<void> {
    if (this.header) return;
    const dataKey = randomBytes(DATA_KEY_BYTES);
    const wrapped = await this.keys.current.wrap(dataKey);
    const keyId = Buffer.from(this.keys.current.keyId, 'latin1');
    const header = Buffer.alloc(4 + 1 + 1 + keyId.length + 2 + wrapped.length + 4);
    let at = header.write(SEALED_STREAM_MAGIC, 0, 'latin1');
    at = header.writeUInt8(VERSION, at);
    at = header.writeUInt8(keyId.length, at);
    at += keyId.copy(header, at);
    at = header.writeUInt16LE(wrapped.length, at);
    at += wrapped.copy(header, at);
    header.writeUInt32LE(SEGMENT_BYTES, at);
    this.header = header;
    this.dataKey = dataKey;
    this.push(header);
  }

  private seal(plain: Buffer, final: boolean): Buffer {
    const cipher = createCipheriv('aes-256-gcm', this.dataKey!, nonce(this.index++, final));
    cipher.setAAD(this.header!);
    return Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
  }
}

/**
 * Decrypts a sealed stream: KeyUnavailable (naming `what`) without the master key it names,
 * Corrupt when a segment fails its tag or the stream ends early. Nothing unverified comes out.
 */
export class OpeningStream extends Transform {
  private header: Buffer | null = null;
  private dataKey: Buffer | null = null;
  private segmentBytes = 0;
  private buffered: Buffer = Buffer.alloc(0);
  private index = 0;

  constructor(
    private readonly keys: KeyRing | undefined,
    private readonly what: string,
  ) {
    super();
  }

  override _transform(piece: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.buffered = this.buffered.length === 0 ? piece : Buffer.concat([this.buffered, piece]);
    this.drain(false).then(() => done(), done);
  }

  override _flush(done: TransformCallback): void {
    this.drain(true).then(() => done(), done);
  }

  private async drain(ending: boolean): Promise<void> {
    if (!this.header && !(await this.readHeader(ending))) return;
    const sealedSegment = this.segmentBytes + TAG_BYTES;
    // Hold one whole segment back until more comes: only the end says which segment is final.
    while (this.buffered.length > sealedSegment) {
      this.push(this.open(this.buffered.subarray(0, sealedSegment), false));
      this.buffered = this.buffered.subarray(sealedSegment);
    }
    if (!ending) return;
    if (this.buffered.length < TAG_BYTES) throw this.damaged('it ends early');
    this.push(this.open(this.buffered, true));
    this.buffered = Buffer.alloc(0);
  }

  /** False while the header has not all arrived (and more may come). */
  private async readHeader(ending: boolean): Promise<boolean> {
    const bytes = this.buffered;
    const need = (n: number) => {
      if (bytes.length >= n) return true;
      if (ending || bytes.length >= MAX_HEADER_BYTES) throw this.damaged('its header is cut short');
      return false;
    };
    if (!need(6)) return false;
    if (!isSealedStream(bytes) || bytes[4] !== VERSION) throw this.damaged('not an encrypted strata object (bad magic or version)');
    const keyIdBytes = bytes[5];
    if (!need(6 + keyIdBytes + 2)) return false;
    const keyId = bytes.toString('latin1', 6, 6 + keyIdBytes);
    const wrappedBytes = bytes.readUInt16LE(6 + keyIdBytes);
    const headerBytes = 6 + keyIdBytes + 2 + wrappedBytes + 4;
    if (!need(headerBytes)) return false;
    const segmentBytes = bytes.readUInt32LE(headerBytes - 4);
    if (segmentBytes < 1 || segmentBytes > MAX_SEGMENT_BYTES) throw this.damaged('its segment size is out of range');
    if (!this.keys) throw noMasterKey(this.what, keyId);
    let dataKey: Buffer;
    try {
      dataKey = await this.keys.get(keyId, this.what).unwrap(bytes.subarray(6 + keyIdBytes + 2, headerBytes - 4));
    } catch (err) {
      if (err instanceof StrataError && err.kind === 'KeyUnavailable' && !err.message.startsWith(this.what)) throw keyUnavailable(`${this.what}: ${err.message}`);
      throw err;
    }
    this.header = Buffer.from(bytes.subarray(0, headerBytes));
    this.dataKey = dataKey;
    this.segmentBytes = segmentBytes;
    this.buffered = bytes.subarray(headerBytes);
    return true;
  }

  private open(sealed: Buffer, final: boolean): Buffer {
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.dataKey!, nonce(this.index, final));
      decipher.setAAD(this.header!);
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]);
      this.index++;
      return plain;
    } catch {
      throw this.damaged(`segment ${this.index} failed authentication`);
    }
  }

  private damaged(detail: string): StrataError {
    return new StrataError('Corrupt', `${this.what}: encrypted object is damaged (${detail})`);
  }
}

/** A whole buffer sealed (a manifest). */
export async function sealBuffer(keys: KeyRing, plain: Buffer): Promise<Buffer> {
  return collect(new SealingStream(keys), plain);
}

/** A whole sealed buffer opened. */
export async function openBuffer(keys: KeyRing | undefined, sealed: Buffer, what: string): Promise<Buffer> {
  return collect(new OpeningStream(keys, what), sealed);
}

function collect(stream: Transform, input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    stream.on('data', (piece: Buffer) => out.push(piece));
    stream.once('error', reject);
    stream.once('end', () => resolve(Buffer.concat(out)));
    stream.end(input);
  });
}
