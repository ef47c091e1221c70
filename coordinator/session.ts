// The server side of Coordinator.Session: one long-lived bidi stream per client, requests
// multiplexed on it by id and answered in any order (proto/strata.proto, "session stream").
// This module owns the framing rules (ids, the in-flight limit, bad messages) and nothing
// about the namespace: ops come in as a dispatch table, so leases (M2) can hook in per session.
// The rules hold whatever carries the messages: a gRPC bidi call here, or a plain TCP connection
// with the same protobuf messages in frames (session-tcp.ts); each is a SessionTransport.
import * as grpc from '@grpc/grpc-js';
import { StrataError, invalid } from '../common/errors.js';
import { toServiceError } from '../common/grpc.js';
import type { RequestSeries } from '../common/metrics.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire messages are validated by the ops */

/** One op: its request message in, its reply message out (thrown errors become SessionError). */
export type SessionOp = (request: any, session: ServerSession) => Promise<unknown>;
export type SessionOps = Readonly<Record<string, SessionOp>>;

export interface SessionLimits {
  /** Requests one session may have unanswered at once; more are refused unstarted. */
  maxInFlight: number;
  /** Largest SessionRequest accepted; a bigger one closes the stream (RESOURCE_EXHAUSTED). */
  maxMessageBytes: number;
}

export const SESSION_DEFAULTS: SessionLimits = { maxInFlight: 256, maxMessageBytes: 64 * 1024 };

export interface SessionHooks {
  opened?(session: ServerSession): void;
  closed?(session: ServerSession): void;
  /** Runs each op of the session (leases: its changes run as this session's writes). */
  run?<T>(session: ServerSession, work: () => Promise<T>, op?: string, request?: unknown): Promise<T>;
  /** Wraps the whole dispatch table, outermost, so it sees each request as it is read (authentication). */
  guard?(dispatch: SessionOps): SessionOps;
  /** Counts and times each op (common/metrics.ts): the series of an op name, looked up once per op. */
  requests?(op: string): RequestSeries;
}

type Duplex = grpc.ServerDuplexStream<any, any>;

/** What carries one session's messages: the gRPC call, or a framed TCP connection. */
export interface SessionTransport {
  readonly peer: string;
  /** Called once: each decoded request (or BadMessage), the client's half-close, the end of it all. */
  listen(handlers: { message(message: unknown): void; end(): void; closed(): void }): void;
  /** Queues a reply; `written` once the transport took it (slots are freed then). */
  write(message: unknown, written?: () => void): void;
  /** Replies waiting for the transport, and whether a 'drain' is sure to come. */
  readonly queued: number;
  readonly needsDrain: boolean;
  /** Stops reading requests until `resume`; `onDrain` once the replies drained. */
  pause(): void;
  resume(): void;
  onDrain(fn: () => void): void;
  /** Ends cleanly after what was written. */
  end(): void;
  /** Closes this session only, with a status saying why. */
  fail(code: grpc.status, details: string): void;
}

/** The gRPC Session call as a transport. */
class GrpcTransport implements SessionTransport {
  constructor(private readonly call: Duplex) {}
  get peer(): string {
    return this.call.getPeer();
  }
  listen(handlers: { message(message: unknown): void; end(): void; closed(): void }): void {
    this.call.on('data', handlers.message);
    this.call.on('end', handlers.end);
    this.call.on('cancelled', handlers.closed);
    this.call.on('close', handlers.closed);
    this.call.on('error', handlers.closed);
  }
  write(message: unknown, written?: () => void): void {
    this.call.write(message, written);
  }
  get queued(): number {
    return this.call.writableLength;
  }
  get needsDrain(): boolean {
    return this.call.writableNeedDrain;
  }
  pause(): void {
    this.call.pause();
  }
  resume(): void {
    this.call.resume();
  }
  onDrain(fn: () => void): void {
    this.call.once('drain', fn);
  }
  end(): void {
    this.call.end();
  }
  fail(code: grpc.status, details: string): void {
    this.call.emit('error', { code, details });
  }
}

