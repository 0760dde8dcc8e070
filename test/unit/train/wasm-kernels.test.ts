// The wasm conv gradient kernels (train/backends/wasm-kernels.ts) against tfjs's cpu backend.
// Each case runs the same kernels tfjs's Conv2D gradient calls (Conv2DBackpropFilter, Conv2DBackpropInput)
// on both backends with identical seeded inputs and requires max|wasm - cpu| / max|cpu| < 1e-5.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { initBackend } from '../../../packages/capsnet/src/train/backends/backend.ts';
import { readFileSync } from 'node:fs';
import { setConvGradMethod, setIm2colBudget, wasmConvKernelsRegistered } from '../../../packages/capsnet/src/train/backends/wasm-kernels.ts';
// @ts-expect-error: a plain .mjs build script without type declarations
import { KERNEL_BINARIES } from '../../../packages/capsnet/scripts/build-kernels.mjs';
import { relErr, rng, values } from '../../support/numeric.ts';

type Pad = 'valid' | 'same' | [[number, number], [number, number], [number, number], [number, number]];
interface Case {
  x: [number, number, number, number];
  filter: [number, number, number, number];
  strides: number | [number, number];
  pad: Pad;
}

function outSize(inSize: number, k: number, s: number, pad: Pad, padBefore: number, padAfter: number): number {
  if (pad === 'same') return Math.ceil(inSize / s);
  if (pad === 'valid') return Math.floor((inSize - k) / s) + 1;
  return Math.floor((inSize + padBefore + padAfter - k) / s) + 1;
}

async function gradients(backend: 'cpu' | 'wasm', c: Case, seed: number): Promise<{ dw: Float32Array; dx: Float32Array }> {
  await tf.setBackend(backend);
  const [n, h, w] = c.x;
  const [kh, kw, , co] = c.filter;
  const [sh, sw] = typeof c.strides === 'number' ? [c.strides, c.strides] : c.strides;
  const p = Array.isArray(c.pad) ? c.pad : null;
  const oh = outSize(h, kh, sh, c.pad, p?.[1][0] ?? 0, p?.[1][1] ?? 0);
  const ow = outSize(w, kw, sw, c.pad, p?.[2][0] ?? 0, p?.[2][1] ?? 0);
  const x = tf.tensor4d(
    values(
      c.x.reduce((a, b) => a * b),
      seed,
    ),
    c.x,
  );
  const f = tf.tensor4d(
    values(
      c.filter.reduce((a, b) => a * b),
      seed + 1,
    ),
    c.filter,
  );
  const dy = tf.tensor4d(values(n * oh * ow * co, seed + 2), [n, oh, ow, co]);
  const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC' };
  const dwT = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: c.filter }) as tf.Tensor;
  const dxT = tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: f }, { ...attrs, inputShape: c.x }) as tf.Tensor;
  assert.deepEqual(dwT.shape, c.filter);
  assert.deepEqual(dxT.shape, c.x);
  const dw = (await dwT.data()) as Float32Array;
  const dx = (await dxT.data()) as Float32Array;
  tf.dispose([x, f, dy, dwT, dxT]);
  return { dw, dx };
}

/** Both algorithms of each kernel (train/backends/wasm-kernels.ts picks one by shape; force each in turn). */
const METHODS = [
  { filter: 'im2col', input: 'rows' },
  { filter: 'conv', input: 'columns' },
] as const;

async function check(c: Case, seed: number): Promise<void> {
  const ref = await gradients('cpu', c, seed);
  for (const m of [...METHODS, { filter: 'auto', input: 'auto' } as const]) {
    const previous = setConvGradMethod(m);
    try {
      const got = await gradients('wasm', c, seed);
      const ew = relErr(got.dw, ref.dw),
        ex = relErr(got.dx, ref.dx);
      const label = `x ${c.x} filter ${c.filter} strides ${c.strides} pad ${JSON.stringify(c.pad)} methods ${JSON.stringify(m)}`;
      assert.ok(ew < 1e-5, `filter gradient rel err ${ew.toExponential(2)} for ${label}`);
      assert.ok(ex < 1e-5, `input gradient rel err ${ex.toExponential(2)} for ${label}`);
    } finally {
      setConvGradMethod(previous);
    }
  }
}

