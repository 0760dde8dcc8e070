/**
 * SVHN's cropped digits (Netzer et al. 2011), format 2: train_32x32.mat and test_32x32.mat, each with X, uint8
 * 32 x 32 x 3 x N (MATLAB's height x width x channel x image), and y, N x 1, where label 10 means the digit 0.
 * extra_32x32.mat is not read (the paper trains on the 73,257 training images only).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Dataset, type Split, DataError, requireDirectory } from './common.ts';
import { readMatArrays } from './matlab.ts';

/** Cropped digits are 32x32 RGB. */
const SIDE = 32;
const USAGE = '--data svhn:DIR with train_32x32.mat and test_32x32.mat (the "cropped digits" format)';

/** X (column-major H x W x C x N) -> NHWC in [0, 1]; y: 10 -> 0. */
export function readSvhnFile(file: string): Split & { height: number; width: number } {
  const arrays = readMatArrays(file, ['X', 'y']);
  const X = arrays.get('X')!;
  const y = arrays.get('y')!;
  if (X.dims.length !== 4 || X.dims[0] !== SIDE || X.dims[1] !== SIDE || X.dims[2] !== 3) {
    throw new DataError(
      `${file}: X is ${X.dims.join('x')}, found ${X.dims.slice(0, 3).join('x')} images, expected ${SIDE}x${SIDE}x3 x N ` +
        '(height x width x channel x image): is it a cropped-digits (32x32) file?',
    );
  }
  const [h, w, c, n] = X.dims as [number, number, number, number];
  // SVHN's X is uint8. Saved as doubles it is read the same only when every value is still a whole number in
  // 0-255; doubles already scaled to [0, 1] (or standardised) would silently become near-black images at / 255.
  if (!(X.data instanceof Uint8Array)) {
    for (let i = 0; i < X.data.length; i++) {
      const v = X.data[i]!;
      if (!(Number.isInteger(v) && v >= 0 && v <= 255)) {
        throw new DataError(
          `${file}: X holds ${v} at element ${i + 1}: SVHN's X holds bytes 0-255 (uint8); ` +
            'this file was saved with other values (scaled to [0, 1] or standardised?): save the original uint8 X',
        );
      }
    }
  }
  const labelCount = y.dims.reduce((a, b) => a * b, 1);
  if (labelCount !== n) throw new DataError(`${file}: X holds ${n} images but y holds ${labelCount} labels`);
  const images = new Float32Array(n * h * w * c);
  const data = X.data;
  // Element (y, x, k, i) sits at y + h * (x + w * (k + c * i)) in MATLAB's order.
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < c; k++) {
      for (let x = 0; x < w; x++) {
        const src = h * (x + w * (k + c * i));
        for (let yy = 0; yy < h; yy++) images[((i * h + yy) * w + x) * c + k] = data[src + yy]! / 255;
      }
    }
  }
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const label = y.data[i]!;
    if (!Number.isInteger(label) || label < 0 || label > 10)
      throw new DataError(`${file}: y(${i + 1}) is ${label}; SVHN labels are 1-10 (10 meaning the digit 0)`);
    labels[i] = label === 10 ? 0 : label;
  }
  return { images, labels, count: n, height: h, width: w };
}

export function loadSvhn(dir: string): Dataset {
  requireDirectory(dir, USAGE);
  const [trainFile, testFile] = ['train_32x32.mat', 'test_32x32.mat'].map((f) => join(dir, f)) as [string, string];
  for (const f of [trainFile, testFile]) if (!existsSync(f)) throw new DataError(`missing ${f}: pass ${USAGE}`);
  const train = readSvhnFile(trainFile);
  const test = readSvhnFile(testFile);
  if (train.height !== test.height || train.width !== test.width) {
    throw new DataError(`${trainFile} holds ${train.height}x${train.width} images but ${testFile} holds ${test.height}x${test.width}`);
  }
  return {
    name: `svhn:${dir}`,
    shape: { inputHeight: train.height, inputWidth: train.width, inputChannels: 3, numClasses: 10 },
    classLabels: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
    source: 'SVHN cropped digits (.mat), 32x32 RGB bytes / 255, label 10 read as 0',
    train: { images: train.images, labels: train.labels, count: train.count },
    test: { images: test.images, labels: test.labels, count: test.count },
  };
}
