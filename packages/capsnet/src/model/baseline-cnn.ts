/**
 * The baseline CNNs (config, presets and shapes in @capsnet-onnx/core's baseline-cnn.ts) in TensorFlow.js: seeded
 * initialisation, the forward pass and the loss. A model family (train/family.ts) that trains through the
 * same loop as CapsNet and exports to ONNX (export/baseline-cnn-graph.ts).
 * Layout: images NHWC in [0, 1]; weights named conv{k}/kernel [5, 5, in, out] (HWIO), conv{k}/bias, fc{k}/kernel
 * [in, out], fc{k}/bias, out/kernel, out/bias.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { type BaselineCnnConfig, Rng, baselineParamShapes } from '@capsnet-onnx/core';
import { type Params, glorotUniform, variablesFromWeights } from './layers.ts';

export type BaselineParams = Params;

/** Glorot-uniform kernels, zero biases, seeded. */
export function initBaseline(config: BaselineCnnConfig, seed: number): BaselineParams {
  const rng = new Rng(seed);
  const shapes = baselineParamShapes(config);
  const weights: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (name.endsWith('/kernel')) glorotUniform(values, shape, rng);
    weights[name] = values;
  }
  return variablesFromWeights(shapes, weights);
}

/** Logits [N, classes]. With `dropoutSeed`, dropout is applied to the last hidden layer (training). */
export function baselineForward(params: BaselineParams, images: tf.Tensor4D, config: BaselineCnnConfig, dropoutSeed?: number): tf.Tensor2D {
  return tf.tidy(() => {
    let h: tf.Tensor4D = images;
    config.convChannels.forEach((_, layer) => {
      const conv = tf.conv2d(h, params[`conv${layer + 1}/kernel`] as tf.Tensor4D, 1, config.padding);
      h = tf.relu(tf.add(conv, params[`conv${layer + 1}/bias`]!)) as tf.Tensor4D;
      if (config.poolAfter.includes(layer)) h = tf.maxPool(h, 2, 2, 'same');
    });
    let f: tf.Tensor2D = tf.reshape(h, [images.shape[0], -1]);
    config.fc.forEach((_, layer) => {
      f = tf.relu(tf.add(tf.matMul(f, params[`fc${layer + 1}/kernel`] as tf.Tensor2D), params[`fc${layer + 1}/bias`]!)) as tf.Tensor2D;
    });
    if (dropoutSeed !== undefined && config.dropout > 0) f = tf.dropout(f, config.dropout, undefined, dropoutSeed) as tf.Tensor2D;
    return tf.add(tf.matMul(f, params['out/kernel'] as tf.Tensor2D), params['out/bias']!) as tf.Tensor2D;
  });
}

/**
 * Training loss. softmax: cross entropy against one-hot labels [N, classes]; sigmoid: mean over classes of the
 * sigmoid cross entropy against a multi-hot label set [N, classes], mean over the batch.
 */
export function baselineLoss(logits: tf.Tensor2D, labels: tf.Tensor2D, config: BaselineCnnConfig): tf.Scalar {
  return config.output === 'softmax'
    ? (tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar)
    : (tf.losses.sigmoidCrossEntropy(labels, logits) as tf.Scalar);
}
