/**
 * The one Classifier implementation, shared by every provider: it only sees an ONNX Runtime API object
 * (onnxruntime-node's or onnxruntime-web's, same shape) and the sessions the registry opened.
 */
import type { InferenceSession, Tensor, TypedTensor } from 'onnxruntime-common';
import {
  type Classification,
  type ClassifyOptions,
  type Classifier,
  type DeviceName,
  IO_NAMES,
  type ImageInput,
  type LoadOptions,
  type ModelFiles,
  type ModelMetadata,
  type ModelSource,
} from './contract.ts';
import {
  ClassifierDisposedError,
  DeviceUnavailableError,
  InputError,
  ModelFileError,
  ModelFormatError,
  type Polarity,
  readModelMetadata,
} from '@capsnet-onnx/core';
import { checkMaxBatch, checkPolarityOption, readImageSources, toCapsuleBatch, toImageBatch } from './inputs.ts';
import { type Provider, errorMessage, fp16ComputeUnavailable, isMissingShaderF16 } from './providers/provider.ts';
import { selectProvider } from './registry.ts';

/** The part of onnxruntime-node / onnxruntime-web the runtime uses. */
export interface OrtApi {
  InferenceSession: { create(model: Uint8Array, options?: InferenceSession.SessionOptions): Promise<InferenceSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => TypedTensor<'float32'>;
}

/**
 * Model or decoder bytes as callers hold them: a Uint8Array (Node's Buffer is one), an ArrayBuffer (what
 * `fetch(...).arrayBuffer()` and FileReader give) or any other ArrayBuffer view. Anything else is an InputError.
 */
export function toModelBytes(value: unknown, what: string): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && value instanceof SharedArrayBuffer)) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new InputError(`${what} must be a path or URL string, a Uint8Array, an ArrayBuffer or a Buffer; got ${kindOf(value)}`);
}

/** What a value is, for an error that refuses it: null, its class's name, or its type. */
function kindOf(value: unknown): string {
  return value === null ? 'null' : typeof value === 'object' ? ((value as object).constructor?.name ?? 'object') : typeof value;
}

/**
 * `CapsNet.load`'s first argument split into the model (path, URL or bytes) and the options, with a {@link ModelFiles}
 * object's decoder as `options.decoder` unless the options name one. Anything else is an InputError.
 */
export function modelAndOptions<O extends { decoder?: unknown }>(source: ModelSource, options: O): { model: string | Uint8Array | ArrayBuffer; options: O } {
  if (typeof source === 'string' || source instanceof Uint8Array || source instanceof ArrayBuffer) return { model: source, options };
  if (ArrayBuffer.isView(source)) return { model: toModelBytes(source, 'the model'), options };
  if (source !== null && typeof source === 'object' && typeof (source as ModelFiles).model === 'string') {
    const { model, decoder } = source as ModelFiles;
    if (decoder !== undefined && typeof decoder !== 'string') throw new InputError(`the model's decoder must be a path or URL string; got ${typeof decoder}`);
    return { model, options: options.decoder === undefined && decoder !== undefined ? { ...options, decoder } : options };
  }
  throw new InputError(
    "the model must be a path or URL string, its bytes (Uint8Array, ArrayBuffer, Buffer) or { model, decoder } (e.g. pretrained('mnist-small')); " +
      `got ${kindOf(source)}`,
  );
}

/** The decoder's bytes, or a function that reads them or says why there are none (and which file is missing). */
export type DecoderSource = Uint8Array | (() => Promise<Uint8Array | DecoderMissing>);
export type DecoderMissing = { missing: string; path?: string };

function checkSession(session: InferenceSession, inputs: string[], outputs: string[], file: string): void {
  const missingIn = inputs.filter((n) => !session.inputNames.includes(n));
  const missingOut = outputs.filter((n) => !session.outputNames.includes(n));
  if (missingIn.length || missingOut.length) {
    throw new ModelFormatError(
      `${file} lacks graph ${missingIn.length ? `input(s) ${missingIn.join(', ')}` : ''}${missingIn.length && missingOut.length ? ' and ' : ''}` +
        `${missingOut.length ? `output(s) ${missingOut.join(', ')}` : ''} (it has inputs ${session.inputNames.join(', ')}; outputs ` +
        `${session.outputNames.join(', ')}): export it with \`capsnet export\``,
    );
  }
}

/**
 * An int8 export keeps its weights behind DequantizeLinear so that the file is small. ORT leaves those nodes out of
 * constant folding (to keep QDQ groups for its quantised kernels) and would dequantize every weight at every run,
 * several times slower than fp32; weight-only QDQ has nothing to fuse, so `session.disable_quant_qdq` lets constant
 * folding widen the weights once, at load: fp32 speed and memory, int8 download.
 */
