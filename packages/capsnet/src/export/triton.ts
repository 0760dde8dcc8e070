/**
 * `capsnet export --triton DIR`: a Triton Inference Server model repository (also what KServe's Triton runtime
 * serves), laid out as Triton reads it:
 *
 *   DIR/<name>/config.pbtxt            ModelConfig in protobuf text format (TRITON_MODEL_CONFIG_PROTO below)
 *   DIR/<name>/labels.txt              class names, one per line (the `lengths` output's label_filename)
 *   DIR/<name>/1/model.onnx            the classifier (version 1)
 *   DIR/<name>_decoder/config.pbtxt    the reconstruction decoder as its own model
 *   DIR/<name>_decoder/1/model.onnx
 *
 * Both models run on Triton's ONNX Runtime backend with the batch dimension left to Triton (max_batch_size > 0,
 * dims without the batch), dynamic batching on, and one instance group. Each model folder appears whole or not at
 * all (built under a temp name, then renamed), and an existing folder is replaced only when asked (`overwrite`).
 */
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import protobuf from 'protobufjs';
import textformat from 'protobufjs/ext/textformat.js';
import { type CapsNetConfig, IO_NAMES, derivedSizes } from '@capsnet-onnx/core';
import { refuseToReplace } from '../files/atomic.ts';
import type { InstanceKind } from './names.ts';

/**
 * The part of Triton Inference Server's model configuration schema (ModelConfig, package inference, proto3) that
 * `capsnet export --triton` writes: field names, numbers and enum values as Triton's model_config.proto defines
 * them, every other field left out. config.pbtxt is this message in protobuf text format.
 */
export const TRITON_MODEL_CONFIG_PROTO = `syntax = "proto3";

package inference;

enum DataType {
  TYPE_INVALID = 0;
  TYPE_BOOL = 1;
  TYPE_UINT8 = 2;
  TYPE_UINT16 = 3;
  TYPE_UINT32 = 4;
  TYPE_UINT64 = 5;
  TYPE_INT8 = 6;
  TYPE_INT16 = 7;
  TYPE_INT32 = 8;
  TYPE_INT64 = 9;
  TYPE_FP16 = 10;
  TYPE_FP32 = 11;
  TYPE_FP64 = 12;
  TYPE_STRING = 13;
  TYPE_BF16 = 14;
}

message ModelInstanceGroup {
  enum Kind {
    KIND_AUTO = 0;
    KIND_GPU = 1;
    KIND_CPU = 2;
    KIND_MODEL = 3;
  }
  string name = 1;
  int32 count = 2;
  repeated int32 gpus = 3;
  Kind kind = 4;
}

message ModelInput {
  enum Format {
    FORMAT_NONE = 0;
    FORMAT_NHWC = 1;
    FORMAT_NCHW = 2;
  }
  string name = 1;
  DataType data_type = 2;
  Format format = 3;
  // Without the batch dimension when max_batch_size > 0.
  repeated int64 dims = 4;
}

message ModelOutput {
  string name = 1;
  DataType data_type = 2;
  repeated int64 dims = 3;
  // One class name per line, for Triton's classification extension.
  string label_filename = 4;
}

message ModelDynamicBatching {
  repeated int32 preferred_batch_size = 1;
  uint64 max_queue_delay_microseconds = 2;
}

message ModelConfig {
  string name = 1;
  string platform = 2;
  int32 max_batch_size = 4;
  repeated ModelInput input = 5;
  repeated ModelOutput output = 6;
  repeated ModelInstanceGroup instance_group = 7;
  ModelDynamicBatching dynamic_batching = 11;
  string backend = 17;
}
`;
export { INSTANCE_KINDS, type InstanceKind } from './names.ts';

/** Model names Triton accepts as folder names and URL path segments. */
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

let configType: protobuf.Type | undefined;
/** The ModelConfig message type (reflection over export/triton-model-config.proto). */
export function modelConfigType(): protobuf.Type {
  // keepCase: text format names fields as the .proto does (max_batch_size), not in protobufjs's camelCase.
  configType ??= protobuf.parse(TRITON_MODEL_CONFIG_PROTO, { keepCase: true }).root.lookupType('inference.ModelConfig');
  configType.root.resolveAll();
  return configType;
}

