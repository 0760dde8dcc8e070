/**
 * CapsNet, as in Sabour, Frosst & Hinton (2017), "Dynamic Routing Between Capsules".
 * Reads top to bottom like section 4 of the paper; equation numbers refer to it.
 * Layout: images are NHWC in [0, 1]; every weight is a named tensor in `CapsNetParams`. The shared layers (squash,
 * lengths, standardisation, init) are in model/layers.ts, the routing in model/routing.ts; the ONNX export of this
 * network, op for op, is export/capsnet-graph.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core's Node bundle registers no gradient functions; the umbrella package's bundle registers them all.
import '@tensorflow/tfjs';
import { type CapsNetConfig, Rng, derivedSizes, hasDigitBias, paramShapes } from '@capsnet-onnx/core';
import { FUSED_KERNELS, fusedKernelAvailable } from './fused.ts';
import { type Params, capsuleLengths, glorotUniform, squash, standardizePerImage, truncatedNormal, variablesFromWeights } from './layers.ts';
import { type RoutingResult, route } from './routing.ts';

export type CapsNetParams = Params;

/** Standard deviations of the authors' code's truncated-normal initialisation, by weight name prefix. */
const TRUNCATED_NORMAL_STDDEV: Array<[string, number]> = [
  ['conv1/', 0.05],
  ['primary/', 0.01],
  ['digit/', 0.1],
  ['decoder/', 0.1],
];

/**
 * Seeded initialisation. config.init 'glorot' (default): Glorot-uniform kernels, N(0, 0.01^2) capsule transforms;
 * 'truncated-normal': the authors' code's truncated normals. Biases start at 0, except primary/bias at
 * config.primaryBiasInit and digit/bias at config.digitCapsBias.
 */
export function initParams(config: CapsNetConfig, seed: number): CapsNetParams {
  const rng = new Rng(seed);
  const shapes = paramShapes(config);
  const weights: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    if (name === 'primary/bias') {
      values.fill(config.primaryBiasInit ?? 0);
    } else if (name === 'digit/bias') {
      values.fill(config.digitCapsBias ?? 0);
    } else if (config.init === 'truncated-normal' && !name.endsWith('/bias')) {
      const stddev = TRUNCATED_NORMAL_STDDEV.find(([prefix]) => name.startsWith(prefix))![1];
      for (let i = 0; i < size; i++) values[i] = truncatedNormal(rng, stddev);
    } else if (name === 'digit/W') {
      for (let i = 0; i < size; i++) values[i] = 0.01 * rng.normal();
    } else if (name.endsWith('/kernel')) {
      glorotUniform(values, shape, rng);
    }
    weights[name] = values;
  }
  return variablesFromWeights(shapes, weights);
}

export interface ForwardOutput {
  /** |v_j|: [N, classes] */
  lengths: tf.Tensor2D;
  /** v_j: [N, classes, digitDim] */
  capsules: tf.Tensor3D;
  /** Decoder output: [N, H*W*C] */
  reconstruction: tf.Tensor2D;
  /** c_ij of the last routing iteration: [N, inputCaps, classes] */
  coupling: tf.Tensor3D;
  logitHistory: tf.Tensor3D[];
}

/** Conv1 -> PrimaryCaps -> DigitCaps (with routing); returns the digit capsules and routing state. */
export function encode(params: CapsNetParams, images: tf.Tensor4D, config: CapsNetConfig, keepLogits = false): RoutingResult {
  const batch = images.shape[0];
  const { numPrimaryCaps, routedCaps } = derivedSizes(config);
  const primaryConv = convolutions(params, images, config);
  // NHWC channel c = map * primaryDim + d, so capsule i = (y * w + x) * maps + map.
  const u = squash(tf.reshape(primaryConv, [batch, numPrimaryCaps, config.primaryDim]), config.squashEpsilon);
  const uHat = predictionVectors(u as tf.Tensor3D, params['digit/W'] as tf.Tensor3D, config);
  const routed = route(uHat, config.routing, config.squashEpsilon, keepLogits, hasDigitBias(config) ? params['digit/bias'] : undefined);
  if (routedCaps === config.numClasses) return routed;
  // "None-of-the-above" took part in the routing softmax; it is no class, so it leaves here (coupling keeps it).
  return { ...routed, capsules: tf.slice(routed.capsules, [0, 0, 0], [batch, config.numClasses, config.digitDim]) };
}

/** Conv1 (ReLU) then the PrimaryCaps convolution, before squash: images [N, H, W, C] -> [N, h, w, maps * primaryDim]. */
export function convolutions(params: CapsNetParams, images: tf.Tensor4D, config: CapsNetConfig): tf.Tensor4D {
  const input = config.standardize === 'per-image' ? standardizePerImage(images) : images;
  // Conv1: 256 9x9 kernels, stride 1, ReLU.
  const conv1 = tf.relu(tf.add(tf.conv2d(input, params['conv1/kernel'] as tf.Tensor4D, 1, 'valid'), params['conv1/bias']!));
  // PrimaryCaps: a 9x9 stride-2 convolution whose channels group into 8-D capsules, squashed (no ReLU).
  const primaryConv = tf.add(
    tf.conv2d(conv1 as tf.Tensor4D, params['primary/kernel'] as tf.Tensor4D, config.primaryStride, 'valid'),
    params['primary/bias']!,
  ) as tf.Tensor4D;
  return config.primaryScale !== undefined && config.primaryScale !== 1 ? tf.mul(primaryConv, config.primaryScale) : primaryConv;
}

