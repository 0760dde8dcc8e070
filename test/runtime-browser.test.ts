/**
 * The browser runtime (dist/web bundle of runtime/web.ts + onnxruntime-web) in headless Chromium on the stand-in
 * model: `auto` and a named `webgpu`, outputs checked against the stand-in's math. About 15 s.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CHROMIUM, runInChromium } from '../parity/browser.ts';
import { FAKE_SHAPE, fakeModel, fakeReference } from '../parity/fake-model.ts';

const fake = fakeModel();
const PIXELS = FAKE_SHAPE.inputHeight * FAKE_SHAPE.inputWidth * FAKE_SHAPE.inputChannels;
let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'capsnet-browser-'));
  writeFileSync(join(dir, 'model.onnx'), fake.model);
  writeFileSync(join(dir, 'model.decoder.onnx'), fake.decoder);
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('in Chromium, auto passes over a software WebGPU adapter for wasm, and a named webgpu runs on WebGPU', { skip: !existsSync(CHROMIUM) && `no Chromium at ${CHROMIUM}` }, async () => {
  const images = Float32Array.from({ length: 2 * PIXELS }, (_, i) => (i % 13) / 12);
  const masked = new Float32Array(2 * FAKE_SHAPE.numClasses * FAKE_SHAPE.digitDim);
  const logs: string[] = [];
  const [auto, webgpu] = await runInChromium(join(dir, 'model.onnx'), join(dir, 'model.decoder.onnx'), images, masked, [
    { device: 'auto', count: 2, latencyRuns: 1 },
    { device: 'webgpu', count: 2, latencyRuns: 1 },
  ], (l) => logs.push(l));
  assert.ok(auto && 'ok' in auto, JSON.stringify(auto));
  const software = /swiftshader/i.test(logs.join('\n'));
  if (software) {
    assert.equal(auto.ok.device, 'wasm');
    assert.match(auto.ok.deviceReport, /auto chose wasm .*passed over webgpu/);
  } else assert.match(auto.ok.deviceReport, /^auto chose (webgpu|wasm)/);
  assert.ok(webgpu && ('ok' in webgpu || 'skipped' in webgpu), JSON.stringify(webgpu));
  for (const reply of [auto, webgpu]) {
    if (!('ok' in reply)) continue;
    for (let n = 0; n < 2; n++) {
      const ref = fakeReference(fake, images.subarray(n * PIXELS, (n + 1) * PIXELS));
      const got = reply.ok.lengths.subarray(n * FAKE_SHAPE.numClasses, (n + 1) * FAKE_SHAPE.numClasses);
      got.forEach((v, k) => assert.ok(Math.abs(v - ref.lengths[k]!) < 1e-5, `${reply.ok.device} image ${n} class ${k}`));
    }
  }
  if ('ok' in webgpu) assert.equal(webgpu.ok.device, 'webgpu');
});
