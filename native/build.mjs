// npm's install step: builds the libfuse 3 binding (build/Release/strata_fuse3.node) with node-gyp.
// A failed build does not fail `npm ci`: the mount then says what to install and how to rebuild
// (fuse/lowlevel/binding.ts), and everything else works without it.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

function nodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  for (const from of [root, path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm')]) {
    try {
      return require.resolve('node-gyp/bin/node-gyp.js', { paths: [from] });
    } catch {}
  }
  return undefined;
}

function fail(why) {
  console.warn(`strata: the libfuse 3 binding was not built (${why}); install libfuse3-dev, pkg-config and a C++ compiler (apt-get install -y libfuse3-dev pkg-config g++ make), then run: npm run build:native`);
  process.exit(process.env.STRATA_NATIVE_REQUIRED === '1' ? 1 : 0);
}

try {
  execFileSync('pkg-config', ['--exists', 'fuse3'], { stdio: 'ignore' });
} catch {
  fail('pkg-config finds no fuse3');
}
const gyp = nodeGyp();
if (!gyp) fail('node-gyp not found');
const args = [gyp, 'rebuild'];
// Headers of the running Node, when installed beside it (Debian's nodejs): no download needed.
const nodedir = path.resolve(path.dirname(process.execPath), '..');
if (existsSync(path.join(nodedir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodedir}`);
const result = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
if (result.status !== 0) fail(`node-gyp exited with ${result.status ?? result.signal}`);
