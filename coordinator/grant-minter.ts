// Mints chunk grants (common/chunk-grants.ts) for the replies that hand out placements and
// locations, and for the leader's own jobs. A single-chunk grant asked again by the same
// principal is reused while more than half its life is left: a small file read over and over
// costs one signature here and one verification per data node, not one per read.
import type { Principal } from '../common/auth-principal.js';
import { GRANT_MAX_CHUNKS, GrantVerifier, LEADER_ONLY_OPS, peekGrant, signGrant, type GrantOp, type WireGrantKey } from '../common/chunk-grants.js';
import { StrataError } from '../common/errors.js';
import type { GrantKeys } from './grant-keys.js';

/** What a leader job's grants name as their principal. */
export const LEADER_SUBJECT = 'strata-leader';
const REUSE_MAX_ENTRIES = 4096;

export interface GrantMinter {
  /** A grant of `ops` on `chunkIds` (at most GRANT_MAX_CHUNKS) for `principal`. */
  mint(principal: Pick<Principal, 'subject' | 'tenant'>, ops: string, chunkIds: readonly string[]): string;
  /** A grant for the leader's own call to a data node. */
  forLeader(ops: string, chunkId: string): string;
  /** Every key grants may be signed with, for data nodes. */
  publicKeys(): WireGrantKey[];
  /**
   * Throws PermissionDenied unless `grant` is this cluster's write grant of `chunkId` for
   * `principal` (at most `expiredGraceMs` past its expiry): a commit references only a chunk
   * handed to its caller to write, never one it learnt the id of.
   */
  checkCommit(principal: Pick<Principal, 'subject' | 'tenant'>, grant: unknown, chunkId: string, expiredGraceMs: number): void;
}

export function grantMinter(keys: GrantKeys, ttlMs: number): GrantMinter {
  const reusable = new Map<string, { grant: string; reuseUntilMs: number; keyId: string }>();
  const sign = (principal: Pick<Principal, 'subject' | 'tenant'>, ops: string, chunkIds: readonly string[]) => {
    if (chunkIds.length > GRANT_MAX_CHUNKS) throw new StrataError('Internal', `a grant covers at most ${GRANT_MAX_CHUNKS} chunks, not ${chunkIds.length}`);
    const now = Date.now();
    const single = chunkIds.length === 1;
    const key = single ? `${ops}\0${principal.subject}\0${principal.tenant}\0${chunkIds[0]}` : '';
    const signing = keys.signingKey(now);
    if (single) {
      // Reused only while its key still signs: after a rotation, grants of the new key at once.
      const kept = reusable.get(key);
      if (kept && kept.reuseUntilMs > now && kept.keyId === signing.id) return kept.grant;
      reusable.delete(key);
    }
    const grant = signGrant(signing, { s: principal.subject, t: principal.tenant, o: ops, c: [...chunkIds], x: now + ttlMs });
    if (single) {
      if (reusable.size >= REUSE_MAX_ENTRIES) reusable.delete(reusable.keys().next().value!);
      reusable.set(key, { grant, reuseUntilMs: now + ttlMs / 2, keyId: signing.id });
    }
    return grant;
  };
  const mint = (principal: Pick<Principal, 'subject' | 'tenant'>, ops: string, chunkIds: readonly string[]) => {
    // A leader-only operation in a caller's grant would let that caller drive a leader job.
    const leaderOnly = LEADER_ONLY_OPS.find((op) => ops.includes(op));
    if (leaderOnly) throw new StrataError('Internal', `operation '${leaderOnly}' is granted only to the leader's own jobs`);
    return sign(principal, ops, chunkIds);
  };
  const verifier = new GrantVerifier();
  let verifierKeys: WireGrantKey[] | undefined;
  const checkCommit = (principal: Pick<Principal, 'subject' | 'tenant'>, grant: unknown, chunkId: string, expiredGraceMs: number) => {
    // GrantKeys hands out one array until its keys change: re-read them only then, not per commit.
    const published = keys.publicKeys();
    if (published !== verifierKeys) verifier.setKeys('cluster', (verifierKeys = published));
    verifier.check(grant, chunkId, 'w', expiredGraceMs);
    const claims = peekGrant(grant as string);
    if (!claims || (claims.s ?? '') !== (principal.subject ?? '') || (claims.t ?? '') !== (principal.tenant ?? '')) {
      throw new StrataError('PermissionDenied', `chunk ${chunkId}: its write grant was handed to another caller`);
    }
  };
  return {
    mint,
    checkCommit,
    forLeader: (ops: GrantOp | string, chunkId: string) => sign({ subject: LEADER_SUBJECT, tenant: '' }, ops, [chunkId]),
    publicKeys: () => keys.publicKeys(),
  };
}
