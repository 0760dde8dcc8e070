/**
 * One image decode, run in a worker thread of serve/image-pool.ts so that a large or hostile PNG never blocks the
 * event loop. Errors come back as values: a class thrown in a worker reaches the main thread as a plain Error.
 */
import { ServeError } from './errors.ts';
import { type InputShape, type InvertMode, imageFromPng } from './images.ts';

export interface DecodeTask {
  bytes: Uint8Array;
  shape: InputShape;
  invert: InvertMode;
  what: string;
}

export type DecodeResult = { image: Float32Array } | { error: { statusCode: number; code: string; message: string } };

export function decodeTask(task: DecodeTask): DecodeResult {
  try {
    return { image: imageFromPng(task.bytes, task.shape, task.invert, task.what) };
  } catch (e) {
    if (e instanceof ServeError) return { error: { statusCode: e.statusCode, code: e.code, message: e.message } };
    // Whatever else a decoder throws on a malformed file (pngjs, zlib, a RangeError) is still the file's fault.
    return { error: { statusCode: 400, code: 'BAD_PNG', message: `${task.what} could not be decoded: ${(e as Error).message}` } };
  }
}
