// A Keycloak realm's issuer URL and the parts keycloak-connect wants apart (server URL, realm),
// shared by the coordinator's verifier and the client's login.
import { invalid } from './errors.js';

/** https://HOST[/PREFIX]/realms/NAME -> { authServerUrl: https://HOST[/PREFIX], realm: NAME } */
export function splitIssuer(issuer: string): { authServerUrl: string; realm: string } {
  const match = /^(https?:\/\/[^/?#]+(?:\/[^?#]*?)?)\/realms\/([^/?#]+)\/?$/.exec(issuer);
  if (!match) throw invalid(`'${issuer}' is not a Keycloak realm URL (https://HOST/realms/NAME)`);
  return { authServerUrl: match[1], realm: decodeURIComponent(match[2]) };
}
