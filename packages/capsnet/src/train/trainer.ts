/** The training loop: seeded shuffling and shifts, Adam with decay, per-epoch evaluation, atomic checkpoints, resume. */
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import cliProgress from 'cli-progress';
import { Adam } from './adam.ts';
import { type BackendName, initBackend } from './backend.ts';
import { type CapsNetConfig, type PresetName, presetConfig, Rng } from '@capsnet-onnx/core';
import { type CheckpointState, type EpochMetrics, type EpochProgress, checkpointPath, loadCheckpoint, saveCheckpoint } from '../files/checkpoint.ts';
import { type Dataset, type Split, loadDataset, shiftImages } from '../data/datasets.ts';
import { writeFileAtomic } from '../files/atomic.ts';
import { type CapsNetParams, forward, initParams, marginLoss, reconstructionLoss, trainingLosses } from './model.ts';

export interface TrainOptions {
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
  log: (line: string) => void;
  progressBar: boolean;
}

export const METRICS_FILE = 'metrics.jsonl';

export function paramsFromWeights(config: CapsNetConfig, weights: Record<string, Float32Array>): CapsNetParams {
  const params = initParams(config, 0);
  for (const [name, variable] of Object.entries(params)) variable.assign(tf.tensor(weights[name]!, variable.shape));
  return params;
}

export async function readWeights(params: CapsNetParams): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [name, variable] of Object.entries(params)) out[name] = (await variable.data()) as Float32Array;
  return out;
}

export function oneHot(labels: Int32Array, numClasses: number): tf.Tensor2D {
  return tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), numClasses), 'float32') as tf.Tensor2D);
}

export function imagesTensor(images: Float32Array, count: number, config: CapsNetConfig): tf.Tensor4D {
  return tf.tensor4d(images, [count, config.inputHeight, config.inputWidth, config.inputChannels]);
}

/** Test accuracy (longest capsule) and test losses (decoder masked by the true label), in batches. */
export async function evaluate(params: CapsNetParams, split: Split, config: CapsNetConfig, batchSize = 100, limit = split.count) {
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  const count = Math.min(limit, split.count);
  let correct = 0;
  let margin = 0;
  let reconstruction = 0;
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const labels = split.labels.subarray(start, start + n);
    const [predicted, m, r] = tf.tidy(() => {
      const x = imagesTensor(split.images.subarray(start * pixels, (start + n) * pixels), n, config);
      const y = oneHot(labels, config.numClasses);
      const out = forward(params, x, config, y);
      return [tf.argMax(out.lengths, -1), marginLoss(out.lengths, y, config), reconstructionLoss(out.reconstruction, x, config)];
    });
    const p = (await predicted.data()) as Int32Array;
    for (let i = 0; i < n; i++) if (p[i] === labels[i]) correct++;
    margin += (await m.data())[0]! * n;
    reconstruction += (await r.data())[0]! * n;
    tf.dispose([predicted, m, r]);
  }
  return { accuracy: correct / count, margin: margin / count, reconstruction: reconstruction / count };
}

/** The training set's order for one epoch: a permutation seeded by the run's seed and the epoch number. */
function epochOrder(seed: number, epoch: number, count: number): Int32Array {
  return new Rng(seed * 1000003 + epoch).permutation(count);
}

