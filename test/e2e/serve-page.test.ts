/**
 * The demo page end to end in headless Chromium (Debian's /usr/bin/chromium, never a downloaded browser):
 * the model runs in the page on onnxruntime-web's WASM provider. A real test digit is drawn on the canvas with
 * mouse strokes along its pixels, the predicted label is checked, a capsule slider is moved and the
 * reconstruction must change. Screenshot: test-artifacts/serve-page.png. The routing heat map must show the
 * coupling coefficients onnxruntime-node computes, and the figure-4 grid the decoder's reconstructions
 * (test-artifacts/serve-page-routing.png); the sliders carry the labels of the dimensions file the server was given
 * (`--dimensions`: mnist-small's, one label made HTML-like to show it stays text). A digit drawn while the model loads is classified once it has loaded; a
 * device switch that fails keeps the working model. The page then switches to WebGPU (a SwiftShader adapter
 * without a GPU, about 15 s); CAPSNET_SKIP_WEBGPU=1 leaves that out, saying so.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import type { Classifier } from '@capsnet-onnx/runtime/node';
import { exportedSmallModel, startServeProcess } from '../support/serve.ts';
import { loadMnistSample } from '../../packages/capsnet/src/data/datasets.ts';
import { ARTIFACTS } from '../support/fixtures.ts';
import { readEnv } from '../support/env.ts';
import { pretrained } from '@capsnet-onnx/mnist';
import type { DimensionFindings } from '@capsnet-onnx/core';

const CHROMIUM = '/usr/bin/chromium';
const WEBGPU = readEnv('CAPSNET_SKIP_WEBGPU') === undefined;
const PIXELS = 784;
/** The dimensions file served: mnist-small's, its first label for every class replaced by markup that must stay text. */
const MARKUP = '<img src=x onerror=alert(1)> localized part';
const DIMENSIONS = JSON.parse(readFileSync(pretrained('mnist-small').dimensions, 'utf8')) as DimensionFindings;
for (const c of DIMENSIONS.perClass) c.dimensions[0]!.label = MARKUP;

/** Draw a 28x28 digit on the page's pad as horizontal mouse strokes through its inked pixels. */
async function drawDigit(page: Page, digit: Float32Array | number[]): Promise<void> {
  await page.locator('#brush').fill('13');
  const box = (await page.locator('#pad').boundingBox())!;
  const cell = box.width / 28;
  const at = (x: number, y: number) => [box.x + (x + 0.5) * cell, box.y + (y + 0.5) * cell] as const;
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
}

