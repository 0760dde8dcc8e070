/**
 * A tiny raster canvas for the experiment figures: an RGBA buffer, filled rectangles, lines, a 5x7 bitmap font,
 * image blits, and PNG encoding through fast-png. No anti-aliasing; everything is integer pixels.
 */
import { writeFileSync } from 'node:fs';
import { decodeImage } from '@capsnet-onnx/core';
import { encode as encodePngFile } from 'fast-png';

export type Rgb = readonly [number, number, number];

export const COLORS = {
  white: [255, 255, 255],
  black: [0, 0, 0],
  grey: [128, 128, 128],
  lightGrey: [225, 225, 225],
  red: [220, 40, 40],
  green: [30, 170, 60],
  blue: [40, 90, 220],
  orange: [240, 140, 20],
  purple: [140, 60, 190],
  teal: [20, 150, 150],
} as const satisfies Record<string, Rgb>;

/** Series colours, in order. */
export const PALETTE: Rgb[] = [COLORS.blue, COLORS.red, COLORS.green, COLORS.orange, COLORS.purple, COLORS.teal, COLORS.grey];

// 5x7 glyphs, rows top to bottom, '#' = ink. Lower-case letters draw as capitals.
const GLYPHS: Record<string, string> = {
  ' ': '..... ..... ..... ..... ..... ..... .....',
  '0': '.###. #...# #..## #.#.# ##..# #...# .###.',
  '1': '..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.',
  '2': '.###. #...# ....# ...#. ..#.. .#... #####',
  '3': '##### ...#. ..#.. ...#. ....# #...# .###.',
  '4': '...#. ..##. .#.#. #..#. ##### ...#. ...#.',
  '5': '##### #.... ####. ....# ....# #...# .###.',
  '6': '..##. .#... #.... ####. #...# #...# .###.',
  '7': '##### ....# ...#. ..#.. .#... .#... .#...',
  '8': '.###. #...# #...# .###. #...# #...# .###.',
  '9': '.###. #...# #...# .#### ....# ...#. .##..',
  A: '.###. #...# #...# ##### #...# #...# #...#',
  B: '####. #...# #...# ####. #...# #...# ####.',
  C: '.###. #...# #.... #.... #.... #...# .###.',
  D: '###.. #..#. #...# #...# #...# #..#. ###..',
  E: '##### #.... #.... ####. #.... #.... #####',
  F: '##### #.... #.... ####. #.... #.... #....',
  G: '.###. #...# #.... #.### #...# #...# .####',
  H: '#...# #...# #...# ##### #...# #...# #...#',
  I: '.###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
  J: '..### ...#. ...#. ...#. ...#. #..#. .##..',
  K: '#...# #..#. #.#.. ##... #.#.. #..#. #...#',
  L: '#.... #.... #.... #.... #.... #.... #####',
  M: '#...# ##.## #.#.# #.#.# #...# #...# #...#',
  N: '#...# #...# ##..# #.#.# #..## #...# #...#',
  O: '.###. #...# #...# #...# #...# #...# .###.',
  P: '####. #...# #...# ####. #.... #.... #....',
  Q: '.###. #...# #...# #...# #.#.# #..#. .##.#',
  R: '####. #...# #...# ####. #.#.. #..#. #...#',
  S: '.#### #.... #.... .###. ....# ....# ####.',
  T: '##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
  U: '#...# #...# #...# #...# #...# #...# .###.',
  V: '#...# #...# #...# #...# #...# .#.#. ..#..',
  W: '#...# #...# #...# #.#.# #.#.# #.#.# .#.#.',
  X: '#...# #...# .#.#. ..#.. .#.#. #...# #...#',
  Y: '#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..',
  Z: '##### ....# ...#. ..#.. .#... #.... #####',
  '.': '..... ..... ..... ..... ..... .##.. .##..',
  ',': '..... ..... ..... ..... .##.. ..#.. .#...',
  ':': '..... .##.. .##.. ..... .##.. .##.. .....',
  ';': '..... .##.. .##.. ..... .##.. ..#.. .#...',
  '-': '..... ..... ..... ##### ..... ..... .....',
  '+': '..... ..#.. ..#.. ##### ..#.. ..#.. .....',
  '=': '..... ..... ##### ..... ##### ..... .....',
  '%': '##... ##..# ...#. ..#.. .#... #..## ...##',
  '(': '...#. ..#.. .#... .#... .#... ..#.. ...#.',
  ')': '.#... ..#.. ...#. ...#. ...#. ..#.. .#...',
  '[': '.###. .#... .#... .#... .#... .#... .###.',
  ']': '.###. ...#. ...#. ...#. ...#. ...#. .###.',
  '/': '..... ....# ...#. ..#.. .#... #.... .....',
  _: '..... ..... ..... ..... ..... ..... #####',
  "'": '..#.. ..#.. .#... ..... ..... ..... .....',
  '"': '.#.#. .#.#. ..... ..... ..... ..... .....',
  '!': '..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..',
  '?': '.###. #...# ....# ...#. ..#.. ..... ..#..',
  '<': '...#. ..#.. .#... #.... .#... ..#.. ...#.',
  '>': '.#... ..#.. ...#. ....# ...#. ..#.. .#...',
  '#': '.#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.',
  '*': '..... ..#.. #.#.# .###. #.#.# ..#.. .....',
  '|': '..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
  '^': '..#.. .#.#. #...# ..... ..... ..... .....',
  '~': '..... ..... .#... #.#.# ...#. ..... .....',
};

