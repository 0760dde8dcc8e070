// Fused kernels for the tfjs wasm backend: the prediction vectors u_hat (eq. 2), routing by agreement
// (procedure 1), each forward and backward, and Adam, each in one pass over its data.
//
// As tfjs ops, u_hat is a transpose, a matmul batched over the 1,152 primary capsules (which the wasm backend runs
// as a scalar loop: XNNPACK only takes unbatched products) and another transpose, and its gradient two more such
// matmuls; one routing iteration at batch 32 writes several [N, 1152, 10, 16] tensors (24 MB each: the broadcast
// product c_ij u_hat, the agreement product u_hat v_j) and its gradient as many again; Adam is eight element-wise
// ops per weight, each a temporary the size of the weight. Here each is one loop nest in wasm SIMD
// (assembly/training-kernels.ts, loaded by train/backends/wasm-simd.ts) that works on the tensors in place, with the work
// shared between the backend's threads.
// Routing walks one example at a time (its u_hat, 0.7 MB, fits in L2) and merges each iteration's agreement update
// with the next iteration's weighted sum, so R iterations read u_hat R times forward and R times backward (after an
// R-pass recomputation of the forward, which keeps only the small per-iteration c_ij and s_j).
//
// The kernels are registered under the names in model/fused.ts; model.ts and adam.ts call them when they are
// registered for the active backend. test/e2e/wasm-capsule-kernels.test.ts checks every output and gradient against
// the composite ops on the cpu backend, and the committed binaries against their source.

import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { FUSED_KERNELS } from '../../model/fused.ts';
import { partRange, pointer, simdKernels, type WasmBackendLike } from './wasm-simd.ts';

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

// ------------------------------------------------------------------------------------ wasm kernel wrappers

type KernelArgs = { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap };

function requireFloat32(kernel: string, tensors: TensorInfo[]): void {
  for (const t of tensors) {
    if (t.dtype !== 'float32') throw new Error(`${kernel} (train/backends/wasm-capsule-kernels.ts): float32 only, got ${t.dtype}`);
  }
}

interface RoutingAttrs {
  iterations: number;
  epsilon: number;
}

function routingShape(kernel: string, uHat: TensorInfo, attrs: RoutingAttrs): [number, number, number, number, number] {
  if (uHat.shape.length !== 4) throw new Error(`${kernel}: uHat must be [N, inputCaps, classes, dim], got [${uHat.shape}]`);
  if (!Number.isInteger(attrs.iterations) || attrs.iterations < 1) {
    throw new Error(`${kernel}: iterations must be a positive integer, got ${attrs.iterations}`);
  }
  const [N, I, J, D] = uHat.shape as [number, number, number, number];
  return [N, I, J, D, attrs.iterations];
}

/**
 * Runs a routing kernel over the batch, one share of the examples per thread, each with its own scratch block on
 * the heap (released afterwards, also on a throw). args(n0, n1, scratch) gives one share's arguments.
 */
function routeInParts(
  be: WasmBackendLike,
  name: 'routingForward' | 'routingBackward',
  [N, I, J, D, R]: number[],
  args: (n0: number, n1: number, scratch: number) => number[],
): void {
  const { local, threads } = simdKernels(be);
  const floats = local.routingScratchFloats(I!, J!, D!, R!);
  const scratch = be.makeOutput([threads.parts * floats], 'float32');
  try {
    const base = pointer(be, scratch);
    threads.run(
      name,
      (part, parts) => {
        const [n0, n1] = partRange(N!, parts, part);
        return args(n0, n1, base + 4 * part * floats);
      },
      N! < 2,
    );
  } finally {
    be.disposeData(scratch.dataId);
  }
}

function dynamicRoutingKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const be = backend as WasmBackendLike;
  const { uHat } = inputs as { uHat: TensorInfo };
  requireFloat32(FUSED_KERNELS.dynamicRouting, [uHat]);
  const a = attrs as unknown as RoutingAttrs;
  const [N, I, J, D, R] = routingShape(FUSED_KERNELS.dynamicRouting, uHat, a);
  const v = be.makeOutput([N, J, D], 'float32');
  const c = be.makeOutput([N, I, J], 'float32');
  const [pu, pv, pc] = [pointer(be, uHat), pointer(be, v), pointer(be, c)];
  routeInParts(be, 'routingForward', [N, I, J, D, R], (n0, n1, scratch) => [
    pu + 4 * n0 * I * J * D,
    pv + 4 * n0 * J * D,
    pc + 4 * n0 * I * J,
    scratch,
    n1 - n0,
    I,
    J,
    D,
    R,
    a.epsilon,
  ]);
  return [v, c];
}

function dynamicRoutingGradKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const be = backend as WasmBackendLike;
  const { uHat, dCapsules, dCoupling } = inputs as { uHat: TensorInfo; dCapsules: TensorInfo; dCoupling: TensorInfo };
  requireFloat32(FUSED_KERNELS.dynamicRoutingGrad, [uHat, dCapsules, dCoupling]);
  const a = attrs as unknown as RoutingAttrs;
  const [N, I, J, D, R] = routingShape(FUSED_KERNELS.dynamicRoutingGrad, uHat, a);
  const du = be.makeOutput([N, I, J, D], 'float32');
  const [pu, pdv, pdc, pdu] = [pointer(be, uHat), pointer(be, dCapsules), pointer(be, dCoupling), pointer(be, du)];
  routeInParts(be, 'routingBackward', [N, I, J, D, R], (n0, n1, scratch) => [
    pu + 4 * n0 * I * J * D,
    pdv + 4 * n0 * J * D,
    pdc + 4 * n0 * I * J,
    pdu + 4 * n0 * I * J * D,
    scratch,
    n1 - n0,
    I,
    J,
    D,
    R,
    a.epsilon,
  ]);
  return du;
}

interface PredictionAttrs {
  classes: number;
  digitDim: number;
}

function predictionShape(kernel: string, u: TensorInfo, W: TensorInfo, attrs: PredictionAttrs): [number, number, number, number] {
  const [N, I, P] = u.shape as [number, number, number];
  const K = attrs.classes * attrs.digitDim;
  if (u.shape.length !== 3 || W.shape.length !== 3 || W.shape[0] !== I || W.shape[1] !== P || W.shape[2] !== K) {
    throw new Error(
      `${kernel}: u must be [N, I, P] and W [I, P, classes*digitDim], got u [${u.shape}], W [${W.shape}] ` +
        `with classes ${attrs.classes}, digitDim ${attrs.digitDim}`,
    );
  }
  return [N, I, P, K];
}

/** u_hat = u . W per primary capsule: u [N, I, P], W [I, P, J*D] -> [N, I, J, D]. */
function predictionVectorsKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const be = backend as WasmBackendLike;
  const { u, W } = inputs as { u: TensorInfo; W: TensorInfo };
  requireFloat32(FUSED_KERNELS.predictionVectors, [u, W]);
  const a = attrs as unknown as PredictionAttrs;
  const [N, I, P, K] = predictionShape(FUSED_KERNELS.predictionVectors, u, W, a);
  const uHat = be.makeOutput([N, I, a.classes, a.digitDim], 'float32');
  const [pu, pw, pout] = [pointer(be, u), pointer(be, W), pointer(be, uHat)];
  simdKernels(be).threads.run('predictionVectors', (part, parts) => {
    const [n0, n1] = partRange(N, parts, part);
    return [pu + 4 * n0 * I * P, pw, pout + 4 * n0 * I * K, n1 - n0, I, P, K];
  });
  return uHat;
}

/** The gradients of predictionVectors with respect to u and W, from dUHat [N, I, J, D]. */
function predictionVectorsGradKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const be = backend as WasmBackendLike;
  const { u, W, dUHat } = inputs as { u: TensorInfo; W: TensorInfo; dUHat: TensorInfo };
  requireFloat32(FUSED_KERNELS.predictionVectorsGrad, [u, W, dUHat]);
  const a = attrs as unknown as PredictionAttrs;
  const [N, I, P, K] = predictionShape(FUSED_KERNELS.predictionVectorsGrad, u, W, a);
  if (size(dUHat.shape) !== N * I * K) throw new Error(`${FUSED_KERNELS.predictionVectorsGrad}: dUHat [${dUHat.shape}] does not match [${N}, ${I}, ${K}]`);
  const dU = be.makeOutput([N, I, P], 'float32');
  const dW = be.makeOutput([I, P, K], 'float32');
  const ptrs = [pointer(be, u), pointer(be, W), pointer(be, dUHat), pointer(be, dU), pointer(be, dW)];
  const { threads } = simdKernels(be);
  threads.run('predictionVectorsGrad', (part, parts) => [...ptrs, N, I, P, K, ...partRange(I, parts, part)]);
  return [dU, dW];
}

