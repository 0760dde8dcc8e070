/**
 * A corpus of test digits drawn the way people hand them over, from the embedded MNIST test split (the `mnist`
 * package's held-out 2,000, as `capsnet train` splits them), for checking that the image pipeline brings every
 * style back to what the model was trained on:
 *
 *   mnist    28x28 PNG, white on black, as MNIST stores it
 *   paper    280x280 PNG, black ink on white paper
 *   canvas   280x280 RGBA PNG, black strokes on a transparent canvas, off centre (what <canvas>.toBlob() gives)
 *   corner   320x240 PNG, a small dark digit in a corner of a white sheet
 *   photo    480x360 colour JPEG of a digit on paper: uneven light, tinted ink, sensor noise, quality 80
 *   blank-paper, blank-canvas, blank-photo: the same grounds without a digit (the answer is "no digit")
 *
 *   npx capsnet corpus write DIR [--count 200] [--seed 1]         writes DIR/<style>/<n>-<label>.<ext>
 *   npx capsnet classify model.onnx DIR --json | npx capsnet corpus score     accuracy by style
 *
 * File names carry the truth: `0007-3.png` is a 3, `0007-none.png` has no digit.
 */
import { basename, dirname } from 'node:path';
import { Rng, resample } from '@capsnet-onnx/core';
import { encode as encodePngFile } from 'fast-png';
import jpeg from 'jpeg-js';
import { loadMnistSample } from './datasets.ts';

export const DIGIT_STYLES = ['mnist', 'paper', 'canvas', 'corner', 'photo'] as const;
export const BLANK_STYLES = ['blank-paper', 'blank-canvas', 'blank-photo'] as const;
export type CorpusStyle = (typeof DIGIT_STYLES)[number] | (typeof BLANK_STYLES)[number];

export interface CorpusImage {
  style: CorpusStyle;
  /** `<style>/<n>-<label|none>.<png|jpg>` */
  file: string;
  bytes: Uint8Array;
  /** The digit, or null for a blank image. */
  label: number | null;
}

/** RGBA 8-bit canvas helpers. */
class Sheet {
  readonly data: Uint8ClampedArray;
  constructor(
    readonly width: number,
    readonly height: number,
    rgba: [number, number, number, number],
  ) {
    this.data = new Uint8ClampedArray(width * height * 4);
    for (let p = 0; p < width * height; p++) this.data.set(rgba, 4 * p);
  }

  /** Lay `ink` (h x w in [0, 1]) at (x, y) in colour `rgb`: alpha-blended, or written into alpha on a transparent sheet. */
  ink(ink: Float32Array, h: number, w: number, x: number, y: number, rgb: [number, number, number], intoAlpha = false): void {
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        const a = ink[r * w + c]!;
        if (a <= 0) continue;
        const p = 4 * ((y + r) * this.width + x + c);
        if (intoAlpha) {
          this.data.set(rgb, p);
          this.data[p + 3] = Math.round(255 * a);
        } else for (let k = 0; k < 3; k++) this.data[p + k] = Math.round(this.data[p + k]! * (1 - a) + rgb[k]! * a);
      }
    }
  }

  png(): Uint8Array {
    return encodePngFile({ width: this.width, height: this.height, data: this.data, channels: 4, depth: 8 });
  }

  jpeg(quality: number): Uint8Array {
    return new Uint8Array(jpeg.encode({ width: this.width, height: this.height, data: this.data }, quality).data);
  }
}

/** A digit (28x28 in [0, 1]) scaled to `size` px a side, bilinear like a browser's drawImage. */
const scaled = (digit: Float32Array, size: number) => resample(digit, 28, 28, 1, size, size);

/** Paper under a lamp: a colour times a horizontal and vertical light falloff, plus Gaussian sensor noise. */
function photoGround(rng: Rng, width: number, height: number): Sheet {
  const sheet = new Sheet(width, height, [0, 0, 0, 255]);
  const paper = [205 + 20 * rng.next(), 198 + 20 * rng.next(), 185 + 20 * rng.next()];
  const [gx, gy] = [0.25 * (rng.next() - 0.5), 0.25 * (rng.next() - 0.5)];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const light = 0.92 + gx * (x / width - 0.5) * 2 + gy * (y / height - 0.5) * 2;
      for (let k = 0; k < 3; k++) sheet.data[4 * (y * width + x) + k] = paper[k]! * light;
    }
  }
  return sheet;
}

