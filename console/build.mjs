// Bundles the web console (console/web) into dist/console with esbuild: one app.js (uPlot
// included) and one app.css, next to the compiled server (dist/console/server.js) that serves them.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const out = path.join(root, 'dist', 'console');
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [path.join(root, 'console', 'web', 'app.ts')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  outfile: path.join(out, 'app.js'),
  logLevel: 'warning',
});
copyFileSync(path.join(root, 'console', 'web', 'index.html'), path.join(out, 'index.html'));
