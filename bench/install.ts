/**
 * `npm run bench:install`: what an app installs. Packs the workspaces (`npm pack --workspaces`), installs each
 * consumer app from the tarballs into a fresh folder outside the repository (onnxruntime-node's CUDA download
 * skipped with ONNXRUNTIME_NODE_INSTALL=skip), and compares with onnxruntime-node and onnxruntime-web installed
 * alone. Also bundles the browser entry with esbuild, minified, with onnxruntime-web left out: the runtime's own
 * code. Prints a table and writes bench-results/install.json (temp file + rename).
 *
 *   npm run bench:install
 *   npm run bench:install -- --out bench-results/install.json --keep    # keep the app folders (printed)
 *
 * Targets (issue 9): Node app <= onnxruntime-node alone + 10 MB; browser app <= onnxruntime-web alone + 10 MB;
 * runtime code <= 60 KB minified. Install times depend on npm's cache (offline-first here): compare within a run.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { benchArgs, machineInfo, userPath, writeReport } from './harness.ts';
import { ROOT } from '../test/support/fixtures.ts';
import { type InstalledApp, footprint, installApp, packWorkspaces, tgz } from '../test/support/packages.ts';

const { values } = benchArgs(import.meta.url, {
  options: {
    out: { type: 'string', default: join(ROOT, 'bench-results', 'install.json') },
    keep: { type: 'boolean', default: false },
  },
});

const MB = 1e6;
const ortVersion = (JSON.parse(readFileSync(join(ROOT, 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8')) as { version: string }).version;

console.log('packing the workspaces (each package builds first)…');
const tarballs = await packWorkspaces();
const ours = { '@capsnet-onnx/core': tgz(tarballs.core), '@capsnet-onnx/runtime': tgz(tarballs.runtime) };

const apps: Array<{ name: string; deps: Record<string, string> }> = [
  { name: 'onnxruntime-node alone', deps: { 'onnxruntime-node': `^${ortVersion}` } },
  { name: 'node app (@capsnet-onnx/runtime + onnxruntime-node)', deps: { ...ours, 'onnxruntime-node': `^${ortVersion}` } },
  { name: 'onnxruntime-web alone', deps: { 'onnxruntime-web': `^${ortVersion}` } },
  { name: 'browser app (@capsnet-onnx/runtime + onnxruntime-web)', deps: { ...ours, 'onnxruntime-web': `^${ortVersion}` } },
  { name: 'toolchain (capsnet-onnx, the CLI)', deps: { ...ours, 'capsnet-onnx': tgz(tarballs.capsnet) } },
];

interface Row {
  app: string;
  installS: number;
  nodeModulesMB: number;
  packages: number;
  dir: string;
}
const rows: Row[] = [];
for (const [i, a] of apps.entries()) {
  console.log(`installing ${a.name}…`);
  const app: InstalledApp = await installApp(`bench${i}`, a.deps);
  const f = footprint(app.dir);
  rows.push({ app: a.name, installS: app.installMs / 1000, nodeModulesMB: f.bytes / MB, packages: f.packages, dir: app.dir });
}

/** The browser entry, minified, onnxruntime-web (and its common API) external: only our code is left. */
const browserDir = rows[3]!.dir;
const entry = join(browserDir, 'entry.js');
writeFileSync(entry, "export { CapsNet } from '@capsnet-onnx/runtime';\n");
const bundle = async (external: string[]) => {
  const r = await build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    external,
    absWorkingDir: browserDir,
    logLevel: 'error',
  });
  return r.outputFiles[0]!.contents.byteLength;
};
const runtimeBytes = await bundle(['onnxruntime-web', 'onnxruntime-common']);
const fullBytes = await bundle([]);

const byName = (n: string) => rows.find((r) => r.app.startsWith(n))!;
const checks = [
  {
    target: 'node app <= onnxruntime-node alone + 10 MB',
    value: byName('node app').nodeModulesMB - byName('onnxruntime-node alone').nodeModulesMB,
    limit: 10,
    unit: 'MB over',
  },
  {
    target: 'browser app <= onnxruntime-web alone + 10 MB',
    value: byName('browser app').nodeModulesMB - byName('onnxruntime-web alone').nodeModulesMB,
    limit: 10,
    unit: 'MB over',
  },
  { target: 'runtime code in a browser bundle <= 60 KB minified', value: runtimeBytes / 1000, limit: 60, unit: 'KB' },
];

console.table(rows.map((r) => ({ app: r.app, 'install s': r.installS.toFixed(1), 'node_modules MB': r.nodeModulesMB.toFixed(1), packages: r.packages })));
console.log(
  `browser bundle, minified: runtime + core ${(runtimeBytes / 1000).toFixed(1)} KB; with ` +
    `onnxruntime-web ${(fullBytes / 1000).toFixed(1)} KB (its .wasm is fetched separately)`,
);
console.table(checks.map((c) => ({ target: c.target, measured: `${c.value.toFixed(2)} ${c.unit}`, met: c.value <= c.limit ? 'yes' : 'NO' })));

values.out = userPath(values.out!);
writeReport(values.out!, {
  date: new Date().toISOString(),
  machine: machineInfo(),
  onnxruntime: ortVersion,
  tarballs: Object.fromEntries(Object.entries(tarballs).map(([k, f]) => [k, { file: f.split('/').at(-1), bytes: readFileSync(f).byteLength }])),
  apps: rows.map(({ dir: _dir, ...r }) => r),
  browserBundle: { runtimeMinifiedBytes: runtimeBytes, withOnnxruntimeWebMinifiedBytes: fullBytes },
  targets: checks.map((c) => ({ ...c, met: c.value <= c.limit })),
});
console.log(`wrote ${values.out}`);
if (values.keep) console.log(`apps kept in:\n${rows.map((r) => `  ${r.dir}`).join('\n')}`);
else for (const r of rows) rmSync(r.dir, { recursive: true, force: true });
