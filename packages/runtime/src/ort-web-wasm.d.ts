// `#ort-web-wasm` (package.json "imports"): onnxruntime-web's plain wasm build in browsers (`onnxruntime-web/wasm`),
// its Node build in Node (`onnxruntime-web`, whose wasm threads work there). onnxruntime-web declares its entry points
// as ambient modules, which an import map's target does not pick up: this names the same API.
declare module '#ort-web-wasm' {
  export * from 'onnxruntime-web';
}
