// Fused kernels for the tfjs wasm backend: routing by agreement (procedure 1), forward and backward, and Adam,
// each in one pass over its data.
//
// As tfjs ops, one routing iteration at batch 32 writes several [N, 1152, 10, 16] tensors (24 MB each: the
// broadcast product c_ij u_hat, the agreement product u_hat v_j) and its gradient as many again; Adam is eight
// element-wise ops per weight, each a temporary the size of the weight. Here each is one loop nest over the wasm
// heap that keeps its working set in cache: routing walks one example at a time (its u_hat, 0.7 MB, fits in L2)
// and merges each iteration's agreement update with the next iteration's weighted sum, so R iterations read u_hat
// R times forward and R times backward (after an R-pass recomputation of the forward, which keeps only the small
// per-iteration c_ij and s_j). Sums are accumulated in doubles (JS numbers), so the results are at least as
// accurate as the float32 ops.
//
// u_hat (eq. 2) has no fused kernel: as a JS loop nest its forward and backward took 2x the CPU time of the wasm
// backend's compiled batched matmul plus transposes (batch 32: ~300 vs ~150 ms), so model.ts keeps the tfjs ops.
//
// The kernels are registered under the names in train/fused.ts; model.ts and adam.ts call them when they are
// registered for the active backend. test/wasm-capsule-kernels.test.ts checks every output and gradient against
// the composite ops on the cpu backend.

import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { FUSED_KERNELS } from './fused.ts';
import { heapF32, type WasmBackendLike } from './wasm-kernels.ts';

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

// ----------------------------------------------------------------------------------- routing (procedure 1)

/** v = |s|^2 / (1 + |s|^2) s / sqrt(|s|^2 + eps) for each D-vector of s (model.ts's squash). */
function squashInto(s: Float64Array, v: Float64Array, J: number, D: number, eps: number): void {
  for (let j = 0; j < J; j++) {
    let q = 0;
    for (let d = 0; d < D; d++) q += s[j * D + d]! * s[j * D + d]!;
    const f = q / (1 + q) / Math.sqrt(q + eps);
    for (let d = 0; d < D; d++) v[j * D + d] = f * s[j * D + d]!;
  }
}

/**
 * The gradient of squash: with q = |s|^2, r = sqrt(q + eps), f(q) = q / ((1 + q) r),
 * dL/ds = f gv + 2 f'(q) (s . gv) s, f'(q) = (2 eps + q - q^2) / (2 r^3 (1 + q)^2) (finite at s = 0).
 */
function squashBackward(s: Float64Array, gv: Float64Array, gs: Float64Array, J: number, D: number, eps: number): void {
  for (let j = 0; j < J; j++) {
    let q = 0, sg = 0;
    for (let d = 0; d < D; d++) {
      q += s[j * D + d]! * s[j * D + d]!;
      sg += s[j * D + d]! * gv[j * D + d]!;
    }
    const r = Math.sqrt(q + eps);
    const f = q / ((1 + q) * r);
    const fp = (2 * eps + q - q * q) / (2 * r * r * r * (1 + q) * (1 + q));
    for (let d = 0; d < D; d++) gs[j * D + d] = f * gv[j * D + d]! + 2 * fp * sg * s[j * D + d]!;
  }
}

/** Per-example scratch, reused across calls (grown when a larger shape comes). */
class RoutingScratch {
  b = new Float64Array(0);
  c: Float64Array[] = [];
  s: Float64Array[] = [];
  v: Float64Array[] = [];
  gv = new Float64Array(0);
  gvPrev = new Float64Array(0);
  gs = new Float64Array(0);
  gb = new Float64Array(0);
  gbNext = new Float64Array(0);
  gc = new Float64Array(0);

  fit(I: number, J: number, D: number, R: number): this {
    const IJ = I * J, JD = J * D;
    if (this.b.length < IJ || this.c.length < R || (this.s[0]?.length ?? 0) < JD) {
      this.b = new Float64Array(IJ);
      this.c = Array.from({ length: R }, () => new Float64Array(IJ));
      this.s = Array.from({ length: R }, () => new Float64Array(JD));
      this.v = Array.from({ length: R }, () => new Float64Array(JD));
      this.gv = new Float64Array(JD);
      this.gvPrev = new Float64Array(JD);
      this.gs = new Float64Array(JD);
      this.gb = new Float64Array(IJ);
      this.gbNext = new Float64Array(IJ);
      this.gc = new Float64Array(J);
    }
    return this;
  }
}
const scratch = new RoutingScratch();

/**
 * Routing for one example whose u_hat starts at u[off] ([I, J, D]); fills st.c[r], st.s[r], st.v[r] for every
 * iteration r. b_ij starts at 0, so c_ij of the first iteration is 1/J exactly, as softmax(0) is.
 * Iteration r's agreement update (b += u_hat . v_r) and iteration r+1's softmax and weighted sum share one pass.
 */