/** protobufjs's fromObject drops unknown keys silently: refuse them instead, so nothing meant is left out. */
function checkFields(type: protobuf.Type, object: Record<string, unknown>, path: string): void {
  for (const [key, value] of Object.entries(object)) {
    const field = type.fields[key];
    if (!field) throw new Error(`Triton model config: ${type.name} has no field ${path}${key}`);
    if (field.resolvedType instanceof protobuf.Type) {
      for (const item of Array.isArray(value) ? value : [value]) checkFields(field.resolvedType, item as Record<string, unknown>, `${path}${key}.`);
    }
  }
}

export interface TritonOptions {
  /** Repository root; created if missing (its parent must exist). */
  dir: string;
  /** Model name (folder name, and the name clients call). Default capsnet; the decoder is <name>_decoder. */
  name?: string;
  /** Largest batch Triton forms (max_batch_size). Default 32, as `capsnet serve --max-batch`. */
  maxBatchSize?: number;
  /** dynamic_batching.max_queue_delay_microseconds. Default 2000 (2 ms, as `capsnet serve`). */
  maxQueueDelayUs?: number;
  /** instance_group kind: auto (GPU when there is one), cpu or gpu. Default auto. */
  instanceKind?: InstanceKind;
  /** Instances of the model (per GPU for gpu). Default 1. */
  instanceCount?: number;
}

type Tensor = { name: string; data_type: string; dims: number[]; label_filename?: string };

/** The ModelConfig (as a plain object with the proto's field names) for one of the two models. */
export function tritonModelConfig(config: CapsNetConfig, model: 'classifier' | 'decoder', options: Omit<TritonOptions, 'dir'> = {}): Record<string, unknown> {
  const name = options.name ?? 'capsnet';
  const { numPrimaryCaps: I, pixels } = derivedSizes(config);
  const { numClasses: J, digitDim: D } = config;
  const fp32 = (tensor: string, dims: number[], extra: Partial<Tensor> = {}): Tensor => ({ name: tensor, data_type: 'TYPE_FP32', dims, ...extra });
  const classifier = model === 'classifier';
  return {
    name: classifier ? name : `${name}_decoder`,
    platform: 'onnxruntime_onnx',
    backend: 'onnxruntime',
    max_batch_size: options.maxBatchSize ?? 32,
    input: classifier
      ? [fp32(IO_NAMES.images, [config.inputHeight, config.inputWidth, config.inputChannels])]
      : [fp32(IO_NAMES.maskedCapsules, [J, D])],
    output: classifier
      ? [
          fp32(IO_NAMES.lengths, [J], { label_filename: 'labels.txt' }),
          fp32(IO_NAMES.capsules, [J, D]),
          fp32(IO_NAMES.reconstruction, [pixels]),
          fp32(IO_NAMES.coupling, [I, J]),
        ]
      : [fp32(IO_NAMES.reconstruction, [pixels])],
    instance_group: [{ count: options.instanceCount ?? 1, kind: `KIND_${(options.instanceKind ?? 'auto').toUpperCase()}` }],
    dynamic_batching: { max_queue_delay_microseconds: options.maxQueueDelayUs ?? 2000 },
  };
}

/** config.pbtxt text for a ModelConfig object; fails on any field the schema does not have. */
export function configText(object: Record<string, unknown>, header: string): string {
  const type = modelConfigType();
  checkFields(type, object, '');
  const body = textformat.toText(type, type.fromObject(object));
  return `${header.split('\n').map((l) => `# ${l}`.trimEnd()).join('\n')}\n${body.endsWith('\n') ? body : `${body}\n`}`;
}

/** Parse config.pbtxt text into a plain object (enums by name, int64 as numbers). */
export function parseConfigText(text: string): Record<string, unknown> {
  const type = modelConfigType();
  return type.toObject(textformat.fromText(type, text), { enums: String, longs: Number, defaults: false }) as Record<string, unknown>;
}

