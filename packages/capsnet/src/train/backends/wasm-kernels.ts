// Convolution gradients for the tfjs wasm backend.
//
// tfjs-backend-wasm 4.22 has no Conv2DBackpropFilter kernel at all (so a conv net cannot be trained on it),
// and its Conv2DBackpropInput is a direct scalar loop nest (~9 s for PrimaryCaps at batch 32, 12x the forward
// conv). Both are replaced here. The arithmetic always runs in the wasm backend's own XNNPACK kernels (SIMD, and
// on its thread pool when the threaded binary is loaded, see train/backends/wasm-threads.ts); around them, the data is
// rearranged on the wasm heap by the SIMD kernels of train/backends/wasm-simd.ts (transposes, col2im, the channel-major
// copy of x), on the same threads, or by JS where it is a plain row copy:
//
//   filter gradient: a dilated convolution over the batch, see filterGradViaConv
//       dW[kh,kw,ci,co] = sum_{oh,ow,n} xp[ci, oh*sh+kh, ow*sw+kw, n] . dy[oh, ow, n, co]
//     (or, selectable, im2col + one GEMM: dW[(kh,kw,ci), co] = colT[(kh,kw,ci), m] . dy[m, co], m = n,oh,ow)
//   input gradient: one GEMM + col2im, in whichever orientation keeps XNNPACK's packed operand in cache
//       col[m, (kh,kw,ci)] = dy[m, co] . W^T[co, (kh,kw,ci)]     or     colT = W . dy^T
//
// Every GEMM is laid out so that neither operand is transposed and the batch is 1: the only case the wasm
// BatchMatMul sends to XNNPACK (anything else takes a scalar loop). The row-major [KH, KW, CI, CO] filter is
// already the [(kh,kw,ci), co] matrix, so W is used in place.
//
// Supported: NHWC, any strides, dilation 1, padding 'valid', 'same', a number or explicit NHWC pairs, and
// dimRoundingMode. NCHW throws (the wasm backend's forward conv does not support it either). Temporaries are
// allocated on the wasm heap with the backend's makeOutput and released with disposeData before returning.

import * as tf from '@tensorflow/tfjs-core';
import { backend_util } from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
// Importing the package registers its kernels, so ours are registered after (and can replace) them.
import '@tensorflow/tfjs-backend-wasm';
import { batchMatMulConfig, gemm, registerBatchMatMul, wasmKernel } from './wasm-matmul.ts';
import { heapF32, partRange, pointer, simdKernels, transposeOnHeap, type WasmBackendLike } from './wasm-simd.ts';

/** Upper bound on the floats in one im2col buffer; larger batches are processed in groups of images. */
let colBudgetFloats = 1 << 25; // 128 MiB

/** Sets the im2col buffer budget (in floats) and returns the previous one; tests use it to force grouping. */
export function setIm2colBudget(floats: number): number {
  const previous = colBudgetFloats;
  colBudgetFloats = Math.max(1, Math.floor(floats));
  return previous;
}

type Conv2DInfo = backend_util.Conv2DInfo;

/** The wasm backend's own (XNNPACK) Conv2D, NHWC, stride 1, 'valid', with dilation. */
function convDilated(backend: WasmBackendLike, x: TensorInfo, filter: TensorInfo, dilations: [number, number]): TensorInfo {
  return wasmKernel('Conv2D')({
    inputs: { x, filter },
    backend: backend as unknown as tf.KernelBackend,
    attrs: { strides: 1, pad: 'valid', dataFormat: 'NHWC', dilations },
  }) as TensorInfo;
}

