// The client side of Coordinator.Session: one bidi stream to one coordinator, requests
// multiplexed on it by id, many in flight (proto/strata.proto, "session stream"). It opens
// lazily, closes when idle, and reports which requests may have reached the coordinator when
// it breaks, so the caller's failover can apply the ambiguous-retry rules (coordinator-client.ts).
import * as grpc from '@grpc/grpc-js';
import { StrataError } from '../common/errors.js';
import { ERROR_KIND_METADATA_KEY, fromServiceError } from '../common/grpc.js';
import type { LinkError, SessionLink, SessionLinks } from './session-link.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- wire messages are plain proto-loader objects */

/** Requests sent before the coordinator's hello announced its limit. */
const INITIAL_WINDOW = 32;
/** The most this client keeps in flight on one stream, whatever the coordinator allows. */
const MAX_WINDOW = 1024;
/** A stream with nothing in flight for this long is closed (an open stream keeps the process alive). */
const IDLE_CLOSE_MS = 2000;
/** What coordinators accept until a hello says otherwise (coordinator/session.ts SESSION_DEFAULTS). */
const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;

/** Errors of requests that never left this client: retrying them elsewhere cannot apply anything twice. */
const neverSentErrors = new WeakSet<StrataError>();
export const wasNeverSent = (error: StrataError): boolean => neverSentErrors.has(error);

/** The coordinator has no Session method (an older version): callers use the unary RPCs. */
export class SessionUnsupported extends StrataError {
  constructor(address: string) {
    super('Unavailable', `coordinator ${address} has no session stream`);
  }
}

interface Request {
  id: number;
  op: string;
  body: unknown;
  resolve(reply: any): void;
  reject(error: StrataError): void;
  timer: NodeJS.Timeout;
  /** When this client stops waiting, on its own clock. */
  deadlineAt: number;
  written: boolean;
}

export type PushListener = (kind: string, push: any) => void;

export class SessionStream {
  private call: SessionLink | undefined;
  private nextId = 1;
  /** Written and unanswered: what the coordinator counts against its limit. */
  private readonly inFlight = new Map<number, Request | undefined>();
  private readonly queue: Request[] = [];
  private window = INITIAL_WINDOW;
  private helloSeen = false;
  private maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
  /** The coordinator's clock minus ours, from its last hello (kept across reconnects). */
  private clockOffsetMs: number | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly pushListeners = new Set<PushListener>();
  /** A stream is up and the coordinator's hello came. */
  get isGreeted(): boolean {
    return this.call !== undefined && this.helloSeen;
  }

  /** Set once the coordinator answered UNIMPLEMENTED for Session. */
  unsupported = false;

  constructor(
    private readonly links: SessionLinks,
    readonly address: string,
  ) {}

  /** Sends one op; resolves with its result message. The deadline covers waiting for a slot. */
  request(op: string, body: unknown, timeoutMs: number): Promise<any> {
    if (this.unsupported) return Promise.reject(this.unsent(new SessionUnsupported(this.address)));
    // The coordinator closes the whole stream on an oversized message: refuse it here, alone.
    // (JSON is longer than the protobuf encoding, so this never refuses what would fit.)
    const size = Buffer.byteLength(JSON.stringify(body ?? {}));
    if (size > this.maxMessageBytes) {
      return Promise.reject(this.unsent(new StrataError('Invalid', `request too large for the session: about ${size} bytes, the limit is ${this.maxMessageBytes}`)));
    }
    return new Promise((resolve, reject) => {
      const request: Request = { id: 0, op, body, resolve, reject, written: false, deadlineAt: Date.now() + timeoutMs, timer: undefined as unknown as NodeJS.Timeout };
      request.timer = setTimeout(() => this.expire(request, timeoutMs), timeoutMs);
      this.queue.push(request);
      this.pump();
    });
  }

  /** Listens to pushes (messages without a request id, e.g. invalidations); returns the remover. */
  onPush(listener: PushListener): () => void {
    this.pushListeners.add(listener);
    return () => this.pushListeners.delete(listener);
  }

  /** Whether a stream is open now (a coordinator may hold this client's leases on it). */
  get isOpen(): boolean {
    return this.call !== undefined;
  }

  close(): void {
    const call = this.call;
    this.call = undefined;
    this.fail(new StrataError('Unavailable', `session to coordinator ${this.address} closed by this client`), false);
    call?.close();
  }

  private pump(): void {
    clearTimeout(this.idleTimer);
    while (this.queue.length > 0 && this.inFlight.size < this.window) {
      const request = this.queue.shift()!;
      const call = this.open();
      request.id = this.nextId++;
      request.written = true;
      this.inFlight.set(request.id, request);
      // Before any hello from this coordinator, its clock is taken to be ours: if it runs ahead, a
      // request is refused unstarted and retried (harmless); if behind, the deadline is just later.
      const deadlineMs = request.deadlineAt + (this.clockOffsetMs ?? 0);
      call.write({ id: request.id, deadlineMs, [request.op]: request.body ?? {} });
    }
    this.armIdleClose();
  }

  private open(): SessionLink {
    if (this.call) return this.call;
    this.helloSeen = false;
    this.window = INITIAL_WINDOW;
    // The handlers run only after open returns (replies and failures come asynchronously).
    const call: SessionLink = this.links.open({
      message: (reply) => {
        if (this.call === call) this.receive(reply);
      },
      broken: (err) => this.broken(call, err),
    });
    this.call = call;
    return call;
  }