const GLYPH_BITS = new Map<string, boolean[][]>(Object.entries(GLYPHS).map(([ch, rows]) => [ch, rows.split(' ').map((row) => [...row].map((c) => c === '#'))]));

/** Glyph cell: 5 pixels of ink and 1 of spacing, times the scale. */
export const GLYPH_W = 6;
export const GLYPH_H = 7;

export function textWidth(text: string, scale = 1): number {
  return Math.max(0, text.length * GLYPH_W * scale - scale);
}

export class Canvas {
  readonly data: Uint8Array;

  constructor(
    readonly width: number,
    readonly height: number,
    background: Rgb = COLORS.white,
  ) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
      throw new Error(`canvas size must be positive integers, got ${width}x${height}`);
    }
    this.data = new Uint8Array(width * height * 4);
    this.fillRect(0, 0, width, height, background);
  }

  setPixel(x: number, y: number, color: Rgb, alpha = 1): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const i = (y * this.width + x) * 4;
    if (alpha >= 1) {
      this.data[i] = color[0];
      this.data[i + 1] = color[1];
      this.data[i + 2] = color[2];
    } else if (alpha > 0) {
      for (let c = 0; c < 3; c++) this.data[i + c] = Math.round(this.data[i + c]! * (1 - alpha) + color[c]! * alpha);
    }
    this.data[i + 3] = 255;
  }

  fillRect(x: number, y: number, w: number, h: number, color: Rgb, alpha = 1): void {
    const x0 = Math.max(0, Math.round(x));
    const y0 = Math.max(0, Math.round(y));
    const x1 = Math.min(this.width, Math.round(x + w));
    const y1 = Math.min(this.height, Math.round(y + h));
    for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) this.setPixel(xx, yy, color, alpha);
  }

  strokeRect(x: number, y: number, w: number, h: number, color: Rgb): void {
    this.line(x, y, x + w - 1, y, color);
    this.line(x, y + h - 1, x + w - 1, y + h - 1, color);
    this.line(x, y, x, y + h - 1, color);
    this.line(x + w - 1, y, x + w - 1, y + h - 1, color);
  }

  /** A line `thickness` pixels wide (square brush), by stepping along the longer axis. */
  line(x0: number, y0: number, x1: number, y1: number, color: Rgb, thickness = 1): void {
    const steps = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
    const half = Math.floor((thickness - 1) / 2);
    for (let s = 0; s <= steps; s++) {
      const x = Math.round(x0 + ((x1 - x0) * s) / steps);
      const y = Math.round(y0 + ((y1 - y0) * s) / steps);
      if (thickness <= 1) this.setPixel(x, y, color);
      else this.fillRect(x - half, y - half, thickness, thickness, color);
    }
  }

  /** Left-aligned text with its top-left corner at (x, y). */
  text(x: number, y: number, text: string, color: Rgb = COLORS.black, scale = 1): void {
    let cx = Math.round(x);
    for (const raw of text) {
      const bits = GLYPH_BITS.get(raw) ?? GLYPH_BITS.get(raw.toUpperCase()) ?? GLYPH_BITS.get('?')!;
      bits.forEach((row, r) => row.forEach((on, c) => on && this.fillRect(cx + c * scale, y + r * scale, scale, scale, color)));
      cx += GLYPH_W * scale;
    }
  }

  /** Text centred horizontally on `cx`. */
  textCentered(cx: number, y: number, text: string, color: Rgb = COLORS.black, scale = 1): void {
    this.text(Math.round(cx - textWidth(text, scale) / 2), y, text, color, scale);
  }

  /** Text rotated 90 degrees counter-clockwise (reads bottom to top), centred vertically on `cy`. */
  textVertical(x: number, cy: number, text: string, color: Rgb = COLORS.black, scale = 1): void {
    let y = Math.round(cy + textWidth(text, scale) / 2);
    for (const raw of text) {
      const bits = GLYPH_BITS.get(raw) ?? GLYPH_BITS.get(raw.toUpperCase()) ?? GLYPH_BITS.get('?')!;
      // glyph column c goes up from y; glyph row r goes right from x
      bits.forEach((row, r) => row.forEach((on, c) => on && this.fillRect(x + r * scale, y - (c + 1) * scale, scale, scale, color)));
      y -= GLYPH_W * scale;
    }
  }

  /**
   * Draw a grayscale image (values in [0,1], row-major h x w) at (x, y), each pixel a `scale` x `scale` block.
   * With `tint`, the image is drawn as that colour with the pixel value as opacity over what is there.
   */
  image(x: number, y: number, pixels: ArrayLike<number>, w: number, h: number, scale = 1, tint?: Rgb): void {
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        const v = Math.min(1, Math.max(0, pixels[r * w + c]!));
        if (tint) {
          if (v > 0) this.fillRect(x + c * scale, y + r * scale, scale, scale, tint, v);
        } else {
          const g = Math.round(v * 255);
          this.fillRect(x + c * scale, y + r * scale, scale, scale, [g, g, g]);
        }
      }
    }
  }

  toPng(): Buffer {
    const png = encodePngFile({
      width: this.width,
      height: this.height,
      data: new Uint8Array(this.data.buffer, this.data.byteOffset, this.data.byteLength),
      channels: 4,
      depth: 8,
    });
    return Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  }

  save(path: string): void {
    writeFileSync(path, this.toPng());
  }
}

/** Decode a PNG file's bytes: width, height, and RGBA data (for tests and the report). */
export function readPng(bytes: Buffer): { width: number; height: number; data: Uint8Array } {
  // The core's decoder: RGBA whatever the file's colour type.
  const png = decodeImage(bytes);
  return { width: png.width, height: png.height, data: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.byteLength) };
}

/** Number of distinct RGB colours in an RGBA buffer (capped): a blank figure has one. */
export function distinctColors(data: Uint8Array, cap = 1024): number {
  const seen = new Set<number>();
  for (let i = 0; i < data.length && seen.size < cap; i += 4) seen.add((data[i]! << 16) | (data[i + 1]! << 8) | data[i + 2]!);
  return seen.size;
}
