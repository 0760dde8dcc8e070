/**
 * Small generated files in each data-set format, for the reader and end-to-end tests (no real copy of CIFAR-10,
 * SVHN, smallNORB or EMNIST exists on the test machines). Every pixel is `patternByte(label, image, y, x, c)`, so
 * a reader's layout can be checked value by value and a network has a class signal to learn.
 * The writers follow each format's published layout; SVHN's .mat files come from SciPy (test/support/svhn-fixtures) and,
 * for v7.3, from h5wasm (the HDF5 C library), so the MATLAB reader is checked against independent writers.
 */
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

/** A class-dependent byte: a per-class brightness and per-class stripes, plus a little per-image variation. */
export function patternByte(label: number, image: number, y: number, x: number, c: number): number {
  const stripes = ((label % 2 === 0 ? y : x) >> (1 + (label % 3))) % 2;
  return (40 + 17 * label + 90 * stripes + 11 * c + 3 * (image % 5)) % 256;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `capsnet-${prefix}-`));
}

/** An IDX file: type 0x08 (bytes) or 0x0D (float32, big-endian) or 0x0C (int32). */
export function idxFile(dims: number[], values: ArrayLike<number>, type: 0x08 | 0x0c | 0x0d = 0x08): Buffer {
  const size = type === 0x08 ? 1 : 4;
  const out = Buffer.alloc(4 + 4 * dims.length + values.length * size);
  out[2] = type;
  out[3] = dims.length;
  dims.forEach((d, i) => out.writeUInt32BE(d, 4 + 4 * i));
  const at = 4 + 4 * dims.length;
  for (let i = 0; i < values.length; i++) {
    if (type === 0x08) out[at + i] = values[i]!;
    else if (type === 0x0c) out.writeInt32BE(values[i]!, at + 4 * i);
    else out.writeFloatBE(values[i]!, at + 4 * i);
  }
  return out;
}

/** Labels for `count` images cycling through `classes` classes starting at `first`. */
export function cyclicLabels(count: number, classes: number, first = 0, shift = 0): number[] {
  return Array.from({ length: count }, (_, i) => first + ((i + shift) % classes));
}

function imageBytes(labels: number[], h: number, w: number, c: number): number[] {
  const out: number[] = [];
  labels.forEach((label, n) => {
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let k = 0; k < c; k++) out.push(patternByte(label, n, y, x, k));
  });
  return out;
}

/** Four IDX files of N x h x w x c images (c > 1: a 4-D file), standard or EMNIST names, optionally float32. */
export function writeIdxSet(
  dir: string,
  options: { h: number; w: number; c: number; train: number[]; test: number[]; float?: boolean; emnistSplit?: string; gzip?: boolean },
): string {
  mkdirSync(dir, { recursive: true });
  const { h, w, c } = options;
  const name = (standard: string, emnist: string) => (options.emnistSplit ? `emnist-${options.emnistSplit}-${emnist}` : standard);
  const images = (labels: number[]) => {
    const bytes = imageBytes(labels, h, w, c);
    const dims = c > 1 ? [labels.length, h, w, c] : [labels.length, h, w];
    return options.float
      ? idxFile(
          dims,
          bytes.map((b) => b / 255),
          0x0d,
        )
      : idxFile(dims, bytes);
  };
  const files: Array<[string, Buffer]> = [
    [name('train-images-idx3-ubyte', 'train-images-idx3-ubyte'), images(options.train)],
    [name('train-labels-idx1-ubyte', 'train-labels-idx1-ubyte'), idxFile([options.train.length], options.train)],
    [name('t10k-images-idx3-ubyte', 'test-images-idx3-ubyte'), images(options.test)],
    [name('t10k-labels-idx1-ubyte', 'test-labels-idx1-ubyte'), idxFile([options.test.length], options.test)],
  ];
  for (const [file, bytes] of files) writeFileSync(join(dir, options.gzip ? `${file}.gz` : file), options.gzip ? gzipSync(bytes) : bytes);
  return dir;
}

/** CIFAR-10 binary batches: 3,073-byte records, planar RGB. */
export function cifarRecords(labels: number[]): Buffer {
  const out = Buffer.alloc(labels.length * 3073);
  labels.forEach((label, n) => {
    out[n * 3073] = label;
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) out[n * 3073 + 1 + c * 1024 + y * 32 + x] = patternByte(label, n, y, x, c);
  });
  return out;
}

export const CIFAR_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

export function writeCifar10(dir: string, batches: number[][], test: number[]): string {
  mkdirSync(dir, { recursive: true });
  batches.forEach((labels, k) => writeFileSync(join(dir, `data_batch_${k + 1}.bin`), cifarRecords(labels)));
  writeFileSync(join(dir, 'test_batch.bin'), cifarRecords(test));
  writeFileSync(join(dir, 'batches.meta.txt'), `${CIFAR_CLASSES.join('\n')}\n\n`);
  return dir;
}

