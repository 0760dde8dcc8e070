/**
 * The KServe v2 / Open Inference Protocol over HTTP/REST, beside the server's own /v1 API, so that one client
 * works against `capsnet serve`, Triton and KServe alike. JSON tensors only (no binary tensor extension).
 *
 *   GET  /v2                                   server metadata {name, version, extensions}
 *   GET  /v2/health/live, /v2/health/ready     200 when live / ready
 *   GET  /v2/models/{name}[/versions/1]        model metadata {name, versions, platform, inputs, outputs}
 *   GET  /v2/models/{name}[/versions/1]/ready  200 when the model is ready
 *   POST /v2/models/{name}[/versions/1]/infer  {id?, inputs: [{name, shape, datatype, data}], outputs?: [{name}]}
 *                                              -> {model_name, model_version, id?, outputs: [{name, shape, datatype, data}]}
 *
 * Two models, named as `capsnet export --triton` names them: NAME (images [N, H, W, C] -> lengths, capsules,
 * reconstruction) and NAME_decoder (masked_capsules [N, classes, digitDim] -> reconstruction). Their requests go
 * through the same batchers as /v1/classify and /v1/decode. The classifier's `coupling` output is in the ONNX file
 * (and so in Triton) but not served here. Errors are the protocol's `{"error": "message"}` with a 4xx status
 * (404 for an unknown model or version, 400 for a malformed request, 413 and 503 as in /v1).
 */
import { createRequire } from 'node:module';
import type { FastifyError, FastifyInstance } from 'fastify';
import { IO_NAMES, InputError } from '@capsnet-onnx/core';
import type { Classification, Classifier } from '@capsnet-onnx/runtime';
import { type Batcher, BatchTooLargeError, QueueFullError } from './batcher.ts';
import { ServeError, badRequest } from './errors.ts';
import { numericTensor } from './images.ts';

export interface KServeOptions {
  classifier: Classifier;
  classifyBatcher: Batcher<Float32Array, Classification>;
  decodeBatcher: Batcher<Float32Array, Float32Array>;
  /** Most items in one request (the batchers' maxBatch). */
  maxBatch: number;
  /** The classifier's model name; the decoder is `${modelName}_decoder`. */
  modelName: string;
}

/** The only version served: an exported file is one version, as in a Triton repository's `1/`. */
export const MODEL_VERSION = '1';

interface TensorSpec {
  name: string;
  datatype: 'FP32';
  /** -1 for the batch dimension. */
  shape: number[];
}

interface ModelSpec {
  name: string;
  input: TensorSpec;
  outputs: TensorSpec[];
}

const fp32 = (name: string, shape: number[]): TensorSpec => ({ name, datatype: 'FP32', shape: [-1, ...shape] });

