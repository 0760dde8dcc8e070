/**
 * The runtime on a tiny real CapsNet (test/support/tiny-model.ts: random weights, exported by export/exporter.ts), so
 * every check here takes milliseconds; outputs are checked against model/capsnet.ts's tfjs forward pass. The
 * trained-model checks across backends are in parity.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { encode as encodePng } from 'fast-png';
import jpeg from 'jpeg-js';
import { CapsNet, DeviceUnavailableError, InputError, METADATA_KEYS, ModelFileError, ModelFormatError, type Classifier } from '@capsnet-onnx/runtime/node';
import { CapsNet as WebCapsNet } from '@capsnet-onnx/runtime/web';
import { CapsNet as WasmCapsNet, RgbaImage, type LoadProgress } from '@capsnet-onnx/runtime/web/wasm';
import { CapsNet as WebGpuCapsNet } from '@capsnet-onnx/runtime/web/webgpu';
import { ORT_WASM_BUILDS, ortWasmDir } from '@capsnet-onnx/runtime/wasm-assets';
import { decodeImage, derivedSizes, readModelMetadata, readOnnxHeader } from '@capsnet-onnx/core';
import { nodeCpu } from '../../../packages/runtime/src/providers/node-cpu.ts';
import { nodeCuda } from '../../../packages/runtime/src/providers/node-cuda.ts';
import { nodeWebGpu } from '../../../packages/runtime/src/providers/node-webgpu.ts';
import { webWasm } from '../../../packages/runtime/src/providers/web-wasm.ts';
import { webWebGpu } from '../../../packages/runtime/src/providers/web-webgpu.ts';
import { PRODUCER_NAME } from '../../../packages/capsnet/src/export/exporter.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';
import { type TinyReference, TINY_CONFIG, tinyModel, tinyReference } from '../../support/tiny-model.ts';

const tiny = tinyModel();
const { inputHeight: H, inputWidth: W, inputChannels: C, numClasses: K, digitDim: D } = TINY_CONFIG;
const PIXELS = H * W * C;
const CAPS = K * D;

function image(seed: number): Float32Array {
  return Float32Array.from({ length: PIXELS }, (_, i) => ((i * 7 + seed * 13) % 17) / 16);
}

/** A dense-looking number[] of one image's length with one hole. */
function holey(at: number): number[] {
  const values = new Array<number>(PIXELS).fill(0.5);
  delete values[at];
  return values;
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
    assert.throws(
      () => readModelMetadata(tinyModel({ [METADATA_KEYS.config]: undefined }).model),
      (e: Error) => e instanceof ModelFormatError && /capsnet export/.test(e.message),
    );
    assert.throws(() => readModelMetadata(tinyModel({ [METADATA_KEYS.classLabels]: '["a"]' }).model), /JSON array of 4 labels/);
    assert.throws(() => readModelMetadata(new Uint8Array([0x0a, 0xff, 0xff])), ModelFormatError);
  });
});

