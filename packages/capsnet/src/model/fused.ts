/**
 * Names of the fused training kernels and the switch that model.ts and adam.ts consult before calling them.
 *
 * A fused kernel does in one pass what the paper's formulation does in many tfjs ops (each of which writes a full
 * tensor). They exist where a backend registers them (train/backends/wasm-capsule-kernels.ts registers them for 'wasm'
 * when that backend starts); everywhere else the composite ops in model.ts and adam.ts run, and they stay
 * the reference the fused kernels are tested against. This module only looks kernels up, so importing it loads no
 * backend.
 */
import * as tf from '@tensorflow/tfjs-core';

export const FUSED_KERNELS = {
  /**
   * Procedure 1 (routing by agreement), all iterations. Input uHat [N, I, J, D]; attrs iterations, epsilon;
   * outputs v [N, J, D] and the last coupling c [N, I, J].
   */
  dynamicRouting: 'CapsNetDynamicRouting',
  /** Gradient of dynamicRouting with respect to uHat. Inputs uHat, dCapsules, dCoupling; output [N, I, J, D]. */
  dynamicRoutingGrad: 'CapsNetDynamicRoutingGrad',
  /**
   * The prediction vectors u_hat_j|i = W_ij u_i (eq. 2). Inputs u [N, I, P], W [I, P, classes * digitDim]; attrs
   * classes, digitDim; output [N, I, classes, digitDim].
   */
  predictionVectors: 'CapsNetPredictionVectors',
  /** Gradient of predictionVectors. Inputs u, W, dUHat; outputs [dU, dW]. */
  predictionVectorsGrad: 'CapsNetPredictionVectorsGrad',
  /**
   * One Adam update of one weight. Inputs param, grad, m, v (same shape); attrs learningRate (bias-corrected),
   * beta1, beta2, epsilon; output the new param. It updates m and v in place: pass only the optimizer's own moments.
   */
  adam: 'CapsNetAdam',
} as const;

let enabled = true;

/** Turns the fused kernels on or off (benchmarks compare both in one run; tests check one against the other). Returns the previous setting. */
export function setFusedKernels(on: boolean): boolean {
  const previous = enabled;
  enabled = on;
  return previous;
}

/** True when `kernel` is registered for the active backend and fused kernels are on. */
export function fusedKernelAvailable(kernel: string): boolean {
  return enabled && tf.getKernel(kernel, tf.getBackend()) != null;
}
