// The data node's byte path server (wire format: common/byte-frames.ts). Chunk bytes move here
// instead of through grpc-js; control stays on gRPC. One request at a time per connection. Any
// failure answers one Error frame carrying the strata error kind and closes that connection
// only; a deadline (the request's time budget) does the same with Timeout.
import net from 'node:net';
import { StrataError, asStrataError, invalid } from '../common/errors.js';
import { quoted } from '../common/limits.js';
import { clientOf } from '../common/client-limits.js';
import { FrameQueue, FrameType, controlFrame, errorFrame, frameOf, writeFrames, type Frame } from '../common/byte-frames.js';
import type { Logger } from '../common/log.js';
import type { TlsContext } from '../common/tls.js';
import { toServiceError } from '../common/grpc.js';
import type { CountSeries, RequestSeries } from '../common/metrics.js';

/** What the byte path counts (common/metrics.ts): each op's requests, and chunk bytes in and out. */
export interface ByteServerMetrics {
  requests: Record<'read' | 'write' | 'readEncoding', RequestSeries>;
  bytesIn: CountSeries;
  bytesOut: CountSeries;
}

export interface ByteReadRequest {
  chunkId: string;
  offset: number;
  length: number;
  tier?: unknown;
  /** The read grant (common/chunk-grants.ts); '' = none. */
  grant: string;
}

export interface ByteWriteHeader {
  chunkId: string;
  length: number;
  pipeline: Array<{ nodeId: string; address: string; dataAddress?: string }>;
  /** The write grant; '' = none. */
  grant: string;
  /** An encode-once write from a head node (datanode/encode-once.ts): `length` is then a marker. */
  encoded?: boolean;
  rawLength?: number;
}

export interface ByteWriteSession {
  piece(data: Buffer): Promise<void>;
  finish(): Promise<unknown>;
  abort(): Promise<void>;
}

/** What the byte path serves, provided by the DataNode service (the same code as its gRPC RPCs). */
export interface ByteHandlers {
  nodeId: string;
  read(request: ByteReadRequest): AsyncIterable<Buffer>;
  /** `deadlineMs`: when the upstream gives up; forwarded hops get no more. */
  openWrite(header: ByteWriteHeader, deadlineMs: number): Promise<ByteWriteSession>;
  /** The whole stored encoding, verified (for copies between nodes). */
  readEncoding(chunkId: string, grant: string): Promise<{ bytes: Buffer; length: number; crc32c: number }>;
}

export interface ByteServer {
  port: number;
  /** Stops accepting; requests in flight get `graceMs` to finish, idle connections close now. */
  close(graceMs?: number): Promise<void>;
}

const MAX_TIMEOUT_MS = 10 * 60_000;
/** After an Error frame, how long the peer gets to read it before the connection is cut. */
const LINGER_MS = 2_000;
/** A connection with no traffic at all for this long is closed (clients close idle ones sooner). */
const INACTIVE_CLOSE_MS = MAX_TIMEOUT_MS + 60_000;

/**
 * `admit`: takes one connection of a client host, returning its release, or throws Busy
 * (common/client-limits.ts); absent = no bound.
 */
