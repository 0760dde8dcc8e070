/**
 * The experiments' own small training loop, built on train/model.ts and train/adam.ts. It differs from
 * train/trainer.ts in what the experiments need: batches come from a generator (fresh random placements, pairs),
 * the loss is a closure (two-target MultiMNIST, the baseline CNN), and a hook runs after each step (routing logits).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { Adam } from '../train/adam.ts';
import { type CapsNetConfig, Rng } from '@capsnet-onnx/core';
import { type CapsNetParams, capsuleLengths, decode, encode, initParams, maskCapsules, reconstructionLoss, trainingLosses } from '../train/model.ts';

export interface Batch {
  images: Float32Array;
  labels: Int32Array;
  count: number;
}

export interface FitOptions {
  params: Record<string, tf.Variable>;
  steps: number;
  learningRate: number;
  decayRate: number;
  decaySteps: number;
  /** Builds the loss for step `step`; runs inside the gradient tape, so tensors it makes are freed. */
  loss: (step: number) => { total: tf.Scalar; parts?: Record<string, tf.Scalar>; count: number };
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

/** Adam on a named set of variables with a per-step loss closure. */
export async function fit(options: FitOptions): Promise<FitResult> {
  const { params, steps, log = () => {} } = options;
  const optimizer = new Adam({ learningRate: options.learningRate, decayRate: options.decayRate, decaySteps: options.decaySteps });
  const varToName = new Map(Object.entries(params).map(([name, v]) => [v.name, name]));
  const logEvery = options.logEvery ?? Math.max(1, Math.ceil(steps / 10));
  const lossHistory: Array<[number, number]> = [];
  const started = performance.now();
  let images = 0;
  let windowLoss = 0;
  let windowSteps = 0;
  let finalLoss = NaN;
  let stepsDone = steps;
  for (let step = 0; step < steps; step++) {
    let parts: Record<string, tf.Scalar> = {};
    let count = 0;
    const { value, grads } = tf.variableGrads(() => {
      const out = options.loss(step);
      parts = Object.fromEntries(Object.entries(out.parts ?? {}).map(([k, t]) => [k, tf.keep(t)]));
      count = out.count;
      return out.total;
    }, Object.values(params));
    const named: Record<string, tf.Tensor> = {};
    for (const [varName, grad] of Object.entries(grads)) named[varToName.get(varName)!] = grad;
    optimizer.apply(params, named);
    const losses: Record<string, number> = { total: (await value.data())[0]! };
    for (const [k, t] of Object.entries(parts)) losses[k] = (await t.data())[0]!;
    tf.dispose([value, ...Object.values(parts), ...Object.values(grads)]);
    if (!Number.isFinite(losses.total!)) throw new Error(`${options.label ?? 'training'}: loss became ${losses.total} at step ${step + 1}`);
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
  optimizer.dispose();
  const seconds = (performance.now() - started) / 1000;
  return { steps: stepsDone, seconds, imagesPerSecond: images / Math.max(seconds, 1e-9), finalLoss, lossHistory };
}

export function toTensors(batch: Batch, config: Pick<CapsNetConfig, 'inputHeight' | 'inputWidth' | 'inputChannels' | 'numClasses'>) {
  const x = tf.tensor4d(batch.images, [batch.count, config.inputHeight, config.inputWidth, config.inputChannels]);
  const y = tf.cast(tf.oneHot(tf.tensor1d(batch.labels, 'int32'), config.numClasses), 'float32') as tf.Tensor2D;
  return { x, y };
}

export interface CapsNetTrainOptions {
  config: CapsNetConfig;
  seed: number;
  steps: number;
  /** The batch for a step (the generator owns shuffling and augmentation). */
  nextBatch: (step: number) => Batch;
  /** Runs after each step, with the model's current parameters. */
  afterStep?: (step: number, losses: Record<string, number>, params: CapsNetParams) => void | Promise<void>;
  log?: (line: string) => void;
  label?: string;
}

/** Train a CapsNet with the paper's loss (margin + 0.0005 x reconstruction masked by the true class). */
export async function trainCapsNet(options: CapsNetTrainOptions): Promise<{ params: CapsNetParams; fit: FitResult }> {
  const { config } = options;
  const params = initParams(config, options.seed);
  const result = await fit({
    params,
    steps: options.steps,
    learningRate: config.learningRate,
    decayRate: config.decayRate,
    decaySteps: config.decaySteps,
    loss: (step) => {
      const batch = options.nextBatch(step);
      const { x, y } = toTensors(batch, config);
      const losses = trainingLosses(params, x, y, config);
      return { total: losses.total, parts: { margin: losses.margin, reconstruction: losses.reconstruction }, count: batch.count };
    },
    afterStep: options.afterStep ? (step, losses) => options.afterStep!(step, losses, params) : undefined,
    log: options.log,
    label: options.label,
  });
  return { params, fit: result };
}

/** Capsule lengths [count, classes] for a set of images, in batches, with an optional routing-iteration override. */
export async function capsuleLengthsOf(
  params: CapsNetParams, config: CapsNetConfig, images: Float32Array, count: number, routingIterations = config.routingIterations, batchSize = 100,
): Promise<Float32Array> {
  const run = { ...config, routingIterations };
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  const out = new Float32Array(count * config.numClasses);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const lengths = tf.tidy(() => {
      const x = tf.tensor4d(images.subarray(start * pixels, (start + n) * pixels), [n, config.inputHeight, config.inputWidth, config.inputChannels]);
      return capsuleLengths(encode(params, x, run).capsules, config.squashEpsilon);
    });
    out.set((await lengths.data()) as Float32Array, start * config.numClasses);
    lengths.dispose();
  }
  return out;
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

/** CapsNet test accuracy (longest capsule). */
export async function capsNetAccuracy(
  params: CapsNetParams, config: CapsNetConfig, images: Float32Array, labels: Int32Array, count: number, routingIterations?: number,
): Promise<number> {
  return accuracyOf(await capsuleLengthsOf(params, config, images, count, routingIterations), labels.subarray(0, count), config.numClasses);
}

/** Batches of a fixed set, reshuffled every epoch with a seeded permutation; `transform` can augment each batch. */
export function epochBatches(
  images: Float32Array, labels: Int32Array, count: number, pixels: number, batchSize: number, seed: number,
  transform?: (batch: Batch, step: number) => Batch,
): (step: number) => Batch {
  const stepsPerEpoch = Math.ceil(count / batchSize);
  let orderEpoch = -1;
  let order: Int32Array = new Int32Array(0);
  return (step: number) => {
    const epoch = Math.floor(step / stepsPerEpoch);
    if (epoch !== orderEpoch) {
      order = new Rng(seed * 1000003 + epoch).permutation(count);
      orderEpoch = epoch;
    }
    const s = step % stepsPerEpoch;
    const indices = order.subarray(s * batchSize, Math.min((s + 1) * batchSize, count));
    const batch: Batch = { images: new Float32Array(indices.length * pixels), labels: new Int32Array(indices.length), count: indices.length };
    indices.forEach((source, i) => {
      batch.images.set(images.subarray(source * pixels, (source + 1) * pixels), i * pixels);
      batch.labels[i] = labels[source]!;
    });
    return transform ? transform(batch, step) : batch;
  };
}

export function stepsFor(count: number, batchSize: number, epochs: number): number {
  return Math.max(1, Math.ceil(count / batchSize) * epochs);
}

export async function weightsOf(params: Record<string, tf.Variable>): Promise<Record<string, Float32Array>> {
  const out: Record<string, Float32Array> = {};
  for (const [name, v] of Object.entries(params)) out[name] = (await v.data()) as Float32Array;
  return out;
}

export function paramsFrom(config: CapsNetConfig, weights: Record<string, Float32Array>): CapsNetParams {
  const params = initParams(config, 0);
  for (const [name, variable] of Object.entries(params)) {
    const w = weights[name];
    if (!w) throw new Error(`weights are missing ${name}`);
    variable.assign(tf.tensor(w, variable.shape));
  }
  return params;
}

/** Capsules [count, classes * digitDim] of `images`, masked by `labels` (everything but that class's capsule zeroed). */
export async function maskedCapsulesOf(
  params: CapsNetParams, config: CapsNetConfig, images: Float32Array, labels: Int32Array, count: number, batchSize = 100,
): Promise<Float32Array> {
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  const per = config.numClasses * config.digitDim;
  const masked = new Float32Array(count * per);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const m = tf.tidy(() => {
      const x = tf.tensor4d(images.subarray(start * pixels, (start + n) * pixels), [n, config.inputHeight, config.inputWidth, config.inputChannels]);
      const y = tf.cast(tf.oneHot(tf.tensor1d(labels.subarray(start, start + n), 'int32'), config.numClasses), 'float32') as tf.Tensor2D;
      return maskCapsules(encode(params, x, config).capsules, y);
    });
    masked.set((await m.data()) as Float32Array, start * per);
    m.dispose();
  }
  return masked;
}

