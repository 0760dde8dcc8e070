/**
 * The browser runtime (dist/web bundle of @capsnet-onnx/runtime/web + onnxruntime-web) in headless Chromium on a tiny real
 * CapsNet (test/support/tiny-model.ts): `auto` and a named `webgpu`, lengths checked against the tfjs forward pass. About 15 s.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CHROMIUM, CHROMIUM_ARGS, runInChromium } from '../../packages/capsnet/src/parity/browser.ts';
import { TINY_CONFIG, TINY_PROVENANCE, tinyModel, tinyReference } from '../support/tiny-model.ts';
import { buildCapsNetModels } from '../../packages/capsnet/src/export/exporter.ts';
import { encodeModel } from '../../packages/capsnet/src/export/onnx-schema.ts';
import { FP16_COMPUTE_TOLERANCES } from '../../packages/capsnet/src/parity/matrix.ts';

const tiny = tinyModel();
const { inputHeight, inputWidth, inputChannels, numClasses, digitDim } = TINY_CONFIG;
const PIXELS = inputHeight * inputWidth * inputChannels;
let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'capsnet-browser-'));
  writeFileSync(join(dir, 'model.onnx'), tiny.model);
  writeFileSync(join(dir, 'model.decoder.onnx'), tiny.decoder);
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('in Chromium, auto passes over a software WebGPU adapter for wasm, and a named webgpu runs on WebGPU', {
  skip: !existsSync(CHROMIUM) && `no Chromium at ${CHROMIUM}`,
}, async () => {
  const images = Float32Array.from({ length: 2 * PIXELS }, (_, i) => (i % 13) / 12);
  const masked = new Float32Array(2 * numClasses * digitDim);
  const logs: string[] = [];
  const [auto, webgpu] = await runInChromium(
    join(dir, 'model.onnx'),
    join(dir, 'model.decoder.onnx'),
    images,
    masked,
    [
      { device: 'auto', count: 2, latencyRuns: 1 },
      { device: 'webgpu', count: 2, latencyRuns: 1 },
    ],
    (l) => logs.push(l),
  );
  assert.ok(auto && 'ok' in auto, JSON.stringify(auto));
  const software = /swiftshader/i.test(logs.join('\n'));
  if (software) {
    assert.equal(auto.ok.device, 'wasm');
    assert.match(auto.ok.deviceReport, /auto chose wasm .*passed over webgpu/);
  } else assert.match(auto.ok.deviceReport, /^auto chose (webgpu|wasm)/);
  assert.ok(webgpu && ('ok' in webgpu || 'skipped' in webgpu), JSON.stringify(webgpu));
  const ref = await (await tinyReference(tiny)).classify(images);
  for (const reply of [auto, webgpu]) {
    if (!('ok' in reply)) continue;
    for (let n = 0; n < 2; n++) {
      const got = reply.ok.lengths.subarray(n * numClasses, (n + 1) * numClasses);
      got.forEach((v, k) => assert.ok(Math.abs(v - ref.lengths[n * numClasses + k]!) < 1e-5, `${reply.ok.device} image ${n} class ${k}`));
    }
  }
  if ('ok' in webgpu) assert.equal(webgpu.ok.device, 'webgpu');
});

test('in Chromium, an fp16-compute model runs on wasm, and a named webgpu runs it or, without shader-f16, says how to fix it', {
  skip: !existsSync(CHROMIUM) && `no Chromium at ${CHROMIUM}`,
}, async () => {
  const built = buildCapsNetModels(TINY_CONFIG, tiny.weights, { ...TINY_PROVENANCE, precision: 'fp16' });
  writeFileSync(join(dir, 'half.onnx'), encodeModel(built.model));
  writeFileSync(join(dir, 'half.decoder.onnx'), encodeModel(built.decoder));
  const images = Float32Array.from({ length: 2 * PIXELS }, (_, i) => (i % 13) / 12);
  const masked = new Float32Array(2 * numClasses * digitDim);
  const logs: string[] = [];
  const [wasm, webgpu] = await runInChromium(
    join(dir, 'half.onnx'),
    join(dir, 'half.decoder.onnx'),
    images,
    masked,
    [
      { device: 'wasm', count: 2, latencyRuns: 1 },
      { device: 'webgpu', count: 2, latencyRuns: 1 },
    ],
    (l) => logs.push(l),
  );
  const ref = await (await tinyReference(tiny)).classify(images);
  assert.ok(wasm && 'ok' in wasm, JSON.stringify(wasm));
  assert.ok(webgpu, 'a reply for webgpu');
  if ('skipped' in webgpu) {
    console.log(`case: the WebGPU adapter lacks shader-f16; skipped with: ${webgpu.skipped}`);
    assert.match(
      webgpu.skipped,
      new RegExp(
        /^device "webgpu" cannot run \/model\.onnx: the model computes in fp16 \(capsnet\.compute_precision\)/.source +
          / and the WebGPU adapter \(.+\) lacks the shader-f16 feature: re-export it with `capsnet export RUN_DIR --precision fp16 --compute fp32`/.source,
      ),
    );
  } else {
    assert.ok('ok' in webgpu, JSON.stringify(webgpu));
    console.log('case: the WebGPU adapter has shader-f16; the model ran on it');
    assert.equal(webgpu.ok.device, 'webgpu');
  }
  for (const reply of [wasm, webgpu]) {
    if (!('ok' in reply)) continue;
    const diff = reply.ok.lengths.reduce((m, v, i) => Math.max(m, Math.abs(v - ref.lengths[i]!)), 0);
    assert.ok(diff <= FP16_COMPUTE_TOLERANCES.lengths, `${reply.ok.device}: lengths differ from the float32 reference by ${diff}`);
  }
});

/**
 * The `/web/wasm` entry as an app bundles it (esbuild, code splitting) and serves it: no JSEP build in it, jpeg-js in
 * a chunk of its own that the page fetches only when a JPEG is decoded, load progress for the model and the wasm,
 * and `classify` of a canvas, an ImageBitmap, an <img> and a PNG Blob equal to classify of the canvas's ImageData.
 */
