/**
 * JPEG through jpeg-js (baseline and progressive; pure JS), loaded on first use: a browser app that never decodes
 * a JPEG does not download it (bundlers leave an `import()` that is never reached out of the app's bundle, or put
 * it in a chunk of its own). In Node the module is required synchronously, so `decodeImage` stays synchronous
 * there; in a browser, `await loadJpegDecoder()` (or the async `RgbaImage.read`) loads it before `decodeImage`.
 */
import type { ImageLimits } from './decode.ts';
import { ImageError } from './decode.ts';
import type { RgbaImage } from './image-source.ts';

type JpegDecode = typeof import('jpeg-js').decode;
let jpegDecode: JpegDecode | undefined;

/** Load jpeg-js (once); `decodeImage` can decode JPEG files synchronously afterwards, in any JavaScript engine. */
export async function loadJpegDecoder(): Promise<void> {
  jpegDecode ??= ((await import('jpeg-js')) as { default: { decode: JpegDecode } }).default.decode;
}

/** The decoder when loaded, or loadable synchronously (Node: `process.getBuiltinModule`, Node 20.16+ / 22.3+). */
function syncDecoder(): JpegDecode | undefined {
  if (jpegDecode) return jpegDecode;
  const getBuiltinModule = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule;
  if (typeof getBuiltinModule !== 'function') return undefined;
  const { createRequire } = getBuiltinModule('node:module') as { createRequire(from: string): (id: string) => unknown };
  jpegDecode = (createRequire(import.meta.url)('jpeg-js') as { decode: JpegDecode }).decode;
  return jpegDecode;
}

/** What a decoder's read past the end of the bytes means to the sender. */
export const TRUNCATED = 'its data ends early: truncated';

/**
 * A decoder's failure in words: reading past the end of the bytes surfaces as a RangeError about a DataView or an
 * offset, which says nothing to the sender; other messages ("invalid zlib data") are the decoder's own, on one
 * line and without the punctuation they end with ("Error while decompressing the data:" when zlib gave no reason).
 */
export function decoderProblem(e: unknown): string {
  if (e instanceof RangeError) return TRUNCATED;
  const text = String((e as Error)?.message ?? e)
    .split('\n')[0]!
    .trim()
    .replace(/[\s:;,.-]+$/, '');
  return text || 'no reason given';
}

export function jpegToRgba(bytes: Uint8Array, limits: ImageLimits, what: string): RgbaImage {
  const decode = syncDecoder();
  if (!decode) {
    throw new ImageError(
      'BAD_IMAGE',
      `${what} is a JPEG and the JPEG decoder loads on first use here: use \`await ` +
        `RgbaImage.read(bytes)\`, or \`await loadJpegDecoder()\` once before decodeImage`,
    );
  }
  try {
    const image = decode(bytes, {
      useTArray: true,
      formatAsRGBA: true,
      maxResolutionInMP: limits.maxPixels / 1e6,
      // RGBA output plus the decoder's own planes; the header check already bounds the size.
      maxMemoryUsageInMB: Math.ceil((limits.maxPixels * 12) / 2 ** 20) + 64,
    });
    return { data: new Uint8ClampedArray(image.data.buffer, image.data.byteOffset, image.data.byteLength), width: image.width, height: image.height };
  } catch (e) {
    throw new ImageError('BAD_IMAGE', `${what}: cannot decode the JPEG (${decoderProblem(e)}): the file is corrupt or uses an unsupported JPEG mode`);
  }
}
