// The Dockerfile, checked without a Docker engine: what it copies exists and reaches the build
// context, the build stage compiles every source directory, the entrypoint is the strata CLI
// under tini, the runtime user is not root, and the runtime stage installs the Debian package of
// every shared library that the image's native addons link (ldd, dpkg -S on this bookworm host).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DockerfileParser, type Copy, type Instruction } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const text = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const dockerfile = DockerfileParser.parse(text);
const froms = dockerfile.getFROMs();
/** Instructions by stage name, in order. */
const stages = new Map<string, Instruction[]>(
  froms.map((from, i) => {
    const start = from.getRange().start.line;
    const end = froms[i + 1]?.getRange().start.line ?? Infinity;
    const own = dockerfile.getInstructions().filter((ins) => ins.getRange().start.line > start && ins.getRange().start.line < end);
    return [from.getBuildStage() ?? String(i), own];
  }),
);
const args = (ins: Instruction) => ins.getArguments().map((a) => a.getValue());
const copies = (stage: string) => (stages.get(stage) ?? []).filter((ins) => ins.getKeyword() === 'COPY');
const fromFlag = (ins: Instruction) => (ins as Copy).getFromFlag()?.getValue();
const runText = (stage: string) => (stages.get(stage) ?? []).filter((ins) => ins.getKeyword() === 'RUN').map((ins) => ins.getArgumentsContent() ?? '').join('\n');
/** COPY's sources: every argument but the last and the --flags. */
const sourcesOf = (ins: Instruction) => args(ins).filter((a) => !a.startsWith('--')).slice(0, -1);