function withPrecision(options: InferenceSession.SessionOptions, precision: string): InferenceSession.SessionOptions {
  if (precision !== 'int8') return options;
  const extra = (options.extra ?? {}) as { session?: Record<string, string> };
  return { ...options, extra: { ...extra, session: { ...extra.session, disable_quant_qdq: '1' } } };
}

/**
 * An fp16-compute model on a provider whose fp16 depends on the adapter (WebGPU) runs only where the adapter has
 * shader-f16. Where the provider knows beforehand (the browser lists the adapter's features) it says so at once;
 * Dawn in onnxruntime-node fails only when it compiles a half-precision shader (at session creation or at the
 * first run), so `open` runs one blank image at load and ORT's message is turned into the reason and its fix.
 */
async function openFp16Checked<T>(provider: Provider, m: ModelMetadata, modelName: string, open: (probe: boolean) => Promise<T>): Promise<T> {
  if (m.computePrecision !== 'fp16' || provider.fp16Compute !== 'adapter') return open(false);
  const refuse = (why: string) => new DeviceUnavailableError(fp16ComputeUnavailable(provider.device, modelName, why));
  const known = await provider.fp16Unsupported?.();
  if (known) throw refuse(known);
  try {
    return await open(true);
  } catch (e) {
    if (isMissingShaderF16(e)) throw refuse('the WebGPU adapter lacks the shader-f16 feature');
    throw e;
  }
}

async function probeRun(ort: OrtApi, session: InferenceSession, m: ModelMetadata): Promise<void> {
  const blank = new ort.Tensor('float32', new Float32Array(m.inputHeight * m.inputWidth * m.inputChannels), [1, m.inputHeight, m.inputWidth, m.inputChannels]);
  const out = await session.run({ [IO_NAMES.images]: blank }, [IO_NAMES.lengths]);
  for (const t of Object.values(out)) t.dispose();
}

function checkDims(tensor: Tensor | undefined, expected: number[], name: string): Float32Array {
  if (!tensor) throw new ModelFormatError(`the model returned no "${name}" output`);
  if (tensor.type !== 'float32' || tensor.dims.join('x') !== expected.join('x')) {
    throw new ModelFormatError(
      `the model's "${name}" output is ${tensor.type} [${tensor.dims.join(', ')}], expected float32 [${expected.join(', ')}]: ` +
        'the graph does not match its metadata; re-export it',
    );
  }
  return tensor.data as Float32Array;
}

export class OrtClassifier implements Classifier {
  #queue: Promise<unknown> = Promise.resolve();
  #decoder: InferenceSession | null;
  #disposed: Promise<void> | undefined;
  readonly #maxBatch: number;
  readonly #polarity: Polarity;
  readonly #threshold: number;

  constructor(
    private readonly ort: OrtApi,
    readonly device: DeviceName,
    readonly deviceReport: string,
    readonly metadata: ModelMetadata,
    private readonly session: InferenceSession,
    decoder: InferenceSession | null,
    private readonly decoderMissing: DecoderMissing | null,
    maxBatch: number,
    defaults: { polarity: Polarity; presenceThreshold: number },
  ) {
    this.#decoder = decoder;
    this.#maxBatch = maxBatch;
    this.#polarity = defaults.polarity;
    this.#threshold = defaults.presenceThreshold;
  }

