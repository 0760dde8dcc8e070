/**
 * The subset of the ONNX protobuf schema (onnx/onnx.proto, proto2, IR version 8) that the exporter writes and
 * `capsnet inspect` reads, declared for protobufjs's reflection API. Field names are the spec's snake_case names
 * and field numbers are the spec's, so the bytes are ordinary ONNX. Fields of these messages that refer to
 * messages we never write (sparse tensors, training info, functions, tensor segments) are left out; a decoder
 * skips unknown fields, so files that carry them still decode.
 *
 * int64 fields are plain JS numbers here: every int64 the exporter writes (dims, ir_version, opset versions,
 * attribute ints) is far below 2^53.
 */
import protobuf from 'protobufjs';

/** TensorProto.DataType values used by the project. */
export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
} as const;
export type DataTypeValue = (typeof DataType)[keyof typeof DataType];

export const DATA_TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(DataType).map(([name, value]) => [value, name.toLowerCase()]));

/** AttributeProto.AttributeType values. */
export const AttributeType = {
  UNDEFINED: 0,
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
  SPARSE_TENSOR: 11,
  SPARSE_TENSORS: 12,
  TYPE_PROTO: 13,
  TYPE_PROTOS: 14,
} as const;

// ---- TypeScript views of the messages (what encodeModel takes and decodeModel returns) ----

export interface StringStringEntryProto {
  key: string;
  value: string;
}

export interface OperatorSetIdProto {
  domain?: string;
  version: number;
}

export interface TensorProto {
  dims: number[];
  data_type: number;
  float_data?: number[];
  int32_data?: number[];
  string_data?: Uint8Array[];
  int64_data?: number[];
  name?: string;
  doc_string?: string;
  raw_data?: Uint8Array;
  external_data?: StringStringEntryProto[];
  data_location?: number;
  double_data?: number[];
  uint64_data?: number[];
}

export interface TensorShapeDimension {
  dim_value?: number;
  dim_param?: string;
  denotation?: string;
}

export interface TensorShapeProto {
  dim: TensorShapeDimension[];
}

export interface TypeProto {
  tensor_type?: { elem_type: number; shape?: TensorShapeProto };
  denotation?: string;
}

export interface ValueInfoProto {
  name: string;
  type?: TypeProto;
  doc_string?: string;
}

export interface AttributeProto {
  name: string;
  ref_attr_name?: string;
  doc_string?: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  tp?: TypeProto;
  floats?: number[];
  ints?: number[];
  strings?: Uint8Array[];
  tensors?: TensorProto[];
  graphs?: GraphProto[];
  type_protos?: TypeProto[];
}

export interface NodeProto {
  input: string[];
  output: string[];
  name?: string;
  op_type: string;
  domain?: string;
  attribute?: AttributeProto[];
  doc_string?: string;
}

export interface GraphProto {
  node: NodeProto[];
  name?: string;
  initializer?: TensorProto[];
  doc_string?: string;
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  value_info?: ValueInfoProto[];
}

export interface ModelProto {
  ir_version: number;
  opset_import: OperatorSetIdProto[];
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: number;
  doc_string?: string;
  graph: GraphProto;
  metadata_props?: StringStringEntryProto[];
}

// ---- The protobufjs descriptor: field numbers from the ONNX spec ----

type FieldJson = { type: string; id: number; rule?: 'repeated'; options?: { packed: boolean } };
const f = (type: string, id: number): FieldJson => ({ type, id });
const rep = (type: string, id: number): FieldJson => ({ type, id, rule: 'repeated' });
/** [packed = true] in onnx.proto (only some TensorProto fields); proto2 repeated scalars are otherwise unpacked. */
const packed = (type: string, id: number): FieldJson => ({ type, id, rule: 'repeated', options: { packed: true } });

