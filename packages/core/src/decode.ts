/**
 * Image files to RGBA pixels, in Node and the browser alike: PNG through fast-png (every colour type and bit
 * depth, palette, tRNS, Adam7 interlacing; pure JS over fflate) and JPEG through jpeg-js (baseline and
 * progressive; pure JS, loaded on first use: jpeg.ts). Before either decoder sees a byte of pixel data, every header the file carries (each
 * PNG IHDR, each JPEG SOFn frame header) is read here and checked against `ImageLimits`, so a small file that
 * claims a huge image is refused without allocating for it, and a second IHDR cannot smuggle in other sizes.
 * A PNG's compressed pixel data (its IDAT chunks) is then inflated in small steps against the exact size its IHDR
 * allows, and refused as soon as it goes past it: a small file whose IDAT inflates to 100 MB under a 28x28
 * header (an inflation bomb) costs about a millisecond, not seconds and the memory of the whole stream.
 */
import { convertIndexedToRgb, decode as decodePngFile } from 'fast-png';
import { Unzlib } from 'fflate';
import { TRUNCATED, decoderProblem, jpegToRgba } from './jpeg.ts';
import type { RgbaImage } from './image-source.ts';

/** Sizes accepted before decoding. The defaults cover a 12 MP phone photo; raise them per call if needed. */
export interface ImageLimits {
  /** Longest side in pixels (default 8192). */
  maxSide: number;
  /** Width x height (default 4096 x 4096 = 16.8 MP: 67 MB of RGBA once decoded). */
  maxPixels: number;
}

export const DEFAULT_IMAGE_LIMITS: Readonly<ImageLimits> = Object.freeze({ maxSide: 8192, maxPixels: 4096 * 4096 });

export type ImageErrorCode = 'NOT_AN_IMAGE' | 'BAD_IMAGE' | 'TOO_LARGE';