/** For each filter column kw, the output columns ow whose input column ow*stride + kw - pad lies in [0, size). */
function validColumns(ci: Conv2DInfo): { lo: Int32Array; hi: Int32Array } {
  const { filterWidth: KW, strideWidth: sw, inWidth: W, outWidth: OW } = ci;
  const pl = ci.padInfo.left;
  const lo = new Int32Array(KW),
    hi = new Int32Array(KW);
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

function checkNHWC(dataFormat: string, kernel: string): void {
  if (dataFormat !== 'NHWC') {
    throw new Error(`${kernel} on wasm (train/wasm-kernels.ts) supports dataFormat 'NHWC' only, got '${dataFormat}'`);
  }
}

type PadAttr = 'valid' | 'same' | number | backend_util.ExplicitPadding;
type RoundingAttr = 'floor' | 'round' | 'ceil' | undefined;

/**
 * dW as a convolution: for each input channel ci (the "batch"), correlate the image plane (channels = the N
 * images) with dy (filter [OH, OW, N, CO], dilated by the stride):
 *   dW[kh, kw, ci, co] = sum_{oh, ow, n} xp[ci, oh*sh + kh, ow*sw + kw, n] . dy[oh, ow, n, co]
 * where xp is x zero-padded by the conv's top/left padding, cropped to (OH-1)*s + K, laid out [CI, Hc, Wc, N].
 * XNNPACK reads the taps in place (no im2col copy) and runs on its thread pool.
 */
function filterGradViaConv(backend: WasmBackendLike, ci: Conv2DInfo, x: TensorInfo, dy: TensorInfo): TensorInfo {
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outChannels: CO, outHeight: OH, outWidth: OW } = ci;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = ci;
  const pt = ci.padInfo.top,
    pl = ci.padInfo.left;
  const Hc = (OH - 1) * sh + KH,
    Wc = (OW - 1) * sw + KW;
  const xp = backend.makeOutput([C, Hc, Wc, N], 'float32');
  const dyp = backend.makeOutput([OH, OW, N, CO], 'float32');
  heapF32(backend, xp, C * Hc * Wc * N).fill(0);
  // (n, h, w, c) -> (c, h + pt, w + pl, n): one [N, C] -> [C, N] tile transpose per pixel, rows h shared by threads.
  const { threads } = simdKernels(backend);
  const [px, pxp] = [pointer(backend, x), pointer(backend, xp)];
  threads.run('nhwcToChwn', (part, parts) => [px, pxp, N, H, W, C, Hc, Wc, pt, pl, ...partRange(H, parts, part)]);
  {
    const g = heapF32(backend, dy, N * OH * OW * CO);
    const gp = heapF32(backend, dyp, OH * OW * N * CO);
    // (n, oh, ow, co) -> (oh, ow, n, co): whole CO rows move.
    for (let n = 0; n < N; n++) {
      for (let p = 0; p < OH * OW; p++) {
        const s = (n * OH * OW + p) * CO;
        gp.set(g.subarray(s, s + CO), (p * N + n) * CO);
      }
    }
  }
  const out = convDilated(backend, xp, dyp, [sh, sw]); // [C, KH, KW, CO]
  backend.disposeData(xp.dataId);
  backend.disposeData(dyp.dataId);
  const dw = backend.makeOutput([KH, KW, C, CO], 'float32');
  const o = heapF32(backend, out, C * KH * KW * CO),
    d = heapF32(backend, dw, KH * KW * C * CO);
  // (c, kh, kw, co) -> (kh, kw, c, co): whole CO rows move.
  for (let c = 0; c < C; c++) {
    for (let k = 0; k < KH * KW; k++) {
      const s = (c * KH * KW + k) * CO;
      d.set(o.subarray(s, s + CO), (k * C + c) * CO);
    }
  }
  backend.disposeData(out.dataId);
  return dw;
}

/**
 * dW as one GEMM over an im2col buffer: dW[(kh,kw,ci), co] = colT[(kh,kw,ci), m] . dy[m, co]. colT is written by the
 * wasm SIMD kernel im2colT (assembly/training-kernels.ts), its rows shared by the threads.
 */
