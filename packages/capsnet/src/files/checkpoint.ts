/**
 * Checkpoint file: one self-describing binary, so it is replaced atomically as a whole.
 *   bytes 0..7   "CAPSCKPT"
 *   bytes 8..11  uint32 LE length L of the JSON header
 *   12..12+L     UTF-8 JSON: CheckpointHeader
 *   then zero padding to a multiple of 4, then every tensor's float32 LE data in header order.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  type BaselineCnnConfig,
  type CapsNetConfig,
  baselineParamShapes,
  paramShapes,
  validateBaselineConfig,
  validateConfig,
  withRoutingConfig,
} from '@capsnet-onnx/core';
import { systemErrorLine, writeFileAtomic } from './atomic.ts';

export const CHECKPOINT_FILE = 'checkpoint.bin';
const MAGIC = 'CAPSCKPT';

/** One line of metrics.jsonl. Test-set losses mask the decoder by the true label, like training. */
export interface EpochMetrics {
  epoch: number;
  step: number;
  test_accuracy: number;
  /** CapsNet runs: test margin and reconstruction losses, and their training averages. */
  margin_loss?: number;
  reconstruction_loss?: number;
  train_loss: number;
  train_margin_loss?: number;
  train_reconstruction_loss?: number;
  /** Baseline CNN runs: test and training cross entropy. */
  cross_entropy_loss?: number;
  train_cross_entropy_loss?: number;
  images_per_second: number;
  learning_rate: number;
  backend: string;
  seconds: number;
}

/** Running sums of the epoch in progress, so a mid-epoch resume reports the same epoch averages. */
export interface EpochProgress {
  stepsDone: number;
  images: number;
  loss: number;
  /** Sums of each named loss part times batch size (older checkpoints: margin and reconstruction fields). */
  parts?: Record<string, number>;
  margin?: number;
  reconstruction?: number;
  seconds: number;
}

/** The training data without its path: what exports carry (data/datasets.ts's loadDataset computes it). */
export interface DataProvenance {
  /** `mnist-sample`, or the scheme and the directory's base name: `idx:mnist-full`. */
  name: string;
  /** SHA-256 (hex) of each data file as on disk, keyed by file name (no directory). */
  files: Record<string, string>;
}

/** Which network the weights belong to; absent = CapsNet (`config`). */
export interface BaselineModelSpec {
  family: 'baseline-cnn';
  config: BaselineCnnConfig;
}

export interface CheckpointState {
  /** The CapsNet config; for a baseline CNN run, the preset whose training settings (learning rate, decay, shifts) it used. */
  config: CapsNetConfig;
  /** Set for a baseline CNN run: the weights are the CNN's. */
  model?: BaselineModelSpec;
  /** Completed epochs. */
  epoch: number;
  /** Completed optimizer steps (drives the learning-rate decay and Adam's bias correction). */
  step: number;
  seed: number;
  /** The --data spec as given (a local path for directory data): what --resume reloads. Never exported. */
  dataset: string;
  /** What an export records of the data instead of the spec (absent in older checkpoints). */
  data?: DataProvenance;
  classLabels: string[];
  backend: string;
  metrics: EpochMetrics[];
  /**
   * How the run slices the data; a resumed run keeps them so its steps line up with the original. `epochs`: the
   * total the run trains to, which a resume without `--epochs` continues to (absent in older checkpoints).
   */
  run: { batchSize: number; trainLimit?: number; testLimit?: number; preset?: string; epochs?: number };
  /** Present when the checkpoint was written mid-epoch. */
  progress?: EpochProgress;
  weights: Record<string, Float32Array>;
  /** Adam's first and second moments, keyed by weight name. */
  optimizer: { m: Record<string, Float32Array>; v: Record<string, Float32Array> };
  producer?: string;
}

interface TensorEntry {
  name: string;
  shape: number[];
}

interface CheckpointHeader extends Omit<CheckpointState, 'weights' | 'optimizer'> {
  format: 1;
  tensors: TensorEntry[];
}

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

export function checkpointPath(runDir: string): string {
  return join(runDir, CHECKPOINT_FILE);
}

/** Weight shapes of the checkpoint's network (CapsNet or baseline CNN). */
export function checkpointParamShapes(state: Pick<CheckpointState, 'config' | 'model'>): Record<string, number[]> {
  return state.model?.family === 'baseline-cnn' ? baselineParamShapes(state.model.config) : paramShapes(state.config);
}

export function encodeCheckpoint(state: CheckpointState): Uint8Array {
  const shapes = checkpointParamShapes(state);
  const tensors: TensorEntry[] = [];
  const arrays: Float32Array[] = [];
  const add = (name: string, shape: number[], data: Float32Array | undefined) => {
    if (!data) throw new CheckpointError(`checkpoint is missing tensor ${name}`);
    tensors.push({ name, shape });
    arrays.push(data);
  };
  for (const [name, shape] of Object.entries(shapes)) add(name, shape, state.weights[name]);
  for (const [name, shape] of Object.entries(shapes)) {
    if (state.optimizer.m[name]) add(`adam.m/${name}`, shape, state.optimizer.m[name]);
    if (state.optimizer.v[name]) add(`adam.v/${name}`, shape, state.optimizer.v[name]);
  }
  const { weights: _w, optimizer: _o, ...rest } = state;
  const header: CheckpointHeader = { format: 1, ...rest, tensors };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const dataStart = Math.ceil((12 + json.length) / 4) * 4;
  const totalFloats = arrays.reduce((n, a) => n + a.length, 0);
  const bytes = new Uint8Array(dataStart + totalFloats * 4);
  bytes.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(bytes.buffer).setUint32(8, json.length, true);
  bytes.set(json, 12);
  const floats = new Float32Array(bytes.buffer, dataStart, totalFloats);
  let offset = 0;
  for (const a of arrays) {
    floats.set(a, offset);
    offset += a.length;
  }
  return bytes;
}

