/**
 * The one image pipeline: whatever pixels a user has (a decoded PNG or JPEG, a canvas's ImageData, nested JSON
 * arrays) become the float32 HxWxC tensor in [0, 1] that a model was trained on. The CLI, the HTTP server, the
 * runtime and the browser page all call `prepareImage`, so the same picture gets the same answer everywhere.
 *
 *   1. alpha is composited onto the background the image implies: dark strokes on a transparent canvas are dark
 *      ink on light paper, light strokes are light ink on a dark ground;
 *   2. colour becomes the model's channels (gray: ITU-R BT.601 luma);
 *   3. polarity: models trained on light ink on a dark ground (MNIST, Fashion-MNIST) get dark-on-light images
 *      inverted; `auto` decides from the median of the border pixels, the other two names say it outright;
 *   4. `mnist` preprocessing (LeCun et al.'s for MNIST): the background is levelled to 0 and the ink stretched
 *      to 1, the ink's bounding box is cropped, scaled (anti-aliased) so its longer side is 20 px of 28 (the same
 *      fraction for other sizes), and placed so its centre of mass is the image centre; `resize` preprocessing
 *      (other data): a plain anti-aliased resize of the whole image.
 * An image whose pixels barely vary (a cleared canvas, a blank sheet) has no ink: `ink: false`, all zeros.
 * Pure TypeScript, no Node or DOM APIs.
 */
import { resample } from './resample.ts';

export type Polarity = 'auto' | 'light-on-dark' | 'dark-on-light';
export const POLARITIES: readonly Polarity[] = ['auto', 'light-on-dark', 'dark-on-light'];

/**
 * What a model expects, recorded by the exporter in metadata `capsnet.preprocessing` as JSON:
 *   method   `mnist` (crop to the ink, longer side to 20/28 of the input, centre of mass at the centre) or
 *            `resize` (the whole image resized to the input);
 *   polarity `light-on-dark` (images are inverted when they are dark on light) or `any` (never inverted:
 *            colour photographs and other data without a ground colour).
 */
export interface Preprocessing {
  method: 'mnist' | 'resize';
  polarity: 'light-on-dark' | 'any';
}

/** The model input's size. */
export interface InputShape {
  height: number;
  width: number;
  channels: number;
}

/**
 * Pixels to prepare, row-major, `channels` values a pixel (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA; default: the
 * data's length / (width * height)). Uint8Array / Uint8ClampedArray hold 0-255, Float32Array and number[] [0, 1].
 */
export interface Raster {
  data: Uint8Array | Uint8ClampedArray | Float32Array | ArrayLike<number>;
  width: number;
  height: number;
  channels?: number;
}

export interface PrepareOptions {
  /** How the image's ink relates to its ground; default `auto`. */
  polarity?: Polarity;
}

export interface PreparedImage {
  /** height x width x channels, in [0, 1]. */
  pixels: Float32Array;
  /** False when the image has no ink (its pixels vary by less than MIN_INK_CONTRAST); pixels are then zeros. */
  ink: boolean;
  /** True when the pipeline inverted the image (it was, or was said to be, dark on light). */
  inverted: boolean;
}

/** Ink must stand this far (in [0, 1]) above the ground for an image to hold anything... */
export const MIN_INK_CONTRAST = 0.15;
/** ...and this many standard deviations of the ground's noise (a blank photographed sheet is all noise). */
const INK_NOISE_RATIO = 8;
/** MNIST's digits fit a 20x20 box inside 28x28. */
const MNIST_BOX = 20 / 28;

export class PreprocessError extends Error {
  override name = 'PreprocessError';
}

/**
 * The preprocessing of a model without a `capsnet.preprocessing` record (exported before it existed): `mnist`
 * for one-channel models of a data set named like MNIST other than Fashion-MNIST, and for one-channel 28x28
 * models of unknown data; `resize` with light-on-dark polarity for other one-channel models; `resize` with any
 * polarity for colour models.
 */
export function defaultPreprocessing(dataset: string, shape: InputShape): Preprocessing {
  if (shape.channels !== 1) return { method: 'resize', polarity: 'any' };
  const name = dataset.toLowerCase();
  const digits = name.includes('fashion') ? false : name.includes('mnist') || (name === '' && shape.height === 28 && shape.width === 28);
  return { method: digits ? 'mnist' : 'resize', polarity: 'light-on-dark' };
}

