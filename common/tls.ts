// TLS for every port, built in this one place from one config (--tls-ca, --tls-cert, --tls-key,
// --tls-require-client-cert): gRPC server and channel credentials, and node:tls sockets for the
// raw TCP paths (the session listener, the byte path). Off unless configured.
//
// Who may do what: a peer whose certificate the CA signed and whose subject carries
// OU=strata-node (what `strata certs init` gives coordinators and data nodes) is a cluster node.
// Client certificates are optional (unless --tls-require-client-cert); the calls only nodes make
// (heartbeats, NodeLink, lease peering, chunk deletes, repair copies...) are refused to anyone
// else, so a data node without a valid certificate cannot join or order its peers around.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { StrataError, invalid } from './errors.js';

/** Subject OU of coordinator and data node certificates. */
export const NODE_OU = 'strata-node';
/** Subject OU of the optional client certificates `strata certs init` makes. */
export const CLIENT_OU = 'strata-client';

/** Paths of the PEM files. */
export interface TlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
}

/** The flat config keys every role shares (common/config.ts). */
export interface TlsConfigKeys {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsRequireClientCert?: boolean;
  /** Reload the files when they change on disk (common/tls-reload.ts), not only on SIGHUP. */
  tlsWatch?: boolean;
}

export const NOT_SIGNED_BY_CA = 'TLS: server certificate not signed by the configured CA (--tls-ca)';

/**
 * Transport failure messages (grpc-js, node:tls) and what the user should do, one line each.
 * Ordered: the first that matches says it.
 */
