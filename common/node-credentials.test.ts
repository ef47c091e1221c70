import { describe, expect, test } from 'vitest';
import { MAX_SKEW_MS, NodeSecret } from './node-credentials.js';

const HEARTBEAT = '/strata.v1.Coordinator/Heartbeat';
const LIST = '/strata.v1.DataNode/ListChunks';
const secretText = 'k'.repeat(40);

describe('node credentials', () => {
  test('a fresh credential is accepted once, for its method only', () => {
    const sender = NodeSecret.load({ nodeSecret: secretText })!;
    const receiver = NodeSecret.load({ nodeSecret: ` ${secretText}\n` })!; // trimmed: the same secret
    const credential = sender.credential(HEARTBEAT, 'dn1');
    expect(receiver.check(credential, LIST)).toMatch(/another secret/);
    expect(receiver.check(credential, HEARTBEAT)).toBeUndefined();
    expect(receiver.check(credential, HEARTBEAT)).toMatch(/replay/);
    expect(NodeSecret.callerOf(credential)).toBe('dn1');
  });

  test('missing, malformed, foreign and stale credentials are refused', () => {
    const secret = NodeSecret.load({ nodeSecret: secretText })!;
    const other = NodeSecret.load({ nodeSecret: 'o'.repeat(40) })!;
    expect(secret.check(undefined, HEARTBEAT)).toMatch(/no node credential.*--node-secret-file/);
    expect(secret.check('', HEARTBEAT)).toMatch(/no node credential/);
    expect(secret.check('v1.a.b.c.d', HEARTBEAT)).toMatch(/malformed/);
    expect(secret.check(other.credential(HEARTBEAT, 'dn1'), HEARTBEAT)).toMatch(/another secret/);
    const now = Date.now();
    expect(secret.check(secret.credential(HEARTBEAT, 'dn1', now - MAX_SKEW_MS - 1000), HEARTBEAT, now)).toMatch(/check the clocks/);
    expect(secret.check(secret.credential(HEARTBEAT, 'dn1', now + MAX_SKEW_MS + 1000), HEARTBEAT, now)).toMatch(/check the clocks/);
    // A tampered caller breaks the MAC.
    const parts = secret.credential(HEARTBEAT, 'dn1').split('.');
    parts[1] = Buffer.from('dn2').toString('base64url');
    expect(secret.check(parts.join('.'), HEARTBEAT)).toMatch(/another secret/);
  });

  test('a short secret, or both sources, is one line that never shows the value', () => {
    expect(() => NodeSecret.load({ nodeSecret: 'short-secret-value' })).toThrow(/STRATA_NODE_SECRET holds 18 characters; use 32/);
    expect(() => NodeSecret.load({ nodeSecret: 'short-secret-value' })).not.toThrow(/short-secret-value/);
    expect(() => NodeSecret.load({ nodeSecret: secretText, nodeSecretFile: '/x' })).toThrow(/not both/);
    expect(() => NodeSecret.load({ nodeSecretFile: '/nonexistent/node.secret' })).toThrow(/cannot read --node-secret-file \/nonexistent\/node.secret \(ENOENT\)/);
    expect(NodeSecret.load({})).toBeUndefined();
  });
});
