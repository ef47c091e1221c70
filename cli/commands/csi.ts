// `strata csi`: the Kubernetes CSI driver (csi/): volumes as quota'd directories, published with
// the strata mount. Parses and wires; csi/ does the work.
import type { Command } from 'commander';
import { createLogger } from '../../common/log.js';
import { tlsOptions, tokenFileOption } from '../context.js';
import { untilSignal } from './roles.js';

export function registerCsiCommand(program: Command): void {
  const command = program
    .command('csi')
    .description('serve the CSI Identity, Controller and Node services on a unix socket (the Kubernetes volume driver)')
    .option('--endpoint <unix:///path.sock>', 'the socket the CO calls (or CSI_ENDPOINT)')
    .option('-c, --coordinator <host:port,...>', 'coordinator address(es), comma-separated (default 127.0.0.1:7400, or STRATA_COORDINATOR)')
    .option('--node-id <name>', 'this node\'s name, answered by NodeGetInfo (Kubernetes: spec.nodeName; default the host name)')
    .option('--mode <mode>', 'controller (create/delete volumes) | node (mount them) | both (default both)')
    .option('--base-dir <remote-dir>', 'the strata directory volumes are made in (default /volumes)')
    .addOption(tokenFileOption());
  for (const option of tlsOptions()) command.addOption(option);
  command
    .option('--log-level <level>', 'trace | debug | info | warn | error (default info)')
    .option('--config <file>', 'JSON config file (flags and STRATA_* env override it)')
    .addHelpText(
      'after',
      `
A volume is a directory under --base-dir named after CreateVolume's name (Kubernetes: pvc-<uid>),
its capacity a byte quota (strata quota); DeleteVolume removes it and all it holds. NodePublishVolume
runs \`strata mount --path <base-dir>/<volume> --allow-other\` at the target path (read-only when
asked); NodeUnpublishVolume unmounts it. Access modes: every one but MULTI_NODE_SINGLE_WRITER;
access type mount only (block is refused). With auth on, the driver's token needs the admin role
(quotas). k8s/README.md shows the manifests.

Examples:
  $ strata csi --endpoint unix:///csi/csi.sock --coordinator strata:7400 --mode controller
  $ strata csi --endpoint unix:///csi/csi.sock --coordinator strata:7400 --mode node --node-id "$NODE_NAME"
`,
    )
    .action(async (options) => {
      const { config: file, ...flags } = options;
      const { loadCsiConfig } = await import('../../csi/config.js');
      const config = loadCsiConfig(flags, file);
      const log = createLogger('csi', config.logLevel);
      const { startCsiServer } = await import('../../csi/server.js');
      const running = await startCsiServer(config, log);
      await untilSignal(log, running.stop);
      // The SDK's and grpc-js's handles may outlive the stop; the mounts it started are other processes and stay.
      setTimeout(() => process.exit(), 1000).unref();
    });
}
