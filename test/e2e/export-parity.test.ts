/**
 * Exported models vs the tfjs forward pass, through `capsnet parity`'s library (parity/run.ts): the tfjs reference
 * (model/capsnet.ts) runs at the file's own routing and onnxruntime-node's CPU provider must match its lengths,
 * capsules, reconstructions, decoder and argmax (parity/matrix.ts's fp32 tolerances) and its coupling coefficients
 * (parity/coupling.ts), for
 *  - the trained small-preset checkpoint (onnx.checker on it; its accuracy over all 2,000 embedded test digits
 *    through the runtime is the checkpoint's),
 *  - the same weights re-exported with 1, 2, 3 and 5 routing iterations (`capsnet export --routing N`),
 *  - a 32x32x3, 5-class model with random weights.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { presetConfig } from '@capsnet-onnx/core';
import { CapsNet } from '@capsnet-onnx/runtime/node';
import { loadCheckpoint, saveCheckpoint } from '../../packages/capsnet/src/files/checkpoint.ts';
import { loadMnistSample } from '../../packages/capsnet/src/data/datasets.ts';
import { initParams } from '../../packages/capsnet/src/model/capsnet.ts';
import { exportCheckpoint } from '../../packages/capsnet/src/export/exporter.ts';
import { inspectFile } from '../../packages/capsnet/src/export/inspect.ts';
import { runParity } from '../../packages/capsnet/src/parity/run.ts';
import { ROOT, trainedSmallRun } from '../support/fixtures.ts';

/** `capsnet parity --backends node-cpu` on `model` against `runDir`; every check must pass at `iterations`. */
async function assertParity(label: string, model: string, runDir: string, iterations: number, counts = { digits: 16, random: 6 }): Promise<void> {
  const report = await runParity({ model, checkpoint: runDir, backends: ['node-cpu'], ...counts, latencyRuns: 1, log: () => {} });
  const cpu = report.rows.find((r) => r.backend === 'node-cpu')!;
  const m = cpu.maxAbs;
  console.log(
    `${label}: ${cpu.count} inputs, max |ORT - tfjs|: lengths ${m?.lengths.toExponential(2)}, capsules ${m?.capsules.toExponential(2)}, ` +
      `reconstruction ${m?.reconstruction.toExponential(2)}, coupling ` +
      `${report.coupling.maxAbs.toExponential(2)}; argmax ${cpu.argmax?.agree}/${cpu.argmax?.compared}`,
  );
  assert.equal(report.ok, true, `${label}: ${report.failures.join('; ')}`);
  assert.equal(cpu.status, 'pass', `${label}: ${cpu.reason}`);
  assert.deepEqual(report.coupling.routing, { algorithm: 'dynamic', iterations });
  assert.ok(report.coupling.maxAbs <= 1e-5, `${label}: coupling differs by ${report.coupling.maxAbs}`);
}

let dir: string;
before(async () => {
  await tf.setBackend('cpu');
  dir = mkdtempSync(join(tmpdir(), 'capsnet-parity-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('ONNX Runtime CPU vs tfjs, through capsnet parity', () => {
  test('trained small checkpoint, then re-exported with 1, 2, 3 and 5 routing iterations', { timeout: 600_000 }, async () => {
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
    await assertParity(`trained small (routing ${checkpoint.config.routing.iterations})`, out, runDir, checkpoint.config.routing.iterations);

    // The export's accuracy over every embedded test digit, through the runtime, is the one training recorded.
    const { test: split } = loadMnistSample();
    const model = await CapsNet.load(out, { device: 'cpu' });
    let correct = 0;
    try {
      const pixels = split.images.length / split.count;
      for (let start = 0; start < split.count; start += 250) {
        const n = Math.min(250, split.count - start);
        const results = await model.classify({ data: split.images.subarray(start * pixels, (start + n) * pixels), shape: [n, 28, 28, 1] });
        results.forEach((r, i) => {
          if (r.longest === split.labels[start + i]) correct++;
        });
      }
    } finally {
      await model.dispose();
    }
    const accuracy = correct / split.count;
    const recorded = checkpoint.metrics.at(-1)?.test_accuracy;
    console.log(
      `ONNX accuracy ${(100 * accuracy).toFixed(2)}% on ${split.count} digits; checkpoint recorded ` +
        `${recorded === undefined ? 'none' : `${(100 * recorded).toFixed(2)}%`}`,
    );
    if (recorded !== undefined) assert.ok(Math.abs(accuracy - recorded) <= 0.0025, `accuracy ${accuracy} vs recorded ${recorded}`);

    for (const iterations of [1, 2, 3, 5]) {
      const file = join(dir, `routing${iterations}.onnx`);
      exportCheckpoint(runDir, { out: file, routingIterations: iterations });
      assert.equal(inspectFile(file).ops.Softmax, iterations);
      await assertParity(`trained small, routing ${iterations}`, file, runDir, iterations);
    }
  });

  test('32x32x3 input, 5 classes, random weights', { timeout: 300_000 }, async () => {
    const config = presetConfig('small', { inputHeight: 32, inputWidth: 32, inputChannels: 3, numClasses: 5 }, { conv1Filters: 32, decoderHidden: [64, 128] });
    const params = initParams(config, 11);
    // initParams draws W_ij from N(0, 0.01^2): capsule lengths then all sit near sqrt(epsilon) and their argmax is
    // noise. Scaling W up (still random) spreads the lengths so that argmax agreement means something.
    params['digit/W']!.assign(tf.mul(params['digit/W']!, 20));
    const weights: Record<string, Float32Array> = {};
    for (const [name, v] of Object.entries(params)) weights[name] = (await v.data()) as Float32Array;
    Object.values(params).forEach((v) => v.dispose());
    const runDir = join(dir, 'random-run');
    mkdirSync(runDir);
    saveCheckpoint(runDir, {
      config,
      epoch: 0,
      step: 0,
      seed: 11,
      run: { batchSize: 32 },
      dataset: 'random',
      classLabels: ['a', 'b', 'c', 'd', 'e'],
      backend: 'cpu',
      metrics: [],
      weights,
      optimizer: { m: {}, v: {} },
    });
    const out = join(dir, 'random.onnx');
    exportCheckpoint(runDir, { out });
    // No data set of this shape: parity's random, all-zero and all-one inputs.
    await assertParity('32x32x3, 5 classes', out, runDir, config.routing.iterations, { digits: 0, random: 40 });
  });
});
