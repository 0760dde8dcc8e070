/**
 * Routing between the primary capsules and the class capsules: the algorithms' names, their validation and their
 * FLOP counts. Pure: no TensorFlow.js, no ONNX.
 *
 * Each algorithm has three implementations, which must compute the same thing:
 * - TensorFlow.js (training and the parity reference): packages/capsnet/src/model/routing.ts
 * - ONNX, unrolled into the exported graph: packages/capsnet/src/export/routing.ts
 * - AssemblyScript, the wasm backend's fused kernel with its hand-derived gradient:
 *   packages/capsnet/assembly/training-kernels.ts (registered by train/backends/wasm-capsule-kernels.ts)
 * A new algorithm is a name here (with its FLOPs), a branch in each of the first two (the fused kernel is an
 * optional speed-up: model/routing.ts runs composite ops where it is absent), and its parity test.
 */

/**
 * The routing algorithms a config may name. `dynamic`: procedure 1 of Sabour, Frosst & Hinton (2017), routing by
 * agreement (softmax of the logits over the output capsules, eq. 3; weighted sum, eq. 2; squash, eq. 1; logits
 * += agreement u_hat . v).
 */
export const ROUTING_ALGORITHMS = ['dynamic'] as const;
export type RoutingAlgorithm = (typeof ROUTING_ALGORITHMS)[number];

/** How the class capsules are routed: the algorithm and its iteration count r (the paper: dynamic, 3). */
export interface RoutingConfig {
  algorithm: RoutingAlgorithm;
  /** Iterations of the algorithm's loop, unrolled in the ONNX export: a positive integer. */
  iterations: number;
}

/** The paper's routing: 3 iterations of routing by agreement (section 4). */
export const PAPER_ROUTING: RoutingConfig = { algorithm: 'dynamic', iterations: 3 };

/**
 * The most routing iterations a new run or export takes. The paper routes 3 times (Table 1 compares 1 and 3; more
 * overfit), the routing experiment traces up to 7, and the couplings have settled long before 32. Every iteration
 * is unrolled into the ONNX graph and kept in training's autodiff tape, so a count like 2^31 - 1 never finishes
 * and grows memory without a word: 32 leaves room for ablations and stops that.
 */
export const MAX_ROUTING_ITERATIONS = 32;

/** Throws a one-line error naming the field and what it accepts unless `routing` is a valid RoutingConfig. */
export function validateRouting(routing: unknown, where = 'config.routing'): asserts routing is RoutingConfig {
  if (!routing || typeof routing !== 'object' || Array.isArray(routing)) {
    throw new Error(`${where} must be { algorithm, iterations }, got ${JSON.stringify(routing)}`);
  }
  const { algorithm, iterations } = routing as Record<string, unknown>;
  if (!(ROUTING_ALGORITHMS as readonly unknown[]).includes(algorithm)) {
    throw new Error(`${where}.algorithm must be one of ${ROUTING_ALGORITHMS.map((a) => `"${a}"`).join(', ')}, got ${JSON.stringify(algorithm)}`);
  }
  if (typeof iterations !== 'number' || !Number.isInteger(iterations) || iterations < 1) {
    throw new Error(`${where}.iterations must be a positive integer, got ${JSON.stringify(iterations)}`);
  }
}

/**
 * A config as any version stored it, with its routing in today's form: configs written before `routing` existed
 * carry `routingIterations: r` (checkpoints, and `capsnet.config` in ONNX files), which means { algorithm:
 * 'dynamic', iterations: r }. Anything else is returned as it is (validation is the caller's). Does not modify
 * `stored`.
 */
export function withRoutingConfig<T extends object>(stored: T): T {
  const { routingIterations, ...rest } = stored as T & { routingIterations?: unknown; routing?: unknown };
  if (routingIterations === undefined) return stored;
  if ((rest as { routing?: unknown }).routing !== undefined) return rest as T;
  return { ...rest, routing: { algorithm: 'dynamic', iterations: routingIterations } } as T;
}

/**
 * Multiply-add FLOPs (2 per multiply-add) of one image's forward routing: `inputCaps` prediction vectors routed to
 * output capsules that are `outputWidth` floats wide together (classes x digitDim). Element-wise work (softmax,
 * squash) is left out, as in core/flops.ts.
 */
export function routingFlops(routing: RoutingConfig, inputCaps: number, outputWidth: number): number {
  switch (routing.algorithm) {
    case 'dynamic':
      // Each iteration forms s_j = sum_i c_ij u_hat_j|i; every iteration but the last adds u_hat_j|i . v_j to b_ij.
      return 2 * inputCaps * outputWidth * (2 * routing.iterations - 1);
  }
}
