// The coordinators' grant keys (grant-keys.ts) and minter (grant-minter.ts) on a real LevelDB
// store: one key shared by every coordinator, rotation that publishes before it signs, and
// grants a data node's verifier accepts.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { GrantVerifier, peekGrant } from '../common/chunk-grants.js';
import { createLogger } from '../common/log.js';
import { tempDir, type TempDir } from '../test/harness/ports.js';
import { GrantKeys, rotateGrantKeys } from './grant-keys.js';
import { LEADER_SUBJECT, grantMinter } from './grant-minter.js';
import { LevelKv } from './meta/level-kv.js';

const log = createLogger('coordinator', 'silent');

describe('grant keys and minter', () => {
  let dir: TempDir;
  let kv: LevelKv;
  const opened: GrantKeys[] = [];
  const open = async () => {
    const keys = await GrantKeys.open(kv, log);
    opened.push(keys);
    return keys;
  };

  beforeAll(async () => {
    dir = await tempDir('grant-keys');
    kv = await LevelKv.open(path.join(dir.path, 'meta'));
  });
  afterAll(async () => {
    for (const keys of opened) keys.close();
    await kv?.close();
    await dir?.cleanup();
  });

  test('the first coordinator makes the key; the next one reads the same; grants from either verify', async () => {
    const [a, b] = [await open(), await open()];
    expect(a.publicKeys()).toHaveLength(1);
    expect(b.publicKeys().map((k) => k.id)).toEqual(a.publicKeys().map((k) => k.id));
    const verifier = new GrantVerifier();
    verifier.setKeys('a', a.publicKeys());
    const grant = grantMinter(b, 60_000).mint({ subject: 'alice', tenant: 'acme' }, 'r', ['c1']);
    expect(() => verifier.check(grant, 'c1', 'r')).not.toThrow();
    expect(peekGrant(grant)).toMatchObject({ s: 'alice', t: 'acme', o: 'r', c: ['c1'] });
  });

  test('a single-chunk grant is reused for the same principal, not for another; the leader names itself', async () => {
    const minter = grantMinter(await open(), 60_000);
    const alice = { subject: 'alice', tenant: 'acme' };
    expect(minter.mint(alice, 'r', ['c1'])).toBe(minter.mint(alice, 'r', ['c1']));
    expect(minter.mint(alice, 'r', ['c1'])).not.toBe(minter.mint({ subject: 'bob', tenant: 'acme' }, 'r', ['c1']));
    expect(minter.mint(alice, 'r', ['c1'])).not.toBe(minter.mint(alice, 'w', ['c1']));
    expect(peekGrant(minter.forLeader('rw', 'c2'))).toMatchObject({ s: LEADER_SUBJECT, o: 'rw', c: ['c2'] });
    expect(() => minter.mint(alice, 'r', Array.from({ length: 257 }, (_, i) => `c${i}`))).toThrow(/at most 256/);
  });

  test('tier upload (t) is granted only to the leader: never in a caller\'s grant, and a read grant does not cover it', async () => {
    const keys = await open();
    const minter = grantMinter(keys, 60_000);
    const verifier = new GrantVerifier();
    verifier.setKeys('a', keys.publicKeys());
    const alice = { subject: 'alice', tenant: 'acme' };
    for (const ops of ['t', 'rt']) expect(() => minter.mint(alice, ops, ['c1']), ops).toThrow(/only to the leader/);
    expect(() => verifier.check(minter.mint(alice, 'r', ['c1']), 'c1', 't')).toThrow(/allows 'r', not 't'/);
    expect(() => verifier.check(minter.forLeader('t', 'c1'), 'c1', 't')).not.toThrow();
  });

  test('a rotated key is published at once and signs only once active; the old one keeps verifying', async () => {
    const keys = await open();
    const before = keys.signingKey().id;
    const now = Date.now();
    const added = (await rotateGrantKeys(kv, 60_000, now, 60_000)).id;
    // Another coordinator opening now sees both, and still signs with the old one.
    const other = await open();
    expect(other.publicKeys().map((k) => k.id)).toEqual([before, added]);
    expect(other.signingKey(now).id).toBe(before);
    expect(other.signingKey(now + 61_000).id).toBe(added);
    // A data node that learnt both accepts grants of either.
    const verifier = new GrantVerifier();
    verifier.setKeys('other', other.publicKeys());
    const oldGrant = grantMinter(other, 60_000).mint({ subject: 's', tenant: '' }, 'r', ['c1', 'c2']);
    expect(peekGrant(oldGrant)!.k).toBe(before);
    expect(() => verifier.check(oldGrant, 'c2', 'r')).not.toThrow();
    // Rotations keep every key whose grants may still be out: the old grant stays good.
    await rotateGrantKeys(kv, 0, now, 60_000);
    await rotateGrantKeys(kv, 0, now, 60_000);
    const latest = await open();
    expect(latest.publicKeys().map((k) => k.id)).toContain(before);
    verifier.setKeys('other', latest.publicKeys());
    expect(() => verifier.check(oldGrant, 'c2', 'r')).not.toThrow();
    // Once its successor has been active longer than a re-read and a grant's lifetime, it goes.
    const later = now + 61_000 + 30_000 + 60_000 + 1;
    const { keyIds } = await rotateGrantKeys(kv, 0, later, 60_000);
    expect(keyIds).not.toContain(before);
    expect(keyIds).not.toContain(added); // superseded at once by the rotations after it, long enough ago
    verifier.setKeys('other', (await open()).publicKeys());
    expect(() => verifier.check(oldGrant, 'c2', 'r')).toThrow(expect.objectContaining({ kind: 'PermissionDenied' }));
  });
});
