/**
 * The one training loop's parts, shared by `capsnet train` (train/trainer.ts) and every experiment: the optimizer a
 * config asks for, one gradient step, seeded epoch batching, variables -> weights (the other way: model/layers.ts), and `fit` (a step loop with hooks
 * for generated batches). A model family (train/family.ts) supplies the loss and the class scores.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { Adam } from './adam.ts';
import { Rng } from '@capsnet-onnx/core';
import type { Params } from '../model/layers.ts';

/** The optimizer fields a training config carries (CapsNetConfig has them all). */
export interface OptimizerConfig {
  learningRate: number;
  decayRate: number;
  decaySteps: number;
  adamEpsilon?: number;
  learningRateFloor?: number;
}

/** Adam with the config's exponential decay, epsilon and learning-rate floor. */
export function adamFor(config: OptimizerConfig): Adam {
  return new Adam({
    learningRate: config.learningRate,
    decayRate: config.decayRate,
    decaySteps: config.decaySteps,
    epsilon: config.adamEpsilon,
    floor: config.learningRateFloor,
  });
}

export interface StepLoss {
  total: tf.Scalar;
  /** Named parts of the loss (e.g. margin, reconstruction), reported alongside the total. */
  parts?: Record<string, tf.Scalar>;
  /**
   * The class scores [N, classes] the loss was computed from (capsule lengths or logits), where they are the test-time
   * scores: `evaluate` then scores a batch from the same forward pass instead of running the network again.
   */
  scores?: tf.Tensor2D;
}

/**
 * One optimizer step: gradients of `loss()` with respect to every variable in `params`, applied by `optimizer`.
 * Returns the scalar losses ({ total, ...parts }). Throws a one-line error when the loss is not finite.
 */
/** A step's losses as numbers: `total` (what the gradient minimised) and the named parts it sums. */
export type StepLosses = { total: number } & Record<string, number>;

export async function trainStep(optimizer: Adam, params: Params, loss: () => StepLoss, label = 'training'): Promise<StepLosses> {
  const varToName = new Map(Object.entries(params).map(([name, v]) => [v.name, name]));
  let parts: Record<string, tf.Scalar> = {};
  const { value, grads } = tf.variableGrads(() => {
    const out = loss();
    parts = Object.fromEntries(Object.entries(out.parts ?? {}).map(([k, t]) => [k, tf.keep(t)]));
    return out.total;
  }, Object.values(params));
  const named: Record<string, tf.Tensor> = {};
  for (const [varName, grad] of Object.entries(grads)) named[varToName.get(varName)!] = grad;
  optimizer.apply(params, named);
  const keys = ['total', ...Object.keys(parts)];
  const values = await Promise.all([value, ...Object.values(parts)].map(async (t) => (await t.data())[0]!));
  tf.dispose([value, ...Object.values(parts), ...Object.values(grads)]);
  const total = values[0]!;
  if (!Number.isFinite(total)) {
    throw new Error(`${label}: loss became ${total} at step ${optimizer.step}: lower the learning rate or check the data`);
  }
  return { ...Object.fromEntries(keys.map((k, i) => [k, values[i]!])), total };
}

/** The training set's order for one epoch: a permutation seeded by the run's seed and the epoch number. */
export function epochOrder(seed: number, epoch: number, count: number): Int32Array {
  return new Rng(seed * 1000003 + epoch).permutation(count);
}

export interface Batch {
  images: Float32Array;
  labels: Int32Array;
  count: number;
}

/** Copy the images and labels at `indices` into one batch. */
export function gather(images: Float32Array, labels: Int32Array, pixels: number, indices: ArrayLike<number>): Batch {
  const batch: Batch = { images: new Float32Array(indices.length * pixels), labels: new Int32Array(indices.length), count: indices.length };
  for (let i = 0; i < indices.length; i++) {
    const source = indices[i]!;
    batch.images.set(images.subarray(source * pixels, (source + 1) * pixels), i * pixels);
    batch.labels[i] = labels[source]!;
  }
  return batch;
}

/** Batches of a fixed set, reshuffled every epoch with `epochOrder`; `transform` can augment each batch. */
export function epochBatches(
  images: Float32Array,
  labels: Int32Array,
  count: number,
  pixels: number,
  batchSize: number,
  seed: number,
  transform?: (batch: Batch, step: number) => Batch,
): (step: number) => Batch {
  const stepsPerEpoch = Math.ceil(count / batchSize);
  let orderEpoch = -1;
  let order: Int32Array = new Int32Array(0);
  return (step: number) => {
    const epoch = Math.floor(step / stepsPerEpoch);
    if (epoch !== orderEpoch) {
      order = epochOrder(seed, epoch, count);
      orderEpoch = epoch;
    }
    const s = step % stepsPerEpoch;
    const batch = gather(images, labels, pixels, order.subarray(s * batchSize, Math.min((s + 1) * batchSize, count)));
    return transform ? transform(batch, step) : batch;
  };
}

