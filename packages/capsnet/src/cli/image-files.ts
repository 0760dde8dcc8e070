/**
 * Image files for `capsnet classify` (Node only). Arguments are files, directories (every PNG, JPEG and IDX image
 * file under them, sorted) or `-`: standard input holds either one image or a list of paths, one a line.
 * PNG and JPEG files go through the one image pipeline (core/decode.ts, core/image.ts) exactly as the HTTP server
 * and the runtime's `{ data, width, height }` inputs do; IDX image files (MNIST's format, optionally gzipped)
 * already hold prepared model inputs and are read as they are.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import {
  DEFAULT_IMAGE_LIMITS,
  ImageError,
  InputError,
  PreprocessError,
  decodeImage,
  emptyImageMessage,
  imageFormat,
  prepareImage,
  type ImageLimits,
  type ModelMetadata,
  type Polarity,
} from '@capsnet-onnx/core';
import { DataError } from '../data/common.ts';
import { type IdxArray, idxImages, parseIdx, readIdxLabels } from '../data/idx.ts';

/** One image ready for the model, or the reason its file could not be read. */
export interface LoadedImage {
  /** The file, `file[i]` for the i-th image of an IDX file, or `-` for an image on standard input. */
  name: string;
  pixels?: Float32Array;
  /** The true label, when an IDX labels file sits beside its images file. */
  trueLabel?: number;
  error?: { code: string; message: string };
}

export interface ImageFileOptions {
  polarity?: Polarity;
  /** At most this many images from an IDX file. */
  limit?: number;
  limits?: ImageLimits;
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);
const isIdxName = (name: string) => /idx3-ubyte(\.gz)?$/i.test(name);

function gunzipIfNeeded(bytes: Uint8Array, name: string): Uint8Array {
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    return gunzipSync(bytes);
  } catch (e) {
    throw new InputError(`${name}: not a valid gzip file (${(e as Error).message})`);
  }
}

/** The labels of the first `count` images, from the IDX labels file beside an images file, if one is there and readable. */
function labelsBeside(imagesPath: string, count: number): Int32Array | undefined {
  const base = basename(imagesPath);
  if (!/images[-.]idx3/.test(base)) return undefined;
  for (const candidate of [base.replace(/images([-.])idx3/, 'labels$1idx1'), base.replace(/images([-.])idx3/, 'labels$1idx1').replace(/\.gz$/, '')]) {
    const path = join(dirname(imagesPath), candidate);
    if (!existsSync(path)) continue;
    let labels: Int32Array;
    try {
      labels = readIdxLabels(path).labels;
    } catch {
      return undefined;
    }
    return labels.length >= count ? labels.subarray(0, count) : undefined;
  }
  return undefined;
}

/**
 * IDX images (data/idx.ts's parser: N x H x W or N x H x W x C, bytes or float32 in [0, 1]) -> float32 NHWC, at most
 * `limit` of them; the header's sizes are checked against the data and the model before any pixel is read.
 */
export function imagesFromIdx(bytes: Uint8Array, metadata: ModelMetadata, name: string, limit = Infinity): { images: Float32Array; count: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length === 0) throw new ImageError('NOT_AN_IMAGE', emptyImageMessage(name));
  const magic = bytes.length >= 4 ? view.getUint32(0) : 0;
  if (magic === 0x801) throw new InputError(`${name} is an IDX labels file: pass the images file (…-images-idx3-ubyte)`);
  if (magic >>> 16 !== 0 || bytes.length < 16) {
    throw new InputError(`${name} is not a PNG, JPEG or IDX image file (it starts 0x${magic.toString(16).padStart(8, '0')}): convert it to PNG or JPEG`);
  }
  let idx: IdxArray;
  try {
    idx = parseIdx(bytes, name);
  } catch (e) {
    if (e instanceof DataError) throw new InputError(e.message);
    throw e;
  }
  if (idx.dims.length !== 3 && idx.dims.length !== 4) {
    throw new InputError(`${name} holds a ${idx.dims.length}-D array (${idx.dims.join('x')}): IDX images must be N x H x W or N x H x W x C`);
  }
  const [, h, w, c = 1] = idx.dims;
  if (c !== metadata.inputChannels) {
    throw new InputError(`${name} holds ${c === 1 ? 'grayscale' : `${c}-channel`} images but the model takes ${metadata.inputChannels} channels`);
  }
  if (h !== metadata.inputHeight || w !== metadata.inputWidth) {
    throw new InputError(`${name} holds ${h}x${w} images but the model takes ${metadata.inputHeight}x${metadata.inputWidth}`);
  }
  try {
    const { pixels, count } = idxImages(idx, false, limit);
    return { images: pixels, count };
  } catch (e) {
    if (e instanceof DataError) throw new InputError(e.message);
    throw e;
  }
}

/**
 * Every image file under `dir` (PNG, JPEG by extension; IDX image files by name), sorted, recursively; hidden
 * entries and node_modules (installed packages' icons and test data, not the user's images) are skipped below it.
 */
function listDirectory(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (entry.name.startsWith('.') || (entry.name === 'node_modules' && entry.isDirectory())) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listDirectory(path));
    else if (entry.isFile() && (IMAGE_EXTENSIONS.has(extname(entry.name).toLowerCase()) || isIdxName(entry.name))) out.push(path);
  }
  return out;
}