/**
 * Train only the decoder to map frozen masked capsules to their target images (ci scale only). Minutes of joint
 * training leave the decoder at a blurry average digit, which would make reconstruction figures uniform; this
 * cheap pass (no convolution gradients) lets it learn what the capsules already encode.
 */
export async function refineDecoder(
  params: CapsNetParams, config: CapsNetConfig, masked: Float32Array, targets: Float32Array, count: number, steps: number,
  batchSize: number, seed: number, log: (line: string) => void, label = 'decoder',
): Promise<FitResult> {
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  const per = config.numClasses * config.digitDim;
  const decoderParams = Object.fromEntries(Object.entries(params).filter(([name]) => name.startsWith('decoder/')));
  const rng = new Rng(seed + 17);
  return fit({
    params: decoderParams, steps, learningRate: config.learningRate, decayRate: 1, decaySteps: 1,
    loss: () => {
      const caps = new Float32Array(batchSize * per);
      const target = new Float32Array(batchSize * pixels);
      for (let i = 0; i < batchSize; i++) {
        const source = rng.int(count);
        caps.set(masked.subarray(source * per, (source + 1) * per), i * per);
        target.set(targets.subarray(source * pixels, (source + 1) * pixels), i * pixels);
      }
      const recon = decode(params, tf.tensor3d(caps, [batchSize, config.numClasses, config.digitDim]), config);
      const x = tf.tensor4d(target, [batchSize, config.inputHeight, config.inputWidth, config.inputChannels]);
      return { total: reconstructionLoss(recon, x, config), count: batchSize };
    },
    log,
    label,
  });
}
