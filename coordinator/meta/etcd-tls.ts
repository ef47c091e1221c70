// TLS from a coordinator to etcd (--etcd-ca, --etcd-cert, --etcd-key): read and checked once at
// start-up, so a missing file, a key that is not the certificate's or an expired certificate is
// one line (exit 2), not an etcd connection that keeps failing. etcd's own CA may differ from the
// cluster's (--tls-ca), so the client certificate is not required to be signed by --etcd-ca.
import { createPrivateKey } from 'node:crypto';
import { invalid } from '../../common/errors.js';
import { parseCert, pemBlocks, readPem } from '../../common/tls.js';

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
  const rootCertificate = readPem(etcdCa, '--etcd-ca');
  const cas = pemBlocks(rootCertificate).map((block) => parseCert(Buffer.from(block), etcdCa, '--etcd-ca'));
  if (cas.length === 0) throw invalid(`etcd TLS: --etcd-ca ${etcdCa} holds no PEM certificate`);
  if (!cas.every((ca) => ca.ca)) throw invalid(`etcd TLS: --etcd-ca ${etcdCa} is not a CA certificate`);
  if (!etcdCert || !etcdKey) return { rootCertificate };
  const certChain = readPem(etcdCert, '--etcd-cert');
  const privateKey = readPem(etcdKey, '--etcd-key');
  const cert = parseCert(certChain, etcdCert, '--etcd-cert');
  let key;
  try {
    key = createPrivateKey(privateKey);
  } catch (err) {
    throw invalid(`etcd TLS: --etcd-key ${etcdKey} is not a PEM private key (${(err as Error).message})`);
  }
  if (!cert.checkPrivateKey(key)) throw invalid(`etcd TLS: --etcd-key ${etcdKey} does not belong to --etcd-cert ${etcdCert}`);
  if (Date.parse(cert.validTo) < Date.now()) throw invalid(`etcd TLS: --etcd-cert ${etcdCert} expired on ${cert.validTo}`);
  return { rootCertificate, certChain, privateKey };
}
