// k8s/csi/ (the CSI driver beside a strata cluster) rendered as kustomize would, validated against
// the Kubernetes OpenAPI schemas and cross-checked: the driver's name everywhere, the sockets the
// sidecars and kubelet dial against the one the driver serves, the node plugin's FUSE and mount
// propagation, RBAC subjects and roles, and the driver's args and STRATA_* settings as the real
// CLI and config schema take them, against the strata overlay it runs beside.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { csiSchema, loadCsiConfig } from '../../csi/config.js';
import { DRIVER_NAME } from '../../csi/server.js';
import { STRATA_MAIN } from '../harness/cluster.js';
import { checkTypes } from './k8s-types.js';
import { build, containersOf, readYamlFile, type K8sObject } from './kustomize.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered manifests are plain objects */
const K8S = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../k8s');
/** Each driver kustomization and the strata overlay whose namespace it joins. */
const SETUPS = { prod: { csi: 'csi', strata: 'overlays/prod' }, dev: { csi: 'csi/dev', strata: 'overlays/dev' } } as const;
const secrets: K8sObject[] = readYamlFile(path.join(K8S, 'secrets/secrets.example.yaml'));
const require = createRequire(import.meta.url);
const named = (objects: K8sObject[], kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name);
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
const workloads = (objects: K8sObject[]) => objects.filter((o) => ['StatefulSet', 'Deployment', 'DaemonSet'].includes(o.kind));
const flagValue = (args: string[], flag: string) => args.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
const csiHelpFlags = new Set(execFileSync(process.execPath, [STRATA_MAIN, 'csi', '--help'], { encoding: 'utf8' }).match(/--[a-z0-9-]+/g));
const camel = (name: string) => name.toLowerCase().replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());

/** The container's env as kubelet resolves it (ConfigMaps of the strata overlay, sample pod fields). */
function envOf(strata: K8sObject[], w: K8sObject, c: any): Record<string, string> {
  const fields: Record<string, string> = { 'metadata.namespace': w.metadata.namespace!, 'spec.nodeName': 'node-1', 'metadata.name': `${w.metadata.name}-x` };
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const from = e.valueFrom;
    if (e.value !== undefined) env[e.name] = String(e.value);
    else if (from?.fieldRef) env[e.name] = fields[from.fieldRef.fieldPath];
    else if (from?.configMapKeyRef) {
      const data = named(strata, 'ConfigMap', from.configMapKeyRef.name)?.data ?? {};
      expect(Object.keys(data), `${w.metadata.name}/${c.name} ${e.name}: ConfigMap key`).toContain(from.configMapKeyRef.key);
      env[e.name] = data[from.configMapKeyRef.key];
    } else throw new Error(`${c.name} ${e.name}: an env source this test does not resolve`);
  }
  return env;
}
const expand = (text: string, env: Record<string, string>) =>
  text.replace(/\$\((\w+)\)/g, (ref, name) => {
    if (!(name in env)) throw new Error(`${ref} is not an env var of the container`);
    return env[name];
  });

/** The volume a path inside a container lies on, and the path relative to that mount. */
function volumeAt(c: any, file: string): { volume: string; rest: string; mount: any } {
  const mount = (c.volumeMounts ?? []).filter((m: any) => file === m.mountPath || file.startsWith(m.mountPath + '/')).sort((a: any, b: any) => b.mountPath.length - a.mountPath.length)[0];
  expect(mount, `${c.name}: ${file} is on a volume`).toBeDefined();
  return { volume: mount.name, rest: path.posix.relative(mount.mountPath, file), mount };
}

