// `strata csi` against the CSI spec's rules, in process on a unix socket, over a real cluster:
// a gRPC client built from the vendored proto/csi.proto (the spec's wire names) calls it as a CO
// (kubelet, the provisioner sidecar) would.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { StrataError, type Strata } from '../client/index.js';
import { createLogger } from '../common/log.js';
import { loadCsiConfig } from '../csi/config.js';
import { startCsiServer, type RunningCsi } from '../csi/server.js';
import { isMounted, unmountWithFallbacks } from '../fuse/unmount.js';
import { startCluster, type TestCluster } from './harness/cluster.js';
import { fuseUnavailableReason, sh, type ShResult } from './harness/mount.js';
import { freePort, tempDir, type TempDir } from './harness/ports.js';

const MiB = 1024 * 1024;
const PROTO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../proto/csi.proto');
const CALL_TIMEOUT_MS = 30_000;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Reply = any;
type Call = (method: string, request?: object) => Promise<Reply>;

/** The spec's messages with their wire (snake_case) names, as another CO's generated code sends them. */
function csiClients(socketPath: string): { identity: Call; controller: Call; node: Call; close(): void } {
  const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const csi = (grpc.loadPackageDefinition(definition) as any).csi.v1;
  const make = (Service: grpc.ServiceClientConstructor) => new Service(`unix:${socketPath}`, grpc.credentials.createInsecure());
  const clients = [make(csi.Identity), make(csi.Controller), make(csi.Node)];
  const caller =
    (client: grpc.Client): Call =>
    (method, request = {}) =>
      new Promise((resolve, reject) => {
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        (client as any)[method](request, { deadline: new Date(Date.now() + CALL_TIMEOUT_MS) }, (err: grpc.ServiceError | null, reply: Reply) => (err ? reject(err) : resolve(reply)));
      });
  return { identity: caller(clients[0]), controller: caller(clients[1]), node: caller(clients[2]), close: () => clients.forEach((c) => c.close()) };
}

/** The gRPC status name a call failed with (OK if it did not). */
async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'OK';
  } catch (err) {
    return grpc.status[(err as grpc.ServiceError).code];
  }
}

const mountCap = (mode = 'MULTI_NODE_MULTI_WRITER') => ({ mount: { fs_type: '', mount_flags: [] }, access_mode: { mode } });
const blockCap = (mode = 'SINGLE_NODE_WRITER') => ({ block: {}, access_mode: { mode } });