/** Parse the metadata record (JSON); null when absent. Errors name the bad field. */
export function parsePreprocessing(raw: string | undefined): Preprocessing | null {
  if (raw === undefined || raw === '') return null;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new PreprocessError(`metadata "capsnet.preprocessing" is not JSON (${raw.slice(0, 60)}): re-export the model`);
  }
  const v = value as Partial<Preprocessing> | null;
  if (!v || (v.method !== 'mnist' && v.method !== 'resize') || (v.polarity !== 'light-on-dark' && v.polarity !== 'any')) {
    throw new PreprocessError(
      `metadata "capsnet.preprocessing" must be {"method": "mnist"|"resize", "polarity": "light-on-dark"|"any"}, got ${raw.slice(0, 80)}: re-export the model`,
    );
  }
  return { method: v.method, polarity: v.polarity };
}

export function checkPolarity(value: unknown, where = 'polarity'): Polarity {
  if (value === undefined || value === null || value === '') return 'auto';
  if (typeof value === 'string' && (POLARITIES as readonly string[]).includes(value)) return value as Polarity;
  throw new PreprocessError(`${where} must be ${POLARITIES.join(', ')}; got ${JSON.stringify(value)}`);
}

const luma = (r: number, g: number, b: number) => 0.299 * r + 0.587 * g + 0.114 * b;

function median(values: Float32Array): number {
  if (values.length === 0) return 0;
  const sorted = values.slice().sort();
  return sorted[sorted.length >> 1]!;
}

/** The ring of border pixels of an h x w single-channel image. */
function border(gray: Float32Array, h: number, w: number): Float32Array {
  const out: number[] = [];
  for (let x = 0; x < w; x++) out.push(gray[x]!, gray[(h - 1) * w + x]!);
  for (let y = 1; y < h - 1; y++) out.push(gray[y * w]!, gray[y * w + w - 1]!);
  return Float32Array.from(out);
}

/**
 * Colour channels (3, or 1 for gray) in [0, 1] with alpha composited onto the implied ground: the alpha-weighted
 * mean luma of the visible pixels is the ink's; dark ink goes on white, light ink on black.
 */
function flatten(raster: Raster, what: string): { colour: Float32Array; c: 1 | 3 } {
  const { width: w, height: h, data } = raster;
  const count = w * h;
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < 1 || h < 1) {
    throw new PreprocessError(`${what} has width ${w} and height ${h}: both must be positive integers`);
  }
  const channels = raster.channels ?? data.length / count;
  if (![1, 2, 3, 4].includes(channels) || data.length !== count * channels) {
    throw new PreprocessError(
      `${what} has ${data.length} values for ${w}x${h} pixels: expected ${count} (gray), ${2 * count} (gray+alpha), ${3 * count} (RGB) or ${4 * count} (RGBA)`,
    );
  }
  const bytes = data instanceof Uint8Array || data instanceof Uint8ClampedArray;
  const scale = bytes ? 1 / 255 : 1;
  const c = channels <= 2 ? 1 : 3;
  const colour = new Float32Array(count * c);
  const alpha = channels === 2 || channels === 4 ? new Float32Array(count) : null;
  for (let p = 0; p < count; p++) {
    for (let k = 0; k < c; k++) {
      const v = data[p * channels + k]! * scale;
      if (!(v >= 0 && v <= 1)) {
        throw new PreprocessError(`${what}: pixel ${p} has the value ${data[p * channels + k]}: ${bytes ? '0-255' : 'values must be in [0, 1]'}`);
      }
      colour[p * c + k] = v;
    }
    if (alpha) alpha[p] = Math.min(1, Math.max(0, data[p * channels + channels - 1]! * scale));
  }
  if (!alpha || alpha.every((a) => a === 1)) return { colour, c };
  let inkLuma = 0;
  let weight = 0;
  for (let p = 0; p < count; p++) {
    const a = alpha[p]!;
    inkLuma += a * (c === 1 ? colour[p]! : luma(colour[3 * p]!, colour[3 * p + 1]!, colour[3 * p + 2]!));
    weight += a;
  }
  const ground = weight > 0 && inkLuma / weight < 0.5 ? 1 : 0;
  for (let p = 0; p < count; p++) {
    const a = alpha[p]!;
    for (let k = 0; k < c; k++) colour[p * c + k] = a * colour[p * c + k]! + (1 - a) * ground;
  }
  return { colour, c };
}