  private receive(reply: any): void {
    const id = Number(reply.id);
    if (id === 0) return this.pushed(reply);
    if (!this.inFlight.has(id)) return;
    const request = this.inFlight.get(id);
    this.inFlight.delete(id);
    if (request) {
      if (reply.error?.notStarted && reply.error.code === grpc.status.RESOURCE_EXHAUSTED) {
        // Refused unstarted (in-flight limit): nothing applied; it goes again when a slot frees.
        request.written = false;
        this.queue.unshift(request);
      } else if (reply.error?.notStarted) {
        // Read after its deadline: not applied, so another coordinator may take it.
        clearTimeout(request.timer);
        request.reject(this.unsent(replyError(reply.error)));
      } else {
        clearTimeout(request.timer);
        if (reply.error) request.reject(replyError(reply.error));
        else request.resolve(reply[reply.result] ?? {});
      }
    }
    this.pump();
  }

  private pushed(push: any): void {
    if (push.result === 'hello') {
      this.helloSeen = true;
      if (Number(push.hello.nowMs) > 0) this.clockOffsetMs = Number(push.hello.nowMs) - Date.now();
      if (Number(push.hello.maxMessageBytes) > 0) this.maxMessageBytes = Number(push.hello.maxMessageBytes);
      this.window = Math.max(1, Math.min(MAX_WINDOW, Number(push.hello.maxInFlight) || INITIAL_WINDOW));
      this.pump();
      return;
    }
    for (const listener of this.pushListeners) listener(push.result, push[push.result]);
  }

  /** A request past its deadline: a written one may still be applied (ambiguous); a queued one never left. */
  private expire(request: Request, timeoutMs: number): void {
    const error = new StrataError('Timeout', `coordinator ${this.address}: no answer within ${timeoutMs} ms`);
    if (request.written) {
      // Its slot stays counted until the coordinator answers (or the stream goes): the coordinator still counts it.
      this.inFlight.set(request.id, undefined);
      request.reject(error);
    } else {
      this.queue.splice(this.queue.indexOf(request), 1);
      request.reject(this.unsent(error));
    }
  }

  private broken(call: SessionLink, err: LinkError | undefined): void {
    if (this.call !== call) return; // an older stream, already handled
    this.call = undefined;
    if (err?.code === grpc.status.UNIMPLEMENTED) {
      this.unsupported = true;
      this.fail(new SessionUnsupported(this.address), true);
      return;
    }
    this.fail(streamError(this.address, err), this.helloSeen, err?.neverSent);
  }

  /**
   * Fails everything this stream holds. Written requests may have been applied unless the
   * stream never reached the coordinator; queued ones never left and are marked so.
   */
  private fail(error: StrataError, reachedCoordinator: boolean, neverSent = false): void {
    const refused = neverSent || (!reachedCoordinator && /connection refused|ECONNREFUSED|No connection established/i.test(error.message));
    for (const request of this.inFlight.values()) {
      if (!request) continue;
      clearTimeout(request.timer);
      request.reject(refused || error instanceof SessionUnsupported ? this.unsent(copyOf(error)) : copyOf(error));
    }
    this.inFlight.clear();
    for (const request of this.queue.splice(0)) {
      clearTimeout(request.timer);
      request.reject(this.unsent(copyOf(error)));
    }
    clearTimeout(this.idleTimer);
  }

  private armIdleClose(): void {
    if (!this.call || this.inFlight.size > 0 || this.queue.length > 0 || this.pushListeners.size > 0) return;
    this.idleTimer = setTimeout(() => {
      if (this.inFlight.size > 0 || this.queue.length > 0 || this.pushListeners.size > 0) return;
      const call = this.call;
      this.call = undefined;
      call?.close();
    }, IDLE_CLOSE_MS);
    this.idleTimer.unref();
  }

  private unsent(error: StrataError): StrataError {
    neverSentErrors.add(error);
    return error;
  }
}

function copyOf(error: StrataError): StrataError {
  return error instanceof SessionUnsupported ? error : new StrataError(error.kind, error.message, { cause: error.cause });
}

/** A failed request's error, as the unary RPC would have thrown it. */
function replyError(error: { code: number; kind: string; message: string }): StrataError {
  const metadata = new grpc.Metadata();
  if (error.kind) metadata.set(ERROR_KIND_METADATA_KEY, error.kind);
  return fromServiceError({ code: error.code, details: error.message, metadata });
}

/**
 * Why a stream ended. A broken transport is Unavailable (the failover moves on); a status the
 * coordinator chose (it refused our protocol) keeps its kind and is not retried elsewhere.
 */
function streamError(address: string, err: LinkError | undefined): StrataError {
  if (!err) return new StrataError('Unavailable', `session to coordinator ${address} ended`);
  if (err.code === grpc.status.INVALID_ARGUMENT || err.code === grpc.status.RESOURCE_EXHAUSTED || err.code === grpc.status.UNAUTHENTICATED) {
    return fromServiceError(err, `coordinator ${address}`);
  }
  const reason = fromServiceError(err, `coordinator ${address}`).message;
  return new StrataError('Unavailable', `session to coordinator ${address} broke: ${reason}`, { cause: err });
}
