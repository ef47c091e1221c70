import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { ObjectTier, TierTarget } from '../common/object-tier.js';
import { TierRegistry } from './tier-registry.js';

const target = (name: string, bucket = 'b'): TierTarget => ({
  name, endpoint: 'http://127.0.0.1:1', region: 'us-east-1', bucket, prefix: '', forcePathStyle: true, accessKeyId: 'k', secretAccessKey: 's', sessionToken: '',
});

describe('TierRegistry', () => {
  it('follows the targets it is given, making a client again only when a target changed', () => {
    const made: Array<{ target: TierTarget; closed: boolean }> = [];
    const registry = new TierRegistry(pino({ level: 'silent' }), (t) => {
      const tier = { target: t, closed: false, close() { tier.closed = true; } };
      made.push(tier);
      return tier as unknown as ObjectTier;
    });
    expect(() => registry.get('cold')).toThrow("tier 'cold' is not known to this data node yet");
    registry.update([target('cold'), target('archive')]);
    const cold = registry.get('cold');
    registry.update([target('cold'), target('archive')]);
    expect(registry.get('cold')).toBe(cold); // same target: same client
    expect(made).toHaveLength(2);
    registry.update([target('cold', 'other-bucket')]);
    expect(registry.get('cold')).not.toBe(cold);
    expect(registry.get('cold').target.bucket).toBe('other-bucket');
    expect(() => registry.get('archive')).toThrow(/not known/);
    expect(made).toHaveLength(3);
    // Replaced and removed clients close later (calls on them may be running); all close with the registry.
    expect(made.every((tier) => !tier.closed)).toBe(true);
    registry.close();
    expect(made.every((tier) => tier.closed)).toBe(true);
  });
});
