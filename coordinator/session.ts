// The server side of Coordinator.Session: one long-lived bidi stream per client, requests
// multiplexed on it by id and answered in any order (proto/strata.proto, "session stream").
// This module owns the framing rules (ids, the in-flight limit, bad messages) and nothing
// about the namespace: ops come in as a dispatch table, so leases (M2) can hook in per session.
import * as grpc from '@grpc/grpc-js';
import { StrataError, invalid } from '../common/errors.js';
import { toServiceError } from '../common/grpc.js';

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
  run?<T>(session: ServerSession, work: () => Promise<T>): Promise<T>;
}

type Duplex = grpc.ServerDuplexStream<any, any>;

let nextSessionId = 1;

/** A message the stream cannot take: the deserializer hands it on instead of throwing. */
class BadMessage {
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
    private readonly call: Duplex,
    private readonly ops: SessionOps,
    private readonly limits: SessionLimits,
    private readonly onClosed: () => void,
  ) {}

  get isOpen(): boolean {
    return !this.closed;
  }

  get peer(): string {
    return this.call.getPeer();
  }

  /** A message with no request id (hello, invalidations); dropped once the stream is closed. */
  push(result: Record<string, unknown>): void {
    if (!this.closed) this.send({ id: 0, ...result });
  }

  start(coordinator: string): void {
    this.call.on('data', (message: unknown) => this.receive(message));
    this.call.on('end', () => {
      this.halfClosed = true;
      this.maybeFinish();
    });
    this.call.on('cancelled', () => this.close());
    this.call.on('close', () => this.close());
    this.call.on('error', () => this.close());
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
    work.then(
      (result) => this.answer(id, { [opName!]: result ?? {} }),
      (err) => this.answer(id, { error: sessionError(err) }),
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
    this.call.write(message, written);
    // writableNeedDrain: a 'drain' is sure to come.
    if (this.draining || !this.call.writableNeedDrain || this.call.writableLength <= this.limits.maxInFlight) return;
    this.draining = true;
    this.call.pause();
    this.call.once('drain', () => {
      this.draining = false;
      if (!this.closed) this.call.resume();
    });
  }

  private maybeFinish(): void {
    if (this.halfClosed && this.inFlight.size === 0 && !this.closed) {
      this.closed = true;
      this.call.end();
      this.onClosed();
    }
  }

  /** Closes this stream only, with a status saying why. */
  private fail(code: grpc.status, details: string): void {
    if (this.closed) return;
    this.closed = true;
    this.call.emit('error', { code, details });
    this.onClosed();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClosed();
  }
}

/** The Session handler: each stream gets a ServerSession over the shared dispatch table. */
export function sessionHandler(ops: SessionOps, coordinator: string, limits: SessionLimits = SESSION_DEFAULTS, hooks: SessionHooks = {}): grpc.handleBidiStreamingCall<any, any> {
  const run = hooks.run;
  const dispatch: SessionOps = run
    ? Object.fromEntries(Object.entries(ops).map(([name, op]) => [name, (request: any, s: ServerSession) => run(s, () => op(request, s))]))
    : ops;
  return (call) => {
    const session: ServerSession = new ServerSession(call, dispatch, limits, () => hooks.closed?.(session));
    hooks.opened?.(session);
    session.start(coordinator);
  };
}

/** A failed op as the reply carries it: the same code and kind the unary RPC would fail with. */
function sessionError(err: unknown) {
  const status = toServiceError(err);
  const kind = err instanceof StrataError ? err.kind : 'Internal';
  return { code: status.code, kind, message: status.details ?? '' };
}
