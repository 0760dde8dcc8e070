/**
 * Numeric arrays out of MATLAB .mat files, in MATLAB's own column-major element order, for the data-set readers.
 *
 * - v7.3 files are HDF5 behind a 512-byte header: read with jsfive (a pure-JavaScript HDF5 reader, so loading
 *   stays synchronous like every other reader). HDF5 stores MATLAB's column-major array with its dimensions
 *   reversed, so the bytes come out in the same order as v5's.
 * - Level-5 files (v5, v6, v7: what MATLAB's `save` writes by default and what SVHN ships) are read here. The only
 *   npm reader of them is GPL-3.0 and unmaintained, so this file reads the part of the format that numeric data
 *   sets use: miMATRIX elements of a numeric class, plain or inside miCOMPRESSED (zlib), in either byte order.
 *   Cell arrays, structs, sparse and complex arrays are skipped when not asked for and refused when asked for.
 */
import { createRequire } from 'node:module';
import { inflateSync } from 'node:zlib';
import type * as Hdf5 from 'jsfive';
import { DataError, readMaybeGzipped } from './common.ts';

export interface MatArray {
  name: string;
  /** MATLAB's dimensions, e.g. [32, 32, 3, 73257] for SVHN's X. */
  dims: number[];
  /** Every element, column-major (MATLAB order), as numbers of the stored type. */
  data: ArrayLike<number>;
}

