/** onnxruntime-web, WebAssembly execution provider: the CPU path in browsers (and in Node, for parity checks). */
import { defineProvider, errorMessage } from './provider.ts';
import { ORT_WASM_FILES } from '../wasm-files.ts';

export const webWasm = defineProvider('web-wasm', {
  async unavailable() {
    return typeof WebAssembly === 'object' ? null : 'this JavaScript engine has no WebAssembly: use a current browser';
  },
  sessionOptions() {
    return { executionProviders: [{ name: 'wasm' }], graphOptimizationLevel: 'all' };
  },
  explainFailure(error) {
    const message = errorMessage(error);
    return /fetch|\.wasm|magic/i.test(message)
      ? `${message}. Serve onnxruntime-web's ${ORT_WASM_FILES.join(' and ')} (in the folder that ortWasmDir() of @capsnet-onnx/runtime/wasm-assets returns) ` +
          'and pass its URL prefix as CapsNet.load(url, { wasmPaths }); bundlers that handle new URL(file, import.meta.url), such as Vite, emit it themselves'
      : message;
  },
});

export default webWasm;
