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
 * dims without the batch), dynamic batching on, and one instance group.
 *
 * Crash safety (a SIGKILL at any point leaves a repository Triton can serve, and nothing that it would scan as a
 * model): everything is built first in a temp folder beside the repository (`.<DIR>.tmp-<pid>-<n>`, never inside
 * it), then moved in by renames:
 * - no repository yet: the temp folder, holding both models, is renamed to DIR: the pair appears at once;
 * - a new model folder in an existing repository: it is renamed in whole, the decoder first;
 * - an existing model folder (`overwrite`): each config.pbtxt pins the version it serves (version_policy specific),
 *   so the new files go in beside the old ones as the next version (N/model.onnx, labels.N.txt) and one rename of
 *   config.pbtxt switches the folder from the old model to the new one; the old version is removed afterwards.
 *   The decoder switches first and the classifier last; the classifier records its decoder's SHA-256, so a kill
 *   between the two switches leaves a pair every capsnet loader refuses, which the next export replaces.
 * Temp folders of a killed export, versions no config serves, and the previous writer's in-repository temp folders
 * are swept at the next export (a model folder the previous writer had moved aside is moved back).
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import protobuf from 'protobufjs';
import textformat from 'protobufjs/ext/textformat.js';
import { type CapsNetConfig, IO_NAMES, derivedSizes } from '@capsnet-onnx/core';
import { asFileSystemError, processAlive, refuseToReplace, sweepTempFiles, syncDirectory, tempPathFor, writeFileDurable } from '../files/atomic.ts';
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

message ModelVersionPolicy {
  message Latest {
    uint32 num_versions = 1;
  }
  message All {}
  message Specific {
    repeated int64 versions = 1;
  }
  oneof policy_choice {
    Latest latest = 1;
    All all = 2;
    Specific specific = 3;
  }
}