function filterGradIm2col(backend: WasmBackendLike, ci: Conv2DInfo, x: TensorInfo, dy: TensorInfo): TensorInfo {
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outChannels: CO, outHeight: OH, outWidth: OW } = ci;
  const K = ci.filterHeight * ci.filterWidth * C;
  const outSize = K * CO;
  // Channel-major copy of x: xT[c][n][h][w].
  const P = N * H * W;
  const xT = backend.makeOutput([C, P], 'float32');
  transposeOnHeap(backend, pointer(backend, x), P, C, pointer(backend, xT));

  const group = imagesPerGroup(ci);
  let acc: TensorInfo | null = null;
  for (let n0 = 0; n0 < N; n0 += group) {
    const nb = Math.min(group, N - n0);
    const Mc = nb * OH * OW;
    const colT = backend.makeOutput([K, Mc], 'float32');
    const dyPart = dyRows(backend, dy, ci, n0, nb);
    const [pxT, pcol] = [pointer(backend, xT), pointer(backend, colT)];
    const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = ci;
    simdKernels(backend).threads.run('im2colT', (part, parts) => [
      pxT,
      pcol,
      N,
      H,
      W,
      C,
      OH,
      OW,
      KH,
      KW,
      sh,
      sw,
      ci.padInfo.top,
      ci.padInfo.left,
      n0,
      nb,
      ...partRange(K, parts, part),
    ]);
    const part = gemm(backend, colT, dyPart);
    backend.disposeData(colT.dataId);
    if (dyPart.dataId !== dy.dataId) backend.disposeData(dyPart.dataId);
    if (acc == null) {
      acc = part;
    } else {
      const a = heapF32(backend, acc, outSize),
        p = heapF32(backend, part, outSize);
      for (let i = 0; i < outSize; i++) a[i]! += p[i]!;
      backend.disposeData(part.dataId);
    }
  }
  backend.disposeData(xT.dataId);
  if (acc == null) {
    // Empty batch: the gradient is zero.
    acc = backend.makeOutput([K, CO], 'float32');
    heapF32(backend, acc, outSize).fill(0);
  }
  return acc;
}

/** dy's rows m = (n, oh, ow) for images n0 <= n < n0+nb as an [rows, CO] matrix (a view when it is all of dy). */
function dyRows(backend: WasmBackendLike, dy: TensorInfo, ci: Conv2DInfo, n0: number, nb: number): TensorInfo {
  const { batchSize: N, outChannels: CO, outHeight: OH, outWidth: OW } = ci;
  const rows = nb * OH * OW;
  if (nb === N) return { dataId: dy.dataId, shape: [rows, CO], dtype: 'float32' };
  const part = backend.makeOutput([rows, CO], 'float32');
  heapF32(backend, part, rows * CO).set(heapF32(backend, dy, N * OH * OW * CO).subarray(n0 * OH * OW * CO, (n0 + nb) * OH * OW * CO));
  return part;
}

export type FilterGradMethod = 'auto' | 'im2col' | 'conv';
export type InputGradMethod = 'auto' | 'rows' | 'columns';
const method: { filter: FilterGradMethod; input: InputGradMethod } = { filter: 'auto', input: 'auto' };

/**
 * Forces an algorithm (tests cover both of each); 'auto' picks by shape. Returns the previous setting.
 *   filter: 'conv' = XNNPACK dilated convolution (filterGradViaConv), 'im2col' = JS im2col + GEMM.
 *   input:  'rows' = dy . W^T then row-wise col2im, 'columns' = W . dy^T then column-wise col2im.
 */
export function setConvGradMethod(next: { filter?: FilterGradMethod; input?: InputGradMethod }): { filter: FilterGradMethod; input: InputGradMethod } {
  const previous = { ...method };
  if (next.filter) method.filter = next.filter;
  if (next.input) method.input = next.input;
  return previous;
}

/**
 * Filter taps (KH KW CI) up to which 'auto' takes im2col + GEMM for the filter gradient. Batch 32, 2 threads, CPU
 * time (the machine was shared): conv1 (81 taps) 48 ms with the JavaScript im2col vs 52 ms as a dilated convolution,
 * of which the GEMM is 28 ms: the wasm SIMD im2col (im2colT) leaves the GEMM. PrimaryCaps (20736 taps): convolution.
 */
const IM2COL_MAX_TAPS = 256;

