// gRPC plumbing shared by every role: the loaded contract, channel options, and the one
// mapping between StrataError kinds and gRPC status codes (both directions).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { existsSync } from 'node:fs';
import http2 from 'node:http2';
import { type ErrorKind, StrataError, asStrataError, isErrorKind } from './errors.js';
import { clipMessage } from './limits.js';
import { TLS_FAILURE_REASONS, channelCredentials, type TlsContext } from './tls.js';

const PROTO_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../proto/strata.proto');
const PROTO_PATH_SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../proto/strata.proto');

/** Largest message either side accepts: a 4 MiB data piece plus framing. */
export const MAX_MESSAGE_BYTES = 5 * 1024 * 1024;

export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  // Fail fast instead of queueing calls while a peer is down: clients fail over themselves.
  'grpc.enable_retries': 0,
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 2_000,
  // HTTP/2's default 64 KiB stream window stalls bulk transfers on WINDOW_UPDATE round trips.
  'grpc-node.flow_control_window': 16 * 1024 * 1024, // = STREAM_WINDOW_BYTES below
};

/** The .proto sits at the repo root: two levels above dist/common/, one above common/ (vitest). */
function protoFile(): string {
  return existsSync(PROTO_PATH) ? PROTO_PATH : PROTO_PATH_SRC;
}

const packageDefinition = protoLoader.loadSync(protoFile(), {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const loaded = grpc.loadPackageDefinition(packageDefinition) as any;
export const strataProto = loaded.strata.v1 as {
  Coordinator: grpc.ServiceClientConstructor;
  DataNode: grpc.ServiceClientConstructor;
  LeasePeers: grpc.ServiceClientConstructor;
};

const KIND_TO_STATUS: Record<ErrorKind, grpc.status> = {
  NotFound: grpc.status.NOT_FOUND,
  Exists: grpc.status.ALREADY_EXISTS,
  NotEmpty: grpc.status.FAILED_PRECONDITION,
  NotDir: grpc.status.FAILED_PRECONDITION,
  IsDir: grpc.status.FAILED_PRECONDITION,
  Invalid: grpc.status.INVALID_ARGUMENT,
  PermissionDenied: grpc.status.PERMISSION_DENIED,
  Unauthenticated: grpc.status.UNAUTHENTICATED,
  NotPermitted: grpc.status.PERMISSION_DENIED,
  TooManyLinks: grpc.status.FAILED_PRECONDITION,
  NoSpace: grpc.status.RESOURCE_EXHAUSTED,
  // gRPC's own word for a quota ("perhaps a per-user quota"); the strata-error kind tells it from NoSpace and Busy.
  QuotaExceeded: grpc.status.RESOURCE_EXHAUSTED,
  CrossQuota: grpc.status.FAILED_PRECONDITION,
  Busy: grpc.status.RESOURCE_EXHAUSTED,
  Unavailable: grpc.status.UNAVAILABLE,
  Timeout: grpc.status.DEADLINE_EXCEEDED,
  Conflict: grpc.status.ABORTED,
  Corrupt: grpc.status.DATA_LOSS,
  KeyUnavailable: grpc.status.FAILED_PRECONDITION,
  Internal: grpc.status.INTERNAL,
};

const STATUS_TO_KIND: Partial<Record<grpc.status, ErrorKind>> = {
  [grpc.status.NOT_FOUND]: 'NotFound',
  [grpc.status.ALREADY_EXISTS]: 'Exists',
  [grpc.status.INVALID_ARGUMENT]: 'Invalid',
  [grpc.status.PERMISSION_DENIED]: 'PermissionDenied',
  [grpc.status.UNAUTHENTICATED]: 'Unauthenticated',
  [grpc.status.RESOURCE_EXHAUSTED]: 'NoSpace',
  [grpc.status.UNAVAILABLE]: 'Unavailable',
  [grpc.status.DEADLINE_EXCEEDED]: 'Timeout',
  [grpc.status.ABORTED]: 'Conflict',
  [grpc.status.DATA_LOSS]: 'Corrupt',
  [grpc.status.CANCELLED]: 'Unavailable',
};

export const ERROR_KIND_METADATA_KEY = 'strata-error';

/** Server edge: any thrown value becomes a gRPC status carrying the strata kind. */
export function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  const strataError =
    err instanceof StrataError
      ? err
      : new StrataError('Internal', err instanceof Error ? err.message : String(err), { cause: err });
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_KIND_METADATA_KEY, strataError.kind);
  // Clipped: a message may quote client input, and a huge trailer never reaches the client.
  return { code: KIND_TO_STATUS[strataError.kind], details: clipMessage(strataError.message), metadata };
}

/** Client edge: a gRPC error back into a StrataError (kind from metadata, else from status). */
export function fromServiceError(err: unknown, peer?: string): StrataError {
  if (err instanceof StrataError) return err;
  const serviceError = err as Partial<grpc.ServiceError>;
  if (typeof serviceError?.code !== 'number') {
    return new StrataError('Internal', err instanceof Error ? err.message : String(err), { cause: err });
  }
  const fromMetadata = serviceError.metadata?.get(ERROR_KIND_METADATA_KEY)?.[0];
  const kind: ErrorKind =
    typeof fromMetadata === 'string' && isErrorKind(fromMetadata)
      ? fromMetadata
      : (STATUS_TO_KIND[serviceError.code] ?? 'Internal');
  let message = serviceError.details || serviceError.message || 'request failed';
  if (serviceError.code === grpc.status.UNAVAILABLE && !fromMetadata && peer) {
    message = `cannot reach ${peer}: ${transportReason(message)}`;
  }
  return new StrataError(kind, message, { cause: err });
}

