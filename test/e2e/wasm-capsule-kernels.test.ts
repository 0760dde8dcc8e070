// The fused u_hat, routing and Adam kernels (train/backends/wasm-capsule-kernels.ts) against the composite tfjs ops on the cpu
// backend. Each case computes the same outputs and gradients on both backends from identical seeded inputs and
// requires max|wasm - cpu| / max|cpu| < 1e-5. Also: the committed wasm binaries are what their AssemblyScript source
// compiles to, and they cannot write outside the pointers they are given (no data segment, no start function).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { paramShapes, presetConfig } from '@capsnet-onnx/core';
import { Adam } from '../../packages/capsnet/src/train/adam.ts';
import { initBackend } from '../../packages/capsnet/src/train/backends/backend.ts';
import { FUSED_KERNELS, fusedKernelAvailable, setFusedKernels } from '../../packages/capsnet/src/model/fused.ts';
import { initParams, predictionVectors, trainingLosses } from '../../packages/capsnet/src/model/capsnet.ts';
import { dynamicRouting } from '../../packages/capsnet/src/model/routing.ts';
// @ts-expect-error: a plain .mjs build script without type declarations
import { compileKernels, KERNEL_BINARIES } from '../../packages/capsnet/scripts/build-kernels.mjs';
import { elementwiseCalls, leadingAxes } from '../../packages/capsnet/src/train/backends/wasm-elementwise.ts';
import { relErr, rng, values } from '../support/numeric.ts';

const TOLERANCE = 1e-5;