interface AdamAttrs {
  learningRate: number;
  beta1: number;
  beta2: number;
  epsilon: number;
}

/**
 * Writes the moments m and v in place (they are the optimizer's own variables, never shared: adam.ts creates them
 * and hands them to nothing else) and returns the new weight as a fresh tensor (a weight may be shared, e.g. by
 * a clone).
 */
function adamKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const be = backend as WasmBackendLike;
  const { param, grad, m, v } = inputs as { param: TensorInfo; grad: TensorInfo; m: TensorInfo; v: TensorInfo };
  requireFloat32(FUSED_KERNELS.adam, [param, grad, m, v]);
  const n = size(param.shape);
  for (const t of [grad, m, v]) {
    if (size(t.shape) !== n) throw new Error(`${FUSED_KERNELS.adam}: shapes differ: [${param.shape}] vs [${t.shape}]`);
  }
  const a = attrs as unknown as AdamAttrs;
  const out = be.makeOutput([...param.shape], 'float32');
  const ptrs = [pointer(be, param), pointer(be, grad), pointer(be, m), pointer(be, v), pointer(be, out)];
  const { threads } = simdKernels(be);
  // Small weights (biases) in one part: waking a helper costs more than their update.
  const single = n < 1 << 16;
  threads.run(
    'adam',
    (part, parts) => {
      const [k0, k1] = partRange(n, parts, part);
      return [...ptrs.map((p) => p + 4 * k0), k1 - k0, a.learningRate, a.beta1, a.beta2, a.epsilon];
    },
    single,
  );
  return out;
}

const kernelConfigs: KernelConfig[] = [
  [FUSED_KERNELS.dynamicRouting, dynamicRoutingKernel],
  [FUSED_KERNELS.dynamicRoutingGrad, dynamicRoutingGradKernel],
  [FUSED_KERNELS.predictionVectors, predictionVectorsKernel],
  [FUSED_KERNELS.predictionVectorsGrad, predictionVectorsGradKernel],
  [FUSED_KERNELS.adam, adamKernel],
].map(([kernelName, f]) => ({ kernelName: kernelName as string, backendName: 'wasm', kernelFunc: f as unknown as KernelFunc }));

let registered = false;

/** Registers the fused kernels for 'wasm' and the gradients of routing and u_hat. Idempotent. */
export function registerWasmCapsuleKernels(): void {
  if (registered) return;
  for (const cfg of kernelConfigs) {
    if (tf.getKernel(cfg.kernelName, 'wasm') != null) tf.unregisterKernel(cfg.kernelName, 'wasm');
    tf.registerKernel(cfg);
  }
  tf.registerGradient({
    kernelName: FUSED_KERNELS.dynamicRouting,
    inputsToSave: ['uHat'],
    gradFunc: (dys, saved, attrs) => {
      const [uHat] = saved as [tf.Tensor];
      const [dCapsules, dCoupling] = dys as tf.Tensor[];
      return {
        uHat: () =>
          tf
            .engine()
            .runKernel(FUSED_KERNELS.dynamicRoutingGrad, { uHat, dCapsules: dCapsules!, dCoupling: dCoupling! }, attrs as unknown as NamedAttrMap) as tf.Tensor,
      };
    },
  });
  tf.registerGradient({
    kernelName: FUSED_KERNELS.predictionVectors,
    inputsToSave: ['u', 'W'],
    gradFunc: (dy, saved, attrs) => {
      const [u, W] = saved as [tf.Tensor, tf.Tensor];
      // One kernel call yields both gradients. It runs here, not in the thunks: tfjs runs each thunk in its own
      // tidy, which would dispose the other gradient. (One that is not needed is disposed with the backward pass.)
      const [dU, dW] = tf
        .engine()
        .runKernel(FUSED_KERNELS.predictionVectorsGrad, { u, W, dUHat: dy as tf.Tensor }, attrs as unknown as NamedAttrMap) as tf.Tensor[];
      return { u: () => dU!, W: () => dW! };
    },
  });
  registered = true;
}
