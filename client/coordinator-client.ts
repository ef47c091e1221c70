// Calls to the coordinators, failing over between them: a call that cannot reach one
// coordinator goes to the next, so losing a coordinator never fails a client. The namespace
// and chunk calls travel on one session stream per coordinator (client/session.ts), many in
// flight; the rest are unary RPCs. Either way one failover loop applies one set of rules.
import * as grpc from '@grpc/grpc-js';
import { StrataError, invalid } from '../common/errors.js';
import { CHANNEL_OPTIONS, bearerMetadata, callUnary, isTransportFailure, strataProto } from '../common/grpc.js';
import type { TokenSource } from './auth/token-source.js';
import { channelCredentials, type TlsContext } from '../common/tls.js';
import { SessionStream, SessionUnsupported, wasNeverSent, type PushListener } from './session.js';
import { DEFAULT_SESSION_TRANSPORT, SessionLinks, type SessionTransportChoice } from './session-link.js';

export interface CoordinatorClientOptions {
  /** host:port of every coordinator; calls go to one at a time. */
  addresses: string[];
  /** Deadline of one call to one coordinator. */
  callTimeoutMs: number;
  /** How long to keep trying the coordinators in turn before giving up. */
  failoverTimeoutMs: number;
  /** Send the namespace and chunk calls on session streams (default); false = unary RPCs only. */
  session?: boolean;
  /**
   * What carries the sessions: 'auto' (default; STRATA_SESSION_TCP=off makes it 'grpc') = plain
   * TCP where the coordinator offers it, else the gRPC call; 'grpc' = always the gRPC call.
   */
  sessionTransport?: SessionTransportChoice;
  /** Bearer tokens for coordinators that require them (each unary call and each session carries one). */
  tokens?: TokenSource;
  /** TLS to the coordinators, gRPC and session port alike (common/tls.ts); absent = plain text. */
  tls?: TlsContext;
}

/** The unary RPCs that have a session op, and its name. */
const SESSION_OP_OF: Readonly<Record<string, string>> = {
  Stat: 'stat',
  ReadDir: 'readDir',
  Mkdir: 'mkdir',
  Create: 'create',
  Remove: 'remove',
  Rename: 'rename',
  Symlink: 'symlink',
  SetAttr: 'setAttr',
  AllocateChunk: 'allocateChunk',
  CommitChunk: 'commitChunk',
  GetChunks: 'getChunks',
};

/** Turns a retry's error into an answer after an attempt whose outcome is unknown (or leaves it). */
export type AfterAmbiguousRetry<Res> = (error: StrataError) => Res | undefined;

export class CoordinatorClient {
  private readonly clients: grpc.Client[];
  private readonly sessions: SessionStream[];
  private readonly links: SessionLinks[];
  private current = 0;
  /** Requests sent to coordinators (each attempt), unary and session alike: what a cache saves shows here. */
  requestsSent = 0;
  /** The same, per op (the session op's name, or the unary method's): what a cache saves of which request. */
  readonly requestsSentByOp = new Map<string, number>();
  /** Milliseconds spent waiting for answers (sent to settled, each attempt), per op: where a client's time goes. */
  readonly requestMsByOp = new Map<string, number>();

  constructor(private readonly options: CoordinatorClientOptions) {
    if (options.addresses.length === 0) {
      throw invalid('no coordinator given: pass --coordinator host:port or set STRATA_COORDINATOR');
    }
    for (const address of options.addresses) {
      if (!/^[^\s/]+:\d{1,5}$/.test(address)) throw invalid(`invalid coordinator address '${address}': expected host:port`);
    }
    this.clients = options.addresses.map((address) => new strataProto.Coordinator(address, channelCredentials(options.tls), CHANNEL_OPTIONS));
    const transport = options.sessionTransport ?? DEFAULT_SESSION_TRANSPORT;
    this.links = this.clients.map((client) => new SessionLinks(client, transport, options.callTimeoutMs, options.tokens, options.tls));
    this.sessions = this.links.map((links, i) => new SessionStream(links, options.addresses[i]));
  }

