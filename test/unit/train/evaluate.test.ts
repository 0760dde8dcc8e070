/**
 * `evaluate` (packages/capsnet/src/train/family.ts): test accuracy and mean losses, scoring each batch from the
 * forward pass that computed its losses (the network runs once per batch, not twice). Checked on the cpu backend
 * against the family's own `scores` and `losses` called separately, for the CapsNet and the baseline CNN.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { Rng, baselineConfig } from '@capsnet-onnx/core';
import { initBackend } from '../../../packages/capsnet/src/train/backends/backend.ts';
import { type ModelFamily, baselineFamily, capsnetFamily, evaluate } from '../../../packages/capsnet/src/train/family.ts';
import { accuracyOf } from '../../../packages/capsnet/src/train/loop.ts';
import { TINY_CONFIG } from '../../support/tiny-model.ts';

before(async () => {
  await initBackend('cpu');
});

function split(family: ModelFamily, count: number, seed: number) {
  const { inputHeight: h, inputWidth: w, inputChannels: c, numClasses } = family.shape;
  const rng = new Rng(seed);
  const images = new Float32Array(count * h * w * c).map(() => rng.next());
  const labels = new Int32Array(count).map(() => rng.int(numClasses));
  return { images, labels, count };
}

for (const [name, make] of [
  ['capsnet', () => capsnetFamily(TINY_CONFIG)],
  ['baseline-cnn', () => baselineFamily(baselineConfig('mnist', TINY_CONFIG, { convChannels: [3], kernel: 3, fc: [8], poolAfter: [], dropout: 0.5 }), 1)],
] as [string, () => ModelFamily][]) {
  test(`${name}: one network run per batch, and the same accuracy and losses as scoring separately`, async () => {
    const family = make();
    const params = family.init(3);
    const data = split(family, 23, 5); // 3 batches of 10: the last one short
    let scoreCalls = 0;
    const counting: ModelFamily = {
      ...family,
      scores: (p, x) => {
        scoreCalls++;
        return family.scores(p, x);
      },
    };
    const got = await evaluate(counting, params, data, 10);
    assert.equal(scoreCalls, 0, 'evaluate ran the network a second time for the scores');

    const { inputHeight: h, inputWidth: w, inputChannels: c, numClasses } = family.shape;
    const x = tf.tensor4d(data.images, [data.count, h, w, c]);
    const y = tf.cast(tf.oneHot(tf.tensor1d(data.labels, 'int32'), numClasses), 'float32') as tf.Tensor2D;
    const scores = (await family.scores(params, x).data()) as Float32Array;
    assert.equal(got.accuracy, accuracyOf(scores, data.labels, numClasses));
    // Mean of per-batch means weighted by batch size = the mean over all examples, for losses that are batch means.
    const parts = family.losses(params, x, y).parts ?? {};
    for (const [part, t] of Object.entries(parts)) {
      const whole = (await t.data())[0]!;
      assert.ok(Math.abs(got.losses[part]! - whole) <= 1e-5 * Math.max(1, Math.abs(whole)), `${part}: ${got.losses[part]} vs ${whole}`);
    }
    tf.dispose([x, y, ...Object.values(parts)]);
  });
}
