/**
 * A minimal ONNX (protobuf) writer, enough to build small test graphs: the runtime tests use it to make a
 * CapsNet-shaped stand-in model (same I/O names and metadata as the exporter's) that loads in milliseconds.
 * Field numbers follow onnx/onnx.proto (IR version 8).
 */

class ProtoWriter {
  private chunks: number[] = [];

  varint(value: number | bigint): this {
    let v = BigInt(value);
    if (v < 0n) v += 1n << 64n; // two's complement for negative int64
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      this.chunks.push(byte);
    } while (v !== 0n);
    return this;
  }

  tag(field: number, wireType: number): this {
    return this.varint((field << 3) | wireType);
  }

  int(field: number, value: number | bigint): this {
    return this.tag(field, 0).varint(value);
  }

  bytes(field: number, data: Uint8Array): this {
    this.tag(field, 2).varint(data.length);
    for (const b of data) this.chunks.push(b);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, build: (w: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    build(inner);
    return this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }
}

export const ONNX_FLOAT = 1;
export const ONNX_INT64 = 7;

export interface TensorSpec {
  name: string;
  dims: number[];
  /** float32 or int64 values */
  data: Float32Array | BigInt64Array;
}

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, number | number[]>;
}

export interface ValueSpec {
  name: string;
  /** number: fixed; string: symbolic (dynamic) dimension */
  shape: Array<number | string>;
}

export interface ModelSpec {
  nodes: NodeSpec[];
  initializers: TensorSpec[];
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  metadata?: Record<string, string>;
  opset?: number;
  producerName?: string;
  producerVersion?: string;
}

function writeTensor(w: ProtoWriter, t: TensorSpec): void {
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.data instanceof Float32Array ? ONNX_FLOAT : ONNX_INT64);
  w.string(8, t.name);
  w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
}

function writeValueInfo(w: ProtoWriter, v: ValueSpec): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, ONNX_FLOAT);
      tensor.message(2, (shape) => {
        for (const d of v.shape) shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
      });
    }),
  );
}

/** Serialise a model to ONNX bytes. */
export function encodeModel(spec: ModelSpec): Uint8Array {
  const w = new ProtoWriter();
  w.int(1, 8); // ir_version
  w.string(2, spec.producerName ?? 'capsnet-onnx-test');
  w.string(3, spec.producerVersion ?? '0');
  w.message(7, (g) => {
    spec.nodes.forEach((n, i) =>
      g.message(1, (node) => {
        for (const name of n.inputs) node.string(1, name);
        for (const name of n.outputs) node.string(2, name);
        node.string(3, `${n.op}_${i}`);
        node.string(4, n.op);
        for (const [name, value] of Object.entries(n.attributes ?? {})) {
          node.message(5, (a) => {
            a.string(1, name);
            if (Array.isArray(value)) {
              for (const v of value) a.int(8, v);
              a.int(20, 7); // INTS
            } else {
              a.int(3, value);
              a.int(20, 2); // INT
            }
          });
        }
      }),
    );
    g.string(2, 'graph');
    for (const t of spec.initializers) g.message(5, (tensor) => writeTensor(tensor, t));
    for (const v of spec.inputs) g.message(11, (vi) => writeValueInfo(vi, v));
    for (const v of spec.outputs) g.message(12, (vi) => writeValueInfo(vi, v));
  });
  w.message(8, (o) => o.string(1, '').int(2, spec.opset ?? 17));
  for (const [key, value] of Object.entries(spec.metadata ?? {})) w.message(14, (e) => e.string(1, key).string(2, value));
  return w.finish();
}
