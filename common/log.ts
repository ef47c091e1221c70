// Structured logs to stderr (pino: fast, JSON by default, levels from config). One logger per role.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(role: string, level: string = 'info'): Logger {
  return pino({ name: role, level, base: { role, pid: process.pid } }, pino.destination(2));
}