const serverVersion = (): string => {
  try {
    return (createRequire(import.meta.url)('../../package.json') as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
};

/** float32 values to 7 significant digits: what float32 holds, in a shorter JSON number. */
const round7 = (values: ArrayLike<number>): number[] => Array.from(values, (v) => Number(v.toPrecision(7)));

const notFound = (message: string) => new ServeError(404, 'NOT_FOUND', message);

/** Register the /v2 routes on `app` (call with `{ prefix: '/v2' }`). */
export async function kserveRoutes(app: FastifyInstance, options: KServeOptions): Promise<void> {
  const { classifier, maxBatch, modelName } = options;
  const m = classifier.metadata;
  const pixels = m.inputHeight * m.inputWidth * m.inputChannels;
  const classifierSpec: ModelSpec = {
    name: modelName,
    input: fp32(IO_NAMES.images, [m.inputHeight, m.inputWidth, m.inputChannels]),
    outputs: [fp32(IO_NAMES.lengths, [m.numClasses]), fp32(IO_NAMES.capsules, [m.numClasses, m.digitDim]), fp32(IO_NAMES.reconstruction, [pixels])],
  };
  const decoderSpec: ModelSpec = {
    name: `${modelName}_decoder`,
    input: fp32(IO_NAMES.maskedCapsules, [m.numClasses, m.digitDim]),
    outputs: [fp32(IO_NAMES.reconstruction, [pixels])],
  };
  const models = new Map([classifierSpec, decoderSpec].map((s) => [s.name, s]));

  // The protocol's error body is {"error": "<message>"}, not /v1's {error: {code, message}}.
  app.setErrorHandler((error: FastifyError | ServeError | BatchTooLargeError | QueueFullError, _request, reply) => {
    if (error instanceof ServeError) return reply.code(error.statusCode).send({ error: error.message });
    if (error instanceof BatchTooLargeError) return reply.code(400).send({ error: error.message });
    if (error instanceof QueueFullError) return reply.code(503).header('Retry-After', '1').send({ error: error.message });
    if (error instanceof InputError) return reply.code(400).send({ error: oneLine(error.message) });
    const status = (error as FastifyError).statusCode ?? 500;
    if (status >= 400 && status < 500) return reply.code(status).send({ error: clientMessage(error as FastifyError) });
    return reply.code(500).send({ error: `internal error: ${oneLine(error.message)}` });
  });
  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send({ error: `no route ${request.method} ${request.url.split('?')[0]}: see GET /v2 and GET /v2/models/${modelName}` });
  });

  const lookup = (params: unknown): ModelSpec => {
    const { name, version } = params as { name: string; version?: string };
    const spec = models.get(name);
    if (!spec) throw notFound(`unknown model "${name}": this server has ${[...models.keys()].join(' and ')}`);
    if (version !== undefined && version !== MODEL_VERSION) throw notFound(`model "${name}" has no version "${version}": it has version ${MODEL_VERSION}`);
    return spec;
  };

  app.get('/', async () => ({ name: 'capsnet-onnx', version: serverVersion(), extensions: [] }));
  app.get('/health/live', async () => ({ live: true }));
  app.get('/health/ready', async () => ({ ready: true }));

  for (const base of ['/models/:name', '/models/:name/versions/:version']) {
    app.get(base, async (request) => {
      const spec = lookup(request.params);
      return {
        name: spec.name,
        versions: [MODEL_VERSION],
        platform: 'onnxruntime_onnx',
        inputs: [spec.input],
        outputs: spec.outputs,
      };
    });
    app.get(`${base}/ready`, async (request) => ({ name: lookup(request.params).name, ready: true }));
    app.post(`${base}/infer`, async (request) => {
      const spec = lookup(request.params);
      const body = request.body;
      if (typeof body !== 'object' || body === null || Array.isArray(body) || Buffer.isBuffer(body)) {
        throw badRequest('BAD_INPUT', 'the body must be a JSON object: {"inputs": [{"name", "shape", "datatype", "data"}]}');
      }
      const { id, inputs, outputs, parameters } = body as Record<string, unknown>;
      if (id !== undefined && typeof id !== 'string') throw badRequest('BAD_INPUT', '"id" must be a string');
      if (isObject(parameters) && parameters.binary_data_output !== undefined) {
        throw badRequest('BAD_INPUT', 'binary tensor data is not supported: leave out "binary_data_output" and read JSON "data"');
      }
      const batch = readInput(spec, inputs, maxBatch);
      const wanted = requestedOutputs(spec, outputs);
      const tensors =
        spec === classifierSpec
          ? classifierOutputs((await options.classifyBatcher.submit(batch)).outputs, wanted)
          : decoderOutputs((await options.decodeBatcher.submit(batch)).outputs, wanted);
      return {
        model_name: spec.name,
        model_version: MODEL_VERSION,
        ...(id !== undefined ? { id } : {}),
        outputs: tensors,
      };
    });
  }

  function classifierOutputs(results: Classification[], wanted: string[]) {
    const n = results.length;
    const pick: Record<string, { shape: number[]; rows: (c: Classification) => Float32Array }> = {
      [IO_NAMES.lengths]: { shape: [n, m.numClasses], rows: (c) => c.lengths },
      [IO_NAMES.capsules]: { shape: [n, m.numClasses, m.digitDim], rows: (c) => c.capsules },
      [IO_NAMES.reconstruction]: { shape: [n, pixels], rows: (c) => c.reconstruction },
    };
    return wanted.map((name) => ({ name, datatype: 'FP32', shape: pick[name]!.shape, data: results.flatMap((c) => round7(pick[name]!.rows(c))) }));
  }

  function decoderOutputs(results: Float32Array[], wanted: string[]) {
    return wanted.map((name) => ({ name, datatype: 'FP32', shape: [results.length, pixels], data: results.flatMap((r) => round7(r)) }));
  }
}

const oneLine = (text: string) => text.split('\n')[0]!.trim();

