/**
 * Figure 4 of the paper: what the individual dimensions of a digit capsule represent. For chosen test digits, the
 * winning capsule (all others masked to zero) has each of its 16 dimensions tweaked by -0.25 ... +0.25 in steps
 * of 0.05 and is decoded, giving a 16 x 11 grid per digit.
 *
 * The decoding goes through the exported ONNX decoder (model.decoder.onnx, run by runtime/node.ts on
 * onnxruntime-node). The model comes from --model (ONNX), --run (a checkpoint, exported here), or is trained here.
 * TensorFlow.js decoding is the fallback when no ONNX model can be had, and is recorded as such.
 *
 * What each dimension does is measured on up to `measureDigits` correctly classified test digits per class (the
 * figure's digit first) by experiments/dimensions.ts and written to --out as dimensions.json (its format:
 * @capsnet-onnx/core's DimensionFindings), which `capsnet serve --dimensions` serves to the page's sliders.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { type CheckpointState, loadCheckpoint, saveCheckpoint } from '../files/checkpoint.ts';
import { type CapsNetConfig, Rng, decoderPathFor, paramShapes } from '@capsnet-onnx/core';
import { loadDataset, shiftImages } from '../data/datasets.ts';
import { decode as tfDecode, encode } from '../model/capsnet.ts';
import { capsuleLengths } from '../model/layers.ts';
import { setupBackend } from './backend.ts';
import { imageGrid, saveFigure } from './figures.ts';
import { type MeasuredDigit, dimensionFindings } from './dimensions.ts';
import { writeFileAtomic } from '../files/atomic.ts';
import {
  type ExperimentOptions,
  type ExperimentResult,
  type ResultFigure,
  EPOCHS,
  LIMITS,
  batchSizeFor,
  capsConfigFor,
  loadData,
  pct,
  runInfo,
  timer,
  writeResult,
} from './common.ts';
import { epochBatches, readWeights, stepsFor } from '../train/loop.ts';
import { capsNetAccuracy, maskedCapsulesOf, refineDecoder, trainCapsNet } from './training.ts';
import { variablesFromWeights } from '../model/layers.ts';

export interface PerturbOptions extends ExperimentOptions {
  /** Run directory (checkpoint) to use instead of training. */
  run?: string;
  /** Exported model.onnx (its decoder beside it) to use instead of training. */
  model?: string;
  /** Classes to show (default: every class, 0..9). */
  digits?: number[];
  /** Test digits per class whose reconstructions measure what each dimension does (dimensions.json). Default 10. */
  measureDigits?: number;
}

export const PERTURB_STEPS = [-0.25, -0.2, -0.15, -0.1, -0.05, 0, 0.05, 0.1, 0.15, 0.2, 0.25];

interface Shape {
  inputHeight: number;
  inputWidth: number;
  inputChannels: number;
  numClasses: number;
  digitDim: number;
}

