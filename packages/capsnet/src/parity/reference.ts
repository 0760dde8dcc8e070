/**
 * The parity reference: the checkpoint's TensorFlow.js forward pass (model/capsnet.ts), on tfjs's plain-JS CPU
 * backend in float32. Everything ONNX Runtime produces is compared against this. It runs the file's routing
 * (`capsnet export --routing N` re-exports the same weights with another iteration count): see run.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import { type CapsNetConfig, derivedSizes, paramShapes } from '@capsnet-onnx/core';
import { readFileSync } from 'node:fs';
import { weightsFromModel } from '../export/read-weights.ts';
import { variablesFromWeights } from '../model/layers.ts';
import { loadCheckpoint } from '../files/checkpoint.ts';
import { setCpuBackend } from '../train/backends/backend.ts';
import { type CapsNetParams, forward } from '../model/capsnet.ts';

export interface Reference {
  config: CapsNetConfig;
  dataset: string;
  classLabels: string[];
  checkpointSha256: string;
  checkpointPath: string;
  lengths: Float32Array;
  capsules: Float32Array;
  reconstruction: Float32Array;
  /** c_ij of the last routing iteration, [count, inputCaps, routedCaps] flat (parity/coupling.ts checks the file's). */
  coupling: Float32Array;
  /** Capsules masked by the longest one: the decoder check's input. */
  masked: Float32Array;
  labels: number[];
  /** Per image: the gap between its two longest capsules. */
  topGap: number[];
  latenciesMs: number[];
  backend: string;
}

export interface LoadedCheckpoint {
  config: CapsNetConfig;
  dataset: string;
  classLabels: string[];
  sha256: string;
  path: string;
  params: CapsNetParams;
}

export async function loadReferenceModel(runDir: string): Promise<LoadedCheckpoint> {
  await setCpuBackend();
  await tf.ready();
  const state = loadCheckpoint(runDir);
  // Unnamed variables: tfjs names them globally, and a process may load more than one reference (tests do).
  const params: CapsNetParams = variablesFromWeights(paramShapes(state.config), state.weights, false);
  return { config: state.config, dataset: state.dataset, classLabels: state.classLabels, sha256: state.sha256, path: state.path, params };
}

/**
 * The reference from an fp32 model file's weights (export/read-weights.ts) where no checkpoint ships: the same
 * forward pass on the same float32 values the checkpoint held. `sha256` is the checkpoint the file records.
 * @throws Error (one line) for a file that is not an fp32 CapsNet export.
 */
export async function loadReferenceFromModel(file: string): Promise<LoadedCheckpoint> {
  await setCpuBackend();
  await tf.ready();
  const { metadata, weights } = weightsFromModel(new Uint8Array(readFileSync(file)), file);
  const params: CapsNetParams = variablesFromWeights(paramShapes(metadata.config), weights, false);
  return { config: metadata.config, dataset: metadata.dataset, classLabels: metadata.classLabels, sha256: metadata.checkpointSha256, path: file, params };
}

function run(model: LoadedCheckpoint, images: Float32Array, count: number) {
  const { config } = model;
  return tf.tidy(() => {
    const x = tf.tensor4d(images, [count, config.inputHeight, config.inputWidth, config.inputChannels]);
    const out = forward(model.params, x, config);
    return [out.lengths, out.capsules, out.reconstruction, out.coupling] as const;
  });
}

/**
 * Images per forward pass of the reference and of each backend (measure.ts): the inputs stream through in batches
 * of this size, so parity's memory does not grow with the input count (a whole-set pass held every image's
 * u_hat and routing tensors at once: ~4 GB for 500 paper-size inputs). Per-image results do not depend on it.
 */
export const PARITY_BATCH = 32;

export async function referenceOutputs(
  model: LoadedCheckpoint,
  images: Float32Array,
  count: number,
  latencyRuns: number,
  batchSize = PARITY_BATCH,
): Promise<Reference> {
  const { config } = model;
  const k = config.numClasses;
  const d = config.digitDim;
  const pixels = images.length / count;
  const outPixels = config.inputHeight * config.inputWidth * config.inputChannels;
  const lengths = new Float32Array(count * k);
  const capsules = new Float32Array(count * k * d);
  const reconstruction = new Float32Array(count * outPixels);
  const { numPrimaryCaps, routedCaps } = derivedSizes(config);
  const couplingSize = numPrimaryCaps * routedCaps;
  const coupling = new Float32Array(count * couplingSize);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const [l, c, r, cc] = run(model, images.subarray(start * pixels, (start + n) * pixels), n);
    lengths.set((await l.data()) as Float32Array, start * k);
    capsules.set((await c.data()) as Float32Array, start * k * d);
    reconstruction.set((await r.data()) as Float32Array, start * outPixels);
    coupling.set((await cc.data()) as Float32Array, start * couplingSize);
    tf.dispose([l, c, r, cc]);
  }
  const labels: number[] = [];
  const topGap: number[] = [];
  const masked = new Float32Array(count * k * d);
  for (let n = 0; n < count; n++) {
    const row = Array.from(lengths.subarray(n * k, (n + 1) * k));
    let best = 0;
    for (let j = 1; j < k; j++) if (row[j]! > row[best]!) best = j;
    const sorted = [...row].sort((a, b) => b - a);
    labels.push(best);
    topGap.push(sorted[0]! - sorted[1]!);
    masked.set(capsules.subarray((n * k + best) * d, (n * k + best + 1) * d), (n * k + best) * d);
  }
  const latenciesMs: number[] = [];
  for (let i = 0; i < latencyRuns + 1; i++) {
    const start = performance.now();
    const outs = run(model, images.subarray((i % count) * pixels, ((i % count) + 1) * pixels), 1);
    await outs[0].data();
    await outs[2].data();
    tf.dispose([...outs]);
    if (i > 0) latenciesMs.push(performance.now() - start); // the first call warms up
  }
  return {
    config,
    dataset: model.dataset,
    classLabels: model.classLabels,
    checkpointSha256: model.sha256,
    checkpointPath: model.path,
    lengths,
    capsules,
    reconstruction,
    coupling,
    masked,
    labels,
    topGap,
    latenciesMs,
    backend: `tfjs ${tf.getBackend()}`,
  };
}
