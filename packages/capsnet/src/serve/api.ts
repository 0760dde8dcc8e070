/**
 * The /v1 JSON API as a Fastify plugin (register with `{ prefix: '/v1' }`), over the batched queues of
 * serve/inference.ts. Its answers' types are exported for clients: the page (serve/page/) imports them as types.
 *
 *   POST /v1/classify   JSON {image} | {images: [...]}, a raw PNG or JPEG body, or multipart PNG/JPEG files;
 *                       ?polarity=auto|light-on-dark|dark-on-light, ?reconstruction=false; a result's label is null
 *                       (with a reason) when the image has no ink or no capsule reaches the presence threshold
 *   POST /v1/decode     JSON {capsules} | {batch: [...]}, optional "mask": true -> reconstructions
 *   GET  /v1/model      metadata, device, batching policy, limits, and what each capsule dimension does (if served)
 *   GET  /v1/samples    a few real test images of the model's data set
 *   GET  /v1/stats      batching counters
 */
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import type { Classifier, ModelMetadata } from '@capsnet-onnx/runtime';
import { checkPolarity, type DimensionFindings, type Polarity, PreprocessError, type Preprocessing, publicDataName } from '@capsnet-onnx/core';
import type { BatchPolicy, BatchResult, BatchStats } from './batcher.ts';
import { ServeError, badRequest, oneLine, withoutPaths } from './errors.ts';
import type { LoadedFile, DiskState } from './files.ts';
import type { ImagePool, PngUpload } from './image-pool.ts';
import { capsulesFromJson, imageFromJson, type UploadTarget } from './images.ts';
import type { Inference } from './inference.ts';
import { loadSamples, type SampleSet } from './samples.ts';

export type { Sample, SampleSet } from './samples.ts';

/** How a request's items were batched: the run's size, the time queued and the run's time (ms, 2 decimals). */
export interface BatchInfo {
  size: number;
  queuedMs: number;
  inferenceMs: number;
}

/** GET /v1/model. */
export interface ModelInfo {
  device: string;
  deviceReport: string;
  /** The file's metadata; `dataset` without any server path. */
  metadata: ModelMetadata;
  /** The model's input: `shape` is [batch (null: any), H, W, C]. */
  input: { name: 'images'; shape: [null, number, number, number]; layout: 'NHWC'; range: [0, 1] };
  preprocessing: Preprocessing & { recorded: boolean; presenceThreshold: number };
  batching: BatchPolicy;
  limits: { bodyLimitBytes: number; maxImagesPerRequest: number };
  /** URL paths of the model files (null: not served) and whether the files on disk still hold what was loaded. */
  files: { model: string | null; decoder: string | null; onDisk: { model: DiskState | null; decoder: DiskState | null } };
  /**
   * What each capsule dimension was measured to do (`capsnet serve --dimensions FILE`, or the pretrained model's
   * file), per class and overall; null when the server was given none.
   */
  dimensions: DimensionFindings | null;
}

/** One image's answer in POST /v1/classify. */
export interface ClassifyResult {
  /** The class present, or null (with `reason`) when the image has no ink or no capsule reaches the threshold. */
  label: number | null;
  labelName: string | null;
  reason?: string;
  /** The class of the longest capsule, the one the reconstruction draws. */
  longest: number;
  /** Capsule lengths [classes]. */
  lengths: number[];
  /** Digit capsules [classes][digitDim]. */
  capsules: number[][];
  /** H*W*C pixels in [0, 1]; left out with ?reconstruction=false. */
  reconstruction?: number[];
}

/** POST /v1/classify. */
export interface ClassifyResponse {
  device: string;
  /** [H, W, C] */
  shape: [number, number, number];
  results: ClassifyResult[];
  batch: BatchInfo;
}

/** POST /v1/decode. */
export interface DecodeResponse {
  device: string;
  shape: [number, number, number];
  /** One H*W*C reconstruction per capsule set. */
  reconstructions: number[][];
  batch: BatchInfo;
}

