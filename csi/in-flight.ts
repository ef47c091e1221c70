// One call at a time per volume (or target path): the spec's "operation pending for volume" is
// ABORTED, which the taxonomy's Conflict maps to; the CO retries with back-off.
import { StrataError } from '../common/errors.js';

export class InFlight {
  private readonly keys = new Set<string>();

  async run<T>(key: string, what: string, fn: () => Promise<T>): Promise<T> {
    if (this.keys.has(key)) throw new StrataError('Conflict', `an operation on ${what} is already in progress; retry`);
    this.keys.add(key);
    try {
      return await fn();
    } finally {
      this.keys.delete(key);
    }
  }
}