/** Encoder and decoder behind one interface: ONNX Runtime or TensorFlow.js. */
interface Codec {
  kind: string;
  shape: Shape;
  encode(images: Float32Array, count: number): Promise<{ lengths: Float32Array; capsules: Float32Array }>;
  decode(masked: Float32Array, count: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

function tfjsCodec(config: CapsNetConfig, weights: Record<string, Float32Array>): Codec {
  const params = variablesFromWeights(paramShapes(config), weights);
  const { inputHeight: h, inputWidth: w, inputChannels: c } = config;
  return {
    kind: 'tfjs',
    shape: config,
    async encode(images, count) {
      const [lengths, capsules] = tf.tidy(() => {
        const caps = encode(params, tf.tensor4d(images, [count, h, w, c]), config).capsules;
        return [capsuleLengths(caps, config.squashEpsilon), caps];
      });
      const out = { lengths: (await lengths.data()) as Float32Array, capsules: (await capsules.data()) as Float32Array };
      tf.dispose([lengths, capsules]);
      return out;
    },
    async decode(masked, count) {
      const r = tf.tidy(() => tfDecode(params, tf.tensor3d(masked, [count, config.numClasses, config.digitDim]), config));
      const out = (await r.data()) as Float32Array;
      r.dispose();
      return out;
    },
    async dispose() {
      tf.dispose(Object.values(params));
    },
  };
}

async function onnxCodec(modelPath: string): Promise<Codec> {
  const { CapsNet } = await import('@capsnet-onnx/runtime/node');
  const model = await CapsNet.load(modelPath, { device: 'cpu', maxBatch: 256 });
  const m = model.metadata;
  const caps = m.numClasses * m.digitDim;
  const pixels = m.inputHeight * m.inputWidth * m.inputChannels;
  return {
    kind: `onnx (${modelPath}, decoder ${decoderPathFor(modelPath)}, onnxruntime-node ${model.device})`,
    shape: m,
    async encode(images, count) {
      const lengths = new Float32Array(count * m.numClasses);
      const capsules = new Float32Array(count * caps);
      for (let start = 0; start < count; start += 256) {
        const n = Math.min(256, count - start);
        const results = await model.classify({
          data: images.slice(start * pixels, (start + n) * pixels),
          shape: [n, m.inputHeight, m.inputWidth, m.inputChannels],
        });
        results.forEach((r, i) => {
          lengths.set(r.lengths, (start + i) * m.numClasses);
          capsules.set(r.capsules, (start + i) * caps);
        });
      }
      return { lengths, capsules };
    },
    async decode(masked, count) {
      const out = new Float32Array(count * pixels);
      for (let start = 0; start < count; start += 256) {
        const n = Math.min(256, count - start);
        const parts = await model.decode(masked.slice(start * caps, (start + n) * caps));
        parts.forEach((p, i) => out.set(p, (start + i) * pixels));
      }
      return out;
    },
    dispose: () => model.dispose(),
  };
}

/** Train a CapsNet at the experiment's scale and save it as a run directory the exporter can read. */
async function trainModel(options: PerturbOptions, runDir: string, backend: string): Promise<{ accuracy: number; seconds: number; decoderSteps: number }> {
  const ci = options.scale === 'ci';
  const limits = LIMITS.perturb[options.scale];
  const { dataset, train, test } = loadData(options.data, options.trainLimit ?? limits.train, options.testLimit ?? limits.test, options.scale);
  const config = capsConfigFor(options.scale, dataset.shape);
  const batchSize = batchSizeFor(options);
  const epochs = options.epochs ?? EPOCHS.perturb[options.scale];
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  const elapsed = timer();
  const nextBatch = epochBatches(train.images, train.labels, train.count, pixels, batchSize, options.seed, (batch, step) => ({
    ...batch,
    images: shiftImages(batch.images, batch.count, config, config.maxShift, new Rng(options.seed * 7919 + step)),
  }));
  const steps = stepsFor(train.count, batchSize, epochs);
  options.log(`perturb: training a ${options.scale}-scale CapsNet on ${train.count} ${dataset.name} images for ${epochs} epoch(s), ${steps} steps`);
  const { params, fit } = await trainCapsNet({ config, seed: options.seed, steps, nextBatch, log: options.log, label: 'perturb' });
  const accuracy = await capsNetAccuracy(params, config, test.images, test.labels, test.count);
  // about 16 passes over the training capsules, at most 1,500 steps (the ci default of 6,000 images)
  const decoderSteps = ci ? Math.min(1500, Math.ceil(train.count / 4)) : 0;
  if (decoderSteps > 0) {
    options.log(`perturb: refining the decoder alone for ${decoderSteps} steps on the frozen capsules of the training images`);
    const masked = await maskedCapsulesOf(params, config, train.images, train.labels, train.count);
    await refineDecoder(params, config, masked, train.images, train.count, decoderSteps, 64, options.seed, options.log, 'perturb decoder');
  }
  const seconds = elapsed();
  options.log(`perturb: test accuracy ${pct(accuracy)} on ${test.count} images (${seconds.toFixed(0)} s)`);
  const state: CheckpointState = {
    config,
    epoch: epochs,
    step: steps,
    seed: options.seed,
    dataset: dataset.name,
    classLabels: dataset.classLabels,
    backend,
    run: { batchSize, trainLimit: train.count, testLimit: test.count },
    metrics: [
      {
        epoch: epochs,
        step: steps,
        test_accuracy: accuracy,
        margin_loss: 0,
        reconstruction_loss: 0,
        train_loss: fit.finalLoss,
        train_margin_loss: 0,
        train_reconstruction_loss: 0,
        images_per_second: fit.imagesPerSecond,
        learning_rate: 0,
        backend,
        seconds: fit.seconds,
      },
    ],
    weights: await readWeights(params),
    optimizer: { m: {}, v: {} },
    producer: 'capsnet-onnx experiments',
  };
  mkdirSync(runDir, { recursive: true });
  saveCheckpoint(runDir, state);
  tf.dispose(Object.values(params));
  return { accuracy, seconds, decoderSteps };
}

/** Export a run to ONNX with the project's exporter; undefined (and why) when that is not possible. */
async function exportRun(runDir: string, out: string): Promise<{ path?: string; why?: string }> {
  try {
    const { exportCheckpoint } = await import('../export/exporter.ts');
    // The file is this experiment's own (in its --out folder): a rerun replaces it with the run's export.
    const result = exportCheckpoint(runDir, { out, overwrite: true });
    return { path: result.modelPath };
  } catch (e) {
    return { why: (e as Error).message.split('\n')[0] };
  }
}

/** The 16 x 11 tweaked copies of one masked capsule: row d = dimension d, column = step. */
export function perturbedCapsules(capsule: Float32Array, winner: number, numClasses: number, digitDim: number, steps = PERTURB_STEPS): Float32Array {
  const per = numClasses * digitDim;
  const out = new Float32Array(digitDim * steps.length * per);
  for (let d = 0; d < digitDim; d++) {
    steps.forEach((delta, s) => {
      const base = (d * steps.length + s) * per + winner * digitDim;
      for (let k = 0; k < digitDim; k++) out[base + k] = capsule[winner * digitDim + k]! + (k === d ? delta : 0);
    });
  }
  return out;
}

export async function runPerturb(options: PerturbOptions): Promise<ExperimentResult> {
  const elapsed = timer();
  const startedAt = new Date().toISOString();
  const notes: string[] = [];
  const metrics: Record<string, number> = {};
  const settings: Record<string, unknown> = { steps: PERTURB_STEPS };
  // Refusals come before --out is created.
  if (options.model && !existsSync(options.model))
    throw new Error(`--model ${options.model} does not exist: pass the model.onnx that \`capsnet export\` wrote`);
  if (options.run) loadCheckpoint(options.run);
  const backend = await setupBackend(options.backend, options.log);

  // 1. the model
  let modelPath = options.model;
  let runDir = options.run;
  let tfWeights: { config: CapsNetConfig; weights: Record<string, Float32Array> } | undefined;
  let dataSpec = options.data;
  if (modelPath) {
    if (!existsSync(modelPath)) throw new Error(`--model ${modelPath} does not exist: pass the model.onnx that \`capsnet export\` wrote`);
    settings.model = modelPath;
  } else {
    if (!runDir) {
      runDir = join(options.out, 'perturb-run');
      const trained = await trainModel(options, runDir, backend);
      metrics.test_accuracy = trained.accuracy;
      settings.trained = { runDir, seconds: Number(trained.seconds.toFixed(1)), decoderRefineSteps: trained.decoderSteps };
      notes.push(`No --run or --model given: trained a ${options.scale}-scale CapsNet here (${runDir}), test accuracy ${pct(trained.accuracy)}.`);
      if (trained.decoderSteps > 0) {
        notes.push(
          `ci scale: after the short joint training, the decoder alone was trained ${trained.decoderSteps} ` +
            'more steps (batch 64) on the frozen capsules, so the grids show what the capsules encode rather ' +
            `than an untrained decoder's average digit.`,
        );
      }
    }
    const checkpoint = loadCheckpoint(runDir);
    settings.run = runDir;
    tfWeights = { config: checkpoint.config, weights: checkpoint.weights };
    dataSpec = checkpoint.dataset;
    const lastAccuracy = checkpoint.metrics.at(-1)?.test_accuracy;
    if (metrics.test_accuracy === undefined && lastAccuracy !== undefined) metrics.test_accuracy = lastAccuracy;
    mkdirSync(join(options.out, 'perturb-model'), { recursive: true });
    const exported = await exportRun(runDir, join(options.out, 'perturb-model', 'model.onnx'));
    if (exported.path) modelPath = exported.path;
    else notes.push(`Could not export ${runDir} to ONNX (${exported.why}); decoded with TensorFlow.js instead.`);
  }
  mkdirSync(options.out, { recursive: true });
  let codec: Codec;
  if (modelPath) {
    try {
      codec = await onnxCodec(modelPath);
    } catch (e) {
      if (!tfWeights) throw e;
      notes.push(`ONNX Runtime could not load ${modelPath} (${(e as Error).message.split('\n')[0]}); decoded with TensorFlow.js instead.`);
      codec = tfjsCodec(tfWeights.config, tfWeights.weights);
    }
  } else {
    codec = tfjsCodec(tfWeights!.config, tfWeights!.weights);
  }
  settings.decoder = codec.kind;
  const shape = codec.shape;
  const pixels = shape.inputHeight * shape.inputWidth * shape.inputChannels;
  options.log(`perturb: decoding with ${codec.kind}`);

  // 2. the digits: for each class, the first test image the model gets right (else the first of that class)
  let dataset;
  try {
    dataset = loadDataset(dataSpec);
  } catch (e) {
    if (dataSpec === options.data) throw e;
    notes.push(`The model's data set "${dataSpec}" is not available here (${(e as Error).message.split('\n')[0]}); used ${options.data}.`);
    dataset = loadDataset(options.data);
  }
  if (dataset.shape.inputHeight !== shape.inputHeight || dataset.shape.inputWidth !== shape.inputWidth || dataset.shape.inputChannels !== shape.inputChannels) {
    throw new Error(
      `the model takes ${shape.inputHeight}x${shape.inputWidth}x${shape.inputChannels} images but ${dataset.name} has ` +
        `${dataset.shape.inputHeight}x${dataset.shape.inputWidth}x${dataset.shape.inputChannels}: pass --data for the model's data set`,
    );
  }
  const classes = options.digits ?? Array.from({ length: Math.min(10, shape.numClasses) }, (_, i) => i);
  const candidates = Math.min(dataset.test.count, 500);
  const { lengths: candLengths, capsules: candCapsules } = await codec.encode(dataset.test.images.slice(0, candidates * pixels), candidates);
  const caps = shape.numClasses * shape.digitDim;
  const predicted = (i: number) => {
    let best = 0;
    for (let k = 1; k < shape.numClasses; k++) if (candLengths[i * shape.numClasses + k]! > candLengths[i * shape.numClasses + best]!) best = k;
    return best;
  };

  const figures: ResultFigure[] = [];
  const rows: Array<Array<string | number | null>> = [];
  let parityMax = 0;
  const parityCodec = codec.kind.startsWith('onnx') && tfWeights ? tfjsCodec(tfWeights.config, tfWeights.weights) : undefined;
  const measured: MeasuredDigit[] = [];
  const measureDigits = options.measureDigits ?? 10;
  for (const digit of classes) {
    let index = -1;
    for (let i = 0; i < candidates && index < 0; i++) if (dataset.test.labels[i] === digit && predicted(i) === digit) index = i;
    for (let i = 0; i < candidates && index < 0; i++) if (dataset.test.labels[i] === digit) index = i;
    if (index < 0) {
      notes.push(`No test image of class ${digit} among the first ${candidates}.`);
      continue;
    }
    const winner = predicted(index);
    const capsule = candCapsules.slice(index * caps, (index + 1) * caps);
    const grid = perturbedCapsules(capsule, winner, shape.numClasses, shape.digitDim);
    const count = shape.digitDim * PERTURB_STEPS.length;
    const recon = await codec.decode(grid, count);
    if (parityCodec) {
      const ref = await parityCodec.decode(grid, count);
      for (let i = 0; i < ref.length; i++) parityMax = Math.max(parityMax, Math.abs(ref[i]! - recon[i]!));
    }
    // per-dimension effect: mean absolute pixel difference between the -0.25 and +0.25 reconstructions
    const effect = Array.from({ length: shape.digitDim }, (_, d) => {
      const lo = recon.subarray(d * PERTURB_STEPS.length * pixels, (d * PERTURB_STEPS.length + 1) * pixels);
      const hi = recon.subarray((d * PERTURB_STEPS.length + PERTURB_STEPS.length - 1) * pixels, (d * PERTURB_STEPS.length + PERTURB_STEPS.length) * pixels);
      let sum = 0;
      for (let i = 0; i < pixels; i++) sum += Math.abs(hi[i]! - lo[i]!);
      return sum / pixels;
    });
    const ranked = effect.map((e, d) => [d, e] as const).sort((a, b) => b[1] - a[1]);
    // what each dimension does: this digit and the next correctly classified ones of its class
    measured.push({ cls: winner, reconstructions: recon });
    for (let i = index + 1, n = 1; i < candidates && n < measureDigits; i++) {
      if (dataset.test.labels[i] !== digit || predicted(i) !== digit) continue;
      const others = perturbedCapsules(candCapsules.slice(i * caps, (i + 1) * caps), digit, shape.numClasses, shape.digitDim);
      measured.push({ cls: digit, reconstructions: await codec.decode(others, count) });
      n++;
    }
    const length = candLengths[index * shape.numClasses + winner]!;
    rows.push([
      digit,
      index,
      winner,
      Number(length.toFixed(3)),
      ranked
        .slice(0, 3)
        .map(([d]) => d + 1)
        .join(', '),
      Number(ranked[0]![1].toFixed(4)),
      Number(ranked.at(-1)![1].toFixed(4)),
    ]);

    const cell = (k: number) => ({
      width: shape.inputWidth,
      height: shape.inputHeight,
      layers: [{ pixels: recon.subarray(k * pixels, k * pixels + shape.inputHeight * shape.inputWidth) }],
    });
    const file = `perturb-digit-${digit}.svg`;
    const size = await saveFigure(
      join(options.out, file),
      imageGrid({
        title: `Digit ${digit}: capsule ${winner} dimensions x perturbation`,
        rowTitle: 'capsule dimension',
        colTitle: 'perturbation added to the dimension',
        rows: Array.from({ length: shape.digitDim }, (_, d) => PERTURB_STEPS.map((_, s) => cell(d * PERTURB_STEPS.length + s))),
        rowLabels: Array.from({ length: shape.digitDim }, (_, d) => `D${d + 1}`),
        colLabels: PERTURB_STEPS.map((s) => (s === 0 ? '0' : `${s > 0 ? '+' : '-'}.${String(Math.round(Math.abs(s) * 100)).padStart(2, '0')}`)),
        scale: 2,
        gap: 3,
        footer: [`test image #${index}, label ${digit}, |v| = ${length.toFixed(3)}, decoder: ${codec.kind.split(' ')[0]}`],
      }),
    );
    figures.push({
      file,
      caption: `Digit ${digit}: each row tweaks one of the ${shape.digitDim} dimensions of the winning capsule from -0.25 to +0.25 (steps of 0.05).`,
      ...size,
    });
    options.log(`perturb: wrote ${file}`);
  }
  await codec.dispose();
  await parityCodec?.dispose();
  if (parityCodec) {
    metrics.onnx_vs_tfjs_max_abs_diff = parityMax;
    notes.push(`ONNX decoder vs TensorFlow.js decoder on every perturbed capsule: max |difference| ${parityMax.toExponential(2)}.`);
  }

  const findings = dimensionFindings(measured, shape, PERTURB_STEPS, basename(modelPath ?? 'checkpoint (tfjs)'), dataset.name);
  writeFileAtomic(join(options.out, 'dimensions.json'), `${JSON.stringify(findings, null, 1)}\n`);
  notes.push(
    `dimensions.json: what each dimension does, measured on ${measured.length} digits (at most ${measureDigits} per class) from the ` +
      '-0.25 and +0.25 reconstructions (ink, centroid, second moments, slant, stroke width, locality: experiments/dimensions.ts).',
  );
  const px = (v: number) => Number(v.toFixed(2));
  const result: ExperimentResult = {
    experiment: 'perturb',
    title: 'Dimension perturbations of the winning digit capsule (paper figure 4)',
    paper: 'Figure 4: single dimensions of the 16-D digit capsule capture scale and thickness, localized parts, stroke thickness, skew, width and translation.',
    ...runInfo(options, backend, dataset.name, startedAt, elapsed()),
    metrics,
    settings,
    tables: [
      {
        title: 'Per digit: the three dimensions whose +-0.25 tweak changes the reconstruction most (mean |pixel change|)',
        columns: ['digit', 'test index', 'winning capsule', 'length', 'most effective dims', 'max effect', 'min effect'],
        rows,
      },
      {
        title: 'What each dimension does, over every measured digit (dimensions.json; pixels, ink as a fraction): +0.25 minus -0.25',
        columns: ['dim', 'label', 'shift x', 'shift y', 'width', 'height', 'thickness', 'skew', 'rotation (deg)', 'ink', 'locality', 'ink share'],
        rows: findings.overall.map((e) => [
          e.dimension,
          e.label,
          ...[e.shiftX, e.shiftY, e.width, e.height, e.thickness, e.skew, e.rotation, e.ink, e.locality, e.inkShare].map(px),
        ]),
      },
    ],
    figures,
    notes,
  };
  writeResult(options.out, result);
  return result;
}