function routeExample(u: Float32Array, off: number, I: number, J: number, D: number, R: number, eps: number, st: RoutingScratch): void {
  const JD = J * D;
  const b = st.b;
  b.fill(0, 0, I * J);
  const c0 = st.c[0]!, s0 = st.s[0]!;
  c0.fill(1 / J, 0, I * J);
  s0.fill(0, 0, JD);
  for (let i = 0; i < I; i++) {
    const row = off + i * JD;
    for (let e = 0; e < JD; e++) s0[e] += u[row + e]!;
  }
  for (let e = 0; e < JD; e++) s0[e] /= J;
  for (let r = 0; r < R; r++) {
    const s = st.s[r]!, v = st.v[r]!;
    squashInto(s, v, J, D, eps);
    if (r + 1 === R) break;
    const c = st.c[r + 1]!, sNext = st.s[r + 1]!;
    sNext.fill(0, 0, JD);
    for (let i = 0; i < I; i++) {
      const row = off + i * JD, bi = i * J;
      let max = -Infinity;
      for (let j = 0; j < J; j++) {
        let dot = 0;
        for (let d = 0, x = row + j * D; d < D; d++, x++) dot += u[x]! * v[j * D + d]!;
        const logit = b[bi + j]! + dot;
        b[bi + j] = logit;
        if (logit > max) max = logit;
      }
      let sum = 0;
      for (let j = 0; j < J; j++) {
        const e = Math.exp(b[bi + j]! - max);
        c[bi + j] = e;
        sum += e;
      }
      for (let j = 0; j < J; j++) {
        const cij = c[bi + j]! / sum;
        c[bi + j] = cij;
        for (let d = 0, x = row + j * D; d < D; d++, x++) sNext[j * D + d] += cij * u[x]!;
      }
    }
  }
}

/** Forward: v [N, J, D] and the last iteration's c [N, I, J]. */
export function dynamicRoutingForward(
  u: Float32Array, v: Float32Array, coupling: Float32Array, N: number, I: number, J: number, D: number, R: number, eps: number,
): void {
  const st = scratch.fit(I, J, D, R);
  const IJ = I * J, JD = J * D;
  for (let n = 0; n < N; n++) {
    routeExample(u, n * I * JD, I, J, D, R, eps, st);
    const vLast = st.v[R - 1]!, cLast = st.c[R - 1]!;
    for (let e = 0; e < JD; e++) v[n * JD + e] = vLast[e]!;
    for (let e = 0; e < IJ; e++) coupling[n * IJ + e] = cLast[e]!;
  }
}

/**
 * Backward, per example, from the recomputed iterations (b_{r+1} = b_r + a_r with a_r = u . v_r, c_r = softmax(b_r),
 * s_r = sum_i c_r u, v_r = squash(s_r)), last iteration first:
 *   gs = squash'(s_r) gv_r;  gc = u . gs (+ dCoupling at the last);  du += c_r gs;
 *   gb_r = c_r (gc - sum_j c_r gc) + gb_{r+1};  then, for r > 0, gb_r is the gradient of a_{r-1}:
 *   du += gb_r v_{r-1} and gv_{r-1} = sum_i gb_r u (in the same pass over u).
 */
export function dynamicRoutingBackward(
  u: Float32Array, dV: Float32Array, dC: Float32Array, du: Float32Array,
  N: number, I: number, J: number, D: number, R: number, eps: number,
): void {
  const st = scratch.fit(I, J, D, R);
  const IJ = I * J, JD = J * D;
  for (let n = 0; n < N; n++) {
    const off = n * I * JD;
    routeExample(u, off, I, J, D, R, eps, st);
    du.fill(0, off, off + I * JD);
    let gv = st.gv, gvPrev = st.gvPrev, gb = st.gb, gbNext = st.gbNext;
    for (let e = 0; e < JD; e++) gv[e] = dV[n * JD + e]!;
    const gs = st.gs, gc = st.gc;
    for (let r = R - 1; r >= 0; r--) {
      squashBackward(st.s[r]!, gv, gs, J, D, eps);
      const c = st.c[r]!, vPrev = r > 0 ? st.v[r - 1]! : null;
      if (vPrev) gvPrev.fill(0, 0, JD);
      for (let i = 0; i < I; i++) {
        const row = off + i * JD, bi = i * J;
        let cgc = 0;
        for (let j = 0; j < J; j++) {
          let dot = r === R - 1 ? dC[n * IJ + bi + j]! : 0;
          for (let d = 0, x = row + j * D; d < D; d++, x++) dot += u[x]! * gs[j * D + d]!;
          gc[j] = dot;
          cgc += c[bi + j]! * dot;
        }
        for (let j = 0; j < J; j++) {
          const cij = c[bi + j]!;
          const g = cij * (gc[j]! - cgc) + (r < R - 1 ? gbNext[bi + j]! : 0);
          gb[bi + j] = g;
          if (vPrev) {
            for (let d = 0, x = row + j * D; d < D; d++, x++) {
              du[x] += cij * gs[j * D + d]! + g * vPrev[j * D + d]!;
              gvPrev[j * D + d] += g * u[x]!;
            }
          } else {
            for (let d = 0, x = row + j * D; d < D; d++, x++) du[x] += cij * gs[j * D + d]!;
          }
        }
      }
      [gv, gvPrev] = [gvPrev, gv];
      [gb, gbNext] = [gbNext, gb];
    }
  }
}

