/**
 * `npm run build:web` (and the package's build before `npm pack`): bundles the browser runtime with esbuild into
 * dist/web/ (ignored by git):
 *   capsnet.js          @capsnet-onnx/runtime/web + onnxruntime-web, an ES module: `import { CapsNet } from './capsnet.js'`
 *   page.js             the serve page's script (serve/page/app.ts, with the runtime), split by esbuild into chunks
 *   page-*-HASH.js      (code splitting): the runtime's dynamic imports of onnxruntime-web's builds become chunks of
 *                       their own, so the page downloads only the build of the device it runs on (the plain wasm
 *                       build for wasm, the JSEP build only when it tries WebGPU); see PAGE_SPLIT
 *   parity-harness.js   the parity page's script (parity/browser/harness.ts), index.html its page
 *   meta.json           esbuild's metafile for capsnet.js: every module in the browser runtime's import graph
 *   build-info.json     the onnxruntime-web version whose JavaScript the bundles embed (web/paths.ts checks it
 *                       against the onnxruntime-web installed beside capsnet-onnx, which serves the .wasm)
 * onnxruntime-web's .wasm is not copied: the pages serve it from `ortWasmDir()` (@capsnet-onnx/runtime/wasm-assets),
 * the documented way for apps too. Serve with COOP/COEP headers (Cross-Origin-Opener-Policy: same-origin,
 * Cross-Origin-Embedder-Policy: require-corp) so onnxruntime-web can use WebAssembly threads.
 */
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Metafile } from 'esbuild';
import { BUILD_INFO, type BuildInfo, PACKAGE_ROOT, WEB_DIST } from './paths.ts';

/** Running from TypeScript sources (this repository) rather than the compiled package. */
const FROM_SOURCE = import.meta.url.endsWith('.ts');
export { WEB_DIST };

/**
 * The page's esbuild options beyond `common`: ES module code splitting, chunks flat beside page.js (served at
 * /web/FILE) with a content hash in their names.
 */
export const PAGE_SPLIT = { splitting: true, chunkNames: 'page-[name]-[hash]' } as const;

export interface WebBuild {
  outDir: string;
  /** esbuild metafile of the runtime bundle (capsnet.js). */
  runtimeMeta: Metafile;
}

export async function buildWeb(outDir = WEB_DIST): Promise<WebBuild> {
  mkdirSync(outDir, { recursive: true });
  const common = {
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: true,
    metafile: true,
    logLevel: 'warning',
    absWorkingDir: PACKAGE_ROOT,
    // From sources, the workspace packages resolve to their TypeScript (see the root tsconfig.json).
    conditions: FROM_SOURCE ? ['capsnet-source'] : [],
  } as const;
  const runtimeEntry = fileURLToPath(import.meta.resolve('@capsnet-onnx/runtime/web'));
  const runtime = await build({ ...common, entryPoints: { capsnet: runtimeEntry }, outdir: outDir });
  const harness = fileURLToPath(new URL(`../parity/browser/harness.${FROM_SOURCE ? 'ts' : 'js'}`, import.meta.url));
  await build({ ...common, entryPoints: { 'parity-harness': harness }, outdir: outDir });
  const page = fileURLToPath(new URL(`../serve/page/app.${FROM_SOURCE ? 'ts' : 'js'}`, import.meta.url));
  // Chunks of an earlier build are swept first: their hashed names would pile up.
  for (const file of readdirSync(outDir)) if (/^page-.+\.js(\.map)?$/.test(file)) rmSync(join(outDir, file));
  await build({ ...common, ...PAGE_SPLIT, entryPoints: { page }, outdir: outDir });
  copyFileSync(fileURLToPath(new URL('../parity/browser/index.html', import.meta.url)), join(outDir, 'index.html'));
  writeFileSync(join(outDir, 'meta.json'), JSON.stringify(runtime.metafile, null, 1));
  writeFileSync(join(outDir, BUILD_INFO), `${JSON.stringify({ onnxruntimeWeb: bundledOrtVersion(runtime.metafile) } satisfies BuildInfo)}\n`);
  return { outDir, runtimeMeta: runtime.metafile };
}

/** The version of the onnxruntime-web package that esbuild bundled (read from the metafile's inputs). */
function bundledOrtVersion(meta: Metafile): string {
  const input = Object.keys(meta.inputs).find((f) => /(^|\/)node_modules\/onnxruntime-web\//.test(f));
  if (!input) throw new Error('the browser runtime bundle holds no onnxruntime-web: check @capsnet-onnx/runtime/web');
  const packageDir = resolve(PACKAGE_ROOT, input.slice(0, input.lastIndexOf('node_modules/onnxruntime-web/') + 'node_modules/onnxruntime-web'.length));
  return (JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { version: string }).version;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await buildWeb();
  const bytes = Object.values(result.runtimeMeta.outputs).reduce((n, o) => n + o.bytes, 0);
  console.log(`dist/web: capsnet.js (${(bytes / 1e6).toFixed(2)} MB with source map), page.js, parity-harness.js, index.html`);
}
