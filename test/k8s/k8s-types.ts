// Unknown fields in manifests: the OpenAPI schemas kubernetes-models validates against allow any
// extra property (as the API server does, dropping it), so a misspelt field would pass. The
// package's TypeScript interfaces list every field: type-checking each object as a literal of its
// kind's interface makes an excess property (a typo, a field at the wrong level) an error.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import type { K8sObject } from './kustomize.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** One line per type error of `objects` against kubernetes-models' interfaces; [] when none. */
export function checkTypes(objects: readonly K8sObject[]): string[] {
  const file = path.join(HERE, '__rendered_manifests__.ts');
  const lines = objects.map((o, i) => {
    const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : [undefined, o.apiVersion];
    const module = `kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`;
    return `import type { I${o.kind} as T${i} } from '${module}';\nexport const o${i}: T${i} = ${JSON.stringify(o)};`;
  });
  const source = lines.join('\n') + '\n';
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, language, ...rest) => (path.resolve(name) === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest));
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (!d.file || d.start === undefined) return message;
    const line = d.file.getLineAndCharacterOfPosition(d.start).line;
    const index = Math.floor(line / 2);
    const o = objects[index];
    return o ? `${o.kind}/${o.metadata.name}: ${message}` : message;
  });
}
