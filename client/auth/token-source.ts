// Where a client's bearer token comes from: a fixed token (STRATA_TOKEN), or a provider that can
// mint fresh ones (a token file read again, `strata login`'s stored grant refreshed). The token
// is kept until it nears its expiry (read from its claims, unverified: the coordinator verifies),
// then asked for again, so a long session or mount refreshes before its token runs out.
import { unauthenticated, StrataError } from '../../common/errors.js';

export type TokenProvider = () => string | Promise<string>;

/** Ask again this long before expiry (or a third of the token's life, if shorter). */
const REFRESH_MARGIN_MS = 30_000;

export class TokenSource {
  private cached: { token: string; refreshAtMs: number; expiresAtMs: number } | undefined;
  private inFlight: Promise<string> | undefined;

  constructor(private readonly provider: TokenProvider) {}

  static fixed(token: string): TokenSource {
    return new TokenSource(() => token);
  }

  /** A token good for a while yet (the provider is asked once for concurrent callers). */
  token(): Promise<string> {
    const cached = this.cached;
    if (cached && Date.now() < cached.refreshAtMs) return Promise.resolve(cached.token);
    return (this.inFlight ??= this.fetch().finally(() => (this.inFlight = undefined)));
  }

  /** When the token last handed out should be replaced (ms since the epoch; Infinity = no expiry known). */
  get refreshAtMs(): number {
    return this.cached?.refreshAtMs ?? 0;
  }

  private async fetch(): Promise<string> {
    let token: string;
    try {
      token = String(await this.provider()).trim();
    } catch (err) {
      if (err instanceof StrataError) throw err;
      throw unauthenticated(`cannot get a token: ${(err as Error).message ?? err}`);
    }
    if (!token) throw unauthenticated('the token is empty');
    const { exp, iat } = claimsOf(token);
    const expiresAtMs = exp ? exp * 1000 : Infinity;
    const lifeMs = exp && iat ? (exp - iat) * 1000 : Infinity;
    const refreshAtMs = expiresAtMs - Math.min(REFRESH_MARGIN_MS, lifeMs / 3);
    this.cached = { token, refreshAtMs, expiresAtMs };
    return token;
  }
}

/** exp and iat of a JWT, unverified ({} when it does not decode: the coordinator says why). */
export function claimsOf(token: string): { exp?: number; iat?: number } {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
    return { exp: typeof payload?.exp === 'number' ? payload.exp : undefined, iat: typeof payload?.iat === 'number' ? payload.iat : undefined };
  } catch {
    return {};
  }
}
