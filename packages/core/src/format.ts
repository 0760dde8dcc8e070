import type { CapsNetConfig } from './config.ts';
import type { Preprocessing } from './image.ts';

/**
 * The CapsNet ONNX file format shared by the exporter and every runtime: graph I/O names, metadata_props keys,
 * the parsed metadata, and where a model's decoder file lives. Pure: no ONNX Runtime, no TensorFlow.js.
 */

/** What the exporter writes into the ONNX file's metadata_props (keys below), parsed. */
export interface ModelMetadata {
  inputHeight: number;
  inputWidth: number;
  inputChannels: number;
  numClasses: number;
  digitDim: number;
  routingIterations: number;
  classLabels: string[];
  /**
   * The training data's name (`capsnet.dataset`): a built-in set (`mnist-sample`), or for directory data the
   * scheme and the directory's base name only (`idx:mnist-full`; see publicDataName). Files exported before
   * this rule may hold the full spec.
   */
  dataset: string;
  /**
   * SHA-256 (hex) of each data file the training run read, as it is on disk (what `sha256sum` prints), keyed by
   * file name without its directory (`capsnet.dataset_files`): provenance without the path. Empty when not
   * recorded (the embedded MNIST sample, older exports).
   */
  datasetFiles: Record<string, string>;
  testAccuracy: number | null;
  checkpointSha256: string;
  /** SHA-256 (hex) of the decoder file exported with this model; '' for older exports. Loaders refuse another decoder. */
  decoderSha256: string;
  exportedAt: string;
  /** How the weights are stored: fp32, fp16 or int8 (inputs and outputs are float32 at every precision). */
  precision: string;
  /**
   * What the graph computes in (`capsnet.compute_precision`): fp32, or fp16 (an fp16 export's mixed precision:
   * convolutions, u_hat and the decoder's dense layers in half, squash and routing in float32). 'fp32' for files
   * without the key (exports before it existed computed in float32 at every precision).
   */
  computePrecision: string;
  producer: string;
  producerVersion: string;
  /**
   * The full training config, JSON-decoded from `capsnet.config` and checked as training checks it; files written
   * before `routing` existed have their `routingIterations` read as routing { algorithm: 'dynamic', iterations }.
   */
  config: CapsNetConfig;
  /**
   * How images are prepared for this model (`capsnet.preprocessing`); files exported without that record get
   * image.ts's `defaultPreprocessing` (MNIST's normalisation for one-channel MNIST-like models).
   */
  preprocessing: Preprocessing;
  /** True when `preprocessing` came from the file, false when it is the default. */
  preprocessingRecorded: boolean;
  /**
   * A class is present when its capsule length reaches this (`capsnet.presence_threshold`; default the margin
   * loss's m-, 0.1); when no capsule does, `classify` answers `label: null`.
   */
  presenceThreshold: number;
}

/** metadata_props keys written by export/ and read by runtime/. */
/** The producer_name `capsnet export` writes into every model.onnx (ModelProto field 2). */
export const PRODUCER_NAME = 'capsnet-onnx';

export const METADATA_KEYS = {
  config: 'capsnet.config',
  routingIterations: 'capsnet.routing_iterations',
  classLabels: 'capsnet.class_labels',
  dataset: 'capsnet.dataset',
  /** JSON { "<file name>": "<sha256 hex>" } of the training data's files (no directories). */
  datasetFiles: 'capsnet.dataset_files',
  testAccuracy: 'capsnet.test_accuracy',
  checkpointSha256: 'capsnet.checkpoint_sha256',
  decoderSha256: 'capsnet.decoder_sha256',
  exportedAt: 'capsnet.exported_at',
  preprocessing: 'capsnet.preprocessing',
  presenceThreshold: 'capsnet.presence_threshold',
  /** Weight storage precision: fp32, fp16 or int8 (absent in older files: fp32). */
  precision: 'capsnet.precision',
  /** Compute precision: fp32 or fp16 (absent in older files: fp32). */
  computePrecision: 'capsnet.compute_precision',
  /** Present on `capsnet ensemble` files: JSON { members, combine, checkpoints, testAccuracies }. */
  ensemble: 'capsnet.ensemble',
} as const;

/** Graph I/O names shared by the exporter and every runtime. */
export const IO_NAMES = {
  images: 'images',
  lengths: 'lengths',
  capsules: 'capsules',
  reconstruction: 'reconstruction',
  coupling: 'coupling',
  maskedCapsules: 'masked_capsules',
} as const;

/**
 * A data spec as a shipped file may name it: built-in sets unchanged (`mnist-sample`, `fashion-mnist`), and
 * `scheme:DIR` reduced to the scheme and the directory's base name (`idx:/home/ann/data/mnist-full/` ->
 * `idx:mnist-full`, `emnist-letters:C:\data\emnist` -> `emnist-letters:emnist`), so no export, Triton repository
 * or server response carries a path of the machine that trained it. Pure string work (no file system).
 */
export function publicDataName(spec: string): string {
  const match = /^([a-z0-9]+(?:-[a-z0-9]+)?):(.*)$/i.exec(spec);
  if (!match || /^[a-z]$/i.test(match[1]!)) return spec.includes('/') || spec.includes('\\') ? lastPathPart(spec) : spec;
  return `${match[1]}:${lastPathPart(match[2]!)}`;
}

/** The last non-empty part of a path ('' for a root or an empty path, '.' parts skipped). */
function lastPathPart(path: string): string {
  const parts = path.split(/[/\\]+/).filter((p) => p !== '' && p !== '.');
  return parts.at(-1) ?? '';
}

/** The decoder file beside a model: `<dir>/model.onnx` -> `<dir>/model.decoder.onnx` (any other name gains the suffix). */
export function decoderPathFor(modelPath: string): string {
  return modelPath.replace(/(\.onnx)?$/i, '.decoder.onnx');
}

/** decoderPathFor for a URL: the query stays at the end (`/m/model.onnx?v=2` -> `/m/model.decoder.onnx?v=2`). */
export function decoderUrlFor(modelUrl: string): string {
  const query = modelUrl.indexOf('?');
  return query < 0 ? decoderPathFor(modelUrl) : decoderPathFor(modelUrl.slice(0, query)) + modelUrl.slice(query);
}
