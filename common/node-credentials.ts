// Node-plane credentials: how coordinators and data nodes know each other without TLS (and in
// addition to it). Every node of a cluster holds one shared secret (--node-secret-file FILE or
// STRATA_NODE_SECRET); the calls only nodes make (NODE_PLANE_METHODS: heartbeats, node links,
// lease peering, chunk listings, repair copies, leader deletes and uploads, key re-wraps) carry an HMAC of
// the method, the caller's name, the receiver's name, a timestamp, a nonce and a digest of the
// request's fields that matter (unary calls; streams have none):
//
//   strata-node-auth: v2.<b64url(caller)>.<b64url(receiver)>.<ms since the epoch>.<nonce hex>.<body digest or ->.<b64url(HMAC-SHA256)>
//
// The receiver is the address the receiver advertises (data nodes, lease peers: what the caller
// dials) or, for Heartbeat and NodeLink, the role "coordinators" (data nodes may reach coordinators
// through any name; a heartbeat is bound to its body and its caller must be the nodeId it reports).
// The receiver checks the HMAC (constant time), that the receiver named is itself, that the
// timestamp is within MAX_SKEW_MS of its own clock, that the nonce was not seen before (a replayed
// credential is refused), and then that the request's body has the digest signed. So a sniffed
// credential opens nothing else: not another method, not another node, not another body. One HMAC
// per call: per stream for NodeLink, ListChunks and lease peering, never per chunk. Chunk bytes
// (reads, writes, pipeline hops, a repair's pull from its source) are guarded by the chunk grants
// (common/chunk-grants.ts) instead, whoever sends them. The secret is never logged.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { invalid } from './errors.js';
import { ERROR_KIND_METADATA_KEY, strataProto, type ChannelOptionsFor } from './grpc.js';
import type { Logger } from './log.js';

export const NODE_AUTH_METADATA_KEY = 'strata-node-auth';
/** Shortest secret accepted: 32 characters (e.g. 16 random bytes in hex; `cluster up` makes 32 bytes). */
export const NODE_SECRET_MIN_CHARS = 32;
const NODE_SECRET_MAX_CHARS = 4096;
/** A credential's timestamp may be this far from the receiver's clock (cluster clocks are NTP-kept: grants expire by them too). */
export const MAX_SKEW_MS = 60_000;
/** Nonces remembered; a credential is only good within ±MAX_SKEW_MS, so older ones can be forgotten. Past this many younger ones, calls are refused (never a nonce forgotten early: that would reopen replays). */
const MAX_REMEMBERED_NONCES = 200_000;
/** One refusal log line per peer host and reason per this long: a flood of bad calls is not a flood of logs. */
const REFUSAL_LOG_EVERY_MS = 10_000;

/** What only cluster nodes call (full gRPC paths). With TLS these also need a node certificate (common/tls.ts). */
export const NODE_PLANE_METHODS: ReadonlySet<string> = new Set([
  strataProto.Coordinator.service.Heartbeat.path,
  strataProto.Coordinator.service.NodeLink.path,
  strataProto.LeasePeers.service.Link.path,
  ...['StatChunk', 'DeleteChunk', 'ListChunks', 'ReplicateChunk', 'TierUpload', 'RewrapChunks'].map((method) => strataProto.DataNode.service[method].path),
]);

/** What data nodes name as the receiver of Heartbeat and NodeLink: they may reach a coordinator by any name (a service, a load balancer). */
export const COORDINATORS_RECEIVER = 'coordinators';
const ROLE_BOUND_METHODS: ReadonlySet<string> = new Set([strataProto.Coordinator.service.Heartbeat.path, strataProto.Coordinator.service.NodeLink.path]);
/** Calls whose credential's caller must be the nodeId their messages carry. */
const CALLER_IS_NODE_ID: ReadonlySet<string> = ROLE_BOUND_METHODS;

/** The fields of each unary node-plane request the credential is bound to (in this order). */
const BODY_FIELDS: ReadonlyMap<string, readonly string[]> = new Map([
  [strataProto.Coordinator.service.Heartbeat.path, ['nodeId', 'address', 'dataAddress', 'zone', 'masterKeyIds']],
  [strataProto.DataNode.service.StatChunk.path, ['chunkId']],
  [strataProto.DataNode.service.DeleteChunk.path, ['chunkId', 'grant']],
  [strataProto.DataNode.service.ReplicateChunk.path, ['chunkId', 'grant']],
  [strataProto.DataNode.service.TierUpload.path, ['chunkId', 'tier', 'key', 'grant']],
  [strataProto.DataNode.service.RewrapChunks.path, ['afterChunkId', 'limit']],
]);

