/**
 * IDX files (LeCun's MNIST format): MNIST, Fashion-MNIST, KMNIST, EMNIST and colour sets saved as IDX.
 *
 * Header: two zero bytes, a type byte (0x08 unsigned byte, 0x0C int32, 0x0D float32), the number of dimensions,
 * then one big-endian uint32 per dimension; the data follow, big-endian. Images are N x H x W (grey) or
 * N x H x W x C (channels last); bytes are scaled by 1/255, float32 pixels are taken as they are and must lie in
 * [0, 1]. Labels are one dimension of bytes or int32.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Dataset, DataError, checkCounts, labelsToClasses, readMaybeGzipped, requireDirectory } from './common.ts';

const IDX_TYPES: Record<number, { name: string; bytes: number }> = {
  8: { name: 'unsigned byte', bytes: 1 },
  9: { name: 'signed byte', bytes: 1 },
  11: { name: 'int16', bytes: 2 },
  12: { name: 'int32', bytes: 4 },
  13: { name: 'float32', bytes: 4 },
  14: { name: 'float64', bytes: 8 },
};

export interface IdxArray {
  file: string;
  type: number;
  dims: number[];
  bytes: Buffer;
  /** Offset of the first value in `bytes`. */
  offset: number;
}

/** Parse an IDX file (gunzipped if its name ends in .gz) and check that it holds as many bytes as it claims. */
export function readIdx(file: string): IdxArray {
  return parseIdx(readMaybeGzipped(file), file);
}

/**
 * The one IDX parser (data sets here, `capsnet classify`'s IDX inputs in cli/image-files.ts): the header of
 * gunzipped `data`, checked against the data's size. `file` names it in the errors (DataError).
 */
export function parseIdx(data: Uint8Array, file: string): IdxArray {
  const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (bytes.length < 4) throw new DataError(`${file} is truncated: ${bytes.length} bytes is shorter than an IDX header`);
  const type = bytes[2]!;
  const ndims = bytes[3]!;
  if (bytes[0] !== 0 || bytes[1] !== 0 || !IDX_TYPES[type] || ndims < 1) {
    const gzipped = bytes[0] === 0x1f && bytes[1] === 0x8b;
    throw new DataError(
      `${file} is not an IDX file (first bytes ${bytes.subarray(0, 4).toString('hex')})` +
        (gzipped ? ': it is gzipped under a plain name, so gunzip it or add .gz to its name' : ': is it the right file?'),
    );
  }
  const offset = 4 + 4 * ndims;
  if (bytes.length < offset) throw new DataError(`${file} is truncated inside its IDX header`);
  const dims = Array.from({ length: ndims }, (_, i) => bytes.readUInt32BE(4 + 4 * i));
  const expected = offset + dims.reduce((a, b) => a * b, 1) * IDX_TYPES[type].bytes;
  if (bytes.length < expected) {
    throw new DataError(`${file} is truncated: its header says ${dims.join('x')} ${IDX_TYPES[type].name} (${expected} bytes) but it has ${bytes.length} bytes`);
  }
  // More bytes than the header accounts for: the header's sizes are not the data's (read at them, every image
  // after the first would be cut at the wrong stride).
  if (bytes.length > expected) {
    throw new DataError(
      `${file} has ${bytes.length} bytes but its header says ${dims.join('x')} ${IDX_TYPES[type].name} (${expected} bytes): ` +
        'the sizes in the header do not match the data; re-create the file with the right dimensions',
    );
  }
  return { file, type, dims, bytes, offset };
}

export interface IdxImages {
  file: string;
  pixels: Float32Array;
  count: number;
  height: number;
  width: number;
  channels: number;
}

/**
 * N x H x W or N x H x W x C images -> float32 NHWC in [0, 1]. `transpose` swaps each image's rows and columns
 * (EMNIST stores its images transposed).
 */
export function readIdxImages(file: string, transpose = false): IdxImages {
  return idxImages(readIdx(file), transpose);
}