message ModelConfig {
  string name = 1;
  string platform = 2;
  ModelVersionPolicy version_policy = 3;
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

/** Where a model folder's files are: the version folder config.pbtxt pins, and the classifier's labels file. */
export interface TritonVersion {
  /** Version folder number (default 1). */
  version?: number;
  /** Labels file name in the model folder (default labels.txt). */
  labels?: string;
}

/** The ModelConfig (as a plain object with the proto's field names) for one of the two models. */
export function tritonModelConfig(
  config: CapsNetConfig,
  model: 'classifier' | 'decoder',
  options: Omit<TritonOptions, 'dir'> = {},
  files: TritonVersion = {},
): Record<string, unknown> {
  const name = options.name ?? 'capsnet';
  const { numPrimaryCaps: I, pixels } = derivedSizes(config);
  const { numClasses: J, digitDim: D } = config;
  const fp32 = (tensor: string, dims: number[], extra: Partial<Tensor> = {}): Tensor => ({ name: tensor, data_type: 'TYPE_FP32', dims, ...extra });
  const classifier = model === 'classifier';
  return {
    name: classifier ? name : `${name}_decoder`,
    platform: 'onnxruntime_onnx',
    backend: 'onnxruntime',
    // Pinned, so that a new version folder beside it changes nothing until config.pbtxt itself is replaced.
    version_policy: { specific: { versions: [files.version ?? 1] } },
    max_batch_size: options.maxBatchSize ?? 32,
    input: classifier ? [fp32(IO_NAMES.images, [config.inputHeight, config.inputWidth, config.inputChannels])] : [fp32(IO_NAMES.maskedCapsules, [J, D])],
    output: classifier
      ? [
          fp32(IO_NAMES.lengths, [J], { label_filename: files.labels ?? 'labels.txt' }),
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
  return `${header
    .split('\n')
    .map((l) => `# ${l}`.trimEnd())
    .join('\n')}\n${body.endsWith('\n') ? body : `${body}\n`}`;
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
  // The fields' own types: protobuf would wrap an int32 past 2^31 - 1 (99999999999 instances became 1215752191).
  const int32 = 2 ** 31 - 1;
  for (const [field, value, max] of [
    ['maxBatchSize', options.maxBatchSize, int32],
    ['instanceCount', options.instanceCount, int32],
    ['maxQueueDelayUs', options.maxQueueDelayUs, Number.MAX_SAFE_INTEGER],
  ] as const) {
    if (value !== undefined && !(Number.isInteger(value) && value >= 1 && value <= max)) {
      throw new Error(`Triton ${field} must be an integer from 1 to ${max}, got ${value}`);
    }
  }
  const root = resolve(options.dir);
  if (existsSync(root) && !statSync(root).isDirectory())
    throw new Error(`the Triton repository ${options.dir} is a file: give a directory for the model repository`);
  if (!existsSync(dirname(root))) throw new Error(`the parent of the Triton repository ${options.dir} does not exist: create it first`);
  refuseToReplace(
    [name, `${name}_decoder`].map((model) => join(options.dir, model)),
    options.overwrite,
    {
      option: 'triton.name or triton.dir',
      flag: '--triton-name or --triton directory',
    },
  );
}

/** The numbered version folders in a model folder. */
function versionsIn(folder: string): number[] {
  if (!existsSync(folder)) return [];
  return readdirSync(folder, { withFileTypes: true })
    .filter((e) => e.isDirectory() && /^[1-9][0-9]{0,8}$/.test(e.name))
    .map((e) => Number(e.name));
}

/** The version and labels file a model folder's config.pbtxt serves, or undefined when it pins none or cannot be read. */
function servedFiles(folder: string): { version: number; labels?: string } | undefined {
  try {
    const config = parseConfigText(readFileSync(join(folder, 'config.pbtxt'), 'utf8')) as {
      version_policy?: { specific?: { versions?: number[] } };
      output?: Array<{ label_filename?: string }>;
    };
    const versions = config.version_policy?.specific?.versions;
    if (versions?.length !== 1) return undefined;
    return { version: versions[0]!, labels: config.output?.find((o) => o.label_filename)?.label_filename };
  } catch {
    return undefined;
  }
}

/** The previous writer's temp folders inside the repository: `.tmp-<pid>-<time>-[old-]<folder>`. */
const LEGACY_TEMP = /^\.tmp-(?<pid>\d+)-\d+-(?<old>old-)?(?<folder>.+)$/;

/**
 * What killed exports left: temp folders beside the repository and, inside it, the previous writer's temp folders
 * (a model folder it had moved aside and not put back is moved back first), and, in the model folders being
 * replaced, versions and labels files that no config.pbtxt serves. Returns what was removed or restored.
 */
export function sweepTritonLeftovers(dir: string, folders: string[]): string[] {
  const root = resolve(dir);
  const done = sweepTempFiles(dirname(root), [basename(root)]).map((name) => join(dirname(root), name));
  if (!existsSync(root)) return done;
  for (const name of readdirSync(root)) {
    const match = LEGACY_TEMP.exec(name);
    if (!match?.groups || processAlive(Number(match.groups.pid))) continue;
    const target = join(root, match.groups.folder!);
    if (match.groups.old && !existsSync(target)) {
      renameSync(join(root, name), target);
      done.push(`${join(root, name)} -> ${target}`);
    } else {
      rmSync(join(root, name), { recursive: true, force: true });
      done.push(join(root, name));
    }
  }
  for (const folder of folders.map((f) => join(root, f))) {
    const served = servedFiles(folder);
    if (!served || !versionsIn(folder).includes(served.version)) continue;
    for (const version of versionsIn(folder).filter((v) => v !== served.version)) {
      rmSync(join(folder, String(version)), { recursive: true, force: true });
      done.push(join(folder, String(version)));
    }
    for (const labels of readdirSync(folder).filter((f) => /^labels(\.\d+)?\.txt$/.test(f) && f !== served.labels)) {
      if (served.labels === undefined) break;
      rmSync(join(folder, labels), { force: true });
      done.push(join(folder, labels));
    }
  }
  return done;
}

/**
 * Write the repository: the classifier and decoder bytes (already encoded, at any precision) with their
 * configs, built beside the repository and moved in as the file's header describes. Existing model folders are
 * replaced only with `overwrite`. Throws one-line errors; on failure nothing is left behind and replaced folders
 * still serve their old model.
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
  const name = options.name ?? 'capsnet';
  // The decoder goes in first, the classifier (which records its decoder's hash) last.
  const plan = [
    { folder: `${name}_decoder`, model: 'decoder' as const, onnx: bytes.decoder, labels: false },
    { folder: name, model: 'classifier' as const, onnx: bytes.model, labels: true },
  ];
  const fail = (e: unknown, what: string): never => {
    const line = asFileSystemError(e, what).message;
    throw new Error(`cannot write the Triton repository ${options.dir}: ${line}`, { cause: e });
  };
  try {
    sweepTritonLeftovers(
      options.dir,
      plan.map((p) => p.folder),
    );
  } catch (e) {
    fail(e, options.dir);
  }
  const existing = plan.map((p) => existsSync(join(root, p.folder)));
  // One version number for the pair: past every version either folder holds.
  const version = Math.max(0, ...plan.flatMap((p) => versionsIn(join(root, p.folder)))) + 1;
  const labelsFile = existing.some(Boolean) ? `labels.${version}.txt` : 'labels.txt';
  const stage = tempPathFor(root);
  const files: string[] = [];
  try {
    for (const p of plan) {
      const folder = join(stage, p.folder);
      mkdirSync(join(folder, String(version)), { recursive: true });
      // Each file and folder is flushed before it is renamed into the repository (as files/atomic.ts does), so a
      // power loss cannot leave a switched config.pbtxt beside an empty model.
      writeFileDurable(join(folder, String(version), 'model.onnx'), p.onnx);
      if (p.labels) writeFileDurable(join(folder, labelsFile), `${classLabels.join('\n')}\n`);
      writeFileDurable(join(folder, 'config.pbtxt'), configText(tritonModelConfig(config, p.model, options, { version, labels: labelsFile }), header));
      for (const d of [join(folder, String(version)), folder]) syncDirectory(d);
      files.push(...['config.pbtxt', ...(p.labels ? [labelsFile] : []), join(String(version), 'model.onnx')].map((f) => join(options.dir, p.folder, f)));
    }
  } catch (e) {
    rmSync(stage, { recursive: true, force: true });
    fail(e, options.dir);
  }
  syncDirectory(stage);
  if (!existsSync(root)) {
    // A new repository: both models appear at once.
    try {
      renameSync(stage, root);
      syncDirectory(dirname(root));
    } catch (e) {
      rmSync(stage, { recursive: true, force: true });
      fail(e, options.dir);
    }
    return { models: plan.map((p) => join(options.dir, p.folder)).reverse(), files: reorder(files, name) };
  }
  const switched: { folder: string; oldConfig: string }[] = [];
  try {
    plan.forEach((p, k) => {
      const target = join(root, p.folder);
      if (!existing[k]) {
        renameSync(join(stage, p.folder), target);
        syncDirectory(root);
        return;
      }
      renameSync(join(stage, p.folder, String(version)), join(target, String(version)));
      if (p.labels) renameSync(join(stage, p.folder, labelsFile), join(target, labelsFile));
      // Kept for a rollback should the other folder fail; then the switch: one rename.
      const oldConfig = join(stage, `${p.folder}.config.pbtxt.old`);
      if (existsSync(join(target, 'config.pbtxt'))) copyFileSync(join(target, 'config.pbtxt'), oldConfig);
      syncDirectory(target);
      renameSync(join(stage, p.folder, 'config.pbtxt'), join(target, 'config.pbtxt'));
      syncDirectory(target);
      switched.push({ folder: target, oldConfig });
    });
  } catch (e) {
    for (const s of switched) if (existsSync(s.oldConfig)) renameSync(s.oldConfig, join(s.folder, 'config.pbtxt'));
    rmSync(stage, { recursive: true, force: true });
    try {
      sweepTritonLeftovers(
        options.dir,
        plan.map((p) => p.folder),
      );
    } catch {
      // the next export sweeps again
    }
    fail(e, options.dir);
  }
  rmSync(stage, { recursive: true, force: true });
  sweepTritonLeftovers(
    options.dir,
    plan.map((p) => p.folder),
  );
  return { models: plan.map((p) => join(options.dir, p.folder)).reverse(), files: reorder(files, name) };
}

/** The classifier's files first, as before. */
function reorder(files: string[], name: string): string[] {
  const decoder = `${name}_decoder`;
  const isDecoder = (f: string) => f.split(/[\\/]/).includes(decoder);
  return [...files.filter((f) => !isDecoder(f)), ...files.filter(isDecoder)];
}
