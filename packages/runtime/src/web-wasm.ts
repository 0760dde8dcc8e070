/**
 * Browser entry point for CPU-only apps: CapsNet over onnxruntime-web's plain wasm build (`onnxruntime-web/wasm`,
 * a 14 MB binary, half the JSEP build's), device wasm. The files to serve at `wasmPaths`: `ORT_WASM_BUILDS.wasm`.
 *
 *   import { CapsNet } from '@capsnet-onnx/runtime/web/wasm';
 *   const model = await CapsNet.load('/models/model.onnx', { wasmPaths: '/ort/', onProgress: ({ file, loaded, total }) => ... });
 */
// onnxruntime-web/wasm in browsers; in Node its own build (also the plain wasm binary), whose threads work there.
import * as ort from '#ort-web-wasm';
import { webWasm } from './providers/web-wasm.ts';
import { tableProviders, webCapsNet } from './web-entry.ts';

export * from './contract.ts';
export * from './image-exports.ts';
export { ORT_WASM_BUILDS, ORT_WASM_FILES, type OrtWasmBuild } from './wasm-files.ts';
export type { LoadProgress, WebLoadOptions } from './web-entry.ts';

const { providers, autoOrder } = tableProviders([webWasm]);

export const CapsNet = webCapsNet({
  name: '@capsnet-onnx/runtime/web/wasm (onnxruntime-web, plain wasm build)',
  providers,
  autoOrder,
  buildFor: () => 'wasm',
  importBuild: async () => ort,
});

export default CapsNet;
