import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import {
  type CapsNetConfig,
  countFlops,
  derivedSizes,
  paperConfig,
  presetConfig,
  paramShapes,
  Rng,
  routingFlops,
  validateConfig,
  withRoutingConfig,
} from '@capsnet-onnx/core';
import { forward, initParams, marginLoss, reconstructionLoss } from '../../../packages/capsnet/src/model/capsnet.ts';
import { squash } from '../../../packages/capsnet/src/model/layers.ts';
import { dynamicRouting, route } from '../../../packages/capsnet/src/model/routing.ts';
import { SQUARE_CONFIG } from '../../support/tiny-model.ts';

const tiny = SQUARE_CONFIG;

function randomImages(n: number, h: number, w: number, c: number, seed: number): tf.Tensor4D {
  const rng = new Rng(seed);
  return tf.tensor4d(
    Float32Array.from({ length: n * h * w * c }, () => rng.next()),
    [n, h, w, c],
  );
}

before(async () => {
  await tf.setBackend('cpu');
});

describe('routing config', () => {
  test('a config names its routing algorithm and iterations; bad ones are refused by name', () => {
    const c = paperConfig();
    assert.throws(
      () => validateConfig({ ...c, routing: { algorithm: 'em' as 'dynamic', iterations: 3 } }),
      /^Error: config.routing.algorithm must be one of "dynamic", got "em"$/,
    );
    assert.throws(
      () => validateConfig({ ...c, routing: { algorithm: 'dynamic', iterations: 0 } }),
      /^Error: config.routing.iterations must be a positive integer, got 0$/,
    );
    assert.throws(() => validateConfig({ ...c, routing: undefined as never }), /^Error: config.routing must be \{ algorithm, iterations \}, got undefined$/);
    assert.deepEqual(presetConfig('small', undefined, { routing: { algorithm: 'dynamic', iterations: 5 } }).routing, { algorithm: 'dynamic', iterations: 5 });
  });

  test('older configs: routingIterations becomes dynamic routing; a config that has routing keeps it', () => {
    const { routing: _r, ...old } = paperConfig();
    const migrated = withRoutingConfig({ ...old, routingIterations: 2 }) as unknown as CapsNetConfig;
    assert.deepEqual(migrated.routing, { algorithm: 'dynamic', iterations: 2 });
    assert.equal('routingIterations' in migrated, false);
    const current = paperConfig();
    assert.equal(withRoutingConfig(current), current);
  });

  test("the routing's FLOPs are core's countFlops routing term", () => {
    const c = paperConfig();
    const { numPrimaryCaps } = derivedSizes(c);
    assert.equal(countFlops(c).forward.routing, routingFlops(c.routing, numPrimaryCaps, c.numClasses * c.digitDim));
    assert.equal(routingFlops({ algorithm: 'dynamic', iterations: 1 }, 1152, 160), 2 * 1152 * 160);
  });

  test('route() runs the named algorithm: dynamic is procedure 1', async () => {
    const rng = new Rng(3);
    const uHat = tf.tensor4d(
      Float32Array.from({ length: 2 * 6 * 3 * 4 }, () => rng.normal()),
      [2, 6, 3, 4],
    );
    const a = route(uHat, { algorithm: 'dynamic', iterations: 2 }, 1e-7);
    const b = dynamicRouting(uHat, 2, 1e-7);
    assert.deepEqual(await a.capsules.data(), await b.capsules.data());
    assert.deepEqual(await a.coupling.data(), await b.coupling.data());
  });
});

describe('config', () => {
  test('the paper preset has 1152 primary capsules on 28x28 and its published sizes', () => {
    const c = paperConfig();
    assert.equal(derivedSizes(c).numPrimaryCaps, 1152);
    assert.deepEqual([c.conv1Filters, c.primaryMaps, c.primaryDim, c.digitDim], [256, 32, 8, 16]);
    assert.deepEqual(c.routing, { algorithm: 'dynamic', iterations: 3 });
    assert.deepEqual(paramShapes(c)['digit/W'], [1152, 8, 160]);
    assert.deepEqual(paramShapes(c)['decoder/dense2/kernel'], [1024, 784]);
  });

  test('rejects an input too small for the convolutions', () => {
    assert.throws(() => presetConfig('paper', { inputHeight: 12, inputWidth: 12, inputChannels: 1, numClasses: 10 }), /too small/);
  });
});

describe('squash', () => {
  test('matches |s|^2/(1+|s|^2) s/|s|', async () => {
    const v = await squash(tf.tensor2d([[3, 4]]), 1e-12).data();
    assert.ok(Math.abs(v[0]! - (25 / 26) * 0.6) < 1e-6);
    assert.ok(Math.abs(v[1]! - (25 / 26) * 0.8) < 1e-6);
  });

  test('zero vector: zero value and finite gradient', async () => {
    const s = tf.zeros([1, 5]);
    const v = await squash(s, 1e-7).data();
    assert.ok(v.every((x) => x === 0));
    const g = await tf
      .grad((x: tf.Tensor) => tf.sum(squash(x, 1e-7)))(s)
      .data();
    assert.ok(
      g.every((x) => Number.isFinite(x)),
      `gradient ${g}`,
    );
  });
});

