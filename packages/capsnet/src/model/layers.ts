/**
 * The layers the networks share, in TensorFlow.js: the squash non-linearity and capsule lengths (Sabour, Frosst &
 * Hinton 2017, eq. 1), per-image standardisation (section 7), Glorot-uniform initialisation, and the one place
 * stored weights become tfjs variables. The ONNX twins of squash, lengths and standardisation are in
 * export/capsnet-graph.ts; the wasm backend's fused squash in assembly/training-kernels.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core's Node bundle registers no gradient functions; the umbrella package's bundle registers them all.
import '@tensorflow/tfjs';
import type { Rng } from '@capsnet-onnx/core';

/** A network's weights by name (`conv1/kernel`, `digit/W`, ...), as tfjs variables. */
export type Params = Record<string, tf.Variable>;

/**
 * The one place stored weights become tfjs variables: a variable of each shape in `shapes` (name -> shape), with
 * the values of the same name in `weights` (row-major float32, shape.product() values). Throws naming the first
 * weight that is missing. `prefix` makes the variables' tfjs names unique when two copies of a network coexist.
 */
export function variablesFromWeights(shapes: Record<string, number[]>, weights: Record<string, Float32Array>, trainable = true, prefix = ''): Params {
  const params: Params = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const w = weights[name];
    if (!w) throw new Error(`weights are missing ${name}`);
    params[name] = tf.variable(tf.tensor(w, shape), trainable, prefix ? `${prefix}${name}` : undefined);
  }
  return params;
}

/** Fill `values` with Glorot-uniform draws for a dense [in, out] or conv [kh, kw, in, out] kernel of `shape`. */
export function glorotUniform(values: Float32Array, shape: number[], rng: Rng): void {
  const receptive = shape.length === 4 ? shape[0]! * shape[1]! : 1;
  const fanIn = receptive * shape[shape.length - 2]!;
  const fanOut = receptive * shape[shape.length - 1]!;
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  for (let i = 0; i < values.length; i++) values[i] = (2 * rng.next() - 1) * limit;
}

/** A normal truncated at two standard deviations (redrawn outside), as TensorFlow's truncated_normal. */
export function truncatedNormal(rng: Rng, stddev: number): number {
  for (;;) {
    const z = rng.normal();
    if (Math.abs(z) <= 2) return z * stddev;
  }
}

/** Eq. 1: v = |s|^2 / (1 + |s|^2) * s / |s|, with epsilon under the root so s = 0 gives v = 0 and a finite gradient. */
export function squash(s: tf.Tensor, epsilon: number, axis = -1): tf.Tensor {
  return tf.tidy(() => {
    const squaredNorm = tf.sum(tf.square(s), axis, true);
    const scale = tf.div(squaredNorm, tf.add(1, squaredNorm));
    return tf.mul(tf.div(scale, tf.sqrt(tf.add(squaredNorm, epsilon))), s);
  });
}

/** Capsule length |v|, the probability that the entity exists (same epsilon as squash). */
export function capsuleLengths(v: tf.Tensor, epsilon: number): tf.Tensor {
  return tf.sqrt(tf.add(tf.sum(tf.square(v), -1), epsilon));
}

/**
 * Per-image standardisation (section 7's colour protocol): (x - mean) / max(std, 1/sqrt(H*W*C)) over each image's
 * pixels, as tf.image.per_image_standardization. images: [N, H, W, C].
 */
export function standardizePerImage(images: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const [, h, w, c] = images.shape;
    const mean = tf.mean(images, [1, 2, 3], true);
    const centred = tf.sub(images, mean);
    const std = tf.sqrt(tf.mean(tf.square(centred), [1, 2, 3], true));
    return tf.div(centred, tf.maximum(std, 1 / Math.sqrt(h * w * c))) as tf.Tensor4D;
  });
}
