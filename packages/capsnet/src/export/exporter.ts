/**
 * `capsnet export`: checkpoint -> model.onnx (images -> lengths, capsules, reconstruction, coupling) and
 * model.decoder.onnx (masked capsules -> reconstruction), both written atomically.
 */
import { existsSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { type CapsNetConfig, METADATA_KEYS, decoderPathFor, validateConfig } from '@capsnet-onnx/core';
import { loadCheckpoint } from '../files/checkpoint.ts';
import { packageVersion } from '../files/package-version.ts';
import { type ModelProto, encodeModel } from './onnx-schema.ts';
import { buildModel, countParameters } from './graph-builder.ts';
import { type Weights, buildCapsNetGraph, buildDecoderGraph } from './capsnet-graph.ts';
import type { Precision } from './precision.ts';
import { type TritonFiles, type TritonOptions, checkTritonOptions, writeTritonRepository } from './triton.ts';
import { BASELINE_METADATA_KEYS, buildBaselineCnnGraph } from './baseline-cnn-graph.ts';
import { type BaselineCnnConfig, baselineParameterCount } from '@capsnet-onnx/core';

export const PRODUCER_NAME = 'capsnet-onnx';

/** The producer_version written into model.onnx: this package's version. */
export const producerVersion = packageVersion;

/** Facts about the checkpoint that go into metadata_props. */
export interface ExportProvenance {
  classLabels: string[];
  dataset: string;
  testAccuracy: number | null;
  checkpointSha256: string;
  exportedAt?: Date;
  /** Storage precision of the weights (export/precision.ts); default fp32. */
  precision?: Precision;
}

export function exportMetadata(config: CapsNetConfig, provenance: ExportProvenance): Record<string, string> {
  return {
    [METADATA_KEYS.config]: JSON.stringify(config),
    [METADATA_KEYS.routingIterations]: String(config.routingIterations),
    [METADATA_KEYS.classLabels]: JSON.stringify(provenance.classLabels),
    [METADATA_KEYS.dataset]: provenance.dataset,
    [METADATA_KEYS.testAccuracy]: JSON.stringify(provenance.testAccuracy),
    [METADATA_KEYS.checkpointSha256]: provenance.checkpointSha256,
    [METADATA_KEYS.exportedAt]: (provenance.exportedAt ?? new Date()).toISOString(),
    [METADATA_KEYS.precision]: provenance.precision ?? 'fp32',
  };
}

export interface CapsNetModels {
  model: ModelProto;
  decoder: ModelProto;
}

/** Build both ONNX models in memory (no files). */
export function buildCapsNetModels(config: CapsNetConfig, weights: Weights, provenance: ExportProvenance): CapsNetModels {
  validateConfig(config);
  const metadata = exportMetadata(config, provenance);
  const common = { producerName: PRODUCER_NAME, producerVersion: producerVersion(), metadata };
  const precision = provenance.precision ?? 'fp32';
  const stored = precision === 'fp32' ? '' : `, ${precision} weights`;
  return {
    model: buildModel(buildCapsNetGraph(config, weights, precision), {
      ...common,
      doc: `CapsNet classifier exported by ${PRODUCER_NAME} ${producerVersion()} (routing unrolled, ${config.routingIterations} iteration(s)${stored}).`,
    }),
    decoder: buildModel(buildDecoderGraph(config, weights, precision), {
      ...common,
      doc: `CapsNet reconstruction decoder exported by ${PRODUCER_NAME} ${producerVersion()}${stored ? ` (${stored.slice(2)})` : ''}.`,
    }),
  };
}

/** Fail early, with the fix, on an output path that cannot be written. */
export function checkOutputPath(path: string): void {
  const dir = dirname(resolve(path));
  if (path.endsWith('/') || (existsSync(path) && statSync(path).isDirectory())) {
    throw new Error(`output ${path} is a directory: give a file name, e.g. -o ${join(path, 'model.onnx')}`);
  }
  if (!existsSync(dir)) throw new Error(`output directory ${dir} does not exist: create it first or choose another -o path`);
  if (!statSync(dir).isDirectory()) throw new Error(`output directory ${dir} is not a directory`);
}

/**
 * Write several files so that each appears whole or not at all: all go to temp files in their own directories
 * first, then each is renamed into place. On failure no temp file is left behind.
 */
export function writeFilesAtomic(files: { path: string; bytes: Uint8Array }[]): void {
  const temps = files.map((f) => join(dirname(f.path), `.tmp-${process.pid}-${Date.now()}-${basename(f.path)}`));
  try {
    files.forEach((f, k) => writeFileSync(temps[k]!, f.bytes));
    files.forEach((f, k) => renameSync(temps[k]!, f.path));
  } catch (e) {
    for (const t of temps) rmSync(t, { force: true });
    const error = e as NodeJS.ErrnoException;
    throw new Error(`cannot write ${error.path ?? files.map((f) => f.path).join(', ')}: ${error.code ?? error.message}`);
  }
}

export interface ExportOptions {
  /** Path of the model file; the decoder goes beside it (see decoderPathFor). Optional with `triton`. */
  out?: string;
  /** Also (or, without `out`, only) write a Triton model repository (export/triton.ts). */
  triton?: TritonOptions;
  /** Override the checkpoint's routing iterations (the weights do not depend on it). */
  routingIterations?: number;
  exportedAt?: Date;
  /** Weight storage precision (export/precision.ts); default fp32. */
  precision?: Precision;
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

/** Load the CapsNet checkpoint in `runDir`, build both graphs and write them. Throws one-line errors; writes nothing on failure. */
export function exportCheckpoint(runDir: string, options: ExportOptions): ExportResult {
  const result = exportAny(runDir, options, 'capsnet');
  return result as ExportResult;
}

function exportAny(runDir: string, options: ExportOptions, only?: 'capsnet'): ExportResult | BaselineExportResult {
  const started = performance.now();
  const checkpoint = loadCheckpoint(runDir);
  if (only && checkpoint.model?.family === 'baseline-cnn') {
    throw new Error(`${runDir} holds a baseline CNN run, not a CapsNet: export it with exportRun (the \`capsnet export\` command)`);
  }
  if (options.out === undefined && !options.triton) throw new Error('nothing to write: give -o FILE or --triton DIR');
  if (options.out !== undefined) checkOutputPath(options.out);
  if (options.triton) checkTritonOptions(options.triton);
  const provenance = {
    classLabels: checkpoint.classLabels,
    dataset: checkpoint.dataset,
    testAccuracy: checkpoint.metrics.at(-1)?.test_accuracy ?? null,
    checkpointSha256: checkpoint.sha256,
    exportedAt: options.exportedAt,
    precision: options.precision,
  };
  if (checkpoint.model?.family === 'baseline-cnn') {
    if (options.routingIterations !== undefined) throw new Error('--routing applies to CapsNet runs; this run is a baseline CNN (no routing)');
    if (options.triton || (options.precision ?? 'fp32') !== 'fp32' || options.out === undefined) {
      throw new Error('--precision and --triton apply to CapsNet runs; this run is a baseline CNN: export it with -o FILE only');
    }
    const model = buildBaselineCnnModel(checkpoint.model.config, checkpoint.weights, provenance);
    const modelBytes = encodeModel(model);
    writeFilesAtomic([{ path: options.out, bytes: modelBytes }]);
    return {
      // the network's weights, as `capsnet train` prints them (countParameters would add the flatten's shape constant)
      family: 'baseline-cnn', modelPath: options.out, modelBytes: modelBytes.length, parameters: baselineParameterCount(checkpoint.model.config),
      seconds: (performance.now() - started) / 1000, model,
    };
  }
  const config: CapsNetConfig = {
    ...checkpoint.config,
    ...(options.routingIterations !== undefined ? { routingIterations: options.routingIterations } : {}),
  };
  const { model, decoder } = buildCapsNetModels(config, checkpoint.weights, provenance);
  const modelBytes = encodeModel(model);
  const decoderBytes = encodeModel(decoder);
  const decoderPath = options.out === undefined ? '' : decoderPathFor(options.out);
  if (options.out !== undefined) writeFilesAtomic([{ path: decoderPath, bytes: decoderBytes }, { path: options.out, bytes: modelBytes }]);
  const triton = options.triton
    ? writeTritonRepository(options.triton, config, checkpoint.classLabels, { model: modelBytes, decoder: decoderBytes },
      `CapsNet exported by ${PRODUCER_NAME} ${producerVersion()} from checkpoint ${checkpoint.sha256.slice(0, 12)} ` +
        `(${options.precision ?? 'fp32'} weights, routing unrolled x${config.routingIterations}).`)
    : undefined;
  return {
    family: 'capsnet',
    modelPath: options.out ?? '',
    decoderPath,
    ...(triton ? { triton } : {}),
    modelBytes: modelBytes.length,
    decoderBytes: decoderBytes.length,
    parameters: countParameters(model.graph),
    routingIterations: config.routingIterations,
    precision: options.precision ?? 'fp32',
    seconds: (performance.now() - started) / 1000,
    model,
    decoder,
  };
}
