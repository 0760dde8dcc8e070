/**
 * `capsnet ensemble`: N trained CapsNets -> one ONNX graph that averages their class scores (section 7: the
 * paper's CIFAR-10 result is a 7-model ensemble). The file keeps the single model's contract, so the runtime,
 * the server and parity load it unchanged:
 *   lengths        = the mean of the members' capsule lengths (argmax = the ensemble's prediction);
 *   capsules, coupling = member 1's;
 *   reconstruction = member 1's decoder on member 1's capsules masked by the ensemble's prediction.
 * The decoder file beside it is member 1's decoder.
 */
import { basename, dirname, resolve } from 'node:path';
import { type CapsNetConfig, IO_NAMES, METADATA_KEYS, decoderPathFor, validateConfig } from '@capsnet-onnx/core';
import { loadCheckpoint } from '../files/checkpoint.ts';
import { encodeModel } from './onnx-schema.ts';
import { GraphBuilder, buildModel, countParameters } from './graph-builder.ts';
import { type Weights, buildDecoderGraph, capsNetBody, declareOutputs, decoder, imageShapeText, imagesInput, maskLongestCapsule } from './capsnet-graph.ts';
import {
  type ExportProvenance,
  type ExportResult,
  PRODUCER_NAME,
  PROTOBUF_LIMIT,
  checkOutputPath,
  dataProvenance,
  estimateModelBytes,
  exportMetadata,
  producerVersion,
  recordDecoderHash,
} from './exporter.ts';
import { refuseToReplace, sweepTempFiles, writeFilesAtomic } from '../files/atomic.ts';

export interface EnsembleMember {
  config: CapsNetConfig;
  weights: Weights;
  /** Where the member came from (its run directory), for errors and metadata. */
  source: string;
  checkpointSha256: string;
  testAccuracy: number | null;
  classLabels: string[];
  /** The data's public name, its files' hashes and preprocessing (exporter.ts's dataProvenance). */
  data: Pick<ExportProvenance, 'dataset' | 'datasetFiles' | 'preprocessing'>;
}

/** What the members must share to be averaged: the input they take and the classes they score. */
function checkCompatible(members: EnsembleMember[]): void {
  if (members.length < 2) throw new Error(`an ensemble needs at least 2 members, got ${members.length}: pass two or more run directories`);
  // The same checkpoint twice would weigh one model double while counting as two members.
  const seen = new Map<string, string>();
  for (const m of members) {
    const earlier = seen.get(m.checkpointSha256);
    if (earlier !== undefined) {
      throw new Error(
        `${m.source} holds the same checkpoint as ${earlier} (SHA-256 ${m.checkpointSha256.slice(0, 12)}): ` +
          'each ensemble member must be a different trained run',
      );
    }
    seen.set(m.checkpointSha256, m.source);
  }
  const first = members[0]!;
  const key = (m: EnsembleMember) =>
    JSON.stringify({
      input: [m.config.inputHeight, m.config.inputWidth, m.config.inputChannels],
      numClasses: m.config.numClasses,
      crop: m.config.crop ?? null,
      standardize: m.config.standardize ?? null,
      classLabels: m.classLabels,
    });
  for (const m of members.slice(1)) {
    if (key(m) !== key(first)) {
      throw new Error(
        `${m.source} does not take the same input or score the same classes as ${first.source} ` +
          `(${key(m)} vs ${key(first)}): ensemble models trained on the same data set`,
      );
    }
  }
}

