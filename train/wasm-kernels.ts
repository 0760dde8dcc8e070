// Convolution gradients for the tfjs wasm backend.
//
// tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter kernel at all (so a conv net cannot be trained on it),
// and its Conv2DBackpropInput is a direct 7-deep loop that dominates a training step. Both are replaced here by
// the same recipe: lay the data out on the wasm heap in JS (im2col / col2im), then hand the one big matrix
// product to the wasm backend's own BatchMatMul kernel, which runs it through XNNPACK's SIMD GEMM (on the
// backend's thread pool when the threaded binary is loaded, see train/wasm-threads.ts).
//
//   filter gradient:  dW[(kh,kw,ci), co] = colT[(kh,kw,ci), m] . dy[m, co]           (m = n,oh,ow)
//   input gradient:   colT[(kh,kw,ci), m] = W[(kh,kw,ci), co] . dyT[co, m]; dx = col2im(colT)
//
// Both products are laid out so that neither operand is transposed and the "batch" is 1: that is the only
// case the wasm BatchMatMul sends to XNNPACK (everything else takes a slow scalar loop). The row-major
// [KH, KW, CI, CO] filter is already the [(kh,kw,ci), co] matrix, so dW needs no reshuffle and W is used in
// place. The image side is handled in a channel-major copy ([CI][N][H][W]) so that every inner loop walks
// along a row of the image.
//
// Supported: NHWC, any strides, dilation 1, padding 'valid', 'same', a number or explicit NHWC pairs, and
// dimRoundingMode. NCHW throws (the wasm backend's forward conv does not support it either).

import * as tf from '@tensorflow/tfjs-core';
import { backend_util } from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
// Importing the package registers its kernels, so ours are registered after (and can replace) them.
import '@tensorflow/tfjs-backend-wasm';

/** The parts of BackendWasm (tfjs-backend-wasm 4.22, dist/backend_wasm.d.ts) these kernels use. */
interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

/** Upper bound on the floats in one im2col buffer; larger batches are processed in groups of images. */
let colBudgetFloats = 1 << 25; // 128 MiB

/** Sets the im2col buffer budget (in floats) and returns the previous one; tests use it to force grouping. */
export function setIm2colBudget(floats: number): number {
  const previous = colBudgetFloats;
  colBudgetFloats = Math.max(1, Math.floor(floats));
  return previous;
}

type Conv2DInfo = backend_util.Conv2DInfo;

function heapF32(backend: WasmBackendLike, info: TensorInfo, size: number): Float32Array {
  const entry = backend.dataIdMap.get(info.dataId);
  if (entry == null) throw new Error('wasm-kernels: tensor is not on the wasm backend');
  // Read HEAPU8 afresh every time: a malloc may have grown (and so replaced) the heap's buffer.
  return new Float32Array(backend.wasm.HEAPU8.buffer, entry.memoryOffset, size);
}

let batchMatMulFunc: KernelFunc | null = null;

/** The wasm backend's own BatchMatMul: c[rows, cols] = a[rows, inner] . b[inner, cols], via XNNPACK. */
function gemm(backend: WasmBackendLike, a: TensorInfo, b: TensorInfo): TensorInfo {
  if (batchMatMulFunc == null) {
    const k = tf.getKernel('BatchMatMul', 'wasm');
    if (k == null) throw new Error('wasm-kernels: the wasm backend has no BatchMatMul kernel');
    batchMatMulFunc = k.kernelFunc;
  }
  return batchMatMulFunc({
    inputs: { a, b },
    backend: backend as unknown as tf.KernelBackend,
    attrs: { transposeA: false, transposeB: false },
  }) as TensorInfo;
}

// Reusable JS-side scratch (the channel-major copies never need to be on the wasm heap).
let scratchA = new Float32Array(0);
function scratch(size: number): Float32Array {
  if (scratchA.length < size) scratchA = new Float32Array(size);
  return scratchA.subarray(0, size);
}

