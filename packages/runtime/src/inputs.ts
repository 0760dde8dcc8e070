/**
 * Turns what callers pass to classify/decode into one flat float32 batch, or a clear error: wrong length,
 * NaN/Inf, pixels outside [0,1], an empty batch, or more images than the configured limit.
 */
import type { ImageInput, ModelMetadata } from './contract.ts';
import { InputError } from '@capsnet-onnx/core';

export const DEFAULT_MAX_BATCH = 256;

export interface Batch {
  data: Float32Array;
  count: number;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  return (value as object).constructor?.name ?? 'object';
}

function checkCount(count: number, maxBatch: number, what: string): void {
  if (count === 0) throw new InputError(`empty batch: pass at least one ${what}`);
  if (count > maxBatch) {
    throw new InputError(`batch of ${count} ${what}s is above the limit of ${maxBatch}: split it, or load the model with a larger { maxBatch }`);
  }
}

/** Copy one image's pixels into `out` at `offset`, normalising bytes to [0,1] and checking floats. */
function copyImage(image: Float32Array | Uint8Array, out: Float32Array, offset: number, label: string): void {
  if (image instanceof Uint8Array) {
    for (let i = 0; i < image.length; i++) out[offset + i] = image[i]! / 255;
    return;
  }
  for (let i = 0; i < image.length; i++) {
    const v = image[i]!;
    if (!Number.isFinite(v)) {
      throw new InputError(`${label}: pixel ${i} is ${v}: images must be finite numbers in [0, 1]`);
    }
    if (v < 0 || v > 1) {
      const hint = v > 1 && v <= 255 ? ' (0-255 values? pass a Uint8Array, or divide by 255)' : '';
      throw new InputError(`${label}: pixel ${i} is ${v}, outside [0, 1]${hint}`);
    }
  }
  out.set(image, offset);
}

/**
 * Images -> flat NHWC float32 batch. A single typed array is one image, or a batch when its length is a
 * multiple of H*W*C; an array holds one image per element.
 */
export function toImageBatch(images: ImageInput, metadata: ModelMetadata, maxBatch = DEFAULT_MAX_BATCH): Batch {
  const { inputHeight: h, inputWidth: w, inputChannels: c } = metadata;
  const pixels = h * w * c;
  const shape = `${h}x${w}x${c} = ${pixels} values`;
  if (images instanceof Float32Array || images instanceof Uint8Array) {
    if (images.length === 0) throw new InputError('empty batch: pass at least one image');
    if (images.length % pixels !== 0) {
      throw new InputError(
        `image data has ${images.length} values, not a multiple of ${shape} per image (row-major NHWC): ` +
          'check the image size and channel count against the model',
      );
    }
    const count = images.length / pixels;
    checkCount(count, maxBatch, 'image');
    const data = new Float32Array(images.length);
    copyImage(images, data, 0, count === 1 ? 'image' : 'images');
    return { data, count };
  }
  if (!Array.isArray(images)) {
    throw new InputError(`images must be a Float32Array in [0,1], a Uint8Array 0-255, or an array of them; got ${describe(images)}`);
  }
  checkCount(images.length, maxBatch, 'image');
  const data = new Float32Array(images.length * pixels);
  images.forEach((image, n) => {
    if (!(image instanceof Float32Array || image instanceof Uint8Array)) {
      throw new InputError(`image ${n} must be a Float32Array in [0,1] or a Uint8Array 0-255; got ${describe(image)}`);
    }
    if (image.length !== pixels) {
      throw new InputError(`image ${n} has ${image.length} values, expected ${shape} (row-major NHWC)`);
    }
    copyImage(image, data, n * pixels, `image ${n}`);
  });
  return { data, count: images.length };
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
  capsules.forEach((c, n) => {
    if (!(c instanceof Float32Array)) throw new InputError(`capsules ${n} must be a Float32Array; got ${describe(c)}`);
    if (c.length !== size) throw new InputError(`capsules ${n} has ${c.length} values, expected ${shape}`);
    check(c, `capsules ${n}`);
    data.set(c, n * size);
  });
  return { data, count: capsules.length };
}

export function checkMaxBatch(maxBatch: number | undefined): number {
  const value = maxBatch ?? DEFAULT_MAX_BATCH;
  if (!Number.isInteger(value) || value < 1) throw new InputError(`maxBatch must be a positive integer, got ${value}`);
  return value;
}
