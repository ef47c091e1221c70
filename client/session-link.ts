// What carries one client session's messages (client/session.ts keeps every rule): the gRPC
// Session call, or a plain TCP connection with the same protobuf messages in frames
// (common/session-frames.ts, coordinator/session-tcp.ts), which costs about half the round
// trip. A coordinator tells where its TCP session listens (SessionEndpoint); one that offers none,
// or predates it, gets the gRPC call. STRATA_SESSION_TCP=off keeps clients on gRPC.
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { MAX_MESSAGE_BYTES, bearerMetadata, strataProto } from '../common/grpc.js';
import type { TokenSource } from './auth/token-source.js';
import { SessionFrameKind, SessionFrameParser, messageFrame } from '../common/session-frames.js';
import type { TlsContext } from '../common/tls.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire messages are plain proto-loader objects */

const SESSION = strataProto.Coordinator.service.Session;

/** How a link ended, as a gRPC status would say it (undefined = the coordinator ended it cleanly). */
export interface LinkError {
  code: grpc.status;
  details: string;
  message: string;
  metadata: grpc.Metadata;
  /** Nothing written on this link left the client (it never came up). */
  neverSent?: boolean;
}

export interface LinkHandlers {
  message(reply: any): void;
  broken(err: LinkError | undefined): void;
}

export interface SessionLink {
  /** Sends one request (buffered until the link is up). */
  write(request: unknown): void;
  close(): void;
}

export type SessionTransportChoice = 'auto' | 'grpc';

/** The transport clients use unless told otherwise. */
export const DEFAULT_SESSION_TRANSPORT: SessionTransportChoice = (process.env.STRATA_SESSION_TCP ?? 'on') === 'off' ? 'grpc' : 'auto';

const KEEPALIVE_MS = 10_000;

export function linkError(code: grpc.status, details: string): LinkError {
  return { code, details, message: `${code} ${grpc.status[code]}: ${details}`, metadata: new grpc.Metadata() };
}

/** The gRPC Session call. */
export function grpcLink(client: grpc.Client, handlers: LinkHandlers): SessionLink {
  // The generated method: proto-loader's serializers; no deadline, the stream lives on.
  const call = (client as any).Session() as grpc.ClientDuplexStream<any, any>;
  call.on('data', (reply: any) => handlers.message(reply));
  call.on('error', (err: grpc.ServiceError) => handlers.broken(err as unknown as LinkError));
  call.on('end', () => handlers.broken(undefined));
  return { write: (request) => call.write(request), close: () => call.cancel() };
}

/** A framed-TCP session to `address` (host:port); `connectTimeoutMs` bounds reaching it. */
/** `tls`: TLS to the coordinator's session port (common/tls.ts); absent = plain TCP. */
export function tcpLink(address: string, handlers: LinkHandlers, connectTimeoutMs: number, tls?: TlsContext): SessionLink {
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at);
  const port = Number(address.slice(at + 1));
  const socket = tls ? tls.connect(host, port, { noDelay: true }) : net.connect({ host, port, noDelay: true });
  socket.setKeepAlive(true, KEEPALIVE_MS);
  let connected = false;
  const connectTimer = setTimeout(() => socket.destroy(new Error(`no TCP session with ${address} within ${connectTimeoutMs} ms`)), connectTimeoutMs);
  // Over TLS the link is up once the handshake is: a refused one sent nothing.
  socket.once(tls ? 'secureConnect' : 'connect', () => {
    connected = true;
    clearTimeout(connectTimer);
  });
  const parser = new SessionFrameParser(MAX_MESSAGE_BYTES);
  let status: LinkError | undefined;
  let failure: Error | undefined;
  let done = false;
  const finish = (err: LinkError | undefined) => {
    if (done) return;
    done = true;
    handlers.broken(err);
  };
  socket.on('data', (chunk: Buffer) => {
    if (done) return;
    try {
      for (const frame of parser.push(chunk)) {
        if (frame.kind === SessionFrameKind.Close) {
          status = linkError(frame.code, frame.details);
          continue;
        }
        handlers.message(SESSION.responseDeserialize(frame.payload));
        if (done) return;
      }
    } catch (err) {
      // A coordinator that speaks something else on this port: nothing it says can be trusted.
      socket.destroy();
      finish(linkError(grpc.status.UNAVAILABLE, `session to ${address}: unreadable reply (${(err as Error).message})`));
    }
  });
  socket.on('error', (err) => (failure = err));
  socket.on('close', () => {
    clearTimeout(connectTimer);
    // Never connected: not a byte of what was written reached the coordinator.
    if (!connected) finish({ ...linkError(grpc.status.UNAVAILABLE, failure?.message ?? 'no connection established'), neverSent: true });
    else if (status) finish(status);
    else if (failure) finish(linkError(grpc.status.UNAVAILABLE, failure.message));
    else finish(linkError(grpc.status.UNAVAILABLE, 'Connection dropped by the coordinator'));
  });
  // A clean end from the coordinator: like a gRPC stream's end, the caller decides.
  socket.on('end', () => {
    if (!status) {
      socket.destroy();
      finish(undefined);
    }
  });
  return {
    write: (request) => {
      if (done) return;
      let frame: Buffer;
      try {
        frame = messageFrame(SESSION.requestSerialize(request));
      } catch (err) {
        socket.destroy();
        finish(linkError(grpc.status.INTERNAL, `session request does not serialize: ${(err as Error).message}`));
        return;
      }
      socket.write(frame);
    },
    close: () => {
      done = true;
      clearTimeout(connectTimer);
      socket.destroy();
    },
  };
}