/** A parsed IDX array's images (see readIdxImages), at most `limit` of them. */
export function idxImages(idx: IdxArray, transpose = false, limit = Infinity): IdxImages {
  const { file, dims, type, bytes, offset } = idx;
  if (dims.length !== 3 && dims.length !== 4) {
    throw new DataError(`${file} holds a ${dims.length}-D array (${dims.join('x')}): IDX images must be N x H x W or N x H x W x C`);
  }
  const [total, height, width, channels = 1] = dims as [number, number, number, number?];
  const count = Math.min(total, limit);
  if (height === 0 || width === 0 || channels === 0) {
    throw new DataError(
      `${file} holds ${dims.join('x')} images: found ${height}x${width}x${channels}, expected a height, width and channel count of at least 1`,
    );
  }
  if (dims.length === 4 && channels > 4 && height <= 4) {
    throw new DataError(`${file} is ${dims.join('x')}, which looks channels-first: IDX images must be N x H x W x C (channels last); transpose them`);
  }
  if (type !== 0x08 && type !== 0x0d) {
    throw new DataError(`${file} holds ${IDX_TYPES[type]!.name} values: image files must hold unsigned bytes (0-255) or float32 in [0, 1]`);
  }
  const size = count * height * width * channels;
  const pixels = new Float32Array(size);
  if (type === 0x08) {
    for (let i = 0; i < size; i++) pixels[i] = bytes[offset + i]! / 255;
  } else {
    for (let i = 0; i < size; i++) {
      const v = bytes.readFloatBE(offset + 4 * i);
      if (!(v >= 0 && v <= 1)) {
        throw new DataError(
          `${file}: float32 pixel ${i} (image ${Math.floor(i / (height * width * channels))}) is ${v}: float32 IDX pixels must lie in [0, 1]`,
        );
      }
      pixels[i] = v;
    }
  }
  return {
    file,
    pixels: transpose ? transposeImages(pixels, count, height, width, channels) : pixels,
    count,
    height: transpose ? width : height,
    width: transpose ? height : width,
    channels,
  };
}

function transposeImages(pixels: Float32Array, n: number, h: number, w: number, c: number): Float32Array {
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let k = 0; k < c; k++) out[((i * w + x) * h + y) * c + k] = pixels[((i * h + y) * w + x) * c + k]!;
      }
    }
  }
  return out;
}

/** One dimension of unsigned bytes or int32 labels. */
export function readIdxLabels(file: string): { file: string; labels: Int32Array } {
  const { dims, type, bytes, offset } = readIdx(file);
  if (dims.length !== 1) throw new DataError(`${file} holds a ${dims.join('x')} array: a label file must be one dimension`);
  if (type === 0x08) return { file, labels: Int32Array.from(bytes.subarray(offset, offset + dims[0]!)) };
  if (type === 0x0c) return { file, labels: Int32Array.from({ length: dims[0]! }, (_, i) => bytes.readInt32BE(offset + 4 * i)) };
  throw new DataError(`${file} holds ${IDX_TYPES[type]!.name} values: label files must hold unsigned bytes or int32`);
}

const STANDARD = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
};

/** NIST's EMNIST names: emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte[.gz]. */
const EMNIST = /^emnist-([a-z]+)-train-images-idx3-ubyte(\.gz)?$/;

/** The EMNIST splits whose training images are in `dir`. */
export function emnistSplits(dir: string): string[] {
  return existsSync(dir)
    ? [
        ...new Set(
          readdirSync(dir)
            .map((f) => EMNIST.exec(f)?.[1])
            .filter((s): s is string => Boolean(s)),
        ),
      ].sort()
    : [];
}

function findFile(dir: string, base: string, names: string[]): string {
  // The standard name, gzipped or not, and the dotted form some mirrors use (train-images.idx3-ubyte).
  for (const candidate of [base, `${base}.gz`, base.replace(/-idx(\d)-/, '.idx$1-')]) {
    if (existsSync(join(dir, candidate))) return join(dir, candidate);
  }
  throw new DataError(`missing ${base}[.gz] in ${dir}: an IDX directory needs the four files ${names.join(', ')}`);
}

/**
 * EMNIST's mapping file (`emnist-letters-mapping.txt`): "label code [code...]" per line, codes in ASCII.
 * Returns the class names by raw label, e.g. 1 -> "A/a".
 */
function readEmnistMapping(file: string): Map<number, string> {
  const map = new Map<number, string>();
  const lines = readMaybeGzipped(file).toString('utf8').split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    const fields = line.split(/\s+/);
    // A broken mapping would silently name classes wrong (or leave them numbered): refuse it with the line.
    if (fields.length < 2 || !fields.every((f) => /^[0-9]+$/.test(f)) || fields.slice(1).some((f) => Number(f) > 0x10ffff)) {
      throw new DataError(
        `${file} line ${i + 1} is "${line.slice(0, 60)}": an EMNIST mapping line is "label code [code...]" (decimal character codes); ` +
          'fix the file or remove it (the classes are then named by their labels)',
      );
    }
    const label = Number(fields[0]);
    if (map.has(label)) throw new DataError(`${file} line ${i + 1} maps label ${label} a second time: fix the file or remove it`);
    map.set(
      label,
      fields
        .slice(1)
        .map((code) => String.fromCodePoint(Number(code)))
        .join('/'),
    );
  });
  return map;
}

