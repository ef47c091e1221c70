// Every refusal of an authenticated caller: one error (PermissionDenied, or NotFound where saying
// "denied" would tell that another tenant's entry exists) and one log line saying who, what and
// which rule. Never a token: the principal's subject, tenant and client only. Bounded, so a caller
// hammering a denied path cannot flood the log: past the bound, a count says how many went unlogged.
import type { Principal } from '../../common/auth-principal.js';
import { StrataError, notFound } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';

const WINDOW_MS = 10_000;
const LINES_PER_WINDOW = 100;

export class Denials {
  private windowStart = 0;
  private logged = 0;
  private suppressed = 0;

  constructor(private readonly log: Logger) {}

  /** PermissionDenied for `op` on `target`, logged with the rule that refused it. */
  denied(principal: Principal, op: string, target: string, rule: string): StrataError {
    this.note(principal, op, target, rule);
    return new StrataError('PermissionDenied', `permission denied: ${op} ${target}: ${rule}`);
  }

  /** NotFound, exactly as for an entry that does not exist (another tenant's, or outside the caller's root). */
  hidden(principal: Principal, op: string, target: string, rule: string): StrataError {
    this.note(principal, op, target, rule);
    return notFound(target);
  }

  private note(principal: Principal, op: string, target: string, rule: string): void {
    const now = Date.now();
    if (now - this.windowStart >= WINDOW_MS) {
      if (this.suppressed > 0) this.log.warn({ suppressed: this.suppressed }, 'authz: more denials in the last window were not logged');
      this.windowStart = now;
      this.logged = 0;
      this.suppressed = 0;
    }
    if (this.logged >= LINES_PER_WINDOW) {
      this.suppressed++;
      return;
    }
    this.logged++;
    this.log.warn({ subject: principal.subject, tenant: principal.tenant, client: principal.clientId, uid: principal.uid, op, target, rule }, 'authz: denied');
  }
}
