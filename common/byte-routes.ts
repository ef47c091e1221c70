// Where a data node's byte path listens. A NodeAddress may carry it (data_address); otherwise the
// node itself says so in NodeStatus, asked once per node and cached. A node that advertises none
// (an older node, or one started without it) is reached over gRPC. A route that fails at connect
// is forgotten, so a restarted node's new port is learnt on the next request.
import type * as grpc from '@grpc/grpc-js';
import { callUnary } from './grpc.js';

export interface RoutedNode {
  nodeId: string;
  address: string;
  dataAddress?: string;
}

const STATUS_TIMEOUT_MS = 5_000;

/** STRATA_BYTE_PATH=off makes clients use gRPC only (to compare the two, or to rule one out). */
export const BYTE_PATH_ENABLED = (process.env.STRATA_BYTE_PATH ?? 'on') !== 'off';

export class ByteRoutes {
  private readonly known = new Map<string, Promise<string | null>>();

  constructor(private readonly channel: (address: string) => grpc.Client) {}

  /** The byte path address of `node`, or null: use gRPC. */
  resolve(node: RoutedNode): Promise<string | null> {
    if (!BYTE_PATH_ENABLED) return Promise.resolve(null);
    if (node.dataAddress) return Promise.resolve(node.dataAddress);
    const key = `${node.nodeId}@${node.address}`;
    let route = this.known.get(key);
    if (!route) {
      route = callUnary<{ nodeId?: string; dataAddress?: string }>(this.channel(node.address), 'NodeStatus', {}, STATUS_TIMEOUT_MS, node.address).then(
        (info) => (info.nodeId === node.nodeId && info.dataAddress ? info.dataAddress : null),
        () => {
          // Unknown for now (the node is down?): gRPC reports that failure, the next call asks again.
          this.known.delete(key);
          return null;
        },
      );
      this.known.set(key, route);
    }
    return route;
  }

  forget(node: RoutedNode): void {
    this.known.delete(`${node.nodeId}@${node.address}`);
  }
}
