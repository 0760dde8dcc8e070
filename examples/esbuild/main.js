// A browser app bundled with esbuild: the runtime by its package name (esbuild's --platform=browser picks its
// browser entry, onnxruntime-web) on device wasm. esbuild does not emit onnxruntime-web's .wasm: the page's server
// serves the folder ortWasmDir() returns at /ort/ (server.mjs), and the page passes that prefix as wasmPaths.
import { CapsNet } from '@capsnet-onnx/runtime';

// The pretrained small CapsNet of @capsnet-onnx/mnist: esbuild does not copy its model files, so server.mjs serves
// the installed package's models/ folder at /models/ (its decoder, model.decoder.onnx, is found beside the model).
const MODEL_URL = '/models/mnist-small/model.onnx';

async function main() {
  // digits.u8: N test digits of 28x28 bytes (0-255), one after the other (see README.md).
  const digits = new Uint8Array(await (await fetch('/digits.u8')).arrayBuffer());
  const model = await CapsNet.load(MODEL_URL, { device: 'wasm', wasmPaths: '/ort/' });
  const { inputHeight: h, inputWidth: w, inputChannels: c } = model.metadata;
  const results = await model.classify({ data: digits, shape: [digits.length / (h * w * c), h, w, c] });
  const wasm = performance
    .getEntriesByType('resource')
    .map((e) => e.name)
    .filter((n) => n.endsWith('.wasm'));
  return { device: model.device, predictions: results.map((r) => r.label), lengths: results.map((r) => Array.from(r.lengths)), wasm };
}

main().then(
  (result) => {
    globalThis.exampleResult = result;
    document.getElementById('out').textContent = `${result.device}: ${JSON.stringify(result.predictions)}`;
  },
  (error) => {
    globalThis.exampleResult = { error: String(error?.message ?? error) };
    document.getElementById('out').textContent = String(error?.message ?? error);
  },
);
