/**
 * The one image pipeline (@capsnet-onnx/core decode.ts, image.ts): every PNG colour type and bit depth, palette,
 * tRNS and Adam7 interlacing; baseline and progressive JPEG (test/fixtures: a baseline file and the lossless
 * `jpegtran -progressive` transcode of it); size limits read from every header before decoding; alpha onto the
 * implied ground; polarity; MNIST's normalisation; blanks. Then the runtime's use of it: ImageData-like inputs,
 * model bytes as ArrayBuffer, the preprocessing and presence threshold in metadata, and "no digit".
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  DEFAULT_IMAGE_LIMITS,
  ImageError,
  METADATA_KEYS,
  decodeImage,
  defaultPreprocessing,
  hasInk,
  prepareImage,
  readImageHeader,
  readModelMetadata,
  type Preprocessing,
  type RgbaImage,
} from '@capsnet-onnx/core';
import { CapsNet } from '@capsnet-onnx/runtime/node';
import { encode as encodePng } from 'fast-png';
import { ROOT } from '../../support/fixtures.ts';
import { TINY_CONFIG, tinyModel } from '../../support/tiny-model.ts';

const MNIST: Preprocessing = { method: 'mnist', polarity: 'light-on-dark' };
const SHAPE = { height: 28, width: 28, channels: 1 };

/** 12 wide, 10 high: a dark vertical stroke (x 5-6, y 2-7) on a light ground, as 0-255 gray. */
const W = 12;
const H = 10;
const GRAY = Uint8Array.from({ length: W * H }, (_, p) => (p % W >= 5 && p % W <= 6 && p / W >= 2 && p / W < 8 ? 0 : 255));

/** Pack 0..(2^depth - 1) samples into PNG rows of `depth` bits. */
function pack(samples: ArrayLike<number>, width: number, height: number, depth: number): Uint8Array {
  const rowBytes = Math.ceil((width * depth) / 8);
  const out = new Uint8Array(rowBytes * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const bit = x * depth;
      out[y * rowBytes + (bit >> 3)]! |= samples[y * width + x]! << (8 - depth - (bit & 7));
    }
  }
  return out;
}

const grayAt = (image: RgbaImage, p: number) => image.data[4 * p]!;

