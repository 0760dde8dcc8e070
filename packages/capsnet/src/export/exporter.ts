/**
 * `capsnet export`: checkpoint -> model.onnx (images -> lengths, capsules, reconstruction, coupling) and
 * model.decoder.onnx (masked capsules -> reconstruction), both written atomically.
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import {
  type CapsNetConfig,
  MAX_ROUTING_ITERATIONS,
  METADATA_KEYS,
  type Preprocessing,
  decoderPathFor,
  defaultPreprocessing,
  paramShapes,
  publicDataName,
  validateConfig,
} from '@capsnet-onnx/core';
import type { CheckpointState } from '../files/checkpoint.ts';
import { loadCheckpoint } from '../files/checkpoint.ts';
import { refuseToReplace, sweepTempFiles, writeFilesAtomic } from '../files/atomic.ts';
import { packageVersion } from '../files/package-version.ts';
import { type ModelProto, encodeModel } from './onnx-schema.ts';
import { buildModel, countParameters } from './graph-builder.ts';
import { type Weights, buildCapsNetGraph, buildDecoderGraph } from './capsnet-graph.ts';
import { type ComputePrecision, type Precision, computePrecisionFor } from './precision.ts';
import { type TritonFiles, type TritonOptions, checkTritonOptions, writeTritonRepository } from './triton.ts';
import { BASELINE_METADATA_KEYS, buildBaselineCnnGraph } from './baseline-cnn-graph.ts';
import { type BaselineCnnConfig, PRODUCER_NAME, baselineParameterCount } from '@capsnet-onnx/core';

export { PRODUCER_NAME };

/** The producer_version written into model.onnx: this package's version. */
export const producerVersion = packageVersion;

/** Facts about the checkpoint that go into metadata_props. */
export interface ExportProvenance {
  classLabels: string[];
  /** The data's name; a spec with a path is reduced to its public name (core's publicDataName) before it is written. */
  dataset: string;
  /** SHA-256 of the training data's files by file name (checkpoint.ts's DataProvenance); omitted when empty. */
  datasetFiles?: Record<string, string>;
  testAccuracy: number | null;
  checkpointSha256: string;
  exportedAt?: Date;
  /** How images are to be prepared for the model; default core/image.ts's rule for the data set and input. */
  preprocessing?: Preprocessing;
  /** Storage precision of the weights (export/precision.ts); default fp32. */
  precision?: Precision;
  /** Compute precision, fp16 weights only (export/precision.ts); default fp16 for fp16 weights, else fp32. */
  compute?: ComputePrecision;
}

export function exportMetadata(config: CapsNetConfig, provenance: ExportProvenance): Record<string, string> {
  return {
    [METADATA_KEYS.config]: JSON.stringify(config),
    // The baseline CNN passes an empty config and drops this key.
    [METADATA_KEYS.routingIterations]: String(config.routing?.iterations),
    [METADATA_KEYS.classLabels]: JSON.stringify(provenance.classLabels),
    // The data's name only, never a path of the machine that trained it (see publicDataName); its files' hashes.
    [METADATA_KEYS.dataset]: publicDataName(provenance.dataset),
    ...(provenance.datasetFiles && Object.keys(provenance.datasetFiles).length
      ? { [METADATA_KEYS.datasetFiles]: JSON.stringify(provenance.datasetFiles) }
      : {}),
    [METADATA_KEYS.testAccuracy]: JSON.stringify(provenance.testAccuracy),
    [METADATA_KEYS.checkpointSha256]: provenance.checkpointSha256,
    [METADATA_KEYS.exportedAt]: (provenance.exportedAt ?? new Date()).toISOString(),
    // How images are prepared, and when a class counts as present (a capsule at least as long as the margin
    // loss's m-, the length it was trained to stay under when absent). Only for configs that have them (the
    // baseline CNN's export passes none).
    ...(config.inputChannels === undefined
      ? {}
      : {
          [METADATA_KEYS.preprocessing]: JSON.stringify(
            provenance.preprocessing ??
              defaultPreprocessing(provenance.dataset, { height: config.inputHeight, width: config.inputWidth, channels: config.inputChannels }),
          ),
        }),
    ...(typeof config.mMinus === 'number' ? { [METADATA_KEYS.presenceThreshold]: String(config.mMinus) } : {}),
    [METADATA_KEYS.precision]: provenance.precision ?? 'fp32',
    [METADATA_KEYS.computePrecision]: computePrecisionFor(provenance.precision ?? 'fp32', provenance.compute),
  };
}