export async function startByteServer(host: string, port: number, handlers: ByteHandlers, log: Logger, admit?: (client: string) => () => void, tls?: TlsContext, metrics?: ByteServerMetrics): Promise<ByteServer> {
  /** Each open connection, and whether a request is in flight on it. */
  const sockets = new Map<net.Socket, { busy: boolean }>();
  let closing = false;
  // `tls`: serve TLS (common/tls.ts; a connection counts once its handshake is done); absent = plain TCP.
  const onSocket = (socket: net.Socket) => {
    socket.on('error', () => {}); // surfaced through the frame queue
    let release: () => void;
    try {
      release = admit?.(clientOf(socket.remoteAddress)) ?? (() => undefined);
    } catch (err) {
      socket.end(errorFrame(asStrataError(err)));
      setTimeout(() => socket.destroy(), LINGER_MS).unref();
      return;
    }
    const state = { busy: false };
    sockets.set(socket, state);
    socket.on('close', () => {
      sockets.delete(socket);
      release();
    });
    socket.setTimeout(INACTIVE_CLOSE_MS, () => socket.destroy());
    serve(socket, handlers, log, metrics, (busy) => {
      state.busy = busy;
      if (!busy && closing) socket.destroy();
    }).catch((err) => {
      // Only a bug gets here (every failure of a request is answered inside serve): it ends
      // this connection, never the process (unhandled, it once did: fuzz.test.ts).
      log.error({ err: (err as Error)?.message }, 'byte path connection failed');
      socket.destroy();
    });
  };
  const server = tls ? tls.createServer({ noDelay: true }, onSocket) : net.createServer({ noDelay: true }, onSocket);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new StrataError('Unavailable', `cannot listen on ${host}:${port} (byte path): ${err.message}`, { cause: err })));
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: (graceMs = 5_000) =>
      new Promise<void>((resolve) => {
        closing = true;
        server.close(() => resolve());
        for (const [socket, state] of sockets) if (!state.busy) socket.destroy();
        setTimeout(() => {
          for (const socket of sockets.keys()) socket.destroy();
        }, graceMs).unref();
      }),
  };
}

async function serve(socket: net.Socket, handlers: ByteHandlers, log: Logger, metrics: ByteServerMetrics | undefined, setBusy: (busy: boolean) => void): Promise<void> {
  const frames = new FrameQueue(socket);
  for (;;) {
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    let series: RequestSeries | undefined;
    let startedMs = 0;
    try {
      const frame = await frames.next();
      if (!frame) return void socket.destroy();
      setBusy(true);
      if (frame.type !== FrameType.Request) throw invalid(`byte path: expected a request, got frame type ${frame.type}`);
      const request = checkRequest(frame.body);
      if (metrics) {
        series = metrics.requests[request.op];
        startedMs = performance.now();
      }
      if (request.nodeId !== handlers.nodeId) {
        // Another node's address (a restart moved it): the client re-resolves the route.
        socket.write(controlFrame(FrameType.Error, { kind: 'Unavailable', message: `byte path: this is node ${handlers.nodeId}, not ${request.nodeId.slice(0, 80)}`, wrongNode: true }));
        return linger(socket, frames);
      }
      const deadlineMs = Date.now() + request.timeoutMs;
      timer = setTimeout(() => {
        timedOut = true;
        fail(socket, frames, new StrataError('Timeout', `byte path: ${request.op} of chunk ${quoted(request.chunkId)} exceeded its ${request.timeoutMs} ms deadline`));
      }, request.timeoutMs);
      timer.unref();
      if (request.op === 'read') await serveRead(socket, handlers.read(checkRead(request)), metrics?.bytesOut);
      else if (request.op === 'readEncoding') await serveEncoding(socket, handlers, String(request.chunkId), grantOf(request), metrics?.bytesOut);
      else await serveWrite(socket, frames, handlers, checkWrite(request), deadlineMs, metrics?.bytesIn);
      clearTimeout(timer);
      series?.done(0, startedMs);
      setBusy(false);
    } catch (err) {
      clearTimeout(timer);
      series?.done(timedOut ? 4 /* DEADLINE_EXCEEDED */ : (toServiceError(err).code ?? 2), startedMs);
      if (!timedOut) {
        const error = asStrataError(err);
        if (error.kind === 'Internal') log.warn({ err: error.message }, 'byte path request failed');
        fail(socket, frames, error);
      }
      return;
    }
  }
}

async function serveRead(socket: net.Socket, blocks: AsyncIterable<Buffer>, bytesOut?: CountSeries): Promise<void> {
  for await (const block of blocks) {
    bytesOut?.inc(block.length);
    await send(socket, frameOf(FrameType.Data, block));
  }
  await send(socket, [controlFrame(FrameType.Reply, {})]);
}

async function serveEncoding(socket: net.Socket, handlers: ByteHandlers, chunkId: string, grant: string, bytesOut?: CountSeries): Promise<void> {
  const { bytes, length, crc32c } = await handlers.readEncoding(chunkId, grant);
  bytesOut?.inc(bytes.length);
  // One frame: the reader sized its limit to this chunk's largest possible encoding.
  await send(socket, frameOf(FrameType.Data, bytes));
  await send(socket, [controlFrame(FrameType.Reply, { length, crc32c, storedBytes: bytes.length })]);
}

