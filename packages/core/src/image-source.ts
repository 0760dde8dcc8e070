/**
 * `RgbaImage`: 8-bit RGBA pixels, row-major (the shape of the DOM's ImageData), and `RgbaImage.read`, the one way
 * in from whatever an app holds, in Node and the browser alike (as transformers.js's RawImage): file bytes go
 * through `decodeImage` (decode.ts: size limits, EXIF orientation; JPEG loaded on first use), and what a page
 * holds (a canvas, an `<img>`, an ImageBitmap) is drawn onto a 2D canvas and read back. Preprocessing for the
 * model (image.ts) is the same afterwards, whatever the source.
 */
import { DEFAULT_IMAGE_LIMITS, ImageError, type ImageLimits, decodeImage, imageFormat } from './decode.ts';
import { loadJpegDecoder } from './jpeg.ts';

/** A Blob or File (DOM and Node 18+): image file bytes, read with `arrayBuffer()`. */
export interface BlobLike {
  readonly size: number;
  readonly type: string;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/**
 * What a page can draw: an HTMLCanvasElement, an OffscreenCanvas, an HTMLImageElement (loaded or loading) or an
 * ImageBitmap. Typed by shape, so that Node apps compile without the DOM library.
 */
export type Drawable =
  | { readonly width: number; readonly height: number; getContext(contextId: '2d'): unknown }
  | { readonly naturalWidth: number; readonly naturalHeight: number; decode(): Promise<void> }
  | { readonly width: number; readonly height: number; close(): void };

/** Every source `RgbaImage.read` takes: file bytes, a Blob/File, a drawable (browser), or pixels already decoded. */
export type ImageSource = Uint8Array | ArrayBuffer | BlobLike | Drawable | RgbaImage;

type Ctx2D = { drawImage(image: unknown, x: number, y: number): void; getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } };
type Canvas2D = { width: number; height: number; getContext(kind: '2d', options?: object): Ctx2D | null };

const domClass = (name: string): (abstract new (...args: never[]) => object) | undefined => {
  const value = (globalThis as Record<string, unknown>)[name];
  return typeof value === 'function' ? (value as abstract new (...args: never[]) => object) : undefined;
};
const isInstance = (value: unknown, name: string): boolean => {
  const cls = domClass(name);
  return cls !== undefined && value instanceof cls;
};

/** True for a Blob or File (file bytes). */
export function isBlobSource(value: unknown): value is BlobLike {
  return isInstance(value, 'Blob');
}

/** True for what a page draws: HTMLCanvasElement, OffscreenCanvas, HTMLImageElement, ImageBitmap, SVGImageElement, VideoFrame. */
export function isDrawableSource(value: unknown): value is Drawable {
  return ['HTMLCanvasElement', 'OffscreenCanvas', 'HTMLImageElement', 'ImageBitmap', 'SVGImageElement', 'VideoFrame'].some((name) => isInstance(value, name));
}

function canvas(width: number, height: number): Canvas2D {
  const Offscreen = domClass('OffscreenCanvas') as (new (w: number, h: number) => Canvas2D) | undefined;
  if (Offscreen) return new Offscreen(width, height);
  const doc = (globalThis as { document?: { createElement(tag: 'canvas'): Canvas2D } }).document;
  if (!doc)
    throw new ImageError('NOT_AN_IMAGE', 'drawing an image needs a canvas (OffscreenCanvas or document): pass file bytes or { data, width, height } here');
  const c = doc.createElement('canvas');
  c.width = width;
  c.height = height;
  return c;
}