export const TLS_FAILURE_REASONS: [RegExp, string][] = [
  [/unable to verify|self[- ]signed certificate|UNABLE_TO_GET_ISSUER|unable to get (local )?issuer|certificate signature failure|SELF_SIGNED|UNABLE_TO_VERIFY/i, NOT_SIGNED_BY_CA],
  [/ERR_TLS_CERT_ALTNAME_INVALID|Hostname\/IP does not match|does not match certificate's altnames/i, 'TLS: server certificate does not name this host (make it with `strata certs init --name HOST`)'],
  [/certificate has expired|CERT_HAS_EXPIRED/i, 'TLS: a certificate has expired (make new ones with `strata certs init`)'],
  [/certificate required|alert number 116|peer did not return a certificate/i, 'TLS: the server requires a client certificate (--tls-cert and --tls-key)'],
  [/bad certificate|alert number 42|unknown ca|alert number 48/i, 'TLS: the server refused this client certificate (not signed by its CA)'],
  [/wrong version number|packet length too long|unknown protocol|before secure TLS connection was established|ERR_SSL_HTTP_REQUEST|http request/i, 'TLS: the other end does not speak TLS (drop --tls-ca, or use its TLS port)'],
];

/** The one-line TLS reason for a transport failure message, if it is one. */
export function tlsFailureReason(message: string): string | undefined {
  return TLS_FAILURE_REASONS.find(([pattern]) => pattern.test(message))?.[1];
}

/** What a TlsContext serves and dials with now: replaced whole by `reload`. */
interface TlsMaterial {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** The parsed --tls-cert, for the reload log line (serial, expiry). */
  own?: X509Certificate;
  caCount: number;
}

/** What a successful `reload` put in place (for its one log line: never key material). */
export interface TlsReloadSummary {
  changed: boolean;
  serial?: string;
  validTo?: string;
  caCertificates: number;
}

export class TlsContext {
  private material: TlsMaterial;
  private channelCreds: grpc.ChannelCredentials | undefined;
  /** Feeds the material to grpc-js (servers and channels), now and on each reload. */
  private readonly provider = new ReloadableCertificates();
  /** The raw TCP listeners (session port, byte path): their secure context is swapped on reload. */
  private readonly rawServers = new Set<tls.Server>();

  private constructor(
    /** The PEM files read at start and on each reload. */
    readonly files: Readonly<TlsFiles>,
    private readonly role: 'server' | 'client',
    readonly requireClientCert: boolean,
  ) {
    this.material = TlsContext.read(files, role);
    this.provider.set(this.material);
  }

  /**
   * A coordinator's or data node's TLS: none when no tls key is set; otherwise the CA, its own
   * node certificate and key are all required and checked now (one clear line per mistake).
   */
  static forServer(config: TlsConfigKeys): TlsContext | undefined {
    if (!config.tlsCa && !config.tlsCert && !config.tlsKey && !config.tlsRequireClientCert) {
      if (config.tlsWatch) throw invalid('TLS: --tls-watch reloads the --tls-ca, --tls-cert and --tls-key files: give them too');
      return undefined;
    }
    for (const [key, flag] of [['tlsCa', '--tls-ca'], ['tlsCert', '--tls-cert'], ['tlsKey', '--tls-key']] as const) {
      if (!config[key]) throw invalid(`TLS: ${flag} is required with TLS on (a node serves and dials with the CA, its certificate and key; make them with \`strata certs init DIR\`)`);
    }
    return new TlsContext({ ca: config.tlsCa, cert: config.tlsCert, key: config.tlsKey }, 'server', config.tlsRequireClientCert ?? false);
  }

  /** A client's TLS (CLI, SDK, mount): none without a CA; a client certificate is optional. */
  static forClient(files: TlsFiles): TlsContext | undefined {
    if (!files.ca) {
      if (files.cert || files.key) throw invalid('TLS: --tls-cert/--tls-key need --tls-ca (the CA that signed the servers)');
      return undefined;
    }
    if (!files.cert !== !files.key) throw invalid('TLS: --tls-cert and --tls-key go together');
    return new TlsContext(files, 'client', false);
  }

  /** Reads and checks every file; throws one Invalid line on the first mistake. */
  private static read(files: TlsFiles, role: 'server' | 'client'): TlsMaterial {
    const flags = { ca: '--tls-ca', cert: '--tls-cert', key: '--tls-key' };
    const { pem: ca, certs: caCerts } = readCaBundle(files.ca!, flags.ca, 'TLS');
    if (!files.cert || !files.key) return { ca, caCount: caCerts.length };
    const { cert, key, own } = readKeyPair({ cert: files.cert, key: files.key }, flags, 'TLS');
    if (!caCerts.some((caCert) => own.verify(caCert.publicKey))) throw invalid(`TLS: --tls-cert ${files.cert} is not signed by the --tls-ca CA ${files.ca}`);
    if (role === 'server' && !ouOf(own.subject).includes(NODE_OU)) {
      throw invalid(`TLS: ${files.cert} is not a node certificate (its subject needs OU=${NODE_OU}; \`strata certs init\` makes them)`);
    }
    return { ca, cert, key, own, caCount: caCerts.length };
  }

  get ca(): Buffer {
    return this.material.ca;
  }

  get cert(): Buffer | undefined {
    return this.material.cert;
  }

  get key(): Buffer | undefined {
    return this.material.key;
  }

  /**
   * Reads the same files again (renewed certificate, key or CA) and, if every check passes, serves
   * and dials with them from now on: gRPC and raw TCP listeners take them for new handshakes, new
   * connections present and verify with them; open connections keep going. A bad file throws one
   * Invalid line and changes nothing (the old certificates keep serving).
   */
  reload(): TlsReloadSummary {
    const next = TlsContext.read(this.files, this.role);
    const previous = this.material;
    const same = (a: Buffer | undefined, b: Buffer | undefined) => (a && b ? a.equals(b) : a === b);
    const changed = !(same(next.ca, previous.ca) && same(next.cert, previous.cert) && same(next.key, previous.key));
    // What node:tls cannot use is refused here, before anything changed: grpc-js would otherwise
    // mark its server's credentials invalid and drop every new connection.
    const context = { ca: next.ca, cert: next.cert, key: next.key };
    try {
      tls.createSecureContext(context);
    } catch (err) {
      throw invalid(`TLS: node:tls cannot use the new certificate files (${(err as Error).message})`);
    }
    for (const server of this.rawServers) server.setSecureContext(context);
    this.material = next;
    this.provider.set(next);
    return { changed, serial: next.own?.serialNumber, validTo: next.own?.validTo, caCertificates: next.caCount };
  }

  /** Credentials of every gRPC channel this process opens: verify the server, present ours if any. */
  channelCredentials(): grpc.ChannelCredentials {
    muteIpServernameWarning();
    // Read at each new connection, so channels made before a reload dial with the new files.
    return (this.channelCreds ??= grpc.experimental.createCertificateProviderChannelCredentials(this.provider, this.material.cert ? this.provider : null));
  }

  /**
   * Server credentials: client certificates asked for (required with --tls-require-client-cert),
   * and the methods in `nodeOnly` (full paths, /strata.v1.Service/Method) refused to any peer
   * that is not a cluster node. The certificates come from the provider, so a reload reaches it.
   */
  serverCredentials(nodeOnly: ReadonlySet<string>): grpc.ServerCredentials {
    if (!this.material.cert || !this.material.key) throw new StrataError('Internal', 'TLS: a server needs its certificate and key');
    // grpc-js names this function's first two parameters (ca, identity) but uses them as
    // (identity, ca); one provider serves both, so the order cannot go wrong.
    const secure = grpc.experimental.createCertificateProviderServerCredentials(this.provider, this.provider, this.requireClientCert);
    return grpc.experimental.createServerCredentialsWithInterceptors(secure, [nodeOnlyInterceptor(nodeOnly)]);
  }

  /** A TLS socket to host:port (for raw TCP paths); it is usable once 'secureConnect' fired. */
  connect(host: string, port: number, options: { noDelay?: boolean } = {}): tls.TLSSocket {
    const { ca, cert, key } = this.material;
    const socket = tls.connect({
      host,
      port,
      ca,
      cert,
      key,
      // RFC 6066: no IP addresses in SNI; the certificate's IP SANs are still checked.
      servername: net.isIP(host) ? undefined : host,
    });
    if (options.noDelay) socket.setNoDelay(true);
    return socket;
  }

  /** A TLS listener for raw TCP paths: `onSocket` gets each connection once its handshake is done. */
  createServer(options: net.ServerOpts, onSocket: (socket: tls.TLSSocket) => void): tls.Server {
    const { ca, cert, key } = this.material;
    if (!cert || !key) throw new StrataError('Internal', 'TLS: a server needs its certificate and key');
    const server = tls.createServer({ ...options, ca, cert, key, requestCert: true, rejectUnauthorized: this.requireClientCert }, onSocket);
    // A failed handshake (a plain-text client, a wrong certificate) closes only that socket.
    server.on('tlsClientError', () => undefined);
    this.rawServers.add(server);
    server.once('close', () => this.rawServers.delete(server));
    return server;
  }
}

/**
 * grpc-js's certificate provider interface over the current material: each new listener gets it
 * (grpc-js waits for a first update before serving or dialing) and again on every reload. Never a
 * null update: a failed reload keeps what was there. The first update comes a microtask later:
 * grpc-js's server credentials add their own watcher only after the listener, so an update sent
 * at once would reach no server (which then drops every connection); no socket can be accepted
 * before a microtask runs.
 */
class ReloadableCertificates implements grpc.experimental.CertificateProvider {
  private material: TlsMaterial | undefined;
  private readonly caListeners = new Set<grpc.experimental.CaCertificateUpdateListener>();
  private readonly identityListeners = new Set<grpc.experimental.IdentityCertificateUpdateListener>();

  set(material: TlsMaterial): void {
    this.material = material;
    for (const listener of this.caListeners) this.sendCa(listener);
    for (const listener of this.identityListeners) this.sendIdentity(listener);
  }

  addCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(listener);
    queueMicrotask(() => this.caListeners.has(listener) && this.sendCa(listener));
  }

  removeCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener);
    queueMicrotask(() => this.identityListeners.has(listener) && this.sendIdentity(listener));
  }

  removeIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener);
  }

  private sendCa(listener: grpc.experimental.CaCertificateUpdateListener): void {
    if (this.material) listener({ caCertificate: this.material.ca });
  }

  private sendIdentity(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    if (this.material?.cert && this.material.key) listener({ certificate: this.material.cert, privateKey: this.material.key });
  }
}

