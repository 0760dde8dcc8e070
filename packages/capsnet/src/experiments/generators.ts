/**
 * Test-set and training-set generators for the paper's experiments:
 *  - expanded MNIST: digits placed at random positions on a black 40x40 canvas, i.e. shifted by up to 6 px from the
 *    centre (the affine experiment's training set, section 5.2, and its "expanded MNIST" test set);
 *  - an affNIST-style affine test set: rotation, shear, anisotropic scale and translation on a 40x40 canvas;
 *  - MultiMNIST (section 6): two digits of different classes from the same split (training pairs from the training
 *    set, test pairs from the test set), each shifted up to 4 px on 36x36, overlaid.
 * All images are row-major single-channel float32 in [0, 1]; randomness comes from the seeded `Rng`, so a seed gives
 * the same bytes on every machine (integer draws and copies only: no floating-point maths but the overlay's min/max).
 */
import type { Split } from '../data/datasets.ts';
import { Rng } from '@capsnet-onnx/core';
import type { Overlay } from './names.ts';

/** Copy an h x w image into a `canvas` x `canvas` one with its top-left corner at (x, y); parts outside are cut. */
export function placeOnCanvas(
  src: ArrayLike<number>,
  h: number,
  w: number,
  canvas: number,
  x: number,
  y: number,
  out: Float32Array = new Float32Array(canvas * canvas),
): Float32Array {
  for (let r = 0; r < h; r++) {
    const ty = y + r;
    if (ty < 0 || ty >= canvas) continue;
    for (let c = 0; c < w; c++) {
      const tx = x + c;
      if (tx < 0 || tx >= canvas) continue;
      out[ty * canvas + tx] = src[r * w + c]!;
    }
  }
  return out;
}

export interface PlacedSet {
  images: Float32Array;
  labels: Int32Array;
  count: number;
  size: number;
  /** Top-left corner of each digit: [x0, y0, x1, y1, ...]. */
  offsets: Int32Array;
}

/** Each digit at a uniformly random position fully inside a size x size canvas (or centred). */
export function randomlyPlaced(split: Split, count: number, digitSize: number, size: number, rng: Rng, centered = false, first = 0): PlacedSet {
  const pixels = digitSize * digitSize;
  const n = Math.min(count, split.count - first);
  const out: PlacedSet = { images: new Float32Array(n * size * size), labels: new Int32Array(n), count: n, size, offsets: new Int32Array(2 * n) };
  const room = size - digitSize;
  for (let i = 0; i < n; i++) {
    const x = centered ? Math.floor(room / 2) : rng.int(room + 1);
    const y = centered ? Math.floor(room / 2) : rng.int(room + 1);
    const src = split.images.subarray((first + i) * pixels, (first + i + 1) * pixels);
    placeOnCanvas(src, digitSize, digitSize, size, x, y, out.images.subarray(i * size * size, (i + 1) * size * size));
    out.labels[i] = split.labels[first + i]!;
    out.offsets[2 * i] = x;
    out.offsets[2 * i + 1] = y;
  }
  return out;
}

/** Section 5.2's expanded MNIST: 28x28 digits on a 40x40 canvas, so shifts of up to 6 px from the centre in x and y. */
export const EXPANDED_MNIST = { canvas: 40, maxShift: 6 } as const;

/**
 * Expanded MNIST from `count` digits of `split` (starting at `first`): each at a uniformly random position on the
 * 40x40 canvas (other digit sizes: shifts of up to (40 - size) / 2). The same `seed` gives identical bytes; `offsets`
 * are the top-left corners (0..12 for 28x28 digits; 6 = centred).
 */
export function expandedMnist(split: Split, seed: number, count = split.count, first = 0, digitSize = 28): PlacedSet {
  return randomlyPlaced(split, count, digitSize, EXPANDED_MNIST.canvas, new Rng(seed), false, first);
}

export interface AffineRanges {
  /** Maximum absolute rotation, degrees. */
  rotationDegrees: number;
  /** Maximum absolute horizontal shear factor (x' = x + shear * y). */
  shear: number;
  /** Scale range, drawn independently for x and y. */
  scaleMin: number;
  scaleMax: number;
  /** Output canvas size. */
  canvas: number;
}