/** Fastify's own client errors, in the protocol's words and with the fix (the original text stays in the log). */
function clientMessage(error: FastifyError): string {
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'the body must be JSON: send Content-Type: application/json with {"inputs": [...]} (binary tensors are not supported)';
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return "the request body is larger than the server's --body-limit: send fewer items per request";
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return `the body is not valid JSON (${oneLine(error.message)}): send one JSON object {"inputs": [...]}`;
    default:
      if (error.code?.startsWith('Z_')) {
        return (
          `the body is not valid compressed data (${oneLine(error.message)}): send the body compressed as its ` +
          'Content-Encoding header says, or leave the header out'
        );
      }
      return oneLine(error.message);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The request's one input tensor, checked against the model's, split into per-item Float32Arrays. */
function readInput(spec: ModelSpec, inputs: unknown, maxBatch: number): Float32Array[] {
  const expected = `[{"name": "${spec.input.name}", "shape": [N, ${spec.input.shape.slice(1).join(', ')}], "datatype": "FP32", "data": [...]}]`;
  if (!Array.isArray(inputs) || inputs.length !== 1 || !isObject(inputs[0])) {
    throw badRequest('BAD_INPUT', `"inputs" must be a list of one tensor: ${expected}`);
  }
  const input = inputs[0];
  if (input.name !== spec.input.name) {
    throw badRequest('BAD_INPUT', `unknown input ${JSON.stringify(input.name)} for model "${spec.name}": its input is "${spec.input.name}"`);
  }
  if (input.datatype !== 'FP32') {
    throw badRequest('BAD_INPUT', `input "${spec.input.name}" has datatype ${JSON.stringify(input.datatype)}; the model takes FP32`);
  }
  if (isObject(input.parameters) && input.parameters.binary_data_size !== undefined) {
    throw badRequest('BAD_INPUT', 'binary tensor data is not supported: send the values as JSON "data"');
  }
  const shape = input.shape;
  const inner = spec.input.shape.slice(1);
  const shapeText = `[N, ${inner.join(', ')}] with N from 1 to ${maxBatch}`;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw badRequest('BAD_INPUT', `input "${spec.input.name}" needs "shape": a list of non-negative integers, ${shapeText}`);
  }
  const dims = shape as number[];
  if (dims.length !== inner.length + 1 || inner.some((d, i) => dims[i + 1] !== d)) {
    throw badRequest('BAD_INPUT', `input "${spec.input.name}" has shape [${dims.join(', ')}]; the model takes ${shapeText}`);
  }
  const n = dims[0]!;
  if (n < 1) throw badRequest('BAD_INPUT', `input "${spec.input.name}" has a batch of 0: send at least one item`);
  if (n > maxBatch) throw badRequest('BAD_INPUT', `input "${spec.input.name}" has a batch of ${n}; the most in one request is ${maxBatch}: split the request`);
  const size = inner.reduce((a, b) => a * b, 1);
  // Flat (row-major) or nested as the shape; numericTensor checks rectangularity and finiteness.
  const tensor = numericTensor(input.data, `input "${spec.input.name}" data`, n * size);
  const nestedOk = tensor.dims.length === 1 || tensor.dims.join(',') === dims.join(',');
  if (tensor.data.length !== n * size || !nestedOk) {
    throw badRequest(
      'BAD_INPUT',
      `input "${spec.input.name}" data has ${tensor.data.length} values ` +
        `(${tensor.dims.length === 1 ? 'flat' : `nested [${tensor.dims.join(', ')}]`}) for shape ` +
        `[${dims.join(', ')}] (${n * size}): send them flat, row-major, or nested as the shape`,
    );
  }
  if (spec.input.name === IO_NAMES.images) {
    // Checked here, per request, so that one client's 0-255 values are its own 400 and never reach a shared run.
    for (let i = 0; i < tensor.data.length; i++) {
      const v = tensor.data[i]!;
      if (v < 0 || v > 1) {
        throw badRequest(
          'OUT_OF_RANGE',
          `input "${spec.input.name}" data has the value ${v} at flat index ${i} (item ${Math.floor(i / size)}): ` +
            `pixel values must be in [0, 1]${v > 1 && v <= 255 ? ': divide 0-255 values by 255 before sending' : ''}`,
        );
      }
    }
  }
  return Array.from({ length: n }, (_, k) => tensor.data.slice(k * size, (k + 1) * size));
}

/** Output names asked for (all the model's, in its order, when the request names none). */
function requestedOutputs(spec: ModelSpec, outputs: unknown): string[] {
  const names = spec.outputs.map((o) => o.name);
  if (outputs === undefined) return names;
  if (!Array.isArray(outputs) || outputs.some((o) => !isObject(o) || typeof o.name !== 'string')) {
    throw badRequest('BAD_INPUT', `"outputs" must be a list of {"name": ...} with names from ${names.join(', ')}`);
  }
  const wanted = outputs.map((o) => (o as { name: string }).name);
  for (const o of outputs as Record<string, unknown>[]) {
    if (isObject(o.parameters) && o.parameters.binary_data !== undefined && o.parameters.binary_data !== false) {
      throw badRequest('BAD_INPUT', `binary tensor data is not supported: leave out "binary_data" for output "${o.name}"`);
    }
  }
  const unknown = wanted.filter((n) => !names.includes(n));
  if (unknown.length) {
    const coupling = unknown.includes(IO_NAMES.coupling) ? ` ("${IO_NAMES.coupling}" is in the ONNX file but capsnet serve does not return it)` : '';
    throw badRequest(
      'BAD_INPUT',
      `unknown output(s) ${unknown.map((n) => `"${n}"`).join(', ')} for model "${spec.name}": choose from ${names.join(', ')}${coupling}`,
    );
  }
  return [...new Set(wanted)];
}