/**
 * A directory of the four IDX files: the standard names (MNIST, Fashion-MNIST, KMNIST...) or one EMNIST split's
 * NIST names (`split` picks one where the directory holds several). EMNIST images are transposed back to upright
 * and their class names come from the split's mapping file when present; labels are offset so the smallest
 * training label is class 0.
 */
export function loadIdxDirectory(dir: string, split?: string): Dataset {
  requireDirectory(dir, 'a directory with the four IDX files');
  const splits = emnistSplits(dir);
  const hasStandard = [STANDARD.trainImages, `${STANDARD.trainImages}.gz`, 'train-images.idx3-ubyte'].some((f) => existsSync(join(dir, f)));
  let names = STANDARD;
  let emnist: string | undefined;
  if (split !== undefined || (!hasStandard && splits.length > 0)) {
    if (split === undefined && splits.length > 1) {
      throw new DataError(`${dir} holds the EMNIST splits ${splits.join(', ')}: pick one with --data emnist-<split>:${dir}, e.g. emnist-${splits[0]}:${dir}`);
    }
    emnist = split ?? splits[0]!;
    if (!splits.includes(emnist)) {
      throw new DataError(
        `no EMNIST split "${emnist}" in ${dir} (emnist-${emnist}-train-images-idx3-ubyte[.gz] is missing)` +
          (splits.length ? `: it holds ${splits.join(', ')}` : ''),
      );
    }
    names = {
      trainImages: `emnist-${emnist}-train-images-idx3-ubyte`,
      trainLabels: `emnist-${emnist}-train-labels-idx1-ubyte`,
      testImages: `emnist-${emnist}-test-images-idx3-ubyte`,
      testLabels: `emnist-${emnist}-test-labels-idx1-ubyte`,
    };
  }
  const all = Object.values(names);
  const transpose = emnist !== undefined;
  const trainImages = readIdxImages(findFile(dir, names.trainImages, all), transpose);
  const trainLabels = readIdxLabels(findFile(dir, names.trainLabels, all));
  const testImages = readIdxImages(findFile(dir, names.testImages, all), transpose);
  const testLabels = readIdxLabels(findFile(dir, names.testLabels, all));
  checkCounts(trainImages.file, trainImages.count, trainLabels.file, trainLabels.labels.length);
  checkCounts(testImages.file, testImages.count, testLabels.file, testLabels.labels.length);
  const [a, b] = [trainImages, testImages];
  if (a.height !== b.height || a.width !== b.width || a.channels !== b.channels) {
    throw new DataError(`${a.file} holds ${a.height}x${a.width}x${a.channels} images but ${b.file} holds ${b.height}x${b.width}x${b.channels}`);
  }
  const classes = labelsToClasses(trainLabels, testLabels);
  let classLabels = Array.from({ length: classes.numClasses }, (_, k) => String(k + classes.offset));
  const mappingFile = emnist ? [`emnist-${emnist}-mapping.txt`, `emnist-${emnist}-mapping.txt.gz`].map((f) => join(dir, f)).find(existsSync) : undefined;
  if (mappingFile) {
    const mapping = readEmnistMapping(mappingFile);
    const missing = classLabels.map((_, k) => k + classes.offset).filter((label) => !mapping.has(label));
    if (missing.length) {
      throw new DataError(
        `${mappingFile} has no line for label(s) ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''} of the data: ` +
          'fix the file or remove it (the classes are then named by their labels)',
      );
    }
    classLabels = classLabels.map((_, k) => mapping.get(k + classes.offset)!);
  }
  return {
    name: emnist ? `emnist-${emnist}:${dir}` : `idx:${dir}`,
    shape: { inputHeight: a.height, inputWidth: a.width, inputChannels: a.channels, numClasses: classes.numClasses },
    classLabels,
    labelOffset: classes.offset,
    source: `IDX ${a.height}x${a.width}x${a.channels}${transpose ? ', EMNIST images transposed upright' : ''}`,
    train: { images: trainImages.pixels, labels: classes.train, count: trainImages.count },
    test: { images: testImages.pixels, labels: classes.test, count: testImages.count },
  };
}
