/**
 * The paper's baseline CNN (section 5): three 5x5 stride-1 convolutions with 256, 256 and 128 channels, then fully
 * connected layers of 328 and 192 units, the last connected with dropout to a softmax over the classes, trained
 * with cross entropy. The paper does not say how the spatial size shrinks; we use 'same' padding with 2x2 max pooling
 * after the first two convolutions (documented choice). The ci scale narrows the widths.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { Rng } from '@capsnet-onnx/core';

export interface CnnConfig {
  inputHeight: number;
  inputWidth: number;
  inputChannels: number;
  numClasses: number;
  convChannels: [number, number, number];
  kernel: number;
  /** Max-pool 2x2 after these conv layers (0-based). */
  poolAfter: number[];
  fc: [number, number];
  dropout: number;
  learningRate: number;
  decayRate: number;
  decaySteps: number;
}

export const PAPER_CNN = { convChannels: [256, 256, 128], kernel: 5, poolAfter: [0, 1], fc: [328, 192], dropout: 0.5 } as const;

function flatSize(config: CnnConfig): number {
  let h = config.inputHeight;
  let w = config.inputWidth;
  for (const layer of config.poolAfter) if (layer < 3) { h = Math.ceil(h / 2); w = Math.ceil(w / 2); }
  return h * w * config.convChannels[2];
}

export function cnnParamShapes(config: CnnConfig): Record<string, number[]> {
  const k = config.kernel;
  const [c1, c2, c3] = config.convChannels;
  return {
    'conv1/kernel': [k, k, config.inputChannels, c1], 'conv1/bias': [c1],
    'conv2/kernel': [k, k, c1, c2], 'conv2/bias': [c2],
    'conv3/kernel': [k, k, c2, c3], 'conv3/bias': [c3],
    'fc1/kernel': [flatSize(config), config.fc[0]], 'fc1/bias': [config.fc[0]],
    'fc2/kernel': [config.fc[0], config.fc[1]], 'fc2/bias': [config.fc[1]],
    'out/kernel': [config.fc[1], config.numClasses], 'out/bias': [config.numClasses],
  };
}

/** Glorot-uniform kernels, zero biases, seeded. */
export function initCnn(config: CnnConfig, seed: number): Record<string, tf.Variable> {
  const rng = new Rng(seed);
  const params: Record<string, tf.Variable> = {};
  for (const [name, shape] of Object.entries(cnnParamShapes(config))) {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    if (name.endsWith('/kernel')) {
      const receptive = shape.length === 4 ? shape[0]! * shape[1]! : 1;
      const limit = Math.sqrt(6 / (receptive * shape[shape.length - 2]! + receptive * shape[shape.length - 1]!));
      for (let i = 0; i < size; i++) values[i] = (2 * rng.next() - 1) * limit;
    }
    params[name] = tf.variable(tf.tensor(values, shape), true);
  }
  return params;
}

/** Logits [N, classes]. With `dropoutSeed`, dropout is applied before the softmax layer (training). */
export function cnnForward(params: Record<string, tf.Variable>, images: tf.Tensor4D, config: CnnConfig, dropoutSeed?: number): tf.Tensor2D {
  return tf.tidy(() => {
    let h: tf.Tensor4D = images;
    for (let layer = 0; layer < 3; layer++) {
      const conv = tf.conv2d(h, params[`conv${layer + 1}/kernel`] as tf.Tensor4D, 1, 'same');
      h = tf.relu(tf.add(conv, params[`conv${layer + 1}/bias`]!)) as tf.Tensor4D;
      if (config.poolAfter.includes(layer)) h = tf.maxPool(h, 2, 2, 'same');
    }
    let f: tf.Tensor2D = tf.reshape(h, [images.shape[0], -1]);
    f = tf.relu(tf.add(tf.matMul(f, params['fc1/kernel'] as tf.Tensor2D), params['fc1/bias']!)) as tf.Tensor2D;
    f = tf.relu(tf.add(tf.matMul(f, params['fc2/kernel'] as tf.Tensor2D), params['fc2/bias']!)) as tf.Tensor2D;
    if (dropoutSeed !== undefined && config.dropout > 0) f = tf.dropout(f, config.dropout, undefined, dropoutSeed) as tf.Tensor2D;
    return tf.add(tf.matMul(f, params['out/kernel'] as tf.Tensor2D), params['out/bias']!) as tf.Tensor2D;
  });
}

export function cnnLoss(logits: tf.Tensor2D, labels: tf.Tensor2D): tf.Scalar {
  return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
}

/** Logits for a set of images, in batches. */
export async function cnnScores(params: Record<string, tf.Variable>, config: CnnConfig, images: Float32Array, count: number, batchSize = 100): Promise<Float32Array> {
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  const out = new Float32Array(count * config.numClasses);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const logits = tf.tidy(() =>
      cnnForward(params, tf.tensor4d(images.subarray(start * pixels, (start + n) * pixels), [n, config.inputHeight, config.inputWidth, config.inputChannels]), config),
    );
    out.set((await logits.data()) as Float32Array, start * config.numClasses);
    logits.dispose();
  }
  return out;
}