function toChannels(colour: Float32Array, count: number, from: 1 | 3, to: number): Float32Array {
  if (from === to) return colour;
  if (to === 1) return Float32Array.from({ length: count }, (_, p) => luma(colour[3 * p]!, colour[3 * p + 1]!, colour[3 * p + 2]!));
  if (to === 3) {
    const out = new Float32Array(count * 3);
    for (let p = 0; p < count; p++) out[3 * p] = out[3 * p + 1] = out[3 * p + 2] = colour[p]!;
    return out;
  }
  throw new PreprocessError(`the model takes ${to}-channel images; images can be prepared for 1 (gray) or 3 (RGB) channels`);
}

/**
 * The ink's level: the value that 0.05% of the pixels reach or pass (to 1/1024), so a few hot pixels do not
 * count but a small digit on a big sheet does. A histogram, not a sort: photos are big.
 */
function inkLevel(gray: Float32Array): number {
  const bins = new Uint32Array(1025);
  for (let i = 0; i < gray.length; i++) bins[Math.round(gray[i]! * 1024)]!++;
  let above = Math.floor(gray.length * 0.0005);
  for (let b = 1024; b > 0; b--) {
    if (bins[b]! > above) return b / 1024;
    above -= bins[b]!;
  }
  return 0;
}

/** Images at least this big a side get their ground levelled cell by cell (photos lit unevenly). */
const LEVEL_MIN_SIDE = 64;
const LEVEL_CELLS = 4;

/**
 * Subtract a smooth estimate of the ground from a light-on-dark image: the 2nd percentile of each cell of a 4x4
 * grid (robust to ink covering most of a cell, and to specks), interpolated bilinearly between cell centres.
 * A lamp's falloff across a photographed sheet then no longer reads as ink. Small images are left alone.
 */