describe('decoding', () => {
  test('PNG: every colour type and bit depth, palette with tRNS, Adam7, gives the same RGBA', () => {
    const files: Array<[string, Uint8Array]> = [];
    for (const depth of [1, 2, 4, 8] as const) {
      const max = 2 ** depth - 1;
      const samples = Array.from(GRAY, (v) => (v ? max : 0));
      files.push([
        `gray ${depth}-bit`,
        encodePng({ width: W, height: H, channels: 1, depth, data: depth === 8 ? Uint8Array.from(samples) : pack(samples, W, H, depth) }),
      ]);
    }
    files.push(['gray 16-bit', encodePng({ width: W, height: H, channels: 1, depth: 16, data: Uint16Array.from(GRAY, (v) => v * 257) })]);
    files.push([
      'gray+alpha 8-bit',
      encodePng({ width: W, height: H, channels: 2, depth: 8, data: Uint8Array.from({ length: 2 * W * H }, (_, i) => (i % 2 ? 255 : GRAY[i >> 1]!)) }),
    ]);
    files.push([
      'RGB 8-bit',
      encodePng({ width: W, height: H, channels: 3, depth: 8, data: Uint8Array.from({ length: 3 * W * H }, (_, i) => GRAY[Math.floor(i / 3)]!) }),
    ]);
    files.push([
      'RGB 16-bit',
      encodePng({ width: W, height: H, channels: 3, depth: 16, data: Uint16Array.from({ length: 3 * W * H }, (_, i) => GRAY[Math.floor(i / 3)]! * 257) }),
    ]);
    files.push([
      'RGBA 16-bit',
      encodePng({
        width: W,
        height: H,
        channels: 4,
        depth: 16,
        data: Uint16Array.from({ length: 4 * W * H }, (_, i) => (i % 4 === 3 ? 65535 : GRAY[i >> 2]! * 257)),
      }),
    ]);
    files.push([
      'RGBA 8-bit Adam7',
      encodePng(
        { width: W, height: H, channels: 4, depth: 8, data: Uint8Array.from({ length: 4 * W * H }, (_, i) => (i % 4 === 3 ? 255 : GRAY[i >> 2]!)) },
        { interlace: 'Adam7' },
      ),
    ]);
    for (const depth of [1, 4, 8] as const) {
      const indices = Array.from(GRAY, (v) => (v ? 1 : 0));
      files.push([
        `palette ${depth}-bit`,
        encodePng({
          width: W,
          height: H,
          channels: 1,
          depth,
          palette: [
            [0, 0, 0],
            [255, 255, 255],
          ],
          data: depth === 8 ? Uint8Array.from(indices) : pack(indices, W, H, depth),
        }),
      ]);
    }
    for (const [name, bytes] of files) {
      const image = decodeImage(bytes, DEFAULT_IMAGE_LIMITS, name);
      assert.deepEqual([image.width, image.height], [W, H], name);
      for (let p = 0; p < W * H; p++) {
        assert.equal(grayAt(image, p), GRAY[p], `${name}: pixel ${p}`);
        assert.equal(image.data[4 * p + 3], 255, `${name}: alpha ${p}`);
      }
    }
    // Palette transparency (tRNS): the white entry fully transparent (first: fast-png's encoder writes only the
    // alphas below 255, in order, so a transparent entry must lead).
    const indexed = encodePng({
      width: W,
      height: H,
      channels: 1,
      depth: 8,
      palette: [
        [255, 255, 255, 0],
        [0, 0, 0, 255],
      ],
      data: Uint8Array.from(GRAY, (v) => (v ? 0 : 1)),
    });
    const withAlpha = decodeImage(indexed);
    assert.deepEqual([withAlpha.data[3], withAlpha.data[4 * (2 * W + 5) + 3]], [0, 255]);
  });

  test('JPEG: baseline and progressive decode to the same pixels', () => {
    const baseline = decodeImage(readFileSync(join(ROOT, 'test/fixtures/digit-baseline.jpg')));
    const progressive = decodeImage(readFileSync(join(ROOT, 'test/fixtures/digit-progressive.jpg')));
    assert.deepEqual([progressive.width, progressive.height], [40, 32]);
    let worst = 0;
    for (let i = 0; i < baseline.data.length; i++) worst = Math.max(worst, Math.abs(baseline.data[i]! - progressive.data[i]!));
    assert.ok(worst <= 2, `progressive differs from baseline by ${worst}`);
    const prepared = [baseline, progressive].map((image) => prepareImage(image, SHAPE, MNIST).pixels);
    assert.ok(prepared.every((p) => hasInk(p)));
  });

  test('sizes are checked from every header before any pixel is decoded: IHDR, a second IHDR, JPEG SOF', () => {
    const png = encodePng({ width: W, height: H, channels: 1, depth: 8, data: GRAY });
    const limits = { maxSide: 64, maxPixels: 64 * 64 };
    assert.deepEqual(readImageHeader(png, limits), { format: 'png', width: W, height: H });
    const huge = png.slice();
    new DataView(huge.buffer).setUint32(16, 1_000_000); // IHDR width; the CRC is stale, so a decoder would fail later
    assert.throws(
      () => decodeImage(huge, limits),
      (e: Error) => e instanceof ImageError && e.code === 'TOO_LARGE' && /1000000x10/.test(e.message),
    );
    // A second IHDR (claiming a huge size) after the first: read, and refused.
    const ihdr = png.subarray(8, 8 + 25).slice();
    new DataView(ihdr.buffer).setUint32(8, 100_000);
    const twice = new Uint8Array(png.length + 25);
    twice.set(png.subarray(0, 33));
    twice.set(ihdr, 33);
    twice.set(png.subarray(33), 58);
    assert.throws(
      () => decodeImage(twice, limits),
      (e: Error) => e instanceof ImageError && e.code === 'TOO_LARGE' && /IHDR chunk number 2/.test(e.message),
    );
    new DataView(twice.buffer).setUint32(33 + 8, W);
    assert.throws(() => decodeImage(twice, limits), /2 IHDR chunks; a PNG has exactly one/);
    const jpg = readFileSync(join(ROOT, 'test/fixtures/digit-progressive.jpg'));
    assert.deepEqual(readImageHeader(jpg, limits), { format: 'jpeg', width: 40, height: 32 });
    assert.throws(() => decodeImage(jpg, { maxSide: 36, maxPixels: 10_000 }), /40x32 \(JPEG frame header\); the limit is 36 px/);
    assert.throws(
      () => decodeImage(new TextEncoder().encode('GIF89a')),
      (e: Error) => e instanceof ImageError && e.code === 'NOT_AN_IMAGE',
    );
    assert.throws(
      () => decodeImage(png.subarray(0, 40)),
      (e: Error) => e instanceof ImageError && e.code === 'BAD_IMAGE',
    );
    // Cut inside its data, a file is called truncated, not "Offset is outside the bounds of the DataView".
    for (const [cut, format] of [
      [png.subarray(0, png.length - 20), 'PNG'],
      [jpg.subarray(0, jpg.length / 2), 'JPEG'],
    ] as const) {
      assert.throws(
        () => decodeImage(cut),
        (e: Error) => {
          assert.ok(e instanceof ImageError && e.code === 'BAD_IMAGE', String(e));
          assert.match(e.message, new RegExp(`cannot decode the ${format}`));
          assert.doesNotMatch(e.message, /DataView|Offset|index out of range/i);
          return true;
        },
      );
    }
  });
});

