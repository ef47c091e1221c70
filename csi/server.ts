// `strata csi`: the CSI Identity service, and the Controller and/or Node services as the mode
// says, on a unix socket. A service this mode does not serve answers UNIMPLEMENTED (grpc-js's
// answer for a service not added), as the spec asks of a call "disabled in the current mode".
import * as grpc from '@grpc/grpc-js';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StrataError, asStrataError } from '../common/errors.js';
import { bindServer, shutdownServer, toServiceError } from '../common/grpc.js';
import type { Logger } from '../common/log.js';
import { Strata } from '../client/index.js';
import { tokenProviderFrom } from '../client/auth/token-sources.js';
import type { CsiConfig } from './config.js';
import { ControllerService } from './controller.js';
import { NodeService } from './node.js';
import { csiProto } from './proto.js';

/** The driver's name: a Kubernetes CSIDriver object and StorageClass provisioner name it. */
export const DRIVER_NAME = 'csi.strata.io';
const PROBE_TIMEOUT_MS = 3000;

const here = path.dirname(fileURLToPath(import.meta.url));
const VERSION: string = JSON.parse(
  readFileSync([path.resolve(here, '../../package.json'), path.resolve(here, '../package.json')].find((file) => existsSync(file))!, 'utf8'),
).version;

export interface RunningCsi {
  socketPath: string;
  node?: NodeService;
  stop(): Promise<void>;
}

export async function startCsiServer(config: CsiConfig, log: Logger): Promise<RunningCsi> {
  const tokenProvider = tokenProviderFrom({ tokenFile: config.tokenFile, env: process.env });
  const tls = { ca: config.tlsCa, cert: config.tlsCert, key: config.tlsKey };
  const client = Strata.connect({ coordinators: config.coordinator, failoverTimeoutMs: 5000, tokenProvider, tls });
  const serveController = config.mode !== 'node';
  const serveNode = config.mode !== 'controller';
  const server = new grpc.Server();
  const handle = handlerFactory(log);

  server.addService(csiProto.Identity.service, {
    GetPluginInfo: handle('GetPluginInfo', async () => ({ name: DRIVER_NAME, vendorVersion: VERSION, manifest: { mode: config.mode } })),
    // The plugin as deployed, whatever this instance serves (the spec: the same from every instance).
    GetPluginCapabilities: handle('GetPluginCapabilities', async () => ({ capabilities: [{ service: { type: 'CONTROLLER_SERVICE' } }] })),
    Probe: handle('Probe', async () => {
      // Only the controller depends on the cluster for every call. A node plugin that restarted
      // because the cluster blinked would take its pods' mounts with it, so it stays healthy.
      if (serveController) await probeCluster(client);
      return { ready: { value: true } };
    }),
  });

  if (serveController) {
    const controller = new ControllerService(client, config.baseDir);
    server.addService(csiProto.Controller.service, {
      CreateVolume: handle('CreateVolume', (r) => controller.createVolume(r)),
      DeleteVolume: handle('DeleteVolume', (r) => controller.deleteVolume(r)),
      ValidateVolumeCapabilities: handle('ValidateVolumeCapabilities', (r) => controller.validateVolumeCapabilities(r)),
      GetCapacity: handle('GetCapacity', (r) => controller.getCapacity(r)),
      ControllerGetCapabilities: handle('ControllerGetCapabilities', () => controller.controllerGetCapabilities()),
    });
  }

  let node: NodeService | undefined;
  if (serveNode) {
    const settings = { coordinators: config.coordinator, tokenFile: config.tokenFile, tlsCa: config.tlsCa, tlsCert: config.tlsCert, tlsKey: config.tlsKey, logLevel: config.logLevel === 'info' ? 'warn' : config.logLevel };
    const service = (node = new NodeService(client, config.baseDir, config.nodeId, settings, log));
    server.addService(csiProto.Node.service, {
      NodePublishVolume: handle('NodePublishVolume', (r) => service.nodePublishVolume(r)),
      NodeUnpublishVolume: handle('NodeUnpublishVolume', (r) => service.nodeUnpublishVolume(r)),
      NodeGetCapabilities: handle('NodeGetCapabilities', () => service.nodeGetCapabilities()),
      NodeGetInfo: handle('NodeGetInfo', () => service.nodeGetInfo()),
    });
  }

  const socketPath = config.endpoint;
  await mkdir(path.dirname(socketPath), { recursive: true });
  await removeStaleSocket(socketPath);
  try {
    await bindServer(server, `unix:${socketPath}`);
  } catch (err) {
    client.close();
    throw err;
  }
  log.info({ socket: socketPath, mode: config.mode, baseDir: config.baseDir, nodeId: config.nodeId, coordinators: config.coordinator }, `CSI driver ${DRIVER_NAME} serving`);
  return {
    socketPath,
    node,
    async stop() {
      await shutdownServer(server, 5000);
      client.close();
      await rm(socketPath, { force: true });
    },
  };
}

/** The spec's Probe failure for a missing dependency: FAILED_PRECONDITION. */
async function probeCluster(client: Strata): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StrataError('Timeout', `no answer in ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
  });
  try {
    await Promise.race([client.statfs(), timeout]);
  } catch (err) {
    throw new CsiStatus(grpc.status.FAILED_PRECONDITION, `the strata cluster is not reachable: ${asStrataError(err).message}`);
  } finally {
    clearTimeout(timer);
  }
}

/** A CSI status the error taxonomy has no kind for (Probe's FAILED_PRECONDITION). */
class CsiStatus extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

type Handler = (request: any) => Promise<object>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Unary handlers that map errors once (the taxonomy's gRPC codes are the spec's) and log failures, never requests (they carry secrets). */
function handlerFactory(log: Logger) {
  return (method: string, fn: Handler): grpc.handleUnaryCall<unknown, unknown> =>
    (call, callback) => {
      fn(call.request).then(
        (reply) => callback(null, reply),
        (err) => {
          const status = err instanceof CsiStatus ? { code: err.code, details: err.message } : toServiceError(err);
          const level = status.code === grpc.status.INTERNAL ? 'error' : 'warn';
          log[level]({ method, code: grpc.status[status.code!] }, status.details ?? 'failed');
          callback(status as grpc.ServiceError);
        },
      );
    };
}

/** A socket left by a driver that died; anything else at that path is not ours to delete. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  const info = await stat(socketPath).catch(() => undefined);
  if (!info) return;
  if (!info.isSocket()) throw new StrataError('Invalid', `${socketPath} exists and is not a socket`);
  await rm(socketPath);
}
