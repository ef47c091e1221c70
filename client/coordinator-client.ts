// Calls to the coordinators, failing over between them: a call that cannot reach one
// coordinator goes to the next, so losing a coordinator never fails a client.
import * as grpc from '@grpc/grpc-js';
import { StrataError, invalid } from '../common/errors.js';
import { CHANNEL_OPTIONS, callUnary, isTransportFailure, strataProto } from '../common/grpc.js';

export interface CoordinatorClientOptions {
  /** host:port of every coordinator; calls go to one at a time. */
  addresses: string[];
  /** Deadline of one call to one coordinator. */
  callTimeoutMs: number;
  /** How long to keep trying the coordinators in turn before giving up. */
  failoverTimeoutMs: number;
}

export class CoordinatorClient {
  private readonly clients: grpc.Client[];
  private current = 0;

  constructor(private readonly options: CoordinatorClientOptions) {
    if (options.addresses.length === 0) {
      throw invalid('no coordinator given: pass --coordinator host:port or set STRATA_COORDINATOR');
    }
    for (const address of options.addresses) {
      if (!/^[^\s/]+:\d{1,5}$/.test(address)) throw invalid(`invalid coordinator address '${address}': expected host:port`);
    }
    this.clients = options.addresses.map((address) => new strataProto.Coordinator(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS));
  }

  /**
   * One call, failing over between coordinators on transport failures. A failure after the
   * request was sent may have been applied before the connection broke; `afterAmbiguousRetry`
   * then gets a retry's error and may turn it into an answer (a retried Remove that finds the
   * name gone was most likely applied by the first attempt).
   */
  async call<Res>(method: string, request: unknown, afterAmbiguousRetry?: (error: StrataError) => Res | undefined): Promise<Res> {
    const giveUpAt = Date.now() + this.options.failoverTimeoutMs;
    let lastError: StrataError | undefined;
    let ambiguous = false;
    for (let attempt = 0; ; attempt++) {
      const index = this.current;
      const address = this.options.addresses[index];
      try {
        return await callUnary<Res>(this.clients[index], method, request, this.options.callTimeoutMs, `coordinator ${address}`);
      } catch (err) {
        const error = err as StrataError;
        if (!isTransportFailure(error)) {
          const answer = ambiguous && afterAmbiguousRetry ? afterAmbiguousRetry(error) : undefined;
          if (answer !== undefined) return answer;
          throw error;
        }
        // A refused connection never reached the coordinator; anything else may have.
        if (!/connection refused|ECONNREFUSED/i.test(error.message)) ambiguous = true;
        lastError = error;
        if (this.current === index) this.current = (index + 1) % this.clients.length;
        const roundDone = (attempt + 1) % this.clients.length === 0;
        if (Date.now() >= giveUpAt) break;
        if (roundDone) await new Promise((r) => setTimeout(r, 200));
      }
    }
    const tried = this.options.addresses.join(', ');
    throw new StrataError('Unavailable', `cannot reach any coordinator (${tried}): ${lastError?.message ?? 'unreachable'}; is the cluster running?`, {
      cause: lastError,
    });
  }

  close(): void {
    for (const client of this.clients) client.close();
  }
}
