/**
 * Where onnxruntime-web's WebAssembly lives, for the server or bundler config of a browser app (Node only: it
 * resolves files on disk). The browser entry (`@capsnet-onnx/runtime/web`) fetches the binary at its first session:
 *
 * - Bundlers that understand `new URL('file', import.meta.url)` (Vite, webpack 5, Rollup with its plugin) emit it
 *   themselves: nothing to configure.
 * - Otherwise (esbuild, a plain <script type="module">) serve the folder `ortWasmDir()` at a URL prefix of your
 *   choice and pass that prefix to `CapsNet.load(url, { wasmPaths: '/ort/' })`.
 *
 * Nothing is copied: the files are read from the app's own onnxruntime-web install.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import { ORT_WASM_FILES } from './wasm-files.ts';

export { ORT_WASM_BUILDS, ORT_WASM_FILES, type OrtWasmBuild } from './wasm-files.ts';

/**
 * Absolute path of onnxruntime-web's dist/ folder, holding `ORT_WASM_FILES`, as resolved from `from` (a folder or
 * file URL/path of the app; default: this package's own resolution, which is the app's onnxruntime-web).
 * Throws a one-line error naming the install command when onnxruntime-web is not installed.
 */
export function ortWasmDir(from: string | URL = import.meta.url): string {
  try {
    return dirname(createRequire(from).resolve(`onnxruntime-web/${ORT_WASM_FILES[0]}`));
  } catch {
    throw new Error('onnxruntime-web is not installed: run `npm install onnxruntime-web` in your app (the browser runtime needs it)');
  }
}

/** `ORT_WASM_FILES` with their absolute paths: what to serve, copy into a public folder, or hand to a bundler. */
export function ortWasmFiles(from?: string | URL): { name: string; path: string }[] {
  const dir = ortWasmDir(from);
  return ORT_WASM_FILES.map((name) => ({ name, path: join(dir, name) }));
}
