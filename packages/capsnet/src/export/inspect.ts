/** `capsnet inspect`: what an ONNX file holds, read with the project's own schema (no ONNX Runtime needed). */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { DATA_TYPE_NAMES, DataType, type ModelProto, type ValueInfoProto, decodeModel } from './onnx-schema.ts';
import { countParameters } from './graph-builder.ts';
import { METADATA_KEYS } from '@capsnet-onnx/core';

export interface TensorInfo {
  name: string;
  type: string;
  /** Fixed sizes as numbers, symbolic ones (the batch dim) as names, unknown as '?'. */
  shape: (number | string)[];
  doc?: string;
}

export interface ModelSummary {
  path?: string;
  fileSize: number;
  irVersion: number;
  opset: { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
  graphName: string;
  doc?: string;
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  metadata: Record<string, string>;
  /** Node count per op type, most frequent first. */
  ops: Record<string, number>;
  nodes: number;
  initializers: number;
  /** Elements of all initializers. */
  parameters: number;
  /** Weight storage precision from the metadata (fp32 when absent). */
  precision: string;
  /** Compute precision from the metadata (fp32 when absent, as in files from before the key). */
  computePrecision: string;
  /** Nodes per element type of their first output among float16 and float32, e.g. { float16: 14, float: 120 }. */
  nodeTypes: Record<string, number>;
  /** Initializer bytes per element type, e.g. { int8: 8123456, float: 40960 }. */
  initializerBytes: Record<string, number>;
}

function tensorInfo(v: ValueInfoProto): TensorInfo {
  const t = v.type?.tensor_type;
  return {
    name: v.name,
    type: t ? (DATA_TYPE_NAMES[t.elem_type] ?? `type${t.elem_type}`) : 'non-tensor',
    shape: (t?.shape?.dim ?? []).map((d) => d.dim_value ?? d.dim_param ?? '?'),
    ...(v.doc_string ? { doc: v.doc_string } : {}),
  };
}

export function summarizeModel(model: ModelProto, fileSize: number, path?: string): ModelSummary {
  const graph = model.graph;
  const counts: Record<string, number> = {};
  for (const node of graph.node) {
    const op = node.domain ? `${node.domain}.${node.op_type}` : node.op_type;
    counts[op] = (counts[op] ?? 0) + 1;
  }
  const ops = Object.fromEntries(Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])));
  const metadata = Object.fromEntries((model.metadata_props ?? []).map((e) => [e.key, e.value]));
  const initializerBytes: Record<string, number> = {};
  for (const t of graph.initializer ?? []) {
    const type = DATA_TYPE_NAMES[t.data_type] ?? `type${t.data_type}`;
    initializerBytes[type] = (initializerBytes[type] ?? 0) + (t.raw_data?.length ?? 0);
  }
  return {
    ...(path ? { path } : {}),
    fileSize,
    irVersion: model.ir_version,
    opset: model.opset_import.map((o) => ({ domain: o.domain || 'ai.onnx', version: o.version })),
    producerName: model.producer_name ?? '',
    producerVersion: model.producer_version ?? '',
    graphName: graph.name ?? '',
    ...(graph.doc_string ? { doc: graph.doc_string } : {}),
    inputs: graph.input.map(tensorInfo),
    outputs: graph.output.map(tensorInfo),
    metadata,
    ops,
    nodes: graph.node.length,
    initializers: graph.initializer?.length ?? 0,
    parameters: countParameters(graph),
    precision: metadata[METADATA_KEYS.precision] || 'fp32',
    computePrecision: metadata[METADATA_KEYS.computePrecision] || 'fp32',
    nodeTypes: nodeOutputTypes(model),
    initializerBytes,
  };
}

/**
 * How many nodes compute in float16 and float32: each node's first output typed by forward propagation from the
 * graph inputs and initializers (Cast gives its `to`, DequantizeLinear float32; shape and comparison ops give int64/bool and are left out;
 * every other op here keeps its first input's type).
 */
