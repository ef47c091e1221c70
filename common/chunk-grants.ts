// Chunk grants (proto/strata.proto, "Chunk grants"): a coordinator signs, for one principal, a
// set of chunk ids, the operations allowed on them and an expiry; a data node serves a chunk's
// bytes only against a grant that covers that chunk and that operation. Ed25519: data nodes hold
// only public keys, so a data node (or anyone who reads its memory) can verify but never mint.
//
//   <base64url(JSON claims)>.<base64url(signature over the JSON bytes)>
//
// Verification costs ~80 µs; each grant is verified once and its claims cached, so the hot path
// (many requests with one grant: a file's chunks, a pipeline's hops) is a map lookup.
import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { StrataError } from './errors.js';
import { quoted } from './limits.js';

/**
 * r = read the bytes, w = store them, d = delete them, t = upload them to an object tier.
 * 't' is leader-only: a coordinator puts it only in its leader's own grants (tiering), never in
 * a client's, so a client's read grant cannot make a data node write objects into a tier.
 */
export type GrantOp = 'r' | 'w' | 'd' | 't';
/** Operations only the leader's jobs are granted (coordinator/grant-minter.ts refuses them to anyone else). */
export const LEADER_ONLY_OPS: readonly GrantOp[] = ['t'];

export interface GrantClaims {
  /** Id of the key that signed it. */
  k: string;
  /** The principal it was issued to: subject and tenant (audit; grants are bearer credentials). */
  s: string;
  t: string;
  /** Operations allowed, e.g. 'r' or 'rw'. */
  o: string;
  /** Chunk ids covered. */
  c: string[];
  /** Expiry, ms since the epoch. */
  x: number;
}

/** A public key as coordinators publish it (HeartbeatReply.grant_keys). */
export interface WireGrantKey {
  id: string;
  /** Ed25519 DER SubjectPublicKeyInfo. */
  publicKey: Buffer | Uint8Array;
}

/** Chunk ids one grant covers at most: a GetChunks reply's worth, well inside the byte path's control frame. */
export const GRANT_MAX_CHUNKS = 256;
/** Longest grant accepted (256 chunk ids and the claims fit with room to spare). */
export const GRANT_MAX_CHARS = 32 * 1024;

export function signGrant(key: { id: string; privateKey: KeyObject }, claims: Omit<GrantClaims, 'k'>): string {
  const payload = Buffer.from(JSON.stringify({ k: key.id, s: claims.s, t: claims.t, o: claims.o, c: claims.c, x: claims.x }));
  return `${payload.toString('base64url')}.${sign(null, payload, key.privateKey).toString('base64url')}`;
}

/** The claims of a grant, unverified (a client peeking at its expiry; never for a decision). */
export function peekGrant(grant: string): GrantClaims | undefined {
  try {
    return parseClaims(Buffer.from(grant.slice(0, grant.indexOf('.')), 'base64url'));
  } catch {
    return undefined;
  }
}

interface Verified {
  ops: string;
  chunks: ReadonlySet<string>;
  expiresAtMs: number;
}

const denied = (message: string) => new StrataError('PermissionDenied', message);
/** Cached verified grants: bounded by their total length (a 256-chunk grant is ~11 KB). */
const CACHE_MAX_CHARS = 8 * 1024 * 1024;

/**
 * The data node's side: the coordinators' public keys (one set per coordinator, from its heartbeat
 * replies; a grant may be signed by any key of any set) and the grants already verified.
 */
/** Keys of a source that never said how long its grants live count this long past its last word. */
const DEFAULT_KEEP_KEYS_MS = 24 * 3_600_000 + 60_000;

export class GrantVerifier {
  /** Each source's keys, and until when they count: a source heard no more (a coordinator down) is forgotten once its grants expired. */
  private readonly sets = new Map<string, { keys: WireGrantKey[]; untilMs: number }>();
  private nextExpiryCheckMs = 0;
  private keys = new Map<string, KeyObject>();
  private fingerprint = '';
  private readonly cache = new Map<string, Verified>();
  private cachedChars = 0;

  /**
   * `enforce`: false only when the operator turned grants off (`--grants off`): every check
   * passes. On by default.
   */
  constructor(readonly enforce = true) {}

  /**
   * The keys `source` (a coordinator) currently publishes; replaces what it published before.
   * `keepForMs`: how long they count unless heard again (the longest a grant it signed lives).
   */
  setKeys(source: string, keys: readonly WireGrantKey[], keepForMs = DEFAULT_KEEP_KEYS_MS): void {
    this.sets.set(source, { keys: [...keys], untilMs: Date.now() + keepForMs });
    this.rebuild();
  }