/** Build the ensemble's model and decoder in memory. */
export function buildEnsembleModels(members: EnsembleMember[], exportedAt?: Date) {
  checkCompatible(members);
  const bytes = members.reduce((n, m) => n + estimateModelBytes(m.config), 0);
  if (bytes * 1.01 > PROTOBUF_LIMIT) {
    throw new Error(
      `the ensemble would be about ${(bytes / 2 ** 30).toFixed(2)} GiB of float32 weights, past protobuf's 2 GiB limit on an ONNX file: ` +
        'ensemble fewer or smaller members',
    );
  }
  for (const m of members) validateConfig(m.config);
  const first = members[0]!;
  const config = first.config;
  const J = config.numClasses;
  const g = new GraphBuilder(
    'capsnet_ensemble',
    `Ensemble of ${members.length} CapsNets (Sabour, Frosst & Hinton 2017) for ${imageShapeText(config)} images and ${J} classes, ` +
      "each with its routing unrolled; the class scores are the mean of the members' capsule lengths.",
  );
  const images = imagesInput(g, config);
  const bodies = members.map((m, k) =>
    g.scope(`member${k + 1}`, () => capsNetBody(g, m.config, m.weights, images, { weightPrefix: `member${k + 1}/`, io: false })),
  );
  const lengths = g.scope('ensemble', () => {
    let sum = bodies[0]!.lengths;
    for (const body of bodies.slice(1)) sum = g.add(sum, body.lengths);
    return g.mul(sum, g.constFloat(1 / members.length), { output: IO_NAMES.lengths });
  });
  g.identity(bodies[0]!.capsules, { output: IO_NAMES.capsules });
  g.identity(bodies[0]!.coupling, { output: IO_NAMES.coupling });
  const masked = g.scope('mask', () => maskLongestCapsule(g, lengths, bodies[0]!.capsules, J));
  g.scope('member1', () => decoder(g, config, first.weights, 'fp32', masked, IO_NAMES.reconstruction, 'member1/'));
  declareOutputs(g, config, `the mean of ${members.length} members' capsule lengths, the ensemble's class scores (argmax = prediction).`);

  const metadata = {
    ...exportMetadata(config, {
      classLabels: first.classLabels,
      ...first.data,
      testAccuracy: null,
      checkpointSha256: first.checkpointSha256,
      exportedAt,
    }),
    [METADATA_KEYS.ensemble]: JSON.stringify({
      members: members.length,
      combine: 'mean of capsule lengths',
      checkpoints: members.map((m) => m.checkpointSha256),
      testAccuracies: members.map((m) => m.testAccuracy),
    }),
  };
  const common = { producerName: PRODUCER_NAME, producerVersion: producerVersion(), metadata };
  return {
    model: buildModel(g.graph(), { ...common, doc: `CapsNet ensemble of ${members.length} exported by ${PRODUCER_NAME} ${producerVersion()}.` }),
    decoder: buildModel(buildDecoderGraph(config, first.weights), {
      ...common,
      doc: `Member 1's reconstruction decoder, exported by ${PRODUCER_NAME} ${producerVersion()}.`,
    }),
  };
}

/**
 * Load each run's checkpoint, build the ensemble and write it (and member 1's decoder) atomically. An existing
 * model or decoder file is replaced only with `overwrite` (else OutputExistsError, nothing written).
 */
export function exportEnsemble(runDirs: string[], options: { out: string; exportedAt?: Date; overwrite?: boolean }): ExportResult {
  const started = performance.now();
  checkOutputPath(options.out);
  refuseToReplace([options.out, decoderPathFor(options.out)], options.overwrite, { option: 'out path', flag: '-o path' });
  const members: EnsembleMember[] = runDirs.map((dir) => {
    const checkpoint = loadCheckpoint(dir);
    if (checkpoint.model?.family === 'baseline-cnn') throw new Error(`${dir} holds a baseline CNN: an ensemble averages CapsNets' capsule lengths`);
    return {
      config: checkpoint.config,
      weights: checkpoint.weights,
      source: dir,
      checkpointSha256: checkpoint.sha256,
      testAccuracy: checkpoint.metrics.at(-1)?.test_accuracy ?? null,
      classLabels: checkpoint.classLabels,
      data: dataProvenance(checkpoint),
    };
  });
  const { model, decoder: decoderModel } = buildEnsembleModels(members, options.exportedAt);
  const decoderBytes = encodeModel(decoderModel);
  recordDecoderHash(model, decoderBytes);
  const modelBytes = encodeModel(model);
  const decoderPath = decoderPathFor(options.out);
  // As `capsnet export`: temp files of a killed run are swept, and the decoder lands before the model.
  sweepTempFiles(dirname(resolve(options.out)), [basename(options.out), basename(decoderPath)]);
  writeFilesAtomic([
    { path: decoderPath, bytes: decoderBytes },
    { path: options.out, bytes: modelBytes },
  ]);
  return {
    family: 'capsnet',
    precision: 'fp32',
    computePrecision: 'fp32',
    modelPath: options.out,
    decoderPath,
    modelBytes: modelBytes.length,
    decoderBytes: decoderBytes.length,
    parameters: countParameters(model.graph),
    routingIterations: members[0]!.config.routing.iterations,
    seconds: (performance.now() - started) / 1000,
    model,
    decoder: decoderModel,
  };
}
