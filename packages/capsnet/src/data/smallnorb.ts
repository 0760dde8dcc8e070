/**
 * smallNORB (LeCun, Huang & Bottou 2004): 96x96 stereo grey pairs of 50 toys in 5 categories. The files use the
 * NORB "binary matrix" format despite their .mat names (they are not MATLAB files):
 *   int32 LE magic (0x1E3D4C55 bytes, 0x1E3D4C54 int32), int32 LE ndim, max(3, ndim) int32 LE dims, then the data.
 * -dat: bytes [N, 2, 96, 96]; -cat: int32 [N], categories 0-4; -info: int32 [N, 4] (instance, elevation, azimuth,
 * lighting), checked for its count only. Optionally gzipped (.mat.gz, as distributed).
 *
 * Section 7 of the paper: the images are resized to 48x48 (here a 2x2 mean, exact for a factor of two) and both
 * stereo views become the two channels.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Dataset, type Split, DataError, downsampleMean, readMaybeGzipped, requireDirectory } from './common.ts';

export const SMALLNORB_CLASSES = ['animal', 'human', 'airplane', 'truck', 'car'];
const MAGIC = { byte: 0x1e3d4c55, int32: 0x1e3d4c54 } as const;
/** Every smallNORB image is 96x96 (each of the two stereo views). */
const SIDE = 96;
const USAGE = '--data smallnorb:DIR with the smallnorb-*-{training,testing}-{dat,cat}.mat[.gz] files';

interface NorbMatrix {
  file: string;
  kind: 'byte' | 'int32';
  dims: number[];
  bytes: Buffer;
  offset: number;
}

export function readNorbMatrix(file: string): NorbMatrix {
  const bytes = readMaybeGzipped(file);
  if (bytes.length < 20) throw new DataError(`${file} is truncated: ${bytes.length} bytes is shorter than a NORB matrix header`);
  const magic = bytes.readUInt32LE(0);
  const kind = magic === MAGIC.byte ? 'byte' : magic === MAGIC.int32 ? 'int32' : undefined;
  if (!kind) {
    throw new DataError(
      `${file} has magic 0x${magic.toString(16)}: not a smallNORB byte or int32 matrix` +
        (bytes[0] === 0x1f && bytes[1] === 0x8b ? ' (it is gzipped under a plain name: gunzip it or add .gz)' : ''),
    );
  }
  const ndim = bytes.readInt32LE(4);
  if (ndim < 1 || ndim > 8) throw new DataError(`${file}: header says ${ndim} dimensions`);
  const stored = Math.max(3, ndim);
  const offset = 8 + 4 * stored;
  const dims = Array.from({ length: ndim }, (_, i) => bytes.readInt32LE(8 + 4 * i));
  const expected = offset + dims.reduce((a, b) => a * b, 1) * (kind === 'byte' ? 1 : 4);
  if (bytes.length < expected) throw new DataError(`${file} is truncated: its header says ${dims.join('x')} (${expected} bytes) but it has ${bytes.length}`);
  if (bytes.length > expected) {
    throw new DataError(
      `${file} has ${bytes.length} bytes but its header says ${dims.join('x')} (${expected} bytes): the header's sizes do not match the data`,
    );
  }
  return { file, kind, dims, bytes, offset };
}

/** -dat [N, 2, H, W] bytes -> NHWC [N, H/2, W/2, 2] in [0, 1] (view 0 = left camera = channel 0). */
function readImages(file: string): { images: Float32Array; count: number } {
  const m = readNorbMatrix(file);
  if (m.kind !== 'byte' || m.dims.length !== 4 || m.dims[1] !== 2) {
    throw new DataError(`${file} holds a ${m.kind} ${m.dims.join('x')} matrix: a smallNORB -dat file holds bytes N x 2 x 96 x 96`);
  }
  const [count, , h, w] = m.dims as [number, number, number, number];
  // The images are 96x96 by definition; any other size (a crop, a resize, a transposed header) would be read at the
  // wrong stride or give the network a size the protocol does not describe.
  if (h !== SIDE || w !== SIDE) {
    throw new DataError(
      `${file} holds ${h}x${w} image pairs (${m.dims.join('x')}): found ${h}x${w}, expected ${SIDE}x${SIDE}, smallNORB's size; use the original -dat files`,
    );
  }
  const full = new Float32Array(count * h * w * 2);
  for (let n = 0; n < count; n++) {
    for (let v = 0; v < 2; v++) {
      const src = m.offset + (n * 2 + v) * h * w;
      for (let p = 0; p < h * w; p++) full[(n * h * w + p) * 2 + v] = m.bytes[src + p]! / 255;
    }
  }
  return { images: downsampleMean(full, count, h, w, 2, 2), count };
}

function readCategories(file: string): Int32Array {
  const m = readNorbMatrix(file);
  if (m.kind !== 'int32' || m.dims.length !== 1) throw new DataError(`${file} holds a ${m.kind} ${m.dims.join('x')} matrix: a -cat file holds int32 N`);
  const labels = Int32Array.from({ length: m.dims[0]! }, (_, i) => m.bytes.readInt32LE(m.offset + 4 * i));
  const bad = labels.findIndex((l) => l < 0 || l > 4);
  if (bad >= 0) throw new DataError(`${file}: category ${labels[bad]} at index ${bad}; smallNORB categories are 0-4`);
  return labels;
}

function findPart(dir: string, files: string[], split: 'training' | 'testing', part: 'dat' | 'cat' | 'info', required: boolean): string | undefined {
  const found = files.find((f) => new RegExp(`^smallnorb-.*-${split}-${part}\\.mat(\\.gz)?$`).test(f));
  if (!found && required) throw new DataError(`missing smallnorb-*-${split}-${part}.mat[.gz] in ${dir}: pass ${USAGE}`);
  return found && join(dir, found);
}

function loadSplit(dir: string, files: string[], split: 'training' | 'testing'): Split {
  const datFile = findPart(dir, files, split, 'dat', true)!;
  const catFile = findPart(dir, files, split, 'cat', true)!;
  const { images, count } = readImages(datFile);
  const labels = readCategories(catFile);
  if (labels.length !== count) throw new DataError(`${datFile} has ${count} image pairs but ${catFile} has ${labels.length} categories: the files must match`);
  const infoFile = findPart(dir, files, split, 'info', false);
  if (infoFile) {
    const info = readNorbMatrix(infoFile);
    if (info.dims[0] !== count) throw new DataError(`${infoFile} describes ${info.dims[0]} images but ${datFile} has ${count}`);
  }
  return { images, labels, count };
}

export function loadSmallNorb(dir: string): Dataset {
  requireDirectory(dir, USAGE);
  const files = readdirSync(dir);
  const train = loadSplit(dir, files, 'training');
  const test = loadSplit(dir, files, 'testing');
  const side = SIDE / 2;
  return {
    name: `smallnorb:${dir}`,
    shape: { inputHeight: side, inputWidth: side, inputChannels: 2, numClasses: 5 },
    classLabels: SMALLNORB_CLASSES,
    source: `smallNORB ${2 * side}x${2 * side} stereo pairs (2 channels), 2x2 mean to ${side}x${side}, bytes / 255`,
    train: { images: train.images, labels: train.labels, count: train.count },
    test: { images: test.images, labels: test.labels, count: test.count },
  };
}