  /** One run at a time per model: ORT-web sessions reject overlapping runs, and the latency numbers stay honest. */
  #serial<T>(task: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(task, task);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** A call after dispose(): one line naming the fix, not ONNX Runtime's "invalid session id" or a TypeError. */
  #checkOpen(method: 'classify' | 'decode'): void {
    if (this.#disposed) {
      throw new ClassifierDisposedError(`${method}() was called after dispose(): this classifier has released its model; load it again with CapsNet.load(...)`);
    }
  }

  /** Run a session, with ONNX Runtime's failure (often several lines) as one line naming the input and the fix. */
  async #run(session: InferenceSession, feeds: Record<string, TypedTensor<'float32'>>, outputs: string[], what: string): Promise<InferenceSession.ReturnType> {
    try {
      return await this.#serial(() => session.run(feeds, outputs));
    } catch (e) {
      const text = String((e as Error)?.message ?? e)
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .join('; ');
      const [name, tensor] = Object.entries(feeds)[0]!;
      if (this.#disposed || /disposed|invalid session/i.test(text)) {
        throw new ClassifierDisposedError(`${what}: the classifier was disposed while the call waited: load the model again with CapsNet.load(...)`, {
          cause: e,
        });
      }
      const shape = /dimension|shape|rank/i.test(text);
      throw new (shape ? ModelFormatError : Error)(
        `${what}: ONNX Runtime could not run the model on "${name}" [${tensor.dims.join(', ')}] (${text})` +
          (shape ? ': the graph does not take the shape its metadata promises; re-export it with `capsnet export`' : ''),
        { cause: e },
      );
    }
  }

  async classify(images: ImageInput, options: ClassifyOptions = {}): Promise<Classification[]> {
    this.#checkOpen('classify');
    const m = this.metadata;
    const polarity = options.polarity === undefined ? this.#polarity : checkPolarityOption(options.polarity);
    const threshold = options.presenceThreshold === undefined ? this.#threshold : checkThreshold(options.presenceThreshold);
    const { data, count, ink } = toImageBatch(await readImageSources(images), m, this.#maxBatch, polarity);
    const pixels = m.inputHeight * m.inputWidth * m.inputChannels;
    const feeds = { [IO_NAMES.images]: new this.ort.Tensor('float32', data, [count, m.inputHeight, m.inputWidth, m.inputChannels]) };
    const wanted: string[] = [IO_NAMES.lengths, IO_NAMES.capsules, IO_NAMES.reconstruction];
    if (options.coupling) {
      if (!this.session.outputNames.includes(IO_NAMES.coupling)) {
        throw new ModelFormatError(
          `classify({ coupling: true }): the model has no "${IO_NAMES.coupling}" output (it has ${this.session.outputNames.join(', ')}): ` +
            're-export it with `capsnet export`',
        );
      }
      wanted.push(IO_NAMES.coupling);
    }
    const out = await this.#run(this.session, feeds, wanted, 'classify');
    const coupling = options.coupling ? (out[IO_NAMES.coupling]!.data as Float32Array) : undefined;
    const couplingSize = coupling ? coupling.length / count : 0;
    const lengths = checkDims(out[IO_NAMES.lengths], [count, m.numClasses], IO_NAMES.lengths);
    const capsules = checkDims(out[IO_NAMES.capsules], [count, m.numClasses, m.digitDim], IO_NAMES.capsules);
    const reconstruction = checkDims(out[IO_NAMES.reconstruction], [count, pixels], IO_NAMES.reconstruction);
    const caps = m.numClasses * m.digitDim;
    const results: Classification[] = [];
    for (let n = 0; n < count; n++) {
      const l = lengths.slice(n * m.numClasses, (n + 1) * m.numClasses);
      let longest = 0;
      for (let k = 1; k < l.length; k++) if (l[k]! > l[longest]!) longest = k;
      const name = m.classLabels[longest] ?? String(longest);
      let reason: string | undefined;
      if (!ink[n]) reason = 'no ink: the image is blank';
      else if (l[longest]! < threshold) {
        reason = `no class is present: the longest capsule (${name}) has length ${l[longest]!.toFixed(3)}, below the presence threshold ${threshold}`;
      }
      results.push({
        label: reason ? null : longest,
        labelName: reason ? null : name,
        ...(reason ? { reason } : {}),
        longest,
        lengths: l,
        capsules: capsules.slice(n * caps, (n + 1) * caps),
        reconstruction: reconstruction.slice(n * pixels, (n + 1) * pixels),
        ...(coupling ? { coupling: coupling.slice(n * couplingSize, (n + 1) * couplingSize) } : {}),
      });
    }
    for (const t of Object.values(out)) t.dispose();
    return results;
  }

  async decode(capsules: Float32Array | Float32Array[]): Promise<Float32Array[]> {
    this.#checkOpen('decode');
    const decoder = this.#decoder;
    if (!decoder) {
      const why = this.decoderMissing!;
      throw why.path ? new ModelFileError(`no decoder model: ${why.missing}`, why.path, 'NOT_FOUND') : new ModelFormatError(`no decoder model: ${why.missing}`);
    }
    const m = this.metadata;
    const { data, count } = toCapsuleBatch(capsules, m, this.#maxBatch);
    const pixels = m.inputHeight * m.inputWidth * m.inputChannels;
    const feeds = { [IO_NAMES.maskedCapsules]: new this.ort.Tensor('float32', data, [count, m.numClasses, m.digitDim]) };
    const out = await this.#run(decoder, feeds, [IO_NAMES.reconstruction], 'decode');
    const reconstruction = checkDims(out[IO_NAMES.reconstruction], [count, pixels], IO_NAMES.reconstruction);
    const results = Array.from({ length: count }, (_, n) => reconstruction.slice(n * pixels, (n + 1) * pixels));
    out[IO_NAMES.reconstruction]!.dispose();
    return results;
  }

  /** Release the sessions; calling it again does nothing. */
  async dispose(): Promise<void> {
    if (this.#disposed) return this.#disposed;
    this.#disposed = (async () => {
      await this.#queue;
      await this.session.release();
      await this.#decoder?.release();
      this.#decoder = null;
    })();
    return this.#disposed;
  }
}

