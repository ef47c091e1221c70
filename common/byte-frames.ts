// The byte path's wire format: length-prefixed frames on a plain TCP connection, one request at a
// time per connection. A frame is [u32 BE payload length][u8 type][payload]. Control frames
// (request, reply, error) carry JSON; data frames carry chunk bytes as they are. Every limit is
// checked before a byte of the payload is buffered, so a peer cannot make us hold more than
// one frame's worth. Any violation is Invalid and ends that connection only.
import type { Socket } from 'node:net';
import { StrataError, invalid, isErrorKind } from './errors.js';
import { clipMessage } from './limits.js';

export const FRAME_HEADER_BYTES = 5;
/** A data frame's payload at most: the largest piece the gRPC path accepts too. */
export const MAX_DATA_FRAME_BYTES = 4 * 1024 * 1024;
/** A control frame's JSON at most: a pipeline of 16 nodes and a tier copy fit many times over. */
export const MAX_CONTROL_FRAME_BYTES = 64 * 1024;

export const FrameType = {
  Request: 1,
  Data: 2,
  End: 3,
  Reply: 4,
  Error: 5,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

const TYPES = new Set<number>(Object.values(FrameType));

export type Frame =
  | { type: typeof FrameType.Data; data: Buffer }
  | { type: typeof FrameType.Request | typeof FrameType.Reply | typeof FrameType.Error; body: unknown }
  | { type: typeof FrameType.End };

/** A frame header and its payload, for socket.write (the payload is never copied). */
export function frameOf(type: FrameType, payload: Buffer = EMPTY): Buffer[] {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32BE(payload.length, 0);
  header.writeUInt8(type, 4);
  return payload.length > 0 ? [header, payload] : [header];
}

export function controlFrame(type: typeof FrameType.Request | typeof FrameType.Reply | typeof FrameType.Error, body: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(body));
  if (json.length > MAX_CONTROL_FRAME_BYTES) throw invalid(`byte path: control frame of ${json.length} bytes exceeds ${MAX_CONTROL_FRAME_BYTES}`);
  return Buffer.concat(frameOf(type, json));
}

export function errorFrame(err: StrataError): Buffer {
  // Clipped: a message quoting client input must not outgrow the control frame limit.
  return controlFrame(FrameType.Error, { kind: err.kind, message: clipMessage(err.message) });
}

/** An Error frame's body back into the StrataError it was; a malformed one is Internal. */
export function errorFromBody(body: unknown, peer: string): StrataError {
  const { kind, message } = (body ?? {}) as { kind?: unknown; message?: unknown };
  const text = typeof message === 'string' ? message : `${peer}: request failed`;
  return new StrataError(typeof kind === 'string' && isErrorKind(kind) ? kind : 'Internal', text);
}

const EMPTY = Buffer.alloc(0);

/** How a parser treats data frames (a client sets it per request; between requests it is idle). */
export interface DataFrameMode {
  /** Largest data payload accepted. */
  maxDataBytes: number;
  /**
   * Hand out a data payload as the slices of the socket's reads it arrived in, without copying:
   * for consumers that only pass bytes on (a client reading). Otherwise a payload is assembled
   * into one buffer (one copy), which is what stores and forwards want.
   */
  slices: boolean;
}

export const ASSEMBLED: DataFrameMode = { maxDataBytes: MAX_DATA_FRAME_BYTES, slices: false };

/** Splits a byte stream into frames; control payloads are parsed as JSON. */
export class FrameParser {
  mode: DataFrameMode = ASSEMBLED;
  private header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  private headerFilled = 0;
  private payload: Buffer | null = null;
  private payloadFilled = 0;
  /** Bytes of a sliced data payload still to come. */
  private sliceRemaining = 0;
  private type = 0;

  /** Frames completed by `chunk`, in order; throws Invalid on a malformed or oversized frame. */
  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.sliceRemaining > 0) {
        const taken = Math.min(this.sliceRemaining, chunk.length - at);
        frames.push({ type: FrameType.Data, data: chunk.subarray(at, at + taken) });
        this.sliceRemaining -= taken;
        at += taken;
        continue;
      }
      if (this.payload === null) {
        const taken = Math.min(FRAME_HEADER_BYTES - this.headerFilled, chunk.length - at);
        chunk.copy(this.header, this.headerFilled, at, at + taken);
        this.headerFilled += taken;
        at += taken;
        if (this.headerFilled < FRAME_HEADER_BYTES) break;
        this.headerFilled = 0;
        const length = this.header.readUInt32BE(0);
        this.type = this.header.readUInt8(4);
        checkFrame(this.type, length, this.mode.maxDataBytes);
        if (this.type === FrameType.Data && this.mode.slices) {
          this.sliceRemaining = length;
          continue;
        }
        this.payload = length === 0 ? EMPTY : Buffer.allocUnsafe(length);
        this.payloadFilled = 0;
      }
      const taken = Math.min(this.payload.length - this.payloadFilled, chunk.length - at);
      chunk.copy(this.payload, this.payloadFilled, at, at + taken);
      this.payloadFilled += taken;
      at += taken;
      if (this.payloadFilled === this.payload.length) {
        frames.push(decode(this.type, this.payload));
        this.payload = null;
      }
    }
    return frames;
  }
}

