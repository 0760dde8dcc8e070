// A plain-JavaScript ESM Node app, as a user writes it: the runtime and the pretrained model by their package
// names, digits from a file.
//   node main.mjs DIGITS.u8 LABELS.json   ->  one JSON line on stdout
import { readFile } from 'node:fs/promises';
import { pretrained } from '@capsnet-onnx/mnist';
import { CapsNet, InputError } from '@capsnet-onnx/runtime';

const [digitsPath, labelsPath] = process.argv.slice(2);
if (!digitsPath || !labelsPath) {
  console.error('usage: node main.mjs DIGITS.u8 LABELS.json   (node ../digits.mjs writes both: see ../README.md)');
  process.exit(2);
}
const pixels = new Uint8Array(await readFile(digitsPath));
const labels = JSON.parse(await readFile(labelsPath, 'utf8'));
// The pretrained small CapsNet: in Node, `model` and `decoder` are file paths; `card` is its model card.
const files = pretrained('mnist-small');
const { card } = files;
const model = await CapsNet.load(files, { device: 'cpu', threads: 1 });
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
    model: card.name,
    testAccuracy: card.results.fp32.accuracy,
    device: model.device,
    predictions: results.map((r) => r.label),
    lengths: results.map((r) => Array.from(r.lengths)),
    correct: results.filter((r, i) => r.label === labels[i]).length,
    total: results.length,
    reconstructionPixels: reconstruction.length,
    badInput,
  }),
);
