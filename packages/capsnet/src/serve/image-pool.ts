/**
 * Image decoding and preprocessing off the event loop: PNG and JPEG bodies and uploads are decoded by
 * serve/image-worker.ts in a pool of worker threads (piscina), so one request of large images cannot stall the
 * others, /healthz included. Each request is held to three limits:
 *
 * - pixels: what its image headers declare together, checked before any decoding (`maxRequestPixels`);
 * - running time: each image may run on a worker for a budget proportional to its pixels (`budget`: a base plus
 *   so much per pixel, at most `timeoutMs`); the worker running an overdue image is ended. The clock starts when
 *   the worker starts on the image: waiting for a worker, or for one to start up, does not count;
 * - its share: images are handed to workers fairly, one at a time, round robin over clients (remote addresses)
 *   and, within a client, over its requests. A request of 32 images (inflation bombs or not) holds at most one
 *   turn of the pool at a time, and another request's image goes next.
 *
 * A request whose image fails stops there: its images still waiting are dropped and the ones running are ended.
 */
import { existsSync } from 'node:fs';
import { MessageChannel } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { ServeError } from './errors.ts';
import { type Polarity, readImageHeader } from '@capsnet-onnx/core';
import { MAX_PNG_PIXELS, type UploadTarget } from './images.ts';
import type { DecodeResult, DecodeTask } from './image-worker.ts';

export interface DecodeBudget {
  /** Running time every image gets, in ms. */
  baseMs: number;
  /** Running time per pixel its header declares, in ms. */
  perPixelMs: number;
}

export interface ImagePoolOptions {
  /**
   * Worker threads. Default: a quarter of the cores, at least 1, at most 4 (ONNX Runtime and the event loop need
   * the rest: on 2 cores a second decoding worker starves the event loop while large images decode).
   */
  threads?: number;
  /** Most pixels (width x height, as the image headers declare) in one request. Default 4 x 2048 x 2048. */
  maxRequestPixels?: number;
  /** Most running time of one image, in ms, whatever its size. Default 15000. */
  timeoutMs?: number;
  /**
   * One image's running time: `baseMs + perPixelMs * pixels`, at most `timeoutMs`. Default 3000 ms + 2 ms per
   * 1000 pixels: a 28x28 PNG gets ~3 s for ~1 ms of work, a 2048x2048 one 11.4 s for ~2 s of work on one core,
   * room for a machine loaded several times over; an inflation bomb is refused by the decoder in milliseconds.
   */
  budget?: DecodeBudget;
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

/** A 4x4 gray PNG with one dark pixel: the warm-up task's image. */
const WARM_UP_PNG = Uint8Array.from(
  Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAAAAACMmsGiAAAAGUlEQVR4AWNk+M/AwPifgYGBiQEImBiAAAAgNQIFPdhLDQAAAABJRU5ErkJggg==', 'base64'),
);

interface Job {
  task: DecodeTask;
  budgetMs: number;
  request: RequestQueue;
  index: number;
}

interface RequestQueue {
  client: string;
  jobs: Job[];
  controller: AbortController;
  results: Float32Array[];
  remaining: number;
  failed: boolean;
  resolve: (images: Float32Array[]) => void;
  reject: (error: unknown) => void;
}

export class ImagePool {
  readonly #pool: Piscina;
  readonly #threads: number;
  readonly maxRequestPixels: number;
  readonly timeoutMs: number;
  readonly budget: DecodeBudget;
  /** Clients with images waiting, in round-robin order; each with its requests, also in round-robin order. */
  readonly #clients = new Map<string, RequestQueue[]>();
  #running = 0;

  constructor(options: ImagePoolOptions = {}) {
    this.#threads = options.threads ?? Math.min(4, Math.max(1, Math.floor(availableParallelism() / 4)));
    // Compiled (dist/): the worker's own .js. From source: a bootstrap that loads the .ts through tsx.
    const compiled = new URL('./image-worker.js', import.meta.url);
    const filename = existsSync(compiled) ? compiled : new URL('./image-worker.mjs', import.meta.url);
    // By name: the compiled worker has only named exports (piscina's default is the module's default export).
    this.#pool = new Piscina({ filename: filename.href, name: 'decodeTask', minThreads: 1, maxThreads: this.#threads, idleTimeout: 30_000 });
    this.maxRequestPixels = options.maxRequestPixels ?? 4 * MAX_PNG_PIXELS;
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.budget = options.budget ?? { baseMs: 3000, perPixelMs: 0.002 };
  }

