// The client end of the byte path (common/byte-frames.ts): pooled TCP connections to data nodes'
// byte ports, one request at a time on each. A connection goes back to the pool only after a
// request ended cleanly; after any error it is closed, so a half-read reply never leaks into the
// next request. Deadlines: every request carries its time budget to the server, and the client
// cuts the connection itself when the budget is spent.
import net from 'node:net';
import { StrataError, asStrataError } from './errors.js';
import { tlsFailureReason, type TlsContext } from './tls.js';
import {
  ASSEMBLED,
  FrameQueue,
  FrameType,
  MAX_DATA_FRAME_BYTES,
  controlFrame,
  errorFromBody,
  frameOf,
  writeFrames,
  type DataFrameMode,
  type Frame,
} from './byte-frames.js';

/** One data message on the wire: large enough to amortise framing, far below the frame limit. */
export const BYTE_PIECE_BYTES = 1024 * 1024;
const MAX_IDLE_PER_ADDRESS = 8;
const SLICES: DataFrameMode = { maxDataBytes: MAX_DATA_FRAME_BYTES, slices: true };
const CONNECT_TIMEOUT_MS = 5_000;
/** An idle pooled connection is closed by the client, well before any server-side idle limit. */
const IDLE_CLOSE_MS = 30_000;

/** The route was wrong (nothing listens there, or another node does): safe to re-resolve and retry. */
export class RouteFailed extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('Unavailable', message, options);
  }
}

export interface ByteRequest {
  op: 'read' | 'write' | 'readEncoding';
  /** The node the caller means: a port reused by another node is refused, not misread. */
  nodeId: string;
  timeoutMs: number;
  [field: string]: unknown;
}

interface Connection {
  socket: net.Socket;
  frames: FrameQueue;
}

/** One request's connection: cut at the deadline or when `signal` aborts, pooled again only by `done()`. */
class Call {
  private readonly timer: NodeJS.Timeout;
  private timedOut = false;
  private finished = false;
  private readonly onAbort = () => this.connection.socket.destroy();

  constructor(
    private readonly client: ByteClient,
    readonly address: string,
    readonly connection: Connection,
    readonly peer: string,
    timeoutMs: number,
    private readonly signal?: AbortSignal,
  ) {
    this.timer = setTimeout(() => {
      this.timedOut = true;
      connection.socket.destroy();
    }, timeoutMs);
    this.timer.unref();
    signal?.addEventListener('abort', this.onAbort, { once: true });
    if (signal?.aborted) this.onAbort();
  }

  send(buffers: Buffer[]): Promise<void> {
    if (this.connection.socket.destroyed) return Promise.reject(this.failure(null));
    return writeFrames(this.connection.socket, buffers).catch((err) => {
      throw this.failure(err);
    });
  }

  async next(): Promise<Frame> {
    let frame: Frame | null;
    try {
      frame = await this.connection.frames.next();
    } catch (err) {
      throw this.failure(err);
    }
    if (!frame) throw this.failure(null);
    if (frame.type === FrameType.Error) {
      const body = frame.body as { wrongNode?: boolean };
      const error = errorFromBody(frame.body, this.peer);
      this.close();
      throw body?.wrongNode ? new RouteFailed(error.message) : error;
    }
    return frame;
  }

  /** The request ended cleanly: the connection may serve the next one. */
  done(): void {
    if (this.finished) return;
    this.finish();
    this.client.release(this.address, this.connection);
  }

  close(): void {
    if (this.finished) return;
    this.finish();
    this.connection.socket.destroy();
  }

  private finish(): void {
    this.finished = true;
    clearTimeout(this.timer);
    this.signal?.removeEventListener('abort', this.onAbort);
  }

  /** Why the connection ended under us, as the error taxonomy says it. */
  failure(err: unknown): StrataError {
    this.close();
    if (this.timedOut) return new StrataError('Timeout', `${this.peer}: byte path request timed out`);
    // Aborted by the caller: its reason (a StrataError) says why, else it was cancelled.
    if (this.signal?.aborted) return this.signal.reason instanceof StrataError ? this.signal.reason : new StrataError('Unavailable', `${this.peer}: request cancelled`);
    // A malformed frame from the peer is its fault, not this request's: like damaged bytes.
    if (err instanceof StrataError && err.kind === 'Invalid') return new StrataError('Corrupt', `${this.peer}: malformed reply (${err.message})`);
    if (err instanceof StrataError && err.kind !== 'Unavailable') return err;
    const reason = err instanceof Error ? err.message : 'connection closed';
    return new StrataError('Unavailable', `cannot reach ${this.peer}: ${reason}`, { cause: err });
  }
}

