/**
 * The weights of a CapsNet file `capsnet export` wrote, read back in TensorFlow.js's layouts: what the parity
 * reference needs where no checkpoint ships (the pretrained models of @capsnet-onnx/mnist). The exporter names each
 * initializer after its weight (`conv1/kernel`, `digit/W`, ...) and changes one layout, the convolution kernels'
 * (HWIO -> OIHW, capsnet-graph.ts); this undoes that. Only fp32 files: an fp16 or int8 file's weights are rounded.
 */
import { type ModelMetadata, paramShapes, readModelMetadata } from '@capsnet-onnx/core';
import { oihwToHwio } from './capsnet-graph.ts';
import { decodeModelChecked } from './inspect.ts';
import type { TensorProto } from './onnx-schema.ts';

const FLOAT = 1;
/** The weights stored OIHW in the file (capsnet-graph.ts transposes them once, for ONNX's Conv). */
const CONV_KERNELS = new Set(['conv1/kernel', 'primary/kernel']);

export interface ExportedWeights {
  metadata: ModelMetadata;
  /** Every weight of paramShapes(metadata.config), in tfjs's layouts (the checkpoint's). */
  weights: Record<string, Float32Array>;
}

/**
 * @param bytes an fp32 CapsNet model file from `capsnet export` (not an ensemble, not the baseline CNN).
 * @param source its name, for errors.
 * @throws Error (one line, with the fix) for a file that is not ONNX, not fp32, or lacks a weight or has it in another shape.
 */
export function weightsFromModel(bytes: Uint8Array, source: string): ExportedWeights {
  const model = decodeModelChecked(bytes, source);
  const metadata = readModelMetadata(bytes);
  if (metadata.precision !== 'fp32') {
    throw new Error(`${source} stores ${metadata.precision} weights (rounded): read the weights from the fp32 file of the same export`);
  }
  const initializers = new Map((model.graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const weights: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(paramShapes(metadata.config))) {
    const tensor = initializers.get(name);
    if (!tensor) throw new Error(`${source} has no initializer ${name}: it is not a CapsNet file from \`capsnet export\` (an ensemble or another model?)`);
    const values = floats(tensor, source);
    const size = shape.reduce((a, b) => a * b, 1);
    if (values.length !== size) throw new Error(`${source}: ${name} holds ${values.length} values, the config's shape [${shape.join(', ')}] ${size}`);
    weights[name] = CONV_KERNELS.has(name) ? oihwToHwio(values, shape) : values;
  }
  return { metadata, weights };
}

/** A float32 initializer's values (raw little-endian bytes, or float_data). */
function floats(tensor: TensorProto, source: string): Float32Array {
  if (tensor.data_type !== FLOAT) throw new Error(`${source}: ${tensor.name} is not float32 (ONNX data type ${tensor.data_type})`);
  if (tensor.raw_data?.length) {
    const raw = tensor.raw_data;
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    return Float32Array.from({ length: raw.byteLength / 4 }, (_, i) => view.getFloat32(4 * i, true));
  }
  return Float32Array.from(tensor.float_data ?? []);
}