/** The channel credentials for `tls`, or plain text without it. */
export function channelCredentials(tls: TlsContext | undefined): grpc.ChannelCredentials {
  return tls ? tls.channelCredentials() : grpc.credentials.createInsecure();
}

/** The server credentials for `tls`, or plain text without it. */
export function serverCredentials(tls: TlsContext | undefined, nodeOnly: ReadonlySet<string>): grpc.ServerCredentials {
  return tls ? tls.serverCredentials(nodeOnly) : grpc.ServerCredentials.createInsecure();
}

/** Whether a verified peer certificate is a cluster node's. */
export function isNodeCertificate(cert: tls.PeerCertificate | undefined): boolean {
  return !!cert?.subject && ouOf(cert.subject).includes(NODE_OU);
}

/** A certificate subject's OU values, as node:crypto (text) or node:tls (object) gives them. */
function ouOf(subject: string | tls.Certificate): string[] {
  if (typeof subject === 'string') return [...subject.matchAll(/^OU=(.*)$/gm)].map((m) => m[1]);
  const ou = subject.OU as string | string[] | undefined;
  return ou === undefined ? [] : Array.isArray(ou) ? ou : [ou];
}

/** Refuses the node-only methods, before their handler runs, to peers without a node certificate. */
function nodeOnlyInterceptor(nodeOnly: ReadonlySet<string>): grpc.ServerInterceptor {
  return (method, call) => {
    if (!nodeOnly.has(method.path) || isNodeCertificate(call.getAuthContext()?.sslPeerCertificate)) return new grpc.ServerInterceptingCall(call);
    const metadata = new grpc.Metadata();
    metadata.set('strata-error', 'PermissionDenied');
    const details = `${method.path.slice(method.path.lastIndexOf('/') + 1)}: only cluster nodes may call this (a certificate with OU=${NODE_OU} signed by the cluster CA)`;
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: () => call.sendStatus({ code: grpc.status.PERMISSION_DENIED, details, metadata }),
          onReceiveMessage: () => undefined,
          onReceiveHalfClose: () => undefined,
        });
      },
    });
  };
}