  /** The union of every source's keys still counting; grants their dropped keys signed stop passing. */
  private rebuild(): void {
    const now = Date.now();
    for (const [source, set] of this.sets) if (set.untilMs <= now) this.sets.delete(source);
    this.nextExpiryCheckMs = Math.min(...[...this.sets.values()].map((set) => set.untilMs), now + 1000);
    const all = new Map<string, Buffer>();
    for (const set of this.sets.values()) for (const key of set.keys) if (key?.id && key.publicKey) all.set(key.id, Buffer.from(key.publicKey));
    const fingerprint = [...all].map(([id, der]) => `${id}:${der.toString('base64')}`).sort().join(',');
    if (fingerprint === this.fingerprint) return;
    const next = new Map<string, KeyObject>();
    for (const [id, der] of all) {
      try {
        const key = createPublicKey({ key: der, format: 'der', type: 'spki' });
        if (key.asymmetricKeyType === 'ed25519') next.set(id, key);
      } catch {
        // A key this node cannot read signs nothing it will accept.
      }
    }
    this.keys = next;
    this.fingerprint = fingerprint;
    // A key dropped (rotated out): grants it signed are no longer good.
    this.cache.clear();
    this.cachedChars = 0;
  }

  get keyCount(): number {
    return this.keys.size;
  }

  /**
   * Throws PermissionDenied unless `grant` is a valid grant of `op` on `chunkId` (Unavailable: no
   * keys known yet). `expiredGraceMs`: how long past its expiry it still counts (a coordinator's
   * commit of a chunk written under it: the commit window bounds that instead).
   */
  check(grant: unknown, chunkId: string, op: GrantOp, expiredGraceMs = 0): void {
    if (!this.enforce) return;
    if (Date.now() >= this.nextExpiryCheckMs && this.sets.size > 0) this.rebuild();
    const what = `chunk ${quoted(chunkId)}`;
    if (typeof grant !== 'string' || grant === '') throw denied(`${what}: no grant (a coordinator hands one out with each placement and location)`);
    let verified = this.cache.get(grant);
    if (!verified) {
      verified = this.verify(grant, what);
      this.remember(grant, verified);
    }
    if (verified.expiresAtMs + expiredGraceMs <= Date.now()) throw denied(`${what}: the grant expired ${Math.round((Date.now() - verified.expiresAtMs) / 1000)} s ago (ask the coordinator again)`);
    if (!verified.chunks.has(chunkId)) throw denied(`${what}: the grant is for other chunks`);
    if (!verified.ops.includes(op)) throw denied(`${what}: the grant allows '${verified.ops}', not '${op}'`);
  }

  private verify(grant: string, what: string): Verified {
    if (grant.length > GRANT_MAX_CHARS) throw denied(`${what}: malformed grant (longer than ${GRANT_MAX_CHARS} characters)`);
    const dot = grant.indexOf('.');
    if (dot <= 0 || dot !== grant.lastIndexOf('.')) throw denied(`${what}: malformed grant`);
    const payload = Buffer.from(grant.slice(0, dot), 'base64url');
    const signature = Buffer.from(grant.slice(dot + 1), 'base64url');
    let claims: GrantClaims;
    try {
      claims = parseClaims(payload);
    } catch {
      throw denied(`${what}: malformed grant`);
    }
    const key = this.keys.get(claims.k);
    if (!key) {
      if (this.keys.size === 0) throw new StrataError('Unavailable', `${what}: this data node has not learnt the grant keys from a coordinator yet`);
      throw denied(`${what}: the grant is signed by a key no coordinator publishes`);
    }
    if (signature.length !== 64 || !verify(null, payload, key, signature)) throw denied(`${what}: the grant's signature is not valid`);
    return { ops: claims.o, chunks: new Set(claims.c), expiresAtMs: claims.x };
  }

  private remember(grant: string, verified: Verified): void {
    this.cache.set(grant, verified);
    this.cachedChars += grant.length;
    // Oldest first (insertion order): a full cache drops what was verified longest ago.
    for (const [old] of this.cache) {
      if (this.cachedChars <= CACHE_MAX_CHARS) break;
      this.cache.delete(old);
      this.cachedChars -= old.length;
    }
  }
}

function parseClaims(payload: Buffer): GrantClaims {
  const claims = JSON.parse(payload.toString('utf8')) as Partial<GrantClaims>;
  const ok =
    claims &&
    typeof claims.k === 'string' &&
    typeof claims.s === 'string' &&
    typeof claims.t === 'string' &&
    typeof claims.o === 'string' &&
    Number.isSafeInteger(claims.x) &&
    Array.isArray(claims.c) &&
    claims.c.length <= GRANT_MAX_CHUNKS &&
    claims.c.every((id) => typeof id === 'string');
  if (!ok) throw new Error('bad claims');
  return claims as GrantClaims;
}
