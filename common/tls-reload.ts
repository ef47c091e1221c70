// Certificate reload without a restart (SIGHUP to a coordinator or data node): the same
// --tls-ca/--tls-cert/--tls-key files are read again and, if they pass the start-up checks, serve
// every new handshake and dial every new connection; a bad file is refused with one line and the
// certificates in use keep serving. One log line either way, never key material.
import type { Logger } from './log.js';
import type { TlsContext } from './tls.js';

/** Reloads `tls` and logs what happened; true if the new files are in use. */
export function reloadCertificates(tls: TlsContext | undefined, log: Logger): boolean {
  if (!tls) {
    log.warn('SIGHUP: TLS is off (no --tls-* flags), no certificates to reload');
    return false;
  }
  try {
    const { changed, serial, validTo, caCertificates } = tls.reload();
    log.info({ serial, validTo, caCertificates }, changed ? 'TLS: certificates reloaded; new connections use them' : 'TLS: certificates reloaded (the files are unchanged)');
    return true;
  } catch (err) {
    log.error(`TLS: reload refused, still serving the previous certificates: ${(err as Error).message.replace(/^TLS: /, '')}`);
    return false;
  }
}