export interface ByteWrite {
  /** Sends the next bytes; resolves once the connection can take more. */
  send(data: Buffer): Promise<void>;
  /** No more data: the reply follows. */
  end(): Promise<void>;
  cancel(): void;
  /** The reply, or why there is none; never rejects before it is awaited (it is pre-observed). */
  readonly reply: Promise<unknown>;
}

export class ByteClient {
  private readonly idle = new Map<string, Connection[]>();
  private closed = false;

  /** `tls`: TLS to the nodes' byte ports (common/tls.ts); absent = plain TCP. */
  constructor(private readonly tls?: TlsContext) {}

  /**
   * Reads a chunk range (or encoding): yields the data as it arrives; the Reply frame's body at
   * the end. `mode`: by default the bytes come as the socket read them (no copy). `signal`: the
   * caller gives up (its own deadline, a cancelled call): the connection is cut at once.
   */
  async *read(address: string, request: ByteRequest, peer: string, mode: DataFrameMode = SLICES, signal?: AbortSignal): AsyncGenerator<Buffer, unknown> {
    // node:tls hands reads over in 16 KiB records: as slices, a MiB would reach the reader in 64
    // pieces, each paying the consumer's per-piece work. One copy into the frame's buffer costs no
    // more CPU here and read TLS/plain went from 0.3-0.5x to 0.6-0.7x (paired runs, loaded box).
    if (this.tls && mode.slices) mode = { ...mode, slices: false };
    const call = await this.open(address, request, peer, mode, signal);
    try {
      for (;;) {
        const frame = await call.next();
        if (frame.type === FrameType.Data) yield frame.data;
        else if (frame.type === FrameType.Reply) {
          call.done();
          return frame.body;
        } else throw new StrataError('Internal', `${peer}: unexpected frame ${frame.type} in a read reply`);
      }
    } finally {
      call.close(); // a consumer that stopped early, or an error: never pooled half-read
    }
  }

  /** Opens a chunk write; the caller sends the bytes, then ends it and awaits the reply. */
  async openWrite(address: string, request: ByteRequest, peer: string): Promise<ByteWrite> {
    const call = await this.open(address, request, peer);
    // The reply may come early (an error while we still send): waiting for it from the start.
    const reply = writeReply(call, peer);
    reply.catch(() => {});
    let failed = false;
    reply.catch(() => (failed = true));
    return {
      reply,
      send: async (data) => {
        for (let at = 0; at < data.length && !failed; at += MAX_DATA_FRAME_BYTES) {
          const piece = at === 0 && data.length <= MAX_DATA_FRAME_BYTES ? data : data.subarray(at, at + MAX_DATA_FRAME_BYTES);
          await call.send(frameOf(FrameType.Data, piece)).catch((err) => this.preferReply(reply, err));
        }
        if (failed) await reply;
      },
      end: async () => {
        if (!failed) await call.send(frameOf(FrameType.End)).catch((err) => this.preferReply(reply, err));
      },
      cancel: () => call.close(),
    };
  }

  /**
   * Writes a whole chunk and returns the reply. Up to BYTE_PIECE_BYTES, the request, the data and
   * the end go in one socket write: the node receives a small chunk in one read and one wake-up.
   * Larger ones stream in BYTE_PIECE_BYTES frames, each sent once the socket can take it.
   */
  async write(address: string, request: ByteRequest, data: Buffer, peer: string): Promise<unknown> {
    if (data.length <= BYTE_PIECE_BYTES) {
      const body = data.length > 0 ? [...frameOf(FrameType.Data, data), ...frameOf(FrameType.End)] : frameOf(FrameType.End);
      const call = await this.call(address, request, peer, ASSEMBLED);
      const reply = writeReply(call, peer);
      reply.catch(() => {});
      try {
        await call.send([controlFrame(FrameType.Request, request), ...body]).catch((err) => this.preferReply(reply, err));
        return await reply;
      } finally {
        call.close(); // no-op once the reply pooled the connection
      }
    }
    const write = await this.openWrite(address, request, peer);
    try {
      for (let at = 0; at < data.length; at += BYTE_PIECE_BYTES) await write.send(data.subarray(at, at + BYTE_PIECE_BYTES));
      await write.end();
      return await write.reply;
    } finally {
      write.cancel(); // no-op once the reply pooled the connection
    }
  }