/** A file that is not a supported image, is corrupt, or is larger than the limits; the message names the fix. */
export class ImageError extends Error {
  override name = 'ImageError';
  constructor(
    readonly code: ImageErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type ImageFormat = 'png' | 'jpeg';

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function imageFormat(bytes: Uint8Array): ImageFormat | null {
  if (bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return null;
}

function checkSize(width: number, height: number, limits: ImageLimits, what: string, where: string): void {
  if (width < 1 || height < 1) throw new ImageError('BAD_IMAGE', `${what}: its ${where} says ${width}x${height} pixels: the file is corrupt`);
  if (width > limits.maxSide || height > limits.maxSide || width * height > limits.maxPixels) {
    throw new ImageError(
      'TOO_LARGE',
      `${what} is ${width}x${height} (${where}); the limit is ${limits.maxSide} px a side and ${(limits.maxPixels / 1e6).toFixed(1)} MP: ` +
        'scale it down before classifying (a digit needs no more than a few hundred pixels a side)',
    );
  }
}

interface PngLayout {
  width: number;
  height: number;
  /** IHDR's bit depth, colour type and interlace method. */
  depth: number;
  colorType: number;
  interlace: number;
  /** [start, end) of each IDAT chunk's data, in file order. */
  idat: [number, number][];
  /** [start, end) of the eXIf chunk's data (TIFF-structured EXIF), if any. */
  exif?: [number, number];
}

/** Every IHDR of a PNG, checked; returns the (single) size, the sample layout and where the IDAT data lies. */
function pngHeader(bytes: Uint8Array, limits: ImageLimits, what: string): PngLayout {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8;
  let size: PngLayout | null = null;
  let headers = 0;
  const idat: [number, number][] = [];
  while (pos + 8 <= bytes.length) {
    const length = view.getUint32(pos);
    const type = String.fromCharCode(bytes[pos + 4]!, bytes[pos + 5]!, bytes[pos + 6]!, bytes[pos + 7]!);
    if (pos + 12 + length > bytes.length) break; // a truncated chunk: the decoder reports it
    if (type === 'IHDR') {
      if (length < 8) throw new ImageError('BAD_IMAGE', `${what}: its IHDR chunk is ${length} bytes, too short: the PNG is corrupt`);
      headers++;
      const width = view.getUint32(pos + 8);
      const height = view.getUint32(pos + 12);
      checkSize(width, height, limits, what, headers === 1 ? 'PNG header' : `IHDR chunk number ${headers}`);
      if (headers === 1 && pos !== 8) throw new ImageError('BAD_IMAGE', `${what}: IHDR is not the first chunk: the PNG is corrupt`);
      if (headers > 1) throw new ImageError('BAD_IMAGE', `${what} has ${headers} IHDR chunks; a PNG has exactly one: the file is corrupt or crafted`);
      size = { width, height, depth: bytes[pos + 16]!, colorType: bytes[pos + 17]!, interlace: bytes[pos + 20] ?? 0, idat };
    }
    if (type === 'IDAT') idat.push([pos + 8, pos + 8 + length]);
    if (type === 'eXIf' && size && !size.exif) size.exif = [pos + 8, pos + 8 + length];
    if (type === 'IEND') break;
    pos += 12 + length;
  }
  if (!size) throw new ImageError('BAD_IMAGE', `${what}: no IHDR chunk: the PNG is truncated or corrupt`);
  return size;
}

/** Samples per pixel of each PNG colour type (gray, -, RGB, palette, gray+alpha, -, RGBA). */
const PNG_CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
/** Adam7's seven passes: [x start, y start, x step, y step]. */
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

/**
 * The exact number of bytes a PNG's IDAT stream inflates to under its IHDR: one filter byte per row plus the
 * row's packed samples, for the whole image or for each of Adam7's passes. Null for an IHDR the decoder will
 * refuse anyway (unknown colour type, bit depth or interlace method).
 */
export function pngInflatedSize(width: number, height: number, depth: number, colorType: number, interlace: number): number | null {
  const channels = PNG_CHANNELS[colorType];
  if (channels === undefined || ![1, 2, 4, 8, 16].includes(depth) || (interlace !== 0 && interlace !== 1)) return null;
  const rowBytes = (w: number) => Math.ceil((w * channels * depth) / 8);
  if (interlace === 0) return height * (1 + rowBytes(width));
  let total = 0;
  for (const [xs, ys, dx, dy] of ADAM7) {
    const w = width > xs ? Math.ceil((width - xs) / dx) : 0;
    const h = height > ys ? Math.ceil((height - ys) / dy) : 0;
    if (w > 0 && h > 0) total += h * (1 + rowBytes(w));
  }
  return total;
}

/** Deflate's largest expansion (a 258-byte match in about 2 bits): n input bytes inflate to at most ~1032 n. */
const DEFLATE_MAX_RATIO = 1032;
/** Fewest input bytes given to the inflater at a time: a step past the bound inflates at most ~66 KB. */
const MIN_INFLATE_STEP = 64;

/**
 * Inflate the IDAT stream in small steps and stop as soon as it holds more bytes than the IHDR allows. Throws
 * TOO_LARGE for an inflation bomb, BAD_IMAGE for a corrupt stream (the zlib message kept as the cause).
 */
function checkPngData(bytes: Uint8Array, layout: PngLayout, what: string): void {
  const limit = pngInflatedSize(layout.width, layout.height, layout.depth, layout.colorType, layout.interlace);
  if (limit === null) return; // fast-png names the bad IHDR field
  let inflated = 0;
  const inflater = new Unzlib((chunk) => {
    inflated += chunk.length;
  });
  const overflow = () =>
    new ImageError(
      'TOO_LARGE',
      `${what}: its pixel data inflates past the ${limit} bytes its ${layout.width}x${layout.height} header allows ` +
        `(stopped at ${inflated}): the file is corrupt or an inflation bomb; re-save it with an image editor`,
    );
  try {
    for (const [start, end] of layout.idat) {
      // Each step takes as much input as cannot inflate far past what is left of the bound.
      for (let at = start, step = 0; at < end; at += step) {
        step = Math.max(MIN_INFLATE_STEP, Math.floor((limit - inflated) / DEFLATE_MAX_RATIO));
        inflater.push(bytes.subarray(at, Math.min(end, at + step)), false);
        if (inflated > limit) throw overflow();
      }
    }
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(
      'BAD_IMAGE',
      `${what}: its compressed pixel data (IDAT) is not a valid zlib stream: the PNG is corrupt; re-save it with an image editor`,
      {
        cause: e,
      },
    );
  }
  try {
    inflater.push(new Uint8Array(0), true); // flush what the inflater holds back
  } catch {
    // A stream cut short: judged by the bytes it gave, next.
  }
  // Fewer bytes than every row needs: the file ends early. Said here, before fast-png, whose words for it depend on
  // whether the bytes are a view into a larger buffer (an upload) or a whole one (a file).
  if (inflated < limit) throw new ImageError('BAD_IMAGE', `${what}: cannot decode the PNG (${TRUNCATED}): the file is corrupt`);
}

/**
 * EXIF orientation (TIFF tag 0x0112): how the stored pixels are turned for display. 1 upright, 2 mirrored
 * left-right, 3 turned 180 degrees, 4 mirrored top-bottom, 5 transposed (mirrored, then turned 270 degrees
 * clockwise), 6 turned 90 degrees clockwise, 7 transversed (mirrored, then turned 90 degrees clockwise), 8 turned
 * 270 degrees clockwise. Phone cameras store photos sideways and set 6 or 8.
 */
export type ExifOrientation = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8;

/** The Orientation entry of a TIFF structure (EXIF's), 1 when absent or unreadable. */
function tiffOrientation(bytes: Uint8Array, start: number, end: number): ExifOrientation {
  if (end - start < 8) return 1;
  const little = bytes[start] === 0x49 && bytes[start + 1] === 0x49; // "II"; "MM" is big-endian
  if (!little && !(bytes[start] === 0x4d && bytes[start + 1] === 0x4d)) return 1;
  const view = new DataView(bytes.buffer, bytes.byteOffset + start, end - start);
  const u16 = (at: number) => view.getUint16(at, little);
  if (u16(2) !== 42) return 1;
  const ifd = view.getUint32(4, little);
  if (ifd + 2 > view.byteLength) return 1;
  const entries = u16(ifd);
  for (let k = 0; k < entries; k++) {
    const entry = ifd + 2 + 12 * k;
    if (entry + 12 > view.byteLength) break;
    if (u16(entry) === 0x0112) {
      const value = u16(entry + 2) === 3 ? u16(entry + 8) : 1; // type SHORT, value stored in the entry itself
      return value >= 1 && value <= 8 ? (value as ExifOrientation) : 1;
    }
  }
  return 1;
}

/** The first JPEG APP1 segment holding EXIF ("Exif\0\0" then a TIFF structure): its TIFF part. */
function jpegExif(bytes: Uint8Array): [number, number] | null {
  let pos = 2;
  while (pos + 4 <= bytes.length && bytes[pos] === 0xff) {
    const marker = bytes[pos + 1]!;
    if (marker === 0xda || marker === 0xd9) break; // start of scan, end of image: no metadata after these
    const length = (bytes[pos + 2]! << 8) | bytes[pos + 3]!;
    if (marker === 0xe1 && length >= 8 && String.fromCharCode(...bytes.subarray(pos + 4, pos + 10)) === 'Exif\0\0') {
      return [pos + 10, Math.min(bytes.length, pos + 2 + length)];
    }
    pos += 2 + length;
  }
  return null;
}

/** The EXIF orientation a PNG (eXIf chunk) or JPEG (APP1) file records; 1 when it records none. */
export function readExifOrientation(bytes: Uint8Array): ExifOrientation {
  try {
    const format = imageFormat(bytes);
    if (format === 'jpeg') {
      const exif = jpegExif(bytes);
      return exif ? tiffOrientation(bytes, exif[0], exif[1]) : 1;
    }
    if (format === 'png') {
      const exif = pngHeader(bytes, { maxSide: Infinity, maxPixels: Infinity }, 'the image').exif;
      return exif ? tiffOrientation(bytes, exif[0], exif[1]) : 1;
    }
  } catch {
    // Unreadable metadata is no orientation: the decoder reports a corrupt file itself.
  }
  return 1;
}

/** The image as it is displayed under `orientation` (5-8 swap its width and height). */
export function applyOrientation(image: RgbaImage, orientation: ExifOrientation): RgbaImage {
  if (orientation === 1) return image;
  const { width: w, height: h, data } = image;
  const swap = orientation >= 5;
  const W = swap ? h : w;
  const H = swap ? w : h;
  const out = new Uint8ClampedArray(w * h * 4);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      // The stored pixel shown at (x, y).
      let sx: number;
      let sy: number;
      switch (orientation) {
        case 2:
          [sx, sy] = [w - 1 - x, y];
          break;
        case 3:
          [sx, sy] = [w - 1 - x, h - 1 - y];
          break;
        case 4:
          [sx, sy] = [x, h - 1 - y];
          break;
        case 5:
          [sx, sy] = [y, x];
          break;
        case 6:
          [sx, sy] = [y, h - 1 - x];
          break;
        case 7:
          [sx, sy] = [w - 1 - y, h - 1 - x];
          break;
        default:
          [sx, sy] = [w - 1 - y, x];
          break; // 8
      }
      const from = 4 * (sy * w + sx);
      const to = 4 * (y * W + x);
      out[to] = data[from]!;
      out[to + 1] = data[from + 1]!;
      out[to + 2] = data[from + 2]!;
      out[to + 3] = data[from + 3]!;
    }
  }
  return { data: out, width: W, height: H };
}

/** SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC): the frame headers that carry the image size. */
const isFrameHeader = (marker: number) => marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;

/** Every SOFn frame header of a JPEG, checked; returns the size of the first. */
function jpegHeader(bytes: Uint8Array, limits: ImageLimits, what: string): { width: number; height: number } {
  let pos = 2;
  let size: { width: number; height: number } | null = null;
  let frames = 0;
  while (pos + 4 <= bytes.length) {
    if (bytes[pos] !== 0xff) {
      pos++; // entropy-coded data or fill: scan to the next marker
      continue;
    }
    const marker = bytes[pos + 1]!;
    if (marker === 0xff) {
      pos++;
      continue;
    }
    if (marker === 0x00 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      pos += 2; // stuffed byte, restart marker, TEM: no length
      continue;
    }
    if (marker === 0xd9) break; // EOI
    const length = (bytes[pos + 2]! << 8) | bytes[pos + 3]!;
    if (isFrameHeader(marker)) {
      if (pos + 9 > bytes.length) break;
      frames++;
      const height = (bytes[pos + 5]! << 8) | bytes[pos + 6]!;
      const width = (bytes[pos + 7]! << 8) | bytes[pos + 8]!;
      if (height === 0) throw new ImageError('BAD_IMAGE', `${what}: the JPEG's height is defined later by a DNL marker, which is not supported`);
      checkSize(width, height, limits, what, frames === 1 ? 'JPEG frame header' : `JPEG frame header number ${frames}`);
      size ??= { width, height };
    }
    pos += 2 + length;
  }
  if (!size) throw new ImageError('BAD_IMAGE', `${what}: no JPEG frame header (SOF): the file is truncated or corrupt`);
  return size;
}

/** An empty file, by name: "not a PNG or JPEG (it starts 0x00000000)" would send the user looking at bytes it lacks. */
export const emptyImageMessage = (what: string) => `${what} is empty (0 bytes): it holds no image; check that it was saved or copied whole`;

/** Format and size from the headers alone (every one checked against `limits`); decodes no pixels. */
export function readImageHeader(
  bytes: Uint8Array,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
  what = 'the image',
): { format: ImageFormat; width: number; height: number } {
  const format = imageFormat(bytes);
  if (format === 'png') {
    const { width, height } = pngHeader(bytes, limits, what);
    return { format, width, height };
  }
  if (format === 'jpeg') return { format, ...jpegHeader(bytes, limits, what) };
  if (bytes.length === 0) throw new ImageError('NOT_AN_IMAGE', emptyImageMessage(what));
  throw new ImageError('NOT_AN_IMAGE', `${what} is neither a PNG nor a JPEG file: convert it to PNG or JPEG`);
}

function pngToRgba(bytes: Uint8Array, what: string): RgbaImage {
  let png: ReturnType<typeof decodePngFile>;
  try {
    // A view into a larger buffer (an upload's body) is copied: fast-png's failures differ between a view and a
    // whole buffer with the same bytes, and one picture gets one answer everywhere.
    png = decodePngFile(bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice());
  } catch (e) {
    throw new ImageError('BAD_IMAGE', `${what}: cannot decode the PNG (${decoderProblem(e)}): the file is corrupt`);
  }
  const { width, height } = png;
  const count = width * height;
  const out = new Uint8ClampedArray(count * 4);
  if (png.palette) {
    // Palette images: fast-png leaves indices; its converter gives RGB, or RGBA when tRNS has alpha.
    let rgb: Uint8Array;
    try {
      rgb = convertIndexedToRgb(png);
    } catch (e) {
      throw new ImageError('BAD_IMAGE', `${what}: cannot decode the PNG's palette (${decoderProblem(e)}): the file is corrupt`);
    }
    const c = rgb.length / count;
    for (let p = 0; p < count; p++) {
      out[4 * p] = rgb[c * p]!;
      out[4 * p + 1] = rgb[c * p + 1]!;
      out[4 * p + 2] = rgb[c * p + 2]!;
      out[4 * p + 3] = c === 4 ? rgb[c * p + 3]! : 255;
    }
    return { data: out, width, height };
  }
  const c = png.channels;
  const shift = png.depth === 16 ? 257 : 1; // 16-bit samples to 8
  const scale = png.depth < 8 ? 255 / (2 ** png.depth - 1) : 1; // 1/2/4-bit gray to 0-255
  // 1/2/4-bit gray stays packed in fast-png's output (rows padded to whole bytes): unpack it first.
  const data = png.depth < 8 ? unpackRows(png.data as Uint8Array, width, height, png.depth) : png.data;
  // tRNS on gray or RGB images names one colour (in the file's own bit depth) that is fully transparent.
  const key = png.transparency && png.transparency.length === (c === 1 ? 1 : 3) ? png.transparency : null;
  for (let p = 0; p < count; p++) {
    const v = (k: number) => Math.round((data[c * p + k]! / shift) * scale);
    let transparent = false;
    if (c <= 2) {
      out[4 * p] = out[4 * p + 1] = out[4 * p + 2] = v(0);
      out[4 * p + 3] = c === 2 ? v(1) : 255;
      transparent = key !== null && data[c * p] === key[0];
    } else {
      out[4 * p] = v(0);
      out[4 * p + 1] = v(1);
      out[4 * p + 2] = v(2);
      out[4 * p + 3] = c === 4 ? v(3) : 255;
      transparent = key !== null && data[c * p] === key[0] && data[c * p + 1] === key[1] && data[c * p + 2] === key[2];
    }
    if (transparent) out[4 * p + 3] = 0;
  }
  return { data: out, width, height };
}

/** Samples of `depth` bits (1, 2, 4), packed in rows padded to whole bytes, one a value. */
function unpackRows(packed: Uint8Array, width: number, height: number, depth: number): Uint8Array {
  const rowBytes = Math.ceil((width * depth) / 8);
  const mask = 2 ** depth - 1;
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const bit = x * depth;
      out[y * width + x] = (packed[y * rowBytes + (bit >> 3)]! >> (8 - depth - (bit & 7))) & mask;
    }
  }
  return out;
}

/**
 * Decode a PNG or JPEG file to 8-bit RGBA (16-bit samples are rounded to 8; gray is copied to R, G and B), turned
 * upright by its EXIF orientation (a JPEG's APP1, a PNG's eXIf), as image viewers and browsers show it.
 * Errors (ImageError): NOT_AN_IMAGE (neither format), TOO_LARGE (a header above `limits`), BAD_IMAGE (corrupt).
 */
export function decodeImage(bytes: Uint8Array, limits: ImageLimits = DEFAULT_IMAGE_LIMITS, what = 'the image'): RgbaImage {
  const header = readImageHeader(bytes, limits, what);
  if (header.format === 'png') checkPngData(bytes, pngHeader(bytes, limits, what), what);
  const image = header.format === 'png' ? pngToRgba(bytes, what) : jpegToRgba(bytes, limits, what);
  if (image.width !== header.width || image.height !== header.height) {
    throw new ImageError(
      'BAD_IMAGE',
      `${what}: decoded ${image.width}x${image.height} but its header says ${header.width}x${header.height}: the file is corrupt`,
    );
  }
  return applyOrientation(image, readExifOrientation(bytes));
}
