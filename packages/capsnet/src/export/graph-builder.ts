/**
 * A small typed ONNX graph builder. Each op method appends one NodeProto and returns the name of its output, so
 * code that builds a graph reads as the list of ops it emits:
 *
 *   const h = g.relu(g.conv(x, w, b, { strides: [1, 1] }));
 *
 * Ops follow their opset-17 signatures (ReduceSum and Unsqueeze take axes as an int64 input; ReduceMax takes
 * them as an attribute). Int64 tensors only ever appear as constant shape/axes initializers.
 */
import {
  AttributeType,
  DataType,
  type AttributeProto,
  type GraphProto,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './onnx-schema.ts';
import { type Precision, float16Tensor, int8Tensor, quantizeInt8PerChannel } from './precision.ts';

export const OPSET_VERSION = 17;
/** IR version 8 goes with opset 17 (onnx 1.12 / 1.13). */
export const IR_VERSION = 8;

/** A dimension: a fixed size, or a symbolic name such as the batch dimension 'N'. */
export type Dim = number | string;

export type AttrValue = number | string | number[] | { float: number } | { floats: number[] } | { int: number } | { ints: number[] };

export interface OpOptions {
  /** Name for the op's output value (e.g. a graph output's name); default: derived from the node name. */
  output?: string;
  /** Node name suffix; default: the op type. */
  name?: string;
}

function isLittleEndian(): boolean {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}

/** Little-endian bytes of a typed array (a view, with no copy, on little-endian machines). */
function leBytes(data: Float32Array | BigInt64Array): Uint8Array {
  if (isLittleEndian()) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.byteLength);
  const view = new DataView(out.buffer);
  if (data instanceof Float32Array) data.forEach((v, i) => view.setFloat32(4 * i, v, true));
  else data.forEach((v, i) => view.setBigInt64(8 * i, v, true));
  return out;
}

export function floatTensor(name: string, dims: number[], data: Float32Array): TensorProto {
  const size = dims.reduce((a, b) => a * b, 1);
  if (data.length !== size) throw new Error(`tensor ${name}: ${data.length} values for shape [${dims}] (${size})`);
  return { name, dims: [...dims], data_type: DataType.FLOAT, raw_data: leBytes(data) };
}

export function int64Tensor(name: string, dims: number[], values: number[]): TensorProto {
  return { name, dims: [...dims], data_type: DataType.INT64, raw_data: leBytes(BigInt64Array.from(values, (v) => BigInt(v))) };
}

function makeAttribute(name: string, value: AttrValue): AttributeProto {
  if (typeof value === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) {
    if (!value.every(Number.isInteger)) throw new Error(`attribute ${name}: use { floats: [...] } for float lists`);
    return { name, type: AttributeType.INTS, ints: [...value] };
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: AttributeType.INT, i: value } : { name, type: AttributeType.FLOAT, f: value };
  }
  if ('float' in value) return { name, type: AttributeType.FLOAT, f: value.float };
  if ('floats' in value) return { name, type: AttributeType.FLOATS, floats: [...value.floats] };
  if ('int' in value) return { name, type: AttributeType.INT, i: value.int };
  return { name, type: AttributeType.INTS, ints: [...value.ints] };
}

export function tensorValueInfo(name: string, elemType: number, shape: Dim[], doc?: string): ValueInfoProto {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: elemType,
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) },
      },
    },
    ...(doc ? { doc_string: doc } : {}),
  };
}

