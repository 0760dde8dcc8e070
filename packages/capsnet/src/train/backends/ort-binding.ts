// onnxruntime-node's native session, run synchronously: what train/backends/ort-conv.ts needs inside tfjs's
// synchronous kernels. onnxruntime-node's InferenceSession.run returns a promise, but the promise only wraps a
// synchronous call into the native binding (its dist/backend.js, 1.30 and 1.31), which this module exposes. The
// binding is not a public API: loadBinding checks its shape and throws a one-line error when it has changed.

import { createRequire } from 'node:module';
import type { Tensor as OrtTensor } from 'onnxruntime-node';

/** The native session of onnxruntime-node's binding: what its InferenceSession wraps. */
export interface NativeSession {
  loadModel(buffer: ArrayBufferLike, byteOffset: number, byteLength: number, options: object): unknown;
  run(feeds: Record<string, OrtTensor>, fetches: Record<string, OrtTensor | null>, options: object): Record<string, { data: unknown; dims: readonly number[] }>;
  dispose?(): void;
}

interface Binding {
  binding: { InferenceSession: new () => NativeSession };
  initOrt(): void;
}

/** onnxruntime-node's native binding (throws a one-line error where its exports changed). */
export function loadBinding(): Binding {
  const require = createRequire(import.meta.url);
  const loaded = require('onnxruntime-node/dist/binding.js') as Partial<Binding>;
  if (typeof loaded.initOrt !== 'function' || typeof loaded.binding?.InferenceSession !== 'function') {
    throw new Error("onnxruntime-node's dist/binding.js no longer exports { binding.InferenceSession, initOrt }");
  }
  return loaded as Binding;
}

/**
 * Session options for the training kernels: ORT's CPU provider on `threads` intra-op threads, one graph at a time.
 * Its pool must not spin after a run: that would take the cores from the wasm kernels that run next.
 */
export function cpuSessionOptions(threads: number): object {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
}
