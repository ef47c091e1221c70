import { describe, expect, test } from 'vitest';
import { COORDINATORS_RECEIVER, MAX_SKEW_MS, NodeSecret, bodyDigest } from './node-credentials.js';

const HEARTBEAT = '/strata.v1.Coordinator/Heartbeat';
const LIST = '/strata.v1.DataNode/ListChunks';
const STAT = '/strata.v1.DataNode/StatChunk';
const secretText = 'k'.repeat(40);
const C = COORDINATORS_RECEIVER;

describe('node credentials', () => {
  test('a fresh credential is accepted once, for its method only', () => {
    const sender = NodeSecret.load({ nodeSecret: secretText })!;
    const receiver = NodeSecret.load({ nodeSecret: ` ${secretText}\n` })!; // trimmed: the same secret
    const credential = sender.credential(HEARTBEAT, 'dn1', C);
    expect(receiver.check(credential, LIST, C)).toMatch(/another secret/);
    expect(receiver.check(credential, HEARTBEAT, C)).toBeUndefined();
    expect(receiver.check(credential, HEARTBEAT, C)).toMatch(/replay/);
    expect(NodeSecret.callerOf(credential)).toBe('dn1');
  });

  test('missing, malformed, foreign and stale credentials are refused', () => {
    const secret = NodeSecret.load({ nodeSecret: secretText })!;
    const other = NodeSecret.load({ nodeSecret: 'o'.repeat(40) })!;
    expect(secret.check(undefined, HEARTBEAT, C)).toMatch(/no node credential.*--node-secret-file/);
    expect(secret.check('', HEARTBEAT, C)).toMatch(/no node credential/);
    expect(secret.check('v1.a.b.c.d', HEARTBEAT, C)).toMatch(/malformed/);
    expect(secret.check(other.credential(HEARTBEAT, 'dn1', C), HEARTBEAT, C)).toMatch(/another secret/);
    const now = Date.now();
    expect(secret.check(secret.credential(HEARTBEAT, 'dn1', C, '-', now - MAX_SKEW_MS - 1000), HEARTBEAT, C, now)).toMatch(/check the clocks/);
    expect(secret.check(secret.credential(HEARTBEAT, 'dn1', C, '-', now + MAX_SKEW_MS + 1000), HEARTBEAT, C, now)).toMatch(/check the clocks/);
    // A tampered caller breaks the MAC.
    const parts = secret.credential(HEARTBEAT, 'dn1', C).split('.');
    parts[1] = Buffer.from('dn2').toString('base64url');
    expect(secret.check(parts.join('.'), HEARTBEAT, C)).toMatch(/another secret/);
    // So does a tampered receiver or body digest.
    const other2 = secret.credential(STAT, 'coord', 'dn1:7001', bodyDigest(STAT, { chunkId: 'a' })).split('.');
    other2[2] = Buffer.from('dn2:7001').toString('base64url');
    expect(secret.check(other2.join('.'), STAT, 'dn2:7001')).toMatch(/another secret/);
    const other3 = secret.credential(STAT, 'coord', 'dn1:7001', bodyDigest(STAT, { chunkId: 'a' })).split('.');
    other3[5] = bodyDigest(STAT, { chunkId: 'b' });
    expect(secret.check(other3.join('.'), STAT, 'dn1:7001')).toMatch(/another secret/);
  });

  test('a credential made for one receiver is refused at another', () => {
    const secret = NodeSecret.load({ nodeSecret: secretText })!;
    const atB = NodeSecret.load({ nodeSecret: secretText })!;
    const forA = secret.credential(STAT, 'coord:7000', 'dn1:7001', bodyDigest(STAT, { chunkId: 'c1' }));
    expect(atB.check(forA, STAT, 'dn2:7001')).toMatch(/made for "dn1:7001", not this node \(dn2:7001/);
    expect(atB.verify(forA, STAT, 'dn1:7001')).toEqual({ caller: 'coord:7000', body: bodyDigest(STAT, { chunkId: 'c1' }) });
  });

  test('the body digest covers the fields that matter, the same whether sent or decoded', () => {
    const sent = { nodeId: 'dn1', address: '10.0.0.1:7001', capacityBytes: 5, masterKeyIds: ['k1'] };
    const decoded = { nodeId: 'dn1', address: '10.0.0.1:7001', capacityBytes: 5, dataAddress: '', zone: '', masterKeyIds: ['k1'], usedBytes: 0 };
    expect(bodyDigest(HEARTBEAT, sent)).toBe(bodyDigest(HEARTBEAT, decoded));
    expect(bodyDigest(HEARTBEAT, { ...sent, nodeId: 'dn9' })).not.toBe(bodyDigest(HEARTBEAT, sent));
    expect(bodyDigest(HEARTBEAT, { ...sent, address: '6.6.6.6:7001' })).not.toBe(bodyDigest(HEARTBEAT, sent));
    expect(bodyDigest(HEARTBEAT, { nodeId: 'dn1', masterKeyIds: [] })).toBe(bodyDigest(HEARTBEAT, { nodeId: 'dn1', zone: '', dataAddress: '' }));
    expect(bodyDigest('/strata.v1.DataNode/RewrapChunks', { afterChunkId: '' })).toBe(bodyDigest('/strata.v1.DataNode/RewrapChunks', { afterChunkId: '', limit: 0 }));
    expect(bodyDigest(LIST, {})).toBe('-');
  });

  test('past the nonce cap, calls are refused rather than nonces still in their window forgotten', () => {
    const secret = NodeSecret.load({ nodeSecret: secretText }, 3)!;
    const now = Date.now();
    const first = secret.credential(HEARTBEAT, 'dn1', C, '-', now);
    expect(secret.check(first, HEARTBEAT, C, now)).toBeUndefined();
    for (let i = 0; i < 2; i++) expect(secret.check(secret.credential(HEARTBEAT, 'dn1', C, '-', now), HEARTBEAT, C, now)).toBeUndefined();
    expect(secret.check(secret.credential(HEARTBEAT, 'dn1', C, '-', now), HEARTBEAT, C, now)).toMatch(/too many node credentials/);
    expect(secret.check(first, HEARTBEAT, C, now + 1000)).toMatch(/replay/); // still remembered
    // Once the old ones are past the window, new calls are accepted again.
    const later = now + 2 * MAX_SKEW_MS + 1;
    expect(secret.check(secret.credential(HEARTBEAT, 'dn1', C, '-', later), HEARTBEAT, C, later)).toBeUndefined();
  });

  test('a short secret, or both sources, is one line that never shows the value', () => {
    expect(() => NodeSecret.load({ nodeSecret: 'short-secret-value' })).toThrow(/STRATA_NODE_SECRET holds 18 characters; use 32/);
    expect(() => NodeSecret.load({ nodeSecret: 'short-secret-value' })).not.toThrow(/short-secret-value/);
    expect(() => NodeSecret.load({ nodeSecret: secretText, nodeSecretFile: '/x' })).toThrow(/not both/);
    expect(() => NodeSecret.load({ nodeSecretFile: '/nonexistent/node.secret' })).toThrow(/cannot read --node-secret-file \/nonexistent\/node.secret \(ENOENT\)/);
    expect(NodeSecret.load({})).toBeUndefined();
  });
});