export interface TritonFiles {
  /** The model folders written, classifier first. */
  models: string[];
  files: string[];
}

/** What writing a repository takes: the options, and whether existing model folders may be replaced. */
export interface TritonWriteOptions extends TritonOptions {
  /** Replace the model folders if they exist; without it an existing one is an OutputExistsError. */
  overwrite?: boolean;
}

/** Fail early on a bad name or directory, and on model folders that exist unless `overwrite` (OutputExistsError). */
export function checkTritonOptions(options: TritonWriteOptions): void {
  const name = options.name ?? 'capsnet';
  if (!MODEL_NAME.test(name)) throw new Error(`the Triton model name "${name}" must be letters, digits, '_', '.' or '-', starting with a letter or digit`);
  const root = resolve(options.dir);
  if (existsSync(root) && !statSync(root).isDirectory()) throw new Error(`the Triton repository ${options.dir} is a file: give a directory for the model repository`);
  if (!existsSync(dirname(root))) throw new Error(`the parent of the Triton repository ${options.dir} does not exist: create it first`);
  refuseToReplace([name, `${name}_decoder`].map((model) => join(options.dir, model)), options.overwrite, {
    option: 'triton.name or triton.dir', flag: '--triton-name or --triton directory',
  });
}

/**
 * Write the repository: the classifier and decoder bytes (already encoded, at any precision) with their
 * configs. Existing model folders are replaced only with `overwrite`. Throws one-line errors; on failure
 * nothing is left behind and replaced folders are back in place.
 */
export function writeTritonRepository(
  options: TritonWriteOptions,
  config: CapsNetConfig,
  classLabels: string[],
  bytes: { model: Uint8Array; decoder: Uint8Array },
  header: string,
): TritonFiles {
  checkTritonOptions(options);
  const root = resolve(options.dir);
  mkdirSync(root, { recursive: true });
  const name = options.name ?? 'capsnet';
  const plan = [
    { folder: name, config: tritonModelConfig(config, 'classifier', options), onnx: bytes.model, labels: true },
    { folder: `${name}_decoder`, config: tritonModelConfig(config, 'decoder', options), onnx: bytes.decoder, labels: false },
  ];
  const temps: string[] = [];
  const done: string[] = [];
  const replaced: { target: string; old: string }[] = [];
  const files: string[] = [];
  try {
    for (const p of plan) {
      const temp = join(root, `.tmp-${process.pid}-${Date.now()}-${p.folder}`);
      temps.push(temp);
      mkdirSync(join(temp, '1'), { recursive: true });
      writeFileSync(join(temp, 'config.pbtxt'), configText(p.config, header));
      writeFileSync(join(temp, '1', 'model.onnx'), p.onnx);
      const written = ['config.pbtxt', join('1', 'model.onnx')];
      if (p.labels) {
        writeFileSync(join(temp, 'labels.txt'), `${classLabels.join('\n')}\n`);
        written.push('labels.txt');
      }
      files.push(...written.map((f) => join(options.dir, p.folder, f)));
    }
    plan.forEach((p, k) => {
      // With overwrite, the old folder is moved aside (a folder cannot be renamed over a full one), and is put
      // back if the new one cannot take its place.
      const target = join(root, p.folder);
      if (existsSync(target)) {
        const old = join(root, `.tmp-${process.pid}-${Date.now()}-old-${p.folder}`);
        renameSync(target, old);
        replaced.push({ target, old });
      }
      renameSync(temps[k]!, target);
      done.push(target);
    });
  } catch (e) {
    for (const t of [...temps, ...done]) rmSync(t, { recursive: true, force: true });
    for (const r of replaced) renameSync(r.old, r.target);
    const error = e as NodeJS.ErrnoException;
    throw new Error(`cannot write the Triton repository in ${options.dir}: ${error.code ?? error.message}`);
  }
  for (const r of replaced) rmSync(r.old, { recursive: true, force: true });
  return { models: plan.map((p) => join(options.dir, p.folder)), files };
}
