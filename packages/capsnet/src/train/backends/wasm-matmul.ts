// Matrix products on the tfjs wasm backend: the backend's own XNNPACK BatchMatMul as a plain GEMM for the
// convolution gradients (train/backends/wasm-kernels.ts), and a BatchMatMul wrapper that keeps transposed
// products on XNNPACK. registerWasmConvKernels (wasm-kernels.ts) installs the wrapper.

import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import { pointer, transposeOnHeap, type WasmBackendLike } from './wasm-simd.ts';

/** A kernel the wasm backend registered (its XNNPACK implementation). */
export function wasmKernel(name: string): KernelFunc {
  const k = tf.getKernel(name, 'wasm');
  if (k == null) throw new Error(`wasm-kernels: the wasm backend has no ${name} kernel`);
  return k.kernelFunc;
}

/** The wasm backend's own BatchMatMul: c[rows, cols] = a[rows, inner] . b[inner, cols], via XNNPACK. */
export function gemm(backend: WasmBackendLike, a: TensorInfo, b: TensorInfo): TensorInfo {
  return wasmKernel('BatchMatMul')({
    inputs: { a, b },
    backend: backend as unknown as tf.KernelBackend,
    attrs: { transposeA: false, transposeB: false },
  }) as TensorInfo;
}

let stockBatchMatMul: KernelFunc | null = null;

/** Below this many multiply-adds the transposing copies are not worth it; the stock kernel runs as is. */
const MATMUL_MIN_WORK = 1 << 16;

/**
 * The wasm BatchMatMul sends a product to XNNPACK only when neither operand is transposed; with transposeA or
 * transposeB it falls back to a scalar loop (~0.3 GFLOP/s), which is what every dense layer's gradient asks for
 * (dW = x^T . dy, dx = dy . W^T: ~0.2 s a step in the paper's decoder). For unbatched products this wrapper
 * transposes the operand in JS and calls the stock kernel untransposed. Everything else goes straight through.
 */
function batchMatMul(args: { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap }): TensorInfo {
  const stock = stockBatchMatMul! as unknown as (a: typeof args) => TensorInfo | TensorInfo[];
  const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
  const { transposeA, transposeB } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean };
  const batchA = a.shape.slice(0, -2).reduce((x, y) => x * y, 1),
    batchB = b.shape.slice(0, -2).reduce((x, y) => x * y, 1);
  if (
    (!transposeA && !transposeB) ||
    a.dtype !== 'float32' ||
    b.dtype !== 'float32' ||
    batchA !== 1 ||
    batchB !== 1 ||
    a.shape.length < 2 ||
    b.shape.length < 2
  ) {
    return stock(args) as TensorInfo;
  }
  const [ar, ac] = a.shape.slice(-2) as [number, number];
  const [br, bc] = b.shape.slice(-2) as [number, number];
  const [m, k] = transposeA ? [ac, ar] : [ar, ac];
  const n = transposeB ? br : bc;
  if ((transposeB ? bc : br) !== k || m * k * n < MATMUL_MIN_WORK) return stock(args) as TensorInfo;
  const backend = args.backend as WasmBackendLike;
  let a2: TensorInfo = { dataId: a.dataId, shape: [m, k], dtype: 'float32' };
  let b2: TensorInfo = { dataId: b.dataId, shape: [k, n], dtype: 'float32' };
  if (transposeA) {
    a2 = backend.makeOutput([m, k], 'float32');
    transposeOnHeap(backend, pointer(backend, a), ar, ac, pointer(backend, a2));
  }
  if (transposeB) {
    b2 = backend.makeOutput([k, n], 'float32');
    transposeOnHeap(backend, pointer(backend, b), br, bc, pointer(backend, b2));
  }
  const out = stock({ inputs: { a: a2, b: b2 }, backend: args.backend, attrs: { transposeA: false, transposeB: false } }) as TensorInfo;
  if (a2.dataId !== a.dataId) backend.disposeData(a2.dataId);
  if (b2.dataId !== b.dataId) backend.disposeData(b2.dataId);
  // Same output rank as the stock kernel: the broadcast batch dims (all 1 here), then [m, n].
  const batchDims = a.shape.length >= b.shape.length ? a.shape.slice(0, -2) : b.shape.slice(0, -2);
  return { dataId: out.dataId, shape: [...batchDims.map(() => 1), m, n], dtype: 'float32' };
}

export const batchMatMulConfig: KernelConfig = {
  kernelName: 'BatchMatMul',
  backendName: 'wasm',
  kernelFunc: batchMatMul as unknown as KernelFunc,
};

/**
 * Puts the transposing wrapper in front of the stock BatchMatMul for 'wasm', keeping the stock kernel's setupFunc
 * (which binds the wasm function when the backend starts). Call once, after tfjs-backend-wasm is imported.
 */
export function registerBatchMatMul(): void {
  const stock = tf.getKernel('BatchMatMul', 'wasm');
  if (stock == null) throw new Error('wasm-kernels: tfjs-backend-wasm registered no BatchMatMul kernel');
  stockBatchMatMul = stock.kernelFunc;
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({ ...batchMatMulConfig, setupFunc: stock.setupFunc, disposeFunc: stock.disposeFunc });
}
