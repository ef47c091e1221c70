import { describe, expect, test } from 'vitest';
import { StrataError } from '../../common/errors.js';
import { TokenSource, claimsOf } from './token-source.js';

const jwt = (claims: Record<string, unknown>) => `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
const now = () => Math.floor(Date.now() / 1000);

describe('TokenSource', () => {
  test('keeps a token until it nears expiry, then asks the provider again', async () => {
    let calls = 0;
    const long = new TokenSource(() => (calls++, jwt({ iat: now(), exp: now() + 3600 })));
    const first = await long.token();
    expect(await long.token()).toBe(first);
    expect(calls).toBe(1);
    // A token with 2 s left (a third of its 6 s life is the margin): asked for again at once.
    let shortCalls = 0;
    const short = new TokenSource(() => (shortCalls++, jwt({ iat: now() - 4, exp: now() + 2 })));
    await short.token();
    await short.token();
    expect(shortCalls).toBe(2);
  });

  test('concurrent callers share one provider call', async () => {
    let calls = 0;
    const source = new TokenSource(async () => {
      calls++;
      await new Promise((r) => setTimeout(r, 20));
      return jwt({ exp: now() + 3600 });
    });
    const tokens = await Promise.all([source.token(), source.token(), source.token()]);
    expect(new Set(tokens).size).toBe(1);
    expect(calls).toBe(1);
  });

  test('a failing or empty provider is Unauthenticated, with the way out', async () => {
    const failing = new TokenSource(() => {
      throw new Error('ENOENT');
    });
    await expect(failing.token()).rejects.toMatchObject({ kind: 'Unauthenticated', message: /ENOENT.*run strata login or set STRATA_TOKEN/ });
    const empty = new TokenSource(() => '  ');
    const err = await empty.token().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StrataError);
    expect((err as StrataError).kind).toBe('Unauthenticated');
  });

  test('an opaque (non-JWT) token is used as is, with no expiry known', async () => {
    expect(claimsOf('opaque')).toEqual({});
    const source = TokenSource.fixed('opaque');
    expect(await source.token()).toBe('opaque');
    expect(source.refreshAtMs).toBe(Infinity);
  });
});