function checkFrame(type: number, length: number, maxDataBytes: number): void {
  if (!TYPES.has(type)) throw invalid(`byte path: unknown frame type ${type}`);
  if (type === FrameType.Data) {
    if (length > maxDataBytes) throw invalid(`byte path: data frame of ${length} bytes exceeds ${maxDataBytes}`);
  } else if (type === FrameType.End) {
    if (length !== 0) throw invalid('byte path: an end frame carries no payload');
  } else if (length > MAX_CONTROL_FRAME_BYTES) {
    throw invalid(`byte path: control frame of ${length} bytes exceeds ${MAX_CONTROL_FRAME_BYTES}`);
  }
}

function decode(type: number, payload: Buffer): Frame {
  if (type === FrameType.Data) return { type, data: payload };
  if (type === FrameType.End) return { type };
  let body: unknown;
  try {
    body = JSON.parse(payload.toString('utf8'));
  } catch {
    throw invalid('byte path: a control frame is not JSON');
  }
  return { type: type as typeof FrameType.Request, body };
}

/**
 * Frames of one socket as an async queue with backpressure: the socket is paused while
 * `maxQueued` frames wait for the consumer, so TCP flow control slows the sender and a
 * connection holds at most a few frames. Ends with null when the peer closed cleanly.
 */
export class FrameQueue {
  private readonly parser = new FrameParser();
  private readonly queued: Frame[] = [];
  private waiter: { resolve: (frame: Frame | null) => void; reject: (err: unknown) => void } | null = null;
  private failure: unknown = null;
  private ended = false;

  constructor(
    private readonly socket: Socket,
    private readonly maxQueued = 2,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.finish(null));
    socket.on('close', () => this.finish(null));
    socket.on('error', (err) => this.finish(err));
  }

  /** The next frame; null once the peer closed; rejects on a malformed frame or socket error. */
  next(): Promise<Frame | null> {
    const frame = this.queued.shift();
    if (frame) {
      if (this.queued.length < this.maxQueued && !this.ended) this.socket.resume();
      return Promise.resolve(frame);
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** How the next data frames are handed out; set only between requests. */
  setMode(mode: DataFrameMode): void {
    this.parser.mode = mode;
  }

  /** Stops parsing: what arrives from now on is dropped (after an error reply, say). */
  discard(): void {
    this.socket.removeAllListeners('data');
    this.socket.on('data', () => {});
    this.socket.resume();
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.parser.push(chunk);
    } catch (err) {
      this.discard();
      this.finish(err);
      return;
    }
    for (const frame of frames) {
      const waiter = this.waiter;
      if (waiter) {
        this.waiter = null;
        waiter.resolve(frame);
      } else {
        this.queued.push(frame);
      }
    }
    if (this.queued.length >= this.maxQueued) this.socket.pause();
  }

  private finish(err: unknown): void {
    if (this.ended) return;
    this.ended = true;
    if (err) this.failure = err;
    const waiter = this.waiter;
    this.waiter = null;
    if (!waiter) return;
    if (err) waiter.reject(err);
    else waiter.resolve(null);
  }
}

/** Writes frames, resolving once the socket can take more (its buffer drained). */
export async function writeFrames(socket: Socket, buffers: Buffer[]): Promise<void> {
  let ok = true;
  if (buffers.length > 1) socket.cork();
  for (const buffer of buffers) ok = socket.write(buffer);
  if (buffers.length > 1) socket.uncork();
  if (!ok && !socket.destroyed) await drained(socket);
}

function drained(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      socket.off('drain', onDrain);
      socket.off('close', onClose);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onClose = () => {
      cleanup();
      reject(new StrataError('Unavailable', 'byte path: connection closed'));
    };
    socket.on('drain', onDrain);
    socket.on('close', onClose);
  });
}
