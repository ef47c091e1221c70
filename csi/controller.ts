// The CSI Controller service: volumes made, checked and removed in the cluster's namespace
// (csi/volumes.ts), and the capacity left to provision from.
import { invalid, notFound } from '../common/errors.js';
import type { Strata } from '../client/index.js';
import { requireSupported, requireWellFormed, unsupportedReason } from './capabilities.js';
import { InFlight } from './in-flight.js';
import type { CreateVolumeRequest, VolumeCapability } from './proto.js';
import { Volumes, volumeIdOf } from './volumes.js';

/** Parameters the CO adds itself (external-provisioner's csi.storage.k8s.io/*): not the driver's to judge. */
const CO_PARAMETER = /^csi\.storage\.k8s\.io\//;

export const CONTROLLER_CAPABILITIES = ['CREATE_DELETE_VOLUME', 'GET_CAPACITY'] as const;

function requireCapabilities(capabilities: VolumeCapability[] | undefined, check: (c: VolumeCapability, what: string) => void): VolumeCapability[] {
  if (!capabilities?.length) throw invalid('volume_capabilities is required');
  capabilities.forEach((c, i) => check(c, `volume_capabilities[${i}]`));
  return capabilities;
}

function requireVolumeId(volumeId: string | undefined): string {
  if (!volumeId) throw invalid('volume_id is required');
  return volumeId;
}

/** strata volumes take no parameters yet: a misspelt one is an error, not silently ignored. */
function unknownParameters(parameters: Record<string, string> | undefined): string[] {
  return Object.keys(parameters ?? {}).filter((key) => !CO_PARAMETER.test(key));
}

export class ControllerService {
  private readonly volumes: Volumes;
  private readonly inFlight = new InFlight();

  constructor(
    private readonly client: Strata,
    baseDir: string,
  ) {
    this.volumes = new Volumes(client, baseDir);
  }

  async createVolume(request: CreateVolumeRequest) {
    if (!request.name) throw invalid('name is required');
    requireCapabilities(request.volumeCapabilities, requireSupported);
    const unknown = unknownParameters(request.parameters);
    if (unknown.length) throw invalid(`unknown parameters: ${unknown.join(', ')} (strata volumes take none)`);
    if (request.volumeContentSource) throw invalid('volume_content_source is not supported: strata volumes start empty (no snapshots or clones)');
    const name = request.name;
    const volumeId = volumeIdOf(name);
    return { volume: await this.inFlight.run(volumeId, `volume ${volumeId}`, () => this.volumes.create(name, request.capacityRange)) };
  }

  async deleteVolume(request: { volumeId?: string }) {
    const volumeId = requireVolumeId(request.volumeId);
    await this.inFlight.run(volumeId, `volume ${volumeId}`, () => this.volumes.delete(volumeId));
    return {};
  }

  async validateVolumeCapabilities(request: { volumeId?: string; volumeCapabilities?: VolumeCapability[]; volumeContext?: Record<string, string>; parameters?: Record<string, string> }) {
    const volumeId = requireVolumeId(request.volumeId);
    const capabilities = requireCapabilities(request.volumeCapabilities, requireWellFormed);
    if ((await this.volumes.capacityOf(volumeId)) === undefined) throw notFound(`volume ${volumeId}`);
    const reasons = capabilities.map(unsupportedReason).filter(Boolean);
    const unknown = unknownParameters(request.parameters);
    if (unknown.length) reasons.push(`unknown parameters: ${unknown.join(', ')}`);
    if (reasons.length) return { message: reasons.join('; ') };
    return { confirmed: { volumeCapabilities: capabilities, volumeContext: request.volumeContext ?? {}, parameters: request.parameters ?? {} } };
  }

  async getCapacity(request: { volumeCapabilities?: VolumeCapability[]; parameters?: Record<string, string> }) {
    // Nothing with these capabilities or parameters can be provisioned: none of the space is for it.
    const unusable = (request.volumeCapabilities ?? []).some((c) => unsupportedReason(c) !== undefined) || unknownParameters(request.parameters).length > 0;
    if (unusable) return { availableCapacity: 0 };
    const stats = await this.client.statfs();
    return { availableCapacity: Math.max(0, stats.freeBytes) };
  }

  async controllerGetCapabilities() {
    return { capabilities: CONTROLLER_CAPABILITIES.map((type) => ({ rpc: { type } })) };
  }
}