/**
 * Our affNIST-style ranges. affNIST itself (Tieleman, 40x40) applies random rotation, shear, scaling and a
 * translation keeping the digit on the canvas; these are the ranges we draw from, not a copy of its generator.
 */
export const AFFNIST_STYLE: AffineRanges = { rotationDegrees: 20, shear: 0.2, scaleMin: 0.8, scaleMax: 1.2, canvas: 40 };

export interface AffineParams {
  rotation: number;
  shear: number;
  scaleX: number;
  scaleY: number;
  /** Translation of the digit centre from the canvas centre, pixels. */
  tx: number;
  ty: number;
}

/** The 2x2 linear part A = R(rotation) * Shear * Scale, row-major [a, b, c, d] for x' = a x + b y, y' = c x + d y. */
export function affineMatrix(p: Pick<AffineParams, 'rotation' | 'shear' | 'scaleX' | 'scaleY'>): [number, number, number, number] {
  const cos = Math.cos(p.rotation);
  const sin = Math.sin(p.rotation);
  // Shear * Scale = [[sx, shear*sy], [0, sy]]
  const m00 = p.scaleX;
  const m01 = p.shear * p.scaleY;
  const m11 = p.scaleY;
  return [cos * m00, cos * m01 - sin * m11, sin * m00, sin * m01 + cos * m11];
}

/**
 * Warp an h x w image onto a canvas x canvas one: output pixel p samples the source at A^-1 (p - c_out - t) + c_src,
 * bilinearly, zero outside.
 */
export function warpAffine(
  src: ArrayLike<number>,
  h: number,
  w: number,
  canvas: number,
  p: AffineParams,
  out: Float32Array = new Float32Array(canvas * canvas),
): Float32Array {
  const [a, b, c, d] = affineMatrix(p);
  const det = a * d - b * c;
  const [ia, ib, ic, id] = [d / det, -b / det, -c / det, a / det];
  const cxOut = (canvas - 1) / 2 + p.tx;
  const cyOut = (canvas - 1) / 2 + p.ty;
  const cxSrc = (w - 1) / 2;
  const cySrc = (h - 1) / 2;
  const at = (r: number, col: number) => (r >= 0 && r < h && col >= 0 && col < w ? src[r * w + col]! : 0);
  for (let y = 0; y < canvas; y++) {
    for (let x = 0; x < canvas; x++) {
      const dx = x - cxOut;
      const dy = y - cyOut;
      const sx = ia * dx + ib * dy + cxSrc;
      const sy = ic * dx + id * dy + cySrc;
      if (sx <= -1 || sy <= -1 || sx >= w || sy >= h) {
        out[y * canvas + x] = 0;
        continue;
      }
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      out[y * canvas + x] = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1));
    }
  }
  return out;
}

/** Bounding box of ink (> threshold) of an h x w image, or undefined when blank. */
export function inkBox(img: ArrayLike<number>, h: number, w: number, threshold = 0.1) {
  let x0 = w,
    y0 = h,
    x1 = -1,
    y1 = -1;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      if (img[y * w + x]! > threshold) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  return x1 < 0 ? undefined : { x0, y0, x1, y1 };
}

/** Random transformation parameters; the translation keeps the digit's transformed ink inside the canvas. */
export function randomAffine(src: ArrayLike<number>, h: number, w: number, ranges: AffineRanges, rng: Rng): AffineParams {
  const uniform = (lo: number, hi: number) => lo + (hi - lo) * rng.next();
  const p: AffineParams = {
    rotation: (uniform(-1, 1) * ranges.rotationDegrees * Math.PI) / 180,
    shear: uniform(-ranges.shear, ranges.shear),
    scaleX: uniform(ranges.scaleMin, ranges.scaleMax),
    scaleY: uniform(ranges.scaleMin, ranges.scaleMax),
    tx: 0,
    ty: 0,
  };
  const box = inkBox(src, h, w) ?? { x0: 0, y0: 0, x1: w - 1, y1: h - 1 };
  const [a, b, c, d] = affineMatrix(p);
  const corners = [
    [box.x0, box.y0],
    [box.x1, box.y0],
    [box.x0, box.y1],
    [box.x1, box.y1],
  ].map(([x, y]) => {
    const dx = x! - (w - 1) / 2;
    const dy = y! - (h - 1) / 2;
    return [a * dx + b * dy, c * dx + d * dy] as const;
  });
  const half = (ranges.canvas - 1) / 2;
  const range = (values: number[]) => {
    const lo = -half - Math.min(...values);
    const hi = half - Math.max(...values);
    return hi >= lo ? uniform(lo, hi) : (lo + hi) / 2;
  };
  p.tx = range(corners.map((k) => k[0]));
  p.ty = range(corners.map((k) => k[1]));
  return p;
}