/**
 * Float64 direct-loop reference for NHWC 'valid' convolutions, used where tfjs's cpu kernels are too slow
 * (they need minutes for the full 256-channel primary-capsule layer).
 */
function directGradients(c: Case, x: Float32Array, w: Float32Array, dy: Float32Array): { dw: Float32Array; dx: Float32Array } {
  const [N, H, W, C] = c.x;
  const [KH, KW, , CO] = c.filter;
  const s = c.strides as number;
  const OH = Math.floor((H - KH) / s) + 1,
    OW = Math.floor((W - KW) / s) + 1;
  const dw = new Float64Array(KH * KW * C * CO),
    dx = new Float64Array(N * H * W * C);
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        const g = ((n * OH + oh) * OW + ow) * CO;
        for (let kh = 0; kh < KH; kh++) {
          for (let kw = 0; kw < KW; kw++) {
            const xi = ((n * H + oh * s + kh) * W + ow * s + kw) * C;
            for (let ci = 0; ci < C; ci++) {
              const xv = x[xi + ci]!;
              const wi = ((kh * KW + kw) * C + ci) * CO;
              let acc = 0;
              for (let co = 0; co < CO; co++) {
                dw[wi + co] = dw[wi + co]! + xv * dy[g + co]!;
                acc += w[wi + co]! * dy[g + co]!;
              }
              dx[xi + ci] = dx[xi + ci]! + acc;
            }
          }
        }
      }
    }
  }
  return { dw: Float32Array.from(dw), dx: Float32Array.from(dx) };
}

/** Random small conv problems: every stride in {1, 2} x padding in {valid, same} gets several shapes. */
function randomCases(seed: number, perCombo: number): Case[] {
  const r = rng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const cases: Case[] = [];
  for (const strides of [1, 2]) {
    for (const pad of ['valid', 'same'] as const) {
      for (let i = 0; i < perCombo; i++) {
        const k = int(1, 5),
          k2 = int(1, 5);
        const h = int(Math.max(k, 3), 13),
          w = int(Math.max(k2, 3), 13);
        cases.push({ x: [int(1, 3), h, w, int(1, 6)], filter: [k, k2, 0, int(1, 7)], strides, pad });
      }
    }
  }
  for (const c of cases) c.filter[2] = c.x[3];
  return cases;
}

before(async () => {
  // These are the wasm kernels themselves; onnxruntime's, which replace them by default, are test/unit/train/ort-conv.test.ts's.
  process.env.CAPSNET_CONVOLUTIONS = 'wasm';
  await initBackend('wasm');
});

