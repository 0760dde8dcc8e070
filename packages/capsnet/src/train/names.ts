/**
 * Training's vocabularies, in a module with no imports so that the command line can offer them as choices without
 * loading TensorFlow.js.
 */

/** The network families `capsnet train --model` trains (train/family.ts). */
export const MODEL_NAMES = ['capsnet', 'baseline-cnn'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

/** TensorFlow.js backends (train/backends/backend.ts); `auto` picks the first that starts. */
export const BACKEND_NAMES = ['tensorflow', 'webgpu', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** Epochs a new run trains when none are given (`capsnet train --epochs`); a resumed run keeps its own total. */
export const DEFAULT_EPOCHS = 10;

/** Who runs the wasm backend's convolutions (CAPSNET_CONVOLUTIONS): onnxruntime-node (train/backends/ort-conv.ts) or wasm SIMD. */
export const CONVOLUTIONS_NAMES = ['onnxruntime', 'wasm'] as const;
export type ConvolutionsName = (typeof CONVOLUTIONS_NAMES)[number];
