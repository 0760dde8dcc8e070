/**
 * Reading the real affNIST test set (`--affnist-dir`). Supported:
 *  1. MATLAB level-5 .mat files as affNIST distributes them (e.g. `test.mat`, or the numbered batch files
 *     `1.mat ... 32.mat` of `test_batches`): a struct `affNISTdata` with fields `image` (1600 x N, uint8) and
 *     `label_int` (1 x N) or `label_one_of_n` (10 x N). Compressed (miCOMPRESSED) and plain elements both read.
 *     MATLAB v7.3 files are HDF5 and are not supported: re-save with `save(..., '-v7')` or convert to IDX.
 *  2. IDX files, the simple format: `test-images-idx3-ubyte` (N x 40 x 40) and `test-labels-idx1-ubyte`
 *     (`t10k-` names and `.gz` also accepted).
 * The path may be a directory (all .mat files in it, in numeric/alphabetical order, else the IDX pair) or one .mat file.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { readIdxImages, readIdxLabels } from '../data/datasets.ts';

export interface ImageSet {
  images: Float32Array;
  labels: Int32Array;
  count: number;
  size: number;
  source: string;
}

export class AffnistError extends Error {
  override name = 'AffnistError';
}

// ---- MAT level 5 -------------------------------------------------------------------------------------------------

/** MAT-file element types (MATLAB's miINT8, ...), by the numbers the format stores. */
export const MI = {
  INT8: 1,
  UINT8: 2,
  INT16: 3,
  UINT16: 4,
  INT32: 5,
  UINT32: 6,
  SINGLE: 7,
  DOUBLE: 9,
  INT64: 12,
  UINT64: 13,
  MATRIX: 14,
  COMPRESSED: 15,
  UTF8: 16,
} as const;
/** MAT-file array classes (mxSTRUCT_CLASS, ...). */
export const MX = {
  CELL: 1,
  STRUCT: 2,
  CHAR: 4,
  DOUBLE: 6,
  SINGLE: 7,
  INT8: 8,
  UINT8: 9,
  INT16: 10,
  UINT16: 11,
  INT32: 12,
  UINT32: 13,
  INT64: 14,
  UINT64: 15,
} as const;

export type MatValue =
  | { kind: 'numeric'; dims: number[]; data: Float64Array }
  | { kind: 'struct'; dims: number[]; fields: Array<Record<string, MatValue>> }
  | { kind: 'cell'; dims: number[]; cells: MatValue[] }
  | { kind: 'char'; dims: number[]; text: string }
  | { kind: 'unsupported'; dims: number[]; mxClass: number };

interface Element {
  type: number;
  data: Buffer;
}

class Reader {
  constructor(
    private readonly buf: Buffer,
    private pos: number,
    private readonly little: boolean,
    private readonly file: string,
  ) {}

  get done(): boolean {
    return this.pos + 8 > this.buf.length;
  }

  private u32(at: number): number {
    return this.little ? this.buf.readUInt32LE(at) : this.buf.readUInt32BE(at);
  }

  next(): Element {
    if (this.pos + 8 > this.buf.length) throw new AffnistError(`${this.file}: truncated MAT element at byte ${this.pos}`);
    const first = this.u32(this.pos);
    if (first >>> 16 !== 0) {
      // small data element: 2-byte size, 2-byte type, 4 bytes of data
      const nbytes = first >>> 16;
      const type = first & 0xffff;
      const data = this.buf.subarray(this.pos + 4, this.pos + 4 + nbytes);
      this.pos += 8;
      return { type, data };
    }
    const type = first;
    const nbytes = this.u32(this.pos + 4);
    const start = this.pos + 8;
    if (start + nbytes > this.buf.length) throw new AffnistError(`${this.file}: truncated MAT element (needs ${nbytes} bytes at ${start})`);
    const data = this.buf.subarray(start, start + nbytes);
    // compressed elements are not padded; everything else is padded to 8 bytes
    this.pos = type === MI.COMPRESSED ? start + nbytes : start + Math.ceil(nbytes / 8) * 8;
    return { type, data };
  }
}