/**
 * The TCP session where the coordinator offers one, otherwise the gRPC call. The coordinator is
 * asked once, and again after its TCP address could not be reached (it may have restarted on
 * another port); if it names the same unreachable address again, that session takes the gRPC
 * call (a wrong --session-advertise costs one retry, not the client). Requests written meanwhile
 * wait in order.
 */
export class SessionLinks {
  /** undefined = not asked yet; '' = none offered. */
  private endpoint: string | undefined;
  /** The TCP address that could not be reached last. */
  private unreachable: string | undefined;
  /** What the last session opened runs on. */
  private last: 'tcp' | 'grpc' | 'unknown' = 'unknown';

  constructor(
    private readonly client: grpc.Client,
    private readonly choice: SessionTransportChoice,
    private readonly askTimeoutMs: number,
    /** With auth on: each link authenticates first, and again before its token runs out. */
    private readonly tokens?: TokenSource,
    private readonly tls?: TlsContext,
  ) {}

  open(handlers: LinkHandlers): SessionLink {
    return this.tokens ? authenticatedLink(this.tokens, handlers, (inner, token) => this.openLink(inner, token)) : this.openLink(handlers);
  }

  private openLink(handlers: LinkHandlers, token?: string): SessionLink {
    if (this.choice === 'grpc' || this.endpoint === '') return this.grpc(handlers);
    if (this.endpoint !== undefined) return this.tcp(this.endpoint, handlers);
    const waiting: unknown[] = [];
    let inner: SessionLink | undefined;
    let closed = false;
    const answered = (err: grpc.ServiceError | null, reply: any) => {
      if (closed) return;
      // The requests waiting here never left: whatever went wrong, none can have been applied.
      if (err && err.code !== grpc.status.UNIMPLEMENTED) return handlers.broken({ ...(err as unknown as LinkError), neverSent: true });
      const offered = err ? '' : String(reply?.address ?? '');
      if (offered && offered === this.unreachable) {
        this.unreachable = undefined;
        inner = this.grpc(handlers);
      } else {
        this.endpoint = offered;
        inner = offered ? this.tcp(offered, handlers) : this.grpc(handlers);
      }
      for (const request of waiting.splice(0)) inner.write(request);
    };
    const options = { deadline: Date.now() + this.askTimeoutMs };
    if (token) (this.client as any).SessionEndpoint({}, bearerMetadata(token), options, answered);
    else (this.client as any).SessionEndpoint({}, options, answered);
    return {
      write: (request) => (inner ? inner.write(request) : waiting.push(request)),
      close: () => {
        closed = true;
        inner?.close();
      },
    };
  }

  /** What the last session opened runs on ('unknown' before the first): for tests and benchmarks. */
  get transport(): 'tcp' | 'grpc' | 'unknown' {
    return this.last;
  }

  private grpc(handlers: LinkHandlers): SessionLink {
    this.last = 'grpc';
    return grpcLink(this.client, handlers);
  }

  private tcp(address: string, handlers: LinkHandlers): SessionLink {
    this.last = 'tcp';
    return tcpLink(
      address,
      {
        message: handlers.message,
        broken: (err) => {
          if (err?.neverSent) {
            this.endpoint = undefined;
            this.unreachable = address;
          }
          handlers.broken(err);
        },
      },
      this.askTimeoutMs,
      this.tls,
    );
  }
}

/** Ids of authenticate requests count down from the top: the session's own count up from 1. */
const FIRST_AUTH_ID = Number.MAX_SAFE_INTEGER;
/** Never re-authenticate more often than this (a fixed token past its refresh time). */
const MIN_REFRESH_MS = 1_000;

/**
 * A link that sends `authenticate` before anything else and again with a fresh token before the
 * last one expires; the replies to those are its own (a refused token fails the requests behind
 * it, each with its own Unauthenticated reply). A token that cannot be had fails the link unsent.
 */
function authenticatedLink(tokens: TokenSource, handlers: LinkHandlers, open: (handlers: LinkHandlers, token: string) => SessionLink): SessionLink {
  const waiting: unknown[] = [];
  const authIds = new Set<number>();
  let nextAuthId = FIRST_AUTH_ID;
  let inner: SessionLink | undefined;
  let closed = false;
  let sentToken = '';
  let refreshTimer: NodeJS.Timeout | undefined;
  const authenticate = (token: string) => {
    if (closed || !inner || token === sentToken) return;
    sentToken = token;
    const id = nextAuthId--;
    authIds.add(id);
    inner.write({ id, deadlineMs: 0, authenticate: { token } });
  };
  const armRefresh = () => {
    clearTimeout(refreshTimer);
    if (closed || !Number.isFinite(tokens.refreshAtMs)) return;
    refreshTimer = setTimeout(() => {
      tokens.token().then(authenticate, () => undefined).finally(armRefresh);
    }, Math.max(MIN_REFRESH_MS, tokens.refreshAtMs - Date.now()));
    refreshTimer.unref();
  };
  const finish = () => {
    closed = true;
    clearTimeout(refreshTimer);
  };
  tokens.token().then(
    (token) => {
      if (closed) return;
      inner = open(
        {
          message: (reply) => {
            const id = Number(reply?.id);
            if (authIds.delete(id)) return;
            handlers.message(reply);
          },
          broken: (err) => {
            finish();
            handlers.broken(err);
          },
        },
        token,
      );
      authenticate(token);
      for (const request of waiting.splice(0)) inner.write(request);
      armRefresh();
    },
    (err: Error) => {
      if (closed) return;
      finish();
      handlers.broken({ ...linkError(grpc.status.UNAUTHENTICATED, err.message), neverSent: true });
    },
  );
  return {
    write: (request) => (inner ? inner.write(request) : waiting.push(request)),
    close: () => {
      finish();
      inner?.close();
    },
  };
}
