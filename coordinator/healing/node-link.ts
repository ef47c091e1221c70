// The coordinator's end of NodeLink: a stream each data node holds open from start to stop. Its
// messages are only a hello (who the node is) and, on a clean stop, a goodbye; what matters is its
// end. An end without a goodbye goes to the registry, which probes the node and may declare it
// dead at once (see nodes.ts). Any coordinator does this: placement everywhere skips a dead node,
// and only the leader repairs.
import * as grpc from '@grpc/grpc-js';
import { invalid } from '../../common/errors.js';
import { toServiceError } from '../../common/grpc.js';
import type { NodeRegistry } from '../nodes.js';

interface WireLinkMessage {
  nodeId?: string;
  address?: string;
  dataAddress?: string;
  stopping?: boolean;
}

const NODE_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const ADDRESS = /^[^\s/]+:\d{1,5}$/;

export function nodeLinkHandler(registry: Pick<NodeRegistry, 'linkOpened' | 'linkClosed' | 'holdLink'>) {
  return (call: grpc.ServerDuplexStream<WireLinkMessage, unknown>): void => {
    let nodeId = '';
    let linkToken = 0;
    let goodbye = false;
    let ended = false;
    // A stopping coordinator ends its links itself, so its server need not wait them out.
    const release = registry.holdLink(() => {
      if (!call.writableEnded) call.end();
    });
    const end = () => {
      if (ended) return;
      ended = true;
      release();
      if (nodeId) void registry.linkClosed(nodeId, goodbye, linkToken);
    };
    const refuse = (message: string) => {
      end();
      call.emit('error', toServiceError(invalid(`NodeLink: ${message}`)));
    };
    call.on('data', (message: WireLinkMessage) => {
      if (ended) return;
      if (!nodeId) {
        const id = String(message.nodeId ?? '');
        if (!NODE_ID.test(id)) return refuse(`invalid node id '${id}'`);
        const dataAddress = String(message.dataAddress ?? '');
        if (dataAddress && !ADDRESS.test(dataAddress)) return refuse(`invalid data address '${dataAddress}'`);
        nodeId = id;
        linkToken = registry.linkOpened(nodeId, dataAddress);
      } else if (message.nodeId && message.nodeId !== nodeId) {
        return refuse(`the link of '${nodeId}' cannot speak for '${message.nodeId}'`);
      }
      if (message.stopping) goodbye = true;
    });
    // The node half-closed (a clean end, with or without a goodbye): finish the call too.
    call.on('end', () => {
      end();
      if (!call.writableEnded) call.end();
    });
    call.on('cancelled', end);
    call.on('error', end);
    call.on('close', end);
  };
}
