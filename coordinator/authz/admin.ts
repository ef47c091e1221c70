// Operations on the whole cluster (coordinator/healing/, coordinator/tiering/): only for holders
// of the admin role (`--admin-role`, default strata-admin) when auth is on; everyone when it is
// off (a local cluster, as before). Checked once, at the service edge, after authentication.
import type * as grpc from '@grpc/grpc-js';
import { toServiceError } from '../../common/grpc.js';
import { principalOfCall } from '../auth/guard.js';
import type { Denials } from './denials.js';

/**
 * Drain, node removal, rebalance, health (it names any tenant's files), every tiering call
 * (policies and pins act across tenants; status scans every chunk) and quota changes.
 */
export const ADMIN_METHODS: ReadonlySet<string> = new Set([
  'Health', 'DrainNode', 'RemoveNode', 'Rebalance',
  'TierSet', 'TierGet', 'TierPin', 'TierRecall', 'TierStatus',
  // Quotas bound tenants: setting or removing one, and the list of every tenant's, are the admin's
  // (a tenant's caller reads its own with QuotaGet and StatFs, inside its root).
  'QuotaSet', 'QuotaRemove', 'QuotaList',
]);

/* eslint-disable @typescript-eslint/no-explicit-any -- handlers are the service's untyped ones */
export function requireAdminRole(
  service: grpc.UntypedServiceImplementation,
  adminRole: string,
  denials: Denials,
): grpc.UntypedServiceImplementation {
  const guarded: grpc.UntypedServiceImplementation = { ...service };
  for (const name of ADMIN_METHODS) {
    const handler = service[name] as grpc.handleUnaryCall<any, any> | undefined;
    if (!handler) continue;
    guarded[name] = ((call, callback) => {
      const principal = principalOfCall(call);
      if (principal.anonymous || principal.roles.includes(adminRole)) return handler(call, callback);
      callback(toServiceError(denials.denied(principal, name, 'the cluster', `an admin operation: needs the ${adminRole} role`)) as grpc.ServiceError);
    }) as grpc.handleUnaryCall<any, any>;
  }
  return guarded;
}
