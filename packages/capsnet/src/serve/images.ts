/**
 * Request bodies to model inputs. Image files (PNG, JPEG) and nested JSON pixel arrays go through the one image
 * pipeline (@capsnet-onnx/core: decode.ts, image.ts), the same the CLI and the runtime use, so one picture gets one answer
 * everywhere; a flat JSON array of exactly H*W*C values is taken as already prepared. JSON capsule arrays become
 * numClasses x digitDim float32 sets. Every problem is a ServeError (4xx) naming the image, the place and the fix.
 * `decodeUpload` is the whole of the file path: bytes and plain options in, pixels out, so it can run anywhere
 * (a worker thread included).
 */
import { encode as encodePngFile } from 'fast-png';
import {
  DEFAULT_IMAGE_LIMITS,
  ImageError,
  PreprocessError,
  decodeImage,
  prepareImage,
  type ImageLimits,
  type InputShape,
  type Polarity,
  type Preprocessing,
} from '@capsnet-onnx/core';
import { ServeError, badRequest } from './errors.ts';

export type { InputShape } from '@capsnet-onnx/core';

/** What an image is prepared for: the model's input size and its preprocessing (from its metadata). */
export interface UploadTarget {
  shape: InputShape;
  preprocessing: Preprocessing;
}

export interface UploadOptions {
  polarity?: Polarity;
  /** Size limits checked from the file's headers before decoding (default core/decode.ts's). */
  limits?: ImageLimits;
  /** Names the image in errors, e.g. `file 2 (digit.png)`. */
  what?: string;
}

/** Largest side of a nested JSON image accepted before resizing. */
export const MAX_SIDE = DEFAULT_IMAGE_LIMITS.maxSide;
/** One image's share of a request's pixel budget (serve/image-pool.ts allows four of them per request). */
export const MAX_PNG_PIXELS = 2048 * 2048;
/** Most values in one JSON image. */
const MAX_JSON_VALUES = 2048 * 2048 * 4;

const IMAGE_STATUS: Record<string, number> = { NOT_AN_IMAGE: 415, TOO_LARGE: 413, BAD_IMAGE: 400 };

/** Pipeline errors as the API's client errors. */
function clientError(e: unknown): never {
  if (e instanceof ImageError) throw new ServeError(IMAGE_STATUS[e.code] ?? 400, e.code, e.message);
  if (e instanceof PreprocessError) throw badRequest('BAD_IMAGE', e.message);
  throw e;
}

/**
 * One uploaded image file (PNG or JPEG): headers checked against the limits, decoded, prepared for the model.
 * Returns H*W*C float32 values in [0, 1] (all zeros for an image without ink).
 */
export function decodeUpload(bytes: Uint8Array, target: UploadTarget, options: UploadOptions = {}): Float32Array {
  const what = options.what ?? 'the image';
  try {
    const picture = decodeImage(bytes, options.limits ?? DEFAULT_IMAGE_LIMITS, what);
    return prepareImage(picture, target.shape, target.preprocessing, { polarity: options.polarity }, what).pixels;
  } catch (e) {
    clientError(e);
  }
}

export interface Tensor {
  dims: number[];
  data: Float32Array;
}

