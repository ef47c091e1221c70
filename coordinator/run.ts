// `strata coordinator`: opens the metadata engine, serves the Coordinator service.
import * as grpc from '@grpc/grpc-js';
import type { CoordinatorConfig } from '../common/config.js';
import { CHANNEL_OPTIONS, bindServer, shutdownServer, strataProto } from '../common/grpc.js';
import type { Logger } from '../common/log.js';
import { CACHED_PREFIXES } from './meta/keys.js';
import { openKv } from './meta/open-kv.js';
import { MetaStore } from './meta/store.js';
import { NodeRegistry } from './nodes.js';
import { coordinatorService } from './service.js';

export interface RunningCoordinator {
  address: string;
  stop(): Promise<void>;
}

const SHUTDOWN_GRACE_MS = 3000;

export async function runCoordinator(config: CoordinatorConfig, log: Logger): Promise<RunningCoordinator> {
  const kv = await openKv(config.meta, { cachePrefixes: CACHED_PREFIXES });
  try {
    const meta = new MetaStore(kv);
    await meta.init();
    const nodes = new NodeRegistry(kv, {
      deadAfterMs: config.deadAfterMs,
      persistIntervalMs: Math.max(config.heartbeatIntervalMs * 10, 5000),
      log,
    });
    await nodes.load();
    const server = new grpc.Server(CHANNEL_OPTIONS);
    server.addService(strataProto.Coordinator.service, coordinatorService(meta, nodes, config));
    const port = await bindServer(server, config.listen);
    const host = config.listen.slice(0, config.listen.lastIndexOf(':'));
    const address = `${host}:${port}`;
    log.info({ address, meta: redactMeta(config.meta) }, 'coordinator serving');
    return {
      address,
      async stop() {
        await shutdownServer(server, SHUTDOWN_GRACE_MS);
        await kv.close();
      },
    };
  } catch (err) {
    await kv.close().catch(() => undefined);
    throw err;
  }
}

/** Credentials in a meta URL (etcd://user:pass@host) never reach the logs. */
export function redactMeta(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