function addNoise(sheet: Sheet, rng: Rng, sigma: number): void {
  for (let p = 0; p < sheet.width * sheet.height; p++) {
    // Box-Muller; one draw per pixel, the same on all three channels plus a little per channel.
    const n = Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next()) * sigma;
    for (let k = 0; k < 3; k++) sheet.data[4 * p + k] = sheet.data[4 * p + k]! + n + (rng.next() - 0.5) * sigma * 0.5;
  }
}

function render(style: CorpusStyle, digit: Float32Array | null, rng: Rng): Uint8Array {
  const at = (room: number) => Math.floor(rng.next() * room);
  switch (style) {
    case 'mnist': {
      const sheet = new Sheet(28, 28, [0, 0, 0, 255]);
      sheet.ink(digit!, 28, 28, 0, 0, [255, 255, 255]);
      return sheet.png();
    }
    case 'paper':
    case 'blank-paper': {
      const sheet = new Sheet(280, 280, [255, 255, 255, 255]);
      if (digit) sheet.ink(scaled(digit, 280), 280, 280, 0, 0, [0, 0, 0]);
      return sheet.png();
    }
    case 'canvas':
    case 'blank-canvas': {
      const sheet = new Sheet(280, 280, [0, 0, 0, 0]);
      const size = 150 + at(40);
      // Off centre: towards one side, as people draw in a big pad.
      if (digit) sheet.ink(scaled(digit, size), size, size, at(280 - size), at(280 - size), [0, 0, 0], true);
      return sheet.png();
    }
    case 'corner': {
      const sheet = new Sheet(320, 240, [255, 255, 255, 255]);
      const size = 40 + at(16);
      const x = rng.next() < 0.5 ? at(12) : 320 - size - at(12);
      const y = rng.next() < 0.5 ? at(12) : 240 - size - at(12);
      sheet.ink(scaled(digit!, size), size, size, x, y, [20, 20, 20]);
      return sheet.png();
    }
    case 'photo':
    case 'blank-photo': {
      const sheet = photoGround(rng, 480, 360);
      const size = 220 + at(60);
      if (digit) sheet.ink(scaled(digit, size), size, size, 60 + at(420 - size), at(360 - size), [35 + at(20), 35 + at(20), 70 + at(40)]);
      addNoise(sheet, rng, 5);
      return sheet.jpeg(80);
    }
  }
}

/**
 * `count` test digits in every digit style (the same digits in each) and count/4 blanks of each blank style.
 * Deterministic for a seed.
 */
export function makeDigitCorpus(count = 200, seed = 1): CorpusImage[] {
  const { test } = loadMnistSample();
  if (count > test.count) throw new Error(`--count ${count}: the embedded test split has ${test.count} digits`);
  const rng = new Rng(seed);
  const out: CorpusImage[] = [];
  for (const style of DIGIT_STYLES) {
    for (let i = 0; i < count; i++) {
      const digit = test.images.subarray(i * 784, (i + 1) * 784);
      const label = test.labels[i]!;
      const ext = style === 'photo' ? 'jpg' : 'png';
      out.push({ style, file: `${style}/${String(i).padStart(4, '0')}-${label}.${ext}`, bytes: render(style, digit, rng), label });
    }
  }
  for (const style of BLANK_STYLES) {
    for (let i = 0; i < Math.max(1, Math.round(count / 4)); i++) {
      const ext = style === 'blank-photo' ? 'jpg' : 'png';
      out.push({ style, file: `${style}/${String(i).padStart(4, '0')}-none.${ext}`, bytes: render(style, null, rng), label: null });
    }
  }
  return out;
}

/** The truth a corpus file name carries: a digit, null (blank), or undefined (not a corpus name). */
export function corpusLabel(path: string): number | null | undefined {
  const match = /-(\d|none)\.(png|jpg)$/.exec(basename(path));
  if (!match) return undefined;
  return match[1] === 'none' ? null : Number(match[1]);
}

/** Accuracy by style (the folder name) of `capsnet classify --json` results on the corpus. */
export function scoreByStyle(results: Array<{ image: string; label: number | null }>): Map<string, { right: number; total: number }> {
  const table = new Map<string, { right: number; total: number }>();
  for (const r of results) {
    const truth = corpusLabel(r.image);
    if (truth === undefined) continue;
    const style = basename(dirname(r.image));
    const row = table.get(style) ?? { right: 0, total: 0 };
    row.total++;
    if (r.label === truth) row.right++;
    table.set(style, row);
  }
  return table;
}
