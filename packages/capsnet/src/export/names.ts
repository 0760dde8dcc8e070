/**
 * The export's vocabularies, in a module with no imports so that the command line can offer them as choices
 * without loading the exporter (protobufjs).
 */

/** Weight storage precisions (export/precision.ts). */
export const PRECISIONS = ['fp32', 'fp16', 'int8'] as const;
export type Precision = (typeof PRECISIONS)[number];

/** The model file `capsnet export RUN_DIR` writes into the run directory without -o (its decoder goes beside it). */
export function defaultModelFile(precision: Precision): string {
  return precision === 'fp32' ? 'model.onnx' : `model.${precision}.onnx`;
}

/** What the arithmetic of an export runs in: float32 throughout, or fp16's mixed precision (export/precision.ts). */
export const COMPUTE_PRECISIONS = ['fp32', 'fp16'] as const;
export type ComputePrecision = (typeof COMPUTE_PRECISIONS)[number];

/** Triton instance_group kinds (export/triton.ts): auto is KIND_AUTO (a GPU when there is one). */
export const INSTANCE_KINDS = ['auto', 'cpu', 'gpu'] as const;
export type InstanceKind = (typeof INSTANCE_KINDS)[number];