/** Who a credential for `path`, sent to `target` (the address dialed), names as its receiver. */
export function receiverFor(path: string, target: string): string {
  return ROLE_BOUND_METHODS.has(path) ? COORDINATORS_RECEIVER : target;
}

/** The digest a credential for `path` carries of `message` ('-' when the method has no bound fields). Both sides see the same decoded object. */
export function bodyDigest(path: string, message: unknown): string {
  const fields = BODY_FIELDS.get(path);
  if (!fields) return '-';
  const record = (message ?? {}) as Record<string, unknown>;
  const text = fields.map((field) => {
    const value = record[field];
    // Proto3 defaults (0, '', false, []) arrive decoded as such but may be sent as absent: one text for both.
    if (value === undefined || value === null || value === 0 || value === '' || value === false || (Array.isArray(value) && value.length === 0)) return '""';
    return JSON.stringify(Array.isArray(value) ? value.map(String) : String(value));
  });
  return createHash('sha256').update(`${path}\n${text.join('\n')}`).digest('base64url');
}

/** What a good credential said. */
export interface CheckedCredential {
  caller: string;
  body: string;
}

/** The config keys every role shares (common/config.ts). */
export interface NodeSecretConfigKeys {
  nodeSecretFile?: string;
  /** The secret itself, as STRATA_NODE_SECRET gives it (no flag: it would show in ps). */
  nodeSecret?: string;
}

/** What a flag-less node is told to give when the cluster has a secret. */
export const NODE_SECRET_FLAGS = '--node-secret-file FILE (or STRATA_NODE_SECRET)';

export class NodeSecret {
  /** Nonce -> when it was accepted; insertion order is acceptance order. */
  private readonly seen = new Map<string, number>();

  private constructor(
    private readonly key: Buffer,
    private readonly maxNonces: number,
  ) {}

  /** The configured secret, or undefined when none is. A bad one is one Invalid line that never shows the value. `maxNonces`: for tests. */
  static load(config: NodeSecretConfigKeys, maxNonces = MAX_REMEMBERED_NONCES): NodeSecret | undefined {
    if (config.nodeSecretFile && config.nodeSecret) throw invalid('node secret: give --node-secret-file or STRATA_NODE_SECRET, not both');
    let text: string;
    let from: string;
    if (config.nodeSecretFile) {
      from = `--node-secret-file ${config.nodeSecretFile}`;
      try {
        text = readFileSync(config.nodeSecretFile, 'utf8');
      } catch (err) {
        throw invalid(`node secret: cannot read ${from} (${(err as NodeJS.ErrnoException).code ?? err})`);
      }
    } else if (config.nodeSecret !== undefined) {
      from = 'STRATA_NODE_SECRET';
      text = config.nodeSecret;
    } else {
      return undefined;
    }
    const secret = text.trim();
    if (secret.length < NODE_SECRET_MIN_CHARS || secret.length > NODE_SECRET_MAX_CHARS) {
      throw invalid(`node secret: ${from} holds ${secret.length} characters; use ${NODE_SECRET_MIN_CHARS}..${NODE_SECRET_MAX_CHARS} (e.g. \`openssl rand -hex 32\`; the same on every coordinator and data node)`);
    }
    // A key of its own for this use, so the secret's text is never the MAC key itself.
    return new NodeSecret(createHmac('sha256', 'strata node secret v1').update(secret).digest(), maxNonces);
  }

  /** A fresh credential for one call of `path` by `caller` (a node id or a coordinator address) to `receiver` (receiverFor), for a request of digest `body` (bodyDigest). */
  credential(path: string, caller: string, receiver: string, body = '-', nowMs = Date.now()): string {
    const who = Buffer.from(caller).toString('base64url');
    const to = Buffer.from(receiver).toString('base64url');
    const nonce = randomBytes(16).toString('hex');
    return `v2.${who}.${to}.${nowMs}.${nonce}.${body}.${this.mac(path, who, to, nowMs, nonce, body).toString('base64url')}`;
  }

