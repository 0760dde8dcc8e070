// onnxruntime's convolutions for the wasm backend (train/backends/ort-conv.ts) against tfjs's cpu backend: forward,
// filter gradient and input gradient on seeded shapes (strides 1-3, valid, same, explicit padding, a filter narrower
// than its stride), max|ort - cpu| / max|cpu| < 1e-5; then what they leave to the wasm kernels, what they free, and a
// training step on both.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { presetConfig } from '@capsnet-onnx/core';
import { initBackend } from '../../../packages/capsnet/src/train/backends/backend.ts';
import {
  type OrtConvolutions,
  type OrtConvolutionTuning,
  ortConvolutionsActive,
  registerOrtConvolutions,
} from '../../../packages/capsnet/src/train/backends/ort-conv.ts';
import { im2colPays } from '../../../packages/capsnet/src/train/backends/ort-conv-graphs.ts';
import { initParams, trainingLosses } from '../../../packages/capsnet/src/model/capsnet.ts';
import { relErr, rng, values } from '../../support/numeric.ts';

type Pad = 'valid' | 'same' | number | [[number, number], [number, number], [number, number], [number, number]];
interface Case {
  x: [number, number, number, number];
  filter: [number, number, number, number];
  strides: number | [number, number];
  pad: Pad;
}

/** The three kernels of one case on the current backend, with seeded inputs. */
async function kernels(c: Case, seed: number): Promise<{ y: Float32Array; dw: Float32Array; dx: Float32Array }> {
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const x = tf.tensor4d(values(size(c.x), seed), c.x);
  const f = tf.tensor4d(values(size(c.filter), seed + 1), c.filter);
  const y = tf.conv2d(x, f, c.strides, c.pad as 'valid');
  const dy = tf.tensor4d(values(y.size, seed + 2), y.shape);
  const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC' };
  const dw = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: c.filter }) as tf.Tensor;
  const dx = tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: f }, { ...attrs, inputShape: c.x }) as tf.Tensor;
  assert.deepEqual(dw.shape, c.filter);
  assert.deepEqual(dx.shape, c.x);
  const out = { y: (await y.data()) as Float32Array, dw: (await dw.data()) as Float32Array, dx: (await dx.data()) as Float32Array };
  tf.dispose([x, f, y, dy, dw, dx]);
  return out;
}

function cases(): Case[] {
  const r = rng(11);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const out: Case[] = [
    { x: [3, 28, 28, 1], filter: [9, 9, 1, 16], strides: 1, pad: 'valid' }, // conv1's geometry, fewer filters
    { x: [2, 20, 20, 16], filter: [9, 9, 16, 24], strides: 2, pad: 'valid' }, // PrimaryCaps' (20 -> 6: a stride-skipped row)
    { x: [2, 14, 14, 8], filter: [5, 5, 8, 12], strides: 1, pad: 'same' }, // the baseline CNN's
    {
      x: [2, 11, 9, 3],
      filter: [3, 2, 3, 5],
      strides: [2, 3],
      pad: [
        [0, 0],
        [1, 2],
        [0, 1],
        [0, 0],
      ],
    },
    { x: [2, 12, 12, 3], filter: [2, 2, 3, 4], strides: 3, pad: 'valid' }, // a filter narrower than its stride
    { x: [1, 7, 7, 2], filter: [3, 3, 2, 3], strides: 2, pad: 1 },
    // Several GEMM chunks, forward and input gradient (288 rows each: 2 images of 12x12 outputs, 1 of 17x17), the last one short.
    { x: [5, 20, 20, 4], filter: [9, 9, 4, 6], strides: 1, pad: 'valid' },
    { x: [3, 17, 17, 2], filter: [3, 3, 2, 3], strides: 1, pad: 'same' },
  ];
  for (const strides of [1, 2]) {
    for (const pad of ['valid', 'same'] as const) {
      const k = int(1, 5),
        k2 = int(1, 5);
      const c = int(1, 6);
      out.push({ x: [int(1, 3), int(Math.max(k, 3), 13), int(Math.max(k2, 3), 13), c], filter: [k, k2, c, int(1, 7)], strides, pad });
    }
  }
  return out;
}

let ort: OrtConvolutions;

before(async () => {
  await initBackend('wasm');
  ort = registerOrtConvolutions(2, (line) => assert.fail(`unexpected log: ${line}`));
});