describe('routing', () => {
  test('coupling coefficients are a softmax over the output capsules, not the input ones', async () => {
    const rng = new Rng(3);
    const uHat = tf.tensor4d(
      Float32Array.from({ length: 2 * 7 * 4 * 3 }, () => rng.normal()),
      [2, 7, 4, 3],
    );
    const { coupling } = dynamicRouting(uHat, 3, 1e-7);
    const overOutputs = await tf.sum(coupling, -1).data();
    for (const s of overOutputs) assert.ok(Math.abs(s - 1) < 1e-5, `sum over j = ${s}`);
    const overInputs = await tf.sum(coupling, 1).data();
    assert.ok(
      overInputs.some((s) => Math.abs(s - 1) > 1e-2),
      'sum over i should not be 1',
    );
    // after 3 iterations the couplings are no longer uniform: agreement moved them
    const c = await coupling.data();
    assert.ok(c.some((x) => Math.abs(x - 0.25) > 1e-3));
  });

  test('one iteration gives uniform couplings (logits start at zero)', async () => {
    const uHat = tf.randomNormal([1, 5, 4, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const c = await dynamicRouting(uHat, 1, 1e-7).coupling.data();
    for (const x of c) assert.ok(Math.abs(x - 0.25) < 1e-6);
  });

  test("an image's outputs do not depend on the other images in its batch", async () => {
    const params = initParams(tiny, 1);
    const a = randomImages(1, 20, 20, 1, 10);
    const b = randomImages(3, 20, 20, 1, 11);
    const c = randomImages(3, 20, 20, 1, 12);
    const alone = forward(params, a, tiny);
    const withB = forward(params, tf.concat([a, b]) as tf.Tensor4D, tiny);
    const withC = forward(params, tf.concat([a, c]) as tf.Tensor4D, tiny);
    for (const key of ['lengths', 'capsules', 'reconstruction', 'coupling'] as const) {
      const ref = await alone[key].data();
      for (const other of [withB, withC]) {
        const first = await tf.slice(other[key], 0, 1).data();
        const diff = Math.max(...Array.from(ref, (x, i) => Math.abs(x - first[i]!)));
        assert.ok(diff < 1e-6, `${key} changed by ${diff} with other batch members`);
      }
    }
    // and the other images do produce different outputs (the check above is not vacuous)
    const vb = await tf.slice(withB.capsules, 1, 1).data();
    const vc = await tf.slice(withC.capsules, 1, 1).data();
    const scale = Math.max(...Array.from(vb, Math.abs));
    assert.ok(vb.some((x, i) => Math.abs(x - vc[i]!) > 1e-3 * scale));
  });
});

describe('forward and losses', () => {
  test('output shapes follow the config, for 3-channel 32x32 input and 5 classes', () => {
    const config = presetConfig(
      'small',
      { inputHeight: 32, inputWidth: 32, inputChannels: 3, numClasses: 5 },
      {
        conv1Filters: 8,
        primaryMaps: 2,
        decoderHidden: [16, 32],
      },
    );
    const out = forward(initParams(config, 2), randomImages(2, 32, 32, 3, 1), config);
    const { numPrimaryCaps } = derivedSizes(config);
    assert.deepEqual(out.lengths.shape, [2, 5]);
    assert.deepEqual(out.capsules.shape, [2, 5, 16]);
    assert.deepEqual(out.reconstruction.shape, [2, 32 * 32 * 3]);
    assert.deepEqual(out.coupling.shape, [2, numPrimaryCaps, 5]);
  });

  test('inference masks the decoder by the longest capsule, training by the label', async () => {
    const params = initParams(tiny, 4);
    const x = randomImages(1, 20, 20, 1, 5);
    const inferred = forward(params, x, tiny);
    const predicted = (await tf.argMax(inferred.lengths, -1).data())[0]!;
    const asPredicted = forward(params, x, tiny, tf.cast(tf.oneHot([predicted], 4), 'float32') as tf.Tensor2D);
    const other = (predicted + 1) % 4;
    const asOther = forward(params, x, tiny, tf.cast(tf.oneHot([other], 4), 'float32') as tf.Tensor2D);
    const r0 = await inferred.reconstruction.data();
    const r1 = await asPredicted.reconstruction.data();
    const r2 = await asOther.reconstruction.data();
    assert.ok(r0.every((v, i) => Math.abs(v - r1[i]!) < 1e-7));
    assert.ok(r0.some((v, i) => Math.abs(v - r2[i]!) > 1e-6));
  });

  test('margin loss matches eq. 4', async () => {
    const lengths = tf.tensor2d([
      [0.95, 0.5, 0.05],
      [0.2, 0.3, 0.8],
    ]);
    const labels = tf.tensor2d([
      [1, 0, 0],
      [0, 0, 1],
    ]);
    const expected = (0 + 0.5 * 0.4 ** 2 + 0 + (0.1 ** 2 + 0.5 * 0.1 ** 2 + 0.5 * 0.2 ** 2)) / 2;
    const got = (await marginLoss(lengths, labels, paperConfig()).data())[0]!;
    assert.ok(Math.abs(got - expected) < 1e-6, `${got} vs ${expected}`);
  });

  test('reconstruction loss is 0.0005 x summed squared error, averaged over the batch', async () => {
    const images = tf.ones([2, 2, 2, 1]) as tf.Tensor4D;
    const recon = tf.tensor2d([
      [0.5, 0.5, 0.5, 0.5],
      [1, 1, 1, 0],
    ]);
    const got = (await reconstructionLoss(recon, images, paperConfig()).data())[0]!;
    assert.ok(Math.abs(got - (0.0005 * (1 + 1)) / 2) < 1e-9);
  });

  test('same seed gives the same weights, another seed different ones', async () => {
    const a = await initParams(tiny, 7)['digit/W']!.data();
    const b = await initParams(tiny, 7)['digit/W']!.data();
    const c = await initParams(tiny, 8)['digit/W']!.data();
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });
});