describe('wasm conv gradient kernels', () => {
  test('are the ones registered for the wasm backend', () => {
    assert.ok(wasmConvKernelsRegistered());
  });

  test('match cpu on seeded random shapes (strides 1 and 2, valid and same)', async () => {
    const cases = randomCases(20240611, 3);
    assert.equal(cases.length, 12);
    for (const [i, c] of cases.entries()) await check(c, 100 + i);
  });

  test('match cpu with unequal strides and explicit padding', async () => {
    await check({ x: [2, 9, 7, 3], filter: [3, 2, 3, 4], strides: [2, 1], pad: 'same' }, 7);
    await check(
      {
        x: [1, 8, 9, 2],
        filter: [3, 3, 2, 3],
        strides: [1, 2],
        pad: [
          [0, 0],
          [1, 2],
          [0, 1],
          [0, 0],
        ],
      },
      8,
    );
    await check({ x: [2, 5, 5, 2], filter: [5, 5, 2, 3], strides: 3, pad: 'valid' }, 9); // 1x1 output
  });

  test('match cpu where a filter is narrower than its stride (inputs no tap reaches) and with stride 3', async () => {
    // 1 x 2 filter, stride 3: input rows 1 and 2 of every 3 get no gradient, columns 2 of every 3 neither.
    const narrow: Case = { x: [2, 7, 8, 3], filter: [1, 2, 3, 4], strides: 3, pad: 'valid' };
    const same: Case = { x: [1, 9, 10, 2], filter: [4, 5, 2, 3], strides: [2, 3], pad: 'same' };
    await check(narrow, 13);
    await check(same, 14);
  });

  test('match cpu at the conv1 and primary-capsule geometries (batch 2, fewer channels)', async () => {
    // tfjs's cpu Conv2DBackpropFilter is a plain JS loop: ~10 s for conv1 at 256 filters, so fewer channels here
    // and the full channel counts against a float64 direct loop below.
    await check({ x: [2, 28, 28, 1], filter: [9, 9, 1, 16], strides: 1, pad: 'valid' }, 11);
    await check({ x: [2, 20, 20, 16], filter: [9, 9, 16, 16], strides: 2, pad: 'valid' }, 12);
  });

  for (const [name, c] of [
    ['conv1 (batch 2, 1 -> 256 channels)', { x: [2, 28, 28, 1], filter: [9, 9, 1, 256], strides: 1, pad: 'valid' }],
    ['primary capsules (batch 1, 256 -> 256 channels)', { x: [1, 20, 20, 256], filter: [9, 9, 256, 256], strides: 2, pad: 'valid' }],
  ] as [string, Case][]) {
    test(`match a float64 direct loop at the full ${name} shape`, async () => {
      const s = c.strides as number;
      const oh = Math.floor((c.x[1] - c.filter[0]) / s) + 1,
        ow = Math.floor((c.x[2] - c.filter[1]) / s) + 1;
      const dyShape: [number, number, number, number] = [c.x[0], oh, ow, c.filter[3]];
      const size = (shape: number[]) => shape.reduce((a, b) => a * b);
      const xv = values(size(c.x), 21),
        wv = values(size(c.filter), 22),
        dyv = values(size(dyShape), 23);
      const ref = directGradients(c, xv, wv, dyv);
      await tf.setBackend('wasm');
      const x = tf.tensor4d(xv, c.x),
        f = tf.tensor4d(wv, c.filter),
        dy = tf.tensor4d(dyv, dyShape);
      const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC' };
      for (const m of METHODS) {
        const previous = setConvGradMethod(m);
        try {
          const dwT = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: c.filter }) as tf.Tensor;
          const dxT = tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: f }, { ...attrs, inputShape: c.x }) as tf.Tensor;
          const ew = relErr((await dwT.data()) as Float32Array, ref.dw);
          const ex = relErr((await dxT.data()) as Float32Array, ref.dx);
          tf.dispose([dwT, dxT]);
          assert.ok(ew < 1e-5, `filter gradient (${m.filter}) rel err ${ew.toExponential(2)}`);
          assert.ok(ex < 1e-5, `input gradient (${m.input}) rel err ${ex.toExponential(2)}`);
        } finally {
          setConvGradMethod(previous);
        }
      }
      tf.dispose([x, f, dy]);
    });
  }

  test('match cpu when the batch is split into im2col groups', async () => {
    const previous = setIm2colBudget(1); // one image per group
    try {
      await check({ x: [3, 9, 8, 4], filter: [3, 3, 4, 5], strides: 2, pad: 'same' }, 13);
      await check({ x: [4, 10, 10, 3], filter: [4, 4, 3, 2], strides: 1, pad: 'valid' }, 14);
    } finally {
      setIm2colBudget(previous);
    }
  });

  test('free every temporary buffer (engine tensors and wasm heap entries)', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const x = tf.tensor4d(values(2 * 12 * 12 * 8, 1), [2, 12, 12, 8]);
    const f = tf.tensor4d(values(3 * 3 * 8 * 6, 2), [3, 3, 8, 6]);
    const dy = tf.tensor4d(values(2 * 5 * 5 * 6, 3), [2, 5, 5, 6]);
    const attrs = { strides: 2, pad: 'valid', dataFormat: 'NHWC' };
    const run = (): void => {
      for (const m of METHODS) {
        const previous = setConvGradMethod(m);
        try {
          const a = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: [3, 3, 8, 6] }) as tf.Tensor;
          const b = tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: f }, { ...attrs, inputShape: [2, 12, 12, 8] }) as tf.Tensor;
          tf.dispose([a, b]);
        } finally {
          setConvGradMethod(previous);
        }
      }
    };
    run(); // the first call may cache XNNPACK operators keyed on dy; measure from the second
    const before = { ...tf.memory(), ids: backend.numDataIds() };
    const previous = setIm2colBudget(1);
    try {
      for (let i = 0; i < 3; i++) run();
    } finally {
      setIm2colBudget(previous);
    }
    for (let i = 0; i < 3; i++) run();
    const afterRuns = { ...tf.memory(), ids: backend.numDataIds() };
    assert.equal(afterRuns.numTensors, before.numTensors);
    assert.equal(afterRuns.numBytes, before.numBytes);
    assert.equal(afterRuns.ids, before.ids, 'wasm backend data ids leaked');
    tf.dispose([x, f, dy]);
  });

  test('reject NCHW with a clear message', async () => {
    await tf.setBackend('wasm');
    const x = tf.zeros([1, 2, 5, 5]),
      dy = tf.zeros([1, 2, 3, 3]);
    assert.throws(
      () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'valid', dataFormat: 'NCHW', filterShape: [3, 3, 2, 2] }),
      /NHWC/,
    );
    tf.dispose([x, dy]);
  });
});

