/**
 * What every data-set reader returns, and the checks they share. Images are float32 NHWC in [0, 1] at the size the
 * data set holds them (the trainer crops them to the network's input where the data set's protocol says so);
 * labels are class indices 0..numClasses-1.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { DataShape } from '@capsnet-onnx/core';
import { systemErrorLine } from '../files/atomic.ts';

export interface Split {
  images: Float32Array;
  labels: Int32Array;
  count: number;
}

export interface Dataset {
  name: string;
  /** The images as the data set holds them (after any resize the reader does, e.g. smallNORB's 96 -> 48). */
  shape: DataShape;
  classLabels: string[];
  /**
   * Class index k is the files' label k + labelOffset. EMNIST letters store 1..26, so their offset is 1 and class 0
   * is "a", not a phantom class no image has. Absent: 0.
   */
  labelOffset?: number;
  /** One line on how the reader turned the files into these images, e.g. "96x96 stereo pairs, 2x2 mean to 48x48". */
  source?: string;
  /**
   * The name a shipped file may carry (datasets.ts's loadDataset sets it): the spec for built-in sets, the scheme
   * and the directory's base name for directory data (`idx:mnist-full`), never a path.
   */
  publicName?: string;
  /** SHA-256 (hex) of every file the reader read, as on disk, keyed by file name (loadDataset sets it). */
  files?: Record<string, string>;
  train: Split;
  test: Split;
}

/** An error about the user's data: the CLI prints its message alone, without a stack. */
export class DataError extends Error {
  override name = 'DataError';
}

export function requireDirectory(dir: string, usage: string): void {
  if (!existsSync(dir)) throw new DataError(`data directory ${dir} does not exist: pass ${usage}`);
}

/** The readers' file hashes, while recordDataFiles runs (readers are synchronous, so one recording at a time). */
let recording: Record<string, string> | undefined;

/**
 * Run a (synchronous) reader and collect the SHA-256 of every file it reads through readMaybeGzipped, keyed by the
 * file's name without its directory: the data's provenance without its path.
 */
export function recordDataFiles<T>(read: () => T): { value: T; files: Record<string, string> } {
  const outer = recording;
  const files: Record<string, string> = {};
  recording = files;
  try {
    return { value: read(), files };
  } finally {
    recording = outer;
    if (outer) Object.assign(outer, files);
  }
}

/** A file's bytes, gunzipped when its name ends in .gz (its SHA-256, of the bytes as on disk, goes to recordDataFiles). */
export function readMaybeGzipped(file: string): Buffer {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EISDIR') throw new DataError(`${file} is a directory, not a data file: check the --data directory's contents`, { cause: e });
    throw new DataError(systemErrorLine(e, file) ?? `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
  if (recording) recording[basename(file)] = createHash('sha256').update(raw).digest('hex');
  if (!file.endsWith('.gz')) return raw;
  try {
    return gunzipSync(raw);
  } catch (e) {
    throw new DataError(`${file} is not a valid gzip file (${(e as Error).message}): re-download it or gunzip it by hand`);
  }
}

/**
 * Raw labels -> class indices. The offset is the smallest training label, so labels 1..26 become 0..25; a test
 * label outside the training labels' range cannot be scored and is an error naming the file and the index.
 */
export function labelsToClasses(
  train: { file: string; labels: Int32Array },
  test: { file: string; labels: Int32Array },
): { train: Int32Array; test: Int32Array; offset: number; numClasses: number } {
  if (train.labels.length === 0) throw new DataError(`${train.file} holds no labels`);
  let min = Infinity;
  let max = -Infinity;
  for (const l of train.labels) {
    if (l < min) min = l;
    if (l > max) max = l;
  }
  if (min < 0) throw new DataError(`${train.file}: label ${min} is negative: labels must be class numbers 0, 1, 2, ...`);
  const numClasses = Math.max(2, max - min + 1);
  const bad = test.labels.findIndex((l) => l < min || l > min + numClasses - 1);
  if (bad >= 0) {
    throw new DataError(`${test.file}: label ${test.labels[bad]} at index ${bad} is out of range: the training labels go from ${min} to ${max}`);
  }
  const shift = (labels: Int32Array) => (min === 0 ? labels : labels.map((l) => l - min));
  return { train: shift(train.labels), test: shift(test.labels), offset: min, numClasses };
}

/** The split's images must be as many as its labels. */
export function checkCounts(imagesFile: string, images: number, labelsFile: string, labels: number): void {
  if (images !== labels) {
    throw new DataError(`${imagesFile} has ${images} images but ${labelsFile} has ${labels} labels: the two files must match`);
  }
}

/** Average non-overlapping f x f blocks: NHWC [n, h, w, c] -> [n, h/f, w/f, c] (smallNORB's 96 -> 48). */
export function downsampleMean(images: Float32Array, n: number, h: number, w: number, c: number, f: number): Float32Array {
  const oh = Math.floor(h / f);
  const ow = Math.floor(w / f);
  const out = new Float32Array(n * oh * ow * c);
  const scale = 1 / (f * f);
  for (let i = 0; i < n; i++) {
    for (let y = 0; y < oh; y++) {
      for (let x = 0; x < ow; x++) {
        for (let k = 0; k < c; k++) {
          let sum = 0;
          for (let dy = 0; dy < f; dy++) {
            for (let dx = 0; dx < f; dx++) sum += images[((i * h + y * f + dy) * w + x * f + dx) * c + k]!;
          }
          out[((i * oh + y) * ow + x) * c + k] = sum * scale;
        }
      }
    }
  }
  return out;
}