describe('model files that cannot be read', () => {
  /** One line, naming the file; no command-line flag an embedding app does not have. */
  const libraryLine = (e: Error, path: string) => {
    assert.ok(!e.message.includes('\n'), e.message);
    assert.ok(e.message.includes(path), e.message);
    assert.doesNotMatch(e.message, /(^|[\s(`])--?[a-z]/, `a CLI flag in a library error: ${e.message}`);
  };
  const fileError = (code: string, path: string, message: RegExp) => (e: Error) => {
    assert.ok(e instanceof ModelFileError && !(e instanceof ModelFormatError), `${e.name}: ${e.message}`);
    assert.equal((e as ModelFileError).code, code);
    assert.equal((e as ModelFileError).path, path);
    assert.match(e.message, message);
    libraryLine(e, path);
    return true;
  };

  test('Node: a missing model or decoder is a ModelFileError that names the path; a directory is UNREADABLE', async () => {
    const missing = join(dir, 'missing.onnx');
    await assert.rejects(
      CapsNet.load(missing),
      fileError('NOT_FOUND', missing, /^model file .*missing\.onnx does not exist: check the path, or export one with `capsnet export`$/),
    );
    await assert.rejects(CapsNet.load(modelPath, { decoder: missing }), fileError('NOT_FOUND', missing, /^decoder file .*missing\.onnx does not exist/));
    const folder = join(dir, 'folder.onnx');
    mkdirSync(folder, { recursive: true });
    await assert.rejects(CapsNet.load(folder), fileError('UNREADABLE', folder, /^cannot read model file .*folder\.onnx: EISDIR/));
    // The capsnet-onnx package's API is the runtime's: the same errors.
    const api = await import('../../../packages/capsnet/src/api/index.ts');
    assert.equal(api.ModelFileError, ModelFileError);
    await assert.rejects(api.CapsNet.load(missing), ModelFileError);
    // A model without its decoder loads; decode() then names the decoder file that is missing.
    const alone = join(dir, 'alone');
    mkdirSync(alone, { recursive: true });
    writeFileSync(join(alone, 'model.onnx'), tiny.model);
    const model = await CapsNet.load(join(alone, 'model.onnx'), { device: 'cpu' });
    try {
      const decoder = join(alone, 'model.decoder.onnx');
      await assert.rejects(model.decode(new Float32Array(CAPS)), fileError('NOT_FOUND', decoder, /no decoder model: .*model\.decoder\.onnx does not exist/));
    } finally {
      await model.dispose();
    }
    // A real format problem stays a ModelFormatError.
    const junk = join(dir, 'junk.onnx');
    writeFileSync(junk, 'not onnx');
    await assert.rejects(CapsNet.load(junk), (e: Error) => e instanceof ModelFormatError && !(e instanceof ModelFileError));
  });

  test('web: HTTP 404 is NOT_FOUND, another failed status UNREADABLE', async () => {
    const server = createServer((req, res) => {
      res.statusCode = req.url === '/model.onnx' ? 200 : req.url?.startsWith('/broken') ? 500 : 404;
      res.end(req.url === '/model.onnx' ? tiny.model : '');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      await assert.rejects(
        WebCapsNet.load(`${base}/missing.onnx`),
        fileError('NOT_FOUND', `${base}/missing.onnx`, /^model file .* was not found \(HTTP 404\): check the URL, or export one with `capsnet export`$/),
      );
      await assert.rejects(WebCapsNet.load(`${base}/broken.onnx`), fileError('UNREADABLE', `${base}/broken.onnx`, /HTTP 500/));
      await assert.rejects(
        WebCapsNet.load(`${base}/model.onnx`, { decoder: `${base}/gone.onnx` }),
        fileError('NOT_FOUND', `${base}/gone.onnx`, /^decoder file .* was not found \(HTTP 404\)/),
      );
    } finally {
      server.close();
    }
  });

  test("the runtime's other errors name no command-line flag", async () => {
    const errors: Error[] = [];
    const collect = async (p: Promise<unknown>) =>
      p.then(
        () => assert.fail('expected an error'),
        (e: Error) => errors.push(e),
      );
    await collect(CapsNet.load(modelPath, { maxBatch: 0 }));
    await collect(CapsNet.load(tiny.model, { device: 'wasm' }));
    await collect(CapsNet.load(tiny.model, { presenceThreshold: 2 }));
    await collect(CapsNet.load(tinyModel({ [METADATA_KEYS.config]: undefined }).model));
    const model = await CapsNet.load(tiny.model, { device: 'cpu' });
    try {
      await collect(model.decode(new Float32Array(CAPS)));
      await collect(model.classify(new Float32Array(PIXELS + 1)));
      await collect(model.classify({ data: new Float32Array(PIXELS), shape: [1, H + 1, W, C] }));
    } finally {
      await model.dispose();
    }
    for (const e of errors) assert.doesNotMatch(e.message, /(^|[\s(`])--?[a-z]/, `a CLI flag in a library error: ${e.message}`);
  });
});