/** .dockerignore as the builder reads it (Go filepath.Match per segment, ** any depth; no ! used here). */
const ignored: RegExp[] = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line && !line.startsWith('#'))
  .map((pattern) => {
    expect(pattern.startsWith('!'), 'no exceptions in .dockerignore (this test does not read them)').toBe(false);
    const body = pattern.replace(/^\/+|\/+$/g, '').split('/').map((seg) => (seg === '**' ? '.*' : seg.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]'))).join('/');
    // A directory pattern excludes what is under it.
    return new RegExp(`^${body}(/.*)?$`);
  });
const isIgnored = (file: string) => ignored.some((re) => re.test(file));

describe('Dockerfile', () => {
  it('is valid Dockerfile syntax, without warnings (dockerfile-utils validate)', () => {
    expect(validate(text).map((d) => `line ${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
  });

  it('has a build stage on node:20-bookworm and a final runtime stage on node:20-bookworm-slim', () => {
    expect(froms.map((f) => [`${f.getImageName()}:${f.getImageTag()}`, f.getBuildStage()])).toEqual([
      ['node:20-bookworm', 'build'],
      ['node:20-bookworm-slim', 'runtime'],
    ]);
    const build = runText('build');
    for (const pkg of ['g++', 'make', 'python3', 'pkg-config', 'libfuse3-dev']) expect(build.split(/\s+/), pkg).toContain(pkg);
    expect(build).toMatch(/npm ci[\s\S]*npm run build[\s\S]*npm prune --omit=dev/);
    // npm ci runs the install script (native/build.mjs) and prepare (tsc): every source is in by then.
    const npmCi = stages.get('build')!.find((ins) => ins.getKeyword() === 'RUN' && /npm ci/.test(ins.getArgumentsContent() ?? ''))!;
    for (const copy of copies('build')) expect(copy.getRange().start.line, args(copy).join(' ')).toBeLessThan(npmCi.getRange().start.line);
  });

  it('copies into the build stage only files of the repository that .dockerignore lets through', () => {
    const sources = copies('build').flatMap((ins) => {
      expect(fromFlag(ins), 'the build stage copies from the context').toBeUndefined();
      return sourcesOf(ins);
    });
    expect(sources.length).toBeGreaterThan(5);
    for (const source of sources) {
      expect(existsSync(path.join(ROOT, source)), `${source} exists`).toBe(true);
      expect(isIgnored(source), `${source} is not in .dockerignore`).toBe(false);
    }
    // tsc compiles what tsconfig includes; every non-test directory of it must be in the image.
    const tsconfig = JSON.parse(readFileSync(path.join(ROOT, 'tsconfig.json'), 'utf8'));
    for (const dir of tsconfig.include as string[]) if (!['test', 'bench'].includes(dir)) expect(sources, `tsconfig includes ${dir}`).toContain(dir);
    for (const file of ['package.json', 'package-lock.json', 'tsconfig.json', 'binding.gyp', 'native', 'proto']) expect(sources).toContain(file);
    // What runs at start-up is not left out of the context by a broad pattern.
    for (const file of ['cli/main.ts', 'proto/strata.proto', 'native/fuse3.cc', 'native/build.mjs']) expect(isIgnored(file), file).toBe(false);
  });

  it('copies into the runtime stage what the build stage made or copied: the CLI, its modules, the addon, the proto', () => {
    const made = new Set(['/app/dist', '/app/node_modules', '/app/build/Release/strata_fuse3.node']);
    const copiedToBuild = new Set(copies('build').flatMap(sourcesOf).map((s) => `/app/${s}`));
    const runtime = copies('runtime');
    expect(runtime.length).toBeGreaterThan(0);
    for (const ins of runtime) {
      expect(fromFlag(ins)).toBe('build');
      for (const source of sourcesOf(ins)) {
        expect(made.has(source) || copiedToBuild.has(source), `${source} comes from the build stage`).toBe(true);
        // This worktree was built as the image builds: the product exists here too.
        expect(existsSync(path.join(ROOT, source.slice('/app/'.length))), `${source} is built by npm run build / build:native`).toBe(true);
      }
    }
    const targets = runtime.map((ins) => args(ins).at(-1));
    for (const dir of ['./dist', './node_modules', './proto', './build/Release/strata_fuse3.node']) expect(targets).toContain(dir);
    expect(existsSync(path.join(ROOT, 'dist/cli/main.js'))).toBe(true);
  });

  it('builds code that imports only production dependencies (all that npm prune --omit=dev keeps)', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    const kept = new Set(Object.keys(pkg.dependencies));
    const tsconfig = JSON.parse(readFileSync(path.join(ROOT, 'tsconfig.json'), 'utf8'));
    const missing: string[] = [];
    let files = 0;
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const at = path.join(dir, name);
        if (statSync(at).isDirectory()) walk(at);
        else if (name.endsWith('.js') && !name.endsWith('.test.js')) {
          files++;
          for (const m of readFileSync(at, 'utf8').matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\(\s*|\bimport\s+)['"]([^.'"/][^'"]*)['"]/g)) {
            const name = m[1].startsWith('@') ? m[1].split('/').slice(0, 2).join('/') : m[1].split('/')[0];
            if (m[1].startsWith('node:') || builtinModules.includes(name) || kept.has(name)) continue;
            missing.push(`${path.relative(ROOT, at)} imports ${m[1]}`);
          }
        }
      }
    };
    for (const dir of tsconfig.include as string[]) if (!['test', 'bench'].includes(dir)) walk(path.join(ROOT, 'dist', dir));
    expect(files).toBeGreaterThan(50);
    expect(missing).toEqual([]);
  });

  it('runs the strata CLI under tini as PID 1, as a non-root user', () => {
    const runtime = stages.get('runtime')!;
    const entrypoint = runtime.filter((ins) => ins.getKeyword() === 'ENTRYPOINT').at(-1)!;
    expect(JSON.parse(entrypoint.getArgumentsContent()!)).toEqual(['/usr/bin/tini', '--', 'node', '/app/dist/cli/main.js']);
    const workdirs = runtime.filter((ins) => ins.getKeyword() === 'WORKDIR').map((ins) => args(ins)[0]);
    expect(workdirs[0], 'the runtime COPYs land under /app').toBe('/app');
    const user = runtime.filter((ins) => ins.getKeyword() === 'USER').at(-1);
    expect(user && args(user)[0]).toMatch(/^[1-9]\d*(:[1-9]\d*)?$/);
    expect(runText('runtime')).toMatch(new RegExp(`useradd[^\\n]*--uid ${args(user!)[0].split(':')[0]}\\b`));
    expect(runText('runtime').split(/\s+/)).toContain('tini');
  });

  it('installs in the runtime stage the Debian package of every shared library the native addons link', () => {
    const installed = new Set(
      [...runText('runtime').matchAll(/apt-get install ([^&]*)/g)].flatMap((m) => m[1].split(/\s+/).filter((w) => w && !w.startsWith('-'))),
    );
    // The slim image's own node binary links these, so they are always there.
    const base = new Set(['libc6', 'libgcc-s1', 'libstdc++6']);
    const addons = imageAddons();
    expect(addons.map((a) => path.basename(a))).toEqual(expect.arrayContaining(['strata_fuse3.node', 'node.napi.node', 'classic-level.node']));
    const needed = new Map<string, string>();
    for (const addon of addons) {
      for (const line of execFileSync('ldd', [addon], { encoding: 'utf8' }).split('\n')) {
        expect(line, `${addon}: a library ldd cannot find`).not.toMatch(/not found/);
        const m = /=>\s+(\/\S+)/.exec(line);
        if (m) needed.set(m[1], path.relative(ROOT, addon));
      }
    }
    const packages = new Map<string, string>();
    for (const [lib, addon] of needed) {
      packages.set(debianPackageOf(lib), `${lib} (${addon})`);
    }
    expect([...packages.keys()]).toEqual(expect.arrayContaining(['libfuse3-3', 'libfuse2']));
    for (const [pkg, why] of packages) expect(installed.has(pkg) || base.has(pkg), `${pkg} for ${why}`).toBe(true);
  });
});

/** The Debian package that ships `lib` (merged /usr: dpkg may know it under /lib or /usr/lib, or by its real name). */
function debianPackageOf(lib: string): string {
  const real = realpathSync(lib);
  const names = [lib, real].flatMap((p) => [p, p.startsWith('/usr/') ? p.slice(4) : `/usr${p}`]);
  for (const name of names) {
    try {
      return execFileSync('dpkg', ['-S', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split(':')[0].trim();
    } catch {}
  }
  throw new Error(`no Debian package ships ${lib}`);
}

/** The .node files the image loads on linux x64 glibc: the addon and production dependencies'. */
function imageAddons(): string[] {
  // npm ls exits non-zero when node_modules lags package.json (a dependency not installed yet); what it lists still counts.
  const prod = spawnSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, encoding: 'utf8' })
    .stdout.split('\n')
    .filter((dir) => dir.includes(`${path.sep}node_modules${path.sep}`));
  const found = new Set<string>([path.join(ROOT, 'build/Release/strata_fuse3.node')]);
  const walk = (dir: string, depth: number) => {
    for (const name of readdirSync(dir)) {
      const at = path.join(dir, name);
      if (name === 'node_modules' || name === 'example' || name === 'obj.target') continue;
      const stat = statSync(at);
      if (stat.isDirectory() && depth < 4) walk(at, depth + 1);
      // Prebuilds for other platforms, musl and Electron are never loaded here.
      else if (name.endsWith('.node') && !/musl|electron|arm|darwin|win32|ia32/.test(at.slice(ROOT.length))) found.add(at);
    }
  };
  for (const dir of prod) if (existsSync(dir)) walk(dir, 0);
  return [...found];
}
