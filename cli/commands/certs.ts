// `strata certs init DIR`: a development CA and certificates for coordinators, data nodes and
// clients (common/dev-certs.ts), and how to use them.
import path from 'node:path';
import type { Command } from 'commander';
import { initDevCerts } from '../../common/dev-certs.js';

const collect = (value: string, all: string[] | undefined) => [...(all ?? []), ...value.split(',').map((s) => s.trim()).filter(Boolean)];

export function registerCertsCommands(program: Command): void {
  const certs = program.command('certs').description('TLS certificates for a cluster');
  certs
    .command('init')
    .description('make a dev CA (kept if DIR has one) and per-node certificates, SANs localhost/127.0.0.1/::1 + --host; keys 0600')
    .argument('<dir>', 'directory for ca.crt, ca.key and NAME.crt / NAME.key')
    .option('--node <names>', 'node certificates (coordinators and data nodes), comma-separated or repeated (default coordinator,dn1,dn2,dn3)', collect)
    .option('--client <names>', 'client certificates (optional for clients), comma-separated or repeated (default client)', collect)
    .option('--host <names>', 'more SANs on every certificate: host names or IPs the nodes are reached at', collect)
    .option('--force', 'remake certificates that exist (the CA is kept)')
    .action(async (dir: string, options: { node?: string[]; client?: string[]; host?: string[]; force?: boolean }) => {
      const nodes = options.node ?? ['coordinator', 'dn1', 'dn2', 'dn3'];
      const clients = options.client ?? ['client'];
      const files = await initDevCerts(path.resolve(dir), { nodes, clients, hosts: options.host, force: options.force });
      console.log(`CA            ${files.ca}`);
      for (const [name, { cert, key, made }] of Object.entries(files.certs)) console.log(`${name.padEnd(13)} ${cert}  ${key}${made ? '' : '  (kept)'}`);
      const first = (wanted: string) => files.certs[wanted] ?? Object.values(files.certs)[0];
      const node = first(nodes[0]);
      const client = files.certs[clients[0]];
      console.log(`
A node (coordinator or data node) serves and dials with all three:
  strata coordinator --tls-ca ${files.ca} --tls-cert ${node.cert} --tls-key ${node.key} ...
Clients need only the CA (a client certificate is optional):
  export STRATA_TLS_CA=${files.ca}${client ? `\n  export STRATA_TLS_CERT=${client.cert} STRATA_TLS_KEY=${client.key}   # optional` : ''}`);
    });
}