/**
 * dst[c * rows + r] = src[srcOffset + r * cols + c] for r < rows, c < cols: [rows, cols] -> [cols, rows],
 * in tiles so that both sides stay in cache.
 */
export function transpose2d(
  src: Float32Array, srcOffset: number, rows: number, cols: number, dst: Float32Array, dstOffset: number,
): void {
  const T = 32;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(rows, r0 + T);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(cols, c0 + T);
      for (let c = c0; c < c1; c++) {
        let d = dstOffset + c * rows + r0;
        let s = srcOffset + r0 * cols + c;
        for (let r = r0; r < r1; r++) {
          dst[d++] = src[s];
          s += cols;
        }
      }
    }
  }
}

/** For each filter column kw, the output columns ow whose input column ow*stride + kw - pad lies in [0, size). */
function validColumns(ci: Conv2DInfo): { lo: Int32Array; hi: Int32Array } {
  const { filterWidth: KW, strideWidth: sw, inWidth: W, outWidth: OW } = ci;
  const pl = ci.padInfo.left;
  const lo = new Int32Array(KW), hi = new Int32Array(KW);
  for (let kw = 0; kw < KW; kw++) {
    // ow*sw + kw - pl >= 0  and  ow*sw + kw - pl <= W - 1
    lo[kw] = Math.max(0, Math.ceil((pl - kw) / sw));
    hi[kw] = Math.max(lo[kw]!, Math.min(OW, Math.floor((W - 1 + pl - kw) / sw) + 1));
  }
  return { lo, hi };
}

/** Images per im2col group so that the [KH*KW*CI, images*OH*OW] buffer stays under the budget. */
function imagesPerGroup(ci: Conv2DInfo): number {
  const perImage = ci.filterHeight * ci.filterWidth * ci.inChannels * ci.outHeight * ci.outWidth;
  return Math.max(1, Math.min(ci.batchSize, Math.floor(colBudgetFloats / Math.max(1, perImage))));
}

// The two loops below walk one (channel, image) plane at a time, so the plane they read (im2col) or
// accumulate into (col2im) stays in L1 while each filter tap (kh, kw) moves a contiguous OH*OW block of
// its colT row. Measured on the primary-caps shape this order is ~2x faster than going row by row.

/**
 * Fills colT[(kh,kw,ci), (n,oh,ow)] for images n0 <= n < n0+nb from the channel-major image xT[ci][n][h][w].
 */
function im2colT(ci: Conv2DInfo, xT: Float32Array, n0: number, nb: number, colT: Float32Array): void {
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = ci;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = ci;
  const pt = ci.padInfo.top, pl = ci.padInfo.left;
  const { lo, hi } = validColumns(ci);
  const Mc = nb * OH * OW, plane = OH * OW;
  for (let c = 0; c < C; c++) {
    for (let nl = 0; nl < nb; nl++) {
      const img = (c * N + n0 + nl) * H * W;
      for (let kh = 0; kh < KH; kh++) {
        for (let kw = 0; kw < KW; kw++) {
          const owLo = lo[kw]!, owHi = hi[kw]!;
          let d = ((kh * KW + kw) * C + c) * Mc + nl * plane;
          for (let oh = 0; oh < OH; oh++, d += OW) {
            const ih = oh * sh + kh - pt;
            if (ih < 0 || ih >= H || owLo >= owHi) {
              colT.fill(0, d, d + OW);
              continue;
            }
            for (let ow = 0; ow < owLo; ow++) colT[d + ow] = 0;
            for (let ow = owHi; ow < OW; ow++) colT[d + ow] = 0;
            const src = img + ih * W + kw - pl;
            for (let ow = owLo; ow < owHi; ow++) colT[d + ow] = xT[src + ow * sw]!;
          }
        }
      }
    }
  }
}