/**
 * Record the decoder's SHA-256 in the model's metadata (METADATA_KEYS.decoderSha256), so that every loader can
 * refuse a model beside a decoder from another export. Call after the decoder's metadata is final.
 */
export function recordDecoderHash(model: ModelProto, decoderBytes: Uint8Array): void {
  const value = createHash('sha256').update(decoderBytes).digest('hex');
  model.metadata_props = [...(model.metadata_props ?? []).filter((p) => p.key !== METADATA_KEYS.decoderSha256), { key: METADATA_KEYS.decoderSha256, value }];
}

export interface CapsNetModels {
  model: ModelProto;
  decoder: ModelProto;
  /** The decoder's encoded bytes, whose SHA-256 the model records. */
  decoderBytes: Uint8Array;
}

/** Build both ONNX models in memory (no files). */
export function buildCapsNetModels(config: CapsNetConfig, weights: Weights, provenance: ExportProvenance): CapsNetModels {
  validateConfig(config);
  const metadata = exportMetadata(config, provenance);
  const common = { producerName: PRODUCER_NAME, producerVersion: producerVersion(), metadata };
  const precision = provenance.precision ?? 'fp32';
  const compute = computePrecisionFor(precision, provenance.compute);
  const stored = precision === 'fp32' ? '' : `, ${precision} weights${precision === 'fp16' ? ` and ${compute} compute` : ''}`;
  const built = {
    model: buildModel(buildCapsNetGraph(config, weights, precision, compute), {
      ...common,
      doc: `CapsNet classifier exported by ${PRODUCER_NAME} ${producerVersion()} (routing unrolled, ${config.routing.iterations} iteration(s)${stored}).`,
    }),
    decoder: buildModel(buildDecoderGraph(config, weights, precision, compute), {
      ...common,
      doc: `CapsNet reconstruction decoder exported by ${PRODUCER_NAME} ${producerVersion()}${stored ? ` (${stored.slice(2)})` : ''}.`,
    }),
  };
  const decoderBytes = encodeModel(built.decoder);
  recordDecoderHash(built.model, decoderBytes);
  return { ...built, decoderBytes };
}

/** Protobuf's limit on one message, so on an ONNX file without external data: 2 GiB - 1 bytes. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;
const BYTES_PER_WEIGHT: Record<Precision, number> = { fp32: 4, fp16: 2, int8: 1 };

/**
 * The weight bytes of the classifier file (which holds every weight, the decoder's included) at `precision`: what
 * sets its size (the graph itself is a few KB). int8 adds one float scale per output channel, counted as 1% here.
 */
export function estimateModelBytes(config: CapsNetConfig, precision: Precision = 'fp32'): number {
  const weights = Object.values(paramShapes(config)).reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0);
  return Math.ceil(weights * BYTES_PER_WEIGHT[precision] * (precision === 'int8' ? 1.01 : 1));
}

/**
 * Refuse, before anything is built, an export whose file would pass protobuf's 2 GiB limit (building it would take
 * minutes and gigabytes before failing), naming the limit and the precisions that fit.
 */
export function checkProtobufLimit(config: CapsNetConfig, precision: Precision = 'fp32', limit = PROTOBUF_LIMIT): void {
  const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
  const bytes = estimateModelBytes(config, precision);
  // A margin of 1% for the graph, names and metadata.
  if (bytes * 1.01 <= limit) return;
  const fits = (['fp16', 'int8'] as const).filter((p) => BYTES_PER_WEIGHT[p] < BYTES_PER_WEIGHT[precision] && estimateModelBytes(config, p) * 1.01 <= limit);
  throw new Error(
    `the model would be about ${gib(bytes)} of ${precision} weights, past protobuf's 2 GiB limit on an ONNX file: ` +
      (fits.length
        ? `export with ${fits.map((p) => `--precision ${p} (about ${gib(estimateModelBytes(config, p))})`).join(' or ')}`
        : 'no precision brings it under the limit: train a smaller model (fewer classes, primary capsules or decoder units)'),
  );
}

/** Fail early, with the fix, on an output path that cannot be written. */
export function checkOutputPath(path: string): void {
  const dir = dirname(resolve(path));
  if (path.endsWith('/') || (existsSync(path) && statSync(path).isDirectory())) {
    throw new Error(`output ${path} is a directory: give a file name, e.g. ${join(path, 'model.onnx')}`);
  }
  // Every loader finds the decoder by decoderPathFor, which turns model.onnx into model.decoder.onnx; x.txt would
  // pair with x.txt.decoder.onnx, and nothing would open x.txt as a model.
  if (!/\.onnx$/i.test(path)) {
    const suggestion = join(dirname(path), `${basename(path).replace(/\.[^.]*$/, '') || 'model'}.onnx`);
    throw new Error(`output ${path} does not end in .onnx: name the model file ${suggestion} (its decoder goes beside it as ${decoderPathFor(suggestion)})`);
  }
  if (!existsSync(dir)) throw new Error(`output directory ${dir} does not exist: create it first or choose another output path`);
  if (!statSync(dir).isDirectory()) throw new Error(`output directory ${dir} is not a directory`);
}