function conv2dBackpropFilter(args: { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const attrs = args.attrs as unknown as {
    strides: [number, number] | number;
    pad: PadAttr;
    dataFormat: 'NHWC' | 'NCHW';
    dimRoundingMode?: RoundingAttr;
    filterShape: [number, number, number, number];
  };
  checkNHWC(attrs.dataFormat, 'Conv2DBackpropFilter');
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') throw new Error('Conv2DBackpropFilter: float32 only');
  const ci = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
  // With few taps (conv1: 81) the im2col matrix is small and the GEMM has a shape XNNPACK runs well, while the
  // dilated convolution has only KH x KW output pixels; with many (PrimaryCaps: 20736) the im2col matrix is huge
  // (95 MB at batch 32) and the convolution wins. Measured with fresh operands, as in training (XNNPACK caches
  // packed GEMM weights per tensor id, so re-running on the same dy flatters im2col): see IM2COL_MAX_TAPS.
  const taps = ci.filterHeight * ci.filterWidth * ci.inChannels;
  const useConv = ci.batchSize > 0 && method.filter !== 'im2col' && (method.filter === 'conv' || taps > IM2COL_MAX_TAPS);
  const dw = useConv ? filterGradViaConv(backend, ci, x, dy) : filterGradIm2col(backend, ci, x, dy);
  return { dataId: dw.dataId, shape: [...attrs.filterShape], dtype: 'float32' };
}

/**
 * dx via col[m, (kh,kw,ci)] = dy[m, co] . W^T[co, (kh,kw,ci)], then col2im in NHWC: for a fixed output pixel m and
 * filter row kh, the KW*CI block of col lands on KW*CI consecutive floats of dx (when the whole row is inside
 * the image), so the scatter-add is a straight vector add.
 */
function inputGradRows(backend: WasmBackendLike, ci: Conv2DInfo, dy: TensorInfo, filter: TensorInfo): TensorInfo {
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outChannels: CO, outHeight: OH, outWidth: OW } = ci;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = ci;
  const pt = ci.padInfo.top,
    pl = ci.padInfo.left;
  const K = KH * KW * C;
  const wT = backend.makeOutput([CO, K], 'float32');
  transposeOnHeap(backend, pointer(backend, filter), K, CO, pointer(backend, wT));
  const dx = backend.makeOutput([N, H, W, C], 'float32');
  heapF32(backend, dx, N * H * W * C).fill(0);
  const group = imagesPerGroup(ci);
  const { lo, hi } = validColumns(ci);
  const rowLen = KW * C;
  for (let n0 = 0; n0 < N; n0 += group) {
    const nb = Math.min(group, N - n0);
    const Mc = nb * OH * OW;
    const dyPart = dyRows(backend, dy, ci, n0, nb);
    const col = gemm(backend, dyPart, wT);
    if (dyPart.dataId !== dy.dataId) backend.disposeData(dyPart.dataId);
    const cv = heapF32(backend, col, Mc * K),
      d = heapF32(backend, dx, N * H * W * C);
    for (let nl = 0; nl < nb; nl++) {
      const n = n0 + nl;
      for (let oh = 0; oh < OH; oh++) {
        for (let ow = 0; ow < OW; ow++) {
          const m = (nl * OH + oh) * OW + ow;
          const iw0 = ow * sw - pl;
          for (let kh = 0; kh < KH; kh++) {
            const ih = oh * sh + kh - pt;
            if (ih < 0 || ih >= H) continue;
            const src = m * K + kh * rowLen;
            const dst = ((n * H + ih) * W + iw0) * C;
            if (iw0 >= 0 && iw0 + KW <= W) {
              for (let i = 0; i < rowLen; i++) d[dst + i] = d[dst + i]! + cv[src + i]!;
            } else {
              for (let kw = 0; kw < KW; kw++) {
                if (ow < lo[kw]! || ow >= hi[kw]!) continue;
                const s2 = src + kw * C,
                  d2 = dst + kw * C;
                for (let c = 0; c < C; c++) d[d2 + c] = d[d2 + c]! + cv[s2 + c]!;
              }
            }
          }
        }
      }
    }
    backend.disposeData(col.dataId);
  }
  backend.disposeData(wT.dataId);
  return dx;
}

/**
 * dx via colT[(kh,kw,ci), m] = W[(kh,kw,ci), co] . dyT[co, m], then column-wise col2im into a channel-major
 * dxT[ci][n][h][w] and one transpose to NHWC. XNNPACK packs the small dyT as the GEMM's "weights", so this is the
 * faster GEMM when W is large (PrimaryCaps: 5.3M floats would not stay in cache as packed weights).
 */
