/**
 * CapsNet helpers for the experiments, on the one training loop (train/loop.ts) and the CapsNet family
 * (train/family.ts): train from a batch generator, capsule lengths and accuracy with a routing override,
 * masked capsules, and a decoder-only refinement pass.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { type CapsNetConfig, Rng } from '@capsnet-onnx/core';
import { type Split, shiftImages } from '../data/datasets.ts';
import { type Batch, type FitResult, type OptimizerConfig, accuracyOf, epochBatches, fit, stepsFor } from '../train/loop.ts';
import type { Params } from '../model/layers.ts';
import { type CapsNetParams, decode, encode, maskCapsules, reconstructionLoss } from '../model/capsnet.ts';
import { type ModelFamily, capsnetFamily, familyScores } from '../train/family.ts';

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
  const family = capsnetFamily(config);
  const params = family.init(options.seed);
  const result = await fit({
    params,
    steps: options.steps,
    optimizer: config,
    loss: (step) => {
      const batch = options.nextBatch(step);
      const { x, y } = toTensors(batch, config);
      return { ...family.losses(params, x, y, step), count: batch.count };
    },
    afterStep: options.afterStep ? (step, losses) => options.afterStep!(step, losses, params) : undefined,
    log: options.log,
    label: options.label,
  });
  return { params, fit: result };
}

/** Capsule lengths [count, classes] for a set of images, in batches, with an optional routing-iteration override. */
export async function capsuleLengthsOf(
  params: CapsNetParams,
  config: CapsNetConfig,
  images: Float32Array,
  count: number,
  routingIterations = config.routing.iterations,
  batchSize = 100,
): Promise<Float32Array> {
  const family = capsnetFamily({ ...config, routing: { ...config.routing, iterations: routingIterations } });
  return familyScores(family, params, images, count, batchSize);
}

/** CapsNet test accuracy (longest capsule). */
export async function capsNetAccuracy(
  params: CapsNetParams,
  config: CapsNetConfig,
  images: Float32Array,
  labels: Int32Array,
  count: number,
  routingIterations?: number,
): Promise<number> {
  return accuracyOf(await capsuleLengthsOf(params, config, images, count, routingIterations), labels.subarray(0, count), config.numClasses);
}

/** Capsules [count, classes * digitDim] of `images`, masked by `labels` (everything but that class's capsule zeroed). */
export async function maskedCapsulesOf(
  params: CapsNetParams,
  config: CapsNetConfig,
  images: Float32Array,
  labels: Int32Array,
  count: number,
  batchSize = 100,
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
  params: CapsNetParams,
  config: CapsNetConfig,
  masked: Float32Array,
  targets: Float32Array,
  count: number,
  steps: number,
  batchSize: number,
  seed: number,
  log: (line: string) => void,
  label = 'decoder',
): Promise<FitResult> {
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  const per = config.numClasses * config.digitDim;
  const decoderParams = Object.fromEntries(Object.entries(params).filter(([name]) => name.startsWith('decoder/')));
  const rng = new Rng(seed + 17);
  return fit({
    params: decoderParams,
    steps,
    optimizer: { ...config, decayRate: 1, decaySteps: 1 },
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

export interface ShiftedRun {
  family: ModelFamily;
  seed: number;
  train: Split;
  test: Split;
  epochs: number;
  batchSize: number;
  /** Random translation of up to this many pixels per training image (the paper: 2). */
  maxShift: number;
  optimizer: OptimizerConfig;
  label: string;
  log: (line: string) => void;
  /** Runs after each step with the current parameters (routing traces). */
  afterStep?: (step: number, params: Params) => void | Promise<void>;
}

/**
 * Train any model family on `train` with `capsnet train`'s batching (seeded epoch order, fresh random shifts per
 * step), then measure its test accuracy. The caller disposes `params`.
 */
export async function trainShifted(run: ShiftedRun): Promise<{ params: Params; accuracy: number; fit: FitResult; steps: number }> {
  const { family, seed } = run;
  const shape = family.shape;
  const pixels = shape.inputHeight * shape.inputWidth * shape.inputChannels;
  const steps = stepsFor(run.train.count, run.batchSize, run.epochs);
  const nextBatch = epochBatches(run.train.images, run.train.labels, run.train.count, pixels, run.batchSize, seed, (batch, step) => ({
    ...batch,
    images: shiftImages(batch.images, batch.count, shape, run.maxShift, new Rng(seed * 7919 + step)),
  }));
  const params = family.init(seed);
  const result = await fit({
    params,
    steps,
    optimizer: run.optimizer,
    label: run.label,
    log: run.log,
    loss: (step) => {
      const { x, y } = toTensors(nextBatch(step), shape);
      return { ...family.losses(params, x, y, step), count: x.shape[0] };
    },
    afterStep: run.afterStep ? (step) => run.afterStep!(step, params) : undefined,
  });
  const accuracy = accuracyOf(
    await familyScores(family, params, run.test.images, run.test.count),
    run.test.labels.subarray(0, run.test.count),
    shape.numClasses,
  );
  return { params, accuracy, fit: result, steps };
}
