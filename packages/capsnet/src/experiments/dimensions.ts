/**
 * What each dimension of a digit capsule does, measured (section 5.1 and figure 4 of Sabour, Frosst & Hinton 2017:
 * "scale and thickness", "localized part", "stroke thickness", "localized skew", "width and translation"). For a
 * digit, the winning capsule (the others masked) has one dimension set to -0.25 and to +0.25 and both are decoded
 * (experiments/perturb.ts); the change between the two reconstructions A (-0.25) and B (+0.25) is described by
 * image statistics, each in pixels of the model's input so they can be compared:
 *
 *   For an image I (H x W, values in [0, 1], pixel (x, y) at column x, row y):
 *     ink m = sum I                                        (pixels of full ink)
 *     centroid (cx, cy) = sum (x, y) I / m                 (pixels)
 *     mu20, mu02, mu11 = sum (x-cx)^2 I, (y-cy)^2 I, (x-cx)(y-cy) I, each / m   (pixels^2)
 *     width sigma_x = sqrt(mu20), height sigma_y = sqrt(mu02)                    (pixels)
 *     slant = mu11 / mu02 (horizontal shear per pixel of height); angle = atan2(2 mu11, mu20 - mu02) / 2
 *     edge length P = sum over pixels of |(I[x+1,y] - I[x,y], I[x,y+1] - I[x,y])|  (pixels; a shape's perimeter)
 *     stroke width t = 2 m / P   (area / stroke length, the length being half the perimeter; pixels)
 *
 *   Effects (differences B - A; sizes in pixels):
 *     translation  |(dcx, dcy)|                 width  |d sigma_x|           height  |d sigma_y|
 *     scale        (|d sigma_x| + |d sigma_y|) / 2, in place of width and height when both change the same way
 *                  and the smaller change is at least half the larger
 *     stroke thickness  |dt|                    skew   |d slant| x sigma_y of the unperturbed digit (the shear's
 *                  horizontal displacement one sigma above the centroid)
 *     rotation (degrees) is reported, not labelled: to first order a small rotation of an upright digit moves the
 *     second moments as a horizontal shear does, so both read as skew.
 *     locality = share of sum |B - A| inside the square window of side round(W / 4) (7 for 28 x 28) holding most
 *     of it; inkShare = share of the unperturbed digit's ink inside that same window. A change is "localized" when
 *     locality - inkShare >= LOCAL_EXCESS: concentrated beyond what the ink there explains (a thin "1" puts much of
 *     any change into one window).
 *     ink = dm / m of the unperturbed digit (fraction).
 *
 * Label: the largest effect in the paper's words; "X and Y" when the second is at least AND_SHARE of it; a
 * localized change (see locality) is a "localized part", or a "localized skew" when skew dominates;
 * "no visible change" when the summed |pixel change| is under one pixel of ink. Over several digits the sizes are
 * averaged first (magnitudes for the label, signed values for the report), then labelled.
 */
import { DIMENSIONS_FORMAT, type ClassDimensions, type DimensionEffect, type DimensionFindings } from '@capsnet-onnx/core';

/** A change counts as localized when its share in one window (a quarter of the side) exceeds the ink's share there by this. */
export const LOCAL_EXCESS = 0.25;
/** The label names two effects when the second is at least this share of the first. */
export const AND_SHARE = 0.7;

export interface ImageStatistics {
  ink: number;
  cx: number;
  cy: number;
  sigmaX: number;
  sigmaY: number;
  slant: number;
  /** Principal axis angle, radians. */
  angle: number;
  edge: number;
  strokeWidth: number;
}