export async function train(options: TrainOptions): Promise<{ runDir: string; metrics: EpochMetrics[]; config: CapsNetConfig }> {
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
  const run = resumed?.run ?? { batchSize: options.batchSize, trainLimit: options.trainLimit, testLimit: options.testLimit };
  const train = run.trainLimit ? limitSplit(dataset.train, run.trainLimit, config) : dataset.train;
  const stepsPerEpoch = Math.ceil(train.count / run.batchSize);
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;

  const params = resumed ? paramsFromWeights(config, resumed.weights) : initParams(config, seed);
  const optimizer = new Adam({ learningRate: config.learningRate, decayRate: config.decayRate, decaySteps: config.decaySteps });
  if (resumed) optimizer.loadState(resumed.optimizer, params, resumed.step);
  const metrics: EpochMetrics[] = resumed ? [...resumed.metrics] : [];
  const metricsPath = join(options.out, METRICS_FILE);
  // The checkpoint is the source of truth: a kill between checkpoint and append must not leave a gap or a duplicate.
  writeFileAtomic(metricsPath, metrics.map((m) => JSON.stringify(m) + '\n').join(''));
  const varNameToParam = new Map(Object.entries(params).map(([key, v]) => [v.name, key]));

  const snapshot = async (epoch: number, progress?: EpochProgress) => {
    saveCheckpoint(options.out, {
      config, epoch, step: optimizer.step, seed, run, dataset: dataset.name, classLabels: dataset.classLabels, backend: backend.name,
      metrics, progress, weights: await readWeights(params), optimizer: await optimizer.exportState(), producer: 'capsnet-onnx',
    });
  };

  log(`data: ${dataset.name}, ${train.count} train / ${Math.min(run.testLimit ?? Infinity, dataset.test.count)} test images, ` +
    `${config.inputHeight}x${config.inputWidth}x${config.inputChannels}, ${config.numClasses} classes`);
  for (let epoch = resumed?.epoch ?? 0; epoch < options.epochs; epoch++) {
    const progress: EpochProgress =
      resumed?.progress && epoch === resumed.epoch ? { ...resumed.progress } : { stepsDone: 0, images: 0, loss: 0, margin: 0, reconstruction: 0, seconds: 0 };
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
      const batch = new Float32Array(indices.length * pixels);
      const labels = new Int32Array(indices.length);
      indices.forEach((source, i) => {
        batch.set(train.images.subarray(source * pixels, (source + 1) * pixels), i * pixels);
        labels[i] = train.labels[source]!;
      });
      const shifted = shiftImages(batch, indices.length, config, config.maxShift, new Rng(seed * 7919 + optimizer.step));
      const x = imagesTensor(shifted, indices.length, config);
      const y = oneHot(labels, config.numClasses);
      let parts: tf.Tensor[] = [];
      const { value, grads } = tf.variableGrads(() => {
        const losses = trainingLosses(params, x, y, config);
        parts = [tf.keep(losses.margin), tf.keep(losses.reconstruction)];
        return losses.total;
      }, Object.values(params));
      const named: Record<string, tf.Tensor> = {};
      for (const [varName, grad] of Object.entries(grads)) named[varNameToParam.get(varName)!] = grad;
      optimizer.apply(params, named);
      const [loss, margin, reconstruction] = await Promise.all([value, ...parts].map(async (t) => (await t.data())[0]!));
      tf.dispose([x, y, value, ...parts, ...Object.values(grads)]);
      if (!Number.isFinite(loss)) throw new Error(`loss became ${loss} at step ${optimizer.step}: lower the learning rate or check the data`);
      progress.stepsDone = s + 1;
      progress.images += indices.length;
      progress.loss += loss * indices.length;
      progress.margin += margin * indices.length;
      progress.reconstruction += reconstruction * indices.length;
      progress.seconds += (performance.now() - started) / 1000;
      bar?.update(s + 1, { ips: (progress.images / progress.seconds).toFixed(1), loss: loss.toFixed(4) });
      if (options.checkpointEvery > 0 && (s + 1) % options.checkpointEvery === 0 && s + 1 < stepsPerEpoch) await snapshot(epoch, progress);
    }
    bar?.stop();
    const test = await evaluate(params, dataset.test, config, 100, run.testLimit);
    const record: EpochMetrics = {
      epoch: epoch + 1,
      step: optimizer.step,
      test_accuracy: test.accuracy,
      margin_loss: test.margin,
      reconstruction_loss: test.reconstruction,
      train_loss: progress.loss / progress.images,
      train_margin_loss: progress.margin / progress.images,
      train_reconstruction_loss: progress.reconstruction / progress.images,
      images_per_second: progress.images / progress.seconds,
      learning_rate: optimizer.learningRate(),
      backend: backend.name,
      seconds: progress.seconds,
    };
    metrics.push(record);
    await snapshot(epoch + 1);
    appendFileSync(metricsPath, JSON.stringify(record) + '\n');
    log(
      `epoch ${record.epoch}: test accuracy ${(100 * record.test_accuracy).toFixed(2)}%, margin ${record.margin_loss.toFixed(4)}, ` +
        `reconstruction ${record.reconstruction_loss.toFixed(4)}, ${record.images_per_second.toFixed(1)} img/s, ${record.seconds.toFixed(1)} s`,
    );
  }
  optimizer.dispose();
  tf.dispose(Object.values(params));
  return { runDir: options.out, metrics, config };
}

function limitSplit(split: Split, limit: number, config: CapsNetConfig): Split {
  const count = Math.min(limit, split.count);
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  return { images: split.images.subarray(0, count * pixels), labels: split.labels.subarray(0, count), count };
}