/** Runs f on `backend` and returns every output as a Float32Array (tensors disposed). */
async function on(backend: 'cpu' | 'wasm', f: () => tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const outs = tf.tidy(f);
  const data = await Promise.all(outs.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose(outs);
  return data;
}

function expectClose(got: Float32Array[], want: Float32Array[], names: string[], label: string): void {
  assert.equal(got.length, want.length);
  for (const [k, name] of names.entries()) {
    const e = relErr(got[k]!, want[k]!);
    assert.ok(e < TOLERANCE, `${name}: rel err ${e.toExponential(2)} for ${label}`);
  }
}

interface Shape {
  N: number;
  I: number;
  J: number;
  D: number;
  R: number;
}

function randomShapes(seed: number, count: number): Shape[] {
  const r = rng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  return Array.from({ length: count }, () => ({ N: int(1, 4), I: int(1, 40), J: int(2, 7), D: int(1, 17), R: int(1, 4) }));
}

before(async () => {
  await initBackend('wasm');
});

describe('fused capsule kernels on wasm', () => {
  test('are registered for wasm and used there', async () => {
    await tf.setBackend('wasm');
    for (const name of Object.values(FUSED_KERNELS)) assert.ok(tf.getKernel(name, 'wasm'), `${name} is not registered`);
    assert.ok(fusedKernelAvailable(FUSED_KERNELS.dynamicRouting));
    const previous = setFusedKernels(false);
    assert.equal(fusedKernelAvailable(FUSED_KERNELS.dynamicRouting), false);
    setFusedKernels(previous);
    await tf.setBackend('cpu');
    assert.equal(fusedKernelAvailable(FUSED_KERNELS.dynamicRouting), false, 'the cpu backend keeps the composite ops');
  });

  for (const [index, s] of randomShapes(20261129, 8).entries()) {
    const label = JSON.stringify(s);
    test(`routing, forward and gradient, matches cpu at ${label}`, async () => {
      const seed = 1000 + 10 * index;
      const uHatValues = values(s.N * s.I * s.J * s.D, seed);
      const dV = values(s.N * s.J * s.D, seed + 1),
        dC = values(s.N * s.I * s.J, seed + 2);
      const epsilon = 1e-7;
      const run = () => {
        const uHat = tf.tensor4d(uHatValues, [s.N, s.I, s.J, s.D]);
        const routed = dynamicRouting(uHat, s.R, epsilon);
        // A loss that reaches both outputs, so the gradient through the last coupling is checked too.
        const routingGrad = tf.grad((x: tf.Tensor) => {
          const out = dynamicRouting(x as tf.Tensor4D, s.R, epsilon);
          return tf.add(tf.sum(tf.mul(out.capsules, tf.tensor(dV, [s.N, s.J, s.D]))), tf.sum(tf.mul(out.coupling, tf.tensor(dC, [s.N, s.I, s.J]))));
        });
        return [routed.capsules, routed.coupling, routingGrad(uHat)];
      };
      const want = await on('cpu', run);
      const got = await on('wasm', run);
      expectClose(got, want, ['v', 'c', 'd uHat'], label);
    });
  }

  for (const [index, s] of randomShapes(20261130, 6).entries()) {
    const P = 1 + ((index * 3) % 9);
    const label = JSON.stringify({ N: s.N, I: s.I, P, J: s.J, D: s.D });
    test(`u_hat, forward and gradients, matches cpu at ${label}`, async () => {
      const cfg = presetConfig('small', { inputHeight: 28, inputWidth: 28, inputChannels: 1, numClasses: s.J }, { digitDim: s.D, primaryDim: P });
      const uValues = values(s.N * s.I * P, 2000 + index),
        wValues = values(s.I * P * s.J * s.D, 2100 + index);
      const dy = values(s.N * s.I * s.J * s.D, 2200 + index);
      const run = () => {
        const u = tf.tensor3d(uValues, [s.N, s.I, P]),
          W = tf.tensor3d(wValues, [s.I, P, s.J * s.D]);
        const f = (a: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(predictionVectors(a as tf.Tensor3D, b as tf.Tensor3D, cfg), tf.tensor(dy, [s.N, s.I, s.J, s.D])));
        const [du, dw] = tf.grads(f)([u, W]);
        return [predictionVectors(u, W, cfg), du!, dw!];
      };
      expectClose(await on('wasm', run), await on('cpu', run), ['u_hat', 'd u', 'd W'], label);
    });
  }

  test('the gradient through the capsules alone (coupling unused) matches cpu', async () => {
    const [N, I, J, D, R] = [3, 50, 10, 16, 3];
    const uHatValues = values(N * I * J * D, 7),
      dV = values(N * J * D, 8);
    const run = () => {
      const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(dynamicRouting(x as tf.Tensor4D, R, 1e-7).capsules, tf.tensor(dV, [N, J, D]))));
      return [g(tf.tensor4d(uHatValues, [N, I, J, D]))];
    };
    expectClose(await on('wasm', run), await on('cpu', run), ['d uHat'], `N ${N} I ${I} J ${J} D ${D} R ${R}`);
  });

  test('routing with a zero u_hat gives zero capsules and a finite gradient', async () => {
    await tf.setBackend('wasm');
    const g = tf.grad((x: tf.Tensor) => tf.sum(dynamicRouting(x as tf.Tensor4D, 3, 1e-7).capsules));
    const grad = (await g(tf.zeros([2, 5, 3, 4])).data()) as Float32Array;
    assert.ok(grad.every(Number.isFinite), 'gradient at s = 0 is not finite');
    const v = await dynamicRouting(tf.zeros([2, 5, 3, 4]), 3, 1e-7).capsules.data();
    assert.ok(v.every((x) => x === 0));
  });

  test('Adam: two fused updates match the composite ones on cpu', async () => {
    // d is large enough to be split between threads (wasm-capsule-kernels.ts shares weights of 64K values and more).
    const shapes = { a: [3, 4], b: [17], c: [2, 3, 5], d: [70001] };
    const run = () => {
      const params = Object.fromEntries(
        Object.entries(shapes).map(([n, sh], i) => [
          n,
          tf.variable(
            tf.tensor(
              values(
                sh.reduce((x, y) => x * y),
                30 + i,
              ),
              sh,
            ),
            true,
            `adam-test-${tf.getBackend()}-${n}`,
          ),
        ]),
      );
      const opt = new Adam({ learningRate: 0.01, decayRate: 0.9, decaySteps: 3 });
      for (let step = 0; step < 2; step++) {
        const grads = Object.fromEntries(
          Object.entries(shapes).map(([n, sh], i) => [
            n,
            tf.tensor(
              values(
                sh.reduce((x, y) => x * y),
                40 + 10 * step + i,
              ),
              sh,
            ),
          ]),
        );
        opt.apply(params, grads);
      }
      const out = Object.values(params).map((v) => v.clone());
      tf.dispose(Object.values(params));
      opt.dispose();
      return out;
    };
    expectClose(await on('wasm', run), await on('cpu', run), Object.keys(shapes), 'Adam');
  });

  test("a whole small CapsNet's loss and gradients match cpu", async () => {
    const config = presetConfig(
      'small',
      { inputHeight: 20, inputWidth: 20, inputChannels: 1, numClasses: 4 },
      { conv1Filters: 8, primaryMaps: 2, decoderHidden: [16, 24] },
    );
    const batch = 3;
    const images = values(batch * 400, 50).map((x) => (x + 1) / 2);
    const run = () => {
      const params = initParams(config, 5);
      const x = tf.tensor4d(images, [batch, 20, 20, 1]);
      const y = tf.oneHot(tf.tensor1d([0, 3, 1], 'int32'), 4).toFloat() as tf.Tensor2D;
      const names = Object.keys(params).sort();
      const { value, grads } = tf.variableGrads(
        () => trainingLosses(params, x, y, config).total,
        names.map((n) => params[n]!),
      );
      const out = [value, ...names.map((n) => grads[params[n]!.name]!)];
      tf.dispose(Object.values(params));
      return out;
    };
    const want = await on('cpu', run);
    const got = await on('wasm', run);
    expectClose(
      got,
      want,
      [
        'loss',
        ...Object.keys(paramShapes(config))
          .sort()
          .map((n) => `d ${n}`),
      ],
      'small CapsNet',
    );
  });
});

/** Ids of the sections of a wasm binary, in order (WebAssembly core spec, 5.5.2). */
function sectionIds(bytes: Uint8Array): number[] {
  const ids: number[] = [];
  let at = 8; // magic + version
  while (at < bytes.length) {
    const id = bytes[at++]!;
    let length = 0,
      shift = 0,
      byte: number;
    do {
      byte = bytes[at++]!;
      length |= (byte & 0x7f) << shift;
      shift += 7;
    } while (byte & 0x80);
    ids.push(id);
    at += length;
  }
  return ids;
}