async function serveWrite(socket: net.Socket, frames: FrameQueue, handlers: ByteHandlers, header: ByteWriteHeader, deadlineMs: number, bytesIn?: CountSeries): Promise<void> {
  const session = await handlers.openWrite(header, deadlineMs);
  try {
    for (;;) {
      // The queue pauses the socket while pieces wait: a slow disk or downstream slows the sender.
      const frame: Frame | null = await frames.next();
      if (!frame) throw new StrataError('Unavailable', `chunk ${header.chunkId}: the writer went away mid-write`);
      if (frame.type === FrameType.End) break;
      if (frame.type !== FrameType.Data) throw invalid(`byte path: only data or end may follow a write request, got frame type ${frame.type}`);
      bytesIn?.inc(frame.data.length);
      await session.piece(frame.data);
    }
    const reply = await session.finish();
    await send(socket, [controlFrame(FrameType.Reply, reply)]);
  } catch (err) {
    await session.abort().catch(() => {});
    throw err;
  }
}

async function send(socket: net.Socket, buffers: Buffer[]): Promise<void> {
  if (socket.destroyed) throw new StrataError('Unavailable', 'byte path: the reader went away');
  await writeFrames(socket, buffers);
}

/** Answers the error and closes this connection (only this one), after the peer had time to read it. */
function fail(socket: net.Socket, frames: FrameQueue, error: StrataError): void {
  if (!socket.destroyed && socket.writable) socket.write(errorFrame(error));
  linger(socket, frames);
}

function linger(socket: net.Socket, frames: FrameQueue): void {
  frames.discard(); // the peer may still be sending a write's data: drained, not parsed
  socket.end();
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

interface CheckedRequest {
  op: 'read' | 'write' | 'readEncoding';
  nodeId: string;
  timeoutMs: number;
  [field: string]: unknown;
}

function checkRequest(body: unknown): CheckedRequest {
  const request = body as Partial<CheckedRequest> | null;
  if (!request || typeof request !== 'object') throw invalid('byte path: a request must be an object');
  if (request.op !== 'read' && request.op !== 'write' && request.op !== 'readEncoding') throw invalid(`byte path: unknown op ${quoted(request.op)}`);
  if (typeof request.nodeId !== 'string') throw invalid('byte path: a request names the node it is for (nodeId)');
  if (typeof request.chunkId !== 'string') throw invalid('byte path: a request needs chunkId');
  const timeoutMs = request.timeoutMs;
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) throw invalid('byte path: a request needs timeoutMs > 0');
  return { ...request, timeoutMs: Math.min(timeoutMs, MAX_TIMEOUT_MS) } as CheckedRequest;
}

const grantOf = (request: CheckedRequest): string => (typeof request.grant === 'string' ? request.grant : '');

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

function checkRead(request: CheckedRequest): ByteReadRequest {
  const { chunkId, offset, length, tier } = request as CheckedRequest & ByteReadRequest;
  if (!isCount(offset) || !isCount(length)) throw invalid('byte path: read offset and length must be whole numbers >= 0');
  return { chunkId, offset, length, tier: tier ?? null, grant: grantOf(request) };
}

function checkWrite(request: CheckedRequest): ByteWriteHeader {
  const { chunkId, length, pipeline, encoded, rawLength } = request as CheckedRequest & ByteWriteHeader;
  if (!isCount(length)) throw invalid('byte path: write length must be a whole number >= 0');
  if (!Array.isArray(pipeline)) throw invalid('byte path: write pipeline must be a list');
  if (encoded === undefined || encoded === false) return { chunkId, length, pipeline, grant: grantOf(request) };
  if (encoded !== true || !isCount(rawLength)) throw invalid('byte path: an encoded write needs encoded: true and rawLength, a whole number >= 0');
  return { chunkId, length, pipeline, grant: grantOf(request), encoded, rawLength };
}
