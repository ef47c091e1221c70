// Where `strata login` keeps its grant: $XDG_CONFIG_HOME/strata/token.json (else
// ~/.config/strata/token.json), mode 0600 in a 0700 directory, written whole (temp file, rename),
// so another user never reads it and a crash never leaves half a file.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StrataError } from '../../common/errors.js';
import type { StoredLogin } from './realm-login.js';

export function loginStorePath(env: NodeJS.ProcessEnv): string {
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  return path.join(base, 'strata', 'token.json');
}

export function hasStoredLogin(file: string): boolean {
  return existsSync(file);
}

export function readStoredLogin(file: string): StoredLogin {
  try {
    const login = JSON.parse(readFileSync(file, 'utf8')) as StoredLogin;
    if (typeof login?.accessToken !== 'string' || typeof login.issuer !== 'string') throw new Error('not a strata login');
    return login;
  } catch (err) {
    throw new StrataError('Unauthenticated', `not authenticated: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); run strata login or set STRATA_TOKEN`);
  }
}

export function writeStoredLogin(file: string, login: StoredLogin): void {
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, JSON.stringify(login, null, 2) + '\n', { mode: 0o600 });
  chmodSync(temp, 0o600); // whatever the umask
  renameSync(temp, file);
}

export function removeStoredLogin(file: string): boolean {
  if (!existsSync(file)) return false;
  rmSync(file);
  return true;
}