describe('providers', () => {
  test('each provider lists exactly one execution provider, its own', () => {
    for (const [provider, name] of [
      [nodeCpu, 'cpu'],
      [nodeCuda, 'cuda'],
      [nodeWebGpu, 'webgpu'],
      [webWasm, 'wasm'],
      [webWebGpu, 'webgpu'],
    ] as const) {
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
      if (cudaReason) {
        assert.equal(logs.filter((l) => l.includes('cuda')).length, 1, `said once: ${logs.join('\n')}`);
        // The report says why for each device passed over: the problem, without the install advice.
        const problem = cudaReason.split(/: (?![^(]*\))/)[0]!;
        assert.ok(model.deviceReport.includes(`passed over cuda (skipped: ${problem})`), model.deviceReport);
        assert.doesNotMatch(model.deviceReport, /npm rebuild/);
      }
      // webgpu is never auto's choice in Node, and the report says why (the device table's reason).
      assert.match(model.deviceReport, /webgpu \(not tried: may be a software GPU; ask for device "webgpu"\)/);
    } finally {
      await model.dispose();
    }
  });

  test('an unavailable named device is an error with the reason and the fix, never a fallback', async (t) => {
    const cudaReason = (await CapsNet.probe()).cuda;
    if (!cudaReason) t.diagnostic('CUDA is available here: only the wasm/webgpu refusals are checked');
    else {
      await assert.rejects(
        CapsNet.load(modelPath, { device: 'cuda' }),
        (e: Error) =>
          e instanceof DeviceUnavailableError &&
          /device "cuda" is unavailable/.test(e.message) &&
          /ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node/.test(e.message),
      );
    }
    await assert.rejects(CapsNet.load(modelPath, { device: 'wasm' }), /@capsnet-onnx\/runtime\/web/);
    await assert.rejects(CapsNet.load(modelPath, { device: 'tpu' as never }), /unknown device "tpu"/);
    await assert.rejects(
      WebCapsNet.load(tiny.model, { device: 'webgpu' }),
      (e: Error) => e instanceof DeviceUnavailableError && /@capsnet-onnx\/runtime\/node/.test(e.message),
    );
    await assert.rejects(WebCapsNet.load(tiny.model, { device: 'cuda' }), /cuda runs on onnxruntime-node only: use @capsnet-onnx\/runtime\/node/);
    // The CPU device of the other runtime is named as the alternative.
    await assert.rejects(
      CapsNet.load(modelPath, { device: 'wasm' }),
      /wasm runs on onnxruntime-web only: use @capsnet-onnx\/runtime\/web, or device "cpu" here/,
    );
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
        assert.equal(r.longest, r.lengths.indexOf(Math.max(...r.lengths)));
        // Present only when the longest capsule reaches the threshold (the config's m-, 0.1).
        const present = r.lengths[r.longest]! >= 0.1;
        assert.equal(r.label, present ? r.longest : null);
        assert.equal(r.labelName, present ? `class${r.longest}` : null);
        if (!present) assert.match(r.reason!, /below the presence threshold 0.1/);
      }
    });

    test(`${device}: single image, flat batch, bytes and float arrays agree`, async () => {
      const model = models[device]!;
      const bytes = Uint8Array.from(image(4), (v) => Math.round(v * 255));
      const floats = Float32Array.from(bytes, (v) => v / 255);
      const [fromBytes] = await model.classify(bytes);
      const [fromFloats] = await model.classify(floats);
      assert.ok(maxDiff(fromBytes!.lengths, fromFloats!.lengths) < 1e-6);
      const [fromNumbers] = await model.classify(Array.from(floats));
      assert.ok(maxDiff(fromNumbers!.lengths, fromFloats!.lengths) < 1e-6);
      const [fromClamped] = await model.classify(new Uint8ClampedArray(bytes));
      assert.ok(maxDiff(fromClamped!.lengths, fromFloats!.lengths) < 1e-6);
      const flat = new Float32Array(2 * PIXELS);
      flat.set(image(5));
      flat.set(floats, PIXELS);
      const batch = await model.classify({ data: flat, shape: [2, H, W, C] });
      assert.equal(batch.length, 2);
      assert.ok(maxDiff(batch[1]!.lengths, fromFloats!.lengths) < 1e-6);
    });

    test(`${device}: decode runs the decoder model on masked capsules`, async () => {
      const model = models[device]!;
      const [r] = await model.classify(image(6));
      const masked = new Float32Array(CAPS);
      masked.set(r!.capsules.subarray(r!.longest * D, (r!.longest + 1) * D), r!.longest * D);
      const [decoded, again] = await model.decode([masked, masked]);
      assert.ok(maxDiff(decoded!, await reference.decode(masked)) < 1e-4);
      assert.deepEqual(decoded, again);
    });

    test(`${device}: bad inputs are clear errors`, async () => {
      const model = models[device]!;
      const cases: Array<[unknown, RegExp | null]> = [
        [new Float32Array(PIXELS - 1), /exactly 12x10x1 = 120 values, got 119 values: pass one prepared image/],
        // k*H*W*C values without a shape are not guessed to be a batch, nor RGBA bytes to be one image.
        [new Float32Array(3 * PIXELS), /got 360 values: for a batch of 3 images pass \{ data, shape: \[3, 12, 10, 1\] \}/],
        [new Uint8ClampedArray(4 * PIXELS + 4), /for RGBA pixels .* pass \{ data, width, height \}/],
        [Array.from({ length: 2 * PIXELS }, () => 0.5), /for a batch of 2 images pass \{ data, shape/],
        [new Array(PIXELS), /sparse array \(index 0 is empty\)/],
        [holey(5), /sparse array \(index 5 is empty\)/],
        [Array.from({ length: PIXELS }, (_, i) => (i === 7 ? undefined : 0.5)), /image\[7\] is undefined, not a number/],
        [[Array.from({ length: H }, () => new Array(W).fill(0))], /image 0 is an array/],
        [{ data: new Float32Array(2 * PIXELS), shape: [2, H, W, 3] }, /does not fit the model's \[N, 12, 10, 1\]/],
        [{ data: new Float32Array(PIXELS), shape: [2, H, W, C] }, /needs 240/],
        [{ data: new Uint8ClampedArray(5 * 4 * 4 - 1), width: 5, height: 4 }, /79 values for 5x4 pixels/],
        [{ data: new Uint8ClampedArray(16), width: 2, height: 2 }, null],
        [[new Float32Array(PIXELS), new Float32Array(PIXELS + 1)], /image 1 has 121 values, expected 12x10x1 = 120/],
        [Float32Array.from(image(1), (v, i) => (i === 3 ? Number.NaN : v)), /pixel 3 is NaN/],
        [Float32Array.from(image(1), (v, i) => (i === 4 ? Infinity : v)), /pixel 4 is Infinity/],
        [Float32Array.from(image(1), (v, i) => (i === 5 ? 128 : v)), /outside \[0, 1\].*Uint8Array/],
        [new Float32Array(0), /empty batch/],
        [[], /empty batch/],
        [{ data: new Float32Array(9 * PIXELS), shape: [9, H, W, C] }, /batch of 9 images is above the limit of 8/],
        [[image(1), 'x'], /image 1 is string: an array of images holds/],
        ['pixels', /got string/],
        // The bytes of an image file (PNG and JPEG signatures) are named as such, with the decoding step to add.
        [
          Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, ...new Array(300).fill(0)]),
          /bytes are a PNG file, not pixels: .*decodeImage\(bytes\)/,
        ],
        [Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, ...new Array(300).fill(0)]), /bytes are a JPEG file, not pixels: .*decodeImage/],
      ];
      for (const [input, message] of cases) {
        if (message === null) {
          // A 2x2 RGBA picture is fine: it goes through the image pipeline.
          assert.equal((await model.classify(input as Float32Array)).length, 1);
          continue;
        }
        await assert.rejects(model.classify(input as Float32Array), (e: Error) => e instanceof InputError && message.test(e.message), String(message));
      }
      await assert.rejects(model.classify(image(1), { polarity: 'inverted' as never }), /polarity must be auto, light-on-dark, dark-on-light/);
      await assert.rejects(model.classify(image(1), { presenceThreshold: 2 }), /presenceThreshold must be a number in \[0, 1\)/);
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

  test('{ model, decoder } (what pretrained() gives) loads both files, whatever their names; options.decoder wins', async () => {
    // A bundler's emitted names: the decoder is not `<model>.decoder.onnx`, so only the object can say where it is.
    const hashed = join(dir, 'hashed');
    mkdirSync(hashed, { recursive: true });
    const files = { model: join(hashed, 'model-3f2a.onnx'), decoder: join(hashed, 'model.decoder-9c1b.onnx') };
    writeFileSync(files.model, tiny.model);
    writeFileSync(files.decoder, tiny.decoder);
    const model = await CapsNet.load(files, { device: 'cpu' });
    try {
      const masked = new Float32Array(CAPS).fill(0.1);
      assert.ok(maxDiff((await model.decode([masked]))[0]!, (await (await CapsNet.load(modelPath, { device: 'cpu' })).decode([masked]))[0]!) < 1e-6);
    } finally {
      await model.dispose();
    }
    const alone = await CapsNet.load({ model: files.model }, { device: 'cpu' });
    try {
      await assert.rejects(alone.decode(new Float32Array(CAPS)), (e: Error) => e instanceof ModelFileError && e.message.includes('model-3f2a.decoder.onnx'));
    } finally {
      await alone.dispose();
    }
    const noDecoder = await CapsNet.load({ model: files.model, decoder: join(hashed, 'missing.onnx') }, { device: 'cpu', decoder: false });
    await noDecoder.dispose();
    await assert.rejects(
      CapsNet.load({ model: files.model, decoder: join(hashed, 'missing.onnx') }, { device: 'cpu' }),
      /decoder file .*missing\.onnx does not exist/,
    );
    for (const bad of [{}, { model: 3 }, null, 42]) {
      await assert.rejects(
        CapsNet.load(bad as never),
        (e: Error) => e instanceof InputError && /path or URL string, its bytes .* or \{ model, decoder \}/.test(e.message),
        JSON.stringify(bad),
      );
    }
  });

  test('a missing model file and a bad maxBatch are clear errors', async () => {
    await assert.rejects(CapsNet.load(modelPath, { maxBatch: 0 }), /maxBatch must be a positive integer/);
  });
});