export interface AffineSet extends PlacedSet {
  params: AffineParams[];
}

/** An affNIST-style test set from `count` digits of `split` (starting at `first`). */
export function affineSet(split: Split, count: number, digitSize: number, ranges: AffineRanges, rng: Rng, first = 0): AffineSet {
  const pixels = digitSize * digitSize;
  const size = ranges.canvas;
  const n = Math.min(count, split.count - first);
  const out: AffineSet = {
    images: new Float32Array(n * size * size),
    labels: new Int32Array(n),
    count: n,
    size,
    offsets: new Int32Array(2 * n),
    params: [],
  };
  for (let i = 0; i < n; i++) {
    const src = split.images.subarray((first + i) * pixels, (first + i + 1) * pixels);
    const p = randomAffine(src, digitSize, digitSize, ranges, rng);
    warpAffine(src, digitSize, digitSize, size, p, out.images.subarray(i * size * size, (i + 1) * size * size));
    out.labels[i] = split.labels[first + i]!;
    out.offsets[2 * i] = Math.round(p.tx);
    out.offsets[2 * i + 1] = Math.round(p.ty);
    out.params.push(p);
  }
  return out;
}

export type { Overlay } from './names.ts';

export interface MultiMnistOptions {
  /** Maximum shift of each digit in each direction (paper: 4). */
  maxShift: number;
  /** Canvas size (paper: 36 = 28 + 2 * 4). */
  canvas: number;
  /** How the two digits combine: pixel-wise max, or sum clipped to 1. */
  overlay: Overlay;
}

/** The paper's generator settings; 'add' (sum clipped to 1) is what the authors' MultiMNIST generator does. */
export const MULTIMNIST: MultiMnistOptions = { maxShift: 4, canvas: 36, overlay: 'add' };

export interface MultiMnistSet {
  count: number;
  size: number;
  /** The overlaid pairs. */
  images: Float32Array;
  /** Each digit alone on its own canvas, shifted as in the pair (the reconstruction targets). */
  first: Float32Array;
  second: Float32Array;
  labelsA: Int32Array;
  labelsB: Int32Array;
  /** Shifts from the centred position: [dxA, dyA, dxB, dyB] per example. */
  shifts: Int32Array;
}

/**
 * `count` MultiMNIST examples from `split`: digit A is drawn at random (or taken in order with `sequential`),
 * digit B at random from a different class; each is shifted by up to `maxShift` pixels from the centre.
 */
export function multiMnist(split: Split, count: number, digitSize: number, options: MultiMnistOptions, rng: Rng, sequential = false): MultiMnistSet {
  const firsts = Int32Array.from({ length: count }, (_, i) => (sequential ? i % split.count : rng.int(split.count)));
  return multiMnistPairs(split, firsts, digitSize, options, rng);
}

/**
 * The paper's MultiMNIST training batches (section 6: "for each digit in the MNIST dataset we generate 1K MultiMNIST
 * examples"): pair g of the run takes as its first digit training digit perm_e[(g mod pairsPerEpoch) mod count], with
 * perm_e a seeded permutation for epoch e = floor(g / pairsPerEpoch); so every digit is a first digit once per epoch
 * (pairsPerEpoch = the split's size) and 1,000 epochs are the paper's 60M pairs. The second digit and the four
 * shifts come from Rng(seed, step). Deterministic in (seed, step): the same batch on every run and machine.
 */