let ipServernameMuted = false;

/**
 * grpc-js puts the target host in SNI even when it is an IP address (RFC 6066 forbids that) and
 * Node then prints deprecation DEP0123 on the user's terminal. The server certificate is still
 * checked against its IP SANs; only that one warning is dropped.
 */
export function muteIpServernameWarning(): void {
  if (ipServernameMuted) return;
  ipServernameMuted = true;
  const original = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  (process as { emitWarning: unknown }).emitWarning = (warning: unknown, ...rest: unknown[]) => {
    const options = rest[0] as { code?: string } | string | undefined;
    const code = typeof options === 'object' ? options?.code : rest[1];
    if (code === 'DEP0123') return;
    original(warning, ...rest);
  };
}

/** A CA bundle (several CAs while one replaces another), checked to hold only CA certificates. */
export function readCaBundle(file: string, flag: string, label: string): { pem: Buffer; certs: X509Certificate[] } {
  const pem = readPem(file, flag);
  const certs = pemBlocks(pem).map((block) => parseCert(Buffer.from(block), file, flag));
  if (certs.length === 0) throw invalid(`${label}: ${flag} ${file} holds no PEM certificate`);
  if (!certs.every((cert) => cert.ca)) throw invalid(`${label}: ${flag} ${file} is not a CA certificate`);
  return { pem, certs };
}

/** A certificate and its key, checked to belong together and not to have expired. */
export function readKeyPair(
  files: { cert: string; key: string },
  flags: { cert: string; key: string },
  label: string,
): { cert: Buffer; key: Buffer; own: X509Certificate } {
  const cert = readPem(files.cert, flags.cert);
  const key = readPem(files.key, flags.key);
  const own = parseCert(cert, files.cert, flags.cert);
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw invalid(`${label}: ${flags.key} ${files.key} is not a PEM private key (${(err as Error).message})`);
  }
  if (!own.checkPrivateKey(privateKey)) throw invalid(`${label}: ${flags.key} ${files.key} does not belong to ${flags.cert} ${files.cert}`);
  if (Date.parse(own.validTo) < Date.now()) throw invalid(`${label}: ${flags.cert} ${files.cert} expired on ${own.validTo}`);
  return { cert, key, own };
}

function readPem(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw invalid(`TLS: cannot read ${flag} ${file} (${code}); make a dev CA and certificates with \`strata certs init DIR\``);
  }
}

function pemBlocks(pem: Buffer): string[] {
  return pem.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

function parseCert(pem: Buffer, file: string, flag: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw invalid(`TLS: ${flag} ${file} is not a PEM certificate (${(err as Error).message})`);
  }
}
