/**
 * Parity for a baseline CNN export: the checkpoint's TensorFlow.js forward pass (model/baseline-cnn.ts, tfjs
 * cpu backend, float32) against the exported ONNX file on onnxruntime-node's CPU execution provider, on the same
 * inputs as `capsnet parity` (test digits, random images, all-zero and all-one). The CapsNet's provider matrix
 * (CUDA, WebGPU, browsers) is for CapsNet files; a baseline file is checked on node-cpu.
 */
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { type CapsNetConfig, baselineParamShapes } from '@capsnet-onnx/core';
import { checkpointPath, loadCheckpoint } from '../files/checkpoint.ts';
import { setCpuBackend } from '../train/backends/backend.ts';
import { argmaxRows } from '../train/loop.ts';
import { variablesFromWeights } from '../model/layers.ts';
import { baselineForward } from '../model/baseline-cnn.ts';
import { BASELINE_IO_NAMES } from '../export/baseline-cnn-graph.ts';
import { parityInputs } from './inputs.ts';

/** Largest allowed |tfjs - ORT| of a logit (logits are O(10); float32 sums over 10^5 terms differ by ~1e-5). */
export const BASELINE_LOGIT_TOLERANCE = 1e-3;

export interface BaselineParityReport {
  model: string;
  checkpoint: string;
  backend: 'node-cpu';
  inputs: number;
  kinds: string[];
  maxAbsLogitDiff: number;
  argmaxAgreement: number;
  tolerance: number;
  ok: boolean;
}

/** Whether the run directory (or checkpoint.bin) holds a baseline CNN (false when it holds no checkpoint at all). */
export function isBaselineRun(checkpointDir: string): boolean {
  if (!existsSync(checkpointDir.endsWith('.bin') ? checkpointDir : checkpointPath(checkpointDir))) return false;
  return loadCheckpoint(checkpointDir).model?.family === 'baseline-cnn';
}

export async function baselineParity(model: string, checkpointDir = dirname(model), counts = { digits: 16, random: 6 }): Promise<BaselineParityReport> {
  const state = loadCheckpoint(checkpointDir);
  if (state.model?.family !== 'baseline-cnn') throw new Error(`${checkpointDir} is not a baseline CNN run`);
  const config = state.model.config;
  const inputs = parityInputs(config as unknown as CapsNetConfig, state.dataset, counts);
  await setCpuBackend();
  await tf.ready();
  const params = variablesFromWeights(baselineParamShapes(config), state.weights, false, 'parity/');
  const ref = tf.tidy(() =>
    baselineForward(params, tf.tensor4d(inputs.images, [inputs.count, config.inputHeight, config.inputWidth, config.inputChannels]), config),
  );
  const expected = (await ref.data()) as Float32Array;
  tf.dispose([ref, ...Object.values(params)]);
  const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'] });
  const feeds = {
    [BASELINE_IO_NAMES.images]: new ort.Tensor('float32', inputs.images, [inputs.count, config.inputHeight, config.inputWidth, config.inputChannels]),
  };
  const out = await session.run(feeds);
  const got = out[BASELINE_IO_NAMES.logits]!.data as Float32Array;
  await session.release();
  let maxAbsLogitDiff = 0;
  for (let i = 0; i < expected.length; i++) maxAbsLogitDiff = Math.max(maxAbsLogitDiff, Math.abs(expected[i]! - got[i]!));
  const a = argmaxRows(expected, config.numClasses);
  const b = argmaxRows(got, config.numClasses);
  const agree = a.reduce((n, v, i) => n + Number(v === b[i]), 0) / a.length;
  return {
    model,
    checkpoint: state.path,
    backend: 'node-cpu',
    inputs: inputs.count,
    kinds: inputs.kinds,
    maxAbsLogitDiff,
    argmaxAgreement: agree,
    tolerance: BASELINE_LOGIT_TOLERANCE,
    ok: maxAbsLogitDiff <= BASELINE_LOGIT_TOLERANCE,
  };
}
