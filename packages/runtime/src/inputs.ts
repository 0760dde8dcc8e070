/**
 * Turns what callers pass to classify/decode into one flat float32 batch, or a clear error. Image inputs are
 * taken in the forms `ImageInput` lists and no others: nothing is guessed from an array's length.
 */
import {
  DEFAULT_IMAGE_LIMITS,
  ImageError,
  InputError,
  PreprocessError,
  RgbaImage,
  checkPolarity,
  isBlobSource,
  isDrawableSource,
  hasInk,
  imageFormat,
  prepareImage,
  type ModelMetadata,
  type Polarity,
} from '@capsnet-onnx/core';
import type { ImageDataLike, ImageInput, PixelArray, ShapedBatch } from './contract.ts';

export const DEFAULT_MAX_BATCH = 256;

const isSource = (value: unknown) => isBlobSource(value) || isDrawableSource(value);

/**
 * What pages hold (a Blob/File of PNG/JPEG bytes, a canvas, an `<img>`, an ImageBitmap), alone or in an array, read
 * into RGBA pixels by the core's `RgbaImage.read`; every other input is returned as it is, for `toImageBatch`.
 * An unreadable source is an InputError carrying the ImageError as its cause.
 */
export async function readImageSources(images: unknown): Promise<ImageInput> {
  const read = async (source: unknown, what: string) => {
    try {
      return await RgbaImage.read(source as RgbaImage, DEFAULT_IMAGE_LIMITS, what);
    } catch (e) {
      throw e instanceof ImageError ? new InputError(e.message, { cause: e }) : e;
    }
  };
  if (isSource(images)) return read(images, 'the image');
  if (Array.isArray(images) && images.some(isSource)) {
    return Promise.all(images.map((image: unknown, n) => (isSource(image) ? read(image, `image ${n}`) : image))) as Promise<ImageInput>;
  }
  return images as ImageInput;
}

export interface Batch {
  data: Float32Array;
  count: number;
}

export interface ImageBatch extends Batch {
  /** Per image: false when it has no ink (blank), so classify answers `label: null`. */
  ink: boolean[];
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value !== 'object') return typeof value;
  return (value as object).constructor?.name ?? 'object';
}

/** True when `view`'s ArrayBuffer was detached (transferred by postMessage, or a WebAssembly memory that grew). */
function isDetached(view: ArrayBufferView): boolean {
  const buffer = view.buffer as ArrayBuffer & { detached?: boolean };
  if (typeof buffer.detached === 'boolean') return buffer.detached; // Node 22+, current browsers
  if (view.byteLength !== 0) return false;
  try {
    new Uint8Array(buffer); // throws on a detached buffer, not on an empty one
    return false;
  } catch {
    return true;
  }
}

/** A detached view reads as empty: say what happened instead of "empty batch". */
function checkAttached(value: unknown, label: string): void {
  if (ArrayBuffer.isView(value) && isDetached(value)) {
    throw new InputError(
      `${label}'s ArrayBuffer is detached (it was transferred, e.g. by postMessage, or it views WebAssembly memory that has grown): ` +
        'pass a copy made before the transfer (e.g. data.slice())',
    );
  }
}

function checkCount(count: number, maxBatch: number, what: string): void {
  if (count === 0) throw new InputError(`empty batch: pass at least one ${what}`);
  if (count > maxBatch) {
    throw new InputError(`batch of ${count} ${what}s is above the limit of ${maxBatch}: split it, or load the model with a larger { maxBatch }`);
  }
}

const isPixelArray = (v: unknown): v is PixelArray =>
  v instanceof Float32Array || v instanceof Uint8Array || v instanceof Uint8ClampedArray || Array.isArray(v);
const isBytes = (v: unknown): v is Uint8Array | Uint8ClampedArray => v instanceof Uint8Array || v instanceof Uint8ClampedArray;

/** A number[] must be dense and hold numbers only: holes and nested arrays are not pixels. */
function checkNumberArray(values: unknown[], label: string, forms: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!(i in values)) throw new InputError(`${label} is a sparse array (index ${i} is empty): pass a dense array or a Float32Array; ${forms}`);
    if (typeof values[i] !== 'number') {
      throw new InputError(`${label}[${i}] is ${describe(values[i])}, not a number: nested arrays are not accepted; ${forms}`);
    }
  }
}

