/**
 * Browser entry point for WebGPU apps: CapsNet over onnxruntime-web's JSEP build (`onnxruntime-web`, one 28 MB
 * binary for the WebGPU and wasm execution providers), devices webgpu and wasm; `auto` tries webgpu, then wasm on
 * the same binary. The files to serve at `wasmPaths`: `ORT_WASM_BUILDS.jsep`.
 *
 *   import { CapsNet } from '@capsnet-onnx/runtime/web/webgpu';
 *   const model = await CapsNet.load('/models/model.onnx', { device: 'webgpu', wasmPaths: '/ort/' });
 */
import * as ort from 'onnxruntime-web';
import { webWasm } from './providers/web-wasm.ts';
import { webWebGpu } from './providers/web-webgpu.ts';
import { tableProviders, webCapsNet } from './web-entry.ts';

export * from './contract.ts';
export * from './image-exports.ts';
export { webGpuAdapterInfo, describeAdapter } from './providers/web-webgpu.ts';
export { ORT_WASM_BUILDS, ORT_WASM_FILES, type OrtWasmBuild } from './wasm-files.ts';
export type { LoadProgress, WebLoadOptions } from './web-entry.ts';

const { providers, autoOrder } = tableProviders([webWebGpu, webWasm]);

export const CapsNet = webCapsNet({
  name: '@capsnet-onnx/runtime/web/webgpu (onnxruntime-web, JSEP build)',
  providers,
  autoOrder,
  buildFor: () => 'jsep',
  importBuild: async () => ort,
});

export default CapsNet;
