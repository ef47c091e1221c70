// Certificate reload without a restart: on SIGHUP to a coordinator or data node, and with
// --tls-watch also when the files change on disk, the same --tls-ca/--tls-cert/--tls-key files
// are read again and, if they pass the start-up checks, serve every new handshake and dial every
// new connection; a bad file is refused with one line and the certificates in use keep serving.
// One log line per reload, never key material.
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { Logger } from './log.js';
import type { TlsContext } from './tls.js';

/** Quiet time after the last change before the files are read: a renewal writes several. */
const WATCH_DEBOUNCE_MS = 500;

/**
 * Reloads `tls` and logs what happened; true if the new files are in use. `quietIfUnchanged`:
 * no line when the files are the same (the watcher sees changes next to them too).
 */
export function reloadCertificates(tls: TlsContext | undefined, log: Logger, options: { quietIfUnchanged?: boolean } = {}): boolean {
  if (!tls) {
    log.warn('SIGHUP: TLS is off (no --tls-* flags), no certificates to reload');
    return false;
  }
  try {
    const { changed, serial, validTo, caCertificates } = tls.reload();
    if (changed || !options.quietIfUnchanged) {
      log.info({ serial, validTo, caCertificates }, changed ? 'TLS: certificates reloaded; new connections use them' : 'TLS: certificates reloaded (the files are unchanged)');
    }
    return true;
  } catch (err) {
    log.error(`TLS: reload refused, still serving the previous certificates: ${(err as Error).message.replace(/^TLS: /, '')}`);
    return false;
  }
}

/**
 * Reloads `tls` a moment after its files change. The directories are watched, not the files:
 * a renewal that renames a new file over the old (or a Kubernetes secret volume swapping its
 * `..data` link) replaces the inode a file watch would follow.
 */
export function watchCertificates(tls: TlsContext, log: Logger): { close(): void } {
  const files = [tls.files.ca, tls.files.cert, tls.files.key].filter((file): file is string => !!file).map((file) => path.resolve(file));
  const names = new Set(files.map((file) => path.basename(file)));
  let timer: NodeJS.Timeout | undefined;
  const changed = (name: string | null) => {
    if (name !== null && !names.has(name) && !name.startsWith('..')) return;
    clearTimeout(timer);
    timer = setTimeout(() => reloadCertificates(tls, log, { quietIfUnchanged: true }), WATCH_DEBOUNCE_MS).unref();
  };
  const watchers: FSWatcher[] = [];
  for (const dir of new Set(files.map((file) => path.dirname(file)))) {
    try {
      const watcher = watch(dir, { persistent: false }, (_event, name) => changed(name === null ? null : String(name)));
      watcher.on('error', (err) => log.warn({ dir, err: err.message }, 'TLS: cannot watch the certificate directory any more; SIGHUP still reloads'));
      watchers.push(watcher);
    } catch (err) {
      log.warn({ dir, err: (err as Error).message }, 'TLS: cannot watch the certificate directory; SIGHUP still reloads');
    }
  }
  return {
    close() {
      clearTimeout(timer);
      for (const watcher of watchers) watcher.close();
    },
  };
}
