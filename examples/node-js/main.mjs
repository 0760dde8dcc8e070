// A plain-JavaScript ESM Node app, as a user writes it: the runtime by its package name, a model file, digits.
//   node main.mjs MODEL.onnx DIGITS.u8 LABELS.json   ->  one JSON line on stdout
import { readFile } from 'node:fs/promises';
import { CapsNet, InputError } from '@capsnet-onnx/runtime';

const [modelPath, digitsPath, labelsPath] = process.argv.slice(2);
const pixels = new Uint8Array(await readFile(digitsPath));
const labels = JSON.parse(await readFile(labelsPath, 'utf8'));
const model = await CapsNet.load(modelPath, { device: 'cpu', threads: 1 });
const { inputHeight: h, inputWidth: w, inputChannels: c } = model.metadata;
// A batch says its shape: N images of H x W x C bytes.
const results = await model.classify({ data: pixels, shape: [pixels.length / (h * w * c), h, w, c] });
const [reconstruction] = await model.decode(results[0].capsules);
let badInput = null;
try {
  await model.classify(new Float32Array(3));
} catch (e) {
  badInput = e instanceof InputError ? e.message : `not an InputError: ${e}`;
}
await model.dispose();
console.log(
  JSON.stringify({
    device: model.device,
    predictions: results.map((r) => r.label),
    lengths: results.map((r) => Array.from(r.lengths)),
    correct: results.filter((r, i) => r.label === labels[i]).length,
    reconstructionPixels: reconstruction.length,
    badInput,
  }),
);
