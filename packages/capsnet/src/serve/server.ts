/**
 * The HTTP server: a JSON API over one Classifier, with concurrent requests batched into shared inference runs
 * (serve/batcher.ts), plus the browser page (serve/page/) that runs the same model client-side with
 * onnxruntime-web. Every response carries COOP/COEP headers so the page is cross-origin isolated and
 * onnxruntime-web can use wasm threads.
 *
 * Hardened for a careless or hostile client: image decoding runs in a worker pool (serve/image-pool.ts) with
 * per-request limits; every input error is a 4xx in the API's JSON shape; gzip/deflate/br bodies are inflated
 * under the same body limit; requests must name an allowed Host (DNS rebinding); cross-origin POSTs are refused
 * unless `cors` names their origin; the page gets a Content-Security-Policy; no response names a server path.
 *
 *   POST /v1/classify   JSON {image} | {images: [...]}, a raw PNG or JPEG body, or multipart PNG/JPEG files;
 *                       ?polarity=auto|light-on-dark|dark-on-light; a result's label is null (with a reason)
 *                       when the image has no ink or no capsule reaches the model's presence threshold
 *   POST /v1/decode     JSON {capsules} | {batch: [...]}, masked capsules -> reconstructions
 *   GET  /v1/model      metadata, device, batching policy and limits
 *   GET  /v1/samples    a few real test images of the model's data set
 *   GET  /v1/stats      batching counters
 *   GET  /healthz       a probe inference: the model runs and its outputs match its metadata (else 503)
 *   /v2/...             the KServe v2 / Open Inference Protocol (serve/kserve.ts)
 *   GET  /              the page; /model.onnx, /model.decoder.onnx, /ort/*, /web/* its assets
 */