export function stepsFor(count: number, batchSize: number, epochs: number): number {
  return Math.max(1, Math.ceil(count / batchSize) * epochs);
}

export async function readWeights(params: Params): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [name, variable] of Object.entries(params)) out[name] = (await variable.data()) as Float32Array;
  return out;
}

export function oneHot(labels: Int32Array, numClasses: number): tf.Tensor2D {
  return tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), numClasses), 'float32') as tf.Tensor2D);
}

export function argmaxRows(scores: Float32Array, classes: number): Int32Array {
  const out = new Int32Array(scores.length / classes);
  for (let i = 0; i < out.length; i++) {
    let best = 0;
    for (let k = 1; k < classes; k++) if (scores[i * classes + k]! > scores[i * classes + best]!) best = k;
    out[i] = best;
  }
  return out;
}

/** Fraction of rows whose argmax equals the label. */
export function accuracyOf(scores: Float32Array, labels: Int32Array, classes: number): number {
  const predicted = argmaxRows(scores, classes);
  let correct = 0;
  for (let i = 0; i < predicted.length; i++) if (predicted[i] === labels[i]) correct++;
  return predicted.length ? correct / predicted.length : NaN;
}

/** Class scores [count, classes] of `images` in batches: `score` maps an NHWC batch to [n, classes]. */
export async function scoresInBatches(
  score: (x: tf.Tensor4D) => tf.Tensor2D,
  shape: { inputHeight: number; inputWidth: number; inputChannels: number; numClasses: number },
  images: Float32Array,
  count: number,
  batchSize = 100,
): Promise<Float32Array> {
  const pixels = shape.inputHeight * shape.inputWidth * shape.inputChannels;
  const out = new Float32Array(count * shape.numClasses);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const s = tf.tidy(() =>
      score(tf.tensor4d(images.subarray(start * pixels, (start + n) * pixels), [n, shape.inputHeight, shape.inputWidth, shape.inputChannels])),
    );
    out.set((await s.data()) as Float32Array, start * shape.numClasses);
    s.dispose();
  }
  return out;
}

export interface FitOptions {
  params: Params;
  steps: number;
  optimizer: OptimizerConfig;
  /** Builds the loss for step `step`; runs inside the gradient tape, so tensors it makes are freed. */
  loss: (step: number) => StepLoss & { count: number };
  /** Runs after each optimizer step with the scalar losses. */
  afterStep?: (step: number, losses: Record<string, number>) => void | Promise<void>;
  /** Checked after each step (after `afterStep`): true ends training early. */
  stopAfter?: (step: number) => boolean | Promise<boolean>;
  log?: (line: string) => void;
  label?: string;
  /** Log every this many steps (default: about 10 lines per run). */
  logEvery?: number;
}

export interface FitResult {
  steps: number;
  seconds: number;
  imagesPerSecond: number;
  finalLoss: number;
  lossHistory: Array<[number, number]>;
}

/** `trainStep` repeated over generated batches, with hooks (the experiments' use: pairs, placements, early stop). */
export async function fit(options: FitOptions): Promise<FitResult> {
  const { params, steps, log = () => {} } = options;
  const optimizer = adamFor(options.optimizer);
  const logEvery = options.logEvery ?? Math.max(1, Math.ceil(steps / 10));
  const lossHistory: Array<[number, number]> = [];
  const started = performance.now();
  let images = 0;
  let windowLoss = 0;
  let windowSteps = 0;
  let finalLoss = NaN;
  let stepsDone = steps;
  try {
    for (let step = 0; step < steps; step++) {
      let count = 0;
      const losses = await trainStep(
        optimizer,
        params,
        () => {
          const out = options.loss(step);
          count = out.count;
          return out;
        },
        options.label,
      );
      images += count;
      windowLoss += losses.total!;
      windowSteps++;
      finalLoss = losses.total!;
      lossHistory.push([step + 1, losses.total!]);
      if (options.afterStep) await options.afterStep(step, losses);
      const stop = options.stopAfter ? await options.stopAfter(step) : false;
      if ((step + 1) % logEvery === 0 || step + 1 === steps || stop) {
        const seconds = (performance.now() - started) / 1000;
        log(`${options.label ?? 'train'}: step ${step + 1}/${steps}, loss ${(windowLoss / windowSteps).toFixed(4)}, ${(images / seconds).toFixed(1)} img/s`);
        windowLoss = 0;
        windowSteps = 0;
      }
      if (stop) {
        stepsDone = step + 1;
        break;
      }
    }
  } finally {
    optimizer.dispose();
  }
  const seconds = (performance.now() - started) / 1000;
  return { steps: stepsDone, seconds, imagesPerSecond: images / Math.max(seconds, 1e-9), finalLoss, lossHistory };
}
