/**
 * The browser runtime (dist/web bundle of @capsnet-onnx/runtime/web + onnxruntime-web) in headless Chromium on a tiny real
 * CapsNet (test/support/tiny-model.ts): `auto` and a named `webgpu`, lengths checked against the tfjs forward pass. About 15 s.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CHROMIUM, runInChromium } from '../../packages/capsnet/src/parity/browser.ts';
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
      /^device "webgpu" cannot run \/model\.onnx: the model computes in fp16 \(capsnet\.compute_precision\) and the WebGPU adapter \(.+\) lacks the shader-f16 feature: re-export it with `capsnet export RUN_DIR --precision fp16 --compute fp32`/,
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