function numbers(el: Element, little: boolean): Float64Array {
  const d = el.data;
  const read = (size: number, f: (at: number) => number) => Float64Array.from({ length: Math.floor(d.length / size) }, (_, i) => f(i * size));
  switch (el.type) {
    case MI.INT8:
      return read(1, (i) => d.readInt8(i));
    case MI.UINT8:
    case MI.UTF8:
      return read(1, (i) => d.readUInt8(i));
    case MI.INT16:
      return read(2, (i) => (little ? d.readInt16LE(i) : d.readInt16BE(i)));
    case MI.UINT16:
      return read(2, (i) => (little ? d.readUInt16LE(i) : d.readUInt16BE(i)));
    case MI.INT32:
      return read(4, (i) => (little ? d.readInt32LE(i) : d.readInt32BE(i)));
    case MI.UINT32:
      return read(4, (i) => (little ? d.readUInt32LE(i) : d.readUInt32BE(i)));
    case MI.SINGLE:
      return read(4, (i) => (little ? d.readFloatLE(i) : d.readFloatBE(i)));
    case MI.DOUBLE:
      return read(8, (i) => (little ? d.readDoubleLE(i) : d.readDoubleBE(i)));
    case MI.INT64:
      return read(8, (i) => Number(little ? d.readBigInt64LE(i) : d.readBigInt64BE(i)));
    case MI.UINT64:
      return read(8, (i) => Number(little ? d.readBigUInt64LE(i) : d.readBigUInt64BE(i)));
    default:
      throw new AffnistError(`unsupported MAT data type ${el.type}`);
  }
}

function parseMatrix(data: Buffer, little: boolean, file: string): { name: string; value: MatValue } {
  const r = new Reader(data, 0, little, file);
  const flags = numbers(r.next(), little);
  const mxClass = flags[0]! & 0xff;
  const dims = Array.from(numbers(r.next(), little));
  const name = Buffer.from(numbers(r.next(), little)).toString('latin1');
  if (mxClass === MX.STRUCT) {
    const fieldLength = numbers(r.next(), little)[0]!;
    const namesRaw = r.next().data;
    const names: string[] = [];
    for (let at = 0; at + fieldLength <= namesRaw.length; at += fieldLength) {
      names.push(
        namesRaw
          .subarray(at, at + fieldLength)
          .toString('latin1')
          .replace(/\0.*$/s, ''),
      );
    }
    const count = dims.reduce((a, b) => a * b, 1);
    const fields: Array<Record<string, MatValue>> = [];
    for (let i = 0; i < count; i++) {
      const entry: Record<string, MatValue> = {};
      for (const field of names) {
        const el = r.next();
        entry[field] = el.data.length === 0 ? { kind: 'numeric', dims: [0, 0], data: new Float64Array(0) } : parseMatrix(el.data, little, file).value;
      }
      fields.push(entry);
    }
    return { name, value: { kind: 'struct', dims, fields } };
  }
  if (mxClass === MX.CELL) {
    const count = dims.reduce((a, b) => a * b, 1);
    const cells = Array.from({ length: count }, () => {
      const el = r.next();
      return el.data.length === 0 ? ({ kind: 'numeric', dims: [0, 0], data: new Float64Array(0) } as MatValue) : parseMatrix(el.data, little, file).value;
    });
    return { name, value: { kind: 'cell', dims, cells } };
  }
  if (mxClass === MX.CHAR) return { name, value: { kind: 'char', dims, text: String.fromCharCode(...numbers(r.next(), little)) } };
  if (mxClass >= MX.DOUBLE && mxClass <= MX.UINT64) return { name, value: { kind: 'numeric', dims, data: numbers(r.next(), little) } };
  return { name, value: { kind: 'unsupported', dims, mxClass } };
}

/** Parse a MATLAB level-5 .mat file into its top-level variables. */
export function parseMat(bytes: Buffer, file = 'mat file'): Record<string, MatValue> {
  if (bytes.length >= 8 && bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    throw new AffnistError(`${file} is a MATLAB v7.3 (HDF5) file, which is not supported: re-save it with save(..., '-v7') or convert it to IDX`);
  }
  if (bytes.length < 128) throw new AffnistError(`${file} is too short to be a .mat file`);
  const header = bytes.subarray(0, 116).toString('latin1');
  if (bytes.subarray(512, 520).toString('latin1').startsWith('\x89HDF') || header.includes('7.3 MAT-file')) {
    throw new AffnistError(`${file} is a MATLAB v7.3 (HDF5) file, which is not supported: re-save it with save(..., '-v7') or convert it to IDX`);
  }
  const endian = bytes.subarray(126, 128).toString('latin1');
  if (endian !== 'IM' && endian !== 'MI') throw new AffnistError(`${file} is not a MATLAB level-5 .mat file (no endian marker)`);
  const little = endian === 'IM';
  const vars: Record<string, MatValue> = {};
  const r = new Reader(bytes, 128, little, file);
  while (!r.done) {
    let el = r.next();
    if (el.type === MI.COMPRESSED) {
      let inflated: Buffer;
      try {
        inflated = inflateSync(el.data);
      } catch (e) {
        throw new AffnistError(`${file}: a compressed element does not inflate (${(e as Error).message}): the file is corrupted`);
      }
      el = new Reader(inflated, 0, little, file).next();
    }
    if (el.type !== MI.MATRIX) continue;
    const { name, value } = parseMatrix(el.data, little, file);
    vars[name] = value;
  }
  return vars;
}