let nextSessionId = 1;

/** A message the stream cannot take: the deserializer hands it on instead of throwing. */
export class BadMessage {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {}
}

/**
 * The service definition with Session's deserializer made strict and non-throwing: grpc-js
 * answers a throwing deserializer with INTERNAL, and knows no per-method size limit.
 */
export function withSessionLimits<T extends grpc.ServiceDefinition>(definition: T, limits: Pick<SessionLimits, 'maxMessageBytes'> = SESSION_DEFAULTS): T {
  const method = definition.Session;
  if (!method) return definition;
  const decode = method.requestDeserialize;
  const requestDeserialize = (bytes: Buffer) => {
    if (bytes.length > limits.maxMessageBytes) {
      return new BadMessage(grpc.status.RESOURCE_EXHAUSTED, `session message of ${bytes.length} bytes is over the ${limits.maxMessageBytes}-byte limit`);
    }
    try {
      return decode(bytes);
    } catch (err) {
      return new BadMessage(grpc.status.INVALID_ARGUMENT, `malformed session message: ${(err as Error).message}`);
    }
  };
  return { ...definition, Session: { ...method, requestDeserialize } };
}

/** One open stream: what ops and lease code may know about the client on the other end. */
export class ServerSession {
  readonly id = nextSessionId++;
  private readonly inFlight = new Set<number>();
  private closed = false;
  private halfClosed = false;
  private draining = false;

  constructor(
    private readonly transport: SessionTransport,
    private readonly ops: SessionOps,
    private readonly limits: SessionLimits,
    private readonly onClosed: () => void,
    /** Each op's request series (metrics), memoized; absent = not counted. */
    private readonly requests?: (op: string) => RequestSeries,
  ) {}

  get isOpen(): boolean {
    return !this.closed;
  }

  get peer(): string {
    return this.transport.peer;
  }

  /** A message with no request id (hello, invalidations); dropped once the stream is closed. */
  push(result: Record<string, unknown>): void {
    if (!this.closed) this.send({ id: 0, ...result });
  }

  start(coordinator: string): void {
    this.transport.listen({
      message: (message) => this.receive(message),
      end: () => {
        this.halfClosed = true;
        this.maybeFinish();
      },
      closed: () => this.close(),
    });
    this.push({ hello: { coordinator, maxInFlight: this.limits.maxInFlight, maxMessageBytes: this.limits.maxMessageBytes, nowMs: Date.now() } });
  }

  private receive(message: any): void {
    if (this.closed) return;
    if (message instanceof BadMessage) return this.fail(message.code, message.details);
    const id = Number(message?.id);
    if (!Number.isSafeInteger(id) || id <= 0) return this.fail(grpc.status.INVALID_ARGUMENT, `session request id must be a positive integer, got '${message?.id}'`);
    if (this.inFlight.has(id)) return this.fail(grpc.status.INVALID_ARGUMENT, `session request id ${id} is already in flight`);
    if (this.inFlight.size >= this.limits.maxInFlight) {
      return this.refuse(id, grpc.status.RESOURCE_EXHAUSTED, `more than ${this.limits.maxInFlight} requests in flight on this session`);
    }
    const deadlineMs = Number(message.deadlineMs) || 0;
    if (deadlineMs > 0 && Date.now() > deadlineMs) {
      // Read too late (this process was frozen, or the stream slow): its client has given up and may have retried elsewhere.
      return this.refuse(id, grpc.status.DEADLINE_EXCEEDED, `session request ${id} arrived ${Date.now() - deadlineMs} ms after its deadline`);
    }
    const opName = message.op as string | undefined;
    const op = opName ? this.ops[opName] : undefined;
    this.inFlight.add(id);
    const work = op ? op(message[opName!] ?? {}, this) : Promise.reject(invalid(opName ? `unknown session op '${opName}'` : 'session request carries no op'));
    const series = op ? this.requests?.(opName!) : undefined;
    const startedMs = series ? performance.now() : 0;
    work.then(
      (result) => {
        series?.done(grpc.status.OK, startedMs);
        this.answer(id, { [opName!]: result ?? {} });
      },
      (err) => {
        const error = sessionError(err);
        series?.done(error.code ?? grpc.status.UNKNOWN, startedMs);
        this.answer(id, { error });
      },
    );
  }