export function multiMnistBatch(
  split: Split,
  step: number,
  batchSize: number,
  pairsPerEpoch: number,
  seed: number,
  options: MultiMnistOptions = MULTIMNIST,
  digitSize = 28,
): MultiMnistSet {
  const firsts = new Int32Array(batchSize);
  let epoch = -1;
  let perm: Int32Array = new Int32Array(0);
  for (let i = 0; i < batchSize; i++) {
    const g = step * batchSize + i;
    const e = Math.floor(g / pairsPerEpoch);
    if (e !== epoch) {
      epoch = e;
      perm = new Rng(seed * 31 + 1_000_003 * e + 5).permutation(split.count);
    }
    firsts[i] = perm[(g % pairsPerEpoch) % split.count]!;
  }
  return multiMnistPairs(split, firsts, digitSize, options, new Rng(seed * 100003 + step));
}

/**
 * Test pairs [start, start + count) of the paper's MultiMNIST test set (1,000 pairs per test digit, 10M for the
 * 10,000 official test digits): pair k's first digit is test digit k mod the split's size, its second digit and shifts
 * come from Rng(seed, k / 1000). Any chunk of 1,000 pairs is generated on its own, the same every time, so a large
 * test set is scored chunk by chunk without being held in memory.
 */
export function multiMnistTestChunk(
  split: Split,
  start: number,
  count: number,
  seed: number,
  options: MultiMnistOptions = MULTIMNIST,
  digitSize = 28,
): MultiMnistSet {
  if (start % TEST_CHUNK !== 0 || count > TEST_CHUNK) throw new Error(`test pairs come in chunks of ${TEST_CHUNK} starting at a multiple of it`);
  const firsts = Int32Array.from({ length: count }, (_, i) => (start + i) % split.count);
  return multiMnistPairs(split, firsts, digitSize, options, new Rng(seed * 7919 + 7 + start / TEST_CHUNK));
}

/** Pairs per multiMnistTestChunk. */
export const TEST_CHUNK = 1000;

/** MultiMNIST pairs whose first digits are `firsts` (indices into `split`), second digits and shifts from `rng`. */
export function multiMnistPairs(split: Split, firsts: ArrayLike<number>, digitSize: number, options: MultiMnistOptions, rng: Rng): MultiMnistSet {
  const count = firsts.length;
  const pixels = digitSize * digitSize;
  const size = options.canvas;
  const area = size * size;
  const centre = Math.floor((size - digitSize) / 2);
  if (centre - options.maxShift < 0 || centre + options.maxShift + digitSize > size) {
    throw new Error(`a ${size}x${size} canvas cannot hold ${digitSize}x${digitSize} digits shifted by ${options.maxShift}`);
  }
  const labelSet = new Set(split.labels.subarray(0, split.count));
  if (labelSet.size < 2) throw new Error('MultiMNIST needs digits of at least two classes');
  const out: MultiMnistSet = {
    count,
    size,
    images: new Float32Array(count * area),
    first: new Float32Array(count * area),
    second: new Float32Array(count * area),
    labelsA: new Int32Array(count),
    labelsB: new Int32Array(count),
    shifts: new Int32Array(4 * count),
  };
  const shift = () => rng.int(2 * options.maxShift + 1) - options.maxShift;
  for (let i = 0; i < count; i++) {
    const a = firsts[i]!;
    let b = rng.int(split.count);
    while (split.labels[b] === split.labels[a]) b = rng.int(split.count);
    const s = [shift(), shift(), shift(), shift()] as const;
    const first = out.first.subarray(i * area, (i + 1) * area);
    const second = out.second.subarray(i * area, (i + 1) * area);
    placeOnCanvas(split.images.subarray(a * pixels, (a + 1) * pixels), digitSize, digitSize, size, centre + s[0], centre + s[1], first);
    placeOnCanvas(split.images.subarray(b * pixels, (b + 1) * pixels), digitSize, digitSize, size, centre + s[2], centre + s[3], second);
    const merged = out.images.subarray(i * area, (i + 1) * area);
    for (let k = 0; k < area; k++) merged[k] = options.overlay === 'max' ? Math.max(first[k]!, second[k]!) : Math.min(1, first[k]! + second[k]!);
    out.labelsA[i] = split.labels[a]!;
    out.labelsB[i] = split.labels[b]!;
    out.shifts.set(s, 4 * i);
  }
  return out;
}
