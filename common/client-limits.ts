// Per-client bounds on what a server takes at once and per second, for every edge: gRPC calls
// (a server interceptor, so every method of every service is counted without touching its
// handler), session TCP connections and byte path connections. A client is its remote host until
// authentication names it better. Past a bound the request is refused before it starts, with
// Busy (RESOURCE_EXHAUSTED): nothing was applied, the client may try again later.
import * as grpc from '@grpc/grpc-js';
import { StrataError } from './errors.js';
import { ERROR_KIND_METADATA_KEY } from './grpc.js';

export interface ClientLimits {
  /** Requests (calls, streams, connections) one client may have open at once; 0 = no bound. */
  maxInFlight: number;
  /** Requests one client may start per second, with a burst of as many; 0 = no bound. */
  ratePerSec: number;
}

/** Entries kept for clients with nothing in flight before idle ones are dropped. */
const IDLE_CLIENTS_KEPT_MAX = 10_000;

interface ClientState {
  inFlight: number;
  tokens: number;
  refilledAtMs: number;
}

export class ClientLimiter {
  private readonly clients = new Map<string, ClientState>();

  constructor(
    readonly limits: ClientLimits,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** Admits one request of `client`: returns its release (idempotent), or throws Busy. */
  admit(client: string): () => void {
    const { maxInFlight, ratePerSec } = this.limits;
    if (maxInFlight === 0 && ratePerSec === 0) return () => undefined;
    const now = this.nowMs();
    let state = this.clients.get(client);
    if (!state) {
      if (this.clients.size >= IDLE_CLIENTS_KEPT_MAX) this.dropIdle(now);
      state = { inFlight: 0, tokens: ratePerSec, refilledAtMs: now };
      this.clients.set(client, state);
    }
    if (maxInFlight > 0 && state.inFlight >= maxInFlight) {
      throw new StrataError('Busy', `too many requests from ${client}: ${maxInFlight} in flight at most; try again when some finished`);
    }
    if (ratePerSec > 0) {
      state.tokens = Math.min(ratePerSec, state.tokens + ((now - state.refilledAtMs) * ratePerSec) / 1000);
      state.refilledAtMs = now;
      if (state.tokens < 1) throw new StrataError('Busy', `too many requests from ${client}: more than ${ratePerSec} per second; slow down`);
      state.tokens -= 1;
    }
    state.inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      state.inFlight--;
    };
  }

  /** Requests of `client` in flight (tests, diagnostics). */
  inFlight(client: string): number {
    return this.clients.get(client)?.inFlight ?? 0;
  }

  /** Clients tracked (tests). */
  get size(): number {
    return this.clients.size;
  }

  /** Forgets clients with nothing in flight whose bucket would be full again by now. */
  private dropIdle(now: number): void {
    for (const [client, state] of this.clients) {
      const full = this.limits.ratePerSec === 0 || state.tokens + ((now - state.refilledAtMs) * this.limits.ratePerSec) / 1000 >= this.limits.ratePerSec;
      if (state.inFlight === 0 && full) this.clients.delete(client);
    }
  }
}

/** The client a connection comes from: its remote host (IPv4-mapped addresses as plain IPv4). */
export function clientOf(remoteAddress: string | undefined): string {
  return (remoteAddress ?? 'unknown').replace(/^::ffff:/, '');
}

/** A gRPC server interceptor admitting every call through `limiter`; a refused call ends at once with RESOURCE_EXHAUSTED. */
export function limitInterceptor(limiter: ClientLimiter): grpc.ServerInterceptor {
  return (_method, call) => {
    let release: (() => void) | undefined;
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        try {
          release = limiter.admit(clientOf(call.getConnectionInfo().remoteAddress));
        } catch (err) {
          const trailer = new grpc.Metadata();
          trailer.set(ERROR_KIND_METADATA_KEY, 'Busy');
          return call.sendStatus({ code: grpc.status.RESOURCE_EXHAUSTED, details: (err as Error).message, metadata: trailer });
        }
        next(metadata);
      })
      .withOnCancel(() => release?.())
      .build();
    const responder = new grpc.ResponderBuilder()
      .withStart((next) => next(listener))
      .withSendStatus((status, next) => {
        release?.();
        next(status);
      })
      .build();
    return new grpc.ServerInterceptingCall(call, responder);
  };
}