/** u_hat_j|i = W_ij u_i (eq. 2): u [N, inputCaps, 8], W [inputCaps, 8, classes*16] -> [N, inputCaps, classes, 16]. */
export function predictionVectors(u: tf.Tensor3D, W: tf.Tensor3D, config: CapsNetConfig): tf.Tensor4D {
  const [batch, inputCaps] = u.shape;
  const { routedCaps } = derivedSizes(config);
  if (fusedKernelAvailable(FUSED_KERNELS.predictionVectors)) {
    return tf.engine().runKernel(FUSED_KERNELS.predictionVectors, { u, W }, { classes: routedCaps, digitDim: config.digitDim }) as tf.Tensor4D;
  }
  // One batched matmul over i: [i, N, 8] x [i, 8, classes*16]. The weights are shared by all examples, never
  // tiled per example.
  const uHatByCapsule = tf.matMul(tf.transpose(u, [1, 0, 2]) as tf.Tensor3D, W);
  // The output capsules j include "none-of-the-above" when the config has one.
  return tf.reshape(tf.transpose(uHatByCapsule, [1, 0, 2]), [batch, inputCaps, routedCaps, config.digitDim]);
}

/** One-hot mask of the longest capsule per example: the inference-time mask of section 4.1. */
export function longestCapsuleMask(lengths: tf.Tensor2D): tf.Tensor2D {
  return tf.cast(tf.oneHot(tf.argMax(lengths, -1), lengths.shape[1]), 'float32') as tf.Tensor2D;
}

/** Decoder (fig. 2): masked capsules [N, classes, 16] -> FC ReLU -> FC ReLU -> FC sigmoid [N, H*W*C]. */
export function decode(params: CapsNetParams, maskedCapsules: tf.Tensor3D, config: CapsNetConfig): tf.Tensor2D {
  let h: tf.Tensor2D = tf.reshape(maskedCapsules, [maskedCapsules.shape[0], config.numClasses * config.digitDim]);
  const layers = config.decoderHidden.length + 1;
  for (let layer = 0; layer < layers; layer++) {
    const z = tf.add(tf.matMul(h, params[`decoder/dense${layer}/kernel`] as tf.Tensor2D), params[`decoder/dense${layer}/bias`]!) as tf.Tensor2D;
    h = layer + 1 < layers ? tf.relu(z) : tf.sigmoid(z);
  }
  return h;
}

/** Mask capsules [N, classes, 16] by a one-hot [N, classes]. */
export function maskCapsules(capsules: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor3D {
  return tf.mul(capsules, tf.expandDims(mask, -1));
}

/**
 * The whole network. With `labels` (one-hot) the decoder is masked by the true class (training);
 * without, by the longest capsule (inference).
 */
export function forward(params: CapsNetParams, images: tf.Tensor4D, config: CapsNetConfig, labels?: tf.Tensor2D, keepLogits = false): ForwardOutput {
  const { capsules, coupling, logitHistory } = encode(params, images, config, keepLogits);
  const lengths = capsuleLengths(capsules, config.squashEpsilon) as tf.Tensor2D;
  const mask = labels ?? longestCapsuleMask(lengths);
  const reconstruction = decode(params, maskCapsules(capsules, mask), config);
  return { lengths, capsules, reconstruction, coupling, logitHistory };
}

/**
 * Eq. 4: L_k = T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2, summed over k, mean over the batch.
 * config.marginLossReduction 'mean' averages over k instead, and config.marginLossScale multiplies it (the authors' code).
 */
export function marginLoss(lengths: tf.Tensor2D, labels: tf.Tensor2D, config: CapsNetConfig): tf.Scalar {
  return tf.tidy(() => {
    const present = tf.mul(labels, tf.square(tf.relu(tf.sub(config.mPlus, lengths))));
    const absent = tf.mul(tf.mul(tf.sub(1, labels), config.lambda), tf.square(tf.relu(tf.sub(lengths, config.mMinus))));
    const terms = tf.add(present, absent);
    const perExample = config.marginLossReduction === 'mean' ? tf.mean(terms, -1) : tf.sum(terms, -1);
    return tf.mul(tf.mean(perExample), config.marginLossScale ?? 1);
  });
}

/** Sum of squared pixel errors per image, scaled by 0.0005 (section 4.1), mean over the batch. */
export function reconstructionLoss(reconstruction: tf.Tensor2D, images: tf.Tensor4D, config: CapsNetConfig): tf.Scalar {
  return tf.tidy(() => {
    const target = tf.reshape(images, reconstruction.shape);
    return tf.mul(tf.mean(tf.sum(tf.square(tf.sub(reconstruction, target)), -1)), config.reconstructionWeight);
  });
}

export interface Losses {
  total: tf.Scalar;
  margin: tf.Scalar;
  reconstruction: tf.Scalar;
}

/** The training objective: margin loss plus the scaled reconstruction loss, decoder masked by the true label. */
export function trainingLosses(params: CapsNetParams, images: tf.Tensor4D, labels: tf.Tensor2D, config: CapsNetConfig): Losses {
  const out = forward(params, images, config, labels);
  const margin = marginLoss(out.lengths, labels, config);
  const reconstruction = reconstructionLoss(out.reconstruction, images, config);
  return { total: tf.add(margin, reconstruction), margin, reconstruction };
}