/** dxT[ci][n][h][w] += the entries of colT[(kh,kw,ci), (n,oh,ow)] for images n0 <= n < n0+nb. */
function col2imT(ci: Conv2DInfo, colT: Float32Array, n0: number, nb: number, dxT: Float32Array): void {
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = ci;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = ci;
  const pt = ci.padInfo.top, pl = ci.padInfo.left;
  const { lo, hi } = validColumns(ci);
  const Mc = nb * OH * OW, plane = OH * OW;
  for (let c = 0; c < C; c++) {
    for (let nl = 0; nl < nb; nl++) {
      const img = (c * N + n0 + nl) * H * W;
      for (let kh = 0; kh < KH; kh++) {
        for (let kw = 0; kw < KW; kw++) {
          const owLo = lo[kw]!, owHi = hi[kw]!;
          if (owLo >= owHi) continue;
          let src = ((kh * KW + kw) * C + c) * Mc + nl * plane;
          for (let oh = 0; oh < OH; oh++, src += OW) {
            const ih = oh * sh + kh - pt;
            if (ih < 0 || ih >= H) continue;
            const dst = img + ih * W + kw - pl;
            for (let ow = owLo; ow < owHi; ow++) dxT[dst + ow * sw] += colT[src + ow]!;
          }
        }
      }
    }
  }
}

function checkNHWC(dataFormat: string, kernel: string): void {
  if (dataFormat !== 'NHWC') {
    throw new Error(`${kernel} on wasm (train/wasm-kernels.ts) supports dataFormat 'NHWC' only, got '${dataFormat}'`);
  }
}

type PadAttr = 'valid' | 'same' | number | backend_util.ExplicitPadding;
type RoundingAttr = 'floor' | 'round' | 'ceil' | undefined;

function conv2dBackpropFilter(args: { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const attrs = args.attrs as unknown as {
    strides: [number, number] | number; pad: PadAttr; dataFormat: 'NHWC' | 'NCHW';
    dimRoundingMode?: RoundingAttr; filterShape: [number, number, number, number];
  };
  checkNHWC(attrs.dataFormat, 'Conv2DBackpropFilter');
  const ci = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], attrs.filterShape, attrs.strides, 1, attrs.pad,
    attrs.dimRoundingMode, false, 'channelsLast');
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outChannels: CO, outHeight: OH, outWidth: OW } = ci;
  const K = ci.filterHeight * ci.filterWidth * C;
  const outSize = K * CO;
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') throw new Error('Conv2DBackpropFilter: float32 only');

  // Channel-major copy of x: xT[c][n][h][w].
  const P = N * H * W;
  const xT = scratch(P * C);
  transpose2d(heapF32(backend, x, P * C), 0, P, C, xT, 0);

  const group = imagesPerGroup(ci);
  let acc: TensorInfo | null = null;
  for (let n0 = 0; n0 < N; n0 += group) {
    const nb = Math.min(group, N - n0);
    const Mc = nb * OH * OW;
    const colT = backend.makeOutput([K, Mc], 'float32');
    let dyPart: TensorInfo;
    if (nb === N) {
      dyPart = { dataId: dy.dataId, shape: [Mc, CO], dtype: 'float32' };
    } else {
      dyPart = backend.makeOutput([Mc, CO], 'float32');
      const all = heapF32(backend, dy, N * OH * OW * CO);
      heapF32(backend, dyPart, Mc * CO).set(all.subarray(n0 * OH * OW * CO, (n0 + nb) * OH * OW * CO));
    }
    im2colT(ci, xT, n0, nb, heapF32(backend, colT, K * Mc));
    const part = gemm(backend, colT, dyPart);
    backend.disposeData(colT.dataId);
    if (dyPart.dataId !== dy.dataId) backend.disposeData(dyPart.dataId);
    if (acc == null) {
      acc = part;
    } else {
      const a = heapF32(backend, acc, outSize), p = heapF32(backend, part, outSize);
      for (let i = 0; i < outSize; i++) a[i] += p[i];
      backend.disposeData(part.dataId);
    }
  }
  if (acc == null) {
    // Empty batch: the gradient is zero.
    acc = backend.makeOutput([K, CO], 'float32');
    heapF32(backend, acc, outSize).fill(0);
  }
  return { dataId: acc.dataId, shape: [...attrs.filterShape], dtype: 'float32' };
}