describe.each(Object.keys(SETUPS) as (keyof typeof SETUPS)[])('k8s/%s CSI driver', (setup) => {
  const objects = build(path.join(K8S, SETUPS[setup].csi));
  const strata = build(path.join(K8S, SETUPS[setup].strata));
  const namespace = named(strata, 'StatefulSet', 'strata-coordinator')!.metadata.namespace!;
  const controller = named(objects, 'Deployment', 'strata-csi-controller')!;
  const node = named(objects, 'DaemonSet', 'strata-csi-node')!;
  const container = (w: K8sObject, name: string) => containersOf(w).find((c) => c.name === name);

  it('renders objects that validate against the Kubernetes OpenAPI schemas, with no unknown fields, in the strata cluster\'s namespace', () => {
    for (const o of objects) {
      const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : [undefined, o.apiVersion];
      const Model = require(`kubernetes-models/${group ? `${group}/` : ''}${version}`)[o.kind];
      expect(Model, `${o.apiVersion} ${o.kind}`).toBeDefined();
      expect(() => new Model(o).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
      if (o.metadata.namespace !== undefined) expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(namespace);
    }
    expect(checkTypes(objects)).toEqual([]);
    const ids = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual(expect.arrayContaining(['CSIDriver/' + DRIVER_NAME, 'StorageClass/strata', 'Deployment/strata-csi-controller', 'DaemonSet/strata-csi-node']));
  });

  it('names the driver as strata csi does: the CSIDriver, the StorageClass\'s provisioner, the kubelet plugin dir', () => {
    const driver = named(objects, 'CSIDriver', DRIVER_NAME)!;
    expect(driver.spec.attachRequired).toBe(false); // no ControllerPublishVolume: strata csi does not serve it
    expect(named(objects, 'StorageClass', 'strata')!.provisioner).toBe(DRIVER_NAME);
    const pluginDir = node.spec.template.spec.volumes.find((v: any) => v.name === 'plugin-dir');
    expect(pluginDir.hostPath.path).toBe(`/var/lib/kubelet/plugins/${DRIVER_NAME}`);
  });

  it('selects its own pods only, and runs as service accounts that exist, bound to roles that exist', () => {
    for (const w of workloads(objects)) {
      expect(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels), w.metadata.name).toBe(true);
      for (const other of [...workloads(objects), ...workloads(strata)]) if (other !== w) expect(matches(w.spec.selector.matchLabels, other.spec.template.metadata.labels), `${w.metadata.name} vs ${other.metadata.name}`).toBe(false);
      for (const other of workloads(strata)) expect(matches(other.spec.selector.matchLabels, w.spec.template.metadata.labels), `${other.metadata.name} selects ${w.metadata.name}`).toBe(false);
      expect(named(objects, 'ServiceAccount', w.spec.template.spec.serviceAccountName), `${w.metadata.name}'s ServiceAccount`).toBeDefined();
    }
    for (const binding of objects.filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding')) {
      expect(named(objects, binding.roleRef.kind, binding.roleRef.name), `${binding.metadata.name} roleRef`).toBeDefined();
      for (const s of binding.subjects) {
        expect(named(objects, 'ServiceAccount', s.name), `${binding.metadata.name} subject`).toBeDefined();
        expect(s.namespace ?? binding.metadata.namespace, `${binding.metadata.name} subject namespace`).toBe(namespace);
      }
    }
    // The provisioner's leader election needs Leases in its namespace; its work needs PVs and PVCs.
    const provisionerRules = objects.filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole').flatMap((r) => r.rules);
    for (const resource of ['leases', 'persistentvolumes', 'persistentvolumeclaims', 'storageclasses', 'events']) expect(provisionerRules.some((r: any) => r.resources.includes(resource)), resource).toBe(true);
  });

  it('runs strata csi with args and STRATA_* settings the real CLI and config schema take, dialing the strata-coordinator Service', () => {
    const service = named(strata, 'Service', 'strata-coordinator')!;
    for (const [w, mode] of [[controller, 'controller'], [node, 'node']] as const) {
      const c = container(w, 'csi-driver');
      expect(c.image).toBe(named(strata, 'StatefulSet', 'strata-coordinator')!.spec.template.spec.containers[0].image);
      expect(c.args[0]).toBe('csi');
      const env = envOf(strata, w, c);
      const flags = c.args.slice(1).map((a: string) => /^(--[a-z0-9-]+)=(.*)$/.exec(a)!);
      for (const [, flag] of flags) expect(csiHelpFlags, `strata csi ${flag}`).toContain(flag);
      const strataEnv = Object.fromEntries(Object.entries(env).filter(([name]) => name.startsWith('STRATA_')));
      for (const name of Object.keys(strataEnv)) expect(Object.keys(csiSchema.shape), `${name} is a csi setting`).toContain(camel(name.slice('STRATA_'.length)));
      const values = Object.fromEntries(flags.map(([, flag, value]: string[]) => [camel(flag.slice(2).replace(/-/g, '_')), expand(value, env)]));
      const config = loadCsiConfig(values, undefined, strataEnv);
      expect(config.mode).toBe(mode);
      expect(config.coordinator).toEqual([`${service.metadata.name}.${namespace}.svc.cluster.local:${service.spec.ports.find((p: any) => p.name === 'grpc').port}`]);
      if (mode === 'node') expect(config.nodeId).toBe('node-1');
      // With auth on, a token file on the strata-csi-token Secret's volume; with it off, none.
      const auth = named(strata, 'ConfigMap', 'strata-config')!.data.auth;
      if (auth === 'off') expect(config.tokenFile).toBeUndefined();
      else {
        const at = volumeAt(c, config.tokenFile!);
        const secret = w.spec.template.spec.volumes.find((v: any) => v.name === at.volume).secret;
        expect(secret.secretName).toBe('strata-csi-token');
        expect(Object.keys(named(secrets, 'Secret', secret.secretName)!.stringData)).toContain(at.rest);
      }
      if (config.tlsCa) expect(named(secrets, 'Secret', w.spec.template.spec.volumes.find((v: any) => v.name === volumeAt(c, config.tlsCa!).volume).secret.secretName)).toBeDefined();
      for (const v of w.spec.template.spec.volumes) if (v.secret) expect(named(secrets, 'Secret', v.secret.secretName), `Secret ${v.secret.secretName}`).toBeDefined();
      for (const c2 of containersOf(w)) expect(c2.resources?.requests?.cpu && c2.resources?.requests?.memory && c2.resources?.limits?.memory, `${c2.name} requests and limits`).toBeTruthy();
    }
  });

  it('gives every sidecar the driver\'s socket on the volume it is served on, and kubelet its host path', () => {
    for (const w of [controller, node]) {
      const driver = container(w, 'csi-driver');
      const socket = volumeAt(driver, flagValue(driver.args, '--endpoint')!.replace(/^unix:\/\//, ''));
      const sidecars = containersOf(w).filter((c) => c !== driver);
      expect(sidecars.length).toBeGreaterThan(0);
      for (const c of sidecars) {
        const at = volumeAt(c, flagValue(c.args, '--csi-address')!);
        expect([at.volume, at.rest], `${w.metadata.name}/${c.name}`).toEqual([socket.volume, socket.rest]);
      }
    }
    const registrar = container(node, 'node-driver-registrar');
    const driver = container(node, 'csi-driver');
    const socket = volumeAt(driver, flagValue(driver.args, '--endpoint')!.replace(/^unix:\/\//, ''));
    const hostDir = node.spec.template.spec.volumes.find((v: any) => v.name === socket.volume).hostPath.path;
    expect(flagValue(registrar.args, '--kubelet-registration-path')).toBe(path.posix.join(hostDir, socket.rest));
    const registration = volumeAt(registrar, '/registration');
    expect(node.spec.template.spec.volumes.find((v: any) => v.name === registration.volume).hostPath.path).toBe('/var/lib/kubelet/plugins_registry');
    expect(container(controller, 'csi-provisioner').args).toContain('--leader-election');
  });

  it('mounts on the node as kubelet needs: privileged root, /dev/fuse, the pods dir at its host path with Bidirectional propagation', () => {
    const driver = container(node, 'csi-driver');
    expect(driver.securityContext).toMatchObject({ privileged: true, runAsUser: 0 });
    const volumes = new Map(node.spec.template.spec.volumes.map((v: any) => [v.name, v]));
    const pods = driver.volumeMounts.find((m: any) => m.mountPath === '/var/lib/kubelet/pods');
    expect(pods.mountPropagation).toBe('Bidirectional');
    // Kubelet's target paths are host paths: they must mean the same inside the container.
    expect((volumes.get(pods.name) as any).hostPath.path).toBe('/var/lib/kubelet/pods');
    const fuse = driver.volumeMounts.find((m: any) => m.mountPath === '/dev/fuse');
    expect((volumes.get(fuse.name) as any).hostPath).toEqual({ path: '/dev/fuse', type: 'CharDevice' });
    // A restarted node plugin takes its mounts with it: it is never restarted for a probe, nor rolled on apply.
    expect(driver.livenessProbe).toBeUndefined();
    expect(node.spec.updateStrategy.type).toBe('OnDelete');
  });

  it('probes the controller through the livenessprobe sidecar\'s port', () => {
    const driver = container(controller, 'csi-driver');
    const port = driver.ports.find((p: any) => p.name === driver.livenessProbe.httpGet.port).containerPort;
    expect(flagValue(container(controller, 'liveness-probe').args, '--http-endpoint')).toBe(`:${port}`);
  });
});