// Level-5 data types (the MAT-file format reference, table 1-1) and their typed-array readers.
const MI = { INT8: 1, UINT8: 2, INT16: 3, UINT16: 4, INT32: 5, UINT32: 6, SINGLE: 7, DOUBLE: 9, INT64: 12, UINT64: 13, MATRIX: 14, COMPRESSED: 15 } as const;
const NUMERIC: Record<number, { bytes: number; read: (v: DataView, at: number, le: boolean) => number }> = {
  [MI.INT8]: { bytes: 1, read: (v, at) => v.getInt8(at) },
  [MI.UINT8]: { bytes: 1, read: (v, at) => v.getUint8(at) },
  [MI.INT16]: { bytes: 2, read: (v, at, le) => v.getInt16(at, le) },
  [MI.UINT16]: { bytes: 2, read: (v, at, le) => v.getUint16(at, le) },
  [MI.INT32]: { bytes: 4, read: (v, at, le) => v.getInt32(at, le) },
  [MI.UINT32]: { bytes: 4, read: (v, at, le) => v.getUint32(at, le) },
  [MI.SINGLE]: { bytes: 4, read: (v, at, le) => v.getFloat32(at, le) },
  [MI.DOUBLE]: { bytes: 8, read: (v, at, le) => v.getFloat64(at, le) },
  [MI.INT64]: { bytes: 8, read: (v, at, le) => Number(v.getBigInt64(at, le)) },
  [MI.UINT64]: { bytes: 8, read: (v, at, le) => Number(v.getBigUint64(at, le)) },
};
// Array classes (mxCLASS) 6..15 are double, single, int8 ... uint64: the numeric ones.
const NUMERIC_CLASSES = new Set([6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
const HDF5_SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

/** The named numeric arrays of a .mat file (v5/v6/v7 or v7.3); a missing or non-numeric one is an error. */
export function readMatArrays(file: string, names: string[]): Map<string, MatArray> {
  const bytes = readMaybeGzipped(file);
  const hdf5At = [0, 512, 1024, 2048].find((at) => bytes.length >= at + 8 && bytes.subarray(at, at + 8).equals(HDF5_SIGNATURE));
  const found = hdf5At !== undefined ? readHdf5(file, bytes, hdf5At, names) : readLevel5(file, bytes, names);
  for (const name of names) {
    if (!found.has(name)) throw new DataError(`${file} has no numeric variable "${name}": is it the right file?`);
  }
  return found;
}

function readHdf5(file: string, bytes: Buffer, at: number, names: string[]): Map<string, MatArray> {
  const out = new Map<string, MatArray>();
  // Loaded on first use (its CommonJS build, synchronously), so the IDX and binary readers do not pay for it.
  const hdf5 = createRequire(import.meta.url)('jsfive') as typeof Hdf5;
  let h5: Hdf5.File;
  // HDF5 addresses count from the superblock, so a file behind MATLAB's 512-byte header reads from there.
  const buffer = bytes.buffer.slice(bytes.byteOffset + at, bytes.byteOffset + bytes.length) as ArrayBuffer;
  try {
    h5 = new hdf5.File(buffer, file);
  } catch (e) {
    throw new DataError(`${file} looks like a MATLAB v7.3 (HDF5) file but cannot be read (${(e as Error).message ?? e}): re-save it with save(..., '-v7')`);
  }
  for (const name of names) {
    if (!h5.keys.includes(name)) continue;
    const dataset = h5.get(name) as Hdf5.Dataset;
    let value: ArrayLike<number>;
    try {
      value = dataset.value as ArrayLike<number>;
    } catch (e) {
      throw new DataError(
        `${file}: cannot read variable "${name}" (${(e as Error).message ?? e}); ` +
          (e instanceof RangeError ? "it is too large for the v7.3 reader: re-save the file with save(..., '-v7')" : "re-save the file with save(..., '-v7')"),
      );
    }
    if (!Array.isArray(dataset.shape) || typeof value?.length !== 'number') throw new DataError(`${file}: variable "${name}" is not a numeric array`);
    out.set(name, { name, dims: [...dataset.shape].reverse(), data: value });
  }
  return out;
}

interface Element {
  type: number;
  /** Start and end of the element's data in the view. */
  start: number;
  end: number;
  /** Where the next element starts. */
  next: number;
}

/** One data element's tag: 8 bytes (type, size), or the 4-byte "small data element" form. */
function readTag(file: string, view: DataView, at: number, le: boolean, limit: number): Element {
  if (at + 8 > limit) throw new DataError(`${file} is truncated: a data element starts at byte ${at} but the file ends at ${limit}`);
  const first = view.getUint32(at, le);
  const small = first >>> 16;
  if (small !== 0) {
    return { type: first & 0xffff, start: at + 4, end: at + 4 + small, next: at + 8 };
  }
  const size = view.getUint32(at + 4, le);
  const end = at + 8 + size;
  if (end > limit) throw new DataError(`${file} is truncated: an element of ${size} bytes at byte ${at} runs past the end`);
  return { type: first, start: at + 8, end, next: at + 8 + Math.ceil(size / 8) * 8 };
}

function readLevel5(file: string, bytes: Buffer, names: string[]): Map<string, MatArray> {
  const text = bytes.subarray(0, 116).toString('latin1');
  if (bytes.length < 128 || !text.startsWith('MATLAB 5.0 MAT-file')) {
    throw new DataError(`${file} is not a MATLAB .mat file (no "MATLAB 5.0 MAT-file" header and no HDF5 signature): is it the right file?`);
  }
  const endian = bytes.subarray(126, 128).toString('latin1');
  if (endian !== 'IM' && endian !== 'MI') throw new DataError(`${file}: unknown byte-order mark "${endian}" in the MAT-file header`);
  const le = endian === 'IM';
  const wanted = new Set(names);
  const out = new Map<string, MatArray>();
  const walk = (buf: Uint8Array, from: number) => {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (let at = from; at < buf.length && out.size < wanted.size; ) {
      if (buf.length - at < 8) break; // trailing padding
      const element = readTag(file, view, at, le, buf.length);
      if (element.type === MI.COMPRESSED) {
        let inflated: Buffer;
        try {
          inflated = inflateSync(buf.subarray(element.start, element.end));
        } catch (e) {
          throw new DataError(`${file}: a compressed variable at byte ${at} does not inflate (${(e as Error).message}): the file is damaged`);
        }
        walk(inflated, 0);
      } else if (element.type === MI.MATRIX) {
        const array = readMatrix(file, view, element, le, wanted);
        if (array) out.set(array.name, array);
      }
      // Compressed elements are not padded to 8 bytes; others are.
      at = element.type === MI.COMPRESSED ? element.end : element.next;
    }
  };
  walk(bytes, 128);
  return out;
}

/** An miMATRIX element's subelements: flags, dimensions, name, real part (and an imaginary part we refuse). */
function readMatrix(file: string, view: DataView, matrix: Element, le: boolean, wanted: Set<string>): MatArray | undefined {
  if (matrix.end === matrix.start) return undefined; // an empty placeholder
  const flags = readTag(file, view, matrix.start, le, matrix.end);
  const flagWord = view.getUint32(flags.start, le);
  const arrayClass = flagWord & 0xff;
  const complex = (flagWord & 0x800) !== 0;
  const dimsTag = readTag(file, view, flags.next, le, matrix.end);
  const dims: number[] = [];
  for (let p = dimsTag.start; p < dimsTag.end; p += 4) dims.push(view.getInt32(p, le));
  const nameTag = readTag(file, view, dimsTag.next, le, matrix.end);
  const name = new TextDecoder('latin1').decode(new Uint8Array(view.buffer, view.byteOffset + nameTag.start, nameTag.end - nameTag.start));
  if (!wanted.has(name)) return undefined;
  if (!NUMERIC_CLASSES.has(arrayClass) || complex) {
    throw new DataError(
      `${file}: variable "${name}" is ${complex ? 'complex' : `of MATLAB class ${arrayClass}, not a numeric array`}: save it as a real numeric array`,
    );
  }
  const real = readTag(file, view, nameTag.next, le, matrix.end);
  const kind = NUMERIC[real.type];
  if (!kind) throw new DataError(`${file}: variable "${name}" is stored as data type ${real.type}, which this reader does not take`);
  const count = (real.end - real.start) / kind.bytes;
  const expected = dims.reduce((a, b) => a * b, 1);
  if (count !== expected) throw new DataError(`${file}: variable "${name}" is ${dims.join('x')} (${expected} values) but holds ${count}`);
  let data: ArrayLike<number>;
  if (real.type === MI.UINT8) {
    data = new Uint8Array(view.buffer, view.byteOffset + real.start, count);
  } else {
    const values = new Float64Array(count);
    for (let i = 0; i < count; i++) values[i] = kind.read(view, real.start + i * kind.bytes, le);
    data = values;
  }
  return { name, dims, data };
}