/** A source of bytes: a path, standard input's image, or a path already known to be unreadable (and why). */
export type ImageSource = { path: string } | { name: string; bytes: Uint8Array } | { name: string; error: { code: string; message: string } };

/**
 * A path that cannot be read, as a row's error: like an undecodable file, it is reported in its own row and the
 * other files are still classified. ENOENT is NOT_FOUND; anything else the system refuses is UNREADABLE.
 */
function unreadable(e: unknown, path: string): { code: string; message: string } | null {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (typeof code !== 'string' || !/^E[A-Z]+$/.test(code)) return null;
  if (code === 'ENOENT') return { code: 'NOT_FOUND', message: `${path} does not exist: check the path` };
  const why: Record<string, string> = {
    EACCES: `permission denied reading ${path}: fix its permissions (chmod +r)`,
    EPERM: `reading ${path} is not permitted: fix its permissions (chmod +r)`,
    ENOTDIR: `${path} cannot be read: a parent of it is a file, not a directory`,
    ELOOP: `${path} cannot be read: its symbolic links loop`,
  };
  return { code: 'UNREADABLE', message: `${why[code] ?? `${path} cannot be read: check the path and its permissions`} (${code})` };
}

/**
 * Command-line arguments -> image sources. `-` reads standard input (`readStdin`): an image (PNG, JPEG or IDX
 * bytes) is one source, anything else is a list of paths, one a line (blank lines skipped).
 */
export function expandArguments(args: string[], readStdin: () => Uint8Array): ImageSource[] {
  const sources: ImageSource[] = [];
  let stdinUsed = false;
  for (const arg of args) {
    if (arg === '-') {
      if (stdinUsed) throw new InputError('`-` is given twice: standard input can be read once');
      stdinUsed = true;
      const bytes = readStdin();
      const idx = bytes.length >= 4 && bytes[0] === 0 && bytes[1] === 0 && bytes[2] === 8 && bytes[3] === 3;
      if (imageFormat(bytes) || idx || (bytes[0] === 0x1f && bytes[1] === 0x8b)) sources.push({ name: '-', bytes });
      else {
        const paths = new TextDecoder()
          .decode(bytes)
          .split(/\r?\n/)
          .map((l) => l.trim())
          .filter((l) => l !== '');
        if (paths.length === 0) throw new InputError('standard input (`-`) is empty: pipe in an image, or a list of image paths one a line');
        sources.push(
          ...expandArguments(
            paths.filter((p) => p !== '-'),
            readStdin,
          ),
        );
      }
      continue;
    }
    let isDirectory: boolean;
    try {
      isDirectory = statSync(arg).isDirectory();
    } catch {
      // Missing or unreadable: loadSource reads it and reports why in its row, like any other bad file.
      sources.push({ path: arg });
      continue;
    }
    if (isDirectory) {
      let files: string[];
      try {
        files = listDirectory(arg);
      } catch (e) {
        const error = unreadable(e, arg);
        if (!error) throw e;
        sources.push({ name: arg, error }); // a directory that cannot be listed is one row
        continue;
      }
      if (files.length === 0) throw new InputError(`${arg} holds no PNG, JPEG or IDX image files`);
      sources.push(...files.map((path) => ({ path })));
    } else sources.push({ path: arg });
  }
  return sources;
}

const asError = (e: unknown): { code: string; message: string } | null => {
  if (e instanceof ImageError) return { code: e.code, message: e.message };
  if (e instanceof PreprocessError || e instanceof InputError) return { code: 'BAD_IMAGE', message: e.message };
  return null;
};

/**
 * One source -> its images, prepared for the model. A path that is missing or cannot be read, or a file that
 * cannot be read as an image, gives one entry with `error` (so one bad file does not stop the rest); other
 * errors are thrown.
 */
export function loadSource(source: ImageSource, metadata: ModelMetadata, options: ImageFileOptions = {}): LoadedImage[] {
  const name = 'path' in source ? source.path : source.name;
  if ('error' in source) return [{ name, error: source.error }];
  let raw: Uint8Array;
  try {
    raw = 'path' in source ? new Uint8Array(readFileSync(source.path)) : source.bytes;
  } catch (e) {
    const error = unreadable(e, name);
    if (!error) throw e;
    return [{ name, error }];
  }
  try {
    if (imageFormat(raw)) {
      const shape = { height: metadata.inputHeight, width: metadata.inputWidth, channels: metadata.inputChannels };
      const picture = decodeImage(raw, options.limits ?? DEFAULT_IMAGE_LIMITS, name);
      const prepared = prepareImage(picture, shape, metadata.preprocessing, { polarity: options.polarity }, name);
      return [{ name, pixels: prepared.pixels }];
    }
    const bytes = gunzipIfNeeded(raw, name);
    const { images, count } = imagesFromIdx(bytes, metadata, name, options.limit);
    const labels = 'path' in source ? labelsBeside(source.path, count) : undefined;
    const pixels = metadata.inputHeight * metadata.inputWidth;
    return Array.from({ length: count }, (_, i) => ({
      name: `${name}[${i}]`,
      pixels: images.subarray(i * pixels, (i + 1) * pixels),
      ...(labels ? { trueLabel: labels[i]! } : {}),
    }));
  } catch (e) {
    const error = asError(e);
    if (!error) throw e;
    return [{ name, error }];
  }
}