import { createReadStream, existsSync, readdirSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { type Readable, pipeline } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import cors from '@fastify/cors';
import type { Classification, Classifier } from '@capsnet-onnx/runtime';
import { Batcher, BatchTooLargeError, QueueFullError, type BatchPolicy, type BatchResult, type BatchStats } from './batcher.ts';
import { ServeError, badRequest } from './errors.ts';
import { checkPolarity, InputError, PreprocessError, type Polarity, publicDataName } from '@capsnet-onnx/core';
import { capsulesFromJson, imageFromJson, type InputShape, type UploadTarget } from './images.ts';
import { ImagePool, type ImagePoolOptions, type PngUpload } from './image-pool.ts';
import { loadSamples, type SampleSet } from './samples.ts';
import { kserveRoutes } from './kserve.ts';
import { EtagCache, LoadedFile, matchesEtag } from './files.ts';
import { WEB_DIST, ownOnnxruntimeWeb } from '../web/paths.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
export const PAGE_DIR = join(HERE, 'page');

export interface ServerOptions {
  classifier: Classifier;
  /** Served at /model.onnx and /model.decoder.onnx for the page; without them the page cannot run. */
  modelPath?: string;
  decoderPath?: string;
  /**
   * The bytes the classifier was loaded from (what /model.onnx and /model.decoder.onnx serve). Default: the
   * files at modelPath and decoderPath, read once when the server starts.
   */
  modelBytes?: Uint8Array;
  decoderBytes?: Uint8Array;
  /** Most images (or capsule sets) in one inference run, and in one request. Default 32. */
  maxBatch?: number;
  /** Longest a queued request waits for company before its run starts. Default 2 ms. */
  batchWaitMs?: number;
  /** Most images (or capsule sets) waiting for a run; more gets 503. Default 32 * maxBatch. */
  maxQueue?: number;
  /** Largest request body in bytes (a multipart upload: all its files together). Default 4 MiB. */
  bodyLimit?: number;
  /** Test images per class offered by /v1/samples. Default 3. */
  samplesPerClass?: number;
  /**
   * Data spec (`idx:DIR`, ...) whose test images /v1/samples offers. Default the model's `capsnet.dataset` when it
   * is a built-in set: exports record directory data by base name only, without the directory to read.
   */
  samplesData?: string;
  /** Folder holding the runtime's browser bundle, served at /web/. Default dist/web. */
  webDir?: string;
  /** Model name on the KServe v2 routes (the decoder is NAME_decoder), as `capsnet export --triton-name`. Default capsnet. */
  modelName?: string;
  /** Log one line per request. */
  logRequests?: boolean;
  /** Host names accepted besides the loopback names and the address the server listens on (DNS rebinding). */
  allowedHosts?: string[];
  /** The one origin allowed to call the API from a browser (CORS); without it cross-origin POSTs are refused. */
  cors?: string;
  /** Worker pool for image decoding and its per-request limits. */
  images?: ImagePoolOptions;
  log?: (line: string) => void;
}

export interface CapsNetServer {
  app: FastifyInstance;
  classifier: Classifier;
  stats(): { classify: BatchStats; decode: BatchStats };
  /** Listen; resolves with the base URL. */
  listen(port: number, host: string): Promise<string>;
  /** Stop accepting connections, finish every in-flight request, then resolve. Does not dispose the classifier. */
  close(): Promise<void>;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.onnx': 'application/octet-stream',
};

/**
 * The page's Content-Security-Policy: only its own scripts, styles and workers; WebAssembly compilation for
 * onnxruntime-web ('wasm-unsafe-eval'); no inline script, no plugins, no framing.
 */
export const PAGE_CSP = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self' blob:",
  "connect-src 'self' blob: data:",
  "img-src 'self' data: blob:",
  "style-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Absolute file system paths in a message, reduced to their last part: no response names a server path. */
export function withoutPaths(text: string): string {
  return text.replace(/(?<![\w./-])(?:[A-Za-z]:)?[/\\](?:[^\s/\\'"`:,;()]+[/\\])+([^\s/\\'"`:,;()]+)/g, '$1');
}

/** The data set's public name (core's publicDataName, for files exported before it applied): `idx:/srv/data/kmnist` -> `idx:kmnist`. */
export function publicDataset(name: string): string {
  return withoutPaths(publicDataName(name));
}

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];

/** The host name of a Host header, lower-cased, without its port ([::1]:8080 -> ::1). */
function hostOf(header: string): string {
  const match = /^\[([^\]]+)\](?::\d+)?$/.exec(header) ?? /^([^:]*)(?::\d+)?$/.exec(header);
  return (match ? match[1]! : header).toLowerCase();
}

/** Names a request may carry in its Host header when the server listens on `host`. */
function allowedHostNames(host: string, extra: string[]): Set<string> {
  const names = new Set([...LOOPBACK_NAMES, ...extra.map((h) => hostOf(h)), hostOf(host)]);
  if (host === '0.0.0.0' || host === '::') {
    // Every interface: the machine's own names and addresses, still not any name a DNS server cares to point here.
    names.add(hostname().toLowerCase());
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) names.add(a.address.toLowerCase());
  }
  return names;
}

/** Inflate a gzip, deflate or br body; Fastify's body limit then applies to the inflated bytes. */
function decompressBody(encoding: string, payload: Readable): Readable {
  const inflate = encoding === 'gzip' || encoding === 'x-gzip' ? createGunzip() : encoding === 'deflate' ? createInflate() : createBrotliDecompress();
  const counted = inflate as unknown as Readable & { receivedEncodedLength: number };
  counted.receivedEncodedLength = 0;
  payload.on('data', (chunk: Buffer) => (counted.receivedEncodedLength += chunk.length));
  pipeline(payload, inflate, () => {});
  return counted;
}

/**
 * A probe inference: a blank image through the classifier (and a blank capsule set through the decoder) whose
 * outputs must have the shapes and ranges the metadata promises. Throws a one-line error naming the mismatch.
 */
export async function probeClassifier(classifier: Classifier): Promise<void> {
  const m = classifier.metadata;
  const pixels = m.inputHeight * m.inputWidth * m.inputChannels;
  const fail = (problem: string): never => {
    throw new Error(`the model does not match its metadata: ${problem}; re-export it with \`capsnet export\``);
  };
  let result: Classification | undefined;
  try {
    [result] = await classifier.classify(new Float32Array(pixels));
  } catch (e) {
    fail(`a probe inference failed (${withoutPaths((e as Error).message)})`);
  }
  // The class of the longest capsule (a blank probe answers label null, by design).
  const { lengths, capsules, reconstruction, longest: label } = result!;
  if (lengths.length !== m.numClasses) fail(`it computes ${lengths.length} class scores, its metadata says ${m.numClasses} classes`);
  if (capsules.length !== m.numClasses * m.digitDim) fail(`its capsules hold ${capsules.length} values, not ${m.numClasses} x ${m.digitDim}`);
  if (reconstruction.length !== pixels) fail(`its reconstruction has ${reconstruction.length} pixels, not ${pixels}`);
  if (!lengths.every((v) => Number.isFinite(v) && v >= 0 && v <= 1 + 1e-5)) fail('its capsule lengths are not all in [0, 1]');
  if (!(label >= 0 && label < m.classLabels.length)) fail(`it predicts class ${label}, outside its ${m.classLabels.length} labels`);
  try {
    const [decoded] = await classifier.decode(new Float32Array(m.numClasses * m.digitDim));
    if (decoded!.length !== pixels) fail(`its decoder returns ${decoded!.length} pixels, not ${pixels}`);
  } catch (e) {
    if (!/no decoder model/.test((e as Error).message)) fail(`a probe of its decoder failed (${withoutPaths((e as Error).message)})`);
  }
}

/** Fastify's own client errors, renamed for the API's error codes. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_REQ_FILE_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_PARTS_LIMIT: 'TOO_MANY_PARTS',
  FST_FILES_LIMIT: 'TOO_MANY_IMAGES',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_JSON_BODY: 'BAD_JSON',
  PROTOTYPE_KEY: 'BAD_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_CONTENT_LENGTH',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'BAD_MULTIPART',
  Z_DATA_ERROR: 'BAD_ENCODING',
  Z_BUF_ERROR: 'BAD_ENCODING',
  ERR__ERROR_FORMAT_PADDING_1: 'BAD_ENCODING',
};

function onnxruntimeWebDist(): string | undefined {
  try {
    // capsnet-onnx's own onnxruntime-web (an exact dependency): the version the page's bundle embeds, which may
    // differ from an app's copy of onnxruntime-web.
    return ownOnnxruntimeWeb().dir;
  } catch {
    return undefined;
  }
}

/** float32 values to 7 significant digits: what float32 holds, in a shorter JSON number. */
const round6 = (values: ArrayLike<number>): number[] => Array.from(values, (v) => Number(v.toPrecision(7)));

function rows(values: Float32Array, width: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < values.length; i += width) out.push(round6(values.subarray(i, i + width)));
  return out;
}

