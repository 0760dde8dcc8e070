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
    const text = String((e as Error)?.message ?? e).split('\n')[0]!;
    // V8's own words for an allocation it could not make ("Array buffer allocation failed", "Invalid typed array
    // length"): the image needs more memory than this worker has.
    if (e instanceof RangeError && /allocation failed|invalid (typed )?array( buffer)? length/i.test(text)) {
      return {
        error: {
          statusCode: 413,
          code: 'TOO_LARGE',
          message: `${task.what} needs more memory to decode than the server can give it (${text}): send a smaller image`,
        },
      };
    }
    // Whatever else a decoder throws on a malformed file (zlib, a RangeError) is still the file's fault.
    return {
      error: { statusCode: 400, code: 'BAD_IMAGE', message: `${task.what} could not be decoded (${text}): the file is corrupt; re-save it as PNG or JPEG` },
    };
  }
}