  /** Start a worker, load its code and run the decoder once, so that the first request's budget is not spent on it. */
  async warmUp(): Promise<void> {
    await this.#pool.run({
      bytes: WARM_UP_PNG,
      target: { shape: { height: 4, width: 4, channels: 1 }, preprocessing: { method: 'mnist', polarity: 'light-on-dark' } },
      polarity: 'auto',
      what: 'warm-up',
    } satisfies DecodeTask);
  }

  /** Images waiting for a worker, and images running. */
  stats(): { waiting: number; running: number; threads: number } {
    let waiting = 0;
    for (const requests of this.#clients.values()) for (const r of requests) waiting += r.jobs.length;
    return { waiting, running: this.#running, threads: this.#threads };
  }

  /** The pixels an image's headers declare (0 when unreadable), for a caller that counts a request's total. */
  static declaredPixels(bytes: Uint8Array): number {
    return declaredPixels(bytes);
  }

  /** A request's declared pixels against `maxRequestPixels`: the 413 to throw when over, else null. */
  tooManyPixels(total: number): ServeError | null {
    if (total <= this.maxRequestPixels) return null;
    return new ServeError(
      413,
      'TOO_MANY_PIXELS',
      `the request's images hold ${total} pixels together; the most one request may hold is ${this.maxRequestPixels}: send smaller images or fewer per request`,
    );
  }

  /**
   * Decode one request's images to model inputs, in order; the first bad file's ServeError is thrown. `client`
   * (the remote address) is the unit of fairness: each client's requests share one turn of the pool. Aborting
   * `signal` drops the images still waiting and ends the running ones.
   */
  decode(files: PngUpload[], target: UploadTarget, polarity: Polarity, client = '', signal?: AbortSignal): Promise<Float32Array[]> {
    const sizes = files.map((f) => declaredPixels(f.bytes));
    const over = this.tooManyPixels(sizes.reduce((a, b) => a + b, 0));
    if (over) return Promise.reject(over);
    if (files.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const request: RequestQueue = {
        client,
        jobs: [],
        controller: new AbortController(),
        results: new Array(files.length),
        remaining: files.length,
        failed: false,
        resolve,
        reject,
      };
      request.jobs = files.map((f, index) => ({
        task: { bytes: f.bytes, target, polarity, what: f.what },
        budgetMs: Math.min(this.timeoutMs, Math.round(this.budget.baseMs + this.budget.perPixelMs * sizes[index]!)),
        request,
        index,
      }));
      if (signal?.aborted) return request.reject(signal.reason);
      signal?.addEventListener('abort', () => this.#fail(request, signal.reason), { once: true });
      const requests = this.#clients.get(client);
      if (requests) requests.push(request);
      else this.#clients.set(client, [request]);
      this.#dispatch();
    });
  }

  /** Hand free workers the next image of the next client, round robin. */
  #dispatch(): void {
    while (this.#running < this.#threads && this.#clients.size > 0) {
      const [client, requests] = this.#clients.entries().next().value as [string, RequestQueue[]];
      // This client goes to the back of the line; its first request goes to the back of its own line.
      this.#clients.delete(client);
      const request = requests.shift()!;
      const job = request.jobs.shift()!;
      if (request.jobs.length > 0) requests.push(request);
      if (requests.length > 0) this.#clients.set(client, requests);
      this.#run(job);
    }
  }

  #run(job: Job): void {
    const { request } = job;
    this.#running++;
    // The budget's clock starts when the worker starts decoding (it says so on `started`): neither waiting for
    // a worker nor a worker's start-up after an overdue one was ended counts.
    const overdue = new AbortController();
    const timeout = overdue.signal;
    const { port1, port2 } = new MessageChannel();
    let timer: NodeJS.Timeout | undefined;
    port1.once('message', () => {
      timer = setTimeout(() => overdue.abort(), job.budgetMs);
      port1.close();
    });
    const signal = AbortSignal.any([timeout, request.controller.signal]);
    (this.#pool.run({ ...job.task, started: port2 }, { signal, transferList: [port2] }) as Promise<DecodeResult>)
      .then(
        (result) => {
          if ('error' in result) throw new ServeError(result.error.statusCode, result.error.code, result.error.message);
          request.results[job.index] = result.image;
          if (--request.remaining === 0 && !request.failed) request.resolve(request.results);
        },
        (error: unknown) => {
          if (timeout.aborted) {
            throw new ServeError(
              413,
              'DECODE_TIMEOUT',
              `decoding ${job.task.what} took longer than its budget of ${job.budgetMs} ms (${this.budget.baseMs} ` +
                `ms + ${this.budget.perPixelMs * 1000} ms per 1000 pixels): send smaller images`,
            );
          }
          throw error;
        },
      )
      .catch((error: unknown) => this.#fail(request, error))
      .finally(() => {
        clearTimeout(timer);
        port1.close();
        this.#running--;
        this.#dispatch();
      });
  }

  /** The request's first failure: drop its waiting images, end its running ones, reject it once. */
  #fail(request: RequestQueue, error: unknown): void {
    if (request.failed) return;
    request.failed = true;
    request.jobs.length = 0;
    const requests = this.#clients.get(request.client);
    if (requests) {
      const left = requests.filter((r) => r !== request);
      if (left.length > 0) this.#clients.set(request.client, left);
      else this.#clients.delete(request.client);
    }
    request.controller.abort();
    // An image ended because its request failed already reported the failure that ended it.
    request.reject(error);
  }

  async close(): Promise<void> {
    await this.#pool.destroy();
  }
}
