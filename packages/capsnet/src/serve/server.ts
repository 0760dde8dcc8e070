/**
 * The HTTP server: wiring only. A JSON API over one Classifier (serve/api.ts, /v1), the KServe v2 protocol
 * (serve/kserve.ts, /v2), both over the same batched inference queues (serve/inference.ts), /healthz
 * (serve/health.ts), and the browser page with the files it loads (serve/static.ts), which runs the same model
 * client-side with onnxruntime-web.
 *
 * Hardened for a careless or hostile client: image decoding runs in a worker pool (serve/image-pool.ts) with
 * per-request limits; every input error is a 4xx in the API's JSON shape (serve/errors.ts); gzip/deflate/br bodies
 * are inflated under the same body limit (serve/body.ts); requests must name an allowed Host (DNS rebinding) and
 * cross-origin POSTs are refused unless `cors` names their origin (serve/guard.ts); the page gets a
 * Content-Security-Policy; no response names a server path.
 *
 * A new /v1 route is one handler in api.ts; a new static file, one in static.ts.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Classifier } from '@capsnet-onnx/runtime';
import type { DimensionFindings } from '@capsnet-onnx/core';
import { WEB_DIST } from '../web/paths.ts';
import { apiRoutes } from './api.ts';
import type { BatchPolicy, BatchStats } from './batcher.ts';
import { bodyParsing } from './body.ts';
import { errorHandler, notFoundHandler } from './errors.ts';
import { allowedHostNames, guard } from './guard.ts';
import { healthRoute, probeClassifier } from './health.ts';
import { ImagePool, type ImagePoolOptions } from './image-pool.ts';
import { createInference } from './inference.ts';
import { kserveRoutes } from './kserve.ts';
import { loadServedFile, staticFiles } from './static.ts';

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
  /** What each capsule dimension does (checked: core's checkDimensionFindings), served in GET /v1/model for the page's sliders. */
  dimensions?: DimensionFindings;
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

export async function createServer(options: ServerOptions): Promise<CapsNetServer> {
  const { classifier } = options;
  const log = options.log ?? (() => {});
  const maxBatch = options.maxBatch ?? 32;
  const policy: BatchPolicy = { maxBatch, maxWaitMs: options.batchWaitMs ?? 2, maxQueue: options.maxQueue ?? 32 * maxBatch };
  const bodyLimit = options.bodyLimit ?? 4 * 1024 * 1024;
  let closing = false;
  let allowedHosts = allowedHostNames('127.0.0.1', options.allowedHosts ?? []);
  // Refuse to start a model that cannot run or whose outputs disagree with its metadata, instead of
  // answering every request with a 500 later.
  await probeClassifier(classifier);
  const images = new ImagePool(options.images);
  await images.warmUp();
  const modelFile = await loadServedFile(options.modelPath, options.modelBytes, '/model.onnx', log);
  const decoderFile = await loadServedFile(options.decoderPath, options.decoderBytes, '/model.decoder.onnx', log);
  const inference = createInference(classifier, policy);

  const app = Fastify({ logger: false, bodyLimit, requestTimeout: 60_000, return503OnClosing: true, forceCloseConnections: 'idle' });
  await guard(app, { allowedHosts: () => allowedHosts, cors: options.cors, closing: () => closing });
  // Every 4xx answered on a route that feeds a queue is a refused input for that queue's invalidRequests (GET
  // /v1/stats): bad JSON, an image that does not decode, wrong values, too many images alike.
  const decoderModel = `${options.modelName ?? 'capsnet'}_decoder`;
  app.addHook('onResponse', async (request, reply) => {
    if (reply.statusCode < 400 || reply.statusCode >= 500 || request.method !== 'POST') return;
    const route = request.routeOptions.url ?? '';
    if (route === '/v1/classify') inference.countInvalid('classify');
    else if (route === '/v1/decode') inference.countInvalid('decode');
    else if (route.startsWith('/v2/models/') && route.endsWith('/infer')) {
      inference.countInvalid((request.params as { name?: string }).name === decoderModel ? 'decode' : 'classify');
    }
  });
  if (options.logRequests) {
    app.addHook('onResponse', async (request, reply) => log(`${request.method} ${request.url} ${reply.statusCode} ${reply.elapsedTime.toFixed(1)} ms`));
  }
  app.setErrorHandler(errorHandler({ bodyLimit, maxBatch }, log));
  app.setNotFoundHandler(notFoundHandler);
  await bodyParsing(app, { bodyLimit, maxBatch });

  await app.register(healthRoute, { classifier, inference, images, closing: () => closing });
  await app.register(apiRoutes, {
    prefix: '/v1',
    classifier,
    inference,
    images,
    policy,
    bodyLimit,
    modelFile,
    decoderFile,
    samplesPerClass: options.samplesPerClass ?? 3,
    dimensions: options.dimensions ?? null,
    ...(options.samplesData ? { samplesData: options.samplesData } : {}),
  });
  await app.register(kserveRoutes, {
    prefix: '/v2',
    classifier,
    classifyBatcher: inference.classify,
    decodeBatcher: inference.decode,
    maxBatch,
    modelName: options.modelName ?? 'capsnet',
  });
  await app.register(staticFiles, { modelFile, decoderFile, webDir: options.webDir ?? WEB_DIST });

  return {
    app,
    classifier,
    stats: inference.stats,
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
      await inference.idle();
      await images.close();
    },
  };
}