  /** Answers without starting the request: nothing was applied, and no slot is taken. */
  private refuse(id: number, code: grpc.status, message: string): void {
    this.send({ id, error: { code, kind: code === grpc.status.DEADLINE_EXCEEDED ? 'Timeout' : '', message, notStarted: true } });
  }

  /** A slot stays taken until the reply is handed to the transport: memory stays bounded when a client stops reading. */
  private answer(id: number, body: Record<string, unknown>): void {
    if (this.closed) return;
    this.send({ id, ...body }, () => {
      this.inFlight.delete(id);
      this.maybeFinish();
    });
  }

  /**
   * Writes a reply; with more replies waiting for the transport than requests may be in flight
   * (only refusals get there: they take no slot), stops reading requests until they drain, so a
   * client that floods and never reads cannot pile up replies here without bound.
   */
  private send(message: unknown, written?: () => void): void {
    const transport = this.transport;
    transport.write(message, written);
    if (this.draining || !transport.needsDrain || transport.queued <= this.limits.maxInFlight) return;
    this.draining = true;
    transport.pause();
    transport.onDrain(() => {
      this.draining = false;
      if (!this.closed) transport.resume();
    });
  }

  private maybeFinish(): void {
    if (this.halfClosed && this.inFlight.size === 0 && !this.closed) {
      this.closed = true;
      this.transport.end();
      this.onClosed();
    }
  }

  /** Closes this stream only, with a status saying why. */
  private fail(code: grpc.status, details: string): void {
    if (this.closed) return;
    this.closed = true;
    this.transport.fail(code, details);
    this.onClosed();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClosed();
  }
}

/** Starts a session on each transport it is given, over the shared dispatch table. */
export type SessionAcceptor = (transport: SessionTransport) => void;

export function sessionAcceptor(ops: SessionOps, coordinator: string, limits: SessionLimits = SESSION_DEFAULTS, hooks: SessionHooks = {}): SessionAcceptor {
  const run = hooks.run;
  const inner: SessionOps = run
    ? Object.fromEntries(Object.entries(ops).map(([name, op]) => [name, (request: any, s: ServerSession) => run(s, () => op(request, s), name, request)]))
    : ops;
  const dispatch = hooks.guard ? hooks.guard(inner) : inner;
  const requests = hooks.requests && memoized(hooks.requests);
  return (transport) => {
    const session: ServerSession = new ServerSession(transport, dispatch, limits, () => hooks.closed?.(session), requests);
    hooks.opened?.(session);
    session.start(coordinator);
  };
}

/** A series per op name, made on the op's first request (only ops in the table get one). */
function memoized(make: (op: string) => RequestSeries): (op: string) => RequestSeries {
  const byOp = new Map<string, RequestSeries>();
  return (op) => {
    let series = byOp.get(op);
    if (!series) byOp.set(op, (series = make(op)));
    return series;
  };
}

/** The gRPC Session handler: each call is a session. */
export function grpcSessionHandler(accept: SessionAcceptor): grpc.handleBidiStreamingCall<any, any> {
  return (call) => accept(new GrpcTransport(call));
}

/** A failed op as the reply carries it: the same code and kind the unary RPC would fail with. */
function sessionError(err: unknown) {
  const status = toServiceError(err);
  const kind = err instanceof StrataError ? err.kind : 'Internal';
  return { code: status.code, kind, message: status.details ?? '' };
}