  /** Undefined when `value` is a good, unused credential for `path` at `receiver`; otherwise what is wrong, in a few words. */
  check(value: unknown, path: string, receiver: string, nowMs = Date.now()): string | undefined {
    const checked = this.verify(value, path, receiver, nowMs);
    return typeof checked === 'string' ? checked : undefined;
  }

  /** What a good, unused credential for `path` at `receiver` says, or what is wrong with it. */
  verify(value: unknown, path: string, receiver: string, nowMs = Date.now()): CheckedCredential | string {
    if (typeof value !== 'string' || value === '') return `no node credential (this cluster's nodes authenticate with a node secret: give the caller ${NODE_SECRET_FLAGS})`;
    const parts = value.split('.');
    if (parts.length !== 7 || parts[0] !== 'v2' || !/^\d{1,16}$/.test(parts[3]) || !/^[0-9a-f]{32}$/.test(parts[4]) || !/^(-|[A-Za-z0-9_-]{43})$/.test(parts[5])) return 'a malformed node credential';
    const [, who, to, ts, nonce, body, mac] = parts;
    const sentMs = Number(ts);
    const given = Buffer.from(mac, 'base64url');
    const expected = this.mac(path, who, to, sentMs, nonce, body);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'a node credential made with another secret (is --node-secret-file the same on every node?)';
    const namedReceiver = Buffer.from(to, 'base64url').toString('utf8');
    if (namedReceiver !== receiver) return `a node credential made for ${JSON.stringify(namedReceiver.slice(0, 128))}, not this node (${receiver}; check --advertise)`;
    if (Math.abs(nowMs - sentMs) > MAX_SKEW_MS) return `a node credential dated ${Math.round((sentMs - nowMs) / 1000)} s from this node's clock (more than ${MAX_SKEW_MS / 1000} s: check the clocks)`;
    this.forgetOld(nowMs);
    if (this.seen.has(nonce)) return 'a node credential used before (a replay)';
    // Forgetting a nonce still in its window would let it be replayed: refuse instead, until old ones age out.
    if (this.seen.size >= this.maxNonces) return `too many node credentials within ${(2 * MAX_SKEW_MS) / 1000} s (${this.maxNonces} remembered): refusing until older ones expire`;
    this.seen.set(nonce, nowMs);
    return { caller: Buffer.from(who, 'base64url').toString('utf8'), body };
  }

  /** The caller a credential names (for log lines; unverified). */
  static callerOf(value: unknown): string | undefined {
    if (typeof value !== 'string') return undefined;
    const who = value.split('.')[1];
    return who ? Buffer.from(who, 'base64url').toString('utf8').slice(0, 128) : undefined;
  }

  private mac(path: string, who: string, to: string, sentMs: number, nonce: string, body: string): Buffer {
    return createHmac('sha256', this.key).update(`strata-node-auth v2\n${path}\n${who}\n${to}\n${sentMs}\n${nonce}\n${body}`).digest();
  }

  private forgetOld(nowMs: number): void {
    // A nonce older than twice the skew can only come with a timestamp that is refused anyway.
    for (const [nonce, atMs] of this.seen) {
      if (atMs > nowMs - 2 * MAX_SKEW_MS) break;
      this.seen.delete(nonce);
    }
  }
}

/** Channel options for the channel to one target (the address dialed). */
export type NodeChannelOptions = ChannelOptionsFor;

/**
 * Client side: every node-plane call on a channel made with these options carries a fresh
 * credential of `caller` for that channel's receiver; other calls go as they are. A unary call's
 * metadata waits for its request, whose digest the credential carries. Without a secret, the plain options.
 */
