// train/backends/backend.ts: each backend it can start here, and the errors for the ones it cannot.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import {
  BackendUnavailableError,
  type InitializedBackend,
  initBackend,
  nvidiaGpuVisible,
  releaseWebgpu,
  wasmThreadsWanted,
} from '../../../packages/capsnet/src/train/backends/backend.ts';
import { wasmConvKernelsRegistered } from '../../../packages/capsnet/src/train/backends/wasm-kernels.ts';
import { ortConvolutionsActive } from '../../../packages/capsnet/src/train/backends/ort-conv.ts';

const require = createRequire(import.meta.url);

function installed(pkg: string): boolean {
  try {
    require.resolve(`${pkg}/package.json`);
    return true;
  } catch {
    return false;
  }
}

const nativeInstalled = installed('@tensorflow/tfjs-node') || installed('@tensorflow/tfjs-node-gpu');

/** A 3x3 matmul whose exact answer is known, read back asynchronously (webgpu cannot dataSync). */
async function checkArithmetic(t: InitializedBackend['tf']): Promise<void> {
  const a = t.tensor2d([
    [1, 2, 3],
    [4, 5, 6],
    [7, 8, 10],
  ]);
  const p = t.matMul(a, a);
  assert.deepEqual(Array.from(await p.data()), [30, 36, 45, 66, 81, 102, 109, 134, 169]);
  t.dispose([a, p]);
}