/** GET /v1/stats. */
export interface StatsResponse {
  classify: BatchStats;
  decode: BatchStats;
}

export interface ApiOptions {
  classifier: Classifier;
  inference: Inference;
  images: ImagePool;
  policy: BatchPolicy;
  bodyLimit: number;
  modelFile: LoadedFile | null;
  decoderFile: LoadedFile | null;
  /** What each capsule dimension does (GET /v1/model), or null. */
  dimensions: DimensionFindings | null;
  /** Test images per class for /v1/samples, and the data spec to read them from (default the model's data set). */
  samplesPerClass: number;
  samplesData?: string;
}

/** The data set's public name (core's publicDataName, for files exported before it applied): `idx:/srv/data/kmnist` -> `idx:kmnist`. */
export function publicDataset(name: string): string {
  return withoutPaths(publicDataName(name));
}

/** float32 values to 7 significant digits: what float32 holds, in a shorter JSON number. */
const round7 = (values: ArrayLike<number>): number[] => Array.from(values, (v) => Number(v.toPrecision(7)));

function rows(values: Float32Array, width: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < values.length; i += width) out.push(round7(values.subarray(i, i + width)));
  return out;
}

function batchInfo(result: BatchResult<unknown>): BatchInfo {
  return { size: result.batchSize, queuedMs: Math.round(result.queuedMs * 100) / 100, inferenceMs: Math.round(result.runMs * 100) / 100 };
}

function flag(value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === '') return fallback;
  if (value === true || value === 'true' || value === '1') return true;
  if (value === false || value === 'false' || value === '0') return false;
  throw badRequest('BAD_QUERY', `expected true or false, got ${JSON.stringify(value)}`);
}

function parsePolarity(value: unknown): Polarity {
  try {
    return checkPolarity(value, 'the polarity parameter');
  } catch (e) {
    if (e instanceof PreprocessError) throw badRequest('BAD_QUERY', e.message);
    throw e;
  }
}

function jsonObject(request: FastifyRequest, expected: string): Record<string, unknown> {
  const body = request.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body) || Buffer.isBuffer(body)) {
    throw badRequest('BAD_INPUT', `the body must be a JSON object: ${expected}`);
  }
  return body as Record<string, unknown>;
}

const tooMany = (count: number, what: string, most: number) =>
  new ServeError(413, 'TOO_MANY_IMAGES', `${count} ${what} in one request; the most is ${most}: split the request`);

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

