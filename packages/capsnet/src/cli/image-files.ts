/**
 * Image files for `capsnet classify` (Node only): PNG (any bit depth, gray, RGB, RGBA or palette, via pngjs) and
 * IDX image files (MNIST's format, optionally gzipped). Pixels come out as float32 NHWC in [0,1] at the model's
 * size and channel count: PNGs are composited over black, converted to gray (ITU-R BT.601 luma) or RGB, and
 * area-resampled when their size differs from the model's.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { PNG } from 'pngjs';
import { type ModelMetadata, InputError } from '@capsnet-onnx/core';

export interface LoadedImages {
  images: Float32Array;
  count: number;
  /** One name per image: the file, or `file[i]` for IDX. */
  names: string[];
  /** Per image, the true label when an IDX labels file sits beside its images file. */
  labels: Array<number | undefined>;
  notes: string[];
}

export interface ImageFileOptions {
  /** Invert pixel values (1 - v): for dark digits on a light background; MNIST-style models expect light on dark. */
  invert?: boolean;
  /** At most this many images from an IDX file. */
  limit?: number;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** Area (box-filter) resampling of an HxWxC float image: averages when shrinking, spreads when enlarging. */
export function resizeArea(src: Float32Array, h: number, w: number, c: number, outH: number, outW: number): Float32Array {
  const out = new Float32Array(outH * outW * c);
  const sy = h / outH;
  const sx = w / outW;
  for (let oy = 0; oy < outH; oy++) {
    const y0 = oy * sy;
    const y1 = y0 + sy;
    for (let ox = 0; ox < outW; ox++) {
      const x0 = ox * sx;
      const x1 = x0 + sx;
      const acc = new Float64Array(c);
      let total = 0;
      for (let y = Math.floor(y0); y < Math.min(h, Math.ceil(y1)); y++) {
        const wy = Math.min(y + 1, y1) - Math.max(y, y0);
        for (let x = Math.floor(x0); x < Math.min(w, Math.ceil(x1)); x++) {
          const weight = wy * (Math.min(x + 1, x1) - Math.max(x, x0));
          if (weight <= 0) continue;
          total += weight;
          for (let ch = 0; ch < c; ch++) acc[ch]! += weight * src[(y * w + x) * c + ch]!;
        }
      }
      for (let ch = 0; ch < c; ch++) out[(oy * outW + ox) * c + ch] = Math.min(1, Math.max(0, acc[ch]! / total));
    }
  }
  return out;
}

/** Decode a PNG to the model's channels and size. */
export function imageFromPng(bytes: Uint8Array, metadata: ModelMetadata, name: string, notes: string[], invert = false): Float32Array {
  if (bytes.length < 8 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) throw new InputError(`${name} is not a PNG file`);
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    throw new InputError(`${name}: cannot decode the PNG (${(e as Error).message})`);
  }
  const { width, height, data } = png; // RGBA, 8 bits per channel
  const c = metadata.inputChannels;
  if (c !== 1 && c !== 3 && c !== 4) throw new InputError(`the model takes ${c}-channel images; PNG input supports 1 (gray), 3 (RGB) or 4 (RGBA)`);
  const pixels = new Float32Array(width * height * c);
  for (let p = 0; p < width * height; p++) {
    const [r, g, b, a] = [data[4 * p]!, data[4 * p + 1]!, data[4 * p + 2]!, data[4 * p + 3]!];
    const alpha = a / 255;
    if (c === 1) pixels[p] = ((0.299 * r + 0.587 * g + 0.114 * b) / 255) * alpha;
    else if (c === 3) {
      pixels[3 * p] = (r / 255) * alpha;
      pixels[3 * p + 1] = (g / 255) * alpha;
      pixels[3 * p + 2] = (b / 255) * alpha;
    } else for (let ch = 0; ch < 4; ch++) pixels[4 * p + ch] = data[4 * p + ch]! / 255;
  }
  let out: Float32Array = pixels;
  if (width !== metadata.inputWidth || height !== metadata.inputHeight) {
    out = resizeArea(pixels, height, width, c, metadata.inputHeight, metadata.inputWidth);
    notes.push(`${name}: resized ${width}x${height} to the model's ${metadata.inputWidth}x${metadata.inputHeight}` +
      (Math.abs(width / height - metadata.inputWidth / metadata.inputHeight) > 0.01 ? ' (aspect ratio changed)' : ''));
  }
  if (invert) for (let i = 0; i < out.length; i++) out[i] = 1 - out[i]!;
  return out;
}

