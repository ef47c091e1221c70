// k8s/ rendered as `kustomize build` would (test/k8s/kustomize.ts), every object validated
// against the Kubernetes OpenAPI schemas (kubernetes-models) and cross-checked: selectors, the
// ConfigMap and Secret keys referenced, ports against listen flags, probes, stable names, and
// each strata container's args and STRATA_* settings parsed by the real CLI and config schema.
import { execFileSync, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { coordinatorSchema, dataNodeSchema, loadConfig } from '../../common/config.js';
import { STRATA_MAIN } from '../harness/cluster.js';
import { build, containersOf, readYamlFile, type K8sObject } from './kustomize.js';
import { checkTypes } from './k8s-types.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered manifests are plain objects */
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const K8S = path.join(REPO_ROOT, 'k8s');
const OVERLAYS = { base: 'base', dev: 'overlays/dev', prod: 'overlays/prod' } as const;
const rendered = Object.fromEntries(Object.entries(OVERLAYS).map(([name, dir]) => [name, build(path.join(K8S, dir))])) as Record<keyof typeof OVERLAYS, K8sObject[]>;
/** The Secrets the manifests expect users to create (k8s/secrets/secrets.example.yaml). */
const secrets: K8sObject[] = readYamlFile(path.join(K8S, 'secrets/secrets.example.yaml'));
const ROLE_SCHEMAS = { coordinator: coordinatorSchema, datanode: dataNodeSchema } as const;
type Role = keyof typeof ROLE_SCHEMAS;

const require = createRequire(import.meta.url);
const workloads = (objects: K8sObject[]) => objects.filter((o) => ['StatefulSet', 'Deployment', 'DaemonSet'].includes(o.kind));
const named = (objects: K8sObject[], kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name);
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
/** The strata role a container runs (its first arg), if it runs the strata image. */
const roleOf = (c: any): Role | undefined => (/(^|\/)strata(:|@|$)/.test(c.image) && c.args?.[0] in ROLE_SCHEMAS ? c.args[0] : undefined);

/** `--flag=value` args as [flag, value]; a bare `--flag` gets 'true'. */
function flagsOf(args: string[]): [string, string][] {
  return args.slice(1).map((arg) => {
    const m = /^(--[a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (!m) throw new Error(`arg '${arg}' is not --flag=value`);
    return [m[1], m[2] ?? 'true'];
  });
}

/** What the kubelet substitutes for $(VAR) in args: env values, with sample pod fields. */
function podEnv(objects: K8sObject[], w: K8sObject, c: any): Record<string, string> {
  const env: Record<string, string> = {};
  const fields: Record<string, string> = {
    'metadata.name': `${w.metadata.name}-0`,
    'metadata.namespace': w.metadata.namespace ?? 'default',
    'status.podIP': '10.1.2.3',
  };
  for (const e of c.env ?? []) {
    const from = e.valueFrom;
    if (e.value !== undefined) env[e.name] = String(e.value).replace(/\$\((\w+)\)/g, (_, v) => env[v] ?? `$(${v})`);
    else if (from?.fieldRef) env[e.name] = fields[from.fieldRef.fieldPath] ?? w.spec.template.metadata.labels?.[/labels\['(.*)'\]/.exec(from.fieldRef.fieldPath)?.[1] ?? ''] ?? '';
    else if (from?.configMapKeyRef) env[e.name] = named(objects, 'ConfigMap', from.configMapKeyRef.name)?.data?.[from.configMapKeyRef.key] ?? '';
    else if (from?.secretKeyRef) env[e.name] = named(secrets, 'Secret', from.secretKeyRef.name)?.stringData?.[from.secretKeyRef.key] ?? '';
  }
  return env;
}
const expand = (text: string, env: Record<string, string>) =>
  text.replace(/\$\((\w+)\)/g, (ref, name) => {
    if (!(name in env)) throw new Error(`${ref} is not an env var of the container`);
    return env[name];
  });

const helpFlags = new Map<Role, Set<string>>();
/** The long flags `strata ROLE --help` lists. */
function flagsOfRole(role: Role): Set<string> {
  if (!helpFlags.has(role)) {
    const help = execFileSync(process.execPath, [STRATA_MAIN, role, '--help'], { encoding: 'utf8' });
    helpFlags.set(role, new Set(help.match(/--[a-z0-9-]+/g)));
  }
  return helpFlags.get(role)!;
}
/** Where /metrics, /healthz and /readyz are served. */
const METRICS_FLAG = '--metrics-listen';
const camel = (flag: string) => flag.slice(2).replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());

describe.each(Object.keys(OVERLAYS) as (keyof typeof OVERLAYS)[])('k8s/%s', (overlay) => {
  const objects = rendered[overlay];

  it('renders objects that validate against the Kubernetes OpenAPI schemas, with no unknown fields', () => {
    expect(objects.length).toBeGreaterThan(8);
    for (const o of objects) {
      const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : [undefined, o.apiVersion];
      const mod: Record<string, any> = require(`kubernetes-models/${group ? `${group}/` : ''}${version}`);
      const Model = mod[o.kind];
      expect(Model, `${o.apiVersion} ${o.kind}`).toBeDefined();
      expect(() => new Model(o).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
    }
    expect(checkTypes(objects)).toEqual([]);
    const ids = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('selects pods by labels they carry: Services, workload selectors, PodDisruptionBudgets, anti-affinity', () => {
    const pods = workloads(objects).map((w) => ({ w, labels: w.spec.template.metadata.labels }));
    for (const w of workloads(objects)) {
      expect(matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels), w.metadata.name).toBe(true);
      const affinity = w.spec.template.spec.affinity?.podAntiAffinity;
      const terms = [...(affinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []), ...(affinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []).map((p: any) => p.podAffinityTerm)];
      expect(terms.length, `${w.metadata.name} anti-affinity`).toBeGreaterThan(0);
      for (const t of terms) expect(matches(t.labelSelector.matchLabels, w.spec.template.metadata.labels), `${w.metadata.name} anti-affinity`).toBe(true);
      for (const t of w.spec.template.spec.topologySpreadConstraints ?? []) expect(matches(t.labelSelector.matchLabels, w.spec.template.metadata.labels)).toBe(true);
      const pdbs = objects.filter((o) => o.kind === 'PodDisruptionBudget' && matches(o.spec.selector.matchLabels, w.spec.template.metadata.labels));
      expect(pdbs.length, `${w.metadata.name} PodDisruptionBudget`).toBe(1);
      if (w.kind === 'StatefulSet') {
        const svc = named(objects, 'Service', w.spec.serviceName);
        expect(svc?.spec.clusterIP, `${w.metadata.name}'s serviceName is a headless Service`).toBe('None');
        expect(matches(svc!.spec.selector, w.spec.template.metadata.labels)).toBe(true);
      }
      // No two workloads' pods answer the same selector.
      for (const other of pods) if (other.w !== w) expect(matches(w.spec.selector.matchLabels, other.labels)).toBe(false);
    }
    for (const svc of objects.filter((o) => o.kind === 'Service')) {
      const selected = pods.filter((p) => matches(svc.spec.selector, p.labels));
      expect(selected.length, `Service ${svc.metadata.name} selects one workload`).toBe(1);
      const ports = containersOf(selected[0].w).flatMap((c) => c.ports ?? []);
      for (const p of svc.spec.ports) {
        const target = ports.find((cp: any) => (typeof p.targetPort === 'string' ? cp.name === p.targetPort : cp.containerPort === (p.targetPort ?? p.port)));
        expect(target, `Service ${svc.metadata.name} port ${p.name}`).toBeDefined();
      }
    }
    for (const pdb of objects.filter((o) => o.kind === 'PodDisruptionBudget')) expect(pods.some((p) => matches(pdb.spec.selector.matchLabels, p.labels)), pdb.metadata.name).toBe(true);
    for (const policy of objects.filter((o) => o.kind === 'NetworkPolicy')) {
      expect(pods.some((p) => matches(policy.spec.podSelector.matchLabels, p.labels)), policy.metadata.name).toBe(true);
      for (const peer of policy.spec.ingress.flatMap((rule: any) => rule.from ?? [])) expect(pods.some((p) => matches(peer.podSelector.matchLabels, p.labels)), `${policy.metadata.name} from`).toBe(true);
    }
  });

  it('references only ConfigMap keys it ships and Secret keys of k8s/secrets/secrets.example.yaml, with files under their mounts', () => {
    const secretKeys = (name: string) => Object.keys({ ...named(secrets, 'Secret', name)?.stringData, ...named(secrets, 'Secret', name)?.data });
    for (const w of workloads(objects)) {
      const volumes = new Map<string, any>((w.spec.template.spec.volumes ?? []).map((v: any) => [v.name, v]));
      const claims = new Set((w.spec.volumeClaimTemplates ?? []).map((t: any) => t.metadata.name));
      for (const v of volumes.values()) {
        if (v.secret) {
          expect(secretKeys(v.secret.secretName).length, `Secret ${v.secret.secretName}`).toBeGreaterThan(0);
          for (const item of v.secret.items ?? []) expect(secretKeys(v.secret.secretName)).toContain(item.key);
        }
        if (v.configMap) expect(named(objects, 'ConfigMap', v.configMap.name), `ConfigMap ${v.configMap.name}`).toBeDefined();
      }
      for (const c of containersOf(w)) {
        for (const m of c.volumeMounts ?? []) expect(volumes.has(m.name) || claims.has(m.name), `${c.name} mounts ${m.name}`).toBe(true);
        for (const e of c.env ?? []) {
          const cm = e.valueFrom?.configMapKeyRef;
          if (cm) expect(Object.keys(named(objects, 'ConfigMap', cm.name)?.data ?? {}), `${c.name} ${e.name}`).toContain(cm.key);
          const s = e.valueFrom?.secretKeyRef;
          if (s) expect(secretKeys(s.name), `${c.name} ${e.name}`).toContain(s.key);
        }
        // A file setting (node secret, TLS files) names a key of a Secret mounted where it points.
        const env = podEnv(objects, w, c);
        for (const [name, value] of Object.entries(env)) {
          if (!/^STRATA_(.*_FILE|TLS_CA|TLS_CERT|TLS_KEY)$/.test(name) || !value) continue;
          const mount = (c.volumeMounts ?? []).find((m: any) => value.startsWith(m.mountPath + '/'));
          expect(mount, `${c.name} ${name}=${value} is under a mount`).toBeDefined();
          const secret = volumes.get(mount.name)?.secret;
          expect(secret, `${value} is in a Secret volume`).toBeDefined();
          expect(secretKeys(secret.secretName)).toContain(value.slice(mount.mountPath.length + 1));
        }
      }
    }
  });

  it('runs strata containers whose args and STRATA_* settings the real CLI and config schema take', () => {
    let checked = 0;
    for (const w of workloads(objects)) {
      for (const c of containersOf(w)) {
        const role = roleOf(c);
        if (!role) continue;
        checked++;
        const env = podEnv(objects, w, c);
        const flags = flagsOf(c.args);
        for (const [flag] of flags) expect(flagsOfRole(role), `${w.metadata.name}: strata ${role} ${flag}`).toContain(flag);
        const strataEnv = Object.fromEntries(Object.entries(env).filter(([name]) => name.startsWith('STRATA_')));
        const keys = Object.keys(ROLE_SCHEMAS[role].shape);
        for (const name of Object.keys(strataEnv)) expect(keys, `${w.metadata.name}: ${name} is a ${role} setting`).toContain(camel('--' + name.slice('STRATA_'.length).toLowerCase().replace(/_/g, '-')));
        const values = Object.fromEntries(flags.map(([flag, value]) => [camel(flag), expand(value, env)]));
        expect(() => loadConfig(ROLE_SCHEMAS[role] as any, values, { env: strataEnv }), `${w.metadata.name} config`).not.toThrow();
      }
    }
    expect(checked).toBe(2);
  });

  it('runs etcd with flags etcd takes and a member list matching its pods', () => {
    const etcd = named(objects, 'StatefulSet', 'strata-etcd')!;
    const [c] = etcd.spec.template.spec.containers;
    // The Debian etcd on this machine (3.4) has every flag the image's 3.5 is given here.
    const help = spawnSync('etcd', ['--help'], { encoding: 'utf8' });
    const known = new Set(`${help.stdout}${help.stderr}`.match(/--[a-z0-9-]+/g));
    const flags = flagsOf(['etcd', ...c.args]);
    for (const [flag] of flags) expect(known, `etcd ${flag}`).toContain(flag);
    const env = podEnv(objects, etcd, c);
    const value = (flag: string) => expand(flags.find(([f]) => f === flag)![1], env);
    const members = value('--initial-cluster').split(',').map((m) => m.split('='));
    expect(members.map(([name]) => name)).toEqual([...Array(etcd.spec.replicas).keys()].map((i) => `strata-etcd-${i}`));
    // This pod's entry is the peer URL it advertises, under its own --name.
    expect(members.find(([name]) => name === value('--name'))?.[1]).toBe(value('--initial-advertise-peer-urls'));
  });

  it(`passes ${METRICS_FLAG} to every strata role`, () => {
    for (const w of workloads(objects)) for (const c of containersOf(w)) if (roleOf(c)) expect(flagsOf(c.args).map(([f]) => f)).toContain(METRICS_FLAG);
  });

  it('binds every listener off loopback, on a container port, and probes /healthz and /readyz on the metrics port', () => {
    for (const w of workloads(objects)) {
      for (const c of containersOf(w)) {
        const role = roleOf(c);
        const ports = new Map<number, string>((c.ports ?? []).map((p: any) => [p.containerPort, p.name]));
        const byName = new Map<string, number>((c.ports ?? []).map((p: any) => [p.name, p.containerPort]));
        const env = podEnv(objects, w, c);
        const listens = role
          ? flagsOf(c.args).filter(([f]) => /listen$/.test(f)).map(([f, v]) => [f, expand(v, env)])
          : (c.args as string[]).filter((a) => /^--listen-.*urls=/.test(a)).flatMap((a) => a.split('=')[1].split(',').map((u) => [a.split('=')[0], new URL(u).host]));
        expect(listens.length, c.name).toBeGreaterThan(0);
        for (const [flag, at] of listens) {
          const host = at.slice(0, at.lastIndexOf(':'));
          const port = Number(at.slice(at.lastIndexOf(':') + 1));
          expect(host, `${c.name} ${flag}`).not.toMatch(/^(127\.|localhost$|\[?::1)/);
          expect(ports.has(port), `${c.name} ${flag} port ${port} is a container port`).toBe(true);
        }
        // Every container port is something the process listens on.
        for (const port of ports.keys()) expect(listens.some(([, at]) => at.endsWith(`:${port}`)), `${c.name} containerPort ${port}`).toBe(true);
        const metricsPort = byName.get('metrics');
        expect(metricsPort, `${c.name} has a metrics port`).toBeDefined();
        const annotations = w.spec.template.metadata.annotations ?? {};
        expect(annotations['prometheus.io/scrape']).toBe('true');
        expect(annotations['prometheus.io/port']).toBe(String(metricsPort));
        expect(annotations['prometheus.io/path']).toBe('/metrics');
        const alive = role ? '/healthz' : '/health?serializable=true';
        for (const [probe, route] of [['startupProbe', alive], ['livenessProbe', alive], ['readinessProbe', role ? '/readyz' : '/health']]) {
          const get = c[probe]?.httpGet;
          expect(get?.path, `${c.name} ${probe}`).toBe(route);
          expect(typeof get.port === 'string' ? byName.get(get.port) : get.port, `${c.name} ${probe} port`).toBe(metricsPort);
          // A role with TLS serves its metrics port over HTTPS (with its node certificate).
          expect(get.scheme ?? 'HTTP', `${c.name} ${probe} scheme`).toBe(role && env.STRATA_TLS_CERT ? 'HTTPS' : 'HTTP');
        }
        expect(annotations['prometheus.io/scheme'] ?? 'http', `${c.name} scrape scheme`).toBe(role && env.STRATA_TLS_CERT ? 'https' : 'http');
        if (role) expect(listens.find(([f]) => f === METRICS_FLAG)?.[1]).toBe(`0.0.0.0:${metricsPort}`);
        expect(w.spec.template.spec.automountServiceAccountToken, `${w.metadata.name} needs no API token`).toBe(false);
        expect(c.resources?.requests?.cpu && c.resources?.requests?.memory && c.resources?.limits?.memory, `${c.name} requests and limits`).toBeTruthy();
      }
    }
  });

  it('names peers by stable StatefulSet pod names that exist, all of them in each list', () => {
    const replicas = (name: string) => named(objects, 'StatefulSet', name)!.spec.replicas as number;
    const podNames = /([a-z0-9-]+)-(\d+)\.([a-z0-9-]+)\.\$\(POD_NAMESPACE\)\.svc\.\$\(CLUSTER_DOMAIN\)/g;
    const lists: [string, string, string][] = [];
    for (const w of workloads(objects)) {
      for (const c of containersOf(w)) {
        for (const arg of c.args ?? []) {
          const [flag, value = ''] = arg.split(/=(.*)/s);
          for (const [, set, ordinal, service] of value.matchAll(podNames)) {
            const sts = named(objects, 'StatefulSet', set);
            expect(sts, `${arg}: StatefulSet ${set}`).toBeDefined();
            expect(sts!.spec.serviceName, arg).toBe(service);
            expect(Number(ordinal)).toBeLessThan(sts!.spec.replicas);
            lists.push([`${w.metadata.name} ${flag}`, set, ordinal]);
          }
          // A pod naming itself as a host uses the name its own headless Service gives it.
          if (value.includes('$(POD_NAME).')) expect(value, arg).toContain(`$(POD_NAME).${w.spec.serviceName}.$(POD_NAMESPACE).svc.$(CLUSTER_DOMAIN)`);
        }
      }
    }
    // A list that names one pod of a set names every pod of it (etcd --initial-cluster, --meta, --coordinators).
    for (const where of new Set(lists.map(([w]) => w))) {
      for (const set of new Set(lists.filter(([w]) => w === where).map(([, s]) => s))) {
        const ordinals = lists.filter(([w, s]) => w === where && s === set).map(([, , o]) => Number(o));
        expect(ordinals.sort(), `${where} names every ${set} pod`).toEqual([...Array(replicas(set)).keys()]);
      }
    }
    expect(lists.some(([w]) => w.startsWith('strata-datanode --coordinators'))).toBe(true);
    expect(lists.some(([w]) => w.startsWith('strata-coordinator --meta'))).toBe(true);
    expect(replicas('strata-etcd')).toBe(3);
    expect(replicas('strata-coordinator')).toBeGreaterThanOrEqual(2);
  });
});