async function sha256Hex(bytes: Uint8Array): Promise<string | undefined> {
  // WebCrypto: in Node and in browsers' secure contexts (https, localhost); elsewhere the pair cannot be checked.
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return undefined;
  const digest = new Uint8Array(await subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * A model and a decoder from different exports (an export killed between its two renames, or files copied
 * separately) would reconstruct from the wrong weights without a word: the model records its decoder's SHA-256.
 */
async function checkDecoderPair(metadata: ModelMetadata, decoder: Uint8Array, modelName: string, log: (line: string) => void): Promise<void> {
  if (!metadata.decoderSha256) return;
  const actual = await sha256Hex(decoder);
  if (actual === undefined) {
    log(`cannot check that the decoder belongs to ${modelName}: this context has no WebCrypto (serve the page over https or localhost)`);
    return;
  }
  if (actual !== metadata.decoderSha256) {
    throw new ModelFormatError(
      `the decoder does not belong to ${modelName}: the model was exported with a decoder of SHA-256 ${metadata.decoderSha256.slice(0, 12)}..., ` +
        `this one is ${actual.slice(0, 12)}... (an interrupted export, or files copied separately): run \`capsnet export\` again to write both, ` +
        'or pass the decoder exported with this model',
    );
  }
}

/**
 * Shared load path of both entry points: read the metadata, pick the provider, open the model (and the decoder,
 * when there is one) on it with that single execution provider.
 */
export async function loadClassifier(
  ortFor: OrtApi | ((provider: Provider) => Promise<OrtApi>),
  modelBytes: Uint8Array,
  modelName: string,
  decoder: DecoderSource,
  providers: readonly Provider[],
  autoOrder: readonly DeviceName[],
  options: LoadOptions,
  entry: string,
): Promise<OrtClassifier> {
  const metadata = readModelMetadata(modelBytes);
  const maxBatch = checkMaxBatch(options.maxBatch);
  const decoderBytes = typeof decoder === 'function' ? await decoder() : decoder;
  const log = options.log ?? (() => {});
  if (decoderBytes instanceof Uint8Array) await checkDecoderPair(metadata, decoderBytes, modelName, log);
  const { value, provider, report } = await selectProvider(
    options.device ?? 'auto',
    providers,
    autoOrder,
    (p) =>
      openFp16Checked(p, metadata, modelName, async (probe) => {
        const ort = typeof ortFor === 'function' ? await ortFor(p) : ortFor;
        const sessionOptions = withPrecision(p.sessionOptions(options), metadata.precision);
        const session = await ort.InferenceSession.create(modelBytes, sessionOptions);
        try {
          checkSession(session, [IO_NAMES.images], [IO_NAMES.lengths, IO_NAMES.capsules, IO_NAMES.reconstruction], modelName);
          if (probe) await probeRun(ort, session, metadata);
          let decoderSession: InferenceSession | null = null;
          if (decoderBytes instanceof Uint8Array) {
            decoderSession = await ort.InferenceSession.create(decoderBytes, sessionOptions);
            checkSession(decoderSession, [IO_NAMES.maskedCapsules], [IO_NAMES.reconstruction], `the decoder of ${modelName}`);
          }
          return { ort, session, decoderSession };
        } catch (e) {
          await session.release();
          throw e;
        }
      }),
    log,
    entry,
  );
  const missing = decoderBytes instanceof Uint8Array ? null : decoderBytes;
  const defaults = {
    polarity: checkPolarityOption(options.polarity),
    presenceThreshold: options.presenceThreshold === undefined ? metadata.presenceThreshold : checkThreshold(options.presenceThreshold),
  };
  return new OrtClassifier(value.ort, provider.device, report, metadata, value.session, value.decoderSession, missing, maxBatch, defaults);
}

function checkThreshold(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value >= 1) {
    throw new InputError(`presenceThreshold must be a number in [0, 1) (a capsule length), got ${JSON.stringify(value)}`);
  }
  return value;
}

export { errorMessage };
