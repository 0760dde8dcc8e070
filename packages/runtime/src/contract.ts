/**
 * The runtime's one contract. Every provider (ORT-node cpu/cuda/webgpu, ORT-web wasm/webgpu) implements
 * `Classifier`; nothing outside runtime/providers knows which one runs. No TensorFlow.js, no training code.
 */

import type { BlobLike, Drawable, ModelMetadata, Polarity } from '@capsnet-onnx/core';

// The file format and the errors come from the core; an app needs only this package.
export {
  ClassifierDisposedError,
  DeviceUnavailableError,
  InputError,
  ModelFileError,
  ModelFormatError,
  IO_NAMES,
  METADATA_KEYS,
  type ModelMetadata,
  decoderPathFor,
  readModelMetadata,
} from '@capsnet-onnx/core';

// Device names come from the device table (devices.ts).
export { DEVICE_TABLE, type DeviceName, type DeviceRequest, type DeviceRow, type DeviceRuntime, type DeviceHost } from './devices.ts';
import type { DeviceName, DeviceRequest } from './devices.ts';

export interface Classification {
  /** The class present in the image, or null: no ink, or no capsule reaches the presence threshold (see `reason`). */
  label: number | null;
  labelName: string | null;
  /** Why `label` is null, e.g. `no ink: the image is blank`. */
  reason?: string;
  /** The class of the longest capsule, whether or not it is present: the one the reconstruction shows. */
  longest: number;
  /** Capsule lengths, one per class: the class scores. */
  lengths: Float32Array;
  /** numClasses x digitDim, row-major. */
  capsules: Float32Array;
  /** H*W*C in [0,1], decoder masked by the longest capsule. */
  reconstruction: Float32Array;
  /**
   * With `{ coupling: true }`: c_ij, primary capsules x routed capsules (the classes, plus "none-of-the-above" when
   * the model routes to one), row-major; primary capsule i = (row * gridWidth + col) * primaryMaps + map.
   */
  coupling?: Float32Array;
}

/** Pixel values: Float32Array and number[] in [0, 1]; Uint8Array and Uint8ClampedArray 0-255. */
export type PixelArray = Float32Array | Uint8Array | Uint8ClampedArray | number[];

/** A picture of any size, like the DOM's ImageData (RGBA); it goes through the image pipeline (core/image.ts). */
export interface ImageDataLike {
  data: Uint8ClampedArray | Uint8Array | Float32Array | number[];
  width: number;
  height: number;
}

/** A batch already prepared for the model: N images of the model's H x W x C, row-major NHWC. */
export interface ShapedBatch {
  data: PixelArray;
  shape: readonly [number, number, number, number];
}

/**
 * What a page holds, read by the core's `RgbaImage.read` and then run through the same image pipeline as
 * `{ data, width, height }`: a Blob or File of PNG/JPEG bytes (Node's Blob too), and in a browser an
 * HTMLCanvasElement, OffscreenCanvas, HTMLImageElement or ImageBitmap.
 */
export type ImageSourceInput = BlobLike | Drawable;

/**
 * What `classify` takes, without guessing:
 *   - a Blob/File, a canvas, an `<img>` or an ImageBitmap (`ImageSourceInput`), or an array of them: read into
 *     RGBA pixels, then as `{ data, width, height }`;
 *   - `{ data, width, height }` (ImageData-like, any size, RGBA or gray/RGB by length), or an array of them:
 *     decoded pictures, run through the image pipeline (polarity, MNIST normalisation or resize);
 *   - `{ data, shape: [N, H, W, C] }`: a prepared batch of the model's size;
 *   - one prepared image of exactly H*W*C values (a PixelArray), or an array of prepared typed arrays.
 * A flat array of k*H*W*C values without a shape, a sparse array or nested number arrays are InputErrors that
 * name the form to use.
 */
export type ImageInput =
  | PixelArray
  | ImageDataLike
  | ShapedBatch
  | ImageSourceInput
  | Array<ImageDataLike | Float32Array | Uint8Array | Uint8ClampedArray | ImageSourceInput>;

export interface ClassifyOptions {
  /** How the ink relates to the ground in ImageData-like inputs (default: the load option, else `auto`). */
  polarity?: Polarity;
  /** Override the model's presence threshold (capsule length) for this call. */
  presenceThreshold?: number;
  /**
   * Also return each image's coupling coefficients c_ij (the model's `coupling` output: the last routing
   * iteration's softmax over the routed capsules, Sabour et al. 2017 procedure 1). Default false.
   * @throws ModelFormatError when the file has no `coupling` output (re-export it with `capsnet export`).
   */
  coupling?: boolean;
}

export interface Classifier {
  /** The provider that really runs the model (its session lists this one execution provider only). */
  readonly device: DeviceName;
  /** How the device was chosen, e.g. `auto chose cpu (cuda: ...)`, and which runtime runs it. */
  readonly deviceReport: string;
  readonly metadata: ModelMetadata;
  classify(images: ImageInput, options?: ClassifyOptions): Promise<Classification[]>;
  /** Masked capsules (numClasses x digitDim each, or a flat batch) -> reconstructions. */
  decode(capsules: Float32Array | Float32Array[]): Promise<Float32Array[]>;
  /** Release the model; classify() and decode() afterwards throw ClassifierDisposedError. Calling it again does nothing. */
  dispose(): Promise<void>;
}

/**
 * A model and its decoder by path (Node) or URL (browser), e.g. `pretrained('mnist-small')` from @capsnet-onnx/mnist:
 * `CapsNet.load(files)` loads `files.model` with `files.decoder` as its decoder (`options.decoder` still wins).
 * Why an object: a bundler (Vite, webpack) renames the files it emits (`model-3f2a.onnx`), so the decoder cannot be
 * found beside the model by name; the object carries both URLs.
 */
export interface ModelFiles {
  model: string;
  decoder?: string;
}

/** What `CapsNet.load` takes: a path or URL, the file's bytes, or {@link ModelFiles}. */
export type ModelSource = string | Uint8Array | ArrayBuffer | ModelFiles;

export interface LoadOptions {
  device?: DeviceRequest;
  /** Largest batch accepted by classify/decode (default 256). */
  maxBatch?: number;
  /**
   * Bytes or URL/path of the decoder file; by default `<model>.decoder.onnx` beside the model; `false`: load no
   * decoder (an app that only classifies: `classify` still returns reconstructions, `decode()` is refused).
   */
  decoder?: Uint8Array | ArrayBuffer | string | false;
  /**
   * GPU devices (cuda, webgpu): fail at load if ONNX Runtime would run any node on its CPU execution provider
   * instead (ORT's `session.disable_cpu_ep_fallback`), so no part of the model silently runs elsewhere. Default false.
   */
  noCpuFallback?: boolean;
  /** CPU threads: ORT-node cpu intra-op threads, or ORT-web wasm threads (a process-wide setting there). */
  threads?: number;
  log?: (message: string) => void;
  /** Default polarity for ImageData-like inputs (`auto`). */
  polarity?: Polarity;
  /** Override the model's presence threshold (default: its metadata, else 0.1). */
  presenceThreshold?: number;
}