export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  readonly inputs: ValueInfoProto[] = [];
  readonly outputs: ValueInfoProto[] = [];
  private readonly names = new Set<string>();
  private readonly constants = new Map<string, string>();
  private readonly counters = new Map<string, number>();
  private prefix = '';

  constructor(
    readonly name: string,
    readonly doc = '',
  ) {}

  /** Run `body` with node names prefixed by `scope/` (nested scopes join with '/'). */
  scope<T>(scope: string, body: () => T): T {
    const saved = this.prefix;
    this.prefix = `${saved}${scope}/`;
    try {
      return body();
    } finally {
      this.prefix = saved;
    }
  }

  private claim(name: string): string {
    if (this.names.has(name)) throw new Error(`duplicate value name "${name}" in graph ${this.name}`);
    this.names.add(name);
    return name;
  }

  private uniqueNodeName(base: string): string {
    const full = `${this.prefix}${base}`;
    const count = this.counters.get(full) ?? 0;
    this.counters.set(full, count + 1);
    return count === 0 ? full : `${full}_${count}`;
  }

  // ---- graph interface ----

  input(name: string, shape: Dim[], doc: string, elemType: number = DataType.FLOAT): string {
    this.inputs.push(tensorValueInfo(this.claim(name), elemType, shape, doc));
    return name;
  }

  /** Declare `value` (already produced by a node under the same name) as a graph output. */
  output(value: string, shape: Dim[], doc: string, elemType: number = DataType.FLOAT): void {
    if (!this.names.has(value)) throw new Error(`graph output "${value}" is not produced by any node`);
    this.outputs.push(tensorValueInfo(value, elemType, shape, doc));
  }

  /**
   * A weight stored once as raw little-endian bytes: float32 named `name`, or, for a half-precision op (`half`),
   * FLOAT16 named `name/fp16` (rounded to nearest even). Returns the value's name.
   */
  initializer(name: string, dims: number[], data: Float32Array, half = false): string {
    if (!half) {
      this.initializers.push(floatTensor(this.claim(name), dims, data));
      return name;
    }
    const stored = this.claim(`${name}/fp16`);
    this.initializers.push(float16Tensor(stored, dims, data));
    return stored;
  }

  /**
   * A large weight stored at `precision` (export/precision.ts), returned as a float32 value named `name`: fp32 is
   * a plain initializer; fp16 a FLOAT16 initializer `name/fp16` widened by a Cast; int8 an INT8 initializer
   * `name/int8` with per-channel scales along `channelAxis` (`name/scale`, zero points `name/zero_point`) through
   * DequantizeLinear. With `half` (fp16 weights feeding a half-precision op) the FLOAT16 initializer itself, no Cast.
   */
  weight(name: string, dims: number[], data: Float32Array, precision: Precision, channelAxis: number, half = false): string {
    if (half && precision !== 'fp16') throw new Error(`weight ${name}: half-precision compute needs fp16 weights, not ${precision}`);
    if (precision === 'fp32') return this.initializer(name, dims, data);
    if (half) return this.initializer(name, dims, data, true);
    // Node names get the current scope prefixed, which already holds the weight's folder (conv1/, digit/, ...).
    const leaf = name.slice(name.lastIndexOf('/') + 1);
    if (precision === 'fp16') {
      const stored = this.initializer(name, dims, data, true);
      return this.node('Cast', [stored], { to: DataType.FLOAT }, { name: `${leaf}/Cast`, output: name })[0]!;
    }
    const { values, scales } = quantizeInt8PerChannel(data, dims, channelAxis);
    const q = this.claim(`${name}/int8`);
    this.initializers.push(int8Tensor(q, dims, values));
    const scale = this.initializer(`${name}/scale`, [scales.length], scales);
    const zeroPoint = this.claim(`${name}/zero_point`);
    this.initializers.push(int8Tensor(zeroPoint, [scales.length], new Int8Array(scales.length)));
    return this.node('DequantizeLinear', [q, scale, zeroPoint], { axis: channelAxis }, { name: `${leaf}/DequantizeLinear`, output: name })[0]!;
  }

  /**
   * Where a half-precision section of a mixed-precision graph begins (export/precision.ts): x cast to float16
   * when `half`, x itself otherwise.
   */
  toHalf(x: string, half: boolean): string {
    return half ? this.op('Cast', [x], { to: DataType.FLOAT16 }, { name: 'ToHalf' }) : x;
  }

  /** Where a half-precision section ends: x cast back to float32 when `half`, x itself otherwise. */
  toFloat(x: string, half: boolean): string {
    return half ? this.op('Cast', [x], { to: DataType.FLOAT }, { name: 'ToFloat' }) : x;
  }

  /** A float32 constant (deduplicated by value), as an initializer; `name` defaults to const/float/VALUE. */
  constFloat(values: number | number[], dims?: number[], name?: string): string {
    const list = typeof values === 'number' ? [values] : values;
    const shape = dims ?? (typeof values === 'number' ? [] : [list.length]);
    const key = `f:${shape.join('x')}:${list.join(',')}`;
    const existing = this.constants.get(key);
    if (existing) return existing;
    const base = name ?? (list.length === 1 ? `const/float/${list[0]}` : `const/float/[${shape.join('x')}]`);
    name = this.claim(this.uniqueConstName(base));
    this.initializers.push(floatTensor(name, shape, Float32Array.from(list)));
    this.constants.set(key, name);
    return name;
  }

  /** An int64 shape or axes constant (1-D, deduplicated by value). */
  constInt64(values: number[]): string {
    const key = `i64:${values.join(',')}`;
    const existing = this.constants.get(key);
    if (existing) return existing;
    const name = this.claim(this.uniqueConstName(`const/int64/[${values.join(',')}]`));
    this.initializers.push(int64Tensor(name, [values.length], values));
    this.constants.set(key, name);
    return name;
  }

  private uniqueConstName(base: string): string {
    let name = base;
    for (let k = 1; this.names.has(name); k++) name = `${base}_${k}`;
    return name;
  }

  /** Append one node; returns its output names. */
  node(opType: string, inputs: string[], attrs: Record<string, AttrValue | undefined> = {}, options: OpOptions & { outputs?: number } = {}): string[] {
    for (const input of inputs) {
      if (input !== '' && !this.names.has(input)) throw new Error(`${opType}: input "${input}" is not defined in graph ${this.name}`);
    }
    const nodeName = this.uniqueNodeName(options.name ?? opType);
    const count = options.outputs ?? 1;
    const outputs = Array.from({ length: count }, (_, k) =>
      this.claim(k === 0 && options.output ? options.output : count === 1 ? nodeName : `${nodeName}:${k}`),
    );
    const attribute = Object.entries(attrs)
      .filter((entry): entry is [string, AttrValue] => entry[1] !== undefined)
      .map(([key, value]) => makeAttribute(key, value));
    this.nodes.push({ name: nodeName, op_type: opType, input: inputs, output: outputs, ...(attribute.length ? { attribute } : {}) });
    return outputs;
  }

  private op(opType: string, inputs: string[], attrs: Record<string, AttrValue | undefined> = {}, options: OpOptions = {}): string {
    return this.node(opType, inputs, attrs, options)[0]!;
  }

  // ---- ops (opset 17 signatures) ----

  add(a: string, b: string, o?: OpOptions) {
    return this.op('Add', [a, b], {}, o);
  }
  sub(a: string, b: string, o?: OpOptions) {
    return this.op('Sub', [a, b], {}, o);
  }
  mul(a: string, b: string, o?: OpOptions) {
    return this.op('Mul', [a, b], {}, o);
  }
  div(a: string, b: string, o?: OpOptions) {
    return this.op('Div', [a, b], {}, o);
  }
  sqrt(x: string, o?: OpOptions) {
    return this.op('Sqrt', [x], {}, o);
  }
  relu(x: string, o?: OpOptions) {
    return this.op('Relu', [x], {}, o);
  }
  sigmoid(x: string, o?: OpOptions) {
    return this.op('Sigmoid', [x], {}, o);
  }
  identity(x: string, o?: OpOptions) {
    return this.op('Identity', [x], {}, o);
  }
  matMul(a: string, b: string, o?: OpOptions) {
    return this.op('MatMul', [a, b], {}, o);
  }
  transpose(x: string, perm: number[], o?: OpOptions) {
    return this.op('Transpose', [x], { perm }, o);
  }
  /** Shape is a constant: 0 copies the input's dim, -1 is inferred (used for the batch dim). */
  reshape(x: string, shape: number[], o?: OpOptions) {
    return this.op('Reshape', [x, this.constInt64(shape)], {}, o);
  }
  unsqueeze(x: string, axes: number[], o?: OpOptions) {
    return this.op('Unsqueeze', [x, this.constInt64(axes)], {}, o);
  }
  reduceSum(x: string, axes: number[], keepdims: boolean, o?: OpOptions) {
    return this.op('ReduceSum', [x, this.constInt64(axes)], { keepdims: keepdims ? 1 : 0 }, o);
  }
  reduceMax(x: string, axes: number[], keepdims: boolean, o?: OpOptions) {
    return this.op('ReduceMax', [x], { axes, keepdims: keepdims ? 1 : 0 }, o);
  }
  reduceMean(x: string, axes: number[], keepdims: boolean, o?: OpOptions) {
    return this.op('ReduceMean', [x], { axes, keepdims: keepdims ? 1 : 0 }, o);
  }
  max(a: string, b: string, o?: OpOptions) {
    return this.op('Max', [a, b], {}, o);
  }
  /** x[starts:ends] along `axes`, with constant int64 starts/ends/axes inputs. */
  slice(x: string, starts: number[], ends: number[], axes: number[], o?: OpOptions) {
    return this.op('Slice', [x, this.constInt64(starts), this.constInt64(ends), this.constInt64(axes)], {}, o);
  }
  softmax(x: string, axis: number, o?: OpOptions) {
    return this.op('Softmax', [x], { axis }, o);
  }
  greaterOrEqual(a: string, b: string, o?: OpOptions) {
    return this.op('GreaterOrEqual', [a, b], {}, o);
  }
  cast(x: string, to: number, o?: OpOptions) {
    return this.op('Cast', [x], { to }, o);
  }
  conv(x: string, w: string, b: string, attrs: { kernel_shape: number[]; strides: number[] }, o?: OpOptions) {
    return this.op('Conv', [x, w, b], { kernel_shape: attrs.kernel_shape, strides: attrs.strides, pads: [0, 0, 0, 0], dilations: [1, 1], group: 1 }, o);
  }

  graph(): GraphProto {
    return {
      name: this.name,
      node: this.nodes,
      initializer: this.initializers,
      input: this.inputs,
      output: this.outputs,
      ...(this.doc ? { doc_string: this.doc } : {}),
    };
  }
}

export interface ModelOptions {
  producerName: string;
  producerVersion: string;
  doc?: string;
  metadata?: Record<string, string>;
  opset?: number;
}

export function buildModel(graph: GraphProto, options: ModelOptions): ModelProto {
  return {
    ir_version: IR_VERSION,
    opset_import: [{ domain: '', version: options.opset ?? OPSET_VERSION }],
    producer_name: options.producerName,
    producer_version: options.producerVersion,
    model_version: 1,
    ...(options.doc ? { doc_string: options.doc } : {}),
    graph,
    metadata_props: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
  };
}

/** Parameter count: elements of all initializers (weights plus the few scalar and shape constants). */
export function countParameters(graph: GraphProto): number {
  return (graph.initializer ?? []).reduce((total, t) => total + t.dims.reduce((a, b) => a * b, 1), 0);
}
