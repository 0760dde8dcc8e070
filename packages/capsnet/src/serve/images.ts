/**
 * Request bodies to model inputs: JSON pixel arrays and PNG files become float32 HWC images of the model's
 * input size and channel count, in [0, 1]; JSON capsule arrays become numClasses x digitDim float32 sets.
 * Every problem is a ServeError (400) naming the image, the place and the fix.
 */
import { PNG } from 'pngjs';
import { badRequest } from './errors.ts';

export interface InputShape {
  height: number;
  width: number;
  channels: number;
}

/** Largest image side accepted before resizing (JSON or PNG). */
export const MAX_SIDE = 4096;
/** Largest PNG accepted, in pixels, checked from the header before decoding. */
export const MAX_PNG_PIXELS = 2048 * 2048;

export interface Tensor {
  dims: number[];
  data: Float32Array;
}

/** A rectangular nested array of finite numbers, flattened row-major. */
export function numericTensor(value: unknown, what: string, maxValues: number): Tensor {
  const dims: number[] = [];
  let probe: unknown = value;
  while (Array.isArray(probe)) {
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
 * One image from JSON: a flat array of exactly H*W*C values (the model's size), or nested [rows][cols] (gray)
 * or [rows][cols][channels] (1, 3 or 4 channels) of any size, which is resized and channel-converted.
 * Values must be in [0, 1].
 */
export function imageFromJson(value: unknown, shape: InputShape, what = 'image'): Float32Array {
  const size = shape.height * shape.width * shape.channels;
  const t = numericTensor(value, what, MAX_SIDE * MAX_SIDE * 4);
  for (let i = 0; i < t.data.length; i++) {
    const v = t.data[i]!;
    if (v < 0 || v > 1) {
      throw badRequest('OUT_OF_RANGE', `${what} has the value ${v} at flat index ${i}: pixel values must be in [0, 1] (divide 0-255 values by 255)`);
    }
  }
  if (t.dims.length === 1) {
    if (t.dims[0] !== size) {
      throw badRequest(
        'WRONG_DIMENSIONS',
        `${what} is a flat array of ${t.dims[0]} values; the model takes ${shape.height}x${shape.width}x${shape.channels} = ${size}: ` +
          'send exactly that many, or nested [rows][cols] arrays of any size to be resized',
      );
    }
    return t.data;
  }
  const [h, w, c = 1] = t.dims as [number, number, number?];
  if (t.dims.length > 3 || ![1, 3, 4].includes(c)) {
    throw badRequest('WRONG_DIMENSIONS', `${what} has shape [${t.dims.join(', ')}]: send [rows][cols] or [rows][cols][channels] with 1, 3 or 4 channels`);
  }
  if (h > MAX_SIDE || w > MAX_SIDE) throw badRequest('WRONG_DIMENSIONS', `${what} is ${h}x${w}; the largest side accepted is ${MAX_SIDE}`);
  return toModelInput(t.data, h, w, c, shape);
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export type InvertMode = 'auto' | 'true' | 'false';

/**
 * One PNG file: decoded (any bit depth, palette, gray or colour), composited over black, converted to the
 * model's channels and resized. `invert`: 'auto' inverts when the border is mostly light, so a dark digit on
 * white paper becomes a light digit on black like the training data.
 */
export function imageFromPng(bytes: Uint8Array, shape: InputShape, invert: InvertMode = 'auto', what = 'PNG'): Float32Array {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buffer.length < 24 || !buffer.subarray(0, 8).equals(PNG_SIGNATURE)) {
    throw badRequest('BAD_PNG', `${what} is not a PNG file (no PNG signature): upload a PNG, or send JSON pixel arrays`);
  }
  const width = buffer.readUInt32BE(16);
  const height = buffer.readUInt32BE(20);
  if (width * height > MAX_PNG_PIXELS || width > MAX_SIDE || height > MAX_SIDE) {
    throw badRequest('WRONG_DIMENSIONS', `${what} is ${width}x${height}; the largest accepted is ${MAX_PNG_PIXELS} pixels with sides up to ${MAX_SIDE}`);
  }
  let png: PNG;
  try {
    png = PNG.sync.read(buffer);
  } catch (e) {
    throw badRequest('BAD_PNG', `${what} could not be decoded: ${(e as Error).message}`);
  }
  const rgba = png.data;
  const pixels = png.width * png.height;
  const rgb = new Float32Array(pixels * 3);
  for (let p = 0; p < pixels; p++) {
    const alpha = rgba[4 * p + 3]! / 255;
    for (let k = 0; k < 3; k++) rgb[3 * p + k] = (rgba[4 * p + k]! / 255) * alpha;
  }
  let image = toModelInput(rgb, png.height, png.width, 3, shape);
  if (invert === 'true' || (invert === 'auto' && borderMean(image, shape) > 0.5)) image = image.map((v) => 1 - v);
  return image;
}

function borderMean(image: Float32Array, shape: InputShape): number {
  const { height: h, width: w, channels: c } = shape;
  let sum = 0;
  let count = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (y !== 0 && y !== h - 1 && x !== 0 && x !== w - 1) continue;
      for (let k = 0; k < c; k++) sum += image[(y * w + x) * c + k]!;
      count += c;
    }
  }
  return sum / count;
}

/** HWC pixels with 1, 3 or 4 channels (4: alpha, composited over black) -> the model's channels and size. */
export function toModelInput(pixels: Float32Array, h: number, w: number, c: number, shape: InputShape): Float32Array {
  const converted = convertChannels(pixels, h * w, c, shape.channels);
  return resizeArea(converted, h, w, shape.channels, shape.height, shape.width);
}

function convertChannels(pixels: Float32Array, count: number, from: number, to: number): Float32Array {
  if (from === to) return pixels;
  const out = new Float32Array(count * to);
  for (let p = 0; p < count; p++) {
    const alpha = from === 4 ? pixels[4 * p + 3]! : 1;
    let r: number;
    let g: number;
    let b: number;
    if (from === 1) r = g = b = pixels[p]!;
    else if (from === 3 || from === 4) [r, g, b] = [pixels[from * p]! * alpha, pixels[from * p + 1]! * alpha, pixels[from * p + 2]! * alpha];
    else throw badRequest('WRONG_DIMENSIONS', `cannot convert ${from}-channel pixels to the model's ${to} channels`);
    if (to === 1) out[p] = 0.299 * r + 0.587 * g + 0.114 * b;
    else if (to === 3) out.set([r, g, b], 3 * p);
    else throw badRequest('WRONG_DIMENSIONS', `cannot convert ${from}-channel pixels to the model's ${to} channels: send exactly ${to} channels`);
  }
  return out;
}

/** Per output index, the source indices and weights that cover it (box filter; weights sum to 1). */
function areaWeights(src: number, dst: number): { index: number; weight: number }[][] {
  const scale = src / dst;
  return Array.from({ length: dst }, (_, o) => {
    const start = o * scale;
    const end = (o + 1) * scale;
    const taps: { index: number; weight: number }[] = [];
    for (let i = Math.floor(start); i < Math.min(src, Math.ceil(end)); i++) {
      const weight = Math.min(end, i + 1) - Math.max(start, i);
      if (weight > 1e-9) taps.push({ index: i, weight: weight / scale });
    }
    return taps;
  });
}

/** Area-average resize of HWC pixels (exact copy when the size already matches). */
export function resizeArea(pixels: Float32Array, h: number, w: number, c: number, outH: number, outW: number): Float32Array {
  if (h === outH && w === outW) return pixels;
  const xs = areaWeights(w, outW);
  const ys = areaWeights(h, outH);
  // Rows first (w -> outW), then columns (h -> outH).
  const rows = new Float32Array(h * outW * c);
  for (let y = 0; y < h; y++) {
    for (let ox = 0; ox < outW; ox++) {
      for (const { index, weight } of xs[ox]!) {
        for (let k = 0; k < c; k++) rows[(y * outW + ox) * c + k]! += weight * pixels[(y * w + index) * c + k]!;
      }
    }
  }
  const out = new Float32Array(outH * outW * c);
  for (let oy = 0; oy < outH; oy++) {
    for (const { index, weight } of ys[oy]!) {
      for (let i = 0; i < outW * c; i++) out[oy * outW * c + i]! += weight * rows[index * outW * c + i]!;
    }
  }
  for (let i = 0; i < out.length; i++) out[i] = Math.min(1, Math.max(0, out[i]!));
  return out;
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
  const png = new PNG({ width, height });
  for (let p = 0; p < width * height; p++) {
    for (let k = 0; k < 3; k++) png.data[4 * p + k] = Math.round(255 * pixels[p * channels + (channels === 1 ? 0 : k)]!);
    png.data[4 * p + 3] = 255;
  }
  return PNG.sync.write(png);
}
