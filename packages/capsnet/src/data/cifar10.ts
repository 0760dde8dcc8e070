/**
 * CIFAR-10's binary version: data_batch_1.bin ... data_batch_5.bin and test_batch.bin, each a run of 3,073-byte
 * records (one label byte, then 1,024 red, 1,024 green and 1,024 blue bytes of a 32x32 image, row-major), and
 * batches.meta.txt with one class name per line.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Dataset, type Split, DataError, readMaybeGzipped, requireDirectory } from './common.ts';

const SIDE = 32;
const PLANE = SIDE * SIDE;
const RECORD = 1 + 3 * PLANE;
const USAGE = '--data cifar10:DIR with data_batch_1.bin ... data_batch_5.bin, test_batch.bin and batches.meta.txt (the "binary version")';

/** The side of square RGB images whose one-label-byte records would fill `length` bytes exactly, other than 32. */
function otherSide(length: number): number | undefined {
  for (let side = 8; side <= 512; side++) {
    if (side !== SIDE && length > 0 && length % (1 + 3 * side * side) === 0 && length / (1 + 3 * side * side) <= 100_000) return side;
  }
  return undefined;
}

/** Records of one batch file -> NHWC images in [0, 1] and labels 0..9. */
export function readCifar10Batch(file: string): Split {
  const bytes = readMaybeGzipped(file);
  if (bytes.length === 0 || bytes.length % RECORD !== 0) {
    const side = otherSide(bytes.length);
    const hint =
      bytes.length % (RECORD + 1) === 0 && bytes.length > 0
        ? ": its size fits CIFAR-100's 3,074-byte records (two label bytes), which this reader does not take"
        : side !== undefined
          ? `: its size fits records of ${side}x${side} RGB images (found ${side}x${side}, expected ${SIDE}x${SIDE}); resize them to CIFAR-10's 32x32`
          : ': the file is truncated or not the binary version (the Python "pickle" version is not read)';
    throw new DataError(
      `${file} has ${bytes.length} bytes, not a whole number of 3,073-byte CIFAR-10 records (a label byte and a ${SIDE}x${SIDE}x3 image)${hint}`,
    );
  }
  const count = bytes.length / RECORD;
  const images = new Float32Array(count * 3 * PLANE);
  const labels = new Int32Array(count);
  for (let n = 0; n < count; n++) {
    const base = n * RECORD;
    const label = bytes[base]!;
    if (label > 9) throw new DataError(`${file}: record ${n} has label ${label}; CIFAR-10 labels are 0-9`);
    labels[n] = label;
    // Planar RGB -> interleaved NHWC.
    for (let p = 0; p < PLANE; p++) {
      for (let c = 0; c < 3; c++) images[(n * PLANE + p) * 3 + c] = bytes[base + 1 + c * PLANE + p]! / 255;
    }
  }
  return { images, labels, count };
}

function concat(splits: Split[]): Split {
  const count = splits.reduce((n, s) => n + s.count, 0);
  const images = new Float32Array(splits.reduce((n, s) => n + s.images.length, 0));
  const labels = new Int32Array(count);
  let offset = 0;
  let at = 0;
  for (const s of splits) {
    images.set(s.images, offset);
    labels.set(s.labels, at);
    offset += s.images.length;
    at += s.count;
  }
  return { images, labels, count };
}

/** The directory itself, or its cifar-10-batches-bin/ subdirectory (the archive's top folder). */
function batchesDir(dir: string): string {
  const nested = join(dir, 'cifar-10-batches-bin');
  return !existsSync(join(dir, 'test_batch.bin')) && existsSync(join(nested, 'test_batch.bin')) ? nested : dir;
}

export function loadCifar10(root: string): Dataset {
  requireDirectory(root, USAGE);
  const dir = batchesDir(root);
  const trainFiles = readdirSync(dir)
    .filter((f) => /^data_batch_\d+\.bin$/.test(f))
    .sort();
  if (trainFiles.length === 0) throw new DataError(`no data_batch_N.bin in ${dir}: pass ${USAGE}`);
  if (!existsSync(join(dir, 'test_batch.bin'))) throw new DataError(`missing test_batch.bin in ${dir}: pass ${USAGE}`);
  const metaFile = join(dir, 'batches.meta.txt');
  if (!existsSync(metaFile)) throw new DataError(`missing batches.meta.txt in ${dir}: it names the 10 classes; pass ${USAGE}`);
  const classLabels = readMaybeGzipped(metaFile)
    .toString('utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
  if (classLabels.length !== 10) throw new DataError(`${metaFile} names ${classLabels.length} classes: CIFAR-10's has one name on each of 10 lines`);
  return {
    name: `cifar10:${root}`,
    shape: { inputHeight: SIDE, inputWidth: SIDE, inputChannels: 3, numClasses: 10 },
    classLabels,
    source: 'CIFAR-10 binary batches, 32x32 RGB bytes / 255',
    train: concat(trainFiles.map((f) => readCifar10Batch(join(dir, f)))),
    test: readCifar10Batch(join(dir, 'test_batch.bin')),
  };
}