// -------------------------------------------------------------------------------------------------- Adam

/**
 * m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  pOut = p - lr m / (sqrt(v) + eps)  (train/adam.ts's update), with
 * m and v updated in place.
 */
export function adamUpdate(
  p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, pOut: Float32Array,
  lr: number, beta1: number, beta2: number, epsilon: number,
): void {
  const a1 = 1 - beta1, a2 = 1 - beta2;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i]!;
    const mi = beta1 * m[i]! + a1 * gi;
    const vi = beta2 * v[i]! + a2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    pOut[i] = p[i]! - lr * mi / (Math.sqrt(vi) + epsilon);
  }
}

// ------------------------------------------------------------------------------------ wasm kernel wrappers

type KernelArgs = { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap };

function requireFloat32(kernel: string, tensors: TensorInfo[]): void {
  for (const t of tensors) {
    if (t.dtype !== 'float32') throw new Error(`${kernel} (train/wasm-capsule-kernels.ts): float32 only, got ${t.dtype}`);
  }
}

interface RoutingAttrs { iterations: number; epsilon: number }

function routingShape(kernel: string, uHat: TensorInfo, attrs: RoutingAttrs): [number, number, number, number, number] {
  if (uHat.shape.length !== 4) throw new Error(`${kernel}: uHat must be [N, inputCaps, classes, dim], got [${uHat.shape}]`);
  if (!Number.isInteger(attrs.iterations) || attrs.iterations < 1) {
    throw new Error(`${kernel}: iterations must be a positive integer, got ${attrs.iterations}`);
  }
  const [N, I, J, D] = uHat.shape as [number, number, number, number];
  return [N, I, J, D, attrs.iterations];
}

function dynamicRoutingKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo[] {
  const be = backend as WasmBackendLike;
  const { uHat } = inputs as { uHat: TensorInfo };
  requireFloat32(FUSED_KERNELS.dynamicRouting, [uHat]);
  const a = attrs as unknown as RoutingAttrs;
  const [N, I, J, D, R] = routingShape(FUSED_KERNELS.dynamicRouting, uHat, a);
  const v = be.makeOutput([N, J, D], 'float32');
  const c = be.makeOutput([N, I, J], 'float32');
  dynamicRoutingForward(heapF32(be, uHat, N * I * J * D), heapF32(be, v, N * J * D), heapF32(be, c, N * I * J),
    N, I, J, D, R, a.epsilon);
  return [v, c];
}

function dynamicRoutingGradKernel({ inputs, backend, attrs }: KernelArgs): TensorInfo {
  const be = backend as WasmBackendLike;
  const { uHat, dCapsules, dCoupling } = inputs as { uHat: TensorInfo; dCapsules: TensorInfo; dCoupling: TensorInfo };
  requireFloat32(FUSED_KERNELS.dynamicRoutingGrad, [uHat, dCapsules, dCoupling]);
  const a = attrs as unknown as RoutingAttrs;
  const [N, I, J, D, R] = routingShape(FUSED_KERNELS.dynamicRoutingGrad, uHat, a);
  const du = be.makeOutput([N, I, J, D], 'float32');
  dynamicRoutingBackward(heapF32(be, uHat, N * I * J * D), heapF32(be, dCapsules, N * J * D),
    heapF32(be, dCoupling, N * I * J), heapF32(be, du, N * I * J * D), N, I, J, D, R, a.epsilon);
  return du;
}

interface AdamAttrs { learningRate: number; beta1: number; beta2: number; epsilon: number }

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
  adamUpdate(heapF32(be, param, n), heapF32(be, grad, n), heapF32(be, m, n), heapF32(be, v, n), heapF32(be, out, n),
    a.learningRate, a.beta1, a.beta2, a.epsilon);
  return out;
}

const kernelConfigs: KernelConfig[] = [
  [FUSED_KERNELS.dynamicRouting, dynamicRoutingKernel],
  [FUSED_KERNELS.dynamicRoutingGrad, dynamicRoutingGradKernel],
  [FUSED_KERNELS.adam, adamKernel],
].map(([kernelName, f]) => ({ kernelName: kernelName as string, backendName: 'wasm', kernelFunc: f as unknown as KernelFunc }));

let registered = false;

/** Registers the fused kernels for 'wasm' and the routing kernel's gradient. Idempotent. */
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
        uHat: () => tf.engine().runKernel(FUSED_KERNELS.dynamicRoutingGrad, { uHat, dCapsules: dCapsules!, dCoupling: dCoupling! },
          attrs as unknown as NamedAttrMap) as tf.Tensor,
      };
    },
  });
  registered = true;
}