export function nodeChannelOptions(base: grpc.ChannelOptions, secret: NodeSecret | undefined, caller: () => string): NodeChannelOptions {
  if (!secret) return () => base;
  return (target) => {
    const interceptor: grpc.Interceptor = (options, nextCall) => {
      const path = options.method_definition.path;
      if (!NODE_PLANE_METHODS.has(path)) return new grpc.InterceptingCall(nextCall(options));
      const receiver = receiverFor(path, target);
      if (options.method_definition.requestStream) {
        return new grpc.InterceptingCall(nextCall(options), {
          start(metadata, listener, next) {
            metadata.set(NODE_AUTH_METADATA_KEY, secret.credential(path, caller(), receiver));
            next(metadata, listener);
          },
        });
      }
      // Held until the one request is known (grpc-js queues the message meanwhile).
      let held: { metadata: grpc.Metadata; listener: grpc.InterceptingListener | grpc.Listener; next: (metadata: grpc.Metadata, listener: grpc.InterceptingListener | grpc.Listener) => void } | undefined;
      return new grpc.InterceptingCall(nextCall(options), {
        start(metadata, listener, next) {
          held = { metadata, listener, next };
        },
        sendMessage(message, next) {
          if (held) {
            held.metadata.set(NODE_AUTH_METADATA_KEY, secret.credential(path, caller(), receiver, bodyDigest(path, message)));
            const start = held;
            held = undefined;
            start.next(start.metadata, start.listener);
          }
          next(message);
        },
      });
    };
    return { ...base, interceptors: [interceptor] };
  };
}

/**
 * Server side: node-plane calls without a good credential for `self()` (this node's advertised
 * address) end UNAUTHENTICATED before their handler runs, with one log line naming the peer and
 * what was missing; so do requests whose body is not the one signed, and Heartbeat or NodeLink
 * messages naming another node than the credential's caller. Without a secret, none.
 */
export function nodePlaneInterceptor(secret: NodeSecret | undefined, log: Logger, self: () => string): grpc.ServerInterceptor[] {
  if (!secret) return [];
  const lastLogged = new Map<string, number>();
  const logRefusal = (peer: string, method: string, caller: string | undefined, reason: string) => {
    const host = peer.replace(/:\d+$/, '');
    const key = `${host}\0${method}\0${reason.slice(0, 24)}`;
    const nowMs = Date.now();
    if ((lastLogged.get(key) ?? -Infinity) > nowMs - REFUSAL_LOG_EVERY_MS) return;
    if (lastLogged.size > 10_000) lastLogged.clear();
    lastLogged.set(key, nowMs);
    log.warn({ peer, method, caller }, `node plane: refused ${method} from ${peer}: ${reason}`);
  };
  return [
    (method, call) => {
      if (!NODE_PLANE_METHODS.has(method.path)) return new grpc.ServerInterceptingCall(call);
      const name = method.path.slice(method.path.lastIndexOf('/') + 1);
      let checked: CheckedCredential | undefined;
      let refused = false;
      let firstMessage = true;
      const refuse = (caller: string | undefined, reason: string) => {
        refused = true;
        logRefusal(call.getPeer(), name, caller, reason);
        const trailer = new grpc.Metadata();
        trailer.set(ERROR_KIND_METADATA_KEY, 'Unauthenticated');
        call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: `${name}: ${reason}`, metadata: trailer });
      };
      const listener = new grpc.ServerListenerBuilder()
        .withOnReceiveMetadata((metadata, next) => {
          const value = metadata.get(NODE_AUTH_METADATA_KEY)[0];
          const result = secret.verify(value, method.path, receiverFor(method.path, self()));
          if (typeof result === 'string') return refuse(NodeSecret.callerOf(value), result);
          checked = result;
          next(metadata);
        })
        .withOnReceiveMessage((message, next) => {
          if (refused || !checked) return;
          if (!method.requestStream && bodyDigest(method.path, message) !== checked.body) return refuse(checked.caller, 'a request that is not the one its node credential was made for');
          const nodeId = (message as { nodeId?: unknown } | null)?.nodeId;
          // A link's later messages may leave the node out; none may name another.
          const mayOmit = method.requestStream && !firstMessage && !nodeId;
          firstMessage = false;
          if (CALLER_IS_NODE_ID.has(method.path) && !mayOmit && nodeId !== checked.caller) return refuse(checked.caller, `node ${JSON.stringify(String(nodeId).slice(0, 128))} sent with the node credential of ${JSON.stringify(checked.caller.slice(0, 128))}`);
          next(message);
        })
        .build();
      return new grpc.ServerInterceptingCall(call, new grpc.ResponderBuilder().withStart((next) => next(listener)).build());
    },
  ];
}

/** A new secret for a cluster: 32 random bytes, hex (what `cluster up --auth oidc` writes, mode 0600). */
export function newNodeSecretText(): string {
  return `${randomBytes(32).toString('hex')}\n`;
}
