/**
 * onnxruntime-web's builds and the files each fetches at its first session (a .wasm binary and its loader module):
 * - `wasm`: the plain WebAssembly build (`onnxruntime-web/wasm`), CPU only, about half the JSEP binary's size; the
 *   browser entry `@capsnet-onnx/runtime/web/wasm` and device "wasm" of `/web` use it;
 * - `jsep`: the default build (`onnxruntime-web`), one binary for the WebGPU and wasm execution providers; the
 *   browser entry `@capsnet-onnx/runtime/web/webgpu` and device "webgpu" of `/web` use it.
 * Without `wasmPaths` the loader is the copy inlined in onnxruntime-web's bundle and only the .wasm is fetched,
 * beside the bundle (`new URL(file, import.meta.url)`); with a `wasmPaths` URL prefix both come from that prefix.
 */
export const ORT_WASM_BUILDS = {
  wasm: { wasm: 'ort-wasm-simd-threaded.wasm', mjs: 'ort-wasm-simd-threaded.mjs' },
  jsep: { wasm: 'ort-wasm-simd-threaded.jsep.wasm', mjs: 'ort-wasm-simd-threaded.jsep.mjs' },
} as const;

export type OrtWasmBuild = keyof typeof ORT_WASM_BUILDS;

/** Every file of both builds: what to serve at the `wasmPaths` prefix (an app serves only its build's two). */
export const ORT_WASM_FILES: readonly string[] = [ORT_WASM_BUILDS.wasm.wasm, ORT_WASM_BUILDS.wasm.mjs, ORT_WASM_BUILDS.jsep.wasm, ORT_WASM_BUILDS.jsep.mjs];
