// The CLI's promise for a user mistake, as tests check it: one line on stderr starting
// "strata: ", the error kind's exit code, nothing on stdout, no stack trace, no secret.
import { expect } from 'vitest';
import type { CliResult } from './cluster.js';

export function expectOneLineError(result: CliResult, code: number, pattern: RegExp, secrets: string[] = []): void {
  expect(result.code, result.stderr).toBe(code);
  expect(result.stdout).toBe('');
  const lines = result.stderr.trimEnd().split('\n');
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^strata: /);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/\n\s+at /);
  for (const secret of secrets) expect(result.stderr).not.toContain(secret);
}