  close(): void {
    this.closed = true;
    for (const connections of this.idle.values()) for (const { socket } of connections) socket.destroy();
    this.idle.clear();
  }

  /** Internal: a connection whose request ended cleanly. */
  release(address: string, connection: Connection): void {
    const pool = this.idle.get(address) ?? [];
    if (this.closed || connection.socket.destroyed || pool.length >= MAX_IDLE_PER_ADDRESS) {
      connection.socket.destroy();
      return;
    }
    connection.socket.setTimeout(IDLE_CLOSE_MS);
    pool.push(connection);
    this.idle.set(address, pool);
  }

  /** A send failed because the server gave up on the request: its Error frame says why. */
  private async preferReply(reply: Promise<unknown>, err: unknown): Promise<never> {
    await Promise.race([reply, new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
    throw err;
  }

  /** A call on a pooled or new connection, its request sent. */
  private async open(address: string, request: ByteRequest, peer: string, mode: DataFrameMode = ASSEMBLED, signal?: AbortSignal): Promise<Call> {
    const call = await this.call(address, request, peer, mode, signal);
    await call.send([controlFrame(FrameType.Request, request)]);
    return call;
  }

  /** A call on a pooled or new connection, nothing sent yet. */
  private async call(address: string, request: ByteRequest, peer: string, mode: DataFrameMode, signal?: AbortSignal): Promise<Call> {
    if (this.closed) throw new StrataError('Unavailable', 'byte client is closed');
    const connection = this.pooled(address) ?? (await this.connect(address, peer));
    connection.frames.setMode(mode);
    return new Call(this, address, connection, peer, request.timeoutMs, signal);
  }

  private pooled(address: string): Connection | undefined {
    const pool = this.idle.get(address);
    while (pool && pool.length > 0) {
      const connection = pool.pop()!;
      if (connection.socket.destroyed) continue;
      connection.socket.setTimeout(0); // in use: the request's own deadline applies
      return connection;
    }
    return undefined;
  }

  private connect(address: string, peer: string): Promise<Connection> {
    const { host, port } = parseAddress(address);
    return new Promise((resolve, reject) => {
      const socket = this.tls ? this.tls.connect(host, port, { noDelay: true }) : net.connect({ host, port, noDelay: true });
      const timer = setTimeout(() => socket.destroy(new Error('connect timed out')), CONNECT_TIMEOUT_MS).unref();
      // Over TLS the connection is usable once the handshake is done.
      socket.once(this.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        const frames = new FrameQueue(socket);
        socket.on('error', () => {}); // surfaced through the frame queue
        socket.on('timeout', () => socket.destroy()); // idle in the pool too long
        // An idle pooled connection that the server closed is dropped from the pool.
        socket.once('close', () => {
          const pool = this.idle.get(address);
          const at = pool?.findIndex((c) => c.socket === socket) ?? -1;
          if (pool && at >= 0) pool.splice(at, 1);
        });
        resolve({ socket, frames });
      });
      const onError = (err: Error) => {
        clearTimeout(timer);
        const reason = asStrataError(err).message;
        reject(new RouteFailed(`cannot reach ${peer} at ${address}: ${tlsFailureReason(reason) ?? reason}`, { cause: err }));
      };
      socket.once('error', onError);
    });
  }
}

/** A write's Reply frame body; the connection is pooled again once it came. */
async function writeReply(call: Call, peer: string): Promise<unknown> {
  const frame = await call.next();
  if (frame.type !== FrameType.Reply) throw new StrataError('Internal', `${peer}: unexpected frame ${frame.type} in a write reply`);
  call.done();
  return frame.body;
}

export function parseAddress(address: string): { host: string; port: number } {
  const match = /^(.*):(\d{1,5})$/.exec(address);
  if (!match) throw new StrataError('Invalid', `byte path address '${address}' is not host:port`);
  return { host: match[1].replace(/^\[(.*)\]$/, '$1'), port: Number(match[2]) };
}
