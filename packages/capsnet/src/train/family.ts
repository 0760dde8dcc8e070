/**
 * Model families: what the training loop needs to know about a network. CapsNet (model/capsnet.ts) and the
 * baseline CNNs (model/baseline-cnn.ts) plug into `capsnet train`, the experiments and `evaluate` the same
 * way. Loss parts are named (margin, reconstruction, cross_entropy) and become metrics.jsonl fields
 * `<part>_loss` (test) and `train_<part>_loss`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { type BaselineCnnConfig, type CapsNetConfig, type DataShape, baselineParamShapes, paramShapes } from '@capsnet-onnx/core';
import type { Split } from '../data/datasets.ts';
import { accuracyOf, type StepLoss, scoresInBatches } from './loop.ts';
import type { Params } from '../model/layers.ts';
import { encode, forward, initParams, marginLoss, reconstructionLoss } from '../model/capsnet.ts';
import { capsuleLengths } from '../model/layers.ts';
import { baselineForward, baselineLoss, initBaseline } from '../model/baseline-cnn.ts';

import type { ModelName } from './names.ts';

export { MODEL_NAMES, type ModelName } from './names.ts';

export interface ModelFamily {
  name: ModelName;
  shape: DataShape;
  paramShapes: Record<string, number[]>;
  init(seed: number): Params;
  /**
   * The objective for one batch (labels one-hot or multi-hot [N, classes]). With `step` (training) it seeds
   * dropout; without, the test-time network runs (no dropout).
   */
  losses(params: Params, x: tf.Tensor4D, y: tf.Tensor2D, step?: number): StepLoss;
  /** Class scores [N, classes] (argmax = prediction): capsule lengths or logits. */
  scores(params: Params, x: tf.Tensor4D): tf.Tensor2D;
}

export function capsnetFamily(config: CapsNetConfig): ModelFamily {
  return {
    name: 'capsnet',
    shape: config,
    paramShapes: paramShapes(config),
    init: (seed) => initParams(config, seed),
    losses: (params, x, y): StepLoss => {
      if (config.reconstructionWeight === 0) {
        // Table 1's "no reconstruction" rows: margin loss alone, the decoder is not run.
        const lengths = capsuleLengths(encode(params, x, config).capsules, config.squashEpsilon) as tf.Tensor2D;
        const margin = marginLoss(lengths, y, config);
        return { total: margin, parts: { margin }, scores: lengths };
      }
      const out = forward(params, x, config, y);
      const margin = marginLoss(out.lengths, y, config);
      const reconstruction = reconstructionLoss(out.reconstruction, x, config);
      // The lengths do not depend on the mask (the decoder reads the capsules, routing does not read the labels).
      return { total: tf.add(margin, reconstruction), parts: { margin, reconstruction }, scores: out.lengths };
    },
    scores: (params, x) => capsuleLengths(encode(params, x, config).capsules, config.squashEpsilon) as tf.Tensor2D,
  };
}

export function baselineFamily(config: BaselineCnnConfig, seed: number): ModelFamily {
  return {
    name: 'baseline-cnn',
    shape: config,
    paramShapes: baselineParamShapes(config),
    init: (s) => initBaseline(config, s),
    losses: (params, x, y, step) => {
      const logits = baselineForward(params, x, config, step === undefined ? undefined : seed * 31 + step);
      const crossEntropy = baselineLoss(logits, y, config);
      // Without a step there is no dropout: these logits are the test-time scores.
      return { total: crossEntropy, parts: { cross_entropy: crossEntropy }, ...(step === undefined ? { scores: logits } : {}) };
    },
    scores: (params, x) => baselineForward(params, x, config),
  };
}

/** Test accuracy (argmax of the scores) and the mean of each loss part (no dropout: scores run the test-time net). */
export async function evaluate(
  family: ModelFamily,
  params: Params,
  split: Split,
  batchSize = 100,
  limit = split.count,
): Promise<{ accuracy: number; losses: Record<string, number> }> {
  const { inputHeight, inputWidth, inputChannels, numClasses } = family.shape;
  const pixels = inputHeight * inputWidth * inputChannels;
  const count = Math.min(limit, split.count);
  const sums: Record<string, number> = {};
  let correct = 0;
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const labels = split.labels.subarray(start, start + n);
    const [scores, names, values] = tf.tidy(() => {
      const x = tf.tensor4d(split.images.subarray(start * pixels, (start + n) * pixels), [n, inputHeight, inputWidth, inputChannels]);
      const y = tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), numClasses), 'float32') as tf.Tensor2D;
      // Test-time losses: the CapsNet decoder masked by the true label as in training; the CNN without dropout.
      // The scores come from the same forward pass where the family returns them (one network run per batch).
      const loss = family.losses(params, x, y);
      const parts = loss.parts ?? {};
      return [loss.scores ?? family.scores(params, x), Object.keys(parts), Object.values(parts)] as const;
    });
    const s = (await scores.data()) as Float32Array;
    correct += Math.round(accuracyOf(s, labels, numClasses) * n);
    for (let k = 0; k < names.length; k++) sums[names[k]!] = (sums[names[k]!] ?? 0) + (await values[k]!.data())[0]! * n;
    tf.dispose([scores, ...values]);
  }
  return { accuracy: correct / count, losses: Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / count])) };
}

/** Class scores of a family for a set of images, in batches. */
export function familyScores(family: ModelFamily, params: Params, images: Float32Array, count: number, batchSize = 100): Promise<Float32Array> {
  return scoresInBatches((x) => family.scores(params, x), family.shape, images, count, batchSize);
}
