// The parts of keycloak-connect's auth-utils used here (the package ships types only for its
// Express middleware, not for the grant manager that works without one).
declare module 'keycloak-connect/middleware/auth-utils/config.js' {
  export default class Config {
    constructor(config: Record<string, unknown>);
    realmUrl: string;
    clientId: string;
  }
}

declare module 'keycloak-connect/middleware/auth-utils/token.js' {
  export default class Token {
    constructor(token: string, clientId?: string);
    token: string;
    header?: { alg?: string; kid?: string; typ?: string };
    content: Record<string, unknown> & { exp?: number; nbf?: number; iat?: number; sub?: string; iss?: string; aud?: string | string[] };
    signed?: string;
    isExpired(): boolean;
  }
}

declare module 'keycloak-connect/middleware/auth-utils/grant-manager.js' {
  import type Config from 'keycloak-connect/middleware/auth-utils/config.js';
  import type Token from 'keycloak-connect/middleware/auth-utils/token.js';
  export interface Grant {
    access_token?: Token;
    refresh_token?: Token;
    id_token?: Token;
    expires_in?: number;
    token_type?: string;
  }
  export default class GrantManager {
    constructor(config: Config);
    realmUrl: string;
    clientId: string;
    rotation: { minTimeBetweenJwksRequests: number; clearCache(): void };
    validateToken(token: Token, expectedType: string): Promise<Token>;
    obtainDirectly(username: string, password: string, callback?: undefined, scope?: string): Promise<Grant>;
    obtainFromClientCredentials(callback?: undefined, scope?: string): Promise<Grant>;
    ensureFreshness(grant: { isExpired(): boolean; refresh_token?: Token }): Promise<Grant>;
    /** A grant from a token endpoint's JSON reply (another library ran the grant), validated like its own. */
    createGrant(rawData: string): Promise<Grant>;
  }
}
