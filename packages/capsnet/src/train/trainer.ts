/** `capsnet train`: the training loop (train/loop.ts steps, any model family in train/models/), seeded shuffling and shifts, Adam with decay, per-epoch evaluation, atomic checkpoints, resume. */
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import cliProgress from 'cli-progress';
import { type BackendName, initBackend } from './backend.ts';
import { type BaselineCnnConfig, type CapsNetConfig, PAPER_BASELINES, type PresetName, Rng, baselineConfig, countShapes, narrowed, presetConfig } from '@capsnet-onnx/core';
import {
  type BaselineModelSpec, type CheckpointState, type EpochMetrics, type EpochProgress, checkpointPath, loadCheckpoint, saveCheckpoint,
} from '../files/checkpoint.ts';
import { type Dataset, type Split, loadDataset, shiftImages } from '../data/datasets.ts';
import { writeFileAtomic } from '../files/atomic.ts';
import type { CapsNetParams } from './model.ts';
import { adamFor, epochOrder, gather, oneHot, paramsFromWeights as variablesFromWeights, readWeights, trainStep } from './loop.ts';
import { type ModelFamily, type ModelName, baselineFamily, capsnetFamily, evaluate } from './models/family.ts';

export { oneHot, readWeights };

export interface TrainOptions {
  /** Network family: 'capsnet' (default) or 'baseline-cnn' (Table 1's CNN; `preset` small narrows it 4x). */
  model?: ModelName;
  preset: PresetName;
  data: string;
  epochs: number;
  batchSize: number;
  routing?: number;
  backend: 'auto' | BackendName;
  seed: number;
  out: string;
  resume: boolean;
  /** Also checkpoint every this many steps inside an epoch (0: only at epoch ends). */
  checkpointEvery: number;
  /** Use only the first N training images (quick runs and tests). */
  trainLimit?: number;
  /** Evaluate on only the first N test images. */
  testLimit?: number;
  configOverrides?: Partial<CapsNetConfig>;
  baselineOverrides?: Partial<BaselineCnnConfig>;
  log: (line: string) => void;
  progressBar: boolean;
}

export const METRICS_FILE = 'metrics.jsonl';

/** CapsNet variables from stored weights. */
export function paramsFromWeights(config: CapsNetConfig, weights: Record<string, Float32Array>): CapsNetParams {
  return variablesFromWeights(capsnetFamily(config).paramShapes, weights);
}

export function imagesTensor(images: Float32Array, count: number, config: CapsNetConfig): tf.Tensor4D {
  return tf.tensor4d(images, [count, config.inputHeight, config.inputWidth, config.inputChannels]);
}

/** The baseline CNN a preset trains: the paper's Table 1 CNN, or 4x narrower for 'small'. */
export function baselineForPreset(preset: PresetName, shape: Dataset['shape'], overrides: Partial<BaselineCnnConfig> = {}): BaselineCnnConfig {
  const base = preset === 'small' ? narrowed(PAPER_BASELINES.mnist, 4) : PAPER_BASELINES.mnist;
  return baselineConfig('mnist', shape, { ...base, ...overrides });
}

