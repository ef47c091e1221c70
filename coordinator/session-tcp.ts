// The session stream without gRPC: a plain TCP listener on which each connection is one session,
// carrying the Session method's protobuf messages in length-prefixed frames
// (common/session-frames.ts). Why: on loopback a message round trip on an open grpc-js stream
// costs ~2.5x a raw TCP one (HTTP/2 framing, grpc-js's per-message stream machinery on both
// sides), and a metadata op is one round trip plus one metadata commit. Every session rule
// (ids, limits, deadlines, pushes, bad messages closing only this session) lives in session.ts,
// unchanged: this module is only a SessionTransport.
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { StrataError } from '../common/errors.js';
import { strataProto } from '../common/grpc.js';
import { clientOf } from '../common/client-limits.js';
import type { TlsContext } from '../common/tls.js';
import { SessionFrameError, SessionFrameKind, SessionFrameParser, closeFrame, messageFrame } from '../common/session-frames.js';
import { BadMessage, type SessionAcceptor, type SessionLimits, type SessionTransport } from './session.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire messages are plain proto-loader objects */

const SESSION = strataProto.Coordinator.service.Session;
/** After a close frame, how long the client gets to read it before the connection is cut. */
const LINGER_MS = 2_000;
/** Dead peers (no FIN, no RST) are found by TCP keepalive, as gRPC's keepalive finds them. */
const KEEPALIVE_MS = 10_000;

export interface SessionListener {
  port: number;
  /** Stops accepting; open sessions get `graceMs` to finish what is in flight, then are cut. */
  close(graceMs?: number): Promise<void>;
}

/** Admits one connection of a client host: its release, or throws Busy (common/client-limits.ts). */
export type AdmitClient = (client: string) => () => void;

/** `tls`: serve TLS (common/tls.ts; a connection counts once its handshake is done); absent = plain TCP. */
export async function startSessionListener(host: string, port: number, accept: SessionAcceptor, limits: Pick<SessionLimits, 'maxMessageBytes'>, admit?: AdmitClient, tls?: TlsContext): Promise<SessionListener> {
  const sockets = new Set<net.Socket>();
  const onSocket = (socket: net.Socket) => {
    let release: () => void;
    try {
      release = admit?.(clientOf(socket.remoteAddress)) ?? (() => undefined);
    } catch (err) {
      // Each connection is a session: past the client's bound it is closed as the gRPC call would be.
      socket.on('error', () => undefined);
      socket.end(closeFrame(grpc.status.RESOURCE_EXHAUSTED, (err as Error).message));
      setTimeout(() => socket.destroy(), LINGER_MS).unref();
      return;
    }
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      release();
    });
    socket.setKeepAlive(true, KEEPALIVE_MS);
    accept(new TcpTransport(socket, limits.maxMessageBytes));
  };
  // allowHalfOpen: a client that half-closes still gets the answers to what it sent.
  const options = { noDelay: true, allowHalfOpen: true };
  const server = tls ? tls.createServer(options, onSocket) : net.createServer(options, onSocket);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new StrataError('Unavailable', `cannot listen on ${host}:${port} (session): ${err.message}`, { cause: err })));
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: (graceMs = 3_000) =>
      new Promise<void>((resolve) => {
        // Answers to requests in flight still go out during the grace (as the gRPC server's
        // shutdown waits for its calls); then every session is cut, its clients fail over.
        server.close(() => resolve());
        setTimeout(() => {
          for (const socket of sockets) socket.destroy();
        }, graceMs).unref();
      }),
  };
}

/** One TCP connection as a SessionTransport. */
class TcpTransport implements SessionTransport {
  readonly peer: string;
  private readonly parser: SessionFrameParser;
  /** Replies handed to the socket and not yet flushed to the kernel. */
  private pending = 0;
  private failed = false;

  constructor(
    private readonly socket: net.Socket,
    maxMessageBytes: number,
  ) {
    this.peer = `tcp:${socket.remoteAddress}:${socket.remotePort}`;
    this.parser = new SessionFrameParser(maxMessageBytes);
  }

  listen(handlers: { message(message: unknown): void; end(): void; closed(): void }): void {
    const socket = this.socket;
    socket.on('data', (chunk: Buffer) => {
      if (this.failed) return;
      let frames;
      try {
        frames = this.parser.push(chunk);
      } catch (err) {
        const error = err as SessionFrameError;
        return handlers.message(new BadMessage(error.tooLarge ? grpc.status.RESOURCE_EXHAUSTED : grpc.status.INVALID_ARGUMENT, error.message));
      }
      for (const frame of frames) {
        if (this.failed) return;
        if (frame.kind !== SessionFrameKind.Message) {
          handlers.message(new BadMessage(grpc.status.INVALID_ARGUMENT, 'malformed session frame: a client sends messages only'));
          continue;
        }
        let message: unknown;
        try {
          message = SESSION.requestDeserialize(frame.payload);
        } catch (err) {
          message = new BadMessage(grpc.status.INVALID_ARGUMENT, `malformed session message: ${(err as Error).message}`);
        }
        handlers.message(message);
      }
    });
    socket.on('end', () => handlers.end());
    socket.on('close', () => handlers.closed());
    socket.on('error', () => undefined); // 'close' follows
  }

  write(message: unknown, written?: () => void): void {
    if (this.socket.destroyed) return;
    this.pending++;
    this.socket.write(messageFrame(SESSION.responseSerialize(message)), () => {
      this.pending--;
      written?.();
    });
  }

  get queued(): number {
    return this.pending;
  }

  get needsDrain(): boolean {
    return this.socket.writableNeedDrain;
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  onDrain(fn: () => void): void {
    this.socket.once('drain', fn);
  }

  end(): void {
    this.socket.end();
  }

  fail(code: grpc.status, details: string): void {
    this.failed = true;
    if (!this.socket.destroyed && this.socket.writable) this.socket.end(closeFrame(code, details));
    // What the client sends from now on is not read; it gets a moment to read the status.
    this.socket.resume();
    setTimeout(() => this.socket.destroy(), LINGER_MS).unref();
  }
}
