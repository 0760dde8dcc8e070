// Builds the publishable package: TypeScript -> dist/ (ESM + .d.ts), the non-TypeScript files the toolchain reads
// at run time copied beside their compiled modules, then the browser bundles (dist/web/) for the serve page and
// the parity harness, so an installed `capsnet serve` / `capsnet parity` never writes into its own folder.
// Runs as `npm run build` and before `npm pack` (prepack).
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const run = (args) => execFileSync(process.execPath, args, { cwd: root, stdio: 'inherit', env: cleanEnv() });
// The repository's source condition must not leak into the build: dist/ resolves the other packages' dist/.
function cleanEnv() {
  const env = { ...process.env };
  env.NODE_OPTIONS = (env.NODE_OPTIONS ?? '').replace(/--conditions=capsnet-source/g, '').trim();
  return env;
}

rmSync(`${root}/dist`, { recursive: true, force: true });
run([createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json']);
/** Run-time assets that are not TypeScript: source path -> dist path (relative to src/ and dist/). */
const ASSETS = ['train/backends/kernels', 'serve/page/index.html', 'serve/page/page.css', 'parity/browser/index.html', 'export/ep-probe.mjs'];
for (const asset of ASSETS) cpSync(`${root}/src/${asset}`, `${root}/dist/${asset}`, { recursive: true });
run(['dist/web/build.js']);
