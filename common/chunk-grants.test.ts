// GrantVerifier (chunk-grants.ts) on its own: what a data node accepts and refuses, and why.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, expect, test, vi } from 'vitest';
import { GRANT_MAX_CHARS, GRANT_MAX_CHUNKS, GrantVerifier, peekGrant, signGrant, type WireGrantKey } from './chunk-grants.js';

interface TestKey {
  id: string;
  privateKey: KeyObject;
  wire: WireGrantKey;
}

function makeKey(id: string): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { id, privateKey, wire: { id, publicKey: publicKey.export({ format: 'der', type: 'spki' }) } };
}

const MINUTE = 60_000;
const claims = (o: string, c: string[], x = Date.now() + MINUTE) => ({ s: 'alice', t: 'acme', o, c, x });
const denied = (message: RegExp) => expect.objectContaining({ kind: 'PermissionDenied', message: expect.stringMatching(message) });

describe('GrantVerifier', () => {
  const key = makeKey('k1');
  const verifier = new GrantVerifier();
  verifier.setKeys('coord-1', [key.wire]);

  test('a grant covers exactly its chunks and operations, until it expires', () => {
    const grant = signGrant(key, claims('rw', ['c1', 'c2']));
    expect(peekGrant(grant)).toMatchObject({ k: 'k1', s: 'alice', t: 'acme', o: 'rw', c: ['c1', 'c2'] });
    for (const chunk of ['c1', 'c2']) for (const op of ['r', 'w'] as const) expect(() => verifier.check(grant, chunk, op)).not.toThrow();
    expect(() => verifier.check(grant, 'c3', 'r')).toThrow(denied(/for other chunks/));
    expect(() => verifier.check(grant, 'c1', 'd')).toThrow(denied(/allows 'rw', not 'd'/));
    const expired = signGrant(key, claims('r', ['c1'], Date.now() - 1));
    expect(() => verifier.check(expired, 'c1', 'r')).toThrow(denied(/expired/));
  });

  test('missing, malformed, forged and tampered grants are refused', () => {
    const good = signGrant(key, claims('r', ['c1']));
    const [payload, signature] = good.split('.');
    const widened = Buffer.from(JSON.stringify({ ...peekGrant(good), o: 'rwd', c: ['c1', 'c9'] })).toString('base64url');
    const cases: Array<[unknown, RegExp]> = [
      [undefined, /no grant/],
      ['', /no grant/],
      [42, /no grant/],
      ['no-dot', /malformed/],
      ['a.b.c', /malformed/],
      [`${Buffer.from('not json').toString('base64url')}.${signature}`, /malformed/],
      [`${Buffer.from(JSON.stringify({ k: 'k1' })).toString('base64url')}.${signature}`, /malformed/],
      ['x'.repeat(GRANT_MAX_CHARS + 1), /longer than/],
      // Signed by a stranger who reuses the real key's id.
      [signGrant({ id: 'k1', privateKey: makeKey('k1').privateKey }, claims('rwd', ['c1'])), /signature is not valid/],
      // A key id no coordinator publishes.
      [signGrant(makeKey('k-unknown'), claims('r', ['c1'])), /no coordinator publishes/],
      // The claims widened, the old signature kept.
      [`${widened}.${signature}`, /signature is not valid/],
      [`${payload}.${Buffer.from(signature!, 'base64url').subarray(0, 32).toString('base64url')}`, /signature is not valid/],
    ];
    for (const [grant, reason] of cases) expect(() => verifier.check(grant, 'c1', 'r'), String(grant).slice(0, 40)).toThrow(denied(reason));
    // A refused grant is not cached as good: the real one still works, the forged one still fails.
    expect(() => verifier.check(good, 'c1', 'r')).not.toThrow();
    expect(() => verifier.check(`${widened}.${signature}`, 'c9', 'w')).toThrow(denied(/signature/));
  });

  test('more chunk ids than one grant may cover: refused', () => {
    const ids = Array.from({ length: GRANT_MAX_CHUNKS + 1 }, (_, i) => `c${i}`);
    expect(() => verifier.check(signGrant(key, claims('r', ids)), 'c0', 'r')).toThrow(denied(/malformed/));
  });

  test('no keys learnt yet: Unavailable (another replica may know them), not PermissionDenied', () => {
    const fresh = new GrantVerifier();
    expect(fresh.keyCount).toBe(0);
    expect(() => fresh.check(signGrant(key, claims('r', ['c1'])), 'c1', 'r')).toThrow(expect.objectContaining({ kind: 'Unavailable' }));
  });

  test('keys from several coordinators all count; a key no coordinator publishes any more stops working, cached or not', () => {
    const other = makeKey('k2');
    const v = new GrantVerifier();
    v.setKeys('coord-1', [key.wire]);
    v.setKeys('coord-2', [other.wire]);
    expect(v.keyCount).toBe(2);
    const byOne = signGrant(key, claims('r', ['c1']));
    const byTwo = signGrant(other, claims('r', ['c1']));
    v.check(byOne, 'c1', 'r');
    v.check(byTwo, 'c1', 'r');
    // Both coordinators now publish only k2 (k1 rotated out): k1's grant, verified before, is refused.
    v.setKeys('coord-1', [other.wire]);
    expect(v.keyCount).toBe(1);
    expect(() => v.check(byOne, 'c1', 'r')).toThrow(denied(/no coordinator publishes/));
    expect(() => v.check(byTwo, 'c1', 'r')).not.toThrow();
    // A key this node cannot read (not Ed25519 DER) is ignored, not a crash.
    v.setKeys('coord-3', [{ id: 'junk', publicKey: Buffer.from('nope') }]);
    expect(v.keyCount).toBe(1);
  });

  test('a coordinator no longer heard: its keys count until its grants could have expired, then not', () => {
    vi.useFakeTimers({ now: Date.now(), toFake: ['Date'] });
    try {
      const stale = makeKey('k-stale');
      const v = new GrantVerifier();
      v.setKeys('coord-up', [key.wire], 10 * MINUTE);
      v.setKeys('coord-down', [stale.wire], 2 * MINUTE); // then never again
      const byStale = signGrant(stale, claims('r', ['c1'], Date.now() + 60 * MINUTE)); // outliving its key: a leaked key's
      expect(() => v.check(byStale, 'c1', 'r')).not.toThrow();
      vi.advanceTimersByTime(MINUTE);
      v.setKeys('coord-up', [key.wire], 10 * MINUTE); // the live one keeps talking
      expect(() => v.check(byStale, 'c1', 'r')).not.toThrow();
      vi.advanceTimersByTime(MINUTE + 1);
      expect(() => v.check(byStale, 'c1', 'r')).toThrow(denied(/no coordinator publishes/));
      expect(v.keyCount).toBe(1);
      expect(() => v.check(signGrant(key, claims('r', ['c1'], Date.now() + MINUTE)), 'c1', 'r')).not.toThrow();
    } finally {
      vi.useRealTimers();
    }
  });

  test('--grants off: every check passes', () => {
    const off = new GrantVerifier(false);
    expect(() => off.check(undefined, 'c1', 'w')).not.toThrow();
    expect(() => off.check('garbage', 'c1', 'd')).not.toThrow();
  });
});
