/**
 * Browser entry point: CapsNet over onnxruntime-web, devices webgpu and wasm, each on the smallest build that runs
 * it (wasm-files.ts): device "wasm" imports the plain wasm build (a 14 MB binary), "webgpu" the JSEP build (28 MB);
 * `auto` imports the JSEP build only when it is going to try WebGPU, and a wasm model loaded after a WebGPU one reuses
 * it. An app that knows its device imports `@capsnet-onnx/runtime/web/wasm` or `/web/webgpu`: one build, bundled
 * statically. In Node, `onnxruntime-web` resolves to its wasm-only build, so this entry also runs device "wasm" there.
 *
 *   const model = await CapsNet.load('/models/model.onnx', { device: 'auto', wasmPaths: '/ort/', decoder: false });
 *
 * `auto` tries webgpu, then wasm; it passes over a software WebGPU adapter (SwiftShader), slower than wasm.
 * `CapsNet.load` also loads the JPEG decoder (jpeg-js, 20 KB), so that `decodeImage` decodes JPEG synchronously
 * afterwards; the `/web/wasm` and `/web/webgpu` entries load it only when a JPEG is decoded.
 */
import { loadJpegDecoder } from '@capsnet-onnx/core';
import { webWasm } from './providers/web-wasm.ts';
import { webWebGpu } from './providers/web-webgpu.ts';
import { type OrtWebModule, tableProviders, webCapsNet } from './web-entry.ts';

export * from './contract.ts';
export * from './image-exports.ts';
export { webGpuAdapterInfo, describeAdapter } from './providers/web-webgpu.ts';
export { ORT_WASM_BUILDS, ORT_WASM_FILES, type OrtWasmBuild } from './wasm-files.ts';
export type { LoadProgress, WebLoadOptions } from './web-entry.ts';

const { providers, autoOrder } = tableProviders([webWebGpu, webWasm]);

export const CapsNet = webCapsNet({
  name: '@capsnet-onnx/runtime/web (onnxruntime-web)',
  providers,
  autoOrder,
  // wasm runs on the JSEP build too: once that is imported, a second binary is not worth fetching.
  buildFor: (device, loaded) => (device === 'webgpu' || loaded.has('jsep') ? 'jsep' : 'wasm'),
  // decodeImage of a JPEG is synchronous once jpeg-js is loaded: /web loads it with the model, so pages that decode
  // files synchronously keep working; /web/wasm and /web/webgpu load it on the first JPEG (RgbaImage.read, classify).
  onLoad: () => void loadJpegDecoder().catch(() => {}),
  importBuild: (build): Promise<OrtWebModule> => (build === 'jsep' ? import('onnxruntime-web') : import('#ort-web-wasm')),
});

export default CapsNet;