export interface ExportOptions {
  /** Path of the model file; the decoder goes beside it (see decoderPathFor). Optional with `triton`. */
  out?: string;
  /** Also (or, without `out`, only) write a Triton model repository (export/triton.ts). */
  triton?: TritonOptions;
  /**
   * Replace the model, decoder or Triton model folders if they exist. Without it an existing one is an
   * OutputExistsError (files/atomic.ts) and nothing is written.
   */
  overwrite?: boolean;
  /** Override the checkpoint's routing iterations (the weights do not depend on it). */
  routingIterations?: number;
  exportedAt?: Date;
  /** Weight storage precision (export/precision.ts); default fp32. */
  precision?: Precision;
  /** Compute precision, with fp16 weights only (export/precision.ts); default fp16 for fp16 weights. */
  compute?: ComputePrecision;
}

export interface ExportResult {
  family: 'capsnet';
  /** Empty when only a Triton repository was written. */
  modelPath: string;
  decoderPath: string;
  triton?: TritonFiles;
  modelBytes: number;
  decoderBytes: number;
  parameters: number;
  routingIterations: number;
  precision: Precision;
  computePrecision: ComputePrecision;
  seconds: number;
  model: ModelProto;
  decoder: ModelProto;
}

/** A baseline CNN run's export: one file, no decoder, no routing. */
export interface BaselineExportResult {
  family: 'baseline-cnn';
  modelPath: string;
  modelBytes: number;
  parameters: number;
  seconds: number;
  model: ModelProto;
}

/** The baseline CNN as one ONNX model (images -> logits, probabilities) with its provenance in metadata. */
export function buildBaselineCnnModel(config: BaselineCnnConfig, weights: Weights, provenance: ExportProvenance): ModelProto {
  const { [METADATA_KEYS.config]: _c, [METADATA_KEYS.routingIterations]: _r, ...common } = exportMetadata({} as CapsNetConfig, provenance);
  return buildModel(buildBaselineCnnGraph(config, weights), {
    producerName: PRODUCER_NAME,
    producerVersion: producerVersion(),
    metadata: { ...common, [BASELINE_METADATA_KEYS.model]: 'baseline-cnn', [BASELINE_METADATA_KEYS.config]: JSON.stringify(config) },
    doc: `Baseline CNN exported by ${PRODUCER_NAME} ${producerVersion()}.`,
  });
}

/** `capsnet export`: a CapsNet run (model + decoder) or a baseline CNN run (one model), whichever `runDir` holds. */
export function exportRun(runDir: string, options: ExportOptions): ExportResult | BaselineExportResult {
  return exportAny(runDir, options);
}

/**
 * What an export records of a checkpoint's data: its public name and files' hashes (never the local spec), and
 * the preprocessing rule decided from the full spec as before (so a path that says "mnist" still selects MNIST's).
 */
export function dataProvenance(
  checkpoint: Pick<CheckpointState, 'dataset' | 'data' | 'config'>,
): Pick<ExportProvenance, 'dataset' | 'datasetFiles' | 'preprocessing'> {
  const { config } = checkpoint;
  return {
    dataset: checkpoint.data?.name ?? publicDataName(checkpoint.dataset),
    datasetFiles: checkpoint.data?.files ?? {},
    preprocessing: defaultPreprocessing(checkpoint.dataset, { height: config.inputHeight, width: config.inputWidth, channels: config.inputChannels }),
  };
}

/** Load the CapsNet checkpoint in `runDir`, build both graphs and write them. Throws one-line errors; writes nothing on failure. */
export function exportCheckpoint(runDir: string, options: ExportOptions): ExportResult {
  const result = exportAny(runDir, options, 'capsnet');
  return result as ExportResult;
}

