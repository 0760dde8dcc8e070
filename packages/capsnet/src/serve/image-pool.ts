/**
 * Image decoding and preprocessing off the event loop: PNG bodies and uploads are decoded by
 * serve/image-worker.ts in a pool of worker threads (piscina), so one request of large PNGs cannot stall the
 * others, /healthz included. Each request is held to two limits: the pixels its PNG headers declare, checked
 * before any decoding, and the time its decoding may take (the worker running an overdue task is ended).
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { ServeError } from './errors.ts';
import { type Polarity, readImageHeader } from '@capsnet-onnx/core';
import { MAX_PNG_PIXELS, type UploadTarget } from './images.ts';
import type { DecodeResult, DecodeTask } from './image-worker.ts';

export interface ImagePoolOptions {
  /** Worker threads. Default: a quarter of the cores, at least 1, at most 4 (ONNX Runtime needs the rest). */
  threads?: number;
  /** Most pixels (width x height, as the PNG headers declare) in one request. Default 4 x 2048 x 2048. */
  maxRequestPixels?: number;
  /** Longest one request's images may take to decode, in ms. Default 10000. */
  timeoutMs?: number;
}

export interface PngUpload {
  bytes: Uint8Array;
  what: string;
}

/** Width x height that the file's headers declare (PNG IHDR, JPEG SOF; 0 when unreadable: the decoder reports it). */
function declaredPixels(bytes: Uint8Array): number {
  try {
    const { width, height } = readImageHeader(bytes, { maxSide: Infinity, maxPixels: Infinity });
    return width * height;
  } catch {
    return 0;
  }
}

export class ImagePool {
  readonly #pool: Piscina;
  readonly maxRequestPixels: number;
  readonly timeoutMs: number;

  constructor(options: ImagePoolOptions = {}) {
    const threads = options.threads ?? Math.min(4, Math.max(1, Math.floor(availableParallelism() / 4)));
    // Compiled (dist/): the worker's own .js. From source: a bootstrap that loads the .ts through tsx.
    const compiled = new URL('./image-worker.js', import.meta.url);
    const filename = existsSync(compiled) ? compiled : new URL('./image-worker.mjs', import.meta.url);
    // By name: the compiled worker has only named exports (piscina's default is the module's default export).
    this.#pool = new Piscina({ filename: filename.href, name: 'decodeTask', minThreads: 1, maxThreads: threads, idleTimeout: 30_000 });
    this.maxRequestPixels = options.maxRequestPixels ?? 4 * MAX_PNG_PIXELS;
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** Start a worker and load its code, so that the first request's time limit is not spent on it. */
  async warmUp(): Promise<void> {
    await this.#pool.run({
      bytes: new Uint8Array(0), target: { shape: { height: 1, width: 1, channels: 1 }, preprocessing: { method: 'resize', polarity: 'any' } }, polarity: 'auto', what: 'warm-up',
    } satisfies DecodeTask);
  }

  /** Decode one request's PNGs to model inputs, in order; the first bad file's ServeError is thrown. */
  async decode(files: PngUpload[], target: UploadTarget, polarity: Polarity): Promise<Float32Array[]> {
    const total = files.reduce((n, f) => n + declaredPixels(f.bytes), 0);
    if (total > this.maxRequestPixels) {
      throw new ServeError(413, 'TOO_MANY_PIXELS',
        `the request's PNGs hold ${total} pixels together; the most one request may hold is ${this.maxRequestPixels}: send smaller images or fewer per request`);
    }
    const signal = AbortSignal.timeout(this.timeoutMs);
    let results: DecodeResult[];
    try {
      results = await Promise.all(files.map((f) => this.#pool.run({ bytes: f.bytes, target, polarity, what: f.what } satisfies DecodeTask, { signal }) as Promise<DecodeResult>));
    } catch (e) {
      if (signal.aborted) {
        throw new ServeError(413, 'DECODE_TIMEOUT', `decoding the request's images took longer than ${this.timeoutMs} ms (the server's limit per request): send smaller images`);
      }
      throw e;
    }
    return results.map((r) => {
      if ('error' in r) throw new ServeError(r.error.statusCode, r.error.code, r.error.message);
      return r.image;
    });
  }

  async close(): Promise<void> {
    await this.#pool.destroy();
  }
}
