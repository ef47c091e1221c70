// Progress bars for long transfers, on a terminal only (never when piped or with --json).
import cliProgress from 'cli-progress';
import { formatBytes } from '../common/units.js';

export interface Progress {
  update(bytes: number): void;
  stop(): void;
}

const SILENT: Progress = { update: () => undefined, stop: () => undefined };

export function createProgress(label: string, totalBytes: number | undefined, enabled: boolean): Progress {
  if (!enabled || !process.stderr.isTTY) return SILENT;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: totalBytes
        ? `${label} [{bar}] {percentage}% {done}/{all} {rate}/s eta {eta_formatted}`
        : `${label} {done} {rate}/s`,
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  const startedMs = Date.now();
  const all = formatBytes(totalBytes ?? 0);
  bar.start(totalBytes ?? 1, 0, { done: formatBytes(0), all, rate: formatBytes(0) });
  return {
    update(bytes) {
      const seconds = Math.max((Date.now() - startedMs) / 1000, 0.001);
      bar.update(totalBytes ? bytes : 0, { done: formatBytes(bytes), all, rate: formatBytes(bytes / seconds) });
    },
    stop() {
      bar.stop();
    },
  };
}
