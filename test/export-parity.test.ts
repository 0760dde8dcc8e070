/**
 * Exported model vs the tfjs forward pass (model/capsnet.ts, wasm backend): ONNX Runtime CPU must give the same
 * lengths (<= 1e-5), capsules and reconstructions (<= 1e-4) and identical argmax, for
 *  - the trained small-preset checkpoint on all 2,000 embedded test digits,
 *  - the same weights re-exported with 1, 2, 3 and 5 routing iterations,
 *  - a 32x32x3, 5-class model with random weights.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { type CapsNetConfig, derivedSizes, paramShapes, presetConfig } from '@capsnet-onnx/core';
import { loadCheckpoint } from '../packages/capsnet/src/files/checkpoint.ts';
import { loadMnistSample } from '../packages/capsnet/src/data/datasets.ts';
import { type CapsNetParams, forward, initParams } from '../packages/capsnet/src/model/capsnet.ts';
import { variablesFromWeights } from '../packages/capsnet/src/model/layers.ts';
import { buildCapsNetModels, exportCheckpoint } from '../packages/capsnet/src/export/exporter.ts';
import { encodeModel } from '../packages/capsnet/src/export/onnx-schema.ts';
import { ROOT, trainedSmallRun } from './support/fixtures.ts';
import { TOLERANCES } from '../packages/capsnet/src/parity/matrix.ts';

const OUTPUTS = ['lengths', 'capsules', 'reconstruction', 'coupling'] as const;
type OutputName = (typeof OUTPUTS)[number];
const TOLERANCE: Record<OutputName, number> = { lengths: 1e-5, capsules: 1e-4, reconstruction: 1e-4, coupling: 1e-5 };

interface Comparison {
  images: number;
  maxDiff: Record<OutputName, number>;
  argmaxMismatches: number;
  correct: number;
  /** Smallest gap between the two longest capsules (tfjs), to show the argmax check is not decided by noise. */
  minTop2Gap: number;
}

/** model/capsnet.ts forward, keeping only the four outputs the ONNX model has. */
function tfForward(params: CapsNetParams, x: Float32Array, dims: [number, number, number, number], config: CapsNetConfig): Record<OutputName, tf.Tensor> {
  const [lengths, capsules, reconstruction, coupling] = tf.tidy(() => {
    const out = forward(params, tf.tensor4d(x, dims), config);
    return [out.lengths, out.capsules, out.reconstruction, out.coupling];
  });
  return { lengths: lengths!, capsules: capsules!, reconstruction: reconstruction!, coupling: coupling! };
}

function argmax(data: ArrayLike<number>, offset: number, n: number): number {
  let best = 0;
  for (let j = 1; j < n; j++) if (data[offset + j]! > data[offset + best]!) best = j;
  return best;
}

/** Run ONNX Runtime and tfjs over `count` images in batches; the largest absolute difference per output. */
async function compare(
  modelBytes: Uint8Array,
  params: CapsNetParams,
  config: CapsNetConfig,
  images: Float32Array,
  count: number,
  labels?: Int32Array,
  batch = 250,
): Promise<Comparison> {
  const session = await ort.InferenceSession.create(modelBytes, { executionProviders: ['cpu'] });
  const { pixels } = derivedSizes(config);
  const J = config.numClasses;
  const result: Comparison = {
    images: count,
    maxDiff: { lengths: 0, capsules: 0, reconstruction: 0, coupling: 0 },
    argmaxMismatches: 0,
    correct: 0,
    minTop2Gap: Infinity,
  };
  for (let start = 0; start < count; start += batch) {
    const n = Math.min(batch, count - start);
    const x = images.subarray(start * pixels, (start + n) * pixels);
    const dims = [n, config.inputHeight, config.inputWidth, config.inputChannels];
    const got = await session.run({ images: new ort.Tensor('float32', x, dims) });
    const ref = tfForward(params, x, dims as [number, number, number, number], config);
    for (const name of OUTPUTS) {
      const a = got[name]!.data as Float32Array;
      const b = (await ref[name].data()) as Float32Array;
      assert.equal(a.length, b.length, `${name} size`);
      let m = result.maxDiff[name];
      for (let i = 0; i < a.length; i++) {
        const d = Math.abs(a[i]! - b[i]!);
        if (!(d <= m)) m = d; // NaN-safe: a NaN difference becomes the max
      }
      result.maxDiff[name] = m;
    }
    const la = got.lengths!.data as Float32Array;
    const lb = (await ref.lengths.data()) as Float32Array;
    for (let r = 0; r < n; r++) {
      const pa = argmax(la, r * J, J);
      const row = Array.from(lb.subarray(r * J, (r + 1) * J)).sort((p, q) => q - p);
      const gap = row[0]! - row[1]!;
      // A flip where the reference's two longest capsules nearly tie is float32 rounding (kernels sum in a
      // CPU-dependent order), not a wrong graph: the parity matrix's tie rule.
      if (pa !== argmax(lb, r * J, J) && gap >= TOLERANCES.tieGap) result.argmaxMismatches++;
      if (labels && pa === labels[start + r]) result.correct++;
      result.minTop2Gap = Math.min(result.minTop2Gap, gap);
    }
    tf.dispose(Object.values(ref));
  }
  await session.release();
  return result;
}

