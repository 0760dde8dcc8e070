// Two of tfjs-backend-wasm's own kernels, shared between the kernel threads where the data is large.
//
// tfjs-backend-wasm 4.22 runs Sum and Multiply on the calling thread alone, and its Sum over leading axes first
// transposes the whole input. In a CapsNet step that is conv1's bias gradient (dy [N, 20, 20, 256] summed to [256],
// 65 ms at batch 128, 4% of the step, one core idle) and its ReLU gradient (dy * step(x), 30 ms). Here those two
// cases run as one pass of assembly/training-kernels.ts's columnSums / multiply, split over the threads of
// train/backends/wasm-simd.ts; every other case goes to the kernel this replaces. test/e2e/wasm-capsule-kernels.test.ts
// checks both against the cpu backend.

import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { partRange, pointer, simdKernels, type WasmBackendLike } from './wasm-simd.ts';

/** Below this many values the replaced kernel runs: waking a helper thread costs more than the pass. */
const MIN_VALUES = 1 << 16;
/** columnSums works sixteen columns at a time; parts get whole blocks of them. */
const COLUMN_BLOCK = 16;

/** How many calls took each path since the process started (the tests check the threaded one is taken). */
export const elementwiseCalls = { threaded: 0, replaced: 0 };

type KernelArgs = { inputs: NamedTensorInfoMap; backend: unknown; attrs?: NamedAttrMap };
const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** The number of leading axes `axis` names when it names exactly axes 0..k-1 of a rank-`rank` tensor (k < rank), else 0. */
export function leadingAxes(axis: number | number[] | null | undefined, rank: number): number {
  if (axis == null) return 0;
  const axes = [...new Set((Array.isArray(axis) ? axis : [axis]).map((a) => (a < 0 ? a + rank : a)))].sort((a, b) => a - b);
  return axes.length < rank && axes.every((a, i) => a === i) ? axes.length : 0;
}

function sum(previous: KernelFunc): KernelFunc {
  return ((args: KernelArgs) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[] | null; keepDims: boolean };
    const k = leadingAxes(axis, x.shape.length);
    if (x.dtype !== 'float32' || k === 0 || size(x.shape) < MIN_VALUES) {
      elementwiseCalls.replaced++;
      return previous(args as never);
    }
    elementwiseCalls.threaded++;
    const be = args.backend as WasmBackendLike;
    const rows = size(x.shape.slice(0, k));
    const cols = size(x.shape.slice(k));
    const out = be.makeOutput(keepDims ? [...x.shape.map((d, i) => (i < k ? 1 : d))] : x.shape.slice(k), 'float32');
    const [src, dst] = [pointer(be, x), pointer(be, out)];
    const blocks = Math.ceil(cols / COLUMN_BLOCK);
    simdKernels(be).threads.run('columnSums', (part, parts) => {
      const [b0, b1] = partRange(blocks, parts, part);
      return [src, dst, rows, cols, b0 * COLUMN_BLOCK, Math.min(cols, b1 * COLUMN_BLOCK)];
    });
    return out;
  }) as unknown as KernelFunc;
}

function multiply(previous: KernelFunc): KernelFunc {
  return ((args: KernelArgs) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const same = a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
    if (a.dtype !== 'float32' || b.dtype !== 'float32' || !same || size(a.shape) < MIN_VALUES) {
      elementwiseCalls.replaced++;
      return previous(args as never);
    }
    elementwiseCalls.threaded++;
    const be = args.backend as WasmBackendLike;
    const out = be.makeOutput([...a.shape], 'float32');
    const ptrs = [pointer(be, a), pointer(be, b), pointer(be, out)];
    const n = size(a.shape);
    simdKernels(be).threads.run('multiply', (part, parts) => {
      const [k0, k1] = partRange(n, parts, part);
      return [...ptrs.map((p) => p + 4 * k0), k1 - k0];
    });
    return out;
  }) as unknown as KernelFunc;
}

const REPLACEMENTS: Record<string, (previous: KernelFunc) => KernelFunc> = { Sum: sum, Multiply: multiply };
let registered = false;

/** Replaces the wasm backend's Sum and Multiply with the wrappers above (which fall back to them). Idempotent. */
export function registerWasmElementwiseKernels(): void {
  if (registered) return;
  for (const [kernelName, wrap] of Object.entries(REPLACEMENTS)) {
    const kernel = tf.getKernel(kernelName, 'wasm');
    if (kernel == null) throw new Error(`train/backends/wasm-elementwise.ts: the wasm backend has no ${kernelName} kernel to replace`);
    tf.unregisterKernel(kernelName, 'wasm');
    // Keep setupFunc: it binds the replaced kernel's wasm function when the backend starts.
    tf.registerKernel({ ...kernel, kernelFunc: wrap(kernel.kernelFunc) });
  }
  registered = true;
}
