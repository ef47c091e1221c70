// The session stream's framing over plain TCP (coordinator/session-tcp.ts, client/session-link.ts):
// the same SessionRequest / SessionReply protobuf messages as the gRPC Session method, each in a
// length-prefixed frame, without HTTP/2 underneath. A frame is [u32 BE payload length][u8 kind]
// [payload]. Kind 1 carries one protobuf message; kind 2 (coordinator to client only, last on a
// connection) closes the connection with a gRPC status, JSON {code, details}, as the gRPC stream
// would end with one. A frame's length is checked before a byte of its payload is buffered.
export const SESSION_FRAME_HEADER_BYTES = 5;

export const SessionFrameKind = {
  Message: 1,
  Close: 2,
} as const;

/** A frame the parser cannot take; `tooLarge` says it was over the size limit (not malformed). */
export class SessionFrameError extends Error {
  constructor(
    message: string,
    readonly tooLarge: boolean,
  ) {
    super(message);
  }
}

export type SessionFrame = { kind: typeof SessionFrameKind.Message; payload: Buffer } | { kind: typeof SessionFrameKind.Close; code: number; details: string };

/** One message frame (header and payload in one buffer: one socket write). */
export function messageFrame(payload: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(SESSION_FRAME_HEADER_BYTES + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.writeUInt8(SessionFrameKind.Message, 4);
  payload.copy(frame, SESSION_FRAME_HEADER_BYTES);
  return frame;
}

export function closeFrame(code: number, details: string): Buffer {
  const payload = Buffer.from(JSON.stringify({ code, details }));
  const frame = Buffer.allocUnsafe(SESSION_FRAME_HEADER_BYTES + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.writeUInt8(SessionFrameKind.Close, 4);
  payload.copy(frame, SESSION_FRAME_HEADER_BYTES);
  return frame;
}

/** What a close frame may carry at most. */
const MAX_CLOSE_BYTES = 16 * 1024;

/** Splits a byte stream into frames; throws SessionFrameError on a bad or oversized frame. */
export class SessionFrameParser {
  private header = Buffer.allocUnsafe(SESSION_FRAME_HEADER_BYTES);
  private headerFilled = 0;
  private payload: Buffer | null = null;
  private payloadFilled = 0;
  private kind = 0;

  /** `maxMessageBytes`: the largest message payload taken; bigger is refused before it is read. */
  constructor(private readonly maxMessageBytes: number) {}

  push(chunk: Buffer): SessionFrame[] {
    const frames: SessionFrame[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.payload === null) {
        // The common case, a whole small frame inside this read: no copy of the header.
        if (this.headerFilled === 0 && chunk.length - at >= SESSION_FRAME_HEADER_BYTES) {
          this.startFrame(chunk.readUInt32BE(at), chunk.readUInt8(at + 4));
          at += SESSION_FRAME_HEADER_BYTES;
          const length = this.payload!.length;
          if (chunk.length - at >= length && length > 0) {
            // Whole payload here too: a view of the read, not a copy (decoded before the next read).
            frames.push(this.finish(chunk.subarray(at, at + length)));
            at += length;
            continue;
          }
        } else {
          const taken = Math.min(SESSION_FRAME_HEADER_BYTES - this.headerFilled, chunk.length - at);
          chunk.copy(this.header, this.headerFilled, at, at + taken);
          this.headerFilled += taken;
          at += taken;
          if (this.headerFilled < SESSION_FRAME_HEADER_BYTES) break;
          this.headerFilled = 0;
          this.startFrame(this.header.readUInt32BE(0), this.header.readUInt8(4));
        }
      }
      const payload = this.payload!;
      const taken = Math.min(payload.length - this.payloadFilled, chunk.length - at);
      chunk.copy(payload, this.payloadFilled, at, at + taken);
      this.payloadFilled += taken;
      at += taken;
      if (this.payloadFilled === payload.length) frames.push(this.finish(payload));
    }
    return frames;
  }

  private startFrame(length: number, kind: number): void {
    if (kind === SessionFrameKind.Message) {
      if (length > this.maxMessageBytes) {
        throw new SessionFrameError(`session message of ${length} bytes is over the ${this.maxMessageBytes}-byte limit`, true);
      }
    } else if (kind === SessionFrameKind.Close) {
      if (length > MAX_CLOSE_BYTES) throw new SessionFrameError(`session close frame of ${length} bytes is over ${MAX_CLOSE_BYTES}`, false);
    } else {
      throw new SessionFrameError(`malformed session frame: unknown kind ${kind}`, false);
    }
    this.kind = kind;
    this.payload = length === 0 ? EMPTY : Buffer.allocUnsafe(length);
    this.payloadFilled = 0;
  }

  private finish(payload: Buffer): SessionFrame {
    this.payload = null;
    if (this.kind === SessionFrameKind.Message) return { kind: SessionFrameKind.Message, payload };
    let parsed: { code?: unknown; details?: unknown };
    try {
      parsed = JSON.parse(payload.toString('utf8'));
    } catch {
      throw new SessionFrameError('malformed session close frame: not JSON', false);
    }
    const code = Number(parsed?.code);
    return { kind: SessionFrameKind.Close, code: Number.isInteger(code) ? code : 2, details: typeof parsed?.details === 'string' ? parsed.details : '' };
  }
}

const EMPTY = Buffer.alloc(0);
