// common/tls.ts on real sockets in this process: the one-line reasons a failed handshake gets,
// client certificates required or optional, and the checks a node's TLS settings get at start.
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import type tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tempDir, type TempDir } from '../test/harness/ports.js';
import { initDevCerts, type DevCertFiles } from './dev-certs.js';
import { NOT_SIGNED_BY_CA, TlsContext, isNodeCertificate, tlsFailureReason } from './tls.js';

describe('TlsContext', () => {
  let dir: TempDir;
  let certs: DevCertFiles;
  let other: DevCertFiles;
  const servers: net.Server[] = [];

  beforeAll(async () => {
    dir = await tempDir('tls-unit');
    certs = await initDevCerts(`${dir.path}/ours`, { nodes: ['node'], clients: ['client'] });
    other = await initDevCerts(`${dir.path}/theirs`, { nodes: ['node'] });
  });
  afterAll(async () => {
    for (const server of servers) server.close();
    await dir?.cleanup();
  });

  const node = (requireClientCert = false) =>
    TlsContext.forServer({ tlsCa: certs.ca, tlsCert: certs.certs.node.cert, tlsKey: certs.certs.node.key, tlsRequireClientCert: requireClientCert })!;

  /** A listener that answers 'ok' and says whether the peer was a verified node. */
  async function listen(server: net.Server): Promise<number> {
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    return (server.address() as net.AddressInfo).port;
  }
  const tlsServer = (context: TlsContext) =>
    listen(context.createServer({}, (socket: tls.TLSSocket) => socket.end(socket.authorized && isNodeCertificate(socket.getPeerCertificate()) ? 'node' : 'client')));

  /** What a client gets: the server's answer, or the one-line reason of its failure. */
  function dial(context: TlsContext, port: number): Promise<string> {
    return new Promise((resolve) => {
      const socket = context.connect('127.0.0.1', port);
      let answer = '';
      socket.on('data', (data) => (answer += data));
      socket.on('end', () => resolve(answer));
      socket.on('error', (err) => resolve(tlsFailureReason(err.message) ?? `unmapped: ${err.message}`));
    });
  }

  test('client certificates are optional unless required; a node certificate is told from a client one', async () => {
    const optional = await tlsServer(node());
    expect(await dial(TlsContext.forClient({ ca: certs.ca })!, optional)).toBe('client');
    expect(await dial(TlsContext.forClient({ ca: certs.ca, ...certs.certs.client })!, optional)).toBe('client');
    expect(await dial(node(), optional)).toBe('node');
    // Another CA's node certificate, offered by a client that trusts both CAs: not one of ours.
    const bundle = `${dir.path}/bundle.crt`;
    writeFileSync(bundle, Buffer.concat([readFileSync(certs.ca), readFileSync(other.ca)]));
    expect(await dial(TlsContext.forClient({ ca: bundle, ...other.certs.node })!, optional)).toBe('client');
    const required = await tlsServer(node(true));
    expect(await dial(TlsContext.forClient({ ca: certs.ca })!, required)).toMatch(/^TLS: the server (requires a client certificate|refused this client certificate)/);
    expect(await dial(TlsContext.forClient({ ca: certs.ca, ...certs.certs.client })!, required)).toBe('client');
  });

  test('a wrong CA, and TLS to a plain port, each fail with one line saying what to do', async () => {
    const port = await tlsServer(node());
    expect(await dial(TlsContext.forClient({ ca: other.ca })!, port)).toBe(NOT_SIGNED_BY_CA);
    const plain = await listen(net.createServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n')));
    expect(await dial(TlsContext.forClient({ ca: certs.ca })!, plain)).toMatch(/^TLS: the other end does not speak TLS/);
  });

  test('settings are checked at start: incomplete, mismatched or foreign files are one Invalid line each', () => {
    expect(TlsContext.forServer({})).toBeUndefined();
    expect(TlsContext.forClient({})).toBeUndefined();
    expect(() => TlsContext.forServer({ tlsCa: certs.ca })).toThrow(/--tls-cert is required/);
    expect(() => TlsContext.forClient({ cert: certs.certs.client.cert, key: certs.certs.client.key })).toThrow(/need --tls-ca/);
    expect(() => TlsContext.forServer({ tlsCa: certs.ca, tlsCert: certs.certs.node.cert, tlsKey: certs.certs.client.key })).toThrow(/does not belong to/);
    expect(() => TlsContext.forServer({ tlsCa: certs.ca, tlsCert: other.certs.node.cert, tlsKey: other.certs.node.key })).toThrow(/is not signed by the --tls-ca CA/);
    expect(() => TlsContext.forServer({ tlsCa: certs.certs.node.cert, tlsCert: certs.certs.node.cert, tlsKey: certs.certs.node.key })).toThrow(/is not a CA certificate/);
    expect(() => TlsContext.forServer({ tlsCa: certs.ca, tlsCert: certs.certs.client.cert, tlsKey: certs.certs.client.key })).toThrow(/is not a node certificate/);
  });

  test('reload: a listener serves, and a client dials with, the renewed files; a bad file throws and changes nothing', async () => {
    const live = `${dir.path}/live`;
    mkdirSync(live, { recursive: true });
    const files = { ca: `${live}/ca.crt`, cert: `${live}/node.crt`, key: `${live}/node.key` };
    const install = (from: DevCertFiles) => {
      copyFileSync(from.ca, files.ca);
      copyFileSync(from.certs.node.cert, files.cert);
      copyFileSync(from.certs.node.key, files.key);
    };
    install(certs);
    const server = TlsContext.forServer({ tlsCa: files.ca, tlsCert: files.cert, tlsKey: files.key })!;
    const client = TlsContext.forClient({ ca: files.ca })!;
    const port = await tlsServer(server);
    const servedSerial = () =>
      new Promise<string>((resolve, reject) => {
        const socket = client.connect('127.0.0.1', port);
        socket.once('secureConnect', () => resolve(socket.getPeerCertificate().serialNumber));
        socket.once('error', reject);
      });
    const serial = (file: string) => new X509Certificate(readFileSync(file)).serialNumber;
    expect(await servedSerial()).toBe(serial(certs.certs.node.cert));
    install(other);
    // Until the client reloads too it trusts only the first CA: the new certificate is refused.
    expect(server.reload()).toMatchObject({ changed: true, serial: serial(other.certs.node.cert), caCertificates: 1 });
    expect(await dial(client, port)).toBe(NOT_SIGNED_BY_CA);
    expect(client.reload().changed).toBe(true);
    expect(await servedSerial()).toBe(serial(other.certs.node.cert));
    writeFileSync(files.key, readFileSync(certs.certs.client.key));
    expect(() => server.reload()).toThrow(/--tls-key .* does not belong to --tls-cert/);
    writeFileSync(files.cert, 'not a certificate');
    expect(() => server.reload()).toThrow(/--tls-cert .* is not a PEM certificate/);
    expect(await servedSerial()).toBe(serial(other.certs.node.cert));
  });
});
