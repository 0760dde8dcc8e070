/**
 * Issue 20, item 7: images as people see them. The one image pipeline (core/decode.ts) turns a JPEG (APP1 EXIF)
 * or PNG (eXIf) upright by its EXIF orientation, so the CLI, the server, the runtime's decodeImage and the page
 * (which imports the runtime's bundle) all read a sideways phone photo the right way up. The sweep: the same
 * digit photos scored 10/10 upright and 1/10, 2/10, 2/10 with Orientation 6, 3 and 8.
 *
 * Each photo here is the jpeg-js encoder's output with an APP1 segment holding one Orientation tag inserted;
 * what it must decode to is computed by rotating and mirroring in plain JS.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import jpeg from 'jpeg-js';
import { encode as encodePng } from 'fast-png';
import { applyOrientation, decodeImage, readExifOrientation, type ExifOrientation, type RgbaImage } from '@capsnet-onnx/core';
import { decodeImage as runtimeDecodeImage } from '@capsnet-onnx/runtime/node';
import { createServer } from '../../../packages/capsnet/src/serve/server.ts';
import { FakeClassifier } from '../../support/serve.ts';

const ORIENTATIONS = [1, 2, 3, 4, 5, 6, 7, 8] as const;

/** Turned 90 degrees clockwise. */
function rotate(image: RgbaImage): RgbaImage {
  const { width: w, height: h } = image;
  const out = new Uint8ClampedArray(image.data.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      // (x, y) goes to (h - 1 - y, x) in a picture h wide and w high.
      out.set(image.data.subarray(4 * (y * w + x), 4 * (y * w + x) + 4), 4 * (x * h + (h - 1 - y)));
    }
  }
  return { data: out, width: h, height: w };
}

/** Mirrored left to right. */
function mirror(image: RgbaImage): RgbaImage {
  const { width: w, height: h } = image;
  const out = new Uint8ClampedArray(image.data.length);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out.set(image.data.subarray(4 * (y * w + x), 4 * (y * w + x) + 4), 4 * (y * w + (w - 1 - x)));
  return { data: out, width: w, height: h };
}

/** What a viewer shows for stored pixels under each orientation (the EXIF 2.3 table, as exiftool words it). */
const SHOW: Record<ExifOrientation, (s: RgbaImage) => RgbaImage> = {
  1: (s) => s,
  2: (s) => mirror(s), // mirror horizontal
  3: (s) => rotate(rotate(s)), // rotate 180
  4: (s) => rotate(rotate(mirror(s))), // mirror vertical
  5: (s) => rotate(rotate(rotate(mirror(s)))), // mirror horizontal and rotate 270 CW
  6: (s) => rotate(s), // rotate 90 CW
  7: (s) => rotate(mirror(s)), // mirror horizontal and rotate 90 CW
  8: (s) => rotate(rotate(rotate(s))), // rotate 270 CW
};
/** The stored pixels that show as `upright`: every SHOW has order 1, 2 or 4, so SHOW^3 is its inverse. */
const store = (upright: RgbaImage, o: ExifOrientation) => SHOW[o](SHOW[o](SHOW[o](upright)));

/** An upright "digit": a thick 7 (a bar at the top, a stroke down the right side), 20 wide and 32 high. */
function seven(): RgbaImage {
  const width = 20;
  const height = 32;
  const data = new Uint8ClampedArray(width * height * 4).fill(255);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const ink = (y >= 3 && y < 8 && x >= 3 && x < 17) || (x >= 12 && x < 17 && y >= 3 && y < 29);
      if (ink) data.fill(0, 4 * (y * width + x), 4 * (y * width + x) + 3);
    }
  }
  return { data, width, height };
}

/** The APP1 segment of an EXIF block whose IFD0 holds only Orientation (TIFF big- or little-endian). */
function app1(orientation: number, little = false): Uint8Array {
  const tiff = new DataView(new ArrayBuffer(26));
  tiff.setUint16(0, little ? 0x4949 : 0x4d4d);
  tiff.setUint16(2, 42, little);
  tiff.setUint32(4, 8, little); // IFD0 right after the header
  tiff.setUint16(8, 1, little); // one entry
  tiff.setUint16(10, 0x0112, little); // Orientation
  tiff.setUint16(12, 3, little); // SHORT
  tiff.setUint32(14, 1, little); // one value
  tiff.setUint16(18, orientation, little); // stored in the entry
  tiff.setUint32(22, 0, little); // no next IFD
  const body = [...new TextEncoder().encode('Exif'), 0, 0, ...new Uint8Array(tiff.buffer)];
  const length = body.length + 2;
  return Uint8Array.from([0xff, 0xe1, length >> 8, length & 0xff, ...body]);
}

