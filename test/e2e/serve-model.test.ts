/**
 * `capsnet serve` as a real process on the small trained model: answers equal a direct runtime classify,
 * PNG uploads, decode, batching under concurrency, the page's assets, and SIGTERM with a request in flight.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Classification, Classifier } from '@capsnet-onnx/runtime/node';
import { decodeImage } from '@capsnet-onnx/core';
import { encodePng } from '../../packages/capsnet/src/serve/images.ts';
import { exportedSmallModel, getJson, postJson, startServeProcess } from '../support/serve.ts';
import { loadMnistSample } from '../../packages/capsnet/src/data/datasets.ts';

const PIXELS = 784;
const COUNT = 24;

describe('capsnet serve (real model)', () => {
  let model: string;
  let server: Awaited<ReturnType<typeof startServeProcess>>;
  let direct: Classifier;
  let images: Float32Array[];
  let labels: number[];
  let expected: Classification[];

  before(async () => {
    model = await exportedSmallModel();
    server = await startServeProcess(model, ['--device', 'cpu', '--max-batch', '16', '--batch-wait-ms', '20']);
    const { CapsNet } = await import('@capsnet-onnx/runtime/node');
    direct = await CapsNet.load(model, { device: 'cpu' });
    const { test: split } = loadMnistSample();
    images = Array.from({ length: COUNT }, (_, i) => split.images.slice(i * PIXELS, (i + 1) * PIXELS));
    labels = Array.from(split.labels.subarray(0, COUNT));
    expected = await direct.classify(images);
  });

  after(async () => {
    await direct?.dispose();
    if (server) assert.equal(await server.stop(), 0, server.output());
  });

  test('GET /healthz and /v1/model describe the loaded model', async () => {
    assert.equal((await getJson(server.url, '/healthz')).json.status, 'ok');
    const { json } = await getJson(server.url, '/v1/model');
    assert.equal(json.device, 'cpu');
    assert.deepEqual(json.metadata, JSON.parse(JSON.stringify(direct.metadata)));
    assert.deepEqual(json.input.shape, [null, 28, 28, 1]);
  });

  test('POST /v1/classify (JSON batch) equals a direct runtime classify', async () => {
    const { status, json } = await postJson(server.url, '/v1/classify', { images: images.slice(0, 16).map((i) => Array.from(i)) });
    assert.equal(status, 200, JSON.stringify(json));
    json.results.forEach((r: { label: number; lengths: number[]; capsules: number[][]; reconstruction: number[] }, i: number) => {
      assert.equal(r.label, expected[i]!.label);
      r.lengths.forEach((v, k) => assert.ok(Math.abs(v - expected[i]!.lengths[k]!) < 1e-4, `image ${i} length ${k}: ${v}`));
      assert.equal(r.capsules.flat().length, 160);
      assert.ok(Math.abs(r.reconstruction[400]! - expected[i]!.reconstruction[400]!) < 1e-4);
    });
    const accuracy = expected.filter((c, i) => c.label === labels[i]).length / COUNT;
    assert.ok(accuracy >= 0.8, `the fixture model gets ${accuracy} of ${COUNT} test digits`);
  });

  test('POST /v1/classify with PNG uploads (raw and multipart, 56x56 dark-on-light) equals the runtime on the decoded picture', async () => {
    const quantised = images[0]!.map((v) => Math.round(v * 255) / 255);
    const file = new Uint8Array(encodePng(quantised, 28, 28, 1));
    // The same pipeline: the runtime given the decoded picture ({ data, width, height }) prepares it as the server does.
    const [reference] = await direct.classify(decodeImage(file));
    const raw = await fetch(`${server.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: file });
    const rawJson = await raw.json();
    assert.equal(raw.status, 200, JSON.stringify(rawJson));
    assert.equal(rawJson.results[0].label, reference!.label);
    rawJson.results[0].lengths.forEach((v: number, k: number) => assert.ok(Math.abs(v - reference!.lengths[k]!) < 1e-4));
    // Dark-on-light and twice the size: inverted automatically, normalised like MNIST.
    const big = new Float32Array(56 * 56);
    for (let y = 0; y < 56; y++) for (let x = 0; x < 56; x++) big[y * 56 + x] = 1 - images[1]![(y >> 1) * 28 + (x >> 1)]!;
    const bigFile = new Uint8Array(encodePng(big, 56, 56, 1));
    const form = new FormData();
    form.append('image', new Blob([bigFile], { type: 'image/png' }), 'digit.png');
    const multi = await fetch(`${server.url}/v1/classify`, { method: 'POST', body: form });
    const multiJson = await multi.json();
    assert.equal(multi.status, 200, JSON.stringify(multiJson));
    const [bigReference] = await direct.classify(decodeImage(bigFile));
    assert.equal(multiJson.results[0].label, bigReference!.label);
    multiJson.results[0].lengths.forEach((v: number, k: number) => assert.ok(Math.abs(v - bigReference!.lengths[k]!) < 1e-4));
  });

  test('POST /v1/decode of the masked winning capsule gives the classify reconstruction', async () => {
    const { json } = await postJson(server.url, '/v1/classify', { image: Array.from(images[2]!) });
    const result = json.results[0];
    const decoded = await postJson(server.url, '/v1/decode', { capsules: result.capsules, mask: true });
    assert.equal(decoded.status, 200, JSON.stringify(decoded.json));
    const recon: number[] = decoded.json.reconstructions[0];
    assert.equal(recon.length, PIXELS);
    const maxDiff = Math.max(...recon.map((v, i) => Math.abs(v - result.reconstruction[i])));
    assert.ok(maxDiff < 1e-4, `decode differs from classify's reconstruction by ${maxDiff}`);
  });

  test('concurrent requests are batched and every answer is right', async () => {
    const send = () => Promise.all(images.map((image) => postJson(server.url, '/v1/classify?reconstruction=false', { image: Array.from(image) })));
    await send(); // opens the client's connections
    const before = (await getJson(server.url, '/v1/stats')).json.classify;
    const responses = await send();
    responses.forEach((r, i) => {
      assert.equal(r.status, 200);
      assert.equal(r.json.results[0].label, expected[i]!.label, `request ${i}`);
    });
    const after = (await getJson(server.url, '/v1/stats')).json.classify;
    const requests = after.requests - before.requests;
    const runs = after.runs - before.runs;
    assert.equal(requests, COUNT);
    assert.ok(runs < requests / 2, `${requests} concurrent requests took ${runs} inference runs`);
    assert.ok(Math.max(...responses.map((r) => r.json.batch.size)) > 1);
  });

  test('errors are 4xx JSON and the server keeps serving', async () => {
    const bad = await postJson(server.url, '/v1/classify', { image: [0, 0.5, 1] });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'WRONG_DIMENSIONS');
    const png = await fetch(`${server.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: 'nope' });
    assert.equal(png.status, 415);
    assert.equal((await png.json()).error.code, 'NOT_AN_IMAGE');
    const ok = await postJson(server.url, '/v1/classify', { image: Array.from(images[3]!) });
    assert.equal(ok.json.results[0].label, expected[3]!.label);
  });

  test('the page and its assets are served with COOP/COEP', async () => {
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<canvas id="pad"/);
    assert.equal(page.headers.get('cross-origin-embedder-policy'), 'require-corp');
    const onnx = await fetch(`${server.url}/model.onnx`);
    assert.deepEqual(new Uint8Array(await onnx.arrayBuffer()), new Uint8Array(readFileSync(model)));
    assert.equal((await fetch(`${server.url}/model.decoder.onnx`)).status, 200);
    for (const path of ['/web/page.js', '/page/page.css', '/ort/ort-wasm-simd-threaded.jsep.wasm', '/ort/ort-wasm-simd-threaded.jsep.mjs']) {
      const response = await fetch(`${server.url}${path}`);
      assert.equal(response.status, 200, path);
      await response.arrayBuffer();
    }
    assert.equal((await fetch(`${server.url}/ort/..%2Fpackage.json`)).status, 404);
    // The page's TypeScript sources are not served: its script is the bundle /web/page.js.
    assert.equal((await fetch(`${server.url}/page/app.ts`)).status, 404);
    const samples = await getJson(server.url, '/v1/samples');
    assert.equal(samples.json.samples.length, 30);
    assert.deepEqual([...new Set(samples.json.samples.map((s: { label: number }) => s.label))], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test('SIGTERM finishes the in-flight request, then exits 0', async () => {
    // A long batch window keeps the request queued (in flight) when the signal arrives.
    const slow = await startServeProcess(model, ['--device', 'cpu', '--batch-wait-ms', '1500']);
    const started = performance.now();
    const inFlight = postJson(slow.url, '/v1/classify', { image: Array.from(images[4]!) });
    await new Promise((r) => setTimeout(r, 400));
    slow.child.kill('SIGTERM');
    const response = await inFlight;
    assert.equal(response.status, 200, JSON.stringify(response.json));
    assert.equal(response.json.results[0].label, expected[4]!.label);
    assert.ok(performance.now() - started >= 1400, 'the request was answered before its batch window: it was not in flight');
    assert.equal(await slow.exited, 0, slow.output());
    assert.match(slow.output(), /SIGTERM: finishing in-flight requests/);
    assert.match(slow.output(), /stopped/);
    await assert.rejects(fetch(`${slow.url}/healthz`));
  });
});