export async function train(options: TrainOptions): Promise<{ runDir: string; metrics: EpochMetrics[]; config: CapsNetConfig; parameters: number }> {
  const { log } = options;
  const backend = await initBackend(options.backend, log);
  log(`backend: ${backend.name} (${backend.detail})`);
  mkdirSync(options.out, { recursive: true });

  let resumed: (CheckpointState & { sha256: string }) | undefined;
  if (options.resume) {
    if (!existsSync(checkpointPath(options.out))) {
      throw new Error(`--resume: no checkpoint in ${options.out}; start a new run without --resume`);
    }
    resumed = loadCheckpoint(options.out);
    log(`resuming from ${checkpointPath(options.out)}: epoch ${resumed.epoch}, step ${resumed.step}`);
  }
  const dataset: Dataset = loadDataset(resumed?.dataset ?? options.data);
  const config =
    resumed?.config ??
    presetConfig(options.preset, dataset.shape, {
      ...options.configOverrides,
      ...(options.routing !== undefined ? { routingIterations: options.routing } : {}),
    });
  const seed = resumed?.seed ?? options.seed;
  const modelSpec: BaselineModelSpec | undefined = resumed
    ? resumed.model
    : options.model === 'baseline-cnn' ? { family: 'baseline-cnn', config: baselineForPreset(options.preset, dataset.shape, options.baselineOverrides) } : undefined;
  const family: ModelFamily = modelSpec ? baselineFamily(modelSpec.config, seed) : capsnetFamily(config);
  const run = resumed?.run ?? { batchSize: options.batchSize, trainLimit: options.trainLimit, testLimit: options.testLimit };
  const train = run.trainLimit ? limitSplit(dataset.train, run.trainLimit, config) : dataset.train;
  const stepsPerEpoch = Math.ceil(train.count / run.batchSize);
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;

  const params = resumed ? variablesFromWeights(family.paramShapes, resumed.weights) : family.init(seed);
  const parameterCount = countShapes(family.paramShapes);
  log(modelSpec
    ? `model: baseline CNN, conv ${modelSpec.config.convChannels.join('/')} ${modelSpec.config.kernel}x${modelSpec.config.kernel} ${modelSpec.config.padding}` +
      `${modelSpec.config.poolAfter.length ? `, pooling after conv ${modelSpec.config.poolAfter.map((p) => p + 1).join(',')}` : ', no pooling'}, fc ${modelSpec.config.fc.join('/')}, ` +
      `dropout ${modelSpec.config.dropout}: ${parameterCount.toLocaleString('en-US')} parameters`
    : `model: CapsNet, conv1 ${config.conv1Filters}, ${config.primaryMaps} primary maps, routing ${config.routingIterations}: ${parameterCount.toLocaleString('en-US')} parameters`);
  const optimizer = adamFor(config);
  if (resumed) optimizer.loadState(resumed.optimizer, params, resumed.step);
  const metrics: EpochMetrics[] = resumed ? [...resumed.metrics] : [];
  const metricsPath = join(options.out, METRICS_FILE);
  // The checkpoint is the source of truth: a kill between checkpoint and append must not leave a gap or a duplicate.
  writeFileAtomic(metricsPath, metrics.map((m) => JSON.stringify(m) + '\n').join(''));

  const snapshot = async (epoch: number, progress?: EpochProgress) => {
    saveCheckpoint(options.out, {
      config, ...(modelSpec ? { model: modelSpec } : {}), epoch, step: optimizer.step, seed, run, dataset: dataset.name, classLabels: dataset.classLabels, backend: backend.name,
      metrics, progress, weights: await readWeights(params), optimizer: await optimizer.exportState(), producer: 'capsnet-onnx',
    });
  };

  log(`data: ${dataset.name}, ${train.count} train / ${Math.min(run.testLimit ?? Infinity, dataset.test.count)} test images, ` +
    `${config.inputHeight}x${config.inputWidth}x${config.inputChannels}, ${config.numClasses} classes`);
  for (let epoch = resumed?.epoch ?? 0; epoch < options.epochs; epoch++) {
    const saved = resumed?.progress && epoch === resumed.epoch ? resumed.progress : undefined;
    const progress: EpochProgress = saved
      ? { ...saved, parts: { ...(saved.parts ?? { margin: saved.margin ?? 0, reconstruction: saved.reconstruction ?? 0 }) } }
      : { stepsDone: 0, images: 0, loss: 0, parts: {}, seconds: 0 };
    const order = epochOrder(seed, epoch, train.count);
    const bar = options.progressBar
      ? new cliProgress.SingleBar(
          { format: `epoch ${epoch + 1}/${options.epochs} [{bar}] {value}/{total} steps | {ips} img/s | loss {loss} | ETA {eta_formatted}`, hideCursor: true },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
    bar?.start(stepsPerEpoch, progress.stepsDone, { ips: '-', loss: '-' });
    for (let s = progress.stepsDone; s < stepsPerEpoch; s++) {
      const started = performance.now();
      const indices = order.subarray(s * run.batchSize, Math.min((s + 1) * run.batchSize, train.count));
      const batch = gather(train.images, train.labels, pixels, indices);
      const shifted = shiftImages(batch.images, batch.count, config, config.maxShift, new Rng(seed * 7919 + optimizer.step));
      const x = imagesTensor(shifted, batch.count, config);
      const y = oneHot(batch.labels, config.numClasses);
      const step = optimizer.step;
      const losses = await trainStep(optimizer, params, () => family.losses(params, x, y, step));
      tf.dispose([x, y]);
      const { total: loss, ...parts } = losses;
      progress.stepsDone = s + 1;
      progress.images += indices.length;
      progress.loss += loss! * indices.length;
      for (const [k, v] of Object.entries(parts)) progress.parts![k] = (progress.parts![k] ?? 0) + v * indices.length;
      progress.seconds += (performance.now() - started) / 1000;
      bar?.update(s + 1, { ips: (progress.images / progress.seconds).toFixed(1), loss: loss.toFixed(4) });
      if (options.checkpointEvery > 0 && (s + 1) % options.checkpointEvery === 0 && s + 1 < stepsPerEpoch) await snapshot(epoch, progress);
    }
    bar?.stop();
    const test = await evaluate(family, params, dataset.test, 100, run.testLimit);
    const record: EpochMetrics = {
      epoch: epoch + 1,
      step: optimizer.step,
      test_accuracy: test.accuracy,
      ...Object.fromEntries(Object.entries(test.losses).map(([k, v]) => [`${k}_loss`, v])),
      train_loss: progress.loss / progress.images,
      ...Object.fromEntries(Object.entries(progress.parts!).map(([k, v]) => [`train_${k}_loss`, v / progress.images])),
      images_per_second: progress.images / progress.seconds,
      learning_rate: optimizer.learningRate(),
      backend: backend.name,
      seconds: progress.seconds,
    };
    metrics.push(record);
    await snapshot(epoch + 1);
    appendFileSync(metricsPath, JSON.stringify(record) + '\n');
    const lossText = Object.entries(test.losses).map(([k, v]) => `${k.replace('_', ' ')} ${v.toFixed(4)}`).join(', ');
    log(`epoch ${record.epoch}: test accuracy ${(100 * record.test_accuracy).toFixed(2)}%, ${lossText}, ` +
      `${record.images_per_second.toFixed(1)} img/s, ${record.seconds.toFixed(1)} s`);
  }
  optimizer.dispose();
  tf.dispose(Object.values(params));
  return { runDir: options.out, metrics, config, parameters: parameterCount };
}

function limitSplit(split: Split, limit: number, config: CapsNetConfig): Split {
  const count = Math.min(limit, split.count);
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  return { images: split.images.subarray(0, count * pixels), labels: split.labels.subarray(0, count), count };
}