/** Find `image` and labels in affNIST's struct (or as top-level variables) and convert to 40x40 float images. */
export function affnistFromMat(vars: Record<string, MatValue>, file: string): ImageSet {
  let fields: Record<string, MatValue> | undefined;
  for (const v of Object.values(vars)) if (v.kind === 'struct' && v.fields[0]?.image) fields = v.fields[0];
  fields ??= vars;
  const image = fields.image;
  if (image?.kind !== 'numeric') throw new AffnistError(`${file}: no numeric 'image' field (expected struct affNISTdata with image and label_int)`);
  const [pixels, count] = image.dims as [number, number];
  const size = Math.round(Math.sqrt(pixels));
  if (size * size !== pixels) throw new AffnistError(`${file}: 'image' is ${image.dims.join('x')}, expected (side*side) x N`);
  let labels: Int32Array;
  const labelInt = fields.label_int;
  const oneOfN = fields.label_one_of_n;
  if (labelInt?.kind === 'numeric' && labelInt.data.length === count) {
    labels = Int32Array.from(labelInt.data);
  } else if (oneOfN?.kind === 'numeric' && oneOfN.data.length % count === 0) {
    const classes = oneOfN.data.length / count;
    labels = new Int32Array(count);
    for (let n = 0; n < count; n++) {
      let best = 0;
      for (let k = 1; k < classes; k++) if (oneOfN.data[n * classes + k]! > oneOfN.data[n * classes + best]!) best = k;
      labels[n] = best;
    }
  } else {
    throw new AffnistError(`${file}: no labels (expected 'label_int' 1xN or 'label_one_of_n' 10xN)`);
  }
  const max = image.data.reduce((m, v) => Math.max(m, v), 0);
  const scale = max > 1 ? 1 / 255 : 1;
  // Column n of the (pixels x N) matrix is image n; its 1600 values are the rows of the 40x40 image in order.
  const images = Float32Array.from(image.data, (v) => v * scale);
  return { images, labels, count, size, source: file };
}

export function concatSets(sets: ImageSet[], source: string): ImageSet {
  if (sets.length === 0) throw new AffnistError(`${source}: no images found`);
  const size = sets[0]!.size;
  for (const s of sets)
    if (s.size !== size) throw new AffnistError(`${s.source} holds ${s.size}x${s.size} images but ${sets[0]!.source} holds ${size}x${size}`);
  const count = sets.reduce((n, s) => n + s.count, 0);
  const images = new Float32Array(count * size * size);
  const labels = new Int32Array(count);
  let at = 0;
  for (const s of sets) {
    images.set(s.images, at * size * size);
    labels.set(s.labels, at);
    at += s.count;
  }
  return { images, labels, count, size, source };
}

/** Load the affNIST test set from a .mat file, a directory of .mat files, or a directory with the IDX pair. */
export function loadAffnist(path: string): ImageSet {
  if (!existsSync(path)) throw new AffnistError(`--affnist-dir ${path} does not exist`);
  if (statSync(path).isFile()) {
    if (!path.endsWith('.mat')) throw new AffnistError(`${path}: pass a .mat file or a directory (of .mat files or IDX files)`);
    return affnistFromMat(parseMat(readFileSync(path), path), path);
  }
  const mats = readdirSync(path)
    .filter((f) => f.endsWith('.mat'))
    .sort((a, b) => (parseInt(a, 10) || 0) - (parseInt(b, 10) || 0) || a.localeCompare(b));
  if (mats.length > 0)
    return concatSets(
      mats.map((f) => affnistFromMat(parseMat(readFileSync(join(path, f)), join(path, f)), join(path, f))),
      path,
    );
  const find = (names: string[]) =>
    names
      .flatMap((n) => [n, `${n}.gz`])
      .map((n) => join(path, n))
      .find((p) => existsSync(p));
  const imagesFile = find(['test-images-idx3-ubyte', 't10k-images-idx3-ubyte', 'test-images.idx3-ubyte']);
  const labelsFile = find(['test-labels-idx1-ubyte', 't10k-labels-idx1-ubyte', 'test-labels.idx1-ubyte']);
  if (!imagesFile || !labelsFile) {
    throw new AffnistError(`${path}: no .mat files and no IDX pair (test-images-idx3-ubyte + test-labels-idx1-ubyte) found`);
  }
  const images = readIdxImages(imagesFile);
  const labels = readIdxLabels(labelsFile);
  if (images.height !== images.width) throw new AffnistError(`${basename(imagesFile)}: images are ${images.height}x${images.width}, expected square`);
  if (images.count !== labels.labels.length)
    throw new AffnistError(`${imagesFile} has ${images.count} images but ${labelsFile} has ${labels.labels.length} labels`);
  return { images: images.pixels, labels: labels.labels, count: images.count, size: images.height, source: path };
}