describe('the page in headless Chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)` }, () => {
  let server: Awaited<ReturnType<typeof startServeProcess>>;
  let context: BrowserContext;
  let page: Page;
  let direct: Classifier;
  let modelPath: string;
  let profile: string;
  const consoleLines: string[] = [];
  const requested: string[] = [];

  before(async () => {
    const model = await exportedSmallModel();
    modelPath = model;
    const { buildWeb } = await import('../../packages/capsnet/src/web/build.ts');
    await buildWeb();
    profile = mkdtempSync(join(tmpdir(), 'capsnet-chromium-'));
    const dimensions = join(profile, 'dimensions.json');
    writeFileSync(dimensions, JSON.stringify(DIMENSIONS));
    server = await startServeProcess(model, ['--device', 'cpu', '--dimensions', dimensions]);
    const { CapsNet } = await import('@capsnet-onnx/runtime/node');
    direct = await CapsNet.load(model, { device: 'cpu' });
    const { chromium } = await import('playwright-core');
    context = await chromium.launchPersistentContext(join(profile, 'chromium'), {
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
    // The page's bundle, the model and decoder from the server, onnxruntime-web's wasm from node_modules (/ort/):
    // on wasm, its plain build, not the JSEP binary (twice the size) that only WebGPU needs.
    for (const path of ['/web/page.js', '/model.onnx', '/model.decoder.onnx', '/ort/ort-wasm-simd-threaded.wasm']) {
      assert.ok(requested.includes(path), `the page did not fetch ${path}: ${requested.join(' ')}`);
    }
    assert.ok(!requested.some((p) => /jsep/.test(p)), `the page fetched the JSEP build on wasm: ${requested.join(' ')}`);
    // The page's script is split (web/build.ts): on wasm it imports the chunk of onnxruntime-web's plain wasm build,
    // never the chunk of its JSEP build.
    assert.ok(
      requested.some((p) => /^\/web\/page-ort\.wasm\.bundle\.min-\w+\.js$/.test(p)),
      `no wasm-build chunk: ${requested.join(' ')}`,
    );
    assert.ok(!requested.some((p) => /^\/web\/page-ort\.bundle\.min-/.test(p)), `the page fetched the JSEP-build chunk on wasm: ${requested.join(' ')}`);
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
    const before = await page.evaluate(() => (window as any).capsnet.classifyCount);
    await drawDigit(page, digit);
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

  test('routing: the heat map shows the coupling coefficients onnxruntime-node computes; figure 4 is the decoder on the perturbed capsule', async () => {
    const analysed = await page.evaluate(() => (window as any).capsnet.analysisCount);
    await page.locator('#samples button').nth(3).click();
    await page.waitForFunction((n) => (window as any).capsnet.analysisCount > n, analysed, { timeout: 60_000 });
    await idle();
    const seen = await page.evaluate(() => {
      const s = (window as any).capsnet;
      return {
        input: Array.from(s.input as Float32Array),
        routing: s.routing,
        longest: s.result.longest,
        capsules: Array.from(s.result.capsules as Float32Array),
      };
    });
    assert.equal(typeof seen.routing, 'object', `routing not shown: ${seen.routing}`);
    // The small preset: 8 PrimaryCaps maps on a 6x6 grid (288 capsules), 10 classes.
    assert.deepEqual(seen.routing.dims, [1, 288, 10]);
    assert.deepEqual(seen.routing.grid, { rows: 6, cols: 6, types: 8 });
    assert.deepEqual(seen.routing.outputs, ['coupling']);
    assert.equal(seen.routing.cls, seen.longest);
    // The same coefficients from onnxruntime-node on the same prepared input, averaged over the types per position.
    const ort = await import('onnxruntime-node');
    const session = await ort.InferenceSession.create(modelPath);
    const nodeMeans = async (input: number[], cls: number) => {
      const out = await session.run({ images: new ort.Tensor('float32', Float32Array.from(input), [1, 28, 28, 1]) }, ['coupling']);
      const data = out.coupling!.data as Float32Array;
      return Array.from({ length: 36 }, (_, p) => {
        let sum = 0;
        for (let t = 0; t < 8; t++) sum += data[(p * 8 + t) * 10 + cls]!;
        return sum / 8;
      });
    };
    const expected = await nodeMeans(seen.input, seen.longest);
    seen.routing.means[0].forEach((v: number, p: number) => assert.ok(Math.abs(v - expected[p]!) < 1e-3, `position ${p}: page ${v}, node ${expected[p]}`));
    assert.ok(Math.max(...expected) - Math.min(...expected) > 1e-3, 'the coupling coefficients are uniform: routing did nothing on this digit');
    // The heat map is drawn: red or blue pixels over the gray image, and the caption names what is averaged.
    const tinted = await page.evaluate(() => {
      const canvas = document.querySelector('#routing canvas.heat') as HTMLCanvasElement;
      const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
      let n = 0;
      for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i]! - data[i + 1]!) > 8 || Math.abs(data[i + 2]! - data[i + 1]!) > 8) n++;
      return { n, total: data.length / 4, maps: document.querySelectorAll('#routing canvas.heat').length };
    });
    assert.equal(tinted.maps, 1);
    assert.ok(tinted.n > tinted.total / 20, `the heat map is nearly blank: ${tinted.n} of ${tinted.total} pixels tinted`);
    assert.match((await page.locator('#routing-caption').textContent()) ?? '', /288 primary capsules \(6×6 positions × 8 types\).*mean over the 8 types/);
    assert.match((await page.locator('#routing-iterations').textContent()) ?? '', /last routing iteration's coupling only \(iteration 3 of 3\)/);
    // Clicking another class routes to it.
    const other = (seen.longest + 1) % 10;
    await page.locator(`#bars li[data-class="${other}"]`).click();
    const otherMeans: number[] = await page.evaluate(() => (window as any).capsnet.routing.means[0]);
    const otherExpected = await nodeMeans(seen.input, other);
    otherMeans.forEach((v, p) => assert.ok(Math.abs(v - otherExpected[p]!) < 1e-3, `class ${other}, position ${p}: page ${v}, node ${otherExpected[p]}`));
    assert.equal(await page.locator('#bars li.routed').getAttribute('data-class'), String(other));

    // Figure 4: 16 dimensions x 11 steps, every row inked; the 0 column is the plain reconstruction of the winning capsule.
    assert.equal(await page.locator('.fig4-rows span').count(), 16);
    assert.equal(await page.locator('.fig4-cols span').count(), 11);
    const grid = await page.evaluate(() => {
      const canvas = document.getElementById('fig4') as HTMLCanvasElement;
      const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
      const rowInk = Array.from({ length: 16 }, (_, d) => {
        let ink = 0;
        for (let y = d * 28; y < (d + 1) * 28; y++) for (let x = 0; x < canvas.width; x++) ink += data[(y * canvas.width + x) * 4]! > 64 ? 1 : 0;
        return ink;
      });
      const figure = (window as any).capsnet.figure;
      return { width: canvas.width, height: canvas.height, rowInk, zero: Array.from(figure.cells[5] as Float32Array), effects: figure.effects as number[] };
    });
    assert.deepEqual([grid.width, grid.height], [11 * 28, 16 * 28]);
    grid.rowInk.forEach((ink, d) => assert.ok(ink > 11 * 10, `figure 4 row ${d + 1} is nearly blank (${ink} inked pixels)`));
    const masked = new Float32Array(160);
    for (let d = 0; d < 16; d++) masked[seen.longest * 16 + d] = seen.capsules[seen.longest * 16 + d]!;
    const [plain] = await direct.decode(masked);
    grid.zero.forEach((v, i) => assert.ok(Math.abs(v - plain![i]!) < 1e-3, `figure 4, 0 column, pixel ${i}: page ${v}, node ${plain![i]}`));
    // The sliders: named with the served file's labels for the winning class (the markup stays text), and each
    // dimension's effect, as experiments/perturb.ts measures it: mean |pixel change| between -0.25 and +0.25.
    const labels = DIMENSIONS.perClass.find((c) => c.class === seen.longest)!.dimensions.map((e) => e.label);
    assert.equal(labels[0], MARKUP);
    assert.deepEqual(await page.locator('#sliders .dim').allTextContents(), labels);
    assert.equal(await page.locator('#sliders img').count(), 0, 'a label was parsed as HTML');
    assert.match((await page.locator('#sliders .dim').nth(1).getAttribute('title')) ?? '', /^.+: dimension 2, class \d \(\d+ digits\): shift [+-]/);
    assert.match((await page.locator('#dims-note').textContent()) ?? '', /^Labels: what each dimension was measured to do .*capsnet experiment perturb/);
    const ends = Array.from({ length: 16 }, (_, d) =>
      [-0.25, 0.25].map((step) => {
        const set = Float32Array.from(masked);
        set[seen.longest * 16 + d] = set[seen.longest * 16 + d]! + step;
        return set;
      }),
    ).flat();
    const decoded = await direct.decode(ends);
    const effects = Array.from({ length: 16 }, (_, d) => decoded[2 * d]!.reduce((sum, v, i) => sum + Math.abs(decoded[2 * d + 1]![i]! - v), 0) / PIXELS);
    grid.effects.forEach((v, d) => assert.ok(Math.abs(v - effects[d]!) < 1e-4, `dimension ${d + 1} effect: page ${v}, node ${effects[d]}`));
    const texts = await page.locator('#sliders .effect').allTextContents();
    assert.equal(texts.length, 16);
    texts.forEach((t) => assert.match(t, /^Δ \d\.\d{3} · #\d+$/));
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'serve-page-routing.png'), fullPage: true });
  });

  test('an opened image file goes through the bundled pipeline: same label as the runtime; a blank canvas is "no digit"', async () => {
    const { makeDigitCorpus } = await import('../../packages/capsnet/src/data/corpus.ts');
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

  test('a digit drawn while the model loads is classified once it has loaded', async () => {
    const second = await context.newPage();
    const errors: string[] = [];
    second.on('pageerror', (e) => errors.push(e.message));
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    // Hold the model download until the digit is drawn.
    await second.route('**/model.onnx', async (route) => {
      await held;
      await route.continue();
    });
    try {
      await second.goto(`${server.url}/?device=wasm`);
      await second.waitForFunction(() => (window as any).capsnet?.info, null, { timeout: 30_000 });
      const { test: split } = loadMnistSample();
      await drawDigit(second, split.images.slice(0, PIXELS));
      assert.equal(await second.evaluate(() => (window as any).capsnet.model), null, 'the model loaded before the route released it');
      assert.equal(await second.evaluate(() => (window as any).capsnet.classifyCount), 0);
      release();
      await second.waitForFunction(() => (window as any).capsnet.classifyCount > 0, null, { timeout: 60_000 });
      await second.waitForFunction(() => (window as any).capsnet.busy === 0, null, { timeout: 30_000 });
      assert.equal(await second.locator('#input-source').textContent(), 'your drawing, centred like MNIST');
      const input: number[] = await second.evaluate(() => Array.from((window as any).capsnet.input));
      const [reference] = await direct.classify(Float32Array.from(input));
      assert.equal(await second.evaluate(() => (window as any).capsnet.result.longest), reference!.longest);
      assert.deepEqual(errors, []);
    } finally {
      release();
      await second.close();
    }
  });

  test('a device switch that fails keeps the working model', async () => {
    const webgpuEnabled = await page.locator('#provider input[value=webgpu]').isEnabled();
    const target = webgpuEnabled ? 'WebGPU' : 'Auto';
    await page.route('**/model.onnx', (route) => route.fulfill({ status: 503, body: 'unavailable' }));
    try {
      await page.locator('#provider label', { hasText: target }).click();
      await page.waitForFunction(() => !(window as any).capsnet.loading && !document.getElementById('error')!.hidden, null, { timeout: 60_000 });
      const error = (await page.locator('#error').textContent()) ?? '';
      assert.match(error, new RegExp(`could not load the model on ${webgpuEnabled ? 'webgpu' : 'auto'}: GET /model.onnx: HTTP 503; still running on WASM`));
      assert.equal(await page.evaluate(() => (window as any).capsnet.model?.device), 'wasm');
      assert.match((await page.locator('#device-badge').textContent()) ?? '', /^WASM/);
      assert.equal(await page.locator('#provider input[value=wasm]').isChecked(), true);
    } finally {
      await page.unroute('**/model.onnx');
    }
    // The working model still classifies.
    const before = await page.evaluate(() => (window as any).capsnet.classifyCount);
    await page.locator('#samples button').nth(12).click();
    await page.waitForFunction((n) => (window as any).capsnet.classifyCount > n, before);
    await idle();
    assert.notEqual(await page.locator('#prediction').textContent(), '–');
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