describe("tfjs's Sum and Multiply on the kernel threads (wasm-elementwise.ts)", () => {
  test('leadingAxes names exactly the leading axes, negative ones included', () => {
    assert.equal(leadingAxes([0, 1, 2], 4), 3);
    assert.equal(leadingAxes([-4, -3], 4), 2);
    assert.equal(leadingAxes(0, 2), 1);
    assert.equal(leadingAxes([1, 2], 4), 0, 'not leading');
    assert.equal(leadingAxes([0, 1], 2), 0, 'every axis');
    assert.equal(leadingAxes(null, 3), 0);
  });

  // 37 columns: two blocks of sixteen and a scalar tail; 65,545 values: past the threshold, and not a multiple of 4.
  const cases: [string, number[], number | number[], boolean][] = [
    ['leading three axes', [7, 20, 20, 37], [0, 1, 2], false],
    ['leading three axes, keepDims', [7, 20, 20, 37], [0, 1, 2], true],
    ['negative leading axes', [5, 13109], -2, false],
    ['inner axes (the replaced kernel)', [7, 20, 20, 37], [1, 2], false],
    ['a small input (the replaced kernel)', [4, 9, 16], [0, 1], false],
  ];
  for (const [label, shape, axis, keepDims] of cases) {
    test(`Sum over ${label} matches cpu`, async () => {
      const x = values(
        shape.reduce((a, b) => a * b, 1),
        31,
      );
      const run = () => [tf.sum(tf.tensor(x, shape), axis, keepDims)];
      const want = await on('cpu', run);
      const threaded = elementwiseCalls.threaded;
      const got = await on('wasm', run);
      expectClose(got, want, ['sum'], `[${shape}] over ${axis}`);
      assert.equal(elementwiseCalls.threaded - threaded, label.includes('replaced') ? 0 : 1, 'which path ran');
    });
  }

  for (const [label, a, b] of [
    ['one shape, 65,545 values', [5, 13109], [5, 13109]],
    ['broadcast (the replaced kernel)', [5, 13109], [1, 13109]],
  ] as const) {
    test(`Multiply, ${label}, matches cpu`, async () => {
      const [av, bv] = [values(a[0] * a[1], 41), values(b[0] * b[1], 42)];
      const run = () => [tf.mul(tf.tensor(av, [...a]), tf.tensor(bv, [...b]))];
      const want = await on('cpu', run);
      const threaded = elementwiseCalls.threaded;
      const got = await on('wasm', run);
      expectClose(got, want, ['product'], label);
      assert.equal(elementwiseCalls.threaded - threaded, label.includes('replaced') ? 0 : 1, 'which path ran');
    });
  }
});

describe('the wasm kernel binaries', () => {
  for (const variant of ['plain', 'shared'] as const) {
    test(`the committed ${variant} build is what assembly/capsule-kernels.ts compiles to`, async () => {
      const committed = new Uint8Array(readFileSync(KERNEL_BINARIES[variant]));
      const built = await compileKernels(variant);
      assert.ok(Buffer.from(built).equals(Buffer.from(committed)), `${KERNEL_BINARIES[variant]} is stale: run npm run build:kernels and commit the result`);
    });

    test(`the ${variant} build has no data segment and no start function, so it writes only where it is pointed`, () => {
      const ids = sectionIds(new Uint8Array(readFileSync(KERNEL_BINARIES[variant])));
      assert.ok(ids.includes(10), 'no code section: the section parser is wrong');
      assert.ok(!ids.includes(11) && !ids.includes(12), `data section in ${KERNEL_BINARIES[variant]}`);
      assert.ok(!ids.includes(8), `start function in ${KERNEL_BINARIES[variant]}`);
      assert.ok(!ids.includes(5), `the module defines its own memory instead of importing tfjs's`);
    });
  }

  test('the plain build runs on a non-shared memory and matches a direct loop', () => {
    const memory = new WebAssembly.Memory({ initial: 1 });
    const kernels = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(KERNEL_BINARIES.plain)), { env: { memory } }).exports as unknown as {
      predictionVectors(...args: number[]): void;
    };
    const [N, I, P, K] = [2, 3, 5, 7];
    const heap = new Float32Array(memory.buffer);
    const u = values(N * I * P, 1),
      W = values(I * P * K, 2);
    heap.set(u, 0);
    heap.set(W, N * I * P);
    const out = N * I * P + I * P * K;
    kernels.predictionVectors(0, 4 * N * I * P, 4 * out, N, I, P, K);
    for (let n = 0; n < N; n++) {
      for (let i = 0; i < I; i++) {
        for (let k = 0; k < K; k++) {
          let want = 0;
          for (let p = 0; p < P; p++) want += u[(n * I + i) * P + p]! * W[(i * P + p) * K + k]!;
          assert.ok(Math.abs(heap[out + (n * I + i) * K + k]! - want) < 1e-5, `u_hat[${n}, ${i}, ${k}]`);
        }
      }
    }
  });
});
