// A browser app: the runtime by its package name (the bundler picks its browser entry), device wasm.
// ?wasmPaths=/ort/ passes the URL prefix where the page's server serves ortWasmDir() (esbuild); without it
// onnxruntime-web fetches its .wasm beside its module, which Vite emits as an asset.
import { CapsNet } from '@capsnet-onnx/runtime';

async function main() {
  const wasmPaths = new URLSearchParams(location.search).get('wasmPaths');
  const digits = new Uint8Array(await (await fetch('/digits.u8')).arrayBuffer());
  const model = await CapsNet.load('/model.onnx', { device: 'wasm', ...(wasmPaths ? { wasmPaths } : {}) });
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
    globalThis.consumerResult = result;
    document.getElementById('out').textContent = JSON.stringify(result.predictions);
  },
  (error) => {
    globalThis.consumerResult = { error: String(error?.message ?? error) };
  },
);