function assertParity(label: string, c: Comparison): void {
  const diffs = OUTPUTS.map((o) => `${o} ${c.maxDiff[o].toExponential(2)}`).join(', ');
  console.log(
    `${label}: ${c.images} images, max |ORT - tfjs|: ${diffs}; argmax mismatches ${c.argmaxMismatches} (smallest top-2 length gap ${c.minTop2Gap.toExponential(2)})`,
  );
  for (const o of OUTPUTS) assert.ok(c.maxDiff[o] <= TOLERANCE[o], `${label}: ${o} differs by ${c.maxDiff[o]} > ${TOLERANCE[o]}`);
  assert.equal(c.argmaxMismatches, 0, `${label}: argmax differs on ${c.argmaxMismatches} images`);
}

let dir: string;
before(async () => {
  await tf.setBackend('wasm');
  dir = mkdtempSync(join(tmpdir(), 'capsnet-parity-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('ONNX Runtime CPU vs tfjs', () => {
  test('trained small checkpoint, 2,000 test digits, then re-exported with 1, 2, 3 and 5 routing iterations', { timeout: 600_000 }, async () => {
    const runDir = await trainedSmallRun();
    const checkpoint = loadCheckpoint(runDir);
    const out = join(dir, 'small.onnx');
    const exported = exportCheckpoint(runDir, { out });
    let checkerAvailable = true;
    try {
      execFileSync('/usr/bin/python3', ['-c', 'import onnx'], { stdio: 'pipe' });
    } catch (e) {
      checkerAvailable = false;
      console.warn(`onnx.checker not run on the trained model: /usr/bin/python3 cannot import onnx (${(e as Error).message.split('\n')[0]})`);
    }
    if (checkerAvailable) {
      const check = spawnSync('/usr/bin/python3', [join(ROOT, 'scripts', 'check_onnx.py'), out, exported.decoderPath], { encoding: 'utf8' });
      assert.equal(check.status, 0, `onnx.checker: ${check.stdout}${check.stderr}`);
      console.log(`onnx.checker.check_model(full_check=True) on the trained model and its decoder: ok`);
    }
    const params = variablesFromWeights(paramShapes(checkpoint.config), checkpoint.weights);
    const { test: split } = loadMnistSample();
    const full = await compare(encodeModel(exported.model), params, checkpoint.config, split.images, split.count, split.labels);
    assertParity(`trained small (routing ${checkpoint.config.routing.iterations})`, full);
    const accuracy = full.correct / split.count;
    const recorded = checkpoint.metrics.at(-1)?.test_accuracy;
    console.log(
      `ONNX accuracy ${(100 * accuracy).toFixed(2)}% on ${split.count} digits; checkpoint recorded ${recorded === undefined ? 'none' : `${(100 * recorded).toFixed(2)}%`}`,
    );
    if (recorded !== undefined) assert.ok(Math.abs(accuracy - recorded) <= 0.0025, `accuracy ${accuracy} vs recorded ${recorded}`);

    for (const iterations of [1, 2, 3, 5]) {
      const config = { ...checkpoint.config, routing: { ...checkpoint.config.routing, iterations } };
      const { model } = buildCapsNetModels(config, checkpoint.weights, {
        classLabels: checkpoint.classLabels,
        dataset: checkpoint.dataset,
        testAccuracy: null,
        checkpointSha256: checkpoint.sha256,
      });
      assert.equal(model.graph.node.filter((n) => n.op_type === 'Softmax').length, iterations);
      assertParity(`trained small, routing ${iterations}`, await compare(encodeModel(model), params, config, split.images, 200));
    }
    Object.values(params).forEach((v) => v.dispose());
  });

  test('32x32x3 input, 5 classes, random weights', async () => {
    const config = presetConfig('small', { inputHeight: 32, inputWidth: 32, inputChannels: 3, numClasses: 5 }, { conv1Filters: 32, decoderHidden: [64, 128] });
    const params = initParams(config, 11);
    // initParams draws W_ij from N(0, 0.01^2): capsule lengths then all sit near sqrt(epsilon) and their argmax is
    // noise. Scaling W up (still random) spreads the lengths so that argmax agreement means something.
    params['digit/W']!.assign(tf.mul(params['digit/W']!, 20));
    const weights: Record<string, Float32Array> = {};
    for (const [name, v] of Object.entries(params)) weights[name] = (await v.data()) as Float32Array;
    const { model } = buildCapsNetModels(config, weights, {
      classLabels: ['a', 'b', 'c', 'd', 'e'],
      dataset: 'random',
      testAccuracy: null,
      checkpointSha256: '',
    });
    let state = 12345;
    const count = 100;
    const images = Float32Array.from({ length: count * 32 * 32 * 3 }, () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state / 2 ** 32;
    });
    const result = await compare(encodeModel(model), params, config, images, count, undefined, 50);
    assertParity('32x32x3, 5 classes', result);
    Object.values(params).forEach((v) => v.dispose());
  });
});
