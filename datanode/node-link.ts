// The data node's end of NodeLink (see the proto): one stream per coordinator, held open from start
// to stop, so that a coordinator learns of this process's death from its kernel closing the
// connection, at once, instead of from heartbeats that stop coming. It carries a hello and, on a
// clean stop, a goodbye (so a restart does not start repairs); heartbeats stay the liveness truth.
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../common/log.js';

export interface NodeLinkHello {
  nodeId: string;
  address: string;
  dataAddress: string;
}

export interface NodeLink {
  /** Says goodbye and closes the stream; resolves once the goodbye is sent (or the stream is gone). */
  stop(): Promise<void>;
}

const REOPEN_MIN_MS = 200;
const REOPEN_MAX_MS = 2_000;
const GOODBYE_WAIT_MS = 500;

export function openNodeLink(client: grpc.Client, coordinator: string, hello: () => NodeLinkHello, log: Logger): NodeLink {
  let call: grpc.ClientDuplexStream<unknown, unknown> | undefined;
  let stopped = false;
  let reopenMs = REOPEN_MIN_MS;
  let timer: NodeJS.Timeout | undefined;

  const open = () => {
    if (stopped) return;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const current = (client as any).NodeLink() as grpc.ClientDuplexStream<unknown, unknown>;
    call = current;
    const openedMs = Date.now();
    let closed = false;
    const reopen = (err?: Error) => {
      if (closed) return;
      closed = true;
      if (call === current) call = undefined;
      if (stopped) return;
      // A coordinator that does not know NodeLink (an older one) is left alone: heartbeats suffice.
      if (err && /UNIMPLEMENTED/i.test(err.message)) return log.info({ coordinator }, 'coordinator has no NodeLink; heartbeats only');
      log.debug({ coordinator, err: err?.message }, 'node link closed; reopening');
      // A link that held a while ago was fine: start the backoff over.
      if (Date.now() - openedMs > 2 * REOPEN_MAX_MS) reopenMs = REOPEN_MIN_MS;
      timer = setTimeout(open, reopenMs).unref();
      reopenMs = Math.min(REOPEN_MAX_MS, reopenMs * 2);
    };
    current.on('data', () => undefined);
    current.on('error', (err) => reopen(err));
    current.on('end', () => reopen());
    current.on('close', () => reopen());
    current.write(hello());
  };
  open();

  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      const current = call;
      if (!current) return;
      // The goodbye, then a clean end; the coordinator ends its side once it has read both.
      await new Promise<void>((resolve) => {
        const giveUp = setTimeout(resolve, GOODBYE_WAIT_MS);
        current.once('status', () => {
          clearTimeout(giveUp);
          resolve();
        });
        current.write({ ...hello(), stopping: true });
        current.end();
      });
    },
  };
}
