/**
 * The runtime's one contract. Every provider (ORT-node cpu/cuda/webgpu, ORT-web wasm/webgpu) implements
 * `Classifier`; nothing outside runtime/providers knows which one runs. No TensorFlow.js, no training code.
 */

import type { ModelMetadata } from '@capsnet-onnx/core';

// The file format and the errors come from the core; an app needs only this package.
export {
  DeviceUnavailableError, InputError, ModelFormatError, IO_NAMES, METADATA_KEYS, type ModelMetadata, decoderPathFor, readModelMetadata,
} from '@capsnet-onnx/core';

export type DeviceName = 'cpu' | 'cuda' | 'webgpu' | 'wasm';
export type DeviceRequest = DeviceName | 'auto';

export interface Classification {
  label: number;
  labelName: string;
  /** Capsule lengths, one per class: the class scores. */
  lengths: Float32Array;
  /** numClasses x digitDim, row-major. */
  capsules: Float32Array;
  /** H*W*C in [0,1], decoder masked by the longest capsule. */
  reconstruction: Float32Array;
}

/**
 * Images: one image or a batch, row-major NHWC pixels; Float32Array in [0,1] or Uint8Array 0-255.
 * A batch is either an array of images or one flat array whose length is a multiple of H*W*C.
 */
export type ImageInput = Float32Array | Uint8Array | Array<Float32Array | Uint8Array>;

export interface Classifier {
  /** The provider that really runs the model (its session lists this one execution provider only). */
  readonly device: DeviceName;
  /** How the device was chosen, e.g. `auto chose cpu (cuda: ...)`, and which runtime runs it. */
  readonly deviceReport: string;
  readonly metadata: ModelMetadata;
  classify(images: ImageInput): Promise<Classification[]>;
  /** Masked capsules (numClasses x digitDim each, or a flat batch) -> reconstructions. */
  decode(capsules: Float32Array | Float32Array[]): Promise<Float32Array[]>;
  dispose(): Promise<void>;
}

export interface LoadOptions {
  device?: DeviceRequest;
  /** Largest batch accepted by classify/decode (default 256). */
  maxBatch?: number;
  /** Bytes or URL/path of the decoder file; by default `<model>.decoder.onnx` beside the model. */
  decoder?: Uint8Array | string;
  /**
   * GPU devices (cuda, webgpu): fail at load if ONNX Runtime would run any node on its CPU execution provider
   * instead (ORT's `session.disable_cpu_ep_fallback`), so no part of the model silently runs elsewhere. Default false.
   */
  noCpuFallback?: boolean;
  /** CPU threads: ORT-node cpu intra-op threads, or ORT-web wasm threads (a process-wide setting there). */
  threads?: number;
  log?: (message: string) => void;
}
