import { describe, expect, test } from 'vitest';
import { unauthenticated } from '../../common/errors.js';
import type { Principal } from '../../common/auth-principal.js';
import type { ServerSession, SessionOps } from '../session.js';
import type { Authenticator } from './authenticator.js';
import { AUTH_OFF } from './authenticator.js';
import { guardSessionOps, principalOfSession } from './guard.js';

const principal = (subject: string, ttlMs = 60_000): Principal => ({ subject, tenant: 't', roles: [], clientId: 'c', expiresAtMs: Date.now() + ttlMs, anonymous: false });

/** Tokens are 'good:<subject>' (verified after `delayMs`) or anything else (refused). */
function fakeAuth(delayMs = 20): Authenticator {
  return {
    mode: 'oidc',
    verify: (token) =>
      new Promise((resolve, reject) =>
        setTimeout(() => (token.startsWith('good:') ? resolve(principal(token.slice(5))) : reject(unauthenticated('bad token'))), delayMs),
      ),
  };
}

const session = () => ({}) as ServerSession;
const ops: SessionOps = { stat: async (_req, s) => ({ as: principalOfSession(s)?.subject }) };

describe('session authentication gate', () => {
  test('requests pipelined behind the first authenticate wait for it and run as its subject', async () => {
    const guarded = guardSessionOps(ops, fakeAuth());
    const s = session();
    const auth = guarded.authenticate!({ token: 'good:alice' }, s);
    const stat = guarded.stat!({}, s);
    await auth;
    expect(await stat).toEqual({ as: 'alice' });
  });

  test('without a valid token every request fails Unauthenticated and its op never runs', async () => {
    let ran = 0;
    const guarded = guardSessionOps({ stat: async () => ++ran }, fakeAuth());
    const s = session();
    await expect(guarded.stat!({}, s)).rejects.toMatchObject({ kind: 'Unauthenticated' });
    const auth = guarded.authenticate!({ token: 'forged' }, s);
    const behind = guarded.stat!({}, s);
    await expect(auth).rejects.toMatchObject({ kind: 'Unauthenticated' });
    await expect(behind).rejects.toMatchObject({ kind: 'Unauthenticated' });
    expect(ran).toBe(0);
  });

  test('a refresh keeps the subject; another subject on the same session is refused', async () => {
    const guarded = guardSessionOps(ops, fakeAuth(1));
    const s = session();
    await guarded.authenticate!({ token: 'good:alice' }, s);
    await guarded.authenticate!({ token: 'good:alice' }, s);
    await expect(guarded.authenticate!({ token: 'good:mallory' }, s)).rejects.toThrow(/authenticated as 'alice'/);
  });

  test('auth off: every session is anonymous, and authenticate is accepted', async () => {
    const guarded = guardSessionOps(ops, AUTH_OFF);
    const s = session();
    expect(await guarded.authenticate!({ token: 'whatever' }, s)).toMatchObject({ subject: 'anonymous' });
    expect(await guarded.stat!({}, s)).toEqual({ as: 'anonymous' });
  });
});