function inputGradColumns(backend: WasmBackendLike, ci: Conv2DInfo, dy: TensorInfo, filter: TensorInfo): TensorInfo {
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outChannels: CO, outHeight: OH, outWidth: OW } = ci;
  const K = ci.filterHeight * ci.filterWidth * C;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = ci;
  const pt = ci.padInfo.top,
    pl = ci.padInfo.left;
  const P = N * H * W;
  const dxT = backend.makeOutput([C, P], 'float32');
  heapF32(backend, dxT, C * P).fill(0);
  const w2d: TensorInfo = { dataId: filter.dataId, shape: [K, CO], dtype: 'float32' };
  const group = imagesPerGroup(ci);
  const { threads } = simdKernels(backend);
  for (let n0 = 0; n0 < N; n0 += group) {
    const nb = Math.min(group, N - n0);
    const Mc = nb * OH * OW;
    // dyT[co, m] for this group's rows m.
    const dyT = backend.makeOutput([CO, Mc], 'float32');
    transposeOnHeap(backend, pointer(backend, dy) + 4 * n0 * OH * OW * CO, Mc, CO, pointer(backend, dyT));
    const colT = gemm(backend, w2d, dyT);
    backend.disposeData(dyT.dataId);
    // col2im over channels, shared by threads.
    const [pc, pd] = [pointer(backend, colT), pointer(backend, dxT)];
    threads.run('col2imT', (part, parts) => [pc, pd, N, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, n0, nb, ...partRange(C, parts, part)]);
    backend.disposeData(colT.dataId);
  }
  const dx = backend.makeOutput([N, H, W, C], 'float32');
  transposeOnHeap(backend, pointer(backend, dxT), C, P, pointer(backend, dx));
  backend.disposeData(dxT.dataId);
  return dx;
}

/** Packed GEMM weights up to this many floats (4 MiB) stay cache-resident enough for the row form to win. */
const ROWS_MAX_WEIGHTS = 1 << 20;

function conv2dBackpropInput(args: { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
  const attrs = args.attrs as unknown as {
    strides: [number, number] | number;
    pad: PadAttr;
    dataFormat: 'NHWC' | 'NCHW';
    dimRoundingMode?: RoundingAttr;
    inputShape: [number, number, number, number];
  };
  checkNHWC(attrs.dataFormat, 'Conv2DBackpropInput');
  if (dy.dtype !== 'float32' || filter.dtype !== 'float32') throw new Error('Conv2DBackpropInput: float32 only');
  const ci = backend_util.computeConv2DInfo(
    attrs.inputShape,
    filter.shape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
  // The row form streams W^T (K*CO floats) as XNNPACK's packed weights once per block of output rows, so it wins
  // while that fits in cache (batch 32, 2 threads: conv1, 21K floats, 31 vs 80 ms; small preset's PrimaryCaps,
  // 331K floats, 65 vs 86 ms single-threaded) and loses beyond (PrimaryCaps, 5.3M floats: 697 vs 561 ms).
  const weights = ci.filterHeight * ci.filterWidth * ci.inChannels * ci.outChannels;
  const useRows = method.input === 'rows' || (method.input === 'auto' && weights <= ROWS_MAX_WEIGHTS);
  return useRows ? inputGradRows(backend, ci, dy, filter) : inputGradColumns(backend, ci, dy, filter);
}

// ----------------------------------------------------------------------------------- registration

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
  // BatchMatMul: the transposing wrapper in front of the stock kernel (wasm-matmul.ts).
  registerBatchMatMul();
  registered = true;
}

/** True when our kernels (not the package's) are the ones registered for 'wasm'. */
export function wasmConvKernelsRegistered(): boolean {
  return (
    tf.getKernel('Conv2DBackpropFilter', 'wasm')?.kernelFunc === conv2dBackpropFilterConfig.kernelFunc &&
    tf.getKernel('Conv2DBackpropInput', 'wasm')?.kernelFunc === conv2dBackpropInputConfig.kernelFunc &&
    tf.getKernel('BatchMatMul', 'wasm')?.kernelFunc === batchMatMulConfig.kernelFunc
  );
}