/** The jpeg-js file with the APP1 segment inserted right after SOI. */
function withExif(file: Uint8Array, orientation: number, little = false): Uint8Array {
  return Uint8Array.from([...file.subarray(0, 2), ...app1(orientation, little), ...file.subarray(2)]);
}

const encodeJpeg = (image: RgbaImage) => new Uint8Array(jpeg.encode({ data: Buffer.from(image.data), width: image.width, height: image.height }, 100).data);

function meanAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

describe('EXIF orientation in the one image pipeline', () => {
  test('a JPEG in each of the 8 orientations decodes to what a viewer shows (rotated and mirrored in JS)', () => {
    const upright = seven();
    for (const o of ORIENTATIONS) {
      const stored = encodeJpeg(store(upright, o));
      const plain = decodeImage(stored); // no EXIF: the stored pixels
      for (const little of [false, true]) {
        const file = withExif(stored, o, little);
        assert.equal(readExifOrientation(file), o);
        const decoded = decodeImage(file, undefined, `orientation ${o}`);
        const expected = SHOW[o](plain);
        assert.equal(decoded.width, expected.width, `orientation ${o}`);
        assert.equal(decoded.height, expected.height, `orientation ${o}`);
        assert.deepEqual(decoded.data, expected.data, `orientation ${o} (${little ? 'II' : 'MM'})`);
        // ... which is the upright picture again, up to JPEG's loss.
        assert.equal(decoded.width, upright.width);
        assert.ok(meanAbs(decoded.data, upright.data) < 4, `orientation ${o}: ${meanAbs(decoded.data, upright.data)}`);
      }
      // applyOrientation is the decoder's step, exported for pictures decoded elsewhere.
      assert.deepEqual(applyOrientation(plain, o).data, SHOW[o](plain).data);
    }
  });

  test('a PNG eXIf chunk is honoured too; a missing, foreign or broken orientation reads as 1', () => {
    const upright = seven();
    const stored = store(upright, 6);
    const png = encodePng({ width: stored.width, height: stored.height, data: new Uint8Array(stored.data), channels: 4, depth: 8 });
    const exif = app1(6).subarray(10); // the TIFF part
    const chunk = new Uint8Array(12 + exif.length);
    const view = new DataView(chunk.buffer);
    view.setUint32(0, exif.length);
    chunk.set(new TextEncoder().encode('eXIf'), 4);
    chunk.set(exif, 8); // the CRC is left zero: decoders (fast-png included) do not check it by default
    const file = Uint8Array.from([...png.subarray(0, 33), ...chunk, ...png.subarray(33)]); // after the signature and IHDR
    assert.equal(readExifOrientation(file), 6);
    assert.deepEqual(decodeImage(file).data, upright.data);
    const plainJpeg = encodeJpeg(upright);
    assert.equal(readExifOrientation(plainJpeg), 1);
    assert.equal(readExifOrientation(withExif(plainJpeg, 9)), 1);
    const broken = withExif(plainJpeg, 6);
    broken[6 + 6] = 0x58; // "XX" instead of "MM"
    assert.equal(readExifOrientation(broken), 1);
  });

  test("the runtime's decodeImage, and the server's uploads, read a sideways photo upright", async () => {
    const upright = seven();
    const reference = decodeImage(encodeJpeg(upright));
    assert.ok(meanAbs(runtimeDecodeImage(withExif(encodeJpeg(store(upright, 8)), 8)).data, reference.data) < 4);
    // The fake classifier's reconstruction is the prepared input: what the model would have seen.
    const server = await createServer({ classifier: new FakeClassifier() });
    const base = await server.listen(0, '127.0.0.1');
    try {
      const seen = async (file: Uint8Array) => {
        const r = await fetch(`${base}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(file) });
        assert.equal(r.status, 200);
        return Float32Array.from((await r.json()).results[0].reconstruction as number[]);
      };
      const want = await seen(encodeJpeg(upright));
      for (const o of [3, 6, 8] as const) {
        const stored = encodeJpeg(store(upright, o));
        const got = await seen(withExif(stored, o));
        const ignored = await seen(stored);
        const off = meanAbs(got, want);
        const away = meanAbs(ignored, want);
        // JPEG's loss differs between the stored and the upright encodings: close, not equal; far without the tag.
        assert.ok(off < 0.05, `orientation ${o}: the model sees an image ${off.toFixed(3)} away from the upright one`);
        assert.ok(away > 3 * off, `orientation ${o}: with the tag ${off.toFixed(3)} away, without it ${away.toFixed(3)}`);
      }
    } finally {
      await server.close();
    }
  });
});