export function saveCheckpoint(runDir: string, state: CheckpointState): void {
  writeFileAtomic(checkpointPath(runDir), encodeCheckpoint(state));
}

/** Decode and check a checkpoint: magic, header, every weight the config implies with the right shape. */
export function decodeCheckpoint(bytes: Uint8Array, source = 'checkpoint'): CheckpointState {
  const fail = (problem: string): never => {
    throw new CheckpointError(`${source}: ${problem}`);
  };
  if (bytes.length === 0) {
    fail('the file is empty (0 bytes): a run killed before its first checkpoint, or a copy that failed; train again (--overwrite) or restore the file');
  }
  const magic = new TextDecoder().decode(bytes.subarray(0, Math.min(8, bytes.length)));
  if (bytes.length < 12 && MAGIC.startsWith(magic))
    fail(`truncated at ${bytes.length} bytes, inside its header: the file is corrupted, re-run training or restore it`);
  if (bytes.length < 12 || magic !== MAGIC) {
    fail('not a capsnet checkpoint (bad magic): pass the directory that `capsnet train --out` wrote');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const jsonLength = view.getUint32(8, true);
  if (12 + jsonLength > bytes.length) fail('truncated header: the file is corrupted, re-run training or restore it');
  let header: CheckpointHeader;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + jsonLength))) as CheckpointHeader;
  } catch {
    return fail('corrupted header (invalid JSON): re-run training or restore the file');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('corrupted header (not a JSON object): re-run training or restore the file');
  if (header.format !== 1 || !Array.isArray(header.tensors)) fail(`unsupported checkpoint format ${String(header.format)}`);
  if (header.model !== undefined && header.model.family !== 'baseline-cnn') fail(`unknown model family ${JSON.stringify(header.model.family)}`);
  try {
    // Checkpoints written before `routing` existed carry `routingIterations` (core/routing.ts).
    if (header.config && typeof header.config === 'object') header.config = withRoutingConfig(header.config);
    validateConfig(header.config);
    if (header.model) validateBaselineConfig(header.model.config);
  } catch (e) {
    fail(`invalid config: ${(e as Error).message}`);
  }
  const dataStart = Math.ceil((12 + jsonLength) / 4) * 4;
  const totalFloats = header.tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  if (dataStart + totalFloats * 4 !== bytes.length) {
    fail(`expected ${dataStart + totalFloats * 4} bytes for the tensors its header lists, found ${bytes.length}: the file is truncated or corrupted`);
  }
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const floats = new Float32Array(aligned.buffer, aligned.byteOffset + dataStart, totalFloats);
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  let offset = 0;
  for (const t of header.tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1);
    tensors[t.name] = { shape: t.shape, data: floats.slice(offset, offset + size) };
    offset += size;
  }
  const weights: Record<string, Float32Array> = {};
  const optimizer: CheckpointState['optimizer'] = { m: {}, v: {} };
  for (const [name, shape] of Object.entries(checkpointParamShapes(header))) {
    const found = tensors[name];
    if (!found) fail(`weight ${name} is missing: the weights do not match the config`);
    if (found!.shape.join('x') !== shape.join('x')) {
      fail(`weight ${name} has shape [${found!.shape}] but the config implies [${shape}]: the weights do not match the config`);
    }
    weights[name] = found!.data;
    if (tensors[`adam.m/${name}`]) optimizer.m[name] = tensors[`adam.m/${name}`]!.data;
    if (tensors[`adam.v/${name}`]) optimizer.v[name] = tensors[`adam.v/${name}`]!.data;
  }
  const { format: _f, tensors: _t, ...rest } = header;
  return { ...rest, weights, optimizer };
}

export function loadCheckpoint(runDir: string): CheckpointState & { sha256: string; path: string } {
  // A file is the checkpoint itself, whatever its name (a copy, a download); a directory holds checkpoint.bin.
  const path = existsSync(runDir) && statSync(runDir).isFile() ? runDir : checkpointPath(runDir);
  if (!existsSync(path)) {
    throw new CheckpointError(`no checkpoint at ${path}: pass the directory that \`capsnet train --out DIR\` wrote`);
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EISDIR')
      throw new CheckpointError(
        `${path} is a directory, not a checkpoint: pass the run directory that \`capsnet train --out DIR\` wrote (it holds checkpoint.bin)`,
        { cause: e },
      );
    throw new CheckpointError(systemErrorLine(e, path) ?? `cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  const state = decodeCheckpoint(bytes, path);
  return { ...state, sha256: createHash('sha256').update(bytes).digest('hex'), path };
}
