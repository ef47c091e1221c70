// Which Authenticator a coordinator runs with, decided once at start-up. Anonymous access only
// when chosen: `--auth off`, or no --auth on a coordinator reachable only from this machine
// (every port on loopback: the test harness and a laptop). Anything listening beyond loopback
// without --auth refuses to start, naming the flags.
import type { CoordinatorConfig } from '../../common/config.js';
import { invalid } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { AUTH_OFF, type Authenticator } from './authenticator.js';
import { OidcVerifier } from './oidc-verifier.js';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[?::1\]?)$/;

const hostOf = (address: string) => address.slice(0, address.lastIndexOf(':'));

export function openAuthenticator(config: CoordinatorConfig, log: Logger): Authenticator {
  const mode = config.auth ?? (loopbackOnly(config) ? undefined : 'required');
  if (mode === 'required') {
    throw invalid(`invalid config: auth: this coordinator listens beyond loopback (${config.listen}): set --auth oidc (with --oidc-issuer and --oidc-audience) or --auth off for anonymous access`);
  }
  if (mode === 'oidc') {
    if (!config.oidcIssuer) throw invalid('invalid config: oidcIssuer is required with --auth oidc: set --oidc-issuer or STRATA_OIDC_ISSUER');
    if (!config.oidcAudience) throw invalid('invalid config: oidcAudience is required with --auth oidc: set --oidc-audience or STRATA_OIDC_AUDIENCE');
    const verifier = new OidcVerifier({
      issuer: config.oidcIssuer,
      audience: config.oidcAudience,
      tenantClaim: config.oidcTenantClaim,
      idClaims: { uid: config.oidcUidClaim, gid: config.oidcGidClaim, gids: config.oidcGidsClaim },
      jwksRefetchMs: config.oidcJwksRefetchMs,
    });
    log.info({ issuer: config.oidcIssuer, audience: config.oidcAudience }, 'auth: OIDC bearer tokens required');
    return verifier;
  }
  log.warn(mode === 'off' ? 'auth off (--auth off): anonymous access' : 'auth off (no --auth, every port on loopback): anonymous access');
  return AUTH_OFF;
}

function loopbackOnly(config: CoordinatorConfig): boolean {
  const hosts = [hostOf(config.listen)];
  if (config.sessionListen && config.sessionListen !== 'off') hosts.push(hostOf(config.sessionListen));
  return hosts.every((host) => LOOPBACK.test(host));
}
