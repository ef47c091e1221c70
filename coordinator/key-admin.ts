// The keys' admin calls (admin role when auth is on: authz/admin.ts). RewrapMasterKeys passes one
// page of a master key rotation to the data node that holds the chunks (DataNode.RewrapChunks,
// node-only: this coordinator's node certificate or node-secret credential reaches it where a client cannot).
// RotateGrantKeys adds a chunk grant signing key (grant-keys.ts): it signs once every coordinator
// has re-read the keys and every data node has heard of it; grants signed before stay valid.
import type * as grpc from '@grpc/grpc-js';
import { DataNodeChannels, callUnary, unaryHandler, type ChannelOptionsFor } from '../common/grpc.js';
import { StrataError, invalid } from '../common/errors.js';
import type { TlsContext } from '../common/tls.js';
import type { NodeRegistry } from './nodes.js';
import type { Kv } from './meta/kv.js';
import { RELOAD_MS, rotateGrantKeys, type GrantKeys } from './grant-keys.js';

/** A page re-wraps up to 4096 chunks of up to 64 MiB each: give it time. */
const REWRAP_PAGE_TIMEOUT_MS = 600_000;
const NODE_ID = /^[A-Za-z0-9_.-]{1,64}$/;

type Req = Record<string, unknown>;

interface KeyAdminDeps {
  nodes: NodeRegistry;
  tls?: TlsContext;
  kv: Kv;
  grantKeys: GrantKeys;
  grantTtlMs: number;
  heartbeatIntervalMs: number;
  channelOptions?: ChannelOptionsFor;
}

export function keyAdminHandlers({ nodes, tls, kv, grantKeys, grantTtlMs, heartbeatIntervalMs, channelOptions }: KeyAdminDeps): { handlers: grpc.UntypedServiceImplementation; close(): void } {
  const channels = new DataNodeChannels(tls, channelOptions);
  const handlers = {
    RewrapMasterKeys: unaryHandler(async (req: Req) => {
      const nodeId = String(req.nodeId ?? '');
      if (!NODE_ID.test(nodeId)) throw invalid(`invalid node id '${nodeId.slice(0, 80)}'`);
      const address = nodes.addressOf(nodeId);
      if (!address) throw new StrataError('NotFound', `no data node '${nodeId}' (strata nodes lists them)`);
      if (!nodes.isLive(nodeId)) throw new StrataError('Unavailable', `data node ${nodeId} is not live: its chunks are re-wrapped once it is back`);
      return callUnary(channels.get(address), 'RewrapChunks', { afterChunkId: String(req.afterChunkId ?? ''), limit: Number(req.limit) || 0 }, REWRAP_PAGE_TIMEOUT_MS, nodeId);
    }),
    RotateGrantKeys: unaryHandler(async (req: Req) => {
      const asked = Number(req.activateAfterMs) || 0;
      if (!Number.isSafeInteger(asked) || asked < 0 || asked > 24 * 3_600_000) throw invalid(`invalid activate_after_ms ${String(req.activateAfterMs)}: 0..86400000`);
      // By default: after every coordinator re-read the keys and every data node heard a few heartbeats.
      const activateAfterMs = asked || RELOAD_MS + 3 * heartbeatIntervalMs;
      const rotated = await rotateGrantKeys(kv, activateAfterMs, Date.now(), grantTtlMs);
      await grantKeys.refresh();
      return { keyId: rotated.id, activeFromMs: rotated.activeFromMs, keyIds: rotated.keyIds };
    }),
  };
  return { handlers, close: () => channels.close() };
}