/** Copy pixels into `out` at `offset`: bytes / 255; floats checked to be finite and in [0, 1]. */
function copyPixels(image: PixelArray, out: Float32Array, offset: number, label: string): void {
  if (isBytes(image)) {
    for (let i = 0; i < image.length; i++) out[offset + i] = image[i]! / 255;
    return;
  }
  for (let i = 0; i < image.length; i++) {
    const v = image[i]!;
    if (!Number.isFinite(v)) throw new InputError(`${label}: pixel ${i} is ${v}: images must be finite numbers in [0, 1]`);
    if (v < 0 || v > 1) {
      const hint = v > 1 && v <= 255 ? ' (0-255 values? pass a Uint8Array, or divide by 255)' : '';
      throw new InputError(`${label}: pixel ${i} is ${v}, outside [0, 1]${hint}`);
    }
    out[offset + i] = v;
  }
}

const isImageDataLike = (v: unknown): v is ImageDataLike =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && 'data' in v && 'width' in v && 'height' in v;
const isShaped = (v: unknown): v is ShapedBatch => typeof v === 'object' && v !== null && !Array.isArray(v) && 'data' in v && 'shape' in v;

/**
 * Images -> flat NHWC float32 batch (see `ImageInput` for the accepted forms). ImageData-like pictures go
 * through core/image.ts's pipeline with the model's preprocessing and `polarity`.
 */
export function toImageBatch(images: ImageInput, metadata: ModelMetadata, maxBatch = DEFAULT_MAX_BATCH, polarity: Polarity = 'auto'): ImageBatch {
  const { inputHeight: h, inputWidth: w, inputChannels: c } = metadata;
  const pixels = h * w * c;
  const size = `${h}x${w}x${c} = ${pixels} values`;
  const forms =
    `pass one prepared image of exactly ${size} (row-major HWC), { data, shape: [N, ${h}, ${w}, ${c}] } for a prepared batch, ` +
    'or { data, width, height } (RGBA, any size) for a picture';
  const shape = { height: h, width: w, channels: c };

  const prepare = (image: ImageDataLike, label: string, out: Float32Array, offset: number): boolean => {
    checkAttached(image.data, `${label}.data`);
    if (!isPixelArray(image.data))
      throw new InputError(`${label}.data must be a Uint8ClampedArray, Uint8Array, Float32Array or number[]; got ${describe(image.data)}`);
    if (Array.isArray(image.data)) checkNumberArray(image.data, `${label}.data`, forms);
    try {
      const prepared = prepareImage(image, shape, metadata.preprocessing, { polarity }, label);
      out.set(prepared.pixels, offset);
      return prepared.ink;
    } catch (e) {
      if (e instanceof PreprocessError) throw new InputError(e.message);
      throw e;
    }
  };

  checkAttached(images, 'the image');
  if (isShaped(images)) {
    checkAttached(images.data, 'data');
    const dims = images.shape;
    if (!Array.isArray(dims) || dims.length !== 4 || !dims.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new InputError(`shape must be [N, H, W, C] (four integers), got ${JSON.stringify(dims)}`);
    }
    const [n, sh, sw, sc] = dims;
    if (sh !== h || sw !== w || sc !== c) {
      throw new InputError(
        `a prepared batch of shape [${dims.join(', ')}] does not fit the model's [N, ${h}, ${w}, ${c}]: ` +
          'pass { data, width, height } pictures to have them resized',
      );
    }
    if (!isPixelArray(images.data))
      throw new InputError(`data must be a Float32Array, Uint8Array, Uint8ClampedArray or number[]; got ${describe(images.data)}`);
    if (images.data.length !== n * pixels) {
      throw new InputError(`data has ${images.data.length} values but shape [${dims.join(', ')}] needs ${n * pixels}`);
    }
    if (Array.isArray(images.data)) checkNumberArray(images.data, 'data', forms);
    checkCount(n, maxBatch, 'image');
    const data = new Float32Array(n * pixels);
    copyPixels(images.data, data, 0, n === 1 ? 'image' : 'images');
    return { data, count: n, ink: Array.from({ length: n }, (_, i) => hasInk(data.subarray(i * pixels, (i + 1) * pixels))) };
  }

  if (isImageDataLike(images)) {
    const data = new Float32Array(pixels);
    return { data, count: 1, ink: [prepare(images, 'image', data, 0)] };
  }

  if (Array.isArray(images) && (images.length === 0 || typeof images[0] === 'number' || !(0 in images))) {
    // One prepared image as number[].
    checkNumberArray(images, 'image', forms);
    images = Float32Array.from(images as number[]);
  }

  if (images instanceof Float32Array || isBytes(images)) {
    if (images.length === 0) throw new InputError('empty batch: pass at least one image');
    if (images.length !== pixels) {
      // The bytes of an image file are the first thing people try: name the step they are missing.
      const format = images instanceof Float32Array ? null : imageFormat(images as Uint8Array);
      if (format) {
        throw new InputError(
          `these ${images.length} bytes are a ${format.toUpperCase()} file, not pixels: decode it first, ` +
            'e.g. classify(decodeImage(bytes)) (decodeImage is exported by this package)',
        );
      }
      const k = images.length / pixels;
      let hint = forms;
      if (Number.isInteger(k))
        hint = `for a batch of ${k} images pass { data, shape: [${k}, ${h}, ${w}, ${c}] }; for one picture of another size pass { data, width, height }`;
      else if (c !== 4 && images.length % 4 === 0) hint = `for RGBA pixels (e.g. a canvas's ImageData) pass { data, width, height }; ${forms}`;
      throw new InputError(`one image must have exactly ${size}, got ${images.length} values: ${hint}`);
    }
    const data = new Float32Array(pixels);
    copyPixels(images, data, 0, 'image');
    return { data, count: 1, ink: [hasInk(data)] };
  }

  if (!Array.isArray(images)) throw new InputError(`images: got ${describe(images)}; ${forms}`);
  checkCount(images.length, maxBatch, 'image');
  const data = new Float32Array(images.length * pixels);
  const ink: boolean[] = [];
  for (let n = 0; n < images.length; n++) {
    if (!(n in images)) throw new InputError(`images is a sparse array (index ${n} is empty): pass one entry per image`);
    const image = images[n];
    checkAttached(image, `image ${n}`);
    if (isImageDataLike(image)) {
      ink.push(prepare(image, `image ${n}`, data, n * pixels));
    } else if (image instanceof Float32Array || isBytes(image)) {
      if (image.length !== pixels) {
        throw new InputError(
          `image ${n} has ${image.length} values, expected ${size} (row-major HWC); pass { data, width, height } for a picture of another size`,
        );
      }
      copyPixels(image, data, n * pixels, `image ${n}`);
      ink.push(hasInk(data.subarray(n * pixels, (n + 1) * pixels)));
    } else {
      throw new InputError(`image ${n} is ${describe(image)}: an array of images holds Float32Arrays, Uint8Arrays or { data, width, height } pictures`);
    }
  }
  return { data, count: images.length, ink };
}

