/**
 * Issue 13: the baseline CNNs as a model family (parameter counts against the paper, training through `capsnet
 * train`'s loop, ONNX export and parity), the authors'-code config block (export parity, loss and optimizer
 * effects), the routing trace, Table 1's seeds statistics and the paper-scale data refusal.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import * as ort from 'onnxruntime-node';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import {
  AUTHORS_CODE_CHOICES,
  type BaselineCnnConfig,
  MNIST_SHAPE,
  PAPER_BASELINE_PARAMETERS,
  Rng,
  baselineConfig,
  baselineParameterCount,
  capsnetParameterCount,
  matchedBaseline,
  presetConfig,
} from '@capsnet-onnx/core';
import { Adam } from '../../../packages/capsnet/src/train/adam.ts';
import { loadCheckpoint } from '../../../packages/capsnet/src/files/checkpoint.ts';
import { forward, initParams, marginLoss } from '../../../packages/capsnet/src/model/capsnet.ts';
import { readWeights } from '../../../packages/capsnet/src/train/loop.ts';
import { baselineForward, initBaseline } from '../../../packages/capsnet/src/model/baseline-cnn.ts';
import { train } from '../../../packages/capsnet/src/train/trainer.ts';
import { buildBaselineCnnModel, buildCapsNetModels, exportRun } from '../../../packages/capsnet/src/export/exporter.ts';
import { encodeModel } from '../../../packages/capsnet/src/export/onnx-schema.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';
import { baselineParity } from '../../../packages/capsnet/src/parity/baseline.ts';
import { checkPaperData, loadData } from '../../../packages/capsnet/src/experiments/common.ts';
import { meanStd } from '../../../packages/capsnet/src/experiments/mnist-table.ts';
import { routingTrace } from '../../../packages/capsnet/src/experiments/routing.ts';

let scratch: string;
before(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
  scratch = mkdtempSync(join(tmpdir(), 'capsnet-baselines-'));
});
after(() => rmSync(scratch, { recursive: true, force: true }));

const provenance = { classLabels: ['0', '1', '2', '3', '4'], dataset: 'random', testAccuracy: null, checkpointSha256: 'none' };

function randomImages(count: number, h: number, w: number, c: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: count * h * w * c }, () => rng.next());
}

async function ortRun(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'] });
  const out = await session.run(feeds);
  await session.release();
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('parameter counts against the paper', () => {
  test('Table 1 baseline 35.4M (no pooling), MultiMNIST baseline 24.56M, CapsNet 8.2M / 6.8M / 11.36M', () => {
    const mnist = baselineParameterCount(baselineConfig('mnist', PAPER_BASELINE_PARAMETERS.mnist.shape));
    assert.ok(Math.abs(mnist - 35.4e6) < 0.05e6, `Table 1 baseline: ${mnist}`);
    const multi = baselineParameterCount(baselineConfig('multimnist', PAPER_BASELINE_PARAMETERS.multimnist.shape));
    assert.ok(Math.abs(multi - 24.56e6) < 0.05e6, `MultiMNIST baseline: ${multi}`);
    const caps = presetConfig('paper', MNIST_SHAPE);
    assert.ok(Math.abs(capsnetParameterCount(caps) - 8.2e6) < 0.05e6);
    assert.ok(Math.abs(capsnetParameterCount(caps, false) - 6.8e6) < 0.05e6);
    const caps36 = presetConfig('paper', { ...MNIST_SHAPE, inputHeight: 36, inputWidth: 36 });
    assert.ok(Math.abs(capsnetParameterCount(caps36) - 11.36e6) < 0.01e6, `CapsNet 36x36: ${capsnetParameterCount(caps36)}`);
  });

  test('the affNIST CNN is sized to the CapsNet it is compared with', () => {
    const shape = { ...MNIST_SHAPE, inputHeight: 40, inputWidth: 40 };
    const target = capsnetParameterCount(presetConfig('paper', shape));
    const cnn = matchedBaseline(shape, target);
    assert.ok(Math.abs(baselineParameterCount(cnn) - target) / target < 0.001, `${baselineParameterCount(cnn)} vs ${target}`);
  });
});

describe('baseline CNN export', () => {
  const cases: Array<[string, Partial<BaselineCnnConfig>]> = [
    ['same, pooled on odd sizes, softmax', { convChannels: [4, 6], poolAfter: [0, 1], fc: [8], output: 'softmax' }],
    ['valid 3x3, no pooling, sigmoid', { convChannels: [3, 5, 4], kernel: 3, padding: 'valid', poolAfter: [], fc: [7, 6], output: 'sigmoid' }],
  ];
  for (const [name, overrides] of cases) {
    test(`ONNX Runtime matches tfjs: ${name}`, async () => {
      const config = baselineConfig('mnist', { inputHeight: 13, inputWidth: 11, inputChannels: 2, numClasses: 5 }, { dropout: 0.5, ...overrides });
      const params = initBaseline(config, 3);
      const weights = await readWeights(params);
      const images = randomImages(4, 13, 11, 2, 9);
      const expected = tf.tidy(() => baselineForward(params, tf.tensor4d(images, [4, 13, 11, 2]), config));
      const logits = (await expected.data()) as Float32Array;
      const model = buildBaselineCnnModel(config, weights, provenance);
      const out = await ortRun(encodeModel(model), { images: new ort.Tensor('float32', images, [4, 13, 11, 2]) });
      assert.ok(maxAbsDiff(out.logits!, logits) < 1e-5, `max diff ${maxAbsDiff(out.logits!, logits)}`);
      const probs = out.probabilities!;
      if (config.output === 'softmax') {
        for (let n = 0; n < 4; n++) assert.ok(Math.abs(probs.subarray(n * 5, n * 5 + 5).reduce((a, b) => a + b, 0) - 1) < 1e-5);
      } else {
        assert.ok(Math.abs(probs[0]! - 1 / (1 + Math.exp(-logits[0]!))) < 1e-6);
      }
      assert.equal(model.metadata_props!.find((p: { key: string; value: string }) => p.key === 'capsnet.model')!.value, 'baseline-cnn');
      tf.dispose([expected, ...Object.values(params)]);
    });
  }

  test('`capsnet train --model baseline-cnn` trains through the shared loop, checkpoints, exports and passes parity', { timeout: 240_000 }, async () => {
    const out = join(scratch, 'baseline-run');
    const result = await train({
      model: 'baseline-cnn',
      preset: 'small',
      data: 'mnist-sample',
      epochs: 1,
      batchSize: 16,
      backend: 'cpu',
      seed: 5,
      out,
      resume: false,
      checkpointEvery: 0,
      trainLimit: 32,
      testLimit: 16,
      log: () => {},
      progressBar: false,
      baselineOverrides: { convChannels: [4, 4, 4], fc: [8, 8], poolAfter: [0, 1] },
    });
    const checkpoint = loadCheckpoint(out);
    assert.equal(checkpoint.model?.family, 'baseline-cnn');
    assert.deepEqual(checkpoint.model?.config.convChannels, [4, 4, 4]);
    assert.equal(result.parameters, baselineParameterCount(checkpoint.model!.config));
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(metrics.length, 1);
    assert.ok(Number.isFinite(metrics[0].cross_entropy_loss) && Number.isFinite(metrics[0].train_cross_entropy_loss));
    assert.equal('margin_loss' in metrics[0], false);
    const exported = exportRun(out, { out: join(out, 'model.onnx') });
    assert.equal(exported.family, 'baseline-cnn');
    assert.equal(exported.parameters, result.parameters);
    const parity = await baselineParity(join(out, 'model.onnx'), out, { digits: 8, random: 2 });
    assert.ok(parity.ok, `max |logit diff| ${parity.maxAbsLogitDiff}`);
    assert.equal(parity.argmaxAgreement, 1);
    assert.throws(() => exportRun(out, { out: join(out, 'other.onnx'), routingIterations: 2 }), /baseline CNN \(no routing\)/);
    assert.throws(
      () => exportRun(out, { out: join(out, 'other.onnx'), compute: 'fp32' }),
      /other precisions, compute precisions and Triton repositories apply to CapsNet runs; this run is a baseline CNN \(fp32 weights and compute\)/,
    );
    // Its one file is guarded like a CapsNet's pair: replaced only when asked.
    assert.throws(() => exportRun(out, { out: join(out, 'model.onnx') }), /model\.onnx already exists: pass overwrite: true to replace it/);
    const cli = await execa('node', [CLI, 'export', out, '-o', join(out, 'model.onnx')], { cwd: ROOT, reject: false });
    assert.equal(cli.exitCode, 1);
    assert.match(cli.stderr, /^capsnet: .*model\.onnx already exists: pass --overwrite to replace it, or choose another -o path$/);
    assert.equal(exportRun(out, { out: join(out, 'model.onnx'), overwrite: true }).family, 'baseline-cnn');
  });
});

describe("the authors' code's choices", () => {
  test("defaults are the paper's: absent fields change nothing; validation names the field", () => {
    const paper = presetConfig('small', MNIST_SHAPE);
    for (const key of Object.keys(AUTHORS_CODE_CHOICES)) assert.equal(key in paper, false, key);
    assert.throws(() => presetConfig('small', MNIST_SHAPE, { marginLossScale: 0 }), /config\.marginLossScale must be a positive number/);
    assert.throws(() => presetConfig('small', MNIST_SHAPE, { init: 'he' as never }), /config\.init/);
  });

  test("margin loss: the authors' 0.5 and class mean are 0.5 / classes of the paper's sum", () => {
    const config = presetConfig('small', MNIST_SHAPE);
    const lengths = tf.tensor2d(
      Float32Array.from({ length: 30 }, (_, i) => (i * 0.37) % 1),
      [3, 10],
    );
    const labels = tf.oneHot(tf.tensor1d([1, 4, 9], 'int32'), 10).toFloat() as tf.Tensor2D;
    const paper = marginLoss(lengths, labels, config).dataSync()[0]!;
    const authors = marginLoss(lengths, labels, { ...config, marginLossScale: 0.5, marginLossReduction: 'mean' }).dataSync()[0]!;
    assert.ok(paper > 0);
    assert.ok(Math.abs(authors - (paper * 0.5) / 10) < 1e-6, `${authors} vs ${paper}`);
  });

  test('Adam: epsilon and the learning-rate floor come from the config', () => {
    const adam = new Adam({ learningRate: 1e-3, decayRate: 0.5, decaySteps: 1, floor: 1e-6 });
    assert.equal(adam.learningRate(100), 1e-6);
    assert.ok(adam.learningRate(1) > 4.9e-4);
  });

  test('the DigitCaps bias and primary scaling export with parity; truncated-normal init stays within 2 sigma', async () => {
    const config = presetConfig(
      'small',
      { inputHeight: 20, inputWidth: 20, inputChannels: 1, numClasses: 4 },
      { ...AUTHORS_CODE_CHOICES, conv1Filters: 8, primaryMaps: 2, decoderHidden: [8, 8], routing: { algorithm: 'dynamic', iterations: 3 } },
    );
    const params = initParams(config, 11);
    const w = (await params['digit/W']!.data()) as Float32Array;
    assert.ok(w.every((v) => Math.abs(v) <= 0.2 + 1e-7) && w.some((v) => Math.abs(v) > 0.1), 'W ~ truncated N(0, 0.1)');
    assert.ok(((await params['digit/bias']!.data()) as Float32Array).every((v) => Math.abs(v - 0.1) < 1e-7));
    assert.ok(((await params['primary/bias']!.data()) as Float32Array).every((v) => Math.abs(v - 0.1) < 1e-7));
    const images = randomImages(3, 20, 20, 1, 4);
    const ref = tf.tidy(() => forward(params, tf.tensor4d(images, [3, 20, 20, 1]), config).lengths);
    const expected = (await ref.data()) as Float32Array;
    const { model } = buildCapsNetModels(config, await readWeights(params), { ...provenance, classLabels: ['a', 'b', 'c', 'd'] });
    const out = await ortRun(encodeModel(model), { images: new ort.Tensor('float32', images, [3, 20, 20, 1]) });
    assert.ok(maxAbsDiff(out.lengths!, expected) < 1e-5, `lengths differ by ${maxAbsDiff(out.lengths!, expected)}`);
    // without the bias the lengths differ: the test would notice an exporter that dropped it
    const noBias = tf.tidy(() => forward(params, tf.tensor4d(images, [3, 20, 20, 1]), { ...config, digitCapsBias: null }).lengths);
    assert.ok(maxAbsDiff((await noBias.data()) as Float32Array, expected) > 1e-4);
    tf.dispose([ref, noBias, ...Object.values(params)]);
  });
});

describe('routing trace and Table 1 statistics', () => {
  test('per-iteration changes: R values of logit and coupling change, R-1 of capsule change; iteration 1 does not depend on R', async () => {
    const config = presetConfig('small', MNIST_SHAPE, { conv1Filters: 8, primaryMaps: 2, decoderHidden: [8, 8] });
    const params = initParams(config, 2);
    // larger transforms than the init's, so the agreement is not vanishingly small
    params['digit/W']!.assign(tf.mul(params['digit/W']!, 100));
    const probe = tf.tensor4d(randomImages(4, 28, 28, 1, 8), [4, 28, 28, 1]);
    const one = await routingTrace(params, config, probe, 1);
    const five = await routingTrace(params, config, probe, 5);
    assert.equal(one.logits.length, 1);
    assert.equal(one.capsules.length, 0);
    assert.equal(five.logits.length, 5);
    assert.equal(five.coupling.length, 5);
    assert.equal(five.capsules.length, 4);
    assert.ok(Math.abs(one.logits[0]! - five.logits[0]!) < 1e-6 * Math.max(1, five.logits[0]!));
    assert.ok([...five.logits, ...five.coupling, ...five.capsules].every((v) => Number.isFinite(v) && v >= 0));
    assert.ok(five.coupling[0]! > 0, 'the first update re-routes');
    tf.dispose([probe, ...Object.values(params)]);
  });

  test('mean and sample standard deviation', () => {
    const { mean, std } = meanStd([0.0025, 0.003, 0.0035]);
    assert.ok(Math.abs(mean - 0.003) < 1e-12);
    assert.ok(Math.abs(std - 0.0005) < 1e-12);
    assert.equal(meanStd([0.5]).std, 0);
  });

  test('paper scale refuses the embedded sample and says how to point at full MNIST', () => {
    assert.throws(() => checkPaperData('paper', 'mnist-sample'), /full MNIST.*--data idx:DIR/);
    assert.throws(() => loadData('mnist-sample', 10, 10, 'paper'), /--data idx:DIR/);
    assert.doesNotThrow(() => checkPaperData('ci', 'mnist-sample'));
    // medium is measured on the official 10,000 test digits too
    assert.throws(() => checkPaperData('medium', 'mnist-sample'), /--scale medium needs the full MNIST/);
    assert.doesNotThrow(() => checkPaperData('paper', 'mnist'));
  });
});
