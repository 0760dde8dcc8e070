/**
 * Routing between the primary capsules and the class capsules, in TensorFlow.js: training, the experiments and
 * the parity reference run this. The algorithms' names, validation and FLOPs are in @capsnet-onnx/core's
 * routing.ts. The same algorithms are implemented twice more, and all three must agree:
 * - ONNX, unrolled into the exported graph: export/routing.ts (parity: `capsnet parity`, test/e2e/export-parity.test.ts);
 * - AssemblyScript, a fused forward and hand-derived backward for the wasm backend: assembly/training-kernels.ts
 *   (registered as FUSED_KERNELS.dynamicRouting by train/backends/wasm-capsule-kernels.ts; tested against this
 *   file in test/e2e/wasm-capsule-kernels.test.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import type { RoutingConfig } from '@capsnet-onnx/core';
import { FUSED_KERNELS, fusedKernelAvailable } from './fused.ts';
import { squash } from './layers.ts';

export interface RoutingResult {
  /** v_j: [N, classes, digitDim] */
  capsules: tf.Tensor3D;
  /** c_ij of the last iteration: [N, inputCaps, classes] */
  coupling: tf.Tensor3D;
  /**
   * With keepLogits (the routing experiment): b_ij after each agreement update r = 1..iterations, [N, inputCaps,
   * classes] each. The last one is the update the next iteration would make; it does not change the outputs.
   */
  logitHistory: tf.Tensor3D[];
  /** With keepLogits: v_j after each iteration r = 1..iterations, [N, classes, digitDim] each. */
  capsuleHistory: tf.Tensor3D[];
}

/**
 * Routes the prediction vectors uHat [N, inputCaps, classes, digitDim] by `routing`'s algorithm. epsilon: squash's;
 * keepLogits: keep each iteration's logits and capsules (the routing experiment); bias (optional, the authors'
 * code's): [classes, digitDim], added before squash.
 */
export function route(uHat: tf.Tensor4D, routing: RoutingConfig, epsilon: number, keepLogits = false, bias?: tf.Tensor): RoutingResult {
  switch (routing.algorithm) {
    case 'dynamic':
      return dynamicRouting(uHat, routing.iterations, epsilon, keepLogits, bias);
  }
}

/**
 * Procedure 1, routing by agreement. Logits b_ij are per example and start at zero; the softmax (eq. 3)
 * runs over the output capsules j, so each input capsule distributes its vote among the classes.
 * uHat: [N, inputCaps, classes, digitDim]; bias (optional, the authors' code's): [classes, digitDim].
 */
export function dynamicRouting(uHat: tf.Tensor4D, iterations: number, epsilon: number, keepLogits = false, bias?: tf.Tensor): RoutingResult {
  // The same procedure in one kernel where the backend has it (train/backends/wasm-capsule-kernels.ts); it keeps no
  // history and has no bias.
  if (!keepLogits && !bias && fusedKernelAvailable(FUSED_KERNELS.dynamicRouting)) {
    const [capsules, coupling] = tf.engine().runKernel(FUSED_KERNELS.dynamicRouting, { uHat }, { iterations, epsilon }) as [tf.Tensor3D, tf.Tensor3D];
    return { capsules, coupling, logitHistory: [], capsuleHistory: [] };
  }
  const [batch, inputCaps, classes] = uHat.shape;
  let logits: tf.Tensor3D = tf.zeros([batch, inputCaps, classes]);
  const logitHistory: tf.Tensor3D[] = [];
  const capsuleHistory: tf.Tensor3D[] = [];
  let coupling: tf.Tensor3D = logits;
  let capsules: tf.Tensor3D = logits;
  for (let r = 0; r < iterations; r++) {
    coupling = tf.softmax(logits, -1);
    // s_j = sum_i c_ij u_hat_j|i (eq. 2)
    let s = tf.sum(tf.mul(tf.expandDims(coupling, -1), uHat), 1) as tf.Tensor3D;
    // The authors' code adds a learned bias [classes, digitDim] before squash (config.digitCapsBias).
    if (bias) s = tf.add(s, bias);
    capsules = squash(s, epsilon) as tf.Tensor3D;
    if (keepLogits) capsuleHistory.push(capsules);
    if (r + 1 < iterations || keepLogits) {
      // b_ij += u_hat_j|i . v_j
      const agreement = tf.sum(tf.mul(uHat, tf.expandDims(capsules, 1)), -1) as tf.Tensor3D;
      logits = tf.add(logits, agreement);
      if (keepLogits) logitHistory.push(logits);
    }
  }
  return { capsules, coupling, logitHistory, capsuleHistory };
}
