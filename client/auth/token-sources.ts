// The CLI's and the mount's token, from the first of: --token-file (read again on each refresh,
// so an agent can rotate it), STRATA_TOKEN, or the login `strata login` stored (refreshed before
// it expires, and written back). None of these = no token: fine against a coordinator with auth off.
import { readFile } from 'node:fs/promises';
import { StrataError } from '../../common/errors.js';
import { hasStoredLogin, loginStorePath, readStoredLogin, writeStoredLogin } from './login-store.js';
import type { TokenProvider } from './token-source.js';

/** Refresh a stored login this long before its access token expires. */
const STORED_REFRESH_MARGIN_MS = 30_000;

export function tokenProviderFrom(options: { tokenFile?: string; token?: string; env: NodeJS.ProcessEnv }): TokenProvider | undefined {
  const { tokenFile, env } = options;
  if (tokenFile) return () => readTokenFile(tokenFile);
  const fixed = (options.token ?? env.STRATA_TOKEN)?.trim();
  if (fixed) return () => fixed;
  const stored = loginStorePath(env);
  if (hasStoredLogin(stored)) return () => storedToken(stored);
  return undefined;
}

/** Read asynchronously: a mount's own process must never block on a file (its mount may hold it). */
async function readTokenFile(file: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (err) {
    throw new StrataError('Unauthenticated', `not authenticated: cannot read token file ${file} (${(err as NodeJS.ErrnoException).code ?? err}); run strata login or set STRATA_TOKEN`);
  }
}

/**
 * For SDK programs: the login `strata login` stored, refreshed (refresh grant) before it expires
 * and written back, as a `tokenProvider` for `Strata.connect`.
 */
export function storedLoginTokens(env: NodeJS.ProcessEnv = process.env): TokenProvider {
  const file = loginStorePath(env);
  return () => storedToken(file);
}

async function storedToken(file: string): Promise<string> {
  const login = readStoredLogin(file);
  if (login.expiresAtMs - Date.now() > STORED_REFRESH_MARGIN_MS) return login.accessToken;
  // Loaded only to refresh: keycloak-connect and its key parsers cost every other CLI call nothing.
  const { refresh } = await import('./realm-login.js');
  const fresh = await refresh(login);
  writeStoredLogin(file, fresh);
  return fresh.accessToken;
}