/** The statistics above of one H x W image (first channel only when C > 1 is not supported: pass H*W values). */
export function imageStatistics(image: ArrayLike<number>, height: number, width: number): ImageStatistics {
  let m = 0;
  let sx = 0;
  let sy = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = Math.max(0, image[y * width + x]!);
      m += v;
      sx += x * v;
      sy += y * v;
    }
  }
  const cx = m > 0 ? sx / m : (width - 1) / 2;
  const cy = m > 0 ? sy / m : (height - 1) / 2;
  let mu20 = 0;
  let mu02 = 0;
  let mu11 = 0;
  let edge = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = Math.max(0, image[y * width + x]!);
      mu20 += (x - cx) * (x - cx) * v;
      mu02 += (y - cy) * (y - cy) * v;
      mu11 += (x - cx) * (y - cy) * v;
      const right = x + 1 < width ? Math.max(0, image[y * width + x + 1]!) : 0;
      const below = y + 1 < height ? Math.max(0, image[(y + 1) * width + x]!) : 0;
      edge += Math.hypot(right - v, below - v);
    }
  }
  if (m > 0) {
    mu20 /= m;
    mu02 /= m;
    mu11 /= m;
  }
  return {
    ink: m,
    cx,
    cy,
    sigmaX: Math.sqrt(mu20),
    sigmaY: Math.sqrt(mu02),
    slant: mu02 > 0 ? mu11 / mu02 : 0,
    angle: Math.atan2(2 * mu11, mu20 - mu02) / 2,
    edge,
    strokeWidth: edge > 0 ? (2 * m) / edge : 0,
  };
}

/**
 * Share of sum |b - a| inside the best square window of side `side` (summed-area tables), and the share of
 * `base`'s ink inside that window.
 */
export function locality(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  base: ArrayLike<number>,
  height: number,
  width: number,
  side = Math.max(1, Math.round(width / 4)),
): { locality: number; inkShare: number } {
  const table = (value: (i: number) => number) => {
    const sat = new Float64Array((height + 1) * (width + 1));
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        sat[(y + 1) * (width + 1) + x + 1] = value(y * width + x) + sat[y * (width + 1) + x + 1]! + sat[(y + 1) * (width + 1) + x]! - sat[y * (width + 1) + x]!;
      }
    }
    const sum = (x: number, y: number, s: number) =>
      sat[(y + s) * (width + 1) + x + s]! - sat[y * (width + 1) + x + s]! - sat[(y + s) * (width + 1) + x]! + sat[y * (width + 1) + x]!;
    return { total: sat[height * (width + 1) + width]!, sum };
  };
  const change = table((i) => Math.abs(b[i]! - a[i]!));
  const ink = table((i) => Math.max(0, base[i]!));
  if (change.total <= 0) return { locality: 0, inkShare: 0 };
  let best = { share: 0, x: 0, y: 0 };
  for (let y = 0; y + side <= height; y++) {
    for (let x = 0; x + side <= width; x++) {
      const share = change.sum(x, y, side) / change.total;
      if (share > best.share) best = { share, x, y };
    }
  }
  return { locality: best.share, inkShare: ink.total > 0 ? ink.sum(best.x, best.y, side) / ink.total : 0 };
}

/** The signed effects (no label) of going from `a` (-0.25) to `b` (+0.25); `base` is the unperturbed reconstruction. */
export function measureChange(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  base: ArrayLike<number>,
  height: number,
  width: number,
): Omit<DimensionEffect, 'dimension' | 'label'> {
  const sa = imageStatistics(a, height, width);
  const sb = imageStatistics(b, height, width);
  const s0 = imageStatistics(base, height, width);
  let change = 0;
  for (let i = 0; i < height * width; i++) change += Math.abs(b[i]! - a[i]!);
  let rotation = ((sb.angle - sa.angle) * 180) / Math.PI;
  if (rotation > 90) rotation -= 180;
  if (rotation < -90) rotation += 180;
  return {
    change: change / (height * width),
    ...locality(a, b, base, height, width),
    shiftX: sb.cx - sa.cx,
    shiftY: sb.cy - sa.cy,
    width: sb.sigmaX - sa.sigmaX,
    height: sb.sigmaY - sa.sigmaY,
    thickness: sb.strokeWidth - sa.strokeWidth,
    skew: (sb.slant - sa.slant) * s0.sigmaY,
    rotation,
    ink: s0.ink > 0 ? (sb.ink - sa.ink) / s0.ink : 0,
  };
}

type Measured = Omit<DimensionEffect, 'dimension' | 'label'>;

/** Effect sizes in pixels by name (the paper's words), from magnitudes averaged over digits. */
function effectSizes(m: { translation: number; width: number; height: number; thickness: number; skew: number; sameSign: boolean }): [string, number][] {
  const sizes: [string, number][] = [
    ['translation', m.translation],
    ['stroke thickness', m.thickness],
    ['skew', m.skew],
  ];
  const [small, large] = [Math.min(m.width, m.height), Math.max(m.width, m.height)];
  if (m.sameSign && large > 0 && small >= 0.5 * large) sizes.push(['scale', (m.width + m.height) / 2]);
  else sizes.push(['width', m.width], ['height', m.height]);
  return sizes.sort((p, q) => q[1] - p[1]);
}

