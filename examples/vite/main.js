// A browser app built with Vite: the runtime and a pretrained model by their package names (Vite picks the
// runtime's browser entry, onnxruntime-web) on device wasm. onnxruntime-web finds its .wasm, and @capsnet-onnx/mnist
// its model files, with new URL(file, import.meta.url): Vite emits them as assets. Nothing to copy (vite.config.js:
// the dev server needs @capsnet-onnx/mnist left out of its pre-bundling).
// The one-file entry of the small CapsNet's fp32 file: Vite emits that file and its decoder, and no other model's
// (pretrained('mnist-small') from '@capsnet-onnx/mnist' gives the same files and card, but lets Vite emit every file).
import files from '@capsnet-onnx/mnist/pretrained/mnist-small';
import { CapsNet } from '@capsnet-onnx/runtime';

async function main() {
  // In a browser, `files.model` and `files.decoder` are the URLs of the files Vite emitted (with hashed names:
  // CapsNet.load takes both, rather than looking for the decoder beside the model by name).
  // digits.u8: N test digits of 28x28 bytes (0-255), one after the other, in public/ (see README.md).
  const digits = new Uint8Array(await (await fetch('/digits.u8')).arrayBuffer());
  const model = await CapsNet.load(files, { device: 'wasm' });
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