  /**
   * One call, failing over between coordinators on transport failures. A failure after the
   * request was sent may have been applied before the connection broke; `afterAmbiguousRetry`
   * then gets a retry's error and may turn it into an answer (a retried Remove that finds the
   * name gone was most likely applied by the first attempt). A change is never re-sent blindly
   * as if new: only this hook may call a retry's failure a success.
   */
  call<Res>(method: string, request: unknown, afterAmbiguousRetry?: AfterAmbiguousRetry<Res>, timeoutMs = this.options.callTimeoutMs): Promise<Res> {
    const op = this.options.session === false ? undefined : SESSION_OP_OF[method];
    const tokens = this.options.tokens;
    const unary = async (index: number) =>
      callUnary<Res>(this.clients[index], method, request, timeoutMs, `coordinator ${this.options.addresses[index]}`, tokens ? bearerMetadata(await tokens.token()) : undefined);
    if (!op) return this.withFailover(method, unary, afterAmbiguousRetry);
    return this.withFailover(op, async (index) => {
      try {
        return (await this.sessions[index].request(op, request, this.options.callTimeoutMs)) as Res;
      } catch (err) {
        // An older coordinator without the stream: its unary RPC says the same.
        if (err instanceof SessionUnsupported) return unary(index);
        throw err;
      }
    }, afterAmbiguousRetry);
  }

  /** Whether a session stream to some coordinator is open and greeted. */
  get sessionOpen(): boolean {
    return this.sessions.some((session) => session.isGreeted);
  }

  /** An op only the session stream has (the inode ops), with the same failover and rules. */
  session<Res>(op: string, request: unknown, afterAmbiguousRetry?: AfterAmbiguousRetry<Res>): Promise<Res> {
    return this.withFailover(op, (index) => this.sessions[index].request(op, request, this.options.callTimeoutMs) as Promise<Res>, afterAmbiguousRetry);
  }

  /** Pushes from every coordinator's session (lease invalidations); returns the remover. */
  onPush(listener: PushListener): () => void {
    const removers = this.sessions.map((session) => session.onPush(listener));
    return () => removers.forEach((remove) => remove());
  }

  /** Pushes, with a way to answer on the stream that pushed (a lease ack must reach the session that waits for it). */
  onPushFrom(listener: (kind: string, push: unknown, answer: (op: string, body: unknown) => Promise<unknown>) => void): () => void {
    const removers = this.sessions.map((session) =>
      session.onPush((kind, push) => listener(kind, push, (op, body) => session.request(op, body, this.options.callTimeoutMs))),
    );
    return () => removers.forEach((remove) => remove());
  }

  private async withFailover<Res>(op: string, attempt: (index: number) => Promise<Res>, afterAmbiguousRetry?: AfterAmbiguousRetry<Res>): Promise<Res> {
    const giveUpAt = Date.now() + this.options.failoverTimeoutMs;
    let lastError: StrataError | undefined;
    let ambiguous = false;
    for (let round = 0; ; round++) {
      const index = this.current;
      try {
        this.requestsSent++;
        this.requestsSentByOp.set(op, (this.requestsSentByOp.get(op) ?? 0) + 1);
        const sentAt = performance.now();
        try {
          return await attempt(index);
        } finally {
          this.requestMsByOp.set(op, (this.requestMsByOp.get(op) ?? 0) + performance.now() - sentAt);
        }
      } catch (err) {
        const error = err as StrataError;
        if (!isTransportFailure(error) || error instanceof SessionUnsupported) {
          if (error instanceof SessionUnsupported) throw new StrataError('Unavailable', `${error.message}: upgrade it to use inode operations`);
          const answer = ambiguous && afterAmbiguousRetry ? afterAmbiguousRetry(error) : undefined;
          if (answer !== undefined) return answer;
          throw error;
        }
        // A request that never left, or a refused connection, never reached the coordinator; anything else may have.
        if (!wasNeverSent(error) && !/connection refused|ECONNREFUSED/i.test(error.message)) ambiguous = true;
        lastError = error;
        if (this.current === index) this.current = (index + 1) % this.clients.length;
        const roundDone = (round + 1) % this.clients.length === 0;
        if (Date.now() >= giveUpAt) break;
        if (roundDone) await new Promise((r) => setTimeout(r, 200));
      }
    }
    const tried = this.options.addresses.join(', ');
    throw new StrataError('Unavailable', `cannot reach any coordinator (${tried}): ${lastError?.message ?? 'unreachable'}; is the cluster running?`, {
      cause: lastError,
    });
  }

  /** What the last session to each coordinator ran on ('unknown' before the first request): tests, benchmarks. */
  get sessionTransports(): Array<'tcp' | 'grpc' | 'unknown'> {
    return this.links.map((links) => links.transport);
  }

  /** Sends `op` on every session stream open now (not opening any, no failover); failures are dropped. */
  requestOnOpenSessions(op: string, body: unknown, timeoutMs: number): Promise<void> {
    const open = this.sessions.filter((session) => session.isOpen);
    return Promise.all(open.map((session) => session.request(op, body, timeoutMs).catch(() => undefined))).then(() => undefined);
  }

  close(): void {
    for (const session of this.sessions) session.close();
    for (const client of this.clients) client.close();
  }
}
