// A development CA and certificates for a cluster (`strata certs init DIR`): ECDSA P-256 keys,
// node certificates for coordinators and data nodes (subject OU=strata-node, server and client
// auth) and an optional client certificate (OU=strata-client), each with the SANs localhost,
// 127.0.0.1, ::1 and the names given. Private keys are written 0600. An existing CA in DIR is
// reused, so nodes can be added later; existing certificates are kept unless `force`.
//
// Why @peculiar/x509: Node makes keys but not X.509 certificates; the openssl CLI is not on a
// fresh machine. @peculiar/x509 is typed, maintained, and signs with Node's own WebCrypto (EC keys,
// so handshakes stay cheap); node-forge would mean RSA keys signed in pure JavaScript.
import { webcrypto } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { invalid } from './errors.js';
import { CLIENT_OU, NODE_OU } from './tls.js';

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const CA_YEARS = 10;
const LEAF_YEARS = 2;
const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export interface DevCertRequest {
  /** Node certificates to make: coordinator, dn1, ... (file names DIR/<name>.crt and .key). */
  nodes: string[];
  /** Client certificates to make (OU=strata-client). */
  clients?: string[];
  /** Extra SANs on every certificate: host names or IP addresses. */
  hosts?: string[];
  /** Remake certificates that exist (the CA is always kept). */
  force?: boolean;
}

export interface DevCertFiles {
  ca: string;
  /** name -> its certificate and key files. */
  certs: Record<string, { cert: string; key: string; made: boolean }>;
}

/** The files a name's certificate lives in. */
export function devCertPaths(dir: string, name: string): { cert: string; key: string } {
  return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
}

export async function initDevCerts(dir: string, request: DevCertRequest): Promise<DevCertFiles> {
  for (const name of [...request.nodes, ...(request.clients ?? [])]) {
    if (!NAME.test(name) || name === 'ca') throw invalid(`certs: invalid certificate name '${name}': use 1..64 of A-Z a-z 0-9 _ . - (not 'ca')`);
  }
  for (const host of request.hosts ?? []) {
    if (!net.isIP(host) && !/^[A-Za-z0-9*]([A-Za-z0-9-.]{0,252})$/.test(host)) throw invalid(`certs: invalid host name '${host}'`);
  }
  // Loaded only here: the library needs the reflect-metadata polyfill, which nothing else should pay for.
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as unknown as Crypto);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = await loadOrMakeCa(x509, dir);
  const certs: DevCertFiles['certs'] = {};
  const sans = [
    { type: 'dns' as const, value: 'localhost' },
    { type: 'ip' as const, value: '127.0.0.1' },
    { type: 'ip' as const, value: '::1' },
    ...(request.hosts ?? []).map((host) => ({ type: net.isIP(host) ? ('ip' as const) : ('dns' as const), value: host })),
  ];
  const make = async (name: string, ou: string, usages: string[]) => {
    const files = devCertPaths(dir, name);
    if (!request.force && (await exists(files.cert)) && (await exists(files.key))) return (certs[name] = { ...files, made: false });
    const keys = (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${name}, OU=${ou}, O=strata`,
      issuer: ca.cert.subject,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: yearsFromNow(LEAF_YEARS),
      publicKey: keys.publicKey,
      signingKey: ca.key,
      signingAlgorithm: KEY_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension(usages),
        new x509.SubjectAlternativeNameExtension(sans),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
      ],
    });
    await writeKey(files.key, keys.privateKey);
    await writeFile(files.cert, cert.toString('pem') + '\n');
    certs[name] = { ...files, made: true };
  };
  for (const name of request.nodes) await make(name, NODE_OU, [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
  for (const name of request.clients ?? []) await make(name, CLIENT_OU, [x509.ExtendedKeyUsage.clientAuth]);
  return { ca: ca.file, certs };
}

type X509Module = typeof import('@peculiar/x509');

async function loadOrMakeCa(x509: X509Module, dir: string): Promise<{ cert: InstanceType<X509Module['X509Certificate']>; key: CryptoKey; file: string }> {
  const { cert: certFile, key: keyFile } = devCertPaths(dir, 'ca');
  if (await exists(certFile)) {
    const cert = new x509.X509Certificate(await readFile(certFile, 'utf8'));
    const pem = await readFile(keyFile, 'utf8').catch(() => {
      throw invalid(`certs: ${certFile} exists but its key ${keyFile} does not: remove both to make a new CA`);
    });
    const der = x509.PemConverter.decodeFirst(pem);
    const key = await webcrypto.subtle.importKey('pkcs8', der, KEY_ALGORITHM, false, ['sign']);
    return { cert, key, file: certFile };
  }
  const keys = (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=strata dev CA, O=strata`,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: yearsFromNow(CA_YEARS),
    keys,
    signingAlgorithm: KEY_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  await writeKey(keyFile, keys.privateKey);
  await writeFile(certFile, cert.toString('pem') + '\n');
  return { cert, key: keys.privateKey, file: certFile };
}

async function writeKey(file: string, key: CryptoKey): Promise<void> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  const pem = `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
  await writeFile(file, pem, { mode: 0o600 });
  await chmod(file, 0o600); // an existing file keeps its mode through writeFile
}

/** A positive random 16-byte serial (the top bit clear keeps it positive in DER). */
function serial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f;
  return Buffer.from(bytes).toString('hex');
}

function yearsFromNow(years: number): Date {
  const date = new Date();
  date.setFullYear(date.getFullYear() + years);
  return date;
}

async function exists(file: string): Promise<boolean> {
  return readFile(file).then(
    () => true,
    () => false,
  );
}