describe('preparing', () => {
  /** A w x h RGBA picture of a stroke (x0..x0+sw, y0..y0+sh) in `ink` on `ground`. */
  function picture(w: number, h: number, stroke: [number, number, number, number], ink: number[], ground: number[]): RgbaImage {
    const data = new Uint8ClampedArray(w * h * 4);
    const [x0, y0, sw, sh] = stroke;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set(x >= x0 && x < x0 + sw && y >= y0 && y < y0 + sh ? ink : ground, 4 * (y * w + x));
    return { data, width: w, height: h };
  }

  test("MNIST's normalisation: the ink's longer side becomes 20 px, aspect kept, centre of mass at the centre", () => {
    const tall = prepareImage(picture(200, 150, [20, 10, 10, 60], [255, 255, 255, 255], [0, 0, 0, 255]), SHAPE, MNIST);
    const rows = new Set<number>();
    const cols = new Set<number>();
    let mass = 0;
    let mx = 0;
    let my = 0;
    tall.pixels.forEach((v, i) => {
      if (v <= 0.01) return;
      rows.add(Math.floor(i / 28));
      cols.add(i % 28);
      mass += v;
      mx += v * ((i % 28) + 0.5);
      my += v * (Math.floor(i / 28) + 0.5);
    });
    assert.equal(rows.size, 20);
    assert.ok(cols.size >= 3 && cols.size <= 4, `${cols.size} columns for a 10x60 stroke scaled to 20 px tall`);
    assert.ok(Math.abs(mx / mass - 14) <= 1 && Math.abs(my / mass - 14) <= 1, `centre of mass ${mx / mass}, ${my / mass}`);
    assert.equal(tall.inverted, false);
  });

  test('the same digit as white-on-black, black-on-white, dark strokes on a transparent canvas: one input', () => {
    const stroke: [number, number, number, number] = [30, 20, 12, 50];
    const light = prepareImage(picture(100, 90, stroke, [255, 255, 255, 255], [0, 0, 0, 255]), SHAPE, MNIST);
    const paper = prepareImage(picture(100, 90, stroke, [0, 0, 0, 255], [255, 255, 255, 255]), SHAPE, MNIST);
    const canvas = prepareImage(picture(100, 90, stroke, [0, 0, 0, 255], [0, 0, 0, 0]), SHAPE, MNIST);
    const lightCanvas = prepareImage(picture(100, 90, stroke, [255, 255, 255, 255], [0, 0, 0, 0]), SHAPE, MNIST);
    assert.equal(paper.inverted, true);
    assert.equal(canvas.inverted, true, 'dark strokes on a transparent canvas are dark ink on light paper');
    assert.equal(lightCanvas.inverted, false);
    for (const other of [paper, canvas, lightCanvas]) assert.deepEqual(Array.from(other.pixels), Array.from(light.pixels));
    // The override: told the paper is light-on-dark, the white sheet is the "ink" and fills the box.
    const forced = prepareImage(picture(100, 90, stroke, [0, 0, 0, 255], [255, 255, 255, 255]), SHAPE, MNIST, { polarity: 'light-on-dark' });
    assert.notDeepEqual(Array.from(forced.pixels), Array.from(light.pixels));
    assert.throws(
      () => prepareImage(picture(4, 4, [0, 0, 1, 1], [0, 0, 0, 255], [255, 255, 255, 255]), SHAPE, MNIST, { polarity: 'invert' as never }),
      /polarity must be auto, light-on-dark, dark-on-light/,
    );
  });

  test('blank pictures have no ink: a cleared canvas, a white sheet, a faint smudge', () => {
    for (const blank of [
      picture(50, 50, [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]),
      picture(50, 50, [0, 0, 0, 0], [0, 0, 0, 0], [255, 255, 255, 255]),
      picture(50, 50, [10, 10, 5, 5], [240, 240, 240, 255], [250, 250, 250, 255]),
    ]) {
      const prepared = prepareImage(blank, SHAPE, MNIST);
      assert.equal(prepared.ink, false);
      assert.ok(prepared.pixels.every((v) => v === 0));
    }
  });

  test('plain resize for other data; colour is kept for colour models and never inverted', () => {
    const resize: Preprocessing = { method: 'resize', polarity: 'any' };
    const image = picture(56, 56, [0, 0, 28, 56], [255, 0, 0, 255], [0, 0, 255, 255]);
    const rgb = prepareImage(image, { height: 28, width: 28, channels: 3 }, resize).pixels;
    assert.deepEqual(Array.from(rgb.subarray(0, 3)), [1, 0, 0]);
    assert.deepEqual(Array.from(rgb.subarray(3 * 27, 3 * 28)), [0, 0, 1]);
    assert.deepEqual(defaultPreprocessing('fashion-mnist', SHAPE), { method: 'resize', polarity: 'light-on-dark' });
    assert.deepEqual(defaultPreprocessing('mnist-sample', SHAPE), MNIST);
    assert.deepEqual(defaultPreprocessing('cifar', { height: 32, width: 32, channels: 3 }), resize);
  });
});

