/**
 * From the data set's images to what the network sees: the training-time augmentation each data set's protocol
 * asks for (MNIST's shift, section 7's crops, flips and jitter) and the test-time centre crop. Everything is
 * seeded, so a run's batches are the same on every backend and after a resume.
 */
import type { CapsNetConfig, Rng } from '@capsnet-onnx/core';
import { type Split, shiftImages } from './datasets.ts';

/** Height, width and channels of the images the data set holds (larger than the input when the config crops). */
export function sourceShape(config: CapsNetConfig): { height: number; width: number; channels: number } {
  return {
    height: config.crop?.sourceHeight ?? config.inputHeight,
    width: config.crop?.sourceWidth ?? config.inputWidth,
    channels: config.inputChannels,
  };
}

/** Copy the h x w window at (top, left) of each source image, mirrored left-right where `flip(n)` says so. */
function cropImages(
  images: Float32Array,
  count: number,
  config: CapsNetConfig,
  origin: (n: number) => [number, number],
  flip: (n: number) => boolean,
): Float32Array {
  const src = sourceShape(config);
  const { inputHeight: h, inputWidth: w, inputChannels: c } = config;
  const out = new Float32Array(count * h * w * c);
  for (let n = 0; n < count; n++) {
    const [top, left] = origin(n);
    const mirrored = flip(n);
    for (let y = 0; y < h; y++) {
      const row = ((n * src.height + top + y) * src.width + left) * c;
      const dst = (n * h + y) * w * c;
      if (!mirrored) {
        out.set(images.subarray(row, row + w * c), dst);
        continue;
      }
      for (let x = 0; x < w; x++) {
        for (let k = 0; k < c; k++) out[dst + x * c + k] = images[row + (w - 1 - x) * c + k]!;
      }
    }
  }
  return out;
}

/** Brightness delta, then contrast about each channel's mean (the order of TensorFlow's CIFAR-10 pipeline). */
function jitterImages(images: Float32Array, count: number, config: CapsNetConfig, rng: Rng): void {
  const { brightness, contrast } = config.jitter!;
  const c = config.inputChannels;
  const size = config.inputHeight * config.inputWidth * c;
  const means = new Float64Array(c);
  for (let n = 0; n < count; n++) {
    const base = n * size;
    const delta = brightness > 0 ? (2 * rng.next() - 1) * brightness : 0;
    const factor = contrast > 0 ? 1 + (2 * rng.next() - 1) * contrast : 1;
    if (delta !== 0) for (let i = base; i < base + size; i++) images[i] = images[i]! + delta;
    if (factor === 1) continue;
    means.fill(0);
    for (let i = 0; i < size; i++) means[i % c]! += images[base + i]!;
    for (let k = 0; k < c; k++) means[k]! /= size / c;
    for (let i = 0; i < size; i++) images[base + i] = (images[base + i]! - means[i % c]!) * factor + means[i % c]!;
  }
}

/**
 * A training batch at the source size -> network-size images: a random crop (when the config crops), a random
 * flip and jitter (when configured), and the random shift of up to maxShift pixels (MNIST's, section 5).
 */
export function augmentBatch(images: Float32Array, count: number, config: CapsNetConfig, rng: Rng): Float32Array {
  let out = images;
  if (config.crop || config.jitter?.flip) {
    const src = sourceShape(config);
    const origins = Array.from(
      { length: count },
      () => [rng.int(src.height - config.inputHeight + 1), rng.int(src.width - config.inputWidth + 1)] as [number, number],
    );
    const flips = Array.from({ length: count }, () => Boolean(config.jitter?.flip) && rng.next() < 0.5);
    out = cropImages(
      images,
      count,
      config,
      (n) => origins[n]!,
      (n) => flips[n]!,
    );
  }
  if (config.jitter && (config.jitter.brightness > 0 || config.jitter.contrast > 0)) {
    if (out === images) out = images.slice();
    jitterImages(out, count, config, rng);
  }
  return config.maxShift > 0 ? shiftImages(out, count, config, config.maxShift, rng) : out === images ? images.slice() : out;
}

/** What the network sees of a test split: the centre crop when the config crops, else the split itself. */
export function networkView(split: Split, config: CapsNetConfig): Split {
  if (!config.crop) return split;
  const src = sourceShape(config);
  const top = Math.floor((src.height - config.inputHeight) / 2);
  const left = Math.floor((src.width - config.inputWidth) / 2);
  return {
    images: cropImages(
      split.images,
      split.count,
      config,
      () => [top, left],
      () => false,
    ),
    labels: split.labels,
    count: split.count,
  };
}
