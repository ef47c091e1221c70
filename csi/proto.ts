// The CSI wire contract (proto/csi.proto, vendored from the CSI spec) loaded for grpc-js, and the
// few message shapes strata's services read and write, as proto-loader presents them (camelCase
// fields, enums as their names, int64 as numbers, unset messages as null).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Two levels above dist/csi/, one above csi/ (vitest runs the sources). */
const PROTO_FILE = [path.resolve(here, '../../proto/csi.proto'), path.resolve(here, '../proto/csi.proto')].find((file) => existsSync(file))!;

const definition = protoLoader.loadSync(PROTO_FILE, { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const csiV1 = (grpc.loadPackageDefinition(definition) as any).csi.v1;

export const csiProto = csiV1 as {
  Identity: grpc.ServiceClientConstructor;
  Controller: grpc.ServiceClientConstructor;
  Node: grpc.ServiceClientConstructor;
};

export type AccessModeName =
  | 'UNKNOWN'
  | 'SINGLE_NODE_WRITER'
  | 'SINGLE_NODE_READER_ONLY'
  | 'MULTI_NODE_READER_ONLY'
  | 'MULTI_NODE_SINGLE_WRITER'
  | 'MULTI_NODE_MULTI_WRITER'
  | 'SINGLE_NODE_SINGLE_WRITER'
  | 'SINGLE_NODE_MULTI_WRITER';

export interface VolumeCapability {
  block?: object | null;
  mount?: { fsType?: string; mountFlags?: string[]; volumeMountGroup?: string } | null;
  accessMode?: { mode?: AccessModeName } | null;
  accessType?: 'block' | 'mount';
}

export interface CapacityRange {
  requiredBytes?: number;
  limitBytes?: number;
}

export interface Volume {
  capacityBytes: number;
  volumeId: string;
  volumeContext?: Record<string, string>;
}

export interface CreateVolumeRequest {
  name?: string;
  capacityRange?: CapacityRange | null;
  volumeCapabilities?: VolumeCapability[];
  parameters?: Record<string, string>;
  volumeContentSource?: object | null;
  accessibilityRequirements?: object | null;
  mutableParameters?: Record<string, string>;
}

export interface NodePublishVolumeRequest {
  volumeId?: string;
  targetPath?: string;
  stagingTargetPath?: string;
  volumeCapability?: VolumeCapability | null;
  readonly?: boolean;
  volumeContext?: Record<string, string>;
}