const TRANSPORT_REASONS: [RegExp, string][] = [
  ...TLS_FAILURE_REASONS, // first: a TLS failure often shows as a reset too
  [/ECONNREFUSED/, 'connection refused'],
  [/ETIMEDOUT|deadline/i, 'timed out'],
  [/ENOTFOUND|EAI_AGAIN/, 'unknown host'],
  [/EHOSTUNREACH|ENETUNREACH/, 'host unreachable'],
  [/ECONNRESET|Connection dropped/i, 'connection reset'],
  // The port is open but the connection closed during setup: most often plain text to a TLS port.
  [/Failed to connect/, 'the connection closed during setup (if the cluster serves TLS, pass --tls-ca or set STRATA_TLS_CA)'],
];

/** grpc-js's transport messages are long and internal; users need the reason in a few words. */
function transportReason(message: string): string {
  return TRANSPORT_REASONS.find(([pattern]) => pattern.test(message))?.[1] ?? message;
}

/** True for failures where another replica or coordinator may succeed. */
export function isTransportFailure(err: StrataError): boolean {
  return err.kind === 'Unavailable' || err.kind === 'Timeout';
}

/** Wraps an async unary handler: resolves to the reply or maps the thrown error once. */
export function unaryHandler<Req, Res>(
  fn: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request, call).then(
      (reply) => callback(null, reply),
      // A cancelled call ends as CANCELLED: no one reads it, but the status says what happened.
      (err) => callback((call.cancelled ? { code: grpc.status.CANCELLED, details: asStrataError(err).message } : toServiceError(err)) as grpc.ServiceError),
    );
  };
}

/** Promisified unary call on a generated client with a deadline. */
export function callUnary<Res>(
  client: grpc.Client,
  method: string,
  request: unknown,
  timeoutMs: number,
  peer?: string,
  /** Sent with the call (a bearer token: client/auth/). */
  metadata?: grpc.Metadata,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + timeoutMs);
    const callback = (err: grpc.ServiceError | null, reply: Res) => {
      if (err) reject(fromServiceError(err, peer));
      else resolve(reply);
    };
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    if (metadata) (client as any)[method](request, metadata, { deadline }, callback);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    else (client as any)[method](request, { deadline }, callback);
  });
}

/** The metadata that carries a bearer token on a unary call. */
export function bearerMetadata(token: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

const STREAM_WINDOW_BYTES = 16 * 1024 * 1024;
let serverWindowsWidened = false;

/**
 * grpc-js offers no server option for the HTTP/2 receive window, and the 64 KiB default halves
 * chunk upload throughput. Wrap http2.createServer (which grpc-js calls) once, so every server
 * session advertises a large window. Only settings change; behaviour is otherwise http2's.
 */
function widenServerWindows(): void {
  if (serverWindowsWidened) return;
  serverWindowsWidened = true;
  // Both constructors grpc-js uses: plain text and TLS (common/tls.ts).
  for (const name of ['createServer', 'createSecureServer'] as const) {
    const original = http2[name] as (options: http2.ServerOptions, listener?: unknown) => http2.Http2Server;
    const patched = (options: http2.ServerOptions, listener?: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void) => {
      const server = original({ ...options, settings: { ...options?.settings, initialWindowSize: STREAM_WINDOW_BYTES } }, listener);
      server.on('session', (session) => {
        session.once('remoteSettings', () => {
          try {
            session.setLocalWindowSize(STREAM_WINDOW_BYTES);
          } catch {
            /* a closing session: nothing to widen */
          }
        });
      });
      return server;
    };
    (http2 as Record<string, unknown>)[name] = patched;
  }
}

/** `credentials`: plain text unless given (common/tls.ts builds the TLS ones). */
export async function bindServer(server: grpc.Server, address: string, credentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
  widenServerWindows();
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, port) => {
      if (err) reject(new StrataError('Unavailable', `cannot listen on ${address}: ${err.message}`, { cause: err }));
      else resolve(port);
    });
  });
}

/** Lets calls in flight finish for a bounded time, then cuts the rest. */
export function shutdownServer(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The options of the channel to one target (the address dialed): node credentials name their receiver (common/node-credentials.ts). */
export type ChannelOptionsFor = (target: string) => grpc.ClientOptions;

/** DataNode channels, one per address, made on first use and kept until `close`. */
export class DataNodeChannels {
  private readonly clients = new Map<string, grpc.Client>();

  /** `tls`: this process's TLS (none = plain text); `options`: CHANNEL_OPTIONS, or those plus a node credential for the address (common/node-credentials.ts). */
  constructor(
    private readonly tls?: TlsContext,
    private readonly options: ChannelOptionsFor = () => CHANNEL_OPTIONS,
  ) {}

  get(address: string): grpc.Client {
    let client = this.clients.get(address);
    if (!client) {
      client = new strataProto.DataNode(address, channelCredentials(this.tls), this.options(address));
      this.clients.set(address, client);
    }
    return client;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