describe('initBackend', () => {
  test('cpu', async () => {
    const b = await initBackend('cpu');
    assert.equal(b.name, 'cpu');
    assert.equal(b.tf.getBackend(), 'cpu');
    await checkArithmetic(b.tf);
  });

  test('wasm, with the conv gradient kernels registered and onnxruntime in front of them (CAPSNET_CONVOLUTIONS default)', async () => {
    const b = await initBackend('wasm');
    assert.equal(b.name, 'wasm');
    assert.equal(b.tf.getBackend(), 'wasm');
    assert.match(b.detail, /XNNPACK SIMD, \d+ threads?, convolutions on onnxruntime-node's CPU provider/);
    assert.ok(ortConvolutionsActive(), "onnxruntime's kernels are the wasm backend's convolutions");
    assert.ok(!wasmConvKernelsRegistered(), 'ours sit behind them');
    await checkArithmetic(b.tf);
    // A conv gradient runs (the stock wasm backend has no Conv2DBackpropFilter at all).
    const x = tf.ones([1, 5, 5, 1]),
      dy = tf.ones([1, 3, 3, 2]);
    const dw = tf
      .engine()
      .runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', filterShape: [3, 3, 1, 2] }) as tf.Tensor;
    assert.deepEqual(Array.from(await dw.data()), new Array(18).fill(9));
    tf.dispose([x, dy, dw]);
  });

  test('wasm again in the same process switches back without re-initializing', async () => {
    await initBackend('cpu');
    const b = await initBackend('wasm');
    assert.equal(b.tf.getBackend(), 'wasm');
  });

  test('CAPSNET_WASM_THREADS must be a whole number from 1: anything else is a one-line error', async () => {
    const saved = process.env.CAPSNET_WASM_THREADS;
    try {
      for (const bad of ['0', 'abc', '2.5', '-1']) {
        process.env.CAPSNET_WASM_THREADS = bad;
        assert.throws(
          () => wasmThreadsWanted(),
          (e: unknown) =>
            e instanceof BackendUnavailableError && e.message.startsWith(`CAPSNET_WASM_THREADS=${bad} is not a thread count`) && !e.message.includes('\n'),
        );
      }
      // auto stops there too, instead of falling back to the slow cpu backend.
      await assert.rejects(initBackend('auto'), /^BackendUnavailableError: CAPSNET_WASM_THREADS=-1 is not a thread count/);
      process.env.CAPSNET_WASM_THREADS = '3';
      assert.equal(wasmThreadsWanted(), 3);
    } finally {
      if (saved === undefined) delete process.env.CAPSNET_WASM_THREADS;
      else process.env.CAPSNET_WASM_THREADS = saved;
    }
  });

  test('CAPSNET_CONVOLUTIONS must be onnxruntime or wasm: anything else is a one-line error, not a fall back to cpu', async () => {
    const saved = process.env.CAPSNET_CONVOLUTIONS;
    try {
      process.env.CAPSNET_CONVOLUTIONS = 'gpu';
      await assert.rejects(initBackend('auto'), /^BackendUnavailableError: CAPSNET_CONVOLUTIONS=gpu is not one of onnxruntime, wasm: set one of them/);
      await assert.rejects(initBackend('wasm'), /CAPSNET_CONVOLUTIONS=gpu is not one of onnxruntime, wasm/);
    } finally {
      if (saved === undefined) delete process.env.CAPSNET_CONVOLUTIONS;
      else process.env.CAPSNET_CONVOLUTIONS = saved;
    }
  });

  test('wasm falls back to the single-threaded build when the threaded one does not start', () => {
    // In a child process (a backend is initialized once per process): a start timeout nothing can meet.
    const backendTs = fileURLToPath(new URL('../../../packages/capsnet/src/train/backends/backend.ts', import.meta.url));
    const script = `const { initBackend } = await import(${JSON.stringify(backendTs)});
      const logs = []; const b = await initBackend('wasm', (m) => logs.push(m));
      const tf = b.tf; const s = tf.sum(tf.tensor1d([1, 2, 3]));
      // A fused kernel too: its wasm module must link to the single-threaded build's (unshared) memory.
      const uHat = tf.engine().runKernel('CapsNetPredictionVectors', { u: tf.tensor3d([1, 2], [1, 1, 2]),
        W: tf.tensor3d([1, 2, 3, 4], [1, 2, 2]) }, { classes: 1, digitDim: 2 });
      console.log(JSON.stringify({ detail: b.detail, logs, sum: (await s.data())[0], uHat: Array.from(await uHat.data()) }));`;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, CAPSNET_WASM_THREADS: '2', CAPSNET_WASM_START_TIMEOUT_S: '0.001' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    const r = JSON.parse(out.trim().split('\n').at(-1)!) as { detail: string; logs: string[]; sum: number; uHat: number[] };
    assert.match(r.detail, /XNNPACK SIMD, 1 thread,/);
    assert.match(r.logs.join('\n'), /2-thread build did not start \(starting the threaded wasm module did not finish/);
    assert.equal(r.sum, 6);
    assert.deepEqual(r.uHat, [1 * 1 + 2 * 3, 1 * 2 + 2 * 4]);
  });

  test('tensorflow without tfjs-node throws an error that names the fix', async (t) => {
    if (nativeInstalled) {
      t.skip('@tensorflow/tfjs-node(-gpu) is installed here, so the missing-package error cannot be provoked');
      return;
    }
    const logs: string[] = [];
    await assert.rejects(
      initBackend('tensorflow', (m) => logs.push(m)),
      (e: unknown) => {
        assert.ok(e instanceof BackendUnavailableError);
        assert.match(e.message, /^the 'tensorflow' backend is not available: @tensorflow\/tfjs-node-gpu and @tensorflow\/tfjs-node not installed/);
        assert.match(e.message, /npm install @tensorflow\/tfjs-node/);
        assert.match(e.message, /libtensorflow/);
        assert.ok(!e.message.includes('\n'), 'one-line message');
        return true;
      },
    );
    assert.deepEqual(logs, [], 'the reasons are said once, in the error');
  });

  test('auto picks wasm here and logs why it skipped the native packages', async (t) => {
    if (nativeInstalled) {
      t.skip('@tensorflow/tfjs-node(-gpu) is installed here, so auto would rightly pick tensorflow');
      return;
    }
    const logs: string[] = [];
    const b = await initBackend('auto', (m) => logs.push(m));
    assert.equal(b.name, 'wasm');
    assert.equal(tf.getBackend(), 'wasm');
    const text = logs.join('\n');
    assert.match(text, nvidiaGpuVisible() ? /tfjs-node-gpu not installed/ : /tfjs-node-gpu skipped: no NVIDIA GPU visible/);
    assert.match(text, /@tensorflow\/tfjs-node not installed: .*libtensorflow from the internet/);
    assert.match(text, /chose wasm/);
  });

  test('webgpu either runs or explains what is missing', async () => {
    try {
      const b = await initBackend('webgpu');
      assert.equal(b.name, 'webgpu');
      assert.equal(tf.getBackend(), 'webgpu');
      await checkArithmetic(b.tf);
    } catch (e) {
      // No adapter here (no Vulkan loader / GPU): the error must say so and how to get one.
      assert.ok(e instanceof BackendUnavailableError, `unexpected error: ${String(e)}`);
      assert.match(e.message, /webgpu/);
      if (process.platform === 'linux') assert.match(e.message, /libvulkan|VK_ICD_FILENAMES|adapter/);
      console.log(`# webgpu unavailable here (expected without a Vulkan driver): ${e.message}`);
    } finally {
      releaseWebgpu();
    }
  });

  test('rejects an unknown name', async () => {
    await assert.rejects(initBackend('nope' as 'cpu'), /unknown backend 'nope'/);
  });
});

after(async () => {
  if (tf.findBackend('cpu') != null) await tf.setBackend('cpu');
});
