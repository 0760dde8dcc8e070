/**
 * The runtime on a tiny real CapsNet (test/tiny-model.ts: random weights, exported by export/exporter.ts), so
 * every check here takes milliseconds; outputs are checked against train/model.ts's tfjs forward pass. The
 * trained-model checks across backends are in parity.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { PNG } from 'pngjs';
import { CapsNet, DeviceUnavailableError, InputError, METADATA_KEYS, ModelFormatError, type Classifier } from '@capsnet-onnx/runtime/node';
import { CapsNet as WebCapsNet } from '@capsnet-onnx/runtime/web';
import { readModelMetadata, readOnnxHeader } from '@capsnet-onnx/core';
import { nodeCpu } from '../packages/runtime/src/providers/node-cpu.ts';
import { nodeCuda } from '../packages/runtime/src/providers/node-cuda.ts';
import { nodeWebGpu } from '../packages/runtime/src/providers/node-webgpu.ts';
import { webWasm } from '../packages/runtime/src/providers/web-wasm.ts';
import { webWebGpu } from '../packages/runtime/src/providers/web-webgpu.ts';
import { resizeArea } from '../packages/capsnet/src/cli/image-files.ts';
import { PRODUCER_NAME } from '../packages/capsnet/src/export/exporter.ts';
import { CLI, ROOT } from './support/fixtures.ts';
import { type TinyReference, TINY_CONFIG, tinyModel, tinyReference } from './support/tiny-model.ts';

const tiny = tinyModel();
const { inputHeight: H, inputWidth: W, inputChannels: C, numClasses: K, digitDim: D } = TINY_CONFIG;
const PIXELS = H * W * C;
const CAPS = K * D;

function image(seed: number): Float32Array {
  return Float32Array.from({ length: PIXELS }, (_, i) => ((i * 7 + seed * 13) % 17) / 16);
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

let dir: string;
let modelPath: string;
let reference: TinyReference;

before(async () => {
  reference = await tinyReference(tiny);
  dir = mkdtempSync(join(tmpdir(), 'capsnet-runtime-'));
  modelPath = join(dir, 'model.onnx');
  writeFileSync(modelPath, tiny.model);
  writeFileSync(join(dir, 'model.decoder.onnx'), tiny.decoder);
});

after(() => rmSync(dir, { recursive: true, force: true }));

describe('metadata', () => {
  test('reads producer and metadata_props without parsing the graph', () => {
    const header = readOnnxHeader(tiny.model);
    assert.equal(header.producerName, PRODUCER_NAME);
    assert.equal(header.props[METADATA_KEYS.dataset], 'tiny-random');
    const m = readModelMetadata(tiny.model);
    assert.deepEqual([m.inputHeight, m.inputWidth, m.inputChannels, m.numClasses, m.digitDim], [12, 10, 1, 4, 6]);
    assert.deepEqual(m.classLabels, ['class0', 'class1', 'class2', 'class3']);
    assert.equal(m.testAccuracy, 0.5);
  });

  test('a model without CapsNet metadata, or with bad labels, is refused with the fix', () => {
    assert.throws(() => readModelMetadata(tinyModel({ [METADATA_KEYS.config]: undefined }).model), (e: Error) =>
      e instanceof ModelFormatError && /capsnet export/.test(e.message));
    assert.throws(() => readModelMetadata(tinyModel({ [METADATA_KEYS.classLabels]: '["a"]' }).model), /JSON array of 4 labels/);
    assert.throws(() => readModelMetadata(new Uint8Array([0x0a, 0xff, 0xff])), ModelFormatError);
  });
});

describe('providers', () => {
  test('each provider lists exactly one execution provider, its own', () => {
    for (const [provider, name] of [[nodeCpu, 'cpu'], [nodeCuda, 'cuda'], [nodeWebGpu, 'webgpu'], [webWasm, 'wasm'], [webWebGpu, 'webgpu']] as const) {
      const eps = provider.sessionOptions({}).executionProviders!;
      assert.equal(eps.length, 1, `${provider.runtime} ${provider.device}`);
      assert.equal(typeof eps[0] === 'string' ? eps[0] : eps[0]!.name, name);
    }
    // GPU providers can also forbid ORT's per-node CPU fallback.
    for (const provider of [nodeCuda, nodeWebGpu, webWebGpu]) {
      assert.deepEqual(provider.sessionOptions({ noCpuFallback: true }).extra, { session: { disable_cpu_ep_fallback: '1' } });
      assert.equal(provider.sessionOptions({}).extra, undefined);
    }
  });

  test('auto in Node tries cuda then cpu, and reports its choice', async () => {
    assert.deepEqual(CapsNet.autoOrder, ['cuda', 'cpu']);
    const logs: string[] = [];
    const model = await CapsNet.load(modelPath, { log: (l) => logs.push(l) });
    try {
      const cudaReason = (await CapsNet.probe()).cuda;
      assert.equal(model.device, cudaReason ? 'cpu' : 'cuda');
      assert.match(model.deviceReport, /^auto chose/);
      if (cudaReason) assert.ok(logs.some((l) => l.startsWith('auto: passing over cuda')), logs.join('\n'));
    } finally {
      await model.dispose();
    }
  });

  test('an unavailable named device is an error with the reason and the fix, never a fallback', async (t) => {
    const cudaReason = (await CapsNet.probe()).cuda;
    if (!cudaReason) t.diagnostic('CUDA is available here: only the wasm/webgpu refusals are checked');
    else {
      await assert.rejects(CapsNet.load(modelPath, { device: 'cuda' }), (e: Error) =>
        e instanceof DeviceUnavailableError && /device "cuda" is unavailable/.test(e.message) && /ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node/.test(e.message));
    }
    await assert.rejects(CapsNet.load(modelPath, { device: 'wasm' }), /@capsnet-onnx\/runtime\/web/);
    await assert.rejects(CapsNet.load(modelPath, { device: 'tpu' as never }), /unknown device "tpu"/);
    await assert.rejects(WebCapsNet.load(tiny.model, { device: 'webgpu' }), (e: Error) =>
      e instanceof DeviceUnavailableError && /@capsnet-onnx\/runtime\/node/.test(e.message));
    await assert.rejects(WebCapsNet.load(tiny.model, { device: 'cuda' }), /CUDA runs only in Node/);
  });

  test('webgpu in Node either runs on webgpu or says how to get a Vulkan adapter', async () => {
    try {
      const model = await CapsNet.load(tiny.model, { device: 'webgpu', decoder: tiny.decoder });
      assert.equal(model.device, 'webgpu');
      await model.dispose();
    } catch (e) {
      assert.ok(e instanceof DeviceUnavailableError, String(e));
      assert.match((e as Error).message, /Vulkan/);
    }
  });
});

describe('classify and decode (onnxruntime-node cpu, onnxruntime-web wasm)', () => {
  const models: Record<string, Classifier> = {};
  before(async () => {
    models.cpu = await CapsNet.load(modelPath, { device: 'cpu', maxBatch: 8 });
    models.wasm = await WebCapsNet.load(tiny.model, { device: 'wasm', decoder: tiny.decoder, maxBatch: 8 });
  });
  after(async () => {
    for (const m of Object.values(models)) await m.dispose();
  });

  for (const device of ['cpu', 'wasm'] as const) {
    test(`${device}: per image label, lengths, capsules and reconstruction match the tfjs forward pass`, async () => {
      const model = models[device]!;
      assert.equal(model.device, device);
      const images = [image(1), image(2), image(3)];
      const results = await model.classify(images);
      assert.equal(results.length, 3);
      for (const [n, r] of results.entries()) {
        const ref = await reference.classify(images[n]!);
        assert.ok(maxDiff(r.lengths, ref.lengths) < 1e-5);
        assert.ok(maxDiff(r.capsules, ref.capsules) < 1e-4);
        assert.ok(maxDiff(r.reconstruction, ref.reconstruction) < 1e-4);
        assert.equal(r.capsules.length, CAPS);
        assert.equal(r.reconstruction.length, PIXELS);
        assert.equal(r.label, r.lengths.indexOf(Math.max(...r.lengths)));
        assert.equal(r.labelName, `class${r.label}`);
      }
    });

    test(`${device}: single image, flat batch, bytes and float arrays agree`, async () => {
      const model = models[device]!;
      const bytes = Uint8Array.from(image(4), (v) => Math.round(v * 255));
      const floats = Float32Array.from(bytes, (v) => v / 255);
      const [fromBytes] = await model.classify(bytes);
      const [fromFloats] = await model.classify(floats);
      assert.ok(maxDiff(fromBytes!.lengths, fromFloats!.lengths) < 1e-6);
      const flat = new Float32Array(2 * PIXELS);
      flat.set(image(5));
      flat.set(floats, PIXELS);
      const batch = await model.classify(flat);
      assert.equal(batch.length, 2);
      assert.ok(maxDiff(batch[1]!.lengths, fromFloats!.lengths) < 1e-6);
    });

    test(`${device}: decode runs the decoder model on masked capsules`, async () => {
      const model = models[device]!;
      const [r] = await model.classify(image(6));
      const masked = new Float32Array(CAPS);
      masked.set(r!.capsules.subarray(r!.label * D, (r!.label + 1) * D), r!.label * D);
      const [decoded, again] = await model.decode([masked, masked]);
      assert.ok(maxDiff(decoded!, await reference.decode(masked)) < 1e-4);
      assert.deepEqual(decoded, again);
    });

    test(`${device}: bad inputs are clear errors`, async () => {
      const model = models[device]!;
      const cases: Array<[unknown, RegExp]> = [
        [new Float32Array(PIXELS - 1), /119 values, not a multiple of 12x10x1 = 120/],
        [[new Float32Array(PIXELS), new Float32Array(PIXELS + 1)], /image 1 has 121 values, expected 12x10x1 = 120/],
        [Float32Array.from(image(1), (v, i) => (i === 3 ? Number.NaN : v)), /pixel 3 is NaN/],
        [Float32Array.from(image(1), (v, i) => (i === 4 ? Infinity : v)), /pixel 4 is Infinity/],
        [Float32Array.from(image(1), (v, i) => (i === 5 ? 128 : v)), /outside \[0, 1\].*Uint8Array/],
        [new Float32Array(0), /empty batch/],
        [[], /empty batch/],
        [new Float32Array(9 * PIXELS), /batch of 9 images is above the limit of 8/],
        [[image(1), 'x'], /image 1 must be a Float32Array/],
        ['pixels', /got string/],
      ];
      for (const [input, message] of cases) {
        await assert.rejects(model.classify(input as Float32Array), (e: Error) => e instanceof InputError && message.test(e.message), String(message));
      }
      await assert.rejects(model.decode(new Float32Array(CAPS + 1)), /not a multiple of 4x6 = 24/);
      await assert.rejects(model.decode(Float32Array.from({ length: CAPS }, () => Number.NaN)), /capsules must be finite/);
    });
  }

  test('concurrent calls are serialised and all answered', async () => {
    const results = await Promise.all([1, 2, 3, 4].map((s) => models.wasm!.classify(image(s))));
    assert.equal(results.length, 4);
  });

  test('a model loaded from bytes without a decoder classifies, and decode says what is missing', async () => {
    const model = await CapsNet.load(tiny.model, { device: 'cpu' });
    try {
      assert.equal((await model.classify(image(1))).length, 1);
      await assert.rejects(model.decode(new Float32Array(CAPS)), /pass \{ decoder/);
    } finally {
      await model.dispose();
    }
  });

  test('a missing model file and a bad maxBatch are clear errors', async () => {
    await assert.rejects(CapsNet.load(join(dir, 'nope.onnx')), /does not exist: create it with `capsnet export/);
    await assert.rejects(CapsNet.load(modelPath, { maxBatch: 0 }), /maxBatch must be a positive integer/);
  });
});

describe('image files', () => {
  test('area resize averages when shrinking and keeps a flat image flat', () => {
    assert.deepEqual(Array.from(resizeArea(Float32Array.from([0, 1, 1, 0]), 2, 2, 1, 1, 1)), [0.5]);
    const flat = resizeArea(new Float32Array(9 * 7).fill(0.25), 9, 7, 1, 6, 5);
    assert.ok(flat.every((v) => Math.abs(v - 0.25) < 1e-6));
  });

  test('`capsnet classify` reads PNG (resized, RGBA to gray) and IDX files and prints labels and scores', async () => {
    const png = new PNG({ width: 15, height: 18 });
    for (let i = 0; i < 15 * 18; i++) png.data.set([200, 100, 50, i % 2 ? 255 : 128], 4 * i);
    writeFileSync(join(dir, 'big.png'), PNG.sync.write(png));
    const idx = new Uint8Array(16 + 2 * PIXELS);
    new DataView(idx.buffer).setUint32(0, 0x803);
    new DataView(idx.buffer).setUint32(4, 2);
    new DataView(idx.buffer).setUint32(8, H);
    new DataView(idx.buffer).setUint32(12, W);
    idx.set(Uint8Array.from(image(1), (v) => Math.round(v * 255)), 16);
    writeFileSync(join(dir, 'test-images-idx3-ubyte'), idx);
    const labels = Uint8Array.from([0, 0, 8, 1, 0, 0, 0, 2, 3, 1]);
    writeFileSync(join(dir, 'test-labels-idx1-ubyte'), labels);
    const json = await execa('node', [CLI, 'classify', modelPath, join(dir, 'big.png'), join(dir, 'test-images-idx3-ubyte'), '--device', 'cpu', '--json'], { cwd: ROOT });
    const out = JSON.parse(json.stdout);
    assert.equal(out.device, 'cpu');
    assert.equal(out.results.length, 3);
    assert.deepEqual(Object.keys(out.results[0].scores), ['class0', 'class1', 'class2', 'class3']);
    assert.deepEqual(out.results.slice(1).map((r: { trueLabel: number }) => r.trueLabel), [3, 1]);
    const [expected] = await (await CapsNet.load(tiny.model, { device: 'cpu' })).classify(Uint8Array.from(image(1), (v) => Math.round(v * 255)));
    assert.equal(out.results[1].label, expected!.label);
    const text = await execa('node', [CLI, 'classify', modelPath, join(dir, 'big.png'), '--device', 'cpu'], { cwd: ROOT });
    assert.match(text.stdout, /big\.png\s+class\d\s+scores: class\d \d\.\d{4}/);
    assert.match(text.stderr, /resized 15x18 to the model's 10x12/);
    const bad = await execa('node', [CLI, 'classify', modelPath, join(dir, 'test-labels-idx1-ubyte')], { cwd: ROOT, reject: false });
    assert.equal(bad.exitCode, 1);
    assert.match(bad.stderr, /labels file: pass the images file/);
  });
});