function gunzipIfNeeded(bytes: Uint8Array, name: string): Uint8Array {
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    return gunzipSync(bytes);
  } catch (e) {
    throw new InputError(`${name}: not a valid gzip file (${(e as Error).message})`);
  }
}

function readIdxLabels(imagesPath: string, count: number): Int32Array | undefined {
  const base = basename(imagesPath);
  if (!/images[-.]idx3/.test(base)) return undefined;
  for (const candidate of [base.replace(/images([-.])idx3/, 'labels$1idx1'), base.replace(/images([-.])idx3/, 'labels$1idx1').replace(/\.gz$/, '')]) {
    const path = join(dirname(imagesPath), candidate);
    if (!existsSync(path)) continue;
    const bytes = gunzipIfNeeded(readFileSync(path), path);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.length < 8 || view.getUint32(0) !== 0x801 || view.getUint32(4) < count || bytes.length < 8 + count) return undefined;
    return Int32Array.from(bytes.subarray(8, 8 + count));
  }
  return undefined;
}

/** IDX ubyte images [count, h, w] -> float32 in [0,1]. */
export function imagesFromIdx(bytes: Uint8Array, metadata: ModelMetadata, name: string, limit = Infinity): { images: Float32Array; count: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = bytes.length >= 4 ? view.getUint32(0) : 0;
  if (magic === 0x801) throw new InputError(`${name} is an IDX labels file: pass the images file (…-images-idx3-ubyte)`);
  if (magic !== 0x803 || bytes.length < 16) {
    throw new InputError(`${name} is neither a PNG nor an IDX image file (magic 0x${magic.toString(16).padStart(8, '0')}; IDX images have 0x00000803)`);
  }
  const [total, h, w] = [view.getUint32(4), view.getUint32(8), view.getUint32(12)];
  if (metadata.inputChannels !== 1) throw new InputError(`${name} holds grayscale images but the model takes ${metadata.inputChannels} channels`);
  if (h !== metadata.inputHeight || w !== metadata.inputWidth) {
    throw new InputError(`${name} holds ${h}x${w} images but the model takes ${metadata.inputHeight}x${metadata.inputWidth}`);
  }
  if (bytes.length < 16 + total * h * w) throw new InputError(`${name} is truncated: its header says ${total} images of ${h}x${w}`);
  const count = Math.min(total, limit);
  const images = new Float32Array(count * h * w);
  for (let i = 0; i < images.length; i++) images[i] = bytes[16 + i]! / 255;
  return { images, count };
}

/** Read PNG and IDX files into one batch for the model. */
export function readImageFiles(paths: string[], metadata: ModelMetadata, options: ImageFileOptions = {}): LoadedImages {
  const pixels = metadata.inputHeight * metadata.inputWidth * metadata.inputChannels;
  const parts: Float32Array[] = [];
  const names: string[] = [];
  const notes: string[] = [];
  const labels: Array<number | undefined> = [];
  for (const path of paths) {
    if (!existsSync(path)) throw new InputError(`${path} does not exist`);
    const raw = new Uint8Array(readFileSync(path));
    if (PNG_SIGNATURE.every((b, i) => raw[i] === b)) {
      parts.push(imageFromPng(raw, metadata, path, notes, options.invert));
      names.push(path);
      labels.push(undefined);
      continue;
    }
    const bytes = gunzipIfNeeded(raw, path);
    const { images, count } = imagesFromIdx(bytes, metadata, path, options.limit);
    if (options.invert) for (let i = 0; i < images.length; i++) images[i] = 1 - images[i]!;
    parts.push(images);
    for (let i = 0; i < count; i++) names.push(`${path}[${i}]`);
    const found = readIdxLabels(path, count);
    for (let i = 0; i < count; i++) labels.push(found?.[i]);
  }
  const images = new Float32Array(names.length * pixels);
  let offset = 0;
  for (const p of parts) {
    images.set(p, offset);
    offset += p.length;
  }
  return { images, count: names.length, names, notes, labels };
}