function conv2dBackpropInput(args: { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
  const attrs = args.attrs as unknown as {
    strides: [number, number] | number; pad: PadAttr; dataFormat: 'NHWC' | 'NCHW';
    dimRoundingMode?: RoundingAttr; inputShape: [number, number, number, number];
  };
  checkNHWC(attrs.dataFormat, 'Conv2DBackpropInput');
  const ci = backend_util.computeConv2DInfo(
    attrs.inputShape, filter.shape as [number, number, number, number], attrs.strides, 1, attrs.pad,
    attrs.dimRoundingMode, false, 'channelsLast');
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outChannels: CO, outHeight: OH, outWidth: OW } = ci;
  const K = ci.filterHeight * ci.filterWidth * C;
  if (dy.dtype !== 'float32' || filter.dtype !== 'float32') throw new Error('Conv2DBackpropInput: float32 only');

  const P = N * H * W;
  const dxT = scratch(P * C);
  dxT.fill(0);
  const w2d: TensorInfo = { dataId: filter.dataId, shape: [K, CO], dtype: 'float32' };
  const group = imagesPerGroup(ci);
  for (let n0 = 0; n0 < N; n0 += group) {
    const nb = Math.min(group, N - n0);
    const Mc = nb * OH * OW;
    // dyT[co, m] for this group's rows m.
    const dyT = backend.makeOutput([CO, Mc], 'float32');
    transpose2d(heapF32(backend, dy, N * OH * OW * CO), n0 * OH * OW * CO, Mc, CO, heapF32(backend, dyT, CO * Mc), 0);
    const colT = gemm(backend, w2d, dyT);
    backend.disposeData(dyT.dataId);
    col2imT(ci, heapF32(backend, colT, K * Mc), n0, nb, dxT);
    backend.disposeData(colT.dataId);
  }
  const dx = backend.makeOutput([N, H, W, C], 'float32');
  transpose2d(dxT, 0, C, P, heapF32(backend, dx, P * C), 0);
  return dx;
}

export const conv2dBackpropFilterConfig: KernelConfig = {
  kernelName: 'Conv2DBackpropFilter',
  backendName: 'wasm',
  kernelFunc: conv2dBackpropFilter as unknown as KernelFunc,
};

export const conv2dBackpropInputConfig: KernelConfig = {
  kernelName: 'Conv2DBackpropInput',
  backendName: 'wasm',
  kernelFunc: conv2dBackpropInput as unknown as KernelFunc,
};

let registered = false;

/**
 * Registers the two kernels for the 'wasm' backend (replacing the built-in Conv2DBackpropInput). Idempotent;
 * call it before running gradients on wasm (initBackend('wasm') does).
 */
export function registerWasmConvKernels(): void {
  if (registered) return;
  for (const cfg of [conv2dBackpropFilterConfig, conv2dBackpropInputConfig]) {
    if (tf.getKernel(cfg.kernelName, 'wasm') != null) tf.unregisterKernel(cfg.kernelName, 'wasm');
    tf.registerKernel(cfg);
  }
  registered = true;
}

/** True when our kernels (not the package's) are the ones registered for 'wasm'. */
export function wasmConvKernelsRegistered(): boolean {
  return tf.getKernel('Conv2DBackpropFilter', 'wasm')?.kernelFunc === conv2dBackpropFilterConfig.kernelFunc &&
    tf.getKernel('Conv2DBackpropInput', 'wasm')?.kernelFunc === conv2dBackpropInputConfig.kernelFunc;
}
