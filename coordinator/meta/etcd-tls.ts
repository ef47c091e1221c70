// TLS from a coordinator to etcd (--etcd-ca, --etcd-cert, --etcd-key): read and checked once at
// start-up, so a missing file, a key that is not the certificate's or an expired certificate is
// one line (exit 2), not an etcd connection that keeps failing. etcd's own CA may differ from the
// cluster's (--tls-ca), so the client certificate is not required to be signed by --etcd-ca.
// When etcd cannot be reached at start, one TLS handshake with each host tells a TLS mismatch
// (etcd serves TLS but no --etcd-ca was given, wants a client certificate, has another CA, or
// serves plain text) from an etcd that is down, so the error line can name the flags to give.
import net from 'node:net';
import tls from 'node:tls';
import { StrataError, invalid } from '../../common/errors.js';
import { muteIpServernameWarning, readCaBundle, readKeyPair } from '../../common/tls.js';

/** What etcd3 takes (its IOptions.credentials). */
export interface EtcdCredentials {
  rootCertificate: Buffer;
  certChain?: Buffer;
  privateKey?: Buffer;
}

export interface EtcdTlsFiles {
  etcdCa?: string;
  etcdCert?: string;
  etcdKey?: string;
}

/** How long the start-up diagnosis waits for one etcd host's handshake (or its refusal). */
const PROBE_TIMEOUT_MS = 3000;

/** etcd TLS credentials from the config, or undefined when no --etcd-* flag is set. */
export function etcdCredentials(files: EtcdTlsFiles): EtcdCredentials | undefined {
  const { etcdCa, etcdCert, etcdKey } = files;
  if (!etcdCa && !etcdCert && !etcdKey) return undefined;
  if (!etcdCa) throw invalid('etcd TLS: --etcd-cert/--etcd-key need --etcd-ca (the CA that signed etcd\'s certificate)');
  if (!etcdCert !== !etcdKey) throw invalid('etcd TLS: --etcd-cert and --etcd-key go together');
  // etcd3's gRPC puts an IP host in SNI; Node's deprecation warning about that is noise here.
  muteIpServernameWarning();
  const { pem: rootCertificate } = readCaBundle(etcdCa, '--etcd-ca', 'etcd TLS');
  if (!etcdCert || !etcdKey) return { rootCertificate };
  const { cert: certChain, key: privateKey } = readKeyPair({ cert: etcdCert, key: etcdKey }, { cert: '--etcd-cert', key: '--etcd-key' }, 'etcd TLS');
  return { rootCertificate, certChain, privateKey };
}

type ProbeResult = 'plain' | 'tls' | 'needs-client-cert' | 'client-cert-refused' | 'untrusted' | 'ok' | 'unreachable';

/**
 * `err` (etcd unreachable at start-up) in one line that says what to do when the cause is a TLS
 * mismatch with `hosts` (host:port); any other error, or an etcd that is simply down, unchanged.
 */
export async function explainEtcdFailure(err: unknown, hosts: readonly string[], credentials: EtcdCredentials | undefined, files: EtcdTlsFiles): Promise<unknown> {
  if (!(err instanceof StrataError) || err.kind !== 'Unavailable') return err;
  const results = await Promise.all(hosts.map((host) => probeEtcdTls(host, credentials)));
  const at = results.findIndex((result) => result !== 'unreachable' && result !== 'ok');
  if (at < 0) return err;
  const host = hosts[at];
  const why: Record<Exclude<ProbeResult, 'unreachable' | 'ok'>, string> = {
    tls: `it serves TLS and no --etcd-ca was given: start the coordinator with --etcd-ca FILE (the CA that signed etcd's certificate), plus --etcd-cert FILE --etcd-key FILE if etcd requires client certificates (--client-cert-auth)`,
    'needs-client-cert': `it requires a client certificate: give --etcd-cert FILE --etcd-key FILE (a certificate signed by a CA in etcd's --trusted-ca-file)`,
    'client-cert-refused': `it refused --etcd-cert ${files.etcdCert}: give a client certificate signed by a CA in etcd's --trusted-ca-file`,
    untrusted: `its certificate is not signed by --etcd-ca ${files.etcdCa}: give the CA that signed etcd's certificate`,
    plain: `it does not serve TLS: drop --etcd-ca/--etcd-cert/--etcd-key, or use etcd's TLS port`,
  };
  return new StrataError('Unavailable', `cannot reach etcd at ${host}: ${why[results[at] as keyof typeof why]}`, { cause: err });
}

/** One TLS handshake with `host` (host:port) the way the coordinator dialled it, classified. */
function probeEtcdTls(host: string, credentials: EtcdCredentials | undefined): Promise<ProbeResult> {
  const at = host.lastIndexOf(':');
  const name = host.slice(0, at).replace(/^\[|\]$/g, '');
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: name,
      port: Number(host.slice(at + 1)),
      ca: credentials?.rootCertificate,
      cert: credentials?.certChain,
      key: credentials?.privateKey,
      rejectUnauthorized: false, // judged below, to tell an untrusted certificate from the rest
      ALPNProtocols: ['h2'],
      servername: net.isIP(name) ? undefined : name,
    });
    let handshaken = false;
    const done = (result: ProbeResult) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done(handshaken ? 'ok' : 'unreachable'), PROBE_TIMEOUT_MS);
    socket.once('secureConnect', () => {
      handshaken = true;
      if (!credentials) return done('tls');
      if (!socket.authorized) return done('untrusted');
      // TLS 1.3: a server that refuses our client certificate (or its absence) says so after
      // the handshake; an error, a close or the timer decides.
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      const message = error.message;
      // etcd (Go) answers a missing or untrusted client certificate with 'bad certificate' (42);
      // OpenSSL-style servers with 'certificate required' (116) or a handshake failure (40).
      if (/certificate required|alert number 116|bad certificate|alert number 42|handshake failure|alert number 40|unknown ca|alert number 48/i.test(message)) {
        return done(credentials?.certChain ? 'client-cert-refused' : 'needs-client-cert');
      }
      if (handshaken) return done('ok');
      if (error.code === 'ECONNREFUSED' || error.code === 'EHOSTUNREACH' || error.code === 'ENOTFOUND') return done('unreachable');
      if (/wrong version number|packet length too long|unknown protocol|before secure TLS connection was established|ECONNRESET/i.test(message)) return done('plain');
      done('unreachable');
    });
    socket.once('close', () => done(handshaken ? 'ok' : 'unreachable'));
  });
}