function levelGround(gray: Float32Array, h: number, w: number): Float32Array {
  if (Math.min(h, w) < LEVEL_MIN_SIDE) return gray;
  const g = LEVEL_CELLS;
  const field = new Float32Array(g * g);
  for (let cy = 0; cy < g; cy++) {
    for (let cx = 0; cx < g; cx++) {
      const [y0, y1, x0, x1] = [Math.floor((cy * h) / g), Math.floor(((cy + 1) * h) / g), Math.floor((cx * w) / g), Math.floor(((cx + 1) * w) / g)];
      const cell = new Float32Array((y1 - y0) * (x1 - x0));
      for (let y = y0; y < y1; y++) cell.set(gray.subarray(y * w + x0, y * w + x1), (y - y0) * (x1 - x0));
      cell.sort();
      field[cy * g + cx] = cell[Math.floor(cell.length * 0.02)]!;
    }
  }
  const out = new Float32Array(h * w);
  for (let y = 0; y < h; y++) {
    const fy = Math.min(g - 1, Math.max(0, ((y + 0.5) * g) / h - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(g - 1, y0 + 1);
    const ty = fy - y0;
    for (let x = 0; x < w; x++) {
      const fx = Math.min(g - 1, Math.max(0, ((x + 0.5) * g) / w - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(g - 1, x0 + 1);
      const tx = fx - x0;
      const top = field[y0 * g + x0]! * (1 - tx) + field[y0 * g + x1]! * tx;
      const bottom = field[y1 * g + x0]! * (1 - tx) + field[y1 * g + x1]! * tx;
      out[y * w + x] = Math.max(0, gray[y * w + x]! - (top * (1 - ty) + bottom * ty));
    }
  }
  return out;
}

/**
 * MNIST's normalisation of a light-on-dark gray image (h x w): level and stretch, crop to the ink, scale the
 * longer side to 20/28 of the output, centre the mass. Returns null when there is no ink.
 */
function mnistNormalise(image: Float32Array, h: number, w: number, outH: number, outW: number): Float32Array | null {
  const gray = levelGround(image, h, w);
  const edge = border(gray, h, w);
  const ground = median(edge);
  const peak = inkLevel(gray);
  const contrast = peak - ground;
  // The ground's noise, as a robust standard deviation of the border (0 on a clean image).
  const sigma = 1.4826 * median(edge.map((v) => Math.abs(v - ground)));
  if (contrast < Math.max(MIN_INK_CONTRAST, INK_NOISE_RATIO * sigma)) return null;
  // Noise floor: three standard deviations (0 on a clean image, so MNIST itself is unchanged).
  const floor = Math.min(0.5, (3 * sigma) / contrast);
  const level = new Float32Array(h * w);
  for (let i = 0; i < level.length; i++) {
    const s = Math.min(1, Math.max(0, (gray[i]! - ground) / contrast));
    level[i] = s <= floor ? 0 : (s - floor) / (1 - floor);
  }
  // Bounding box of ink pixels (above six noise deviations: 0 on a clean image, where every bit of ink counts) that
  // have an inked neighbour, so a speck of noise or a JPEG block's ringing does not stretch the box.
  const cut = Math.min(0.5, (6 * sigma) / contrast);
  let x0 = w;
  let y0 = h;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (level[y * w + x]! <= cut) continue;
      let neighbours = 0;
      for (let dy = -1; dy <= 1 && neighbours === 0; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if ((dx || dy) && yy >= 0 && yy < h && xx >= 0 && xx < w && level[yy * w + xx]! > cut) {
            neighbours++;
            break;
          }
        }
      }
      if (neighbours === 0) continue;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  if (x1 < 0) return null;
  const bw = x1 - x0 + 1;
  const bh = y1 - y0 + 1;
  const crop = new Float32Array(bw * bh);
  for (let y = 0; y < bh; y++) crop.set(level.subarray((y0 + y) * w + x0, (y0 + y) * w + x0 + bw), y * bw);
  const box = Math.max(1, Math.round(Math.min(outH, outW) * MNIST_BOX));
  const scale = box / Math.max(bw, bh);
  const tw = Math.max(1, Math.min(outW, Math.round(bw * scale)));
  const th = Math.max(1, Math.min(outH, Math.round(bh * scale)));
  const small = resample(crop, bh, bw, 1, th, tw);
  let mass = 0;
  let mx = 0;
  let my = 0;
  for (let y = 0; y < th; y++) {
    for (let x = 0; x < tw; x++) {
      const v = small[y * tw + x]!;
      mass += v;
      mx += v * (x + 0.5);
      my += v * (y + 0.5);
    }
  }
  if (mass === 0) return null;
  // Integer shift, as MNIST's own centring; clamped so the box stays inside the image.
  const ox = Math.min(outW - tw, Math.max(0, Math.round(outW / 2 - mx / mass)));
  const oy = Math.min(outH - th, Math.max(0, Math.round(outH / 2 - my / mass)));
  const out = new Float32Array(outH * outW);
  for (let y = 0; y < th; y++) out.set(small.subarray(y * tw, (y + 1) * tw), (y + oy) * outW + ox);
  return out;
}

/**
 * Prepare one image for a model: see the module comment for the steps. `what` names the image in errors.
 * Errors (PreprocessError): a size/length mismatch, values outside their range, or an unsupported channel count.
 */
export function prepareImage(raster: Raster, shape: InputShape, preprocessing: Preprocessing, options: PrepareOptions = {}, what = 'the image'): PreparedImage {
  const polarity = checkPolarity(options.polarity);
  const { width: w, height: h } = raster;
  const { colour, c } = flatten(raster, what);
  const count = w * h;
  const gray = c === 1 ? colour : toChannels(colour, count, 3, 1);
  const darkOnLight = polarity === 'auto' ? median(border(gray, h, w)) > 0.5 : polarity === 'dark-on-light';
  const inverted = preprocessing.polarity === 'light-on-dark' && darkOnLight;
  const zeros = () => ({ pixels: new Float32Array(shape.height * shape.width * shape.channels), ink: false, inverted });
  if (preprocessing.method === 'mnist') {
    const ink = inverted ? gray.map((v) => 1 - v) : gray;
    const normalised = mnistNormalise(ink, h, w, shape.height, shape.width);
    if (!normalised) return zeros();
    return { pixels: toChannels(normalised, shape.height * shape.width, 1, shape.channels), ink: true, inverted };
  }
  let pixels = toChannels(colour, count, c, shape.channels);
  if (inverted) pixels = pixels.map((v) => 1 - v);
  if (!hasInk(pixels)) return zeros();
  return { pixels: resample(pixels, h, w, shape.channels, shape.height, shape.width), ink: true, inverted };
}

/** An already prepared image holds ink when its values span at least MIN_INK_CONTRAST. */
export function hasInk(pixels: ArrayLike<number>, scale = 1): boolean {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < pixels.length; i++) {
    const v = pixels[i]! * scale;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return max - min >= MIN_INK_CONTRAST;
}