/** A NORB binary matrix: magic, ndim, max(3, ndim) dims (little-endian int32), data. */
export function norbMatrix(kind: 'byte' | 'int32', dims: number[], values: ArrayLike<number>): Buffer {
  const stored = Math.max(3, dims.length);
  const header = Buffer.alloc(8 + 4 * stored);
  header.writeUInt32LE(kind === 'byte' ? 0x1e3d4c55 : 0x1e3d4c54, 0);
  header.writeInt32LE(dims.length, 4);
  for (let i = 0; i < stored; i++) header.writeInt32LE(dims[i] ?? 1, 8 + 4 * i);
  const data = Buffer.alloc(values.length * (kind === 'byte' ? 1 : 4));
  for (let i = 0; i < values.length; i++) {
    if (kind === 'byte') data[i] = values[i]!;
    else data.writeInt32LE(values[i]!, 4 * i);
  }
  return Buffer.concat([header, data]);
}

/**
 * smallNORB -dat/-cat/-info files (side x side stereo pairs, or side x width; view v adds 60 v so the two channels
 * differ). The real files are 96x96: other sizes are for the readers' refusals.
 */
export function writeSmallNorb(dir: string, train: number[], test: number[], side = 96, gzip = false, width = side): string {
  mkdirSync(dir, { recursive: true });
  for (const [split, tag, labels] of [
    ['training', '46789', train],
    ['testing', '01235', test],
  ] as const) {
    const pixels: number[] = [];
    labels.forEach((label, n) => {
      for (let v = 0; v < 2; v++) for (let y = 0; y < side; y++) for (let x = 0; x < width; x++) pixels.push((patternByte(label, n, y, x, 0) + 60 * v) % 256);
    });
    const base = `smallnorb-5x${tag}x9x18x6x2x${side}x${width}-${split}`;
    const files: Array<[string, Buffer]> = [
      [`${base}-dat.mat`, norbMatrix('byte', [labels.length, 2, side, width], pixels)],
      [`${base}-cat.mat`, norbMatrix('int32', [labels.length], labels)],
      [`${base}-info.mat`, norbMatrix('int32', [labels.length, 4], new Array(labels.length * 4).fill(0))],
    ];
    for (const [file, bytes] of files) writeFileSync(join(dir, gzip ? `${file}.gz` : file), gzip ? gzipSync(bytes) : bytes);
  }
  return dir;
}

const SVHN_FIXTURES = fileURLToPath(new URL('./svhn-fixtures/', import.meta.url));

/** SciPy-written v5 files (see svhn-fixtures/make.py): 20 training images (compressed), 10 test images (plain). */
export function copySvhnV5(dir: string): string {
  mkdirSync(dir, { recursive: true });
  for (const f of ['train_32x32.mat', 'test_32x32.mat']) copyFileSync(join(SVHN_FIXTURES, f), join(dir, f));
  return dir;
}

/** make.py's pixel rule, for checking what the reader returns. */
export function svhnFixturePixel(label: number, image: number, y: number, x: number, c: number): number {
  return ((23 * label + 3 * y + 5 * x + 71 * c + image) % 256) / 255;
}

/**
 * A MATLAB v7.3 file (HDF5 behind a 512-byte text header, the layout MATLAB writes) with the same X and y as the
 * v5 arrays given, written by h5wasm with chunked, gzip-compressed storage like MATLAB's.
 */
export async function writeSvhnV73(
  file: string,
  X: { dims: number[]; data: ArrayLike<number> },
  y: ArrayLike<number>,
  xType: 'uint8' | 'double' = 'uint8',
): Promise<void> {
  const { default: h5wasm } = await import('h5wasm/node');
  await h5wasm.ready;
  const plain = `${file}.h5`;
  const h5 = new h5wasm.File(plain, 'w');
  // HDF5 holds MATLAB's column-major array with the dimensions reversed: the same bytes, in the same order.
  const shape = [...X.dims].reverse();
  const data = xType === 'uint8' ? Uint8Array.from(X.data) : Float64Array.from(X.data);
  h5.create_dataset({
    name: 'X',
    data,
    shape,
    dtype: xType === 'uint8' ? '<B' : '<d',
    chunks: [1, ...shape.slice(1)],
    compression: 'gzip',
    compression_opts: [3],
  } as never);
  h5.create_dataset({ name: 'y', data: Float64Array.from(y), shape: [1, y.length], dtype: '<d' });
  h5.close();
  const header = Buffer.alloc(512, 0x20);
  header.write('MATLAB 7.3 MAT-file, Platform: GLNXA64, written by capsnet-onnx tests HDF5 schema 1.00 .', 0, 'latin1');
  const { readFileSync } = await import('node:fs');
  writeFileSync(file, Buffer.concat([header, readFileSync(plain)]));
}