describe('wasm BatchMatMul with transposed operands', () => {
  const cases: [number[], number[], boolean, boolean][] = [
    [[32, 300], [32, 260], true, false], // dW = x^T . dy of a dense layer
    [[32, 260], [300, 260], false, true], // dx = dy . W^T
    [[1, 70, 90], [1, 80, 70], true, true], // rank 3, batch 1
    [[64, 48], [48, 40], false, false], // untransposed: passed through
    [[3, 40, 30], [3, 40, 20], true, false], // batched: passed through to the stock kernel
    [[5, 4], [6, 4], false, true], // tiny: passed through
  ];
  test('matches cpu for every transpose combination, rank and size', async () => {
    for (const [i, [sa, sb, ta, tb]] of cases.entries()) {
      const run = async (backend: 'cpu' | 'wasm') => {
        await tf.setBackend(backend);
        const a = tf.tensor(
          values(
            sa.reduce((x, y) => x * y),
            40 + i,
          ),
          sa,
        );
        const b = tf.tensor(
          values(
            sb.reduce((x, y) => x * y),
            60 + i,
          ),
          sb,
        );
        const c = tf.matMul(a, b, ta, tb);
        const out = { shape: c.shape, data: (await c.data()) as Float32Array };
        tf.dispose([a, b, c]);
        return out;
      };
      const ref = await run('cpu');
      const got = await run('wasm');
      assert.deepEqual(got.shape, ref.shape, `shape for case ${i}`);
      const e = relErr(got.data, ref.data);
      assert.ok(e < 1e-5, `case ${i} (${sa} x ${sb}, transposeA ${ta}, transposeB ${tb}): rel err ${e.toExponential(2)}`);
    }
  });

  test('frees its transposed copies', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const a = tf.tensor(values(32 * 300, 1), [32, 300]),
      b = tf.tensor(values(32 * 260, 2), [32, 260]);
    tf.dispose(tf.matMul(a, b, true, false));
    const before = backend.numDataIds();
    for (let i = 0; i < 3; i++) tf.dispose([tf.matMul(a, b, true, false), tf.matMul(b, a, true, false)]);
    assert.equal(backend.numDataIds(), before);
    tf.dispose([a, b]);
  });
});

describe('the wasm transpose kernel (assembly/training-kernels.ts)', () => {
  test('transposes a non-square, non-tile-multiple matrix between offsets, a row range at a time', () => {
    const memory = new WebAssembly.Memory({ initial: 1 });
    const { transpose } = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(KERNEL_BINARIES.plain)), { env: { memory } }).exports as unknown as {
      transpose(...args: number[]): void;
    };
    const rows = 37,
      cols = 45,
      off = 5,
      dstOff = off + rows * cols + 3;
    const heap = new Float32Array(memory.buffer);
    for (let i = 0; i < rows * cols; i++) heap[off + i] = i;
    heap.fill(-1, dstOff - 3, dstOff + rows * cols + 3);
    // Two row ranges, as two threads would do them.
    transpose(4 * off, cols, 4 * dstOff, rows, 0, 21, cols);
    transpose(4 * off, cols, 4 * dstOff, rows, 21, rows, cols);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) assert.equal(heap[dstOff + c * rows + r], r * cols + c, `element (${r}, ${c})`);
    }
    assert.deepEqual([...heap.subarray(dstOff - 3, dstOff)], [-1, -1, -1]);
    assert.deepEqual([...heap.subarray(dstOff + rows * cols, dstOff + rows * cols + 3)], [-1, -1, -1]);
  });
});

after(async () => {
  await tf.setBackend('cpu');
});
