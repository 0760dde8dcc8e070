/**
 * Routing between the primary capsules and the class capsules as ONNX, unrolled: the ONNX twin of
 * model/routing.ts (TensorFlow.js), op for op, for a fixed iteration count (no Loop, no If). The algorithms' names,
 * validation and FLOPs are in @capsnet-onnx/core's routing.ts. The third implementation, the wasm backend's fused
 * kernel with its hand-derived gradient, is assembly/training-kernels.ts. `capsnet parity` (parity/run.ts) checks
 * an export against model/routing.ts at the file's own iteration count, coupling coefficients included.
 */
import type { RoutingConfig } from '@capsnet-onnx/core';
import type { GraphBuilder } from './graph-builder.ts';

/** Eq. 1, as model/layers.ts computes it: |s|^2/(1+|s|^2) / sqrt(|s|^2 + eps) * s, over the last axis. */
export function squash(g: GraphBuilder, s: string, epsilon: number, output?: string): string {
  return g.scope('squash', () => {
    const squaredNorm = g.reduceSum(g.mul(s, s), [-1], true);
    const scale = g.div(squaredNorm, g.add(g.constFloat(1), squaredNorm));
    return g.mul(g.div(scale, g.sqrt(g.add(squaredNorm, g.constFloat(epsilon)))), s, { output });
  });
}

export interface RoutingInputs {
  /** The primary capsules [N, I, P]: only their dynamic shape is used (the zero logits are made from them). */
  u: string;
  /** The prediction vectors u_hat [N, I, R, D] (eq. 2). */
  uHat: string;
  /** R: the capsules the softmax runs over (the classes, plus "none-of-the-above" when configured). */
  routedCaps: number;
  /** squash's epsilon. */
  epsilon: number;
  /** The authors' code's DigitCaps bias [R, D], added before squash (config.digitCapsBias); absent in the paper's network. */
  bias?: string;
  /** Graph output names for the last iteration's coupling [N, I, R] and capsules [N, R, D]; absent: internal. */
  couplingOutput?: string;
  capsulesOutput?: string;
}

/** The routed capsules v [N, R, D] and the last iteration's coupling coefficients c [N, I, R]. */
export interface RoutingOutputs {
  capsules: string;
  coupling: string;
}

/** Routes u_hat by `routing`'s algorithm, unrolled into `g`. */
export function unrolledRouting(g: GraphBuilder, routing: RoutingConfig, inputs: RoutingInputs): RoutingOutputs {
  switch (routing.algorithm) {
    case 'dynamic':
      return dynamicRouting(g, routing.iterations, inputs);
  }
}

/**
 * Procedure 1, routing by agreement, unrolled. The logits b start at zero per example; a zero tensor of the
 * dynamic shape [N, I, R] is made with float ops only (0 * a per-capsule sum of u, broadcast over the outputs).
 */
function dynamicRouting(
  g: GraphBuilder,
  iterations: number,
  { u, uHat, routedCaps: R, epsilon, bias, couplingOutput, capsulesOutput }: RoutingInputs,
): RoutingOutputs {
  let logits = g.scope('routing', () =>
    g.mul(g.reduceSum(u, [-1], true), g.constFloat(new Array<number>(R).fill(0), [R], 'routing/zeros'), { name: 'ZeroLogits' }),
  );
  let capsules = '';
  let coupling = '';
  for (let r = 0; r < iterations; r++) {
    const last = r + 1 === iterations;
    g.scope(`routing/iter${r + 1}`, () => {
      // c_ij = softmax over the output capsules j (eq. 3)
      coupling = g.softmax(logits, -1, { output: last ? couplingOutput : undefined });
      // s_j = sum_i c_ij u_hat_j|i (eq. 2), v_j = squash(s_j) (eq. 1)
      let s = g.reduceSum(g.mul(g.unsqueeze(coupling, [-1]), uHat), [1], false);
      if (bias) s = g.add(s, bias);
      capsules = squash(g, s, epsilon, last ? capsulesOutput : undefined);
      if (!last) {
        // b_ij += u_hat_j|i . v_j
        const agreement = g.reduceSum(g.mul(uHat, g.unsqueeze(capsules, [1])), [-1], false);
        logits = g.add(logits, agreement);
      }
    });
  }
  return { capsules, coupling };
}