/** A rectangular nested array of finite numbers, flattened row-major. */
export function numericTensor(value: unknown, what: string, maxValues: number): Tensor {
  const dims: number[] = [];
  let probe: unknown = value;
  while (Array.isArray(probe)) {
    // Images are at most [rows][cols][channels]: refuse deeper nesting before walking it (100,000 levels would
    // overflow the stack).
    if (dims.length === 4) throw badRequest('WRONG_DIMENSIONS', `${what} is nested more than 4 arrays deep: send [rows][cols] or [rows][cols][channels]`);
    dims.push(probe.length);
    if (probe.length === 0) throw badRequest('WRONG_DIMENSIONS', `${what} has an empty array`);
    probe = probe[0];
  }
  if (dims.length === 0) throw badRequest('BAD_INPUT', `${what} must be an array of numbers, got ${describe(value)}`);
  const total = dims.reduce((a, b) => a * b, 1);
  if (total > maxValues) throw badRequest('WRONG_DIMENSIONS', `${what} has ${total} values; the most accepted is ${maxValues}`);
  const data = new Float32Array(total);
  let offset = 0;
  // The path of indices is only turned into text for an error message.
  const path: number[] = [];
  const where = () => `${what}${path.map((i) => `[${i}]`).join('')}`;
  const walk = (node: unknown, depth: number): void => {
    if (depth === dims.length) {
      if (typeof node !== 'number' || !Number.isFinite(node)) {
        throw badRequest('NOT_FINITE', `${where()} is ${describe(node)}: values must be finite numbers`);
      }
      data[offset++] = node;
      return;
    }
    if (!Array.isArray(node) || node.length !== dims[depth]) {
      throw badRequest(
        'WRONG_DIMENSIONS',
        `${where()} is ${Array.isArray(node) ? `an array of ${node.length}` : describe(node)}, expected an array of ${dims[depth]}: ` +
          'nested arrays must be rectangular',
      );
    }
    path.push(0);
    for (let i = 0; i < node.length; i++) {
      path[depth] = i;
      walk(node[i], depth + 1);
    }
    path.pop();
  };
  walk(value, 0);
  return { dims, data };
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 20 ? `${value.slice(0, 20)}...` : value)}`;
  if (typeof value === 'number') return String(value);
  return `a${typeof value === 'object' ? 'n' : ''} ${typeof value}`;
}

/**
 * One image from JSON: a flat array of exactly H*W*C values (the model's size, already prepared), or nested
 * [rows][cols] (gray) or [rows][cols][channels] (1, 2, 3 or 4 channels) of any size, which goes through the
 * image pipeline like an uploaded file. Values must be in [0, 1].
 */
export function imageFromJson(value: unknown, target: UploadTarget, options: UploadOptions = {}): Float32Array {
  const what = options.what ?? 'image';
  const { shape } = target;
  const size = shape.height * shape.width * shape.channels;
  const t = numericTensor(value, what, MAX_JSON_VALUES);
  // The shape first: [1, 2, 3] is three values where 784 are wanted, whatever the values.
  const [h, w, c = 1] = t.dims as [number, number, number?];
  if (t.dims.length === 1 && t.dims[0] !== size) {
    throw badRequest(
      'WRONG_DIMENSIONS',
      `${what} is a flat array of ${t.dims[0]} values; the model takes ${shape.height}x${shape.width}x${shape.channels} = ${size}: ` +
        'send exactly that many, or nested [rows][cols] arrays of any size to be prepared like an uploaded image',
    );
  }
  if (t.dims.length > 1) {
    if (t.dims.length > 3 || ![1, 2, 3, 4].includes(c)) {
      throw badRequest('WRONG_DIMENSIONS', `${what} has shape [${t.dims.join(', ')}]: send [rows][cols] or [rows][cols][channels] with 1, 2, 3 or 4 channels`);
    }
    if (h > MAX_SIDE || w > MAX_SIDE) throw badRequest('WRONG_DIMENSIONS', `${what} is ${h}x${w}; the largest side accepted is ${MAX_SIDE}`);
  }
  for (let i = 0; i < t.data.length; i++) {
    const v = t.data[i]!;
    if (v < 0 || v > 1) {
      throw badRequest('OUT_OF_RANGE', `${what} has the value ${v} at flat index ${i}: pixel values must be in [0, 1] (divide 0-255 values by 255)`);
    }
  }
  if (t.dims.length === 1) return t.data;
  try {
    return prepareImage({ data: t.data, width: w, height: h, channels: c }, shape, target.preprocessing, { polarity: options.polarity }, what).pixels;
  } catch (e) {
    clientError(e);
  }
}

/** One set of capsules from JSON: flat numClasses*digitDim values, or nested [numClasses][digitDim]. */
export function capsulesFromJson(value: unknown, numClasses: number, digitDim: number, what = 'capsules'): Float32Array {
  const t = numericTensor(value, what, numClasses * digitDim);
  const ok = (t.dims.length === 1 && t.dims[0] === numClasses * digitDim) || (t.dims.length === 2 && t.dims[0] === numClasses && t.dims[1] === digitDim);
  if (!ok) {
    throw badRequest(
      'WRONG_DIMENSIONS',
      `${what} has shape [${t.dims.join(', ')}]; the decoder takes [${numClasses}][${digitDim}] (or ${numClasses * digitDim} flat values)`,
    );
  }
  return t.data;
}

/** Encode gray or RGB float pixels in [0,1] as a PNG (tests, the bench and anything that wants a file). */
export function encodePng(pixels: Float32Array, height: number, width: number, channels: number): Buffer {
  const data = new Uint8Array(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    for (let k = 0; k < 3; k++) data[4 * p + k] = Math.round(255 * pixels[p * channels + (channels === 1 ? 0 : k)]!);
    data[4 * p + 3] = 255;
  }
  const png = encodePngFile({ width, height, data, channels: 4, depth: 8 });
  return Buffer.from(png.buffer, png.byteOffset, png.byteLength);
}