describe('browser entries and load options (onnxruntime-web in Node)', () => {
  /** A server of the model, its decoder and the plain wasm build's binary; it records the paths asked for. */
  async function serveFiles(): Promise<{ base: string; asked: string[]; close: () => void }> {
    const wasm = readFileSync(join(ortWasmDir(), ORT_WASM_BUILDS.wasm.wasm));
    const files: Record<string, Uint8Array> = {
      '/model.onnx': tiny.model,
      '/model.decoder.onnx': tiny.decoder,
      // As a bundler emits them: hashed names, the decoder not findable beside the model.
      '/assets/model-3f2a.onnx': tiny.model,
      '/assets/model.decoder-9c1b.onnx': tiny.decoder,
      [`/ort/${ORT_WASM_BUILDS.wasm.wasm}`]: wasm,
    };
    const asked: string[] = [];
    const server = createServer((req, res) => {
      asked.push(req.url ?? '');
      const body = files[req.url ?? ''];
      res.statusCode = body ? 200 : 404;
      if (body) res.setHeader('Content-Length', body.length);
      res.end(body ?? '');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, asked, close: () => server.close() };
  }

  test('onProgress reports the model, decoder and wasm bytes up to their totals; { decoder: false } fetches no decoder', async () => {
    const { base, asked, close } = await serveFiles();
    const wasmUrl = `${base}/ort/${ORT_WASM_BUILDS.wasm.wasm}`;
    const wasmBytes = statSync(join(ortWasmDir(), ORT_WASM_BUILDS.wasm.wasm)).size;
    try {
      const events: LoadProgress[] = [];
      const model = await WasmCapsNet.load(`${base}/model.onnx`, { onProgress: (p) => events.push({ ...p }), wasmPaths: { wasm: wasmUrl } });
      try {
        for (const [file, size] of [
          ['model', tiny.model.length],
          ['decoder', tiny.decoder.length],
          ['wasm', wasmBytes],
        ] as const) {
          const mine = events.filter((e) => e.file === file);
          assert.ok(mine.length >= 2, `${file}: a start and at least one step (${mine.length} events)`);
          assert.deepEqual(mine.at(-1), {
            file,
            url: file === 'wasm' ? wasmUrl : `${base}/model${file === 'decoder' ? '.decoder' : ''}.onnx`,
            loaded: size,
            total: size,
          });
          mine.forEach((e, i) => assert.ok(i === 0 || e.loaded >= mine[i - 1]!.loaded, `${file}: loaded never goes back`));
        }
        assert.equal((await model.decode(new Float32Array(CAPS))).length, 1);
      } finally {
        await model.dispose();
      }
      asked.length = 0;
      const classifyOnly = await WasmCapsNet.load(`${base}/model.onnx`, { decoder: false });
      try {
        assert.deepEqual(asked, ['/model.onnx'], 'only the model is fetched');
        const [result] = await classifyOnly.classify(image(1));
        assert.equal(result!.reconstruction.length, PIXELS, 'classify still reconstructs (the model graph does)');
        await assert.rejects(classifyOnly.decode(new Float32Array(CAPS)), /decoder: false/);
      } finally {
        await classifyOnly.dispose();
      }
      await assert.rejects(WasmCapsNet.load(`${base}/model.onnx`, { onProgress: 'yes' as never }), /onProgress must be a function/);
      // { model, decoder }: both URLs fetched as given (what pretrained() gives in a Vite or webpack bundle).
      asked.length = 0;
      const bundled = await WasmCapsNet.load(
        { model: `${base}/assets/model-3f2a.onnx`, decoder: `${base}/assets/model.decoder-9c1b.onnx` },
        { wasmPaths: { wasm: wasmUrl } },
      );
      try {
        assert.deepEqual(asked.filter((a) => a.endsWith('.onnx')).sort(), ['/assets/model-3f2a.onnx', '/assets/model.decoder-9c1b.onnx']);
        assert.equal((await bundled.decode(new Float32Array(CAPS))).length, 1);
      } finally {
        await bundled.dispose();
      }
    } finally {
      close();
    }
  });

  test('/web/wasm and /web/webgpu list their devices; /web/wasm classifies as /web does; a device an entry lacks names the entry', async () => {
    assert.deepEqual(WasmCapsNet.devices, ['wasm']);
    assert.deepEqual(WebGpuCapsNet.devices, ['wasm', 'webgpu']);
    assert.deepEqual(WebCapsNet.devices, ['wasm', 'webgpu']);
    const logs: string[] = [];
    const wasmLogs: string[] = [];
    const [viaWasm, viaWeb] = await Promise.all([
      WasmCapsNet.load(tiny.model, { decoder: tiny.decoder, log: (l) => wasmLogs.push(l) }),
      WebCapsNet.load(tiny.model, { device: 'wasm', decoder: false, log: (l) => logs.push(l) }),
    ]);
    try {
      assert.ok(
        wasmLogs.some((l) => /onnxruntime-web build: plain wasm/.test(l)),
        wasmLogs.join('\n'),
      );
      // /web: the plain build, or the JSEP one when an earlier load (device webgpu) has imported it already.
      assert.ok(
        logs.some((l) => /onnxruntime-web build: (plain wasm|JSEP)/.test(l)),
        logs.join('\n'),
      );
      const images = [image(1), image(2)];
      const ref = await reference.classify(Float32Array.from(images.flatMap((x) => [...x])));
      const [a, b] = [await viaWasm.classify(images), await viaWeb.classify(images)];
      for (let n = 0; n < 2; n++) {
        assert.ok(maxDiff(a[n]!.lengths, ref.lengths.subarray(n * K, (n + 1) * K)) < 1e-5);
        assert.ok(maxDiff(a[n]!.lengths, b[n]!.lengths) < 1e-6);
      }
    } finally {
      await Promise.all([viaWasm.dispose(), viaWeb.dispose()]);
    }
    await assert.rejects(
      WasmCapsNet.load(tiny.model, { device: 'webgpu' }),
      (e: Error) => e instanceof DeviceUnavailableError && /not provided by @capsnet-onnx\/runtime\/web\/wasm/.test(e.message),
    );
  });

  test('classify reads a Blob of PNG or JPEG bytes through the image pipeline, as decodeImage does; a Blob of junk is an InputError', async () => {
    const rgba = new Uint8Array(20 * 24 * 4);
    for (let p = 0; p < 20 * 24; p++) rgba.set(p % 20 > 7 && p % 20 < 12 ? [10, 10, 10, 255] : [245, 245, 245, 255], 4 * p);
    const png = encodePng({ width: 20, height: 24, data: rgba, channels: 4, depth: 8 });
    const jpg = new Uint8Array(jpeg.encode({ data: rgba, width: 20, height: 24 }, 90).data);
    const model = await WasmCapsNet.load(tiny.model, { decoder: false });
    try {
      for (const bytes of [png, jpg]) {
        const [fromBlob, fromPixels] = [await model.classify(new Blob([bytes as Uint8Array<ArrayBuffer>])), await model.classify(decodeImage(bytes))];
        assert.deepEqual(fromBlob[0]!.lengths, fromPixels[0]!.lengths);
        const batch = await model.classify([new Blob([bytes as Uint8Array<ArrayBuffer>]), decodeImage(bytes)]);
        assert.deepEqual(batch[0]!.lengths, batch[1]!.lengths);
        const read = await RgbaImage.read(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
        assert.ok(read instanceof RgbaImage && read.width === 20 && read.height === 24);
      }
      await assert.rejects(model.classify(new Blob(['not an image'])), (e: Error) => e instanceof InputError && /the image/.test(e.message));
      await assert.rejects(RgbaImage.read({ width: 3 } as never), /pass PNG\/JPEG bytes, a Blob or File, a canvas/);
    } finally {
      await model.dispose();
    }
  });
});

describe('image files', () => {
  test('`capsnet classify` reads PNG, JPEG and IDX files, directories and `-`, and prints labels and scores', async () => {
    const png = new Uint8Array(15 * 18 * 4);
    for (let i = 0; i < 15 * 18; i++) png.set([200, 100, 50, i % 2 ? 255 : 128], 4 * i);
    writeFileSync(join(dir, 'big.png'), encodePng({ width: 15, height: 18, data: png, channels: 4, depth: 8 }));
    const rgba = new Uint8Array(30 * 24 * 4);
    for (let p = 0; p < 30 * 24; p++) rgba.set(p % 30 > 10 && p % 30 < 14 ? [20, 20, 20, 255] : [240, 240, 240, 255], 4 * p);
    writeFileSync(join(dir, 'photo.jpg'), jpeg.encode({ data: rgba, width: 30, height: 24 }, 90).data);
    const idx = new Uint8Array(16 + 2 * PIXELS);
    new DataView(idx.buffer).setUint32(0, 0x803);
    new DataView(idx.buffer).setUint32(4, 2);
    new DataView(idx.buffer).setUint32(8, H);
    new DataView(idx.buffer).setUint32(12, W);
    idx.set(
      Uint8Array.from(image(1), (v) => Math.round(v * 255)),
      16,
    );
    writeFileSync(join(dir, 'test-images-idx3-ubyte'), idx);
    const labels = Uint8Array.from([0, 0, 8, 1, 0, 0, 0, 2, 3, 1]);
    writeFileSync(join(dir, 'test-labels-idx1-ubyte'), labels);
    const json = await execa('node', [CLI, 'classify', modelPath, join(dir, 'big.png'), join(dir, 'test-images-idx3-ubyte'), '--device', 'cpu', '--json'], {
      cwd: ROOT,
    });
    const out = JSON.parse(json.stdout);
    assert.equal(out.device, 'cpu');
    assert.equal(out.results.length, 3);
    assert.deepEqual(Object.keys(out.results[0].scores), ['class0', 'class1', 'class2', 'class3']);
    assert.deepEqual(
      out.results.slice(1).map((r: { trueLabel: number }) => r.trueLabel),
      [3, 1],
    );
    const [expected] = await (await CapsNet.load(tiny.model, { device: 'cpu' })).classify(Uint8Array.from(image(1), (v) => Math.round(v * 255)));
    assert.equal(out.results[1].label, expected!.label);
    // --device wasm: onnxruntime-web's wasm in Node (as `capsnet serve --device wasm`), the same classes and scores.
    const wasm = JSON.parse(
      (
        await execa('node', [CLI, 'classify', modelPath, join(dir, 'big.png'), join(dir, 'test-images-idx3-ubyte'), '--device', 'wasm', '--json'], {
          cwd: ROOT,
        })
      ).stdout,
    );
    assert.equal(wasm.device, 'wasm');
    assert.match(wasm.deviceReport, /onnxruntime-web/);
    assert.deepEqual(
      wasm.results.map((r: { label: number | null }) => r.label),
      out.results.map((r: { label: number | null }) => r.label),
    );
    for (const [i, r] of (wasm.results as Array<{ scores: Record<string, number> }>).entries()) {
      for (const [k, v] of Object.entries(r.scores))
        assert.ok(Math.abs(v - out.results[i].scores[k]) < 1e-4, `${k}: wasm ${v}, cpu ${out.results[i].scores[k]}`);
    }
    const missingWasm = await execa('node', [CLI, 'classify', join(dir, 'nope.onnx'), join(dir, 'big.png'), '--device', 'wasm'], { cwd: ROOT, reject: false });
    assert.equal(missingWasm.exitCode, 1);
    assert.match(missingWasm.stderr, /model file .*nope\.onnx does not exist/);
    assert.doesNotMatch(missingWasm.stderr, /\n\s+at /, 'no stack');
    // A directory: its PNG, JPEG and IDX image files (not the labels file, not the models), in name order.
    const listed = JSON.parse((await execa('node', [CLI, 'classify', modelPath, dir, '--device', 'cpu', '--json'], { cwd: ROOT })).stdout);
    assert.deepEqual(
      listed.results.map((r: { image: string }) => r.image.slice(dir.length + 1)),
      ['big.png', 'photo.jpg', 'test-images-idx3-ubyte[0]', 'test-images-idx3-ubyte[1]'],
    );
    // `-`: one image on stdin, or a list of paths.
    const piped = JSON.parse(
      (await execa('node', [CLI, 'classify', modelPath, '-', '--device', 'cpu', '--json'], { cwd: ROOT, inputFile: join(dir, 'photo.jpg') })).stdout,
    );
    assert.equal(piped.results[0].image, '-');
    assert.deepEqual(piped.results[0].scores, listed.results[1].scores);
    const list = JSON.parse(
      (
        await execa('node', [CLI, 'classify', modelPath, '-', '--device', 'cpu', '--json'], {
          cwd: ROOT,
          input: `${join(dir, 'big.png')}\n\n${join(dir, 'photo.jpg')}\n`,
        })
      ).stdout,
    );
    assert.deepEqual(
      list.results.map((r: { scores: unknown }) => r.scores),
      listed.results.slice(0, 2).map((r: { scores: unknown }) => r.scores),
    );
    const text = await execa('node', [CLI, 'classify', modelPath, join(dir, 'big.png'), '--device', 'cpu'], { cwd: ROOT });
    assert.match(text.stdout, /big\.png\s+(class\d|no digit \(.+\))\s+scores: class\d \d\.\d{4}/);
    // A file that is not an image is reported (in text on stderr, in JSON as its row) and the rest still run.
    const bad = await execa('node', [CLI, 'classify', modelPath, join(dir, 'test-labels-idx1-ubyte'), join(dir, 'big.png'), '--device', 'cpu'], {
      cwd: ROOT,
      reject: false,
    });
    assert.equal(bad.exitCode, 1);
    assert.match(bad.stdout, /labels file: pass the images file/);
    assert.match(bad.stdout, /big\.png/);
    const badJson = await execa('node', [CLI, 'classify', modelPath, join(dir, 'test-labels-idx1-ubyte'), '--device', 'cpu', '--json'], {
      cwd: ROOT,
      reject: false,
    });
    assert.equal(badJson.exitCode, 1);
    assert.equal(JSON.parse(badJson.stdout).results[0].error.code, 'BAD_IMAGE');
    // With --json, fatal errors and option errors are JSON too.
    for (const args of [
      [join(dir, 'big.png'), '--model-typo'],
      [join(dir, 'big.png'), '--polarity', 'sideways'],
    ]) {
      const fatal = await execa('node', [CLI, 'classify', modelPath, ...args, '--json'], { cwd: ROOT, reject: false });
      assert.equal(fatal.exitCode, 1);
      assert.match(JSON.parse(fatal.stdout).error.message, /unknown option '--model-typo'|sideways/);
    }
  });

  test('`capsnet classify` on one IDX file of 1000 images reports its progress on stderr, one line per tenth', async () => {
    const count = 1000;
    const idx = new Uint8Array(16 + count * PIXELS);
    const view = new DataView(idx.buffer);
    [0x803, count, H, W].forEach((v, i) => view.setUint32(4 * i, v));
    for (let i = 16; i < idx.length; i++) idx[i] = (i * 37) % 256;
    const file = join(dir, 'many-images-idx3-ubyte');
    writeFileSync(file, idx);
    // Batches of 50: the count moves in steps of 50, so each tenth is reached exactly.
    const run = await execa('node', [CLI, 'classify', modelPath, file, '--device', 'cpu', '--json', '--max-batch', '50'], { cwd: ROOT });
    assert.equal(JSON.parse(run.stdout).results.length, count);
    const lines = run.stderr.split('\n').filter((l) => l.startsWith('classified '));
    assert.deepEqual(
      lines,
      Array.from({ length: 10 }, (_, k) => `classified ${100 * (k + 1)}/${count} images (${10 * (k + 1)}%)`),
    );
  });

  test('`capsnet classify` gives a missing or unreadable path its own error row and classifies the rest', async () => {
    writeFileSync(join(dir, 'a-file'), 'x');
    const links = mkdtempSync(join(tmpdir(), 'capsnet-links-'));
    symlinkSync(join(links, 'gone.png'), join(links, 'dangling.png'));
    const [good, missing, notDir, dangling] = [join(dir, 'big.png'), join(dir, 'missing.png'), join(dir, 'a-file', 'x.png'), join(links, 'dangling.png')];
    const args = [CLI, 'classify', modelPath, good, missing, notDir, dangling, good, '--device', 'cpu'];
    const json = await execa('node', [...args, '--json'], { cwd: ROOT, reject: false });
    assert.equal(json.exitCode, 1, json.stderr);
    const rows = JSON.parse(json.stdout).results as { image: string; label: unknown; error?: { code: string; message: string } }[];
    assert.deepEqual(
      rows.map((r) => r.image),
      [good, missing, notDir, dangling, good],
    );
    assert.deepEqual(
      rows.map((r) => r.error?.code ?? 'ok'),
      ['ok', 'NOT_FOUND', 'UNREADABLE', 'NOT_FOUND', 'ok'],
    );
    assert.match(rows[1]!.error!.message, /missing\.png does not exist: check the path/);
    assert.match(rows[2]!.error!.message, /a-file\/x\.png cannot be read: a parent of it is a file, not a directory \(ENOTDIR\)/);
    assert.deepEqual(rows[4], rows[0]);
    // Text: the same rows in argument order, a summary on stderr, no stack trace.
    const text = await execa('node', args, { cwd: ROOT, reject: false });
    assert.equal(text.exitCode, 1);
    const lines = text.stdout.split('\n');
    assert.equal(lines.length, 5, text.stdout);
    assert.match(lines[0]!, /big\.png\s+(class\d|no digit)/);
    assert.match(lines[1]!, /missing\.png\s+error: .*missing\.png does not exist/);
    assert.match(text.stderr, /3 of 5 images could not be read/);
    assert.doesNotMatch(text.stderr, /\n\s+at /);
    // A list of paths on standard input follows the same rule.
    const piped = await execa('node', [CLI, 'classify', modelPath, '-', '--device', 'cpu', '--json'], {
      cwd: ROOT,
      reject: false,
      input: `${missing}\n${good}\n`,
    });
    assert.equal(piped.exitCode, 1);
    assert.deepEqual(
      JSON.parse(piped.stdout).results.map((r: { error?: { code: string } }) => r.error?.code ?? 'ok'),
      ['NOT_FOUND', 'ok'],
    );
    rmSync(links, { recursive: true, force: true });
  });
});

describe('coupling coefficients', () => {
  test('classify({ coupling: true }) returns c_ij per image: primary capsules x classes, each row a softmax', async () => {
    const model = await CapsNet.load(tiny.model, { decoder: tiny.decoder, device: 'cpu' });
    try {
      const { numPrimaryCaps } = derivedSizes(TINY_CONFIG);
      const pixels = TINY_CONFIG.inputHeight * TINY_CONFIG.inputWidth * TINY_CONFIG.inputChannels;
      const images = [0.2, 0.7].map((v, k) => Float32Array.from({ length: pixels }, (_, i) => ((i * (k + 3)) % 11) / 12 + v / 10));
      const results = await model.classify(
        {
          data: Float32Array.from(images.flatMap((x) => Array.from(x))),
          shape: [2, TINY_CONFIG.inputHeight, TINY_CONFIG.inputWidth, TINY_CONFIG.inputChannels],
        },
        { coupling: true },
      );
      for (const r of results) {
        assert.equal(r.coupling!.length, numPrimaryCaps * TINY_CONFIG.numClasses);
        for (let i = 0; i < numPrimaryCaps; i++) {
          const row = r.coupling!.subarray(i * TINY_CONFIG.numClasses, (i + 1) * TINY_CONFIG.numClasses);
          assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-5, `capsule ${i}: coefficients sum to ${row.reduce((a, b) => a + b, 0)}`);
        }
      }
      assert.notDeepEqual(results[0]!.coupling, results[1]!.coupling, 'each image has its own coefficients');
      assert.equal((await model.classify(images[0]!))[0]!.coupling, undefined, 'not asked: not returned');
    } finally {
      await model.dispose();
    }
  });
});
