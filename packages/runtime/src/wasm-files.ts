/**
 * The onnxruntime-web files the browser entry fetches at its first session: its default build (JSEP, one binary
 * for the wasm and webgpu execution providers) and that build's loader module. Without `wasmPaths` the loader is
 * the copy inlined in onnxruntime-web's bundle and only the .wasm is fetched, beside the bundle
 * (`new URL(file, import.meta.url)`); with a `wasmPaths` URL prefix both come from that prefix.
 */
export const ORT_WASM_FILES: readonly string[] = ['ort-wasm-simd-threaded.jsep.wasm', 'ort-wasm-simd-threaded.jsep.mjs'];