/** `polarity` option, checked: a typo is an InputError naming the three values. */
export function checkPolarityOption(value: unknown): Polarity {
  try {
    return checkPolarity(value);
  } catch (e) {
    throw new InputError((e as Error).message);
  }
}

/** Masked capsules (numClasses x digitDim per example) -> flat float32 batch. */
export function toCapsuleBatch(capsules: Float32Array | Float32Array[], metadata: ModelMetadata, maxBatch = DEFAULT_MAX_BATCH): Batch {
  const size = metadata.numClasses * metadata.digitDim;
  const shape = `${metadata.numClasses}x${metadata.digitDim} = ${size} values`;
  const check = (array: Float32Array, label: string) => {
    for (let i = 0; i < array.length; i++) {
      if (!Number.isFinite(array[i]!)) throw new InputError(`${label}: value ${i} is ${array[i]}: capsules must be finite`);
    }
  };
  checkAttached(capsules, 'capsules');
  if (capsules instanceof Float32Array) {
    if (capsules.length === 0) throw new InputError('empty batch: pass at least one set of capsules');
    if (capsules.length % size !== 0) {
      throw new InputError(`capsule data has ${capsules.length} values, not a multiple of ${shape} per example`);
    }
    const count = capsules.length / size;
    checkCount(count, maxBatch, 'capsule set');
    check(capsules, 'capsules');
    return { data: capsules.slice(), count };
  }
  if (!Array.isArray(capsules)) throw new InputError(`capsules must be a Float32Array or an array of them; got ${describe(capsules)}`);
  checkCount(capsules.length, maxBatch, 'capsule set');
  const data = new Float32Array(capsules.length * size);
  // A plain loop: forEach skips the holes of a sparse array ([ , caps]), which would decode as zeros.
  for (let n = 0; n < capsules.length; n++) {
    if (!(n in capsules)) throw new InputError(`capsules is a sparse array (index ${n} is empty): pass one Float32Array per example`);
    const c = capsules[n];
    checkAttached(c, `capsules ${n}`);
    if (!(c instanceof Float32Array)) throw new InputError(`capsules ${n} must be a Float32Array; got ${describe(c)}`);
    if (c.length !== size) throw new InputError(`capsules ${n} has ${c.length} values, expected ${shape}`);
    check(c, `capsules ${n}`);
    data.set(c, n * size);
  }
  return { data, count: capsules.length };
}

export function checkMaxBatch(maxBatch: number | undefined): number {
  const value = maxBatch ?? DEFAULT_MAX_BATCH;
  if (!Number.isInteger(value) || value < 1) throw new InputError(`maxBatch must be a positive integer, got ${value}`);
  return value;
}
