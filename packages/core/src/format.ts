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
  dataset: string;
  testAccuracy: number | null;
  checkpointSha256: string;
  exportedAt: string;
  /** How the weights are stored: fp32, fp16 or int8 (inputs, outputs and compute are float32 at every precision). */
  precision: string;
  producer: string;
  producerVersion: string;
  /** The full training config, as JSON-decoded from `capsnet.config`. */
  config: Record<string, unknown>;
}

/** metadata_props keys written by export/ and read by runtime/. */
export const METADATA_KEYS = {
  config: 'capsnet.config',
  routingIterations: 'capsnet.routing_iterations',
  classLabels: 'capsnet.class_labels',
  dataset: 'capsnet.dataset',
  testAccuracy: 'capsnet.test_accuracy',
  checkpointSha256: 'capsnet.checkpoint_sha256',
  exportedAt: 'capsnet.exported_at',
  /** Weight storage precision: fp32, fp16 or int8 (absent in older files: fp32). */
  precision: 'capsnet.precision',
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

/** The decoder file beside a model: `<dir>/model.onnx` -> `<dir>/model.decoder.onnx` (any other name gains the suffix). */
export function decoderPathFor(modelPath: string): string {
  return modelPath.replace(/(\.onnx)?$/i, '.decoder.onnx');
}