test('in Chromium, /web/wasm classifies a canvas, an ImageBitmap, an <img> and a Blob as their pixels, and loads jpeg-js only for a JPEG', {
  skip: !existsSync(CHROMIUM) && `no Chromium at ${CHROMIUM}`,
}, async () => {
  const { build } = await import('esbuild');
  const { chromium } = await import('playwright-core');
  const { ortWasmDir, ORT_WASM_BUILDS } = await import('@capsnet-onnx/runtime/wasm-assets');
  const root = join(import.meta.dirname, '..');
  const out = join(dir, 'app');
  const bundle = async (entry: string, outdir: string) =>
    build({
      stdin: { contents: `export * from '${entry}';`, resolveDir: root, sourcefile: 'app.ts', loader: 'ts' },
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'browser',
      minify: true,
      outdir,
      entryNames: 'app',
      conditions: ['capsnet-source'],
      metafile: true,
      logLevel: 'error',
    });
  const wasmApp = await bundle('@capsnet-onnx/runtime/web/wasm', out);
  const jsepApp = await bundle('@capsnet-onnx/runtime/web/webgpu', join(dir, 'app-webgpu'));
  const outputs = Object.entries(wasmApp.metafile.outputs);
  const entryChunk = outputs.find(([, o]) => o.entryPoint)![1];
  const inputsOf = (o: { inputs: Record<string, unknown> }) => Object.keys(o.inputs).join('\n');
  assert.doesNotMatch(inputsOf(entryChunk), /jpeg-js/, 'jpeg-js is not in the entry chunk');
  assert.ok(
    outputs.some(([, o]) => /jpeg-js/.test(inputsOf(o))),
    'jpeg-js is a chunk of its own',
  );
  assert.ok(
    outputs.every(([, o]) => !/ort\.bundle\.min|ort\.min/.test(inputsOf(o))),
    'no JSEP build of onnxruntime-web',
  );
  const jsBytes = (r: typeof wasmApp) => Object.values(r.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
  assert.ok(jsBytes(wasmApp) < 0.5 * jsBytes(jsepApp), `/web/wasm ${jsBytes(wasmApp)} B of JS, /web/webgpu ${jsBytes(jsepApp)} B`);

  const ortDir = ortWasmDir();
  const files: Record<string, string | Uint8Array> = {
    '/': '<!doctype html><meta charset="utf-8"><title>app</title><body></body>',
    '/model.onnx': tiny.model,
    '/model.decoder.onnx': tiny.decoder,
  };
  const { readFileSync, readdirSync } = await import('node:fs');
  for (const name of readdirSync(out)) files[`/${name}`] = readFileSync(join(out, name));
  for (const name of Object.values(ORT_WASM_BUILDS.wasm)) files[`/ort/${name}`] = readFileSync(join(ortDir, name));
  const { createServer } = await import('node:http');
  const asked: string[] = [];
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    asked.push(path);
    const body = files[path];
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    const type =
      path.endsWith('.js') || path.endsWith('.mjs')
        ? 'text/javascript'
        : path.endsWith('.wasm')
          ? 'application/wasm'
          : path === '/'
            ? 'text/html'
            : 'application/octet-stream';
    res.setHeader('Content-Type', type);
    res.statusCode = body === undefined ? 404 : 200;
    res.end(body ?? '');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage();
    // tsx compiles this file keeping function names (esbuild's __name helper): give the page that helper.
    await page.addInitScript('globalThis.__name = (f) => f');
    await page.goto(`${base}/`);
    const result = await page.evaluate(async () => {
      const { CapsNet } = await import(`${location.origin}/app.js`);
      const progress: { file: string; loaded: number; total: number | null }[] = [];
      const model = await CapsNet.load('/model.onnx', {
        wasmPaths: '/ort/',
        decoder: false,
        onProgress: (p: { file: string; loaded: number; total: number | null }) => progress.push({ ...p }),
      });
      const canvas = new OffscreenCanvas(20, 24);
      const ctx = canvas.getContext('2d')!;
      ctx.fillStyle = '#fff';
      ctx.fillRect(0, 0, 20, 24);
      ctx.fillStyle = '#000';
      ctx.fillRect(8, 3, 4, 18);
      ctx.fillRect(4, 3, 6, 3);
      const lengths = async (input: unknown) => Array.from((await model.classify(input))[0].lengths as Float32Array);
      const pixels = await lengths(ctx.getImageData(0, 0, 20, 24));
      const png = await canvas.convertToBlob({ type: 'image/png' });
      const img = new Image();
      img.src = URL.createObjectURL(png);
      const html = document.createElement('canvas');
      html.width = 20;
      html.height = 24;
      html.getContext('2d')!.drawImage(canvas, 0, 0);
      const got = {
        offscreen: await lengths(canvas),
        canvas: await lengths(html),
        bitmap: await lengths(await createImageBitmap(canvas)),
        img: await lengths(img),
        blob: await lengths(png),
      };
      const jpegChunkBefore = performance.getEntriesByType('resource').some((e) => /jpeg-js/.test(e.name));
      const jpeg = await lengths(new File([await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.95 })], 'digit.jpg'));
      const jpegChunkAfter = performance.getEntriesByType('resource').some((e) => /jpeg-js/.test(e.name));
      const badBlob = await model.classify(new Blob(['no image'])).then(
        () => 'accepted',
        (e: Error) => `${e.name}: ${e.message}`,
      );
      return { pixels, got, jpeg, jpegChunkBefore, jpegChunkAfter, badBlob, progress, device: model.device };
    });
    assert.equal(result.device, 'wasm');
    for (const [source, lengths] of Object.entries(result.got)) {
      lengths.forEach((v, k) => assert.ok(Math.abs(v - result.pixels[k]!) < 1e-6, `${source}: class ${k} ${v} vs ${result.pixels[k]}`));
    }
    assert.equal(result.jpeg.length, numClasses);
    assert.equal(result.jpegChunkBefore, false, 'jpeg-js is not fetched before a JPEG is decoded');
    assert.equal(result.jpegChunkAfter, true, 'jpeg-js is fetched to decode the JPEG');
    assert.match(result.badBlob, /^InputError: the image/);
    const last = (file: string) => result.progress.filter((p) => p.file === file).at(-1);
    assert.deepEqual(last('model'), { file: 'model', url: '/model.onnx', loaded: tiny.model.length, total: tiny.model.length });
    const wasmSize = (files[`/ort/${ORT_WASM_BUILDS.wasm.wasm}`] as Uint8Array).length;
    assert.deepEqual(last('wasm'), { file: 'wasm', url: `/ort/${ORT_WASM_BUILDS.wasm.wasm}`, loaded: wasmSize, total: wasmSize });
    assert.equal(last('decoder'), undefined, '{ decoder: false }: no decoder progress');
    assert.ok(!asked.includes('/model.decoder.onnx'), 'the decoder is not fetched');
    assert.ok(!asked.some((p) => /jsep/.test(p)), 'the JSEP binary is not fetched');
    assert.equal(asked.filter((p) => p === `/ort/${ORT_WASM_BUILDS.wasm.wasm}`).length, 1, 'the wasm is fetched once');
  } finally {
    await browser.close();
    server.close();
  }
});