function exportAny(runDir: string, options: ExportOptions, only?: 'capsnet'): ExportResult | BaselineExportResult {
  const started = performance.now();
  const r = options.routingIterations;
  if (r !== undefined && !(Number.isInteger(r) && r >= 1 && r <= MAX_ROUTING_ITERATIONS)) {
    // Each iteration is unrolled into the graph: a huge count would build until memory ran out (core/routing.ts).
    throw new Error(`routing iterations must be an integer from 1 to ${MAX_ROUTING_ITERATIONS} (the paper's is 3), got ${r}`);
  }
  const checkpoint = loadCheckpoint(runDir);
  if (only && checkpoint.model?.family === 'baseline-cnn') {
    throw new Error(`${runDir} holds a baseline CNN run, not a CapsNet: export it with exportRun (the \`capsnet export\` command)`);
  }
  if (options.out === undefined && !options.triton) throw new Error('nothing to write: give an output model file (out) or a Triton repository (triton)');
  if (options.out !== undefined) {
    checkOutputPath(options.out);
    const baseline = checkpoint.model?.family === 'baseline-cnn';
    refuseToReplace(baseline ? [options.out] : [options.out, decoderPathFor(options.out)], options.overwrite, { option: 'out path', flag: '-o path' });
  }
  if (options.triton) checkTritonOptions({ ...options.triton, overwrite: options.overwrite });
  const provenance = {
    classLabels: checkpoint.classLabels,
    ...dataProvenance(checkpoint),
    testAccuracy: checkpoint.metrics.at(-1)?.test_accuracy ?? null,
    checkpointSha256: checkpoint.sha256,
    exportedAt: options.exportedAt,
    precision: options.precision,
    compute: options.compute,
  };
  if (checkpoint.model?.family === 'baseline-cnn') {
    if (options.routingIterations !== undefined) throw new Error('routing iterations apply to CapsNet runs; this run is a baseline CNN (no routing)');
    if (options.triton || (options.precision ?? 'fp32') !== 'fp32' || options.compute !== undefined || options.out === undefined) {
      throw new Error(
        'other precisions, compute precisions and Triton repositories apply to CapsNet runs; this run is a ' +
          'baseline CNN (fp32 weights and compute): export it to one model file',
      );
    }
    const model = buildBaselineCnnModel(checkpoint.model.config, checkpoint.weights, provenance);
    const modelBytes = encodeModel(model);
    sweepTempFiles(dirname(resolve(options.out)), [basename(options.out)]);
    writeFilesAtomic([{ path: options.out, bytes: modelBytes }]);
    return {
      // the network's weights, as `capsnet train` prints them (countParameters would add the flatten's shape constant)
      family: 'baseline-cnn',
      modelPath: options.out,
      modelBytes: modelBytes.length,
      parameters: baselineParameterCount(checkpoint.model.config),
      seconds: (performance.now() - started) / 1000,
      model,
    };
  }
  const computePrecision = computePrecisionFor(options.precision ?? 'fp32', options.compute);
  checkProtobufLimit(checkpoint.config, options.precision ?? 'fp32');
  const config: CapsNetConfig = {
    ...checkpoint.config,
    ...(options.routingIterations !== undefined ? { routing: { ...checkpoint.config.routing, iterations: options.routingIterations } } : {}),
  };
  const { model, decoder, decoderBytes } = buildCapsNetModels(config, checkpoint.weights, provenance);
  const modelBytes = encodeModel(model);
  const decoderPath = options.out === undefined ? '' : decoderPathFor(options.out);
  if (options.out !== undefined) {
    // Temp files of an export that was killed are swept first. The decoder lands before the model; a kill between
    // the two renames leaves a pair whose hashes disagree, which every loader refuses (see recordDecoderHash).
    sweepTempFiles(dirname(resolve(options.out)), [basename(options.out), basename(decoderPath)]);
    writeFilesAtomic([
      { path: decoderPath, bytes: decoderBytes },
      { path: options.out, bytes: modelBytes },
    ]);
  }
  const triton = options.triton
    ? writeTritonRepository(
        { ...options.triton, overwrite: options.overwrite },
        config,
        checkpoint.classLabels,
        { model: modelBytes, decoder: decoderBytes },
        `CapsNet exported by ${PRODUCER_NAME} ${producerVersion()} from checkpoint ${checkpoint.sha256.slice(0, 12)} ` +
          `(${options.precision ?? 'fp32'} weights, ${computePrecision} compute, routing unrolled x${config.routing.iterations}).`,
      )
    : undefined;
  return {
    family: 'capsnet',
    modelPath: options.out ?? '',
    decoderPath,
    ...(triton ? { triton } : {}),
    modelBytes: modelBytes.length,
    decoderBytes: decoderBytes.length,
    parameters: countParameters(model.graph),
    routingIterations: config.routing.iterations,
    precision: options.precision ?? 'fp32',
    computePrecision,
    seconds: (performance.now() - started) / 1000,
    model,
    decoder,
  };
}