function nodeOutputTypes(model: ModelProto): Record<string, number> {
  const types = new Map<string, number>();
  for (const v of model.graph.input) types.set(v.name, v.type?.tensor_type?.elem_type ?? 0);
  for (const t of model.graph.initializer ?? []) types.set(t.name ?? '', t.data_type);
  const counts: Record<string, number> = {};
  for (const node of model.graph.node) {
    const cast = node.op_type === 'Cast' ? node.attribute?.find((a) => a.name === 'to')?.i : node.op_type === 'DequantizeLinear' ? DataType.FLOAT : undefined;
    const type = cast ?? (['GreaterOrEqual', 'Greater', 'Less', 'Equal', 'Shape'].includes(node.op_type) ? DataType.BOOL : types.get(node.input[0] ?? ''));
    for (const out of node.output) types.set(out, type ?? 0);
    if (type === DataType.FLOAT || type === DataType.FLOAT16) {
      const name = DATA_TYPE_NAMES[type] ?? String(type);
      counts[name] = (counts[name] ?? 0) + 1;
    }
  }
  return counts;
}

export function decodeModelChecked(bytes: Uint8Array, source: string): ModelProto {
  let model: ModelProto;
  try {
    model = decodeModel(bytes);
  } catch (e) {
    // protobufjs says where the bytes stopped parsing ("index out of range: 2 + 117 > 5"): the file is cut or not ONNX.
    throw new Error(`${source} is not an ONNX model (it does not parse as one): pass the model.onnx that \`capsnet export\` wrote`, { cause: e });
  }
  if (!model.graph || !model.ir_version) {
    throw new Error(`${source} is not an ONNX model (no graph or IR version): pass the model.onnx that \`capsnet export\` wrote`);
  }
  return model;
}

export function inspectFile(path: string): ModelSummary {
  if (!existsSync(path)) throw new Error(`no file at ${path}: check the path (capsnet export writes model.onnx)`);
  if (statSync(path).isDirectory()) throw new Error(`${path} is a directory: pass the .onnx file`);
  const bytes = readFileSync(path);
  return summarizeModel(decodeModelChecked(bytes, path), bytes.length, path);
}

function formatBytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(2)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function formatTensor(t: TensorInfo): string {
  return `  ${t.name}: ${t.type} [${t.shape.join(', ')}]${t.doc ? `\n      ${t.doc}` : ''}`;
}

export function formatSummary(s: ModelSummary): string {
  const lines: string[] = [];
  if (s.path) lines.push(`file: ${s.path}`);
  lines.push(`size: ${s.fileSize} bytes (${formatBytes(s.fileSize)})`);
  lines.push(`producer: ${s.producerName} ${s.producerVersion}`.trimEnd());
  lines.push(`ir_version: ${s.irVersion}; opset: ${s.opset.map((o) => `${o.domain} ${o.version}`).join(', ')}`);
  lines.push(`graph: ${s.graphName}${s.doc ? ` (${s.doc})` : ''}`);
  lines.push('inputs:', ...s.inputs.map(formatTensor));
  lines.push('outputs:', ...s.outputs.map(formatTensor));
  lines.push(
    `parameters: ${s.parameters.toLocaleString('en-US')} in ${s.initializers} initializers ` +
      `(4 bytes each: ${formatBytes(4 * s.parameters)}; file is ${((100 * s.fileSize) / Math.max(1, 4 * s.parameters)).toFixed(2)}% of that)`,
  );
  lines.push(
    `precision: ${s.precision} weights (${Object.entries(s.initializerBytes)
      .map(([type, bytes]) => `${type} ${formatBytes(bytes)}`)
      .join(', ')}); ` +
      `${s.computePrecision} compute (${Object.entries(s.nodeTypes)
        .map(([type, n]) => `${n} ${type} nodes`)
        .join(', ')}); inputs and outputs float32`,
  );
  lines.push(
    `nodes: ${s.nodes}; ops: ${Object.entries(s.ops)
      .map(([op, n]) => `${op} x${n}`)
      .join(', ')}`,
  );
  lines.push('metadata:');
  for (const [key, value] of Object.entries(s.metadata)) lines.push(`  ${key}: ${value}`);
  return lines.join('\n');
}