async function drawnPixels(source: Drawable, limits: ImageLimits, what: string): Promise<RgbaImage> {
  const img = source as { naturalWidth?: number; naturalHeight?: number; complete?: boolean; decode?: () => Promise<void> };
  if (isInstance(source, 'HTMLImageElement')) {
    try {
      if (!img.complete || !img.naturalWidth) await img.decode?.();
    } catch (e) {
      throw new ImageError('BAD_IMAGE', `${what}: the <img> did not load (${(e as Error).message}): check its src`);
    }
  }
  const frame = source as { displayWidth?: number; displayHeight?: number };
  const sized = source as { width?: number; height?: number };
  const width = img.naturalWidth ?? frame.displayWidth ?? sized.width ?? 0;
  const height = img.naturalHeight ?? frame.displayHeight ?? sized.height ?? 0;
  if (!width || !height) throw new ImageError('BAD_IMAGE', `${what} is ${width}x${height}: draw something into it, or wait until the image has loaded`);
  if (Math.max(width, height) > limits.maxSide || width * height > limits.maxPixels) {
    throw new ImageError(
      'TOO_LARGE',
      `${what} is ${width}x${height}; the limit is ${limits.maxSide} px a side and ${limits.maxPixels} pixels: scale it down first`,
    );
  }
  const target = canvas(width, height);
  const context = target.getContext('2d', { willReadFrequently: true });
  if (!context) throw new ImageError('BAD_IMAGE', `${what}: this browser gave no 2D canvas context to read the pixels with`);
  try {
    context.drawImage(source, 0, 0);
    return new RgbaImage(context.getImageData(0, 0, width, height).data, width, height);
  } catch (e) {
    // A cross-origin <img> without CORS taints the canvas: getImageData throws a SecurityError.
    throw new ImageError(
      'BAD_IMAGE',
      `${what}: cannot read its pixels (${(e as Error).message}): an image from another origin needs crossOrigin="anonymous" and CORS headers`,
    );
  }
}

/** 8-bit RGBA pixels, row-major: the shape of the DOM's ImageData. A plain `{ data, width, height }` is one too. */
export class RgbaImage {
  constructor(
    public data: Uint8ClampedArray,
    public width: number,
    public height: number,
  ) {}

  /**
   * Pixels from anything an app holds: PNG/JPEG bytes (Uint8Array, Buffer, ArrayBuffer) or a Blob/File, decoded by
   * `decodeImage` (limits, EXIF orientation; the JPEG decoder loaded on first use); in a browser also an
   * HTMLCanvasElement, OffscreenCanvas, HTMLImageElement or ImageBitmap, drawn and read back; an RgbaImage as is.
   * Errors: ImageError (NOT_AN_IMAGE for anything else, TOO_LARGE above `limits`, BAD_IMAGE for corrupt files).
   */
  static async read(source: ImageSource, limits: ImageLimits = DEFAULT_IMAGE_LIMITS, what = 'the image'): Promise<RgbaImage> {
    if (source instanceof RgbaImage) return source;
    let bytes: Uint8Array | undefined;
    if (source instanceof Uint8Array) bytes = source;
    else if (source instanceof ArrayBuffer) bytes = new Uint8Array(source);
    else if (isBlobSource(source)) bytes = new Uint8Array(await source.arrayBuffer());
    if (bytes) {
      if (imageFormat(bytes) === 'jpeg') await loadJpegDecoder();
      const image = decodeImage(bytes, limits, what);
      return new RgbaImage(image.data, image.width, image.height);
    }
    if (isDrawableSource(source)) return drawnPixels(source, limits, what);
    const pixels = source as Partial<RgbaImage>;
    if (pixels.data instanceof Uint8ClampedArray && Number.isInteger(pixels.width) && Number.isInteger(pixels.height)) {
      return new RgbaImage(pixels.data, pixels.width!, pixels.height!);
    }
    const name = source === null ? 'null' : typeof source === 'object' ? ((source as object).constructor?.name ?? 'object') : typeof source;
    throw new ImageError(
      'NOT_AN_IMAGE',
      `${what} is a ${name}: pass PNG/JPEG bytes, a Blob or File, a canvas, an <img>, an ImageBitmap, or { data, width, height } RGBA pixels`,
    );
  }
}
