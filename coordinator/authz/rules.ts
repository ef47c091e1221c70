// Per-path access rules (`--authz-rules FILE`): which roles may read, write or administer which
// subtrees, on top of the tenant boundary and the mode bits. A JSON file, validated once at
// start-up (a bad file is one line and exit 2):
//
//   { "default": "read-write",
//     "rules": [ { "role": "auditor", "path": "/", "access": "read-only" },
//                { "role": "analyst", "path": "/scratch", "access": "read-write", "tenant": "acme" } ] }
//
// Paths are as the caller sees them (inside a tenant: from its root). At an entry, the rules of
// the caller's roles on its nearest ancestor that has any decide (the most permissive of them);
// with none on the way up, `default`. Levels: none < read-only < read-write < admin (today the
// same as read-write for every namespace operation; the level path-scoped admin operations
// such as a subtree's quota or tier policy are to need). Holders of the admin role are not bound by rules.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { Principal } from '../../common/auth-principal.js';
import { StrataError, invalid } from '../../common/errors.js';
import { splitPath } from '../../common/paths.js';
import { isTenantName } from '../../common/tenants.js';

export const LEVELS = ['none', 'read-only', 'read-write', 'admin'] as const;
export type Level = (typeof LEVELS)[number];
export const rank = (level: Level) => LEVELS.indexOf(level);

const absolutePath = z.string().transform((path, ctx) => {
  try {
    return splitPath(path);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const ruleSchema = z.strictObject({
  role: z.string().min(1).max(256),
  path: absolutePath,
  access: z.enum(LEVELS),
  tenant: z.string().refine(isTenantName, 'not a tenant name (letters, digits, . _ -)').optional(),
});

export const rulesFileSchema = z.strictObject({
  default: z.enum(LEVELS).default('read-write'),
  rules: z.array(ruleSchema).max(10_000),
});

export interface Rule {
  role: string;
  /** Path components under the caller's root. */
  path: string[];
  access: Level;
  tenant?: string;
}

/** The rules that bind one principal. */
export interface PrincipalRules {
  readonly default: Level;
  /** Applicable rules; empty = `default` everywhere. */
  readonly rules: readonly Rule[];
  /** The most restrictive level any of them (or the default) gives: for an entry whose ancestry is unknown. */
  readonly weakest: Level;
}

export class RuleSet {
  private constructor(
    readonly defaultLevel: Level,
    readonly rules: readonly Rule[],
  ) {}

  static parse(value: unknown, source: string): RuleSet {
    const result = rulesFileSchema.safeParse(value);
    if (!result.success) {
      const issue = result.error.issues[0];
      throw invalid(`invalid authz rules ${source}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    }
    return new RuleSet(result.data.default, result.data.rules);
  }

  static load(file: string): RuleSet {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new StrataError('Invalid', `cannot read authz rules ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw invalid(`authz rules ${file} are not JSON: ${(err as Error).message}`);
    }
    return RuleSet.parse(parsed, file);
  }

  /** The rules of `principal`'s roles (and tenant). */
  forPrincipal(principal: Principal): PrincipalRules {
    const rules = this.rules.filter((r) => principal.roles.includes(r.role) && (r.tenant === undefined || r.tenant === principal.tenant));
    const weakest = [this.defaultLevel, ...rules.map((r) => r.access)].reduce((a, b) => (rank(b) < rank(a) ? b : a));
    return { default: this.defaultLevel, rules, weakest };
  }
}
