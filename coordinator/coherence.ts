// Client-cache coherence on one coordinator, put together: the lease table, the KV hook that
// makes each namespace change wait for its invalidations, and (on etcd) the peers that carry
// them to the other coordinators' clients.
import type * as grpc from '@grpc/grpc-js';
import { unaryHandler, type ChannelOptionsFor } from '../common/grpc.js';
import type { Logger } from '../common/log.js';
import type { TlsContext } from '../common/tls.js';
import { LeaseKv } from './lease-kv.js';
import { LeasePeers } from './lease-peers.js';
import { LeaseTable, realClock } from './leases.js';
import { CachedKv } from './meta/cached-kv.js';
import type { Kv } from './meta/kv.js';
import { etcdEngineOf } from './meta/open-kv.js';

export class Coherence {
  readonly table: LeaseTable;
  /** The KV MetaStore must use: its changes return once lease holders everywhere were told. */
  readonly kv: Kv;
  private peers: LeasePeers | undefined;
  private unlisten: (() => void) | undefined;

  constructor(
    private readonly baseKv: Kv,
    ttlMs: number,
    private readonly log: Logger,
  ) {
    this.table = new LeaseTable({
      ttlMs,
      clock: realClock,
      mayGrant: () => this.peers?.mayGrant() ?? true,
      onExpired: (sessionId, leases) => log.info({ sessionId, leases }, 'lease holder lapsed: its leases are dropped'),
    });
    this.kv = new LeaseKv(baseKv, async (events, revision, writer, own) => {
      const here = this.table.invalidate(events, writer, own);
      if (this.peers && revision !== undefined) await Promise.all([here, this.peers.waitThrough(revision)]);
      else await here;
    }, () => this.peers && { started: () => this.peers!.ownTxnStarted(), settled: (id) => this.peers!.ownTxnSettled(id) });
  }

  /** On etcd, joins the other coordinators (needs this one's address, so after binding); `tls` and `channelOptions` (a node credential): to reach them. */
  async start(address: string, tls?: TlsContext, channelOptions?: ChannelOptionsFor): Promise<void> {
    const etcd = etcdEngineOf(this.baseKv);
    if (!etcd) return;
    this.peers = new LeasePeers({ self: address, table: this.table, kv: this.baseKv, etcd: etcd.etcdClient, log: this.log, clock: realClock, tls, channelOptions });
    if (this.baseKv instanceof CachedKv) {
      const peers = this.peers;
      this.unlisten = this.baseKv.listen({
        onEvents: (events) => peers.watchEvents(events),
        onReset: () => peers.watchReset(),
        onReady: () => peers.watchReady(),
      });
    }
    await this.peers.start();
  }

  /** The LeasePeers gRPC service. */
  service(): grpc.UntypedServiceImplementation {
    return {
      Link: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
        if (this.peers) this.peers.acceptLink(call as never);
        else call.end();
      },
      Stats: unaryHandler(async () => {
        const stats = this.table.stats();
        const peers = this.peers?.stats();
        return { ...stats, through: peers?.through ?? 0, mayGrant: peers?.mayGrant ?? true };
      }),
    };
  }

  async close(): Promise<void> {
    this.unlisten?.();
    await this.peers?.close();
    this.table.close();
  }
}
