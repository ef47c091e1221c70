// Where each tenant lives in the one namespace. A tenant's caller sees this directory as its `/`;
// quotas on a tenant are quotas on this directory. Kept here so authorization, quotas and the CLI
// agree on one convention.

/** The directory holding every tenant's root. */
export const TENANTS_DIR = '/tenants';

/** The namespace path of a tenant's root directory (the tenant name is validated at the edge). */
export function tenantRootPath(tenant: string): string {
  return `${TENANTS_DIR}/${tenant}`;
}
