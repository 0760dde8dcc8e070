/**
 * Precisions of an export: how the large weight tensors are stored (the conv kernels, the digit-capsule
 * transforms W and the decoder's dense kernels) and, for fp16, which ops compute in half precision. Every graph
 * input and output is float32 at every precision, so a runtime or client does not need to know which file it was
 * given.
 *
 * - fp32: the weights as trained; float32 compute.
 * - fp16: each weight stored as IEEE half (FLOAT16 initializer, round to nearest even). Half the bytes. Two
 *   compute precisions (`capsnet.compute_precision`):
 *   - compute fp16 (the default): mixed precision. The bulk of the arithmetic takes float16 inputs and the
 *     float16 weights directly: conv1 (Conv, bias, ReLU), the PrimaryCaps Conv, the u_hat MatMul of eq. 2 and the
 *     decoder's dense layers (MatMul, bias, ReLU). Everything numerically delicate stays float32, behind a Cast at
 *     each boundary: the per-image standardisation, the squash (its epsilon 1e-7 under a square root is below
 *     fp16's smallest normal, 6.1e-5, so a zero capsule would give 0/0 = NaN), the routing (softmax, the sums of
 *     up to 1,152 coupling-weighted terms and the agreements, whose rounding would compound over iterations), the
 *     capsule lengths, the longest-capsule mask and the decoder's final sigmoid. Biases of half ops are FLOAT16
 *     too (an ONNX Conv/Add takes one type). CUDA and WebGPU adapters with the shader-f16 feature run the half ops
 *     in half. ONNX Runtime's CPU and wasm providers lack most fp16 kernels: ORT runs those ops in float32 behind
 *     Casts it inserts itself, and at its full optimisation level (the runtime's) folds the weights' Casts and
 *     drops the fp32 -> fp16 -> fp32 pairs between ops, so there the result is fp16 weights with float32 maths
 *     (with optimisations off the activations are rounded to fp16 between ops: the tests check both). WebGPU
 *     adapters without shader-f16 cannot run the file at all (the runtime says so and names the fix below).
 *   - compute fp32 (`capsnet export --precision fp16 --compute fp32`): each weight is widened by one Cast node and
 *     the whole graph computes in float32, for providers without fp16 (WebGPU adapters lacking shader-f16).
 * - int8: symmetric per-channel weight quantisation in the QDQ form: an INT8 initializer, a float scale per output
 *   channel (zero point 0) and one DequantizeLinear (opset 13 per-axis) in front of the float Conv/MatMul. ONNX
 *   Runtime's integer ops (ConvInteger, MatMulInteger, QLinearConv) need quantised activations and have CPU kernels
 *   only; DequantizeLinear has kernels on the CPU, wasm and WebGPU providers, so one int8 file runs everywhere.
 *   A quarter of the bytes; float32 compute.
 */
import { COMPUTE_PRECISIONS, type ComputePrecision, type Precision } from './names.ts';
import { DataType, type TensorProto } from './onnx-schema.ts';

export { COMPUTE_PRECISIONS, type ComputePrecision, PRECISIONS, type Precision } from './names.ts';

/**
 * The compute precision of an export with weights at `precision`: `compute` when given (fp16 weights only),
 * else fp16 for fp16 weights and fp32 otherwise. Throws a one-line error for a compute precision the weights
 * cannot have (fp32 weights compute in float32; int8 weights are dequantised to float32).
 */
export function computePrecisionFor(precision: Precision, compute?: string): ComputePrecision {
  if (compute === undefined) return precision === 'fp16' ? 'fp16' : 'fp32';
  if (!(COMPUTE_PRECISIONS as readonly string[]).includes(compute)) {
    throw new Error(`unknown compute precision "${compute}": choose one of ${COMPUTE_PRECISIONS.join(', ')}`);
  }
  if (precision !== 'fp16') {
    throw new Error(`--compute applies to --precision fp16 only (${precision} weights always compute in float32): drop --compute, or add --precision fp16`);
  }
  return compute as ComputePrecision;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * IEEE 754 binary32 -> binary16 bits, rounding to nearest even, with subnormals, overflow to infinity and NaN
 * kept (as a quiet NaN).
 */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  // Unbiased exponent e: half's normal range is e in [-14, 15].
  const e = exponent - 127;
  if (e > 15) return sign | 0x7c00;
  if (e >= -14) {
    // Normal half: keep 10 mantissa bits, round the 13 dropped ones to nearest even (a carry may bump the exponent).
    let half = ((e + 15) << 10) | (mantissa >>> 13);
    const rest = mantissa & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++;
    return sign | half;
  }
  if (e < -25) return sign; // below half the smallest subnormal: rounds to zero
  // Subnormal half, in units of 2^-24: the value is M * 2^(e-23) with M the 24-bit significand (leading one made
  // explicit), so the half's mantissa is M >> (-e - 1), rounded on the dropped bits.
  mantissa |= 0x800000;
  const dropped = -e - 1;
  let half = mantissa >>> dropped;
  const rest = mantissa & ((1 << dropped) - 1);
  const halfway = 1 << (dropped - 1);
  if (rest > halfway || (rest === halfway && half & 1)) half++;
  return sign | half;
}

/** binary16 bits -> the number they encode (exact). */
export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? Number.NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function littleEndian16(values: Uint16Array): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setUint16(2 * i, v, true));
  return out;
}

/** A FLOAT16 initializer holding `data` rounded to half precision. */
export function float16Tensor(name: string, dims: number[], data: Float32Array): TensorProto {
  const bits = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) bits[i] = float32ToFloat16Bits(data[i]!);
  return { name, dims: [...dims], data_type: DataType.FLOAT16, raw_data: littleEndian16(bits) };
}

export interface Int8Quantized {
  /** Quantised values q in [-127, 127], same layout as the input. */
  values: Int8Array;
  /** One scale per index of `axis`: w ~= q * scale. */
  scales: Float32Array;
}

/**
 * Symmetric per-channel int8: for each index c along `axis`, scale_c = max|w| / 127 (1 for an all-zero channel)
 * and q = round(w / scale_c), so the largest weight of every channel is represented exactly and the error of any
 * weight is at most scale_c / 2. -128 is never used, which keeps the range symmetric.
 */
export function quantizeInt8PerChannel(data: Float32Array, dims: number[], axis: number): Int8Quantized {
  if (axis < 0 || axis >= dims.length) throw new Error(`quantisation axis ${axis} is outside a ${dims.length}-D tensor`);
  const channels = dims[axis]!;
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channelOf = (i: number) => Math.floor(i / inner) % channels;
  const maxAbs = new Float32Array(channels);
  for (let i = 0; i < data.length; i++) {
    const c = channelOf(i);
    const a = Math.abs(data[i]!);
    if (a > maxAbs[c]!) maxAbs[c] = a;
  }
  const scales = maxAbs.map((m) => (m > 0 ? m / 127 : 1));
  const values = new Int8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    values[i] = Math.max(-127, Math.min(127, Math.round(data[i]! / scales[channelOf(i)]!)));
  }
  return { values, scales };
}

export function int8Tensor(name: string, dims: number[], values: Int8Array): TensorProto {
  return { name, dims: [...dims], data_type: DataType.INT8, raw_data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}