describe("onnxruntime's convolutions for the wasm backend", () => {
  test('are the wasm backend\'s Conv2D, Conv2DBackpropFilter and Conv2DBackpropInput after initBackend("wasm")', () => {
    assert.ok(ortConvolutionsActive());
  });

  const tunings: [string, OrtConvolutionTuning][] = [
    ['forward and input gradient by ONNX Conv and ConvTranspose', { im2col: 'never' }],
    ['forward and input gradient by GEMMs, im2col and col2im', { im2col: 'always' }],
    ['one image per ORT call', { bytesPerCall: 1 }],
  ];
  for (const [label, tuning] of tunings) {
    test(`match cpu: forward, filter gradient, input gradient (${label})`, async () => {
      ort.unregister();
      ort = registerOrtConvolutions(2, (line) => assert.fail(`unexpected log: ${line}`), tuning);
      try {
        await matchCpu();
      } finally {
        ort.unregister();
        ort = registerOrtConvolutions(2, (line) => assert.fail(`unexpected log: ${line}`));
      }
    });
  }

  test('run the forward and input gradient as GEMMs where a patch row is long (PrimaryCaps), ONNX Conv where it is short (conv1)', () => {
    assert.ok(im2colPays({ KW: 9, C: 256 }));
    assert.ok(!im2colPays({ KW: 9, C: 1 }));
  });

  const matchCpu = async () => {
    for (const [i, c] of cases().entries()) {
      await tf.setBackend('cpu');
      const ref = await kernels(c, 100 + i);
      await tf.setBackend('wasm');
      const before = ort.calls.ort;
      const got = await kernels(c, 100 + i);
      const label = `x ${c.x} filter ${c.filter} strides ${c.strides} pad ${JSON.stringify(c.pad)}`;
      // From a shape's first call (so a run and its resume run the same kernels at every step).
      assert.equal(ort.calls.ort - before, 3, `all three kernels ran on onnxruntime for ${label}`);
      await ort.ready();
      for (const k of ['y', 'dw', 'dx'] as const) {
        const e = relErr(got[k], ref[k]);
        assert.ok(e < 1e-5, `${k} rel err ${e.toExponential(2)} for ${label}`);
      }
    }
  };

  test('leave dilated convolutions to the wasm kernels, and free every temporary (engine tensors, wasm heap entries)', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const x = tf.tensor4d(values(2 * 9 * 9 * 3, 1), [2, 9, 9, 3]);
    const f = tf.tensor4d(values(3 * 3 * 3 * 4, 2), [3, 3, 3, 4]);
    const wasmBefore = ort.calls.wasm;
    const dilated = tf.conv2d(x, f, 1, 'valid', 'NHWC', 2);
    assert.equal(ort.calls.wasm - wasmBefore, 1, 'the dilated convolution ran on the wasm kernel');
    await tf.setBackend('cpu');
    const ref = tf.conv2d(tf.tensor4d(values(2 * 9 * 9 * 3, 1), [2, 9, 9, 3]), tf.tensor4d(values(3 * 3 * 3 * 4, 2), [3, 3, 3, 4]), 1, 'valid', 'NHWC', 2);
    await tf.setBackend('wasm');
    assert.ok(relErr((await dilated.data()) as Float32Array, (await ref.data()) as Float32Array) < 1e-5);
    // ONNX Conv's path and the GEMMs' (a patch row of 3 x 128 floats).
    const shapes: Case[] = [
      { x: [2, 9, 9, 3], filter: [3, 3, 3, 4], strides: 2, pad: 'same' },
      { x: [2, 9, 9, 128], filter: [3, 3, 128, 4], strides: 2, pad: 'same' },
    ];
    for (const c of shapes) await kernels(c, 5);
    await ort.ready();
    for (const c of shapes) await kernels(c, 5);
    const start = { ...tf.memory(), ids: backend.numDataIds() };
    for (let i = 0; i < 3; i++) for (const c of shapes) await kernels(c, 5);
    const end = { ...tf.memory(), ids: backend.numDataIds() };
    assert.equal(end.numTensors, start.numTensors);
    assert.equal(end.ids, start.ids, 'wasm backend data ids leaked');
    tf.dispose([x, f, dilated, ref]);
  });

  test('a training step of the small preset: the same loss and gradients as with the wasm kernels', async () => {
    await tf.setBackend('wasm');
    // 32 conv1 filters: a PrimaryCaps patch row of 9 x 32 floats, so its forward and input gradient take the GEMMs.
    const config = { ...presetConfig('small'), conv1Filters: 32, primaryMaps: 4 };
    const params = initParams(config, 3);
    const x = tf.tensor4d(
      values(4 * 28 * 28, 9).map((v) => (v + 1) / 2),
      [4, 28, 28, 1],
    );
    const y = tf.oneHot(tf.tensor1d([1, 3, 5, 7], 'int32'), 10).toFloat() as tf.Tensor2D;
    const gradients = async () => {
      const { value, grads } = tf.variableGrads(() => trainingLosses(params, x, y, config).total, Object.values(params));
      const out = {
        loss: (await value.data())[0]!,
        grads: Object.fromEntries(await Promise.all(Object.entries(grads).map(async ([k, g]) => [k, (await g.data()) as Float32Array] as const))),
      };
      tf.dispose([value, ...Object.values(grads)]);
      return out;
    };
    await gradients();
    await ort.ready();
    const before = ort.calls.ort;
    const onOrt = await gradients();
    assert.ok(ort.calls.ort - before >= 5, 'conv1 forward and filter gradient, PrimaryCaps forward and both gradients ran on onnxruntime');
    ort.unregister();
    try {
      assert.ok(!ortConvolutionsActive());
      const onWasm = await gradients();
      assert.ok(Math.abs(onOrt.loss - onWasm.loss) <= 1e-5 * Math.abs(onWasm.loss), `loss ${onOrt.loss} vs ${onWasm.loss}`);
      for (const [name, g] of Object.entries(onWasm.grads)) {
        const e = relErr(onOrt.grads[name]!, g);
        assert.ok(e < 1e-4, `gradient of ${name}: rel err ${e.toExponential(2)}`);
      }
    } finally {
      ort = registerOrtConvolutions(2, (line) => assert.fail(`unexpected log: ${line}`));
    }
    tf.dispose([x, y, ...Object.values(params)]);
  });
});
