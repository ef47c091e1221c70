// TLS from a coordinator to etcd (--etcd-ca, --etcd-cert, --etcd-key): read and checked once at
// start-up, so a missing file, a key that is not the certificate's or an expired certificate is
// one line (exit 2), not an etcd connection that keeps failing. etcd's own CA may differ from the
// cluster's (--tls-ca), so the client certificate is not required to be signed by --etcd-ca.
import { invalid } from '../../common/errors.js';
import { readCaBundle, readKeyPair } from '../../common/tls.js';

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

/** etcd TLS credentials from the config, or undefined when no --etcd-* flag is set. */
export function etcdCredentials(files: EtcdTlsFiles): EtcdCredentials | undefined {
  const { etcdCa, etcdCert, etcdKey } = files;
  if (!etcdCa && !etcdCert && !etcdKey) return undefined;
  if (!etcdCa) throw invalid('etcd TLS: --etcd-cert/--etcd-key need --etcd-ca (the CA that signed etcd\'s certificate)');
  if (!etcdCert !== !etcdKey) throw invalid('etcd TLS: --etcd-cert and --etcd-key go together');
  const { pem: rootCertificate } = readCaBundle(etcdCa, '--etcd-ca', 'etcd TLS');
  if (!etcdCert || !etcdKey) return { rootCertificate };
  const { cert: certChain, key: privateKey } = readKeyPair({ cert: etcdCert, key: etcdKey }, { cert: '--etcd-cert', key: '--etcd-key' }, 'etcd TLS');
  return { rootCertificate, certChain, privateKey };
}