const ONNX_DESCRIPTOR = {
  nested: {
    onnx: {
      nested: {
        AttributeProto: {
          fields: {
            name: f('string', 1),
            ref_attr_name: f('string', 21),
            doc_string: f('string', 13),
            type: f('AttributeType', 20),
            f: f('float', 2),
            i: f('int64', 3),
            s: f('bytes', 4),
            t: f('TensorProto', 5),
            g: f('GraphProto', 6),
            tp: f('TypeProto', 14),
            floats: rep('float', 7),
            ints: rep('int64', 8),
            strings: rep('bytes', 9),
            tensors: rep('TensorProto', 10),
            graphs: rep('GraphProto', 11),
            type_protos: rep('TypeProto', 15),
          },
          nested: { AttributeType: { values: AttributeType } },
        },
        ValueInfoProto: {
          fields: { name: f('string', 1), type: f('TypeProto', 2), doc_string: f('string', 3) },
        },
        NodeProto: {
          fields: {
            input: rep('string', 1),
            output: rep('string', 2),
            name: f('string', 3),
            op_type: f('string', 4),
            domain: f('string', 7),
            attribute: rep('AttributeProto', 5),
            doc_string: f('string', 6),
          },
        },
        ModelProto: {
          fields: {
            ir_version: f('int64', 1),
            opset_import: rep('OperatorSetIdProto', 8),
            producer_name: f('string', 2),
            producer_version: f('string', 3),
            domain: f('string', 4),
            model_version: f('int64', 5),
            doc_string: f('string', 6),
            graph: f('GraphProto', 7),
            metadata_props: rep('StringStringEntryProto', 14),
          },
        },
        StringStringEntryProto: {
          fields: { key: f('string', 1), value: f('string', 2) },
        },
        GraphProto: {
          fields: {
            node: rep('NodeProto', 1),
            name: f('string', 2),
            initializer: rep('TensorProto', 5),
            doc_string: f('string', 10),
            input: rep('ValueInfoProto', 11),
            output: rep('ValueInfoProto', 12),
            value_info: rep('ValueInfoProto', 13),
          },
        },
        TensorProto: {
          fields: {
            dims: rep('int64', 1),
            data_type: f('int32', 2),
            float_data: packed('float', 4),
            int32_data: packed('int32', 5),
            string_data: rep('bytes', 6),
            int64_data: packed('int64', 7),
            name: f('string', 8),
            doc_string: f('string', 12),
            raw_data: f('bytes', 9),
            external_data: rep('StringStringEntryProto', 13),
            data_location: f('DataLocation', 14),
            double_data: packed('double', 10),
            uint64_data: packed('uint64', 11),
          },
          nested: {
            DataType: { values: DataType },
            DataLocation: { values: { DEFAULT: 0, EXTERNAL: 1 } },
          },
        },
        TensorShapeProto: {
          fields: { dim: rep('Dimension', 1) },
          nested: {
            Dimension: {
              oneofs: { value: { oneof: ['dim_value', 'dim_param'] } },
              fields: { dim_value: f('int64', 1), dim_param: f('string', 2), denotation: f('string', 3) },
            },
          },
        },
        TypeProto: {
          oneofs: { value: { oneof: ['tensor_type'] } },
          fields: { tensor_type: f('Tensor', 1), denotation: f('string', 6) },
          nested: {
            Tensor: { fields: { elem_type: f('int32', 1), shape: f('TensorShapeProto', 2) } },
          },
        },
        OperatorSetIdProto: {
          fields: { domain: f('string', 1), version: f('int64', 2) },
        },
      },
    },
  },
};

/**
 * protobufjs reads message types in a JSON descriptor as proto3 unless told otherwise; onnx.proto is proto2, so
 * every message is marked `edition: 'proto2'`: optional scalars keep explicit presence (an attribute `i: 0` is
 * written, not dropped as a default) and repeated scalars are unpacked unless [packed = true] says so.
 */
function markProto2(nested: Record<string, { fields?: unknown; nested?: Record<string, object> }>): void {
  for (const entry of Object.values(nested)) {
    if (entry.fields) (entry as { edition?: string }).edition = 'proto2';
    if (entry.nested) markProto2(entry.nested as Record<string, { fields?: unknown; nested?: Record<string, object> }>);
  }
}

let root: protobuf.Root | undefined;

/** The reflected ONNX namespace (built once). */
export function onnxRoot(): protobuf.Root {
  if (!root) {
    const descriptor = structuredClone(ONNX_DESCRIPTOR);
    markProto2(descriptor.nested.onnx.nested);
    root = protobuf.Root.fromJSON(descriptor);
  }
  return root;
}

export function onnxType(name: 'ModelProto' | 'GraphProto' | 'NodeProto' | 'TensorProto' | 'ValueInfoProto' | 'AttributeProto'): protobuf.Type {
  return onnxRoot().lookupType(`onnx.${name}`);
}

/** Serialise a model. The object is encoded as is (no copying of tensor bytes beyond the one into the output). */
export function encodeModel(model: ModelProto): Uint8Array {
  return onnxType('ModelProto')
    .encode(model as unknown as protobuf.Message)
    .finish();
}

/** Parse ONNX bytes into plain objects (int64 as numbers, bytes as Uint8Array views, repeated fields always arrays). */
export function decodeModel(bytes: Uint8Array): ModelProto {
  const type = onnxType('ModelProto');
  const message = type.decode(bytes);
  return type.toObject(message, { longs: Number, arrays: true, defaults: false, oneofs: false }) as unknown as ModelProto;
}
