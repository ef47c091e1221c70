// Node-plane credentials: how coordinators and data nodes know each other without TLS (and in
// addition to it). Every node of a cluster holds one shared secret (--node-secret-file FILE or
// STRATA_NODE_SECRET); the calls only nodes make (NODE_PLANE_METHODS: heartbeats, node links,
// lease peering, chunk listings, repair copies, leader deletes and uploads, key re-wraps) carry an HMAC of
// the method, the caller's name, a timestamp and a nonce:
//
//   strata-node-auth: v1.<base64url(caller)>.<ms since the epoch>.<nonce hex>.<base64url(HMAC-SHA256)>
//
// The receiver checks the HMAC (constant time), that the timestamp is within MAX_SKEW_MS of its
// own clock, and that the nonce was not seen before (a replayed credential is refused); the
// method is in the MAC, so one sniffed for a heartbeat opens nothing else. One HMAC per call:
// per stream for NodeLink, ListChunks and lease peering, never per chunk. Chunk bytes (reads,
// writes, pipeline hops, a repair's pull from its source) are guarded by the chunk grants
// (common/chunk-grants.ts) instead, whoever sends them. The secret is never logged.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { invalid } from './errors.js';
import { ERROR_KIND_METADATA_KEY, strataProto } from './grpc.js';
import type { Logger } from './log.js';

export const NODE_AUTH_METADATA_KEY = 'strata-node-auth';
/** Shortest secret accepted: 32 characters (e.g. 16 random bytes in hex; `cluster up` makes 32 bytes). */
export const NODE_SECRET_MIN_CHARS = 32;
const NODE_SECRET_MAX_CHARS = 4096;
/** A credential's timestamp may be this far from the receiver's clock (cluster clocks are NTP-kept: grants expire by them too). */
export const MAX_SKEW_MS = 60_000;
/** Nonces remembered; a credential is only good within ±MAX_SKEW_MS, so older ones can be forgotten. */
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

  private constructor(private readonly key: Buffer) {}

  /** The configured secret, or undefined when none is. A bad one is one Invalid line that never shows the value. */
  static load(config: NodeSecretConfigKeys): NodeSecret | undefined {
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
    return new NodeSecret(createHmac('sha256', 'strata node secret v1').update(secret).digest());
  }

  /** A fresh credential for one call of `path` by `caller` (a node id or a coordinator address). */
  credential(path: string, caller: string, nowMs = Date.now()): string {
    const who = Buffer.from(caller).toString('base64url');
    const nonce = randomBytes(16).toString('hex');
    return `v1.${who}.${nowMs}.${nonce}.${this.mac(path, who, nowMs, nonce).toString('base64url')}`;
  }

  /** Undefined when `value` is a good, unused credential for `path`; otherwise what is wrong, in a few words. */
  check(value: unknown, path: string, nowMs = Date.now()): string | undefined {
    if (typeof value !== 'string' || value === '') return `no node credential (this cluster's nodes authenticate with a node secret: give the caller ${NODE_SECRET_FLAGS})`;
    const parts = value.split('.');
    if (parts.length !== 5 || parts[0] !== 'v1' || !/^\d{1,16}$/.test(parts[2]) || !/^[0-9a-f]{32}$/.test(parts[3])) return 'a malformed node credential';
    const [, who, ts, nonce, mac] = parts;
    const sentMs = Number(ts);
    const given = Buffer.from(mac, 'base64url');
    const expected = this.mac(path, who, sentMs, nonce);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'a node credential made with another secret (is --node-secret-file the same on every node?)';
    if (Math.abs(nowMs - sentMs) > MAX_SKEW_MS) return `a node credential dated ${Math.round((sentMs - nowMs) / 1000)} s from this node's clock (more than ${MAX_SKEW_MS / 1000} s: check the clocks)`;
    this.forgetOld(nowMs);
    if (this.seen.has(nonce)) return 'a node credential used before (a replay)';
    this.seen.set(nonce, nowMs);
    return undefined;
  }

  /** The caller a credential names (for log lines; unverified). */
  static callerOf(value: unknown): string | undefined {
    if (typeof value !== 'string') return undefined;
    const who = value.split('.')[1];
    return who ? Buffer.from(who, 'base64url').toString('utf8').slice(0, 128) : undefined;
  }

  private mac(path: string, who: string, sentMs: number, nonce: string): Buffer {
    return createHmac('sha256', this.key).update(`strata-node-auth v1\n${path}\n${who}\n${sentMs}\n${nonce}`).digest();
  }

  private forgetOld(nowMs: number): void {
    // A nonce older than twice the skew can only come with a timestamp that is refused anyway.
    for (const [nonce, atMs] of this.seen) {
      if (atMs > nowMs - 2 * MAX_SKEW_MS && this.seen.size < MAX_REMEMBERED_NONCES) break;
      this.seen.delete(nonce);
    }
  }
}

/**
 * Client side: every node-plane call on a channel made with these options carries a fresh
 * credential of `caller`; other calls go as they are. Without a secret, the plain options.
 */
export function nodeChannelOptions(base: grpc.ChannelOptions, secret: NodeSecret | undefined, caller: () => string): grpc.ClientOptions {
  if (!secret) return base;
  const interceptor: grpc.Interceptor = (options, nextCall) => {
    const path = options.method_definition.path;
    if (!NODE_PLANE_METHODS.has(path)) return new grpc.InterceptingCall(nextCall(options));
    return new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(NODE_AUTH_METADATA_KEY, secret.credential(path, caller()));
        next(metadata, listener);
      },
    });
  };
  return { ...base, interceptors: [interceptor] };
}

/**
 * Server side: node-plane calls without a good credential end UNAUTHENTICATED before their
 * handler runs, with one log line naming the peer and what was missing. Without a secret, none.
 */
export function nodePlaneInterceptor(secret: NodeSecret | undefined, log: Logger): grpc.ServerInterceptor[] {
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
      const listener = new grpc.ServerListenerBuilder()
        .withOnReceiveMetadata((metadata, next) => {
          const value = metadata.get(NODE_AUTH_METADATA_KEY)[0];
          const reason = secret.check(value, method.path);
          if (reason === undefined) return next(metadata);
          logRefusal(call.getPeer(), name, NodeSecret.callerOf(value), reason);
          const trailer = new grpc.Metadata();
          trailer.set(ERROR_KIND_METADATA_KEY, 'Unauthenticated');
          call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: `${name}: ${reason}`, metadata: trailer });
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
