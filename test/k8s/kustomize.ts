// The part of `kustomize build` that k8s/ uses, for tests (no kubectl or kustomize binary here,
// nor an npm package that renders kustomizations): resources, namespace, images, replicas,
// labels (metadata only) and strategic-merge patches. Anything else in a kustomization throws,
// so the manifests cannot drift past what this renders the way kustomize does.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

/* eslint-disable @typescript-eslint/no-explicit-any -- manifests are untyped YAML until validated */
export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: any }; [k: string]: any };

const SUPPORTED = new Set(['apiVersion', 'kind', 'resources', 'namespace', 'images', 'replicas', 'labels', 'patches']);
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'StorageClass', 'CSIDriver', 'PersistentVolume']);
const WORKLOADS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet']);

/** The YAML documents of a file, empty ones dropped; a YAML error throws with the file's name. */
export function readYamlFile(file: string): any[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).flatMap((doc) => {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0].message}`);
    const value = doc.toJS();
    return value == null ? [] : [value];
  });
}

/** What `kustomize build dir` prints, as objects (in resource order). */
export function build(dir: string): K8sObject[] {
  const file = path.join(dir, 'kustomization.yaml');
  if (!existsSync(file)) throw new Error(`${dir}: no kustomization.yaml`);
  const [k] = readYamlFile(file);
  for (const key of Object.keys(k)) if (!SUPPORTED.has(key)) throw new Error(`${file}: kustomization field '${key}' is not rendered by test/k8s/kustomize.ts`);
  let objects: K8sObject[] = [];
  for (const resource of k.resources ?? []) {
    const at = path.resolve(dir, resource);
    objects.push(...(statSync(at).isDirectory() ? build(at) : (readYamlFile(at) as K8sObject[])));
  }
  for (const patch of k.patches ?? []) {
    if (patch.target || patch.patch || !patch.path) throw new Error(`${file}: only patches with a path (strategic merge, targeted by their own kind and name) are rendered`);
    const docs = readYamlFile(path.resolve(dir, patch.path));
    // One patch per file, the form every kustomize version reads the same way.
    if (docs.length !== 1) throw new Error(`${patch.path}: one strategic merge patch per file`);
    for (const doc of docs) {
      const index = objects.findIndex((o) => o.kind === doc.kind && o.metadata.name === doc.metadata?.name);
      if (index < 0) throw new Error(`${patch.path}: no ${doc.kind} ${doc.metadata?.name} to patch`);
      objects[index] = strategicMerge(objects[index], doc) as K8sObject;
    }
  }
  if (k.namespace) {
    objects = objects.map((o) => (CLUSTER_SCOPED.has(o.kind) ? o : { ...o, metadata: { ...o.metadata, namespace: k.namespace } }));
  }
  for (const r of k.replicas ?? []) {
    const target = objects.find((o) => WORKLOADS.has(o.kind) && o.metadata.name === r.name);
    if (!target) throw new Error(`${file}: replicas for unknown workload ${r.name}`);
    target.spec.replicas = r.count;
  }
  for (const image of k.images ?? []) objects.forEach((o) => setImage(o, image));
  for (const label of k.labels ?? []) {
    if (label.includeSelectors || label.includeTemplates) throw new Error(`${file}: labels with includeSelectors/includeTemplates are not rendered`);
    for (const o of objects) o.metadata.labels = { ...o.metadata.labels, ...label.pairs };
  }
  return objects;
}

// Strategic merge keys of the lists k8s/ patches (Kubernetes' patchMergeKey): other lists replace.
const MERGE_KEYS: Record<string, (item: any) => string | undefined> = {
  containers: (i) => i.name,
  initContainers: (i) => i.name,
  env: (i) => i.name,
  volumes: (i) => i.name,
  volumeMounts: (i) => i.mountPath,
  ports: (i) => (i.containerPort !== undefined ? String(i.containerPort) : i.port !== undefined ? String(i.port) : undefined),
  imagePullSecrets: (i) => i.name,
};

/** A strategic merge patch: maps merge, null deletes, lists with a merge key merge by it, other lists replace. */
export function strategicMerge(base: any, patch: any, key = ''): any {
  if (Array.isArray(patch)) {
    const keyOf = MERGE_KEYS[key];
    if (!keyOf || !Array.isArray(base)) return structuredClone(patch);
    const out = structuredClone(base);
    for (const item of patch) {
      const id = keyOf(item);
      if (id === undefined) throw new Error(`strategic merge: a ${key} item without its merge key`);
      const at = out.findIndex((b: any) => keyOf(b) === id);
      if (at < 0) out.push(structuredClone(item));
      else out[at] = strategicMerge(out[at], item, key);
    }
    return out;
  }
  if (patch === null || typeof patch !== 'object') return patch;
  if (Object.keys(patch).some((k) => k.startsWith('$'))) throw new Error('strategic merge: $patch directives are not rendered');
  const out = base && typeof base === 'object' && !Array.isArray(base) ? structuredClone(base) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = strategicMerge(out[k], v, k);
  }
  return out;
}

/** Every pod template's containers (init too), of workloads; [] for other kinds. */
export function containersOf(o: K8sObject): any[] {
  const spec = o.spec?.template?.spec;
  return spec ? [...(spec.initContainers ?? []), ...(spec.containers ?? [])] : [];
}

/** kustomize's images transformer: name matches the image without its tag or digest. */
function setImage(o: K8sObject, image: { name: string; newName?: string; newTag?: string; digest?: string }): void {
  for (const c of containersOf(o)) {
    const [, name] = /^([^@]+?)(?::[^:/@]+)?(?:@.*)?$/.exec(c.image) ?? [];
    if (name !== image.name) continue;
    const tag = image.digest ? `@${image.digest}` : image.newTag ? `:${image.newTag}` : (c.image.slice(name.length) as string);
    c.image = (image.newName ?? name) + tag;
  }
}
