/** onnxruntime-web, WebAssembly execution provider: the CPU path in browsers (and in Node, for parity checks). */
import type { Provider } from './provider.ts';
import { errorMessage } from './provider.ts';

export const webWasm: Provider = {
  device: 'wasm',
  runtime: 'onnxruntime-web',
  async unavailable() {
    return typeof WebAssembly === 'object' ? null : 'this JavaScript engine has no WebAssembly: use a current browser';
  },
  sessionOptions() {
    return { executionProviders: [{ name: 'wasm' }], graphOptimizationLevel: 'all' };
  },
  explainFailure(error) {
    const message = errorMessage(error);
    return /fetch|\.wasm|magic/i.test(message)
      ? `${message}. The page must serve onnxruntime-web's .wasm files beside the bundle (\`npm run build:web\` copies them to dist/web/)`
      : message;
  },
};