describe('the runtime and the pipeline', () => {
  test('metadata records the preprocessing and the presence threshold; files without them get the defaults', () => {
    const tiny = tinyModel();
    const m = readModelMetadata(tiny.model);
    // The tiny model's data set ("tiny-random", 12x10) is no MNIST: a plain resize, light-on-dark for one channel.
    assert.deepEqual(m.preprocessing, { method: 'resize', polarity: 'light-on-dark' });
    assert.equal(m.preprocessingRecorded, true);
    assert.equal(m.presenceThreshold, TINY_CONFIG.mMinus);
    const old = readModelMetadata(tinyModel({ [METADATA_KEYS.preprocessing]: undefined, [METADATA_KEYS.presenceThreshold]: undefined }).model);
    assert.deepEqual(old.preprocessing, m.preprocessing);
    assert.equal(old.preprocessingRecorded, false);
    assert.equal(old.presenceThreshold, 0.1);
    const digits = readModelMetadata(tinyModel({ [METADATA_KEYS.preprocessing]: JSON.stringify(MNIST), [METADATA_KEYS.presenceThreshold]: '0.25' }).model);
    assert.deepEqual([digits.preprocessing, digits.presenceThreshold], [MNIST, 0.25]);
    assert.throws(() => readModelMetadata(tinyModel({ [METADATA_KEYS.preprocessing]: '{"method":"blur"}' }).model), /must be \{"method": "mnist"\|"resize"/);
  });

  test('ImageData-like inputs run the pipeline; model bytes as ArrayBuffer or Buffer; blanks and weak capsules are "no digit"', async () => {
    const tiny = tinyModel({ [METADATA_KEYS.preprocessing]: JSON.stringify(MNIST) });
    const buffer = tiny.model.buffer.slice(tiny.model.byteOffset, tiny.model.byteOffset + tiny.model.byteLength) as ArrayBuffer;
    const model = await CapsNet.load(buffer, { device: 'cpu', decoder: Buffer.from(tiny.decoder) });
    try {
      const shape = { height: TINY_CONFIG.inputHeight, width: TINY_CONFIG.inputWidth, channels: 1 };
      const canvas = { data: new Uint8ClampedArray(60 * 50 * 4), width: 60, height: 50 };
      for (let y = 10; y < 40; y++) for (let x = 20; x < 27; x++) canvas.data.set([0, 0, 0, 255], 4 * (y * 60 + x));
      const prepared = prepareImage(canvas, shape, MNIST).pixels;
      const [viaPicture, viaPrepared] = [(await model.classify(canvas))[0]!, (await model.classify(prepared))[0]!];
      assert.deepEqual(Array.from(viaPicture.lengths), Array.from(viaPrepared.lengths));
      assert.equal((await model.classify([canvas, canvas])).length, 2);
      const [blank] = await model.classify({ data: new Uint8ClampedArray(60 * 50 * 4), width: 60, height: 50 });
      assert.equal(blank!.label, null);
      assert.equal(blank!.labelName, null);
      assert.equal(blank!.reason, 'no ink: the image is blank');
      const [strict] = await model.classify(canvas, { presenceThreshold: 0.999 });
      assert.equal(strict!.label, null);
      assert.match(strict!.reason!, /below the presence threshold 0.999/);
      const [lenient] = await model.classify(canvas, { presenceThreshold: 0 });
      assert.equal(lenient!.label, lenient!.longest);
      await assert.rejects(
        CapsNet.load({ bytes: 1 } as never),
        /the model must be a path or URL string, its bytes \(Uint8Array, ArrayBuffer, Buffer\) or \{ model, decoder \}.*; got Object/,
      );
    } finally {
      await model.dispose();
    }
  });
});