describe('strata csi: Identity and Controller', () => {
  let cluster: TestCluster;
  let client: Strata;
  let work: TempDir;
  let csi: RunningCsi;
  let calls: ReturnType<typeof csiClients>;

  beforeAll(async () => {
    work = await tempDir('csi');
    cluster = await startCluster({ datanodes: 1, replication: 1, chunkSize: '1MiB' });
    client = cluster.client();
    const config = loadCsiConfig({ endpoint: `unix://${work.path}/csi/csi.sock`, coordinator: cluster.coordinatorList, nodeId: 'node-a', mode: 'controller', baseDir: '/volumes' }, undefined, {});
    csi = await startCsiServer(config, createLogger('csi', 'silent'));
    calls = csiClients(csi.socketPath);
  });
  afterAll(async () => {
    calls?.close();
    await csi?.stop().catch((err) => console.error(err));
    await cluster?.stop().catch((err) => console.error(err));
    await work?.cleanup();
  });

  test('identity: plugin info, the controller service capability, Probe ready against a live cluster', async () => {
    const info = await calls.identity('GetPluginInfo');
    expect(info.name).toBe('csi.strata.io');
    expect(info.vendor_version).toMatch(/^\d+\.\d+\.\d+/);
    const caps = await calls.identity('GetPluginCapabilities');
    expect(caps.capabilities.map((c: Reply) => c.service?.type)).toEqual(['CONTROLLER_SERVICE']);
    expect((await calls.identity('Probe')).ready).toEqual({ value: true });
    const controllerCaps = await calls.controller('ControllerGetCapabilities');
    expect(controllerCaps.capabilities.map((c: Reply) => c.rpc.type).sort()).toEqual(['CREATE_DELETE_VOLUME', 'GET_CAPACITY']);
    // Services this mode does not serve, and RPCs strata does not implement: UNIMPLEMENTED.
    expect(await codeOf(calls.node('NodeGetInfo'))).toBe('UNIMPLEMENTED');
    expect(await codeOf(calls.controller('CreateSnapshot', { name: 's', source_volume_id: 'x' }))).toBe('UNIMPLEMENTED');
  });

  test('CreateVolume makes a directory with a byte quota; the same call again answers the same volume', async () => {
    const request = { name: 'pvc-create-1', capacity_range: { required_bytes: 8 * MiB }, volume_capabilities: [mountCap()] };
    const first = await calls.controller('CreateVolume', request);
    expect(first.volume).toMatchObject({ volume_id: 'pvc-create-1', capacity_bytes: 8 * MiB });
    const stat = await client.stat('/volumes/pvc-create-1');
    expect(stat.isDirectory()).toBe(true);
    expect(stat.mode & 0o777).toBe(0o777);
    expect(await client.quotaGet('/volumes/pvc-create-1')).toMatchObject({ limitBytes: 8 * MiB, usedBytes: 0 });

    // Idempotent: a retry (the CO lost the answer) gets the same volume, and nothing new is made.
    const again = await calls.controller('CreateVolume', request);
    expect(again.volume).toEqual(first.volume);
    const names = (await client.readdir('/volumes')).map((e) => e.name);
    expect(names).toEqual(['pvc-create-1']);
    // A range the volume's capacity falls in is compatible too.
    const ranged = await calls.controller('CreateVolume', { ...request, capacity_range: { required_bytes: 4 * MiB, limit_bytes: 8 * MiB } });
    expect(ranged.volume.volume_id).toBe('pvc-create-1');
  });

  test('CreateVolume with an existing name but another capacity: ALREADY_EXISTS, the volume unchanged', async () => {
    const request = { name: 'pvc-conflict', capacity_range: { required_bytes: 4 * MiB }, volume_capabilities: [mountCap()] };
    await calls.controller('CreateVolume', request);
    expect(await codeOf(calls.controller('CreateVolume', { ...request, capacity_range: { required_bytes: 8 * MiB } }))).toBe('ALREADY_EXISTS');
    expect(await codeOf(calls.controller('CreateVolume', { ...request, capacity_range: { required_bytes: 2 * MiB, limit_bytes: 2 * MiB } }))).toBe('ALREADY_EXISTS');
    expect((await client.quotaGet('/volumes/pvc-conflict')).limitBytes).toBe(4 * MiB);
  });

  test('a volume\'s quota is enforced: a write past its capacity through the SDK fails, what fit stays', async () => {
    await calls.controller('CreateVolume', { name: 'pvc-quota', capacity_range: { required_bytes: 2 * MiB }, volume_capabilities: [mountCap()] });
    const fits = randomBytes(MiB);
    await client.writeFile('/volumes/pvc-quota/fits', fits);
    const err = await client.writeFile('/volumes/pvc-quota/too-big', randomBytes(3 * MiB)).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(StrataError);
    expect((err as StrataError).kind).toBe('QuotaExceeded');
    expect((await client.readFile('/volumes/pvc-quota/fits')).equals(fits)).toBe(true);
    expect((await client.quotaGet('/volumes/pvc-quota')).usedBytes).toBeLessThanOrEqual(2 * MiB);
  });

  test('DeleteVolume removes the volume and its files; deleting again, or an unknown id, is OK', async () => {
    await calls.controller('CreateVolume', { name: 'pvc-delete', capacity_range: { required_bytes: 4 * MiB }, volume_capabilities: [mountCap()] });
    await client.mkdir('/volumes/pvc-delete/a');
    await client.writeFile('/volumes/pvc-delete/a/b', 'data');
    expect(await codeOf(calls.controller('DeleteVolume', { volume_id: 'pvc-delete' }))).toBe('OK');
    expect(await client.exists('/volumes/pvc-delete')).toBe(false);
    expect((await client.quotaList()).map((q) => q.path)).not.toContain('/volumes/pvc-delete');
    expect(await codeOf(calls.controller('DeleteVolume', { volume_id: 'pvc-delete' }))).toBe('OK');
    expect(await codeOf(calls.controller('DeleteVolume', { volume_id: 'never-made' }))).toBe('OK');
    // An id that could never be a volume names nothing outside the base dir either.
    expect(await codeOf(calls.controller('DeleteVolume', { volume_id: '../etc' }))).toBe('OK');
    // The name is free again, for any capacity.
    const remade = await calls.controller('CreateVolume', { name: 'pvc-delete', capacity_range: { required_bytes: 16 * MiB }, volume_capabilities: [mountCap()] });
    expect(remade.volume.capacity_bytes).toBe(16 * MiB);
    expect(await client.exists('/volumes/pvc-delete/a')).toBe(false);
  });

  test('a name that is not a safe directory name gets a digest id, the same one each time', async () => {
    const request = { name: 'team/a volume', capacity_range: { required_bytes: MiB }, volume_capabilities: [mountCap()] };
    const first = await calls.controller('CreateVolume', request);
    expect(first.volume.volume_id).toMatch(/^v-[0-9a-f]{40}$/);
    expect((await calls.controller('CreateVolume', request)).volume.volume_id).toBe(first.volume.volume_id);
    expect(await client.exists(`/volumes/${first.volume.volume_id}`)).toBe(true);
  });

  test('ValidateVolumeCapabilities confirms what strata supports, not the rest; NOT_FOUND for an unknown volume', async () => {
    await calls.controller('CreateVolume', { name: 'pvc-validate', volume_capabilities: [mountCap()] });
    const ok = await calls.controller('ValidateVolumeCapabilities', { volume_id: 'pvc-validate', volume_capabilities: [mountCap(), mountCap('SINGLE_NODE_WRITER'), mountCap('MULTI_NODE_READER_ONLY')] });
    expect(ok.confirmed.volume_capabilities).toHaveLength(3);
    const block = await calls.controller('ValidateVolumeCapabilities', { volume_id: 'pvc-validate', volume_capabilities: [blockCap()] });
    expect(block.confirmed).toBeNull();
    expect(block.message).toMatch(/block/);
    const singleWriter = await calls.controller('ValidateVolumeCapabilities', { volume_id: 'pvc-validate', volume_capabilities: [mountCap('MULTI_NODE_SINGLE_WRITER')] });
    expect(singleWriter.confirmed).toBeNull();
    expect(singleWriter.message).toMatch(/MULTI_NODE_SINGLE_WRITER/);
    expect(await codeOf(calls.controller('ValidateVolumeCapabilities', { volume_id: 'no-such-volume', volume_capabilities: [mountCap()] }))).toBe('NOT_FOUND');
    expect(await codeOf(calls.controller('ValidateVolumeCapabilities', { volume_id: 'pvc-validate' }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(calls.controller('ValidateVolumeCapabilities', { volume_capabilities: [mountCap()] }))).toBe('INVALID_ARGUMENT');
  });

  test('GetCapacity answers the cluster\'s free space (strata df), none for capabilities strata cannot give', async () => {
    const reply = await calls.controller('GetCapacity', { volume_capabilities: [mountCap()] });
    const stats = await client.statfs();
    expect(reply.available_capacity).toBeGreaterThan(0);
    // Free space moves with other tests' writes: the figure is the cluster's, within what was written meanwhile.
    expect(Math.abs(reply.available_capacity - stats.freeBytes)).toBeLessThan(64 * MiB);
    expect((await calls.controller('GetCapacity', { volume_capabilities: [blockCap()] })).available_capacity).toBe(0);
  });

  test('bad CreateVolume and DeleteVolume requests get INVALID_ARGUMENT, and make nothing', async () => {
    const create = (request: object) => codeOf(calls.controller('CreateVolume', request));
    expect(await create({ volume_capabilities: [mountCap()] })).toBe('INVALID_ARGUMENT'); // no name
    expect(await create({ name: 'pvc-bad-1' })).toBe('INVALID_ARGUMENT'); // no capabilities
    expect(await create({ name: 'pvc-bad-2', volume_capabilities: [blockCap()] })).toBe('INVALID_ARGUMENT');
    expect(await create({ name: 'pvc-bad-3', volume_capabilities: [mountCap('MULTI_NODE_SINGLE_WRITER')] })).toBe('INVALID_ARGUMENT');
    expect(await create({ name: 'pvc-bad-4', volume_capabilities: [{ mount: {} }] })).toBe('INVALID_ARGUMENT'); // no access mode
    expect(await create({ name: 'pvc-bad-5', volume_capabilities: [mountCap()], capacity_range: { required_bytes: 8 * MiB, limit_bytes: MiB } })).toBe('INVALID_ARGUMENT');
    expect(await create({ name: 'pvc-bad-6', volume_capabilities: [mountCap()], parameters: { replicaton: '2' } })).toBe('INVALID_ARGUMENT');
    expect(await create({ name: 'pvc-bad-7', volume_capabilities: [mountCap()], volume_content_source: { snapshot: { snapshot_id: 's1' } } })).toBe('INVALID_ARGUMENT');
    expect(await create({ name: 'pvc-bad-8', volume_capabilities: [{ mount: { fs_type: 'ext4' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } }] })).toBe('INVALID_ARGUMENT');
    const names = (await client.readdir('/volumes')).map((e) => e.name);
    expect(names.filter((n) => n.includes('pvc-bad'))).toEqual([]);
    expect(await codeOf(calls.controller('DeleteVolume', {}))).toBe('INVALID_ARGUMENT');
    // What the provisioner sidecar adds itself is not a strata parameter, and is let through.
    expect(await create({ name: 'pvc-k8s-params', volume_capabilities: [mountCap()], parameters: { 'csi.storage.k8s.io/pvc/name': 'data' } })).toBe('OK');
  });

  test('Probe of a controller that cannot reach its cluster: FAILED_PRECONDITION (the spec\'s missing dependency)', async () => {
    const config = loadCsiConfig({ endpoint: `unix://${work.path}/lost/csi.sock`, coordinator: `127.0.0.1:${await freePort()}`, mode: 'controller' }, undefined, {});
    const lost = await startCsiServer(config, createLogger('csi', 'silent'));
    const lostCalls = csiClients(lost.socketPath);
    try {
      expect(await codeOf(lostCalls.identity('Probe'))).toBe('FAILED_PRECONDITION');
      expect((await lostCalls.identity('GetPluginInfo')).name).toBe('csi.strata.io');
    } finally {
      lostCalls.close();
      await lost.stop();
    }
  });
});

const fuseSkip = fuseUnavailableReason();
if (fuseSkip) console.log(`skipping the CSI node tests: ${fuseSkip}`);

describe.skipIf(!!fuseSkip)('strata csi: Node (real FUSE mounts)', () => {
  let cluster: TestCluster;
  let client: Strata;
  let work: TempDir;
  let csi: RunningCsi;
  let calls: ReturnType<typeof csiClients>;
  const targets: string[] = [];
  /** A fresh target path under the kubelet-like pods dir (its parent exists, as the spec promises). */
  const target = (name: string) => {
    const dir = path.join(work.path, 'pods', name, 'mount');
    targets.push(dir);
    return dir;
  };
  const run = (script: string): Promise<ShResult> => sh(script, { timeoutMs: 60_000 });

  beforeAll(async () => {
    work = await tempDir('csi-node');
    await mkdir(path.join(work.path, 'pods'), { recursive: true });
    cluster = await startCluster({ datanodes: 1, replication: 1, chunkSize: '1MiB' });
    client = cluster.client();
    const config = loadCsiConfig({ endpoint: `unix://${work.path}/csi.sock`, coordinator: cluster.coordinatorList, nodeId: 'node-a', mode: 'both' }, undefined, {});
    csi = await startCsiServer(config, createLogger('csi', 'silent'));
    calls = csiClients(csi.socketPath);
    for (const name of ['pvc-rw', 'pvc-ro']) await calls.controller('CreateVolume', { name, capacity_range: { required_bytes: 4 * MiB }, volume_capabilities: [mountCap()] });
  });
  afterAll(async () => {
    // Whatever a failed test left mounted: unpublished, else unmounted by force.
    for (const dir of targets) {
      await calls?.node('NodeUnpublishVolume', { volume_id: 'any', target_path: dir }).catch((err) => console.error(err));
      if (await isMounted(dir)) await unmountWithFallbacks(dir);
    }
    calls?.close();
    await csi?.stop().catch((err) => console.error(err));
    await cluster?.stop().catch((err) => console.error(err));
    await work?.cleanup();
  });

  test('NodeGetInfo names the node; NodeGetCapabilities advertises no staging', async () => {
    expect(await calls.node('NodeGetInfo')).toMatchObject({ node_id: 'node-a' });
    expect((await calls.node('NodeGetCapabilities')).capabilities).toEqual([]);
  });

  test('publish mounts the volume at the target: a file written there is in the cluster under the volume; again is OK; unpublish unmounts, twice is OK', async () => {
    const dir = target('pod-rw');
    const publish = { volume_id: 'pvc-rw', target_path: dir, volume_capability: mountCap(), readonly: false };
    expect(await codeOf(calls.node('NodePublishVolume', publish))).toBe('OK');
    expect(await isMounted(dir)).toBe(true);
    const write = await run(`echo hello from a pod > ${dir}/greeting && mkdir ${dir}/sub && head -c 100000 /dev/urandom > ${dir}/sub/blob && sync`);
    expect(write.code, write.stderr).toBe(0);
    expect((await client.readFile('/volumes/pvc-rw/greeting')).toString()).toBe('hello from a pod\n');
    expect((await client.stat('/volumes/pvc-rw/sub/blob')).size).toBe(100000);
    // The volume's quota shows through the mount as its size.
    const df = await run(`df -B1 --output=size ${dir} | tail -1`);
    expect(Number(df.stdout.trim())).toBe(4 * MiB);
    // Past it, EDQUOT.
    const dd = await run(`dd if=/dev/zero of=${dir}/big bs=1M count=8 conv=fsync status=none`);
    expect(dd.stderr).toMatch(/Disk quota exceeded/);

    // Idempotent: published already, same volume and mode.
    expect(await codeOf(calls.node('NodePublishVolume', publish))).toBe('OK');
    // The same target with other arguments: ALREADY_EXISTS (the spec's "published but incompatible").
    expect(await codeOf(calls.node('NodePublishVolume', { ...publish, readonly: true }))).toBe('ALREADY_EXISTS');
    expect(await codeOf(calls.node('NodePublishVolume', { ...publish, volume_id: 'pvc-ro' }))).toBe('ALREADY_EXISTS');

    expect(await codeOf(calls.node('NodeUnpublishVolume', { volume_id: 'pvc-rw', target_path: dir }))).toBe('OK');
    expect(await isMounted(dir)).toBe(false);
    expect(existsSync(dir)).toBe(false); // the target the plugin made is removed
    expect(await codeOf(calls.node('NodeUnpublishVolume', { volume_id: 'pvc-rw', target_path: dir }))).toBe('OK');
    // The data stays in the volume.
    expect((await client.readFile('/volumes/pvc-rw/greeting')).toString()).toBe('hello from a pod\n');
  });

  test('a read-only publish shows the volume\'s files and refuses writes with EROFS', async () => {
    await client.writeFile('/volumes/pvc-ro/existing', 'kept\n');
    const dir = target('pod-ro');
    expect(await codeOf(calls.node('NodePublishVolume', { volume_id: 'pvc-ro', target_path: dir, volume_capability: mountCap(), readonly: true }))).toBe('OK');
    expect((await run(`cat ${dir}/existing`)).stdout).toBe('kept\n');
    const write = await run(`echo x > ${dir}/new`);
    expect(write.code).not.toBe(0);
    expect(write.stderr).toMatch(/Read-only file system/);
    expect(await client.exists('/volumes/pvc-ro/new')).toBe(false);
    expect(await codeOf(calls.node('NodeUnpublishVolume', { volume_id: 'pvc-ro', target_path: dir }))).toBe('OK');
    expect(await isMounted(dir)).toBe(false);
  });

  test('a reader-only access mode publishes read-only even without the readonly flag', async () => {
    const dir = target('pod-rox');
    expect(await codeOf(calls.node('NodePublishVolume', { volume_id: 'pvc-ro', target_path: dir, volume_capability: mountCap('MULTI_NODE_READER_ONLY'), readonly: false }))).toBe('OK');
    expect((await run(`touch ${dir}/nope`)).stderr).toMatch(/Read-only file system/);
    expect(await codeOf(calls.node('NodeUnpublishVolume', { volume_id: 'pvc-ro', target_path: dir }))).toBe('OK');
  });

  test('bad publish and unpublish requests get the spec\'s codes, and mount nothing', async () => {
    const dir = target('pod-bad');
    const good = { volume_id: 'pvc-rw', target_path: dir, volume_capability: mountCap(), readonly: false };
    const publish = (request: object) => codeOf(calls.node('NodePublishVolume', request));
    expect(await publish({ ...good, volume_id: '' })).toBe('INVALID_ARGUMENT');
    expect(await publish({ ...good, target_path: '' })).toBe('INVALID_ARGUMENT');
    expect(await publish({ ...good, target_path: 'relative/path' })).toBe('INVALID_ARGUMENT');
    expect(await publish({ ...good, volume_capability: null })).toBe('INVALID_ARGUMENT');
    expect(await publish({ ...good, volume_capability: blockCap() })).toBe('INVALID_ARGUMENT');
    expect(await publish({ ...good, volume_capability: mountCap('MULTI_NODE_SINGLE_WRITER') })).toBe('INVALID_ARGUMENT');
    expect(await publish({ ...good, volume_id: 'pvc-never-created' })).toBe('NOT_FOUND');
    expect(await publish({ ...good, volume_id: '../../etc' })).toBe('NOT_FOUND');
    expect(await isMounted(dir)).toBe(false);
    expect(await codeOf(calls.node('NodeUnpublishVolume', { target_path: dir }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(calls.node('NodeUnpublishVolume', { volume_id: 'pvc-rw' }))).toBe('INVALID_ARGUMENT');
    // Never published there: nothing to undo.
    expect(await codeOf(calls.node('NodeUnpublishVolume', { volume_id: 'pvc-rw', target_path: dir }))).toBe('OK');
  });
});