/**
 * Average the measured changes of several digits for one dimension and label the result.
 * @param pixels H*W of the images, for the "no visible change" threshold (summed change under one pixel of ink)
 */
export function summarize(dimension: number, measured: Measured[], pixels: number): DimensionEffect {
  const n = Math.max(1, measured.length);
  const mean = (f: (m: Measured) => number) => measured.reduce((s, m) => s + f(m), 0) / n;
  const effect: DimensionEffect = {
    dimension,
    label: '',
    change: mean((m) => m.change),
    locality: mean((m) => m.locality),
    inkShare: mean((m) => m.inkShare),
    shiftX: mean((m) => m.shiftX),
    shiftY: mean((m) => m.shiftY),
    width: mean((m) => m.width),
    height: mean((m) => m.height),
    thickness: mean((m) => m.thickness),
    skew: mean((m) => m.skew),
    rotation: mean((m) => m.rotation),
    ink: mean((m) => m.ink),
  };
  const sizes = effectSizes({
    translation: mean((m) => Math.hypot(m.shiftX, m.shiftY)),
    width: mean((m) => Math.abs(m.width)),
    height: mean((m) => Math.abs(m.height)),
    thickness: mean((m) => Math.abs(m.thickness)),
    skew: mean((m) => Math.abs(m.skew)),
    sameSign: mean((m) => (m.width * m.height > 0 ? 1 : 0)) >= 0.5,
  });
  for (const key of Object.keys(effect) as (keyof DimensionEffect)[]) {
    if (typeof effect[key] === 'number' && key !== 'dimension') (effect as unknown as Record<string, number>)[key] = Number((effect[key] as number).toFixed(4));
  }
  const [first, second] = sizes as [[string, number], [string, number]];
  if (effect.change * pixels < 1) effect.label = 'no visible change';
  else if (effect.locality - effect.inkShare >= LOCAL_EXCESS) effect.label = first[0] === 'skew' ? 'localized skew' : 'localized part';
  else effect.label = second[1] >= AND_SHARE * first[1] ? `${first[0]} and ${second[0]}` : first[0];
  return effect;
}

export interface MeasuredDigit {
  cls: number;
  /** digitDim x steps.length reconstructions (H*W each, first channel), row-major: dimension d, step s at d * steps + s. */
  reconstructions: Float32Array;
}

/** The dimensions file of a model from decoded figure-4 grids of several digits per class. */
export function dimensionFindings(
  digits: MeasuredDigit[],
  shape: { inputHeight: number; inputWidth: number; inputChannels: number; digitDim: number; numClasses: number },
  steps: number[],
  model: string,
  dataset: string,
): DimensionFindings {
  const { inputHeight: h, inputWidth: w, inputChannels: c, digitDim } = shape;
  const size = h * w * c;
  const zero = steps.indexOf(0);
  const image = (grid: Float32Array, k: number) => {
    const full = grid.subarray(k * size, (k + 1) * size);
    return c === 1 ? full : Float32Array.from({ length: h * w }, (_, i) => full[i * c]!);
  };
  const measured = digits.map((digit) =>
    Array.from({ length: digitDim }, (_, d) => {
      const at = (s: number) => image(digit.reconstructions, d * steps.length + s);
      return measureChange(at(0), at(steps.length - 1), at(Math.max(zero, 0)), h, w);
    }),
  );
  const overall = Array.from({ length: digitDim }, (_, d) =>
    summarize(
      d + 1,
      measured.map((m) => m[d]!),
      h * w,
    ),
  );
  const classes = [...new Set(digits.map((d) => d.cls))].sort((p, q) => p - q);
  const perClass: ClassDimensions[] = classes.map((cls) => {
    const own = measured.filter((_, i) => digits[i]!.cls === cls);
    return {
      class: cls,
      digits: own.length,
      dimensions: Array.from({ length: digitDim }, (_, d) =>
        summarize(
          d + 1,
          own.map((m) => m[d]!),
          h * w,
        ),
      ),
    };
  });
  return { format: DIMENSIONS_FORMAT, digitDim, numClasses: shape.numClasses, steps, model, dataset, overall, perClass };
}
