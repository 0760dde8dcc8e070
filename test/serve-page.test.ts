/**
 * The demo page end to end in headless Chromium (Debian's /usr/bin/chromium, never a downloaded browser):
 * the model runs in the page on onnxruntime-web's WASM provider. A real test digit is drawn on the canvas with
 * mouse strokes along its pixels, the predicted label is checked, a capsule slider is moved and the
 * reconstruction must change. Screenshot: test-artifacts/serve-page.png. The page then switches to WebGPU
 * (a SwiftShader adapter without a GPU, about 15 s); CAPSNET_SKIP_WEBGPU=1 leaves that out, saying so.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import type { Classifier } from '@capsnet-onnx/runtime/node';
import { exportedSmallModel, startServeProcess } from './support/serve.ts';
import { loadMnistSample } from '../packages/capsnet/src/data/datasets.ts';
import { ARTIFACTS } from './support/fixtures.ts';
import { readEnv } from './support/env.ts';

const CHROMIUM = '/usr/bin/chromium';
const WEBGPU = readEnv('CAPSNET_SKIP_WEBGPU') === undefined;
const PIXELS = 784;

describe('the page in headless Chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)` }, () => {
  let server: Awaited<ReturnType<typeof startServeProcess>>;
  let context: BrowserContext;
  let page: Page;
  let direct: Classifier;
  let profile: string;
  const consoleLines: string[] = [];
  const requested: string[] = [];

  before(async () => {
    const model = await exportedSmallModel();
    const { buildWeb } = await import('../packages/capsnet/src/web/build.ts');
    await buildWeb();
    server = await startServeProcess(model, ['--device', 'cpu']);
    const { CapsNet } = await import('@capsnet-onnx/runtime/node');
    direct = await CapsNet.load(model, { device: 'cpu' });
    const { chromium } = await import('playwright-core');
    profile = mkdtempSync(join(tmpdir(), 'capsnet-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 860 },
      // --enable-unsafe-webgpu: a WebGPU adapter even without a GPU (SwiftShader), for the provider switch test.
      args: [
        ...(WEBGPU ? ['--enable-unsafe-webgpu'] : []),
        '--no-sandbox',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    page.on('request', (r) => requested.push(new URL(r.url()).pathname));
    await page.goto(`${server.url}/?device=wasm`);
    await page.waitForFunction(() => (window as any).capsnet?.model || document.querySelector('#error:not([hidden])'), null, { timeout: 60_000 });
    const error = await page.locator('#error').textContent();
    assert.ok(await page.evaluate(() => Boolean((window as any).capsnet.model)), `the page did not load the model: ${error}\n${consoleLines.join('\n')}`);
  });

  after(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await direct?.dispose();
    await server?.stop();
  });

  const idle = () => page.waitForFunction(() => (window as any).capsnet.busy === 0, null, { timeout: 30_000 });

  test('loads on WASM, cross-origin isolated', async () => {
    assert.match((await page.locator('#device-badge').textContent()) ?? '', /^WASM · threaded/);
    assert.equal(await page.evaluate(() => self.crossOriginIsolated), true);
    assert.match((await page.locator('#latency').textContent()) ?? '', /load \+ warm-up \d/);
    assert.equal(await page.locator('#samples button').count(), 30);
    // The runtime bundle, the model and decoder from the server, onnxruntime-web's wasm from node_modules (/ort/).
    for (const path of ['/web/capsnet.js', '/model.onnx', '/model.decoder.onnx', '/ort/ort-wasm-simd-threaded.jsep.wasm']) {
      assert.ok(requested.includes(path), `the page did not fetch ${path}: ${requested.join(' ')}`);
    }
  });

  test('a picked test digit gives the same capsule lengths as onnxruntime-node', async () => {
    const button = page.locator('#samples button').nth(7);
    const index = Number(await button.getAttribute('data-index'));
    const before = await page.evaluate(() => (window as any).capsnet.classifyCount);
    await button.click();
    await page.waitForFunction((n) => (window as any).capsnet.classifyCount > n, before);
    await idle();
    const lengths: number[] = await page.evaluate(() => Array.from((window as any).capsnet.result.lengths));
    const { test: split } = loadMnistSample();
    const pixels = split.images.slice(index * PIXELS, (index + 1) * PIXELS).map((v) => Math.round(v * 1000) / 1000);
    const [reference] = await direct.classify(pixels);
    lengths.forEach((v, k) => assert.ok(Math.abs(v - reference!.lengths[k]!) < 1e-3, `class ${k}: page ${v}, node ${reference!.lengths[k]}`));
    assert.equal(await page.locator('#prediction').textContent(), reference!.labelName);
  });

  test('drawing a real test digit with the mouse predicts its label; a slider changes the reconstruction', async () => {
    // A test digit the model is sure of, drawn as horizontal strokes through its inked pixels.
    const { test: split } = loadMnistSample();
    // The fixture model trained one short epoch: take the digit it is surest of (largest margin between the two
    // longest capsules) among the first 100 it classifies correctly.
    const candidates = Array.from({ length: 100 }, (_, i) => split.images.slice(i * PIXELS, (i + 1) * PIXELS));
    const results = await direct.classify(candidates);
    const margins = results.map((r, i) => {
      const sorted = Array.from(r.lengths).sort((a, b) => b - a);
      return r.label === split.labels[i] ? sorted[0]! - sorted[1]! : -1;
    });
    const index = margins.indexOf(Math.max(...margins));
    assert.ok(margins[index]! > 0.2, `no confidently classified test digit among the first 100 (best margin ${margins[index]})`);
    const digit = candidates[index]!;
    const label = split.labels[index]!;

    await page.locator('#clear').click();
    await page.locator('#brush').fill('13');
    const box = (await page.locator('#pad').boundingBox())!;
    const cell = box.width / 28;
    const at = (x: number, y: number) => [box.x + (x + 0.5) * cell, box.y + (y + 0.5) * cell] as const;
    const before = await page.evaluate(() => (window as any).capsnet.classifyCount);
    for (let y = 0; y < 28; y++) {
      let x = 0;
      while (x < 28) {
        if (digit[y * 28 + x]! < 0.4) {
          x++;
          continue;
        }
        const start = x;
        while (x + 1 < 28 && digit[y * 28 + x + 1]! >= 0.4) x++;
        await page.mouse.move(...at(start, y));
        await page.mouse.down();
        await page.mouse.move(...at(x, y), { steps: 2 });
        await page.mouse.up();
        x++;
      }
    }
    await idle();
    assert.ok((await page.evaluate(() => (window as any).capsnet.classifyCount)) > before, 'drawing did not classify');
    assert.equal(await page.locator('#input-source').textContent(), 'your drawing, centred like MNIST');
    assert.equal(await page.locator('#prediction').textContent(), String(label), `drew test digit ${index} (a ${label})`);
    assert.equal(await page.locator('#bars li.win').getAttribute('data-class'), String(label));

    const recon = () => page.evaluate(() => (document.getElementById('recon') as HTMLCanvasElement).toDataURL());
    const original = await recon();
    const decodes = await page.evaluate(() => (window as any).capsnet.decodeCount);
    const slider = page.locator('#sliders input').nth(5);
    await slider.focus();
    for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowRight');
    await page.waitForFunction((n) => (window as any).capsnet.decodeCount > n, decodes);
    await idle();
    assert.equal(await slider.inputValue(), '0.25');
    assert.equal(await page.locator('#sliders output').nth(5).textContent(), '+0.25');
    assert.notEqual(await recon(), original, 'the reconstruction did not change');
    assert.match((await page.locator('#latency').textContent()) ?? '', /decode \d/);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'serve-page.png'), fullPage: true });
    assert.deepEqual(
      consoleLines.filter((l) => /^(error|pageerror)/.test(l)),
      [],
    );
  });

  test('an opened image file goes through the bundled pipeline: same label as the runtime; a blank canvas is "no digit"', async () => {
    const { makeDigitCorpus } = await import('../packages/capsnet/src/data/corpus.ts');
    const { decodeImage } = await import('@capsnet-onnx/core');
    const corpus = makeDigitCorpus(4, 3);
    const blank = corpus.find((i) => i.style === 'blank-canvas')!;
    const photo = corpus.find((i) => i.style === 'photo')!;
    for (const image of [blank, photo]) {
      const [reference] = await direct.classify(decodeImage(image.bytes));
      const before = await page.evaluate(() => (window as any).capsnet.classifyCount);
      await page.locator('#file').setInputFiles({
        name: image.file.split('/')[1]!,
        mimeType: image.file.endsWith('.jpg') ? 'image/jpeg' : 'image/png',
        buffer: Buffer.from(image.bytes),
      });
      await page.waitForFunction((n) => (window as any).capsnet.classifyCount > n, before);
      await idle();
      assert.equal(await page.evaluate(() => (window as any).capsnet.result.label), reference!.label, image.file);
      assert.equal(await page.locator('#prediction').textContent(), reference!.label === null ? 'no digit' : reference!.labelName);
      if (reference!.label === null) assert.equal(await page.locator('#reason').textContent(), 'no ink: the image is blank');
    }
    assert.notEqual(await page.evaluate(() => (window as any).capsnet.result.label), null, 'the photo was read as no digit');
  });

  test('switching to WebGPU reloads the model there and gives the same lengths', { skip: WEBGPU ? false : 'CAPSNET_SKIP_WEBGPU is set' }, async () => {
    const wasmLengths: number[] = await page.evaluate(() => Array.from((window as any).capsnet.result.lengths));
    const before = await page.evaluate(() => (window as any).capsnet.classifyCount);
    await page.locator('#provider label', { hasText: 'WebGPU' }).click();
    await page.waitForFunction((n) => (window as any).capsnet.classifyCount > n, before, { timeout: 120_000 });
    await idle();
    assert.match((await page.locator('#device-badge').textContent()) ?? '', /^WebGPU/);
    assert.equal(await page.evaluate(() => (window as any).capsnet.model.device), 'webgpu');
    const lengths: number[] = await page.evaluate(() => Array.from((window as any).capsnet.result.lengths));
    lengths.forEach((v, k) => assert.ok(Math.abs(v - wasmLengths[k]!) < 1e-3, `class ${k}: webgpu ${v}, wasm ${wasmLengths[k]}`));
    await page.screenshot({ path: join(ARTIFACTS, 'serve-page-webgpu.png'), fullPage: true });
  });
});
