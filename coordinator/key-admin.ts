// The keys' admin calls (admin role when auth is on: authz/admin.ts). RewrapMasterKeys passes one
// page of a master key rotation to the data node that holds the chunks (DataNode.RewrapChunks,
// node-only: this coordinator's node certificate or node-secret credential reaches it where a client cannot).
import type * as grpc from '@grpc/grpc-js';
import { DataNodeChannels, callUnary, unaryHandler } from '../common/grpc.js';
import { StrataError, invalid } from '../common/errors.js';
import type { TlsContext } from '../common/tls.js';
import type { NodeRegistry } from './nodes.js';

/** A page re-wraps up to 4096 chunks of up to 64 MiB each: give it time. */
const REWRAP_PAGE_TIMEOUT_MS = 600_000;
const NODE_ID = /^[A-Za-z0-9_.-]{1,64}$/;

type Req = Record<string, unknown>;

export function keyAdminHandlers({ nodes, tls, channelOptions }: { nodes: NodeRegistry; tls?: TlsContext; channelOptions?: grpc.ClientOptions }): { handlers: grpc.UntypedServiceImplementation; close(): void } {
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
  };
  return { handlers, close: () => channels.close() };
}