export async function apiRoutes(app: FastifyInstance, options: ApiOptions): Promise<void> {
  const { classifier, inference, images, policy, bodyLimit, modelFile, decoderFile } = options;
  const metadata = classifier.metadata;
  const { numClasses, digitDim } = metadata;
  const shape: [number, number, number] = [metadata.inputHeight, metadata.inputWidth, metadata.inputChannels];
  const target: UploadTarget = { shape: { height: shape[0], width: shape[1], channels: shape[2] }, preprocessing: metadata.preprocessing };
  let samples: Promise<SampleSet> | undefined;

  /** The request's images: JSON, a PNG or JPEG body, or multipart files (decoded in the worker pool). */
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
      if (body.images.length > policy.maxBatch) throw tooMany(body.images.length, 'images', policy.maxBatch);
      return body.images.map((image, i) => imageFromJson(image, target, { polarity, what: `images[${i}]` }));
    }
    const pixels = shape[0] * shape[1] * shape[2];
    throw badRequest('BAD_INPUT', `the body needs "image": ${pixels} numbers or [rows][cols] arrays (or "images": a list of those)`);
  }

  app.get(
    '/model',
    async (): Promise<ModelInfo> => ({
      device: classifier.device,
      deviceReport: withoutPaths(classifier.deviceReport),
      metadata: { ...metadata, dataset: publicDataset(metadata.dataset) },
      input: { name: 'images', shape: [null, ...shape], layout: 'NHWC', range: [0, 1] },
      preprocessing: { ...metadata.preprocessing, recorded: metadata.preprocessingRecorded, presenceThreshold: metadata.presenceThreshold },
      batching: policy,
      limits: { bodyLimitBytes: bodyLimit, maxImagesPerRequest: policy.maxBatch },
      files: {
        model: modelFile ? '/model.onnx' : null,
        decoder: decoderFile ? '/model.decoder.onnx' : null,
        // Whether the files on disk still hold what the server loaded (served from memory either way).
        onDisk: { model: modelFile ? await modelFile.diskState() : null, decoder: decoderFile ? await decoderFile.diskState() : null },
      },
      dimensions: options.dimensions,
    }),
  );

  app.get('/stats', async (): Promise<StatsResponse> => inference.stats());

  app.get('/samples', async (): Promise<SampleSet> => {
    samples ??= loadSamples(metadata, options.samplesPerClass, options.samplesData).then((set) => ({
      ...set,
      dataset: publicDataset(set.dataset),
      ...(set.note ? { note: withoutPaths(set.note) } : {}),
    }));
    return samples;
  });

  app.post('/classify', async (request, reply): Promise<ClassifyResponse> => {
    const query = request.query as Record<string, unknown>;
    const withReconstruction = flag(query.reconstruction, true);
    if (query.invert !== undefined) throw badRequest('BAD_QUERY', 'the invert parameter is now polarity: use polarity=dark-on-light (or auto, light-on-dark)');
    const polarity = parsePolarity(query.polarity);
    const inputs = await readImages(request, polarity);
    if (inputs.length === 0)
      throw badRequest('NO_IMAGE', 'no image in the request: send {"image": ...}, {"images": [...]}, a PNG or JPEG body, or PNG or JPEG files');
    if (inputs.length > policy.maxBatch) throw tooMany(inputs.length, 'images', policy.maxBatch);
    const result = await inference.classify.submit(inputs);
    reply.header('Server-Timing', `queue;dur=${result.queuedMs.toFixed(2)}, inference;dur=${result.runMs.toFixed(2)}`);
    return {
      device: classifier.device,
      shape,
      results: result.outputs.map((c) => ({
        label: c.label,
        labelName: c.labelName,
        ...(c.reason ? { reason: c.reason } : {}),
        longest: c.longest,
        lengths: round7(c.lengths),
        capsules: rows(c.capsules, digitDim),
        ...(withReconstruction ? { reconstruction: round7(c.reconstruction) } : {}),
      })),
      batch: batchInfo(result),
    };
  });

  app.post('/decode', async (request): Promise<DecodeResponse> => {
    const body = jsonObject(request, '{"capsules": [[...]]} or {"batch": [...]}');
    let sets: Float32Array[];
    if (body.capsules !== undefined && body.batch !== undefined)
      throw badRequest('BAD_INPUT', 'send either "capsules" (one set) or "batch" (a list of sets), not both');
    if (body.capsules !== undefined) sets = [capsulesFromJson(body.capsules, numClasses, digitDim, 'capsules')];
    else if (Array.isArray(body.batch)) {
      if (body.batch.length > policy.maxBatch) throw tooMany(body.batch.length, 'capsule sets', policy.maxBatch);
      sets = body.batch.map((set, i) => capsulesFromJson(set, numClasses, digitDim, `batch[${i}]`));
    } else throw badRequest('BAD_INPUT', `the body needs "capsules": [${numClasses}][${digitDim}] numbers (or "batch": a list of those)`);
    if (sets.length === 0) throw badRequest('NO_INPUT', '"batch" is empty');
    if (flag(body.mask, false)) sets = sets.map((s) => maskLongest(s, numClasses, digitDim));
    const result = await inference.decode.submit(sets);
    return { device: classifier.device, shape, reconstructions: result.outputs.map(round7), batch: batchInfo(result) };
  });
}
