/**
 * The onnxruntime-web files the browser entry fetches at its first session: its default build (JSEP, one binary
 * for the wasm and webgpu execution providers). Its .mjs loader is inlined in onnxruntime-web's bundle, so only the
 * .wasm is fetched, from `wasmPaths` or else beside the bundle (`new URL(file, import.meta.url)`).
 */
export const ORT_WASM_FILES: readonly string[] = ['ort-wasm-simd-threaded.jsep.wasm'];