function batchInfo(result: BatchResult<unknown>) {
  return { size: result.batchSize, queuedMs: Math.round(result.queuedMs * 100) / 100, inferenceMs: Math.round(result.runMs * 100) / 100 };
}

function flag(value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === '') return fallback;
  if (value === true || value === 'true' || value === '1') return true;
  if (value === false || value === 'false' || value === '0') return false;
  throw badRequest('BAD_QUERY', `expected true or false, got ${JSON.stringify(value)}`);
}

export async function createServer(options: ServerOptions): Promise<CapsNetServer> {
  const { classifier } = options;
  const metadata = classifier.metadata;
  const log = options.log ?? (() => {});
  const maxBatch = options.maxBatch ?? 32;
  const policy: BatchPolicy = { maxBatch, maxWaitMs: options.batchWaitMs ?? 2, maxQueue: options.maxQueue ?? 32 * maxBatch };
  const bodyLimit = options.bodyLimit ?? 4 * 1024 * 1024;
  const shape: InputShape = { height: metadata.inputHeight, width: metadata.inputWidth, channels: metadata.inputChannels };
  const target: UploadTarget = { shape, preprocessing: metadata.preprocessing };
  const { numClasses, digitDim } = metadata;
  const pixels = shape.height * shape.width * shape.channels;
  const webDir = options.webDir ?? WEB_DIST;
  const ortDir = onnxruntimeWebDist();
  const startedAt = Date.now();
  let closing = false;
  // Refuse to start a model that cannot run or whose outputs disagree with its metadata, instead of
  // answering every request with a 500 later.
  await probeClassifier(classifier);
  // /healthz is answered outside the inference queue: a probe runs at most once a second, and while inference is
  // busy (a run in flight or requests queued) the answer is the last finished probe's, never a wait behind the
  // queue. When idle it waits for a fresh probe, so a model that just broke is reported at once.
  let lastProbe: string | null = null; // the start-up probe passed
  let health: { at: number; check: Promise<string | null>; done: boolean } = { at: Date.now(), check: Promise.resolve(null), done: true };
  const inferenceBusy = () =>
    [classifyBatcher, decodeBatcher].some((b) => {
      const s = b.stats();
      return s.inFlight || s.queued > 0;
    });
  const healthCheck = (): Promise<string | null> | string | null => {
    if (Date.now() - health.at > 1000) {
      const probe = { at: Date.now(), check: Promise.resolve(null as string | null), done: false };
      probe.check = probeClassifier(classifier)
        .then(
          () => null,
          (e: Error) => e.message,
        )
        .then((problem) => {
          probe.done = true;
          lastProbe = problem;
          return problem;
        });
      health = probe;
    }
    if (!health.done && inferenceBusy()) return lastProbe;
    return health.check;
  };
  const images = new ImagePool(options.images);
  await images.warmUp();
  const loaded = async (path: string | undefined, bytes: Uint8Array | undefined, route: string) =>
    path === undefined ? null : bytes ? new LoadedFile(path, bytes, route, log) : LoadedFile.read(path, route, log);
  const modelFile = await loaded(options.modelPath, options.modelBytes, '/model.onnx');
  const decoderFile = await loaded(options.decoderPath, options.decoderBytes, '/model.decoder.onnx');
  const etags = new EtagCache();
  let allowedHosts = allowedHostNames('127.0.0.1', options.allowedHosts ?? []);

  // Every request is checked on its own before it joins a batch (batcher.ts): one client's bad values are that
  // client's 400 and never fail the run they would have shared.
  const classifyBatcher = new Batcher<Float32Array, Classification>(
    (images) => classifier.classify(images),
    policy,
    (items) => items.forEach((item, k) => checkValues(item, pixels, items.length === 1 ? 'the image' : `image ${k}`, 'pixel', [0, 1])),
  );
  const decodeBatcher = new Batcher<Float32Array, Float32Array>(
    (capsules) => classifier.decode(capsules),
    policy,
    (items) =>
      items.forEach((item, k) => checkValues(item, numClasses * digitDim, items.length === 1 ? 'the capsule set' : `capsule set ${k}`, 'capsule', null)),
  );
  let samples: Promise<SampleSet> | undefined;

  const app = Fastify({ logger: false, bodyLimit, requestTimeout: 60_000, return503OnClosing: true, forceCloseConnections: 'idle' });

  app.addHook('onRequest', async (request, reply) => {
    // DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends Host: evil.example.
    const host = request.headers.host;
    if (host !== undefined && !allowedHosts.has(hostOf(host))) {
      return reply.code(403).send({
        error: {
          code: 'HOST_NOT_ALLOWED',
          message: `Host ${JSON.stringify(host.slice(0, 100))} is not served here: use the server's own address, or start it with --allowed-host NAME`,
        },
      });
    }
    // A cross-origin "simple" POST (a form, or fetch without preflight) reaches the handler before any CORS
    // check in the browser: refuse it unless --cors names its origin.
    const origin = request.headers.origin;
    if (request.method === 'POST' && origin !== undefined && origin !== options.cors) {
      let sameOrigin = false;
      try {
        sameOrigin = new URL(origin).host === host;
      } catch {
        sameOrigin = false;
      }
      if (!sameOrigin) {
        return reply.code(403).send({
          error: {
            code: 'CROSS_ORIGIN',
            message: `requests from origin ${JSON.stringify(origin.slice(0, 100))} are not allowed: start the server with --cors ORIGIN to allow one`,
          },
        });
      }
    }
  });
  if (options.cors) await app.register(cors, { origin: options.cors, methods: ['GET', 'POST'] });

  app.addHook('onSend', async (_request, reply, payload) => {
    if (String(reply.getHeader('content-type') ?? '').startsWith('text/html')) reply.header('Content-Security-Policy', PAGE_CSP);
    // Cross-origin isolation (SharedArrayBuffer, so wasm threads) for the page and everything it loads.
    reply.header('Cross-Origin-Opener-Policy', 'same-origin');
    reply.header('Cross-Origin-Embedder-Policy', 'require-corp');
    reply.header('Cross-Origin-Resource-Policy', 'same-origin');
    reply.header('X-Content-Type-Options', 'nosniff');
    // While shutting down, a request that was in flight gets its answer and its connection closed, so
    // close() does not wait out the keep-alive timeout.
    if (closing) reply.header('Connection', 'close');
    return payload;
  });

  if (options.logRequests) {
    app.addHook('onResponse', async (request, reply) => {
      log(`${request.method} ${request.url} ${reply.statusCode} ${reply.elapsedTime.toFixed(1)} ms`);
    });
  }

  app.setErrorHandler((error: FastifyError | ServeError | BatchTooLargeError | QueueFullError, request, reply) => {
    if (error instanceof ServeError) return reply.code(error.statusCode).send({ error: { code: error.code, message: error.message } });
    if (error instanceof BatchTooLargeError) return reply.code(413).send({ error: { code: 'TOO_MANY_IMAGES', message: error.message } });
    if (error instanceof QueueFullError)
      return reply
        .code(503)
        .header('Retry-After', '1')
        .send({ error: { code: 'OVERLOADED', message: error.message } });
    // The runtime refusing a request's own input (after batcher.ts reran it alone): that request's 400.
    if (error instanceof InputError) return reply.code(400).send({ error: { code: 'BAD_INPUT', message: withoutPaths(error.message.split('\n')[0]!) } });
    const status = (error as FastifyError).statusCode ?? 500;
    const fastifyCode = (error as FastifyError).code ?? '';
    if (status >= 400 && status < 500) {
      let message = error.message;
      if (fastifyCode === 'FST_ERR_CTP_BODY_TOO_LARGE' || fastifyCode === 'FST_REQ_FILE_TOO_LARGE') {
        message = `request body is larger than ${bodyLimit} bytes (the server's --body-limit)`;
      } else if (fastifyCode === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
        message = `${message}: send application/json, image/png, image/jpeg or multipart/form-data`;
      } else if (fastifyCode === 'FST_ERR_CTP_INVALID_JSON_BODY' || fastifyCode === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
        message = `${message}: the body must be one JSON object`;
      } else {
        message = clientErrorMessage(error as FastifyError, request.headers['content-encoding'], policy.maxBatch) ?? message;
      }
      return reply
        .code(status)
        .send({ error: { code: FASTIFY_CODES[fastifyCode] ?? (fastifyCode || 'BAD_REQUEST'), message: withoutPaths(oneLine(message)) } });
    }
    log(`error: ${error.stack ?? error.message}`);
    return reply.code(500).send({ error: { code: 'INTERNAL', message: `internal error: ${withoutPaths(error.message)}` } });
  });

  app.setNotFoundHandler((request, reply) => {
    reply
      .code(404)
      .send({ error: { code: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}: see GET /v1/model and the page at /` } });
  });

  // JSON, a raw PNG or JPEG body, or multipart uploads (@fastify/multipart); anything else is a 415.
  app.removeContentTypeParser('text/plain');
  // Fastify's own JSON parser refuses a __proto__ or constructor.prototype key (prototype poisoning) but says only
  // "not valid JSON": the same rule, with the reason said.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (_request, body, done) => {
    const text = String(body);
    const refuse = (code: string, message: string) => done(Object.assign(new Error(message), { statusCode: 400, code }), undefined);
    if (text.trim() === '') return refuse('FST_ERR_CTP_EMPTY_JSON_BODY', "Body cannot be empty when content-type is set to 'application/json'");
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      return refuse('FST_ERR_CTP_INVALID_JSON_BODY', `Body is not valid JSON (${oneLine((e as Error).message)})`);
    }
    const key = prototypeKey(value);
    if (key) return refuse('PROTOTYPE_KEY', `the JSON body has a ${key} key, which the server refuses (it could change the prototype of objects): remove it`);
    done(null, value);
  });
  app.addContentTypeParser(['image/png', 'image/jpeg', 'application/octet-stream'], { parseAs: 'buffer', bodyLimit }, (_request, body, done) =>
    done(null, body),
  );
  app.addHook('preParsing', async (request, _reply, payload) => {
    const encoding = String(request.headers['content-encoding'] ?? 'identity')
      .trim()
      .toLowerCase();
    if (encoding === 'identity' || encoding === '') return payload;
    if (!['gzip', 'x-gzip', 'deflate', 'br'].includes(encoding)) {
      throw new ServeError(
        415,
        'UNSUPPORTED_ENCODING',
        `Content-Encoding ${JSON.stringify(encoding.slice(0, 40))} is not supported: send gzip, deflate, br or an uncompressed body`,
      );
    }
    const inflated = decompressBody(encoding, payload);
    // (request.isMultipart() is not known yet: the content-type parsers run after this hook.)
    if (/^multipart\//i.test(String(request.headers['content-type'] ?? '').trim())) {
      // @fastify/multipart reads the request object itself (request.raw), not the stream this hook returns: put the
      // inflated body in the request's place, carrying the request's fields that it and Fastify read. The upload's
      // size limit is counted on the inflated files (readImages).
      const incoming = request.raw;
      request.raw = Object.assign(inflated, {
        headers: incoming.headers,
        url: incoming.url,
        method: incoming.method,
        socket: incoming.socket,
        httpVersion: incoming.httpVersion,
      }) as unknown as typeof incoming;
    }
    return inflated;
  });
  await app.register(multipart, { limits: { fileSize: bodyLimit, files: policy.maxBatch, fields: 10, parts: policy.maxBatch + 10 } });

  // ---- API ------------------------------------------------------------------------------------------------

  app.get('/healthz', async (_request, reply) => {
    if (closing) return reply.code(503).send({ status: 'shutting-down' });
    const problem = await healthCheck();
    if (problem) return reply.code(503).send({ status: 'unhealthy', device: classifier.device, error: { code: 'MODEL_PROBE_FAILED', message: problem } });
    const { classify, decode } = { classify: classifyBatcher.stats(), decode: decodeBatcher.stats() };
    return {
      status: 'ok',
      device: classifier.device,
      uptimeS: Math.round((Date.now() - startedAt) / 1000),
      inference: { queued: classify.queued + decode.queued, running: classify.inFlight || decode.inFlight },
      images: images.stats(),
    };
  });

  app.get('/v1/model', async () => ({
    device: classifier.device,
    deviceReport: withoutPaths(classifier.deviceReport),
    metadata: { ...metadata, dataset: publicDataset(metadata.dataset) },
    input: { name: 'images', shape: [null, shape.height, shape.width, shape.channels], layout: 'NHWC', range: [0, 1] },
    preprocessing: { ...metadata.preprocessing, recorded: metadata.preprocessingRecorded, presenceThreshold: metadata.presenceThreshold },
    batching: policy,
    limits: { bodyLimitBytes: bodyLimit, maxImagesPerRequest: policy.maxBatch },
    files: {
      model: modelFile ? '/model.onnx' : null,
      decoder: decoderFile ? '/model.decoder.onnx' : null,
      // Whether the files on disk still hold what the server loaded (served from memory either way).
      onDisk: { model: modelFile ? await modelFile.diskState() : null, decoder: decoderFile ? await decoderFile.diskState() : null },
    },
  }));

  await app.register(kserveRoutes, {
    prefix: '/v2',
    classifier,
    classifyBatcher,
    decodeBatcher,
    maxBatch: policy.maxBatch,
    modelName: options.modelName ?? 'capsnet',
  });

  app.get('/v1/stats', async () => ({ classify: classifyBatcher.stats(), decode: decodeBatcher.stats() }));

  app.get('/v1/samples', async () => {
    samples ??= loadSamples(metadata, options.samplesPerClass ?? 3, options.samplesData).then((set) => ({
      ...set,
      dataset: publicDataset(set.dataset),
      ...(set.note ? { note: withoutPaths(set.note) } : {}),
    }));
    return samples;
  });

  app.post('/v1/classify', async (request, reply) => {
    const query = request.query as Record<string, unknown>;
    const withReconstruction = flag(query.reconstruction, true);
    if (query.invert !== undefined) throw badRequest('BAD_QUERY', 'the invert parameter is now polarity: use polarity=dark-on-light (or auto, light-on-dark)');
    const polarity = parsePolarity(query.polarity);
    const images = await readImages(request, polarity);
    if (images.length === 0)
      throw badRequest('NO_IMAGE', 'no image in the request: send {"image": ...}, {"images": [...]}, a PNG or JPEG body, or PNG or JPEG files');
    if (images.length > policy.maxBatch) {
      throw new ServeError(413, 'TOO_MANY_IMAGES', `${images.length} images in one request; the most is ${policy.maxBatch}: split the request`);
    }
    const result = await classifyBatcher.submit(images);
    reply.header('Server-Timing', `queue;dur=${result.queuedMs.toFixed(2)}, inference;dur=${result.runMs.toFixed(2)}`);
    return {
      device: classifier.device,
      shape: [shape.height, shape.width, shape.channels],
      results: result.outputs.map((c) => ({
        label: c.label,
        labelName: c.labelName,
        ...(c.reason ? { reason: c.reason } : {}),
        longest: c.longest,
        lengths: round6(c.lengths),
        capsules: rows(c.capsules, digitDim),
        ...(withReconstruction ? { reconstruction: round6(c.reconstruction) } : {}),
      })),
      batch: batchInfo(result),
    };
  });

  app.post('/v1/decode', async (request) => {
    const body = jsonObject(request, '{"capsules": [[...]]} or {"batch": [...]}');
    let sets: Float32Array[];
    if (body.capsules !== undefined && body.batch !== undefined)
      throw badRequest('BAD_INPUT', 'send either "capsules" (one set) or "batch" (a list of sets), not both');
    if (body.capsules !== undefined) sets = [capsulesFromJson(body.capsules, numClasses, digitDim, 'capsules')];
    else if (Array.isArray(body.batch)) {
      if (body.batch.length > policy.maxBatch) {
        throw new ServeError(413, 'TOO_MANY_IMAGES', `${body.batch.length} capsule sets in one request; the most is ${policy.maxBatch}: split the request`);
      }
      sets = body.batch.map((set, i) => capsulesFromJson(set, numClasses, digitDim, `batch[${i}]`));
    } else throw badRequest('BAD_INPUT', `the body needs "capsules": [${numClasses}][${digitDim}] numbers (or "batch": a list of those)`);
    if (sets.length === 0) throw badRequest('NO_INPUT', '"batch" is empty');
    if (flag(body.mask, false)) sets = sets.map((s) => maskLongest(s, numClasses, digitDim));
    const result = await decodeBatcher.submit(sets);
    return {
      device: classifier.device,
      shape: [shape.height, shape.width, shape.channels],
      reconstructions: result.outputs.map(round6),
      batch: batchInfo(result),
    };
  });

  function jsonObject(request: FastifyRequest, expected: string): Record<string, unknown> {
    const body = request.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body) || Buffer.isBuffer(body)) {
      throw badRequest('BAD_INPUT', `the body must be a JSON object: ${expected}`);
    }
    return body as Record<string, unknown>;
  }

  async function readImages(request: FastifyRequest, polarity: Polarity): Promise<Float32Array[]> {
    if (request.isMultipart()) {
      const files: PngUpload[] = [];
      let bytes = 0;
      try {
        for await (const file of request.files()) {
          const buffer = await file.toBuffer();
          bytes += buffer.length;
          if (bytes > bodyLimit)
            throw new ServeError(413, 'BODY_TOO_LARGE', `the uploaded files are larger than ${bodyLimit} bytes together (the server's --body-limit)`);
          files.push({ bytes: buffer, what: `file ${files.length + 1} (${(file.filename || file.fieldname).slice(0, 100)})` });
        }
      } catch (e) {
        // Busboy's own errors (no boundary, a body cut short, a malformed part) are the client's: a 400 in one
        // line naming the fix, busboy's text kept in parentheses.
        const status = (e as FastifyError).statusCode;
        if (e instanceof ServeError || (status !== undefined && status >= 400 && status < 500)) throw e;
        throw badRequest(
          'BAD_MULTIPART',
          `the multipart body could not be read (${oneLine((e as Error).message)}): send multipart/form-data with a boundary and complete parts`,
        );
      }
      return images.decode(files, target, polarity, request.ip);
    }
    if (Buffer.isBuffer(request.body)) return images.decode([{ bytes: request.body, what: 'the request body' }], target, polarity, request.ip);
    const body = jsonObject(request, '{"image": [...]} or {"images": [[...], ...]}');
    if (body.image !== undefined && body.images !== undefined) throw badRequest('BAD_INPUT', 'send either "image" or "images", not both');
    if (body.image !== undefined) return [imageFromJson(body.image, target, { polarity, what: 'image' })];
    if (Array.isArray(body.images)) {
      if (body.images.length > policy.maxBatch) {
        throw new ServeError(413, 'TOO_MANY_IMAGES', `${body.images.length} images in one request; the most is ${policy.maxBatch}: split the request`);
      }
      return body.images.map((image, i) => imageFromJson(image, target, { polarity, what: `images[${i}]` }));
    }
    throw badRequest('BAD_INPUT', `the body needs "image": ${pixels} numbers or [rows][cols] arrays (or "images": a list of those)`);
  }

  // ---- the page and its assets ----------------------------------------------------------------------------

  const pageFiles = new Set(existsSync(PAGE_DIR) ? readdirSync(PAGE_DIR) : []);
  /** Send `bytes` with an ETag, or 304 when the browser already holds them (If-None-Match). */
  const sendCached = (request: FastifyRequest, reply: FastifyReply, type: string, etag: string, cache: string, body: () => unknown, size: number) => {
    reply.type(type).header('Cache-Control', cache).header('ETag', etag);
    if (matchesEtag(request.headers['if-none-match'], etag)) return reply.code(304).send();
    reply.header('Content-Length', size);
    return reply.send(body());
  };
  const sendFile = async (request: FastifyRequest, reply: FastifyReply, path: string, cache: string) => {
    const { etag, size } = await etags.get(path);
    return sendCached(request, reply, CONTENT_TYPES[extname(path)] ?? 'application/octet-stream', etag, cache, () => createReadStream(path), size);
  };
  const sendLoaded = async (request: FastifyRequest, reply: FastifyReply, file: LoadedFile) => {
    const state = await file.diskState();
    if (state !== 'same') reply.header('X-Capsnet-File-On-Disk', state);
    return sendCached(
      request,
      reply,
      CONTENT_TYPES['.onnx']!,
      file.etag,
      'no-cache',
      () => Buffer.from(file.bytes.buffer, file.bytes.byteOffset, file.bytes.byteLength),
      file.bytes.byteLength,
    );
  };
  const notFound = (what: string, fix: string) => new ServeError(404, 'NOT_FOUND', `${what} is not available: ${fix}`);

  app.get('/', async (request, reply) => sendFile(request, reply, join(PAGE_DIR, 'index.html'), 'no-cache'));
  app.get('/page/:file', async (request, reply) => {
    const { file } = request.params as { file: string };
    if (!pageFiles.has(file)) throw notFound(`/page/${file}`, 'see the page at /');
    return sendFile(request, reply, join(PAGE_DIR, file), 'no-cache');
  });
  app.get('/model.onnx', async (request, reply) => {
    if (!modelFile) throw notFound('the model file', 'start the server with a model path');
    return sendLoaded(request, reply, modelFile);
  });
  app.get('/model.decoder.onnx', async (request, reply) => {
    if (!decoderFile) throw notFound('the decoder file', 'export writes <model>.decoder.onnx beside the model');
    return sendLoaded(request, reply, decoderFile);
  });
  app.get('/ort/:file', async (request, reply) => {
    const { file } = request.params as { file: string };
    if (!ortDir || !/^ort[\w.-]*\.(mjs|wasm|map)$/.test(file) || !existsSync(join(ortDir, file))) {
      throw notFound(`/ort/${file}`, 'install onnxruntime-web beside capsnet-onnx (`npm install onnxruntime-web`)');
    }
    return sendFile(request, reply, join(ortDir, file), 'public, max-age=3600');
  });
  app.get('/web/:file', async (request, reply) => {
    const { file } = request.params as { file: string };
    if (!/^[\w.-]+$/.test(file) || file.startsWith('.') || !existsSync(join(webDir, file))) {
      throw notFound(`/web/${file}`, 'the browser bundles ship in the capsnet-onnx package (in its repository: `npm run build:web`)');
    }
    return sendFile(request, reply, join(webDir, file), 'no-cache');
  });

  return {
    app,
    classifier,
    stats: () => ({ classify: classifyBatcher.stats(), decode: decodeBatcher.stats() }),
    async listen(port, host) {
      allowedHosts = allowedHostNames(host, options.allowedHosts ?? []);
      await app.listen({ port, host });
      const address = app.server.address();
      const actualPort = typeof address === 'object' && address ? address.port : port;
      return `http://${host.includes(':') ? `[${host}]` : host}:${actualPort}`;
    },
    async close() {
      closing = true;
      await app.close();
      await Promise.all([classifyBatcher.idle(), decodeBatcher.idle()]);
      await images.close();
    },
  };
}

function parsePolarity(value: unknown): Polarity {
  try {
    return checkPolarity(value, 'the polarity parameter');
  } catch (e) {
    if (e instanceof PreprocessError) throw badRequest('BAD_QUERY', e.message);
    throw e;
  }
}

/**
 * One item of a request, checked before it joins a batch: its length, finite values and (for pixels) the range
 * [0, 1]. Throws the request's own 400 naming the item, the value and the fix.
 */
export function checkValues(item: Float32Array, size: number, what: string, unit: string, range: [number, number] | null): void {
  if (!(item instanceof Float32Array) || item.length !== size) {
    throw badRequest('WRONG_DIMENSIONS', `${what} has ${item?.length ?? 0} values; the model takes ${size}: send exactly that many`);
  }
  for (let i = 0; i < item.length; i++) {
    const v = item[i]!;
    if (!Number.isFinite(v)) throw badRequest('NOT_FINITE', `${what} has ${v} at flat index ${i}: send finite numbers only`);
    if (range && (v < range[0] || v > range[1])) {
      const hint = range[1] === 1 && v > 1 && v <= 255 ? ' (divide 0-255 values by 255 before sending)' : '';
      throw badRequest('OUT_OF_RANGE', `${what} has the ${unit} value ${v} at flat index ${i}: ${unit} values must be in [${range[0]}, ${range[1]}]${hint}`);
    }
  }
}

const oneLine = (text: string) => text.split('\n')[0]!.trim();

/** The first `"__proto__"` or `"constructor.prototype"` key anywhere in a parsed JSON value; undefined when none. */
export function prototypeKey(value: unknown): string | undefined {
  const pending: unknown[] = [value];
  while (pending.length) {
    const item = pending.pop();
    if (typeof item !== 'object' || item === null) continue;
    if (Array.isArray(item)) {
      for (const v of item) if (typeof v === 'object' && v !== null) pending.push(v);
      continue;
    }
    if (Object.hasOwn(item, '__proto__')) return '"__proto__"';
    const ctor = (item as Record<string, unknown>).constructor;
    if (Object.hasOwn(item, 'constructor') && typeof ctor === 'object' && ctor !== null && Object.hasOwn(ctor, 'prototype')) {
      return '"constructor.prototype"';
    }
    for (const v of Object.values(item)) if (typeof v === 'object' && v !== null) pending.push(v);
  }
  return undefined;
}

/**
 * Third-party client errors (zlib's, busboy's through @fastify/multipart) as one line naming the field and the
 * fix, their own text in parentheses; null for the others.
 */
export function clientErrorMessage(error: FastifyError, contentEncoding: string | string[] | undefined, maxBatch: number): string | null {
  const code = error.code ?? '';
  const own = oneLine(error.message);
  if (code.startsWith('Z_') || code === 'ERR__ERROR_FORMAT_PADDING_1' || code.startsWith('ERR_BROTLI')) {
    const encoding = String(contentEncoding ?? 'the Content-Encoding').slice(0, 20);
    return `the body is not valid ${encoding} data (${own}): send the body compressed as its Content-Encoding header says, or leave the header out`;
  }
  if (code === 'FST_FILES_LIMIT') return `more than ${maxBatch} files in one upload (--max-batch): split the request`;
  if (code === 'FST_PARTS_LIMIT' || code === 'FST_FIELDS_LIMIT') {
    return `the multipart body has too many parts (${own}): send at most ${maxBatch} files and 10 other fields`;
  }
  if (code === 'FST_INVALID_MULTIPART_CONTENT_TYPE')
    return 'the body is not multipart/form-data: send files as multipart/form-data, or one PNG or JPEG as the body';
  return null;
}

/** Zero every capsule but the longest, as the decoder expects at inference time. */
export function maskLongest(set: Float32Array, numClasses: number, digitDim: number): Float32Array {
  let best = 0;
  let bestLength = -1;
  for (let k = 0; k < numClasses; k++) {
    let sum = 0;
    for (let d = 0; d < digitDim; d++) sum += set[k * digitDim + d]! ** 2;
    if (sum > bestLength) [best, bestLength] = [k, sum];
  }
  const out = new Float32Array(set.length);
  out.set(set.subarray(best * digitDim, (best + 1) * digitDim), best * digitDim);
  return out;
}
