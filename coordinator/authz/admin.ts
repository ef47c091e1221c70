// Who may run operations on the whole cluster, and see every tenant's files: holders of the admin
// role (`--admin-role`, default strata-admin) when auth is on; everyone when it is off (a local
// cluster, as before). One test, AdminPolicy.holds, for every admin check: the namespace gate
// (gate.ts), the admin methods below (checked once, at the service edge, after authentication),
// and any later service with admin operations of its own.
import type * as grpc from '@grpc/grpc-js';
import type { Principal } from '../../common/auth-principal.js';
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
  // Quotas bound tenants: setting or removing one is the admin's (a tenant's caller reads its own
  // with QuotaGet, QuotaList and StatFs, inside its root: quota-service.ts).
  'QuotaSet', 'QuotaRemove',
  // Keys: a master key rotation's re-wrap of a node's chunks, a new chunk grant signing key.
  'RewrapMasterKeys', 'RotateGrantKeys',
]);

export class AdminPolicy {
  constructor(
    /** The token role that makes its holder an admin. */
    readonly role: string,
    private readonly denials: Denials,
  ) {}

  /** True for an admin: anonymous (auth off) or a holder of the admin role. */
  holds(principal: Principal): boolean {
    return principal.anonymous || principal.roles.includes(this.role);
  }

  /** Refuses `op` on `target` (PermissionDenied, logged with who and the rule) unless `principal` is an admin. */
  require(principal: Principal, op: string, target = 'the cluster'): void {
    if (!this.holds(principal)) throw this.denials.denied(principal, op, target, `an admin operation: needs the ${this.role} role`);
  }
}

/* eslint-disable @typescript-eslint/no-explicit-any -- handlers are the service's untyped ones */
export function requireAdminRole(service: grpc.UntypedServiceImplementation, admin: AdminPolicy): grpc.UntypedServiceImplementation {
  const guarded: grpc.UntypedServiceImplementation = { ...service };
  for (const name of ADMIN_METHODS) {
    const handler = service[name] as grpc.handleUnaryCall<any, any> | undefined;
    if (!handler) continue;
    guarded[name] = ((call, callback) => {
      try {
        admin.require(principalOfCall(call), name);
      } catch (err) {
        callback(toServiceError(err) as grpc.ServiceError);
        return;
      }
      return handler(call, callback);
    }) as grpc.handleUnaryCall<any, any>;
  }
  return guarded;
}
