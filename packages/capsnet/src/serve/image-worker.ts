/**
 * One image decode, run in a worker thread of serve/image-pool.ts so that a large or hostile PNG never blocks the
 * event loop. Errors come back as values: a class thrown in a worker reaches the main thread as a plain Error.
 */
import type { MessagePort } from 'node:worker_threads';
import { ServeError } from './errors.ts';
import type { Polarity } from '@capsnet-onnx/core';
import { type UploadTarget, decodeUpload } from './images.ts';

export interface DecodeTask {
  bytes: Uint8Array;
  target: UploadTarget;
  polarity: Polarity;
  what: string;
  /** Told when the decode starts, so that the pool's time budget leaves out the queue and a worker's start-up. */
  started?: MessagePort;
}

export type DecodeResult = { image: Float32Array } | { error: { statusCode: number; code: string; message: string } };

export function decodeTask(task: DecodeTask): DecodeResult {
  task.started?.postMessage(0);
  task.started?.close();
  try {
    return { image: decodeUpload(task.bytes, task.target, { polarity: task.polarity, what: task.what }) };
  } catch (e) {
    if (e instanceof ServeError) return { error: { statusCode: e.statusCode, code: e.code, message: e.message } };
    // Whatever else a decoder throws on a malformed file (pngjs, zlib, a RangeError) is still the file's fault.
    return { error: { statusCode: 400, code: 'BAD_IMAGE', message: `${task.what} could not be decoded: ${(e as Error).message}` } };
  }
}
