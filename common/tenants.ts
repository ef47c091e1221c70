// Where each tenant lives in the one namespace. A tenant's caller sees this directory as its `/`;
// quotas on a tenant are quotas on this directory. Kept here so authorization, quotas and the CLI
// agree on one convention.

/** The directory holding every tenant's root. */
export const TENANTS_DIR = '/tenants';

/** The namespace path of a tenant's root directory (the tenant name is validated at the edge). */
export function tenantRootPath(tenant: string): string {
  return `${TENANTS_DIR}/${tenant}`;
}

/** The name of TENANTS_DIR in the root. */
export const TENANTS_DIR_NAME = TENANTS_DIR.slice(1);

/** A tenant name from a token claim: one path component, letters, digits, '.', '_', '-' (not '.' or '..'). */
export function isTenantName(tenant: string): boolean {
  return /^[A-Za-z0-9._-]{1,64}$/.test(tenant) && tenant !== '.' && tenant !== '..';
}
