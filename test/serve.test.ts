/**
 * The server against a fake Classifier: fast, deterministic checks of every endpoint, every error path, the
 * batching policy and graceful close. test/serve-model.test.ts runs the real exported model.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Batcher } from '../packages/capsnet/src/serve/batcher.ts';
import { encodePng, imageFromJson, imageFromPng, resizeArea } from '../packages/capsnet/src/serve/images.ts';
import { createServer, type CapsNetServer } from '../packages/capsnet/src/serve/server.ts';
import { FakeClassifier, getJson, postJson } from './support/serve.ts';

const SHAPE = { height: 28, width: 28, channels: 1 };
const flat = (value: number) => new Array(784).fill(value);

describe('Batcher', () => {
  test('packs concurrent requests into one run, keeps each request whole and in order', async () => {
    const sizes: number[] = [];
    const batcher = new Batcher<number, number>(async (xs) => {
      sizes.push(xs.length);
      return xs.map((x) => x * 10);
    }, { maxBatch: 8, maxWaitMs: 20 });
    const results = await Promise.all([batcher.submit([1, 2]), batcher.submit([3]), batcher.submit([4, 5, 6])]);
    assert.deepEqual(results.map((r) => r.outputs), [[10, 20], [30], [40, 50, 60]]);
    assert.deepEqual(sizes, [6]);
    assert.ok(results.every((r) => r.batchSize === 6));
  });

  test('a full batch starts at once; a request that does not fit waits for the next run', async () => {
    const sizes: number[] = [];
    const batcher = new Batcher<number, number>(async (xs) => {
      sizes.push(xs.length);
      return xs;
    }, { maxBatch: 4, maxWaitMs: 10_000 });
    const started = performance.now();
    await Promise.all([batcher.submit([1, 2, 3]), batcher.submit([4, 5]), batcher.submit([6, 7])]);
    // [1,2,3] + [4,5] does not fit in 4: the first run takes [1,2,3] when [4,5] fills the queue past 4, the
    // second takes [4,5,6,7] (full). Neither waits for the 10 s timer.
    assert.deepEqual(sizes, [3, 4]);
    assert.ok(performance.now() - started < 2000);
    await assert.rejects(batcher.submit([1, 2, 3, 4, 5]), /5 items in one request; the most is 4/);
  });

  test('one run at a time: requests arriving during a run form the next batch', async () => {
    const sizes: number[] = [];
    let concurrent = 0;
    let maxConcurrent = 0;
    const batcher = new Batcher<number, number>(async (xs) => {
      sizes.push(xs.length);
      maxConcurrent = Math.max(maxConcurrent, ++concurrent);
      await new Promise((r) => setTimeout(r, 30));
      concurrent--;
      return xs;
    }, { maxBatch: 64, maxWaitMs: 0 });
    const first = batcher.submit([0]);
    await new Promise((r) => setTimeout(r, 5));
    const rest = Array.from({ length: 10 }, (_, i) => batcher.submit([i + 1]));
    await Promise.all([first, ...rest]);
    assert.equal(maxConcurrent, 1);
    assert.deepEqual(sizes, [1, 10]);
    assert.deepEqual(batcher.stats().runs, 2);
    await batcher.idle();
  });

  test('a failed run rejects its requests only; the next run works', async () => {
    let fail = true;
    const batcher = new Batcher<number, number>(async (xs) => {
      if (fail) {
        fail = false;
        throw new Error('boom');
      }
      return xs;
    }, { maxBatch: 4, maxWaitMs: 0 });
    await assert.rejects(batcher.submit([1]), /boom/);
    assert.deepEqual((await batcher.submit([2])).outputs, [2]);
    assert.equal(batcher.stats().failedRequests, 1);
  });
});

describe('image conversion', () => {
  test('flat arrays of the model size pass through; nested arrays are resized', () => {
    const image = imageFromJson(flat(0.5), SHAPE);
    assert.equal(image.length, 784);
    assert.ok(image.every((v) => v === 0.5));
    const big = Array.from({ length: 56 }, (_, y) => Array.from({ length: 56 }, (_, x) => (x < 28 && y < 28 ? 1 : 0)));
    const small = imageFromJson(big, SHAPE);
    assert.equal(small[0], 1);
    assert.equal(small[27 * 28 + 27], 0);
    assert.equal(small[13 * 28 + 13], 1);
    assert.equal(small[14 * 28 + 14], 0);
  });

  test('RGB nested arrays become gray', () => {
    const rgb = Array.from({ length: 28 }, () => Array.from({ length: 28 }, () => [1, 1, 1]));
    assert.ok(imageFromJson(rgb, SHAPE).every((v) => Math.abs(v - 1) < 1e-6));
  });

  test('area resize averages', () => {
    const out = resizeArea(Float32Array.from([0, 1, 1, 0]), 2, 2, 1, 1, 1);
    assert.deepEqual(Array.from(out), [0.5]);
  });

  test('PNG round trip, with auto invert of a light background', () => {
    const digit = new Float32Array(784);
    for (let y = 8; y < 20; y++) digit[y * 28 + 14] = 1;
    const png = encodePng(digit, 28, 28, 1);
    assert.deepEqual(Array.from(imageFromPng(png, SHAPE)), Array.from(digit));
    const inverted = encodePng(digit.map((v) => 1 - v), 28, 28, 1);
    assert.deepEqual(Array.from(imageFromPng(inverted, SHAPE)), Array.from(digit));
    assert.deepEqual(Array.from(imageFromPng(inverted, SHAPE, 'false')), Array.from(digit.map((v) => 1 - v)));
  });
});

describe('server (fake classifier)', () => {
  let server: CapsNetServer;
  let base: string;
  const fake = new FakeClassifier();

  before(async () => {
    server = await createServer({ classifier: fake, maxBatch: 16, batchWaitMs: 25, bodyLimit: 64 * 1024 });
    base = await server.listen(0, '127.0.0.1');
  });
  after(async () => {
    await server.close();
  });

  test('GET /healthz, /v1/model and COOP/COEP headers', async () => {
    const health = await getJson(base, '/healthz');
    assert.equal(health.status, 200);
    assert.equal(health.json.status, 'ok');
    assert.equal(health.headers.get('cross-origin-opener-policy'), 'same-origin');
    assert.equal(health.headers.get('cross-origin-embedder-policy'), 'require-corp');
    const model = await getJson(base, '/v1/model');
    assert.equal(model.json.metadata.numClasses, 10);
    assert.deepEqual(model.json.input.shape, [null, 28, 28, 1]);
    assert.deepEqual(model.json.batching, { maxBatch: 16, maxWaitMs: 25, maxQueue: 512 });
  });

  test('POST /v1/classify with JSON: one image, a batch, nested arrays', async () => {
    const one = await postJson(base, '/v1/classify', { image: flat(1) });
    assert.equal(one.status, 200);
    assert.equal(one.json.results.length, 1);
    assert.equal(one.json.results[0].label, 9);
    assert.equal(one.json.results[0].lengths.length, 10);
    assert.equal(one.json.results[0].capsules.length, 10);
    assert.equal(one.json.results[0].capsules[0].length, 16);
    assert.equal(one.json.results[0].reconstruction.length, 784);
    const many = await postJson(base, '/v1/classify?reconstruction=false', { images: [flat(0), flat(1), Array.from({ length: 14 }, () => new Array(14).fill(1))] });
    assert.deepEqual(many.json.results.map((r: { label: number }) => r.label), [0, 9, 9]);
    assert.equal(many.json.results[0].reconstruction, undefined);
  });

  test('POST /v1/classify with a PNG body and with multipart PNG files', async () => {
    const white = encodePng(new Float32Array(784).fill(1), 28, 28, 1);
    const raw = await fetch(`${base}/v1/classify?invert=false`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: new Uint8Array(white) });
    assert.equal(raw.status, 200);
    assert.equal((await raw.json()).results[0].label, 9);
    const form = new FormData();
    form.append('a', new Blob([new Uint8Array(encodePng(new Float32Array(784), 28, 28, 1))], { type: 'image/png' }), 'black.png');
    form.append('b', new Blob([new Uint8Array(white)], { type: 'image/png' }), 'white.png');
    const multi = await fetch(`${base}/v1/classify?invert=false`, { method: 'POST', body: form });
    assert.equal(multi.status, 200);
    assert.deepEqual((await multi.json()).results.map((r: { label: number }) => r.label), [0, 9]);
  });

  test('POST /v1/decode: one set, a batch, masking', async () => {
    const set = Array.from({ length: 10 }, (_, k) => new Array(16).fill(k === 3 ? 1 : 0.1));
    const one = await postJson(base, '/v1/decode', { capsules: set });
    assert.equal(one.status, 200);
    assert.equal(one.json.reconstructions.length, 1);
    assert.equal(one.json.reconstructions[0].length, 784);
    assert.ok(Math.abs(one.json.reconstructions[0][0] - 0.304) < 1e-5);
    const masked = await postJson(base, '/v1/decode', { capsules: set.flat(), mask: true });
    assert.ok(Math.abs(masked.json.reconstructions[0][0] - 0.16) < 1e-5);
    const batch = await postJson(base, '/v1/decode', { batch: [set, set.flat()] });
    assert.equal(batch.json.reconstructions.length, 2);
  });

  test('client errors are 4xx JSON and the server keeps serving', async () => {
    const cases: [string, string | object, number, string, Record<string, string>?][] = [
      ['/v1/classify', '{"image": [1, 2', 400, 'BAD_JSON'],
      ['/v1/classify', '', 400, 'BAD_JSON'],
      ['/v1/classify', '[1,2,3]', 400, 'BAD_INPUT'],
      ['/v1/classify', {}, 400, 'BAD_INPUT'],
      ['/v1/classify', { image: new Array(783).fill(0) }, 400, 'WRONG_DIMENSIONS'],
      ['/v1/classify', { image: [[0, 1], [0]] }, 400, 'WRONG_DIMENSIONS'],
      ['/v1/classify', { image: [[[0, 0]]] }, 400, 'WRONG_DIMENSIONS'],
      ['/v1/classify', { image: [...flat(0).slice(1), null] }, 400, 'NOT_FINITE'],
      ['/v1/classify', { image: [...flat(0).slice(1), 'NaN'] }, 400, 'NOT_FINITE'],
      ['/v1/classify', '{"image": [NaN]}', 400, 'BAD_JSON'],
      ['/v1/classify', { image: [...flat(0).slice(1), 255] }, 400, 'OUT_OF_RANGE'],
      ['/v1/classify', { images: Array.from({ length: 17 }, () => [[0]]) }, 413, 'TOO_MANY_IMAGES'],
      ['/v1/classify', { image: 'abc' }, 400, 'BAD_INPUT'],
      ['/v1/classify', { images: [] }, 400, 'NO_IMAGE'],
      ['/v1/classify', { image: flat(0), images: [] }, 400, 'BAD_INPUT'],
      ['/v1/classify', { images: Array.from({ length: 8 }, () => flat(0.123456789)) }, 413, 'BODY_TOO_LARGE'],
      ['/v1/classify', 'not a png', 400, 'BAD_PNG', { 'content-type': 'image/png' }],
      ['/v1/classify', '\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x1c\0\0\0\x1c\x08\0\0\0\0garbage', 400, 'BAD_PNG', { 'content-type': 'image/png' }],
      ['/v1/classify', 'hello', 415, 'UNSUPPORTED_MEDIA_TYPE', { 'content-type': 'text/plain' }],
      ['/v1/decode', { capsules: new Array(159).fill(0) }, 400, 'WRONG_DIMENSIONS'],
      ['/v1/decode', { capsules: Array.from({ length: 10 }, () => new Array(16).fill(Infinity)) }, 400, 'NOT_FINITE'],
      ['/v1/decode', { batch: 'x' }, 400, 'BAD_INPUT'],
      ['/v1/decode', { capsules: new Array(160).fill(0), mask: 'maybe' }, 400, 'BAD_QUERY'],
      ['/v1/classify?invert=sideways', { image: flat(0) }, 400, 'BAD_QUERY'],
      ['/v1/nothing', {}, 404, 'NOT_FOUND'],
    ];
    for (const [path, body, status, code, headers] of cases) {
      const response = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: headers ?? { 'content-type': 'application/json' },
        body: typeof body === 'string' ? new Uint8Array(Buffer.from(body, 'latin1')) : JSON.stringify(body),
      });
      const json = await response.json();
      assert.equal(response.status, status, `${path} ${JSON.stringify(body).slice(0, 60)}: ${JSON.stringify(json)}`);
      assert.equal(json.error?.code, code, JSON.stringify(json));
      assert.equal(typeof json.error.message, 'string');
      assert.match(response.headers.get('content-type') ?? '', /application\/json/);
    }
    const infinity = await postJson(base, '/v1/classify', `{"image": [${[...flat(0).slice(1), '1e999'].join(',')}]}`);
    assert.equal(infinity.status, 400);
    assert.equal(infinity.json.error.code, 'NOT_FINITE');
    // A runtime failure is a 500 JSON error for that batch only.
    fake.failNext = true;
    const failed = await postJson(base, '/v1/classify', { image: flat(0) });
    assert.equal(failed.status, 500);
    assert.equal(failed.json.error.code, 'INTERNAL');
    const ok = await postJson(base, '/v1/classify', { image: flat(1) });
    assert.equal(ok.status, 200);
    assert.equal((await getJson(base, '/healthz')).json.status, 'ok');
  });

  test('concurrent requests share inference runs', async () => {
    fake.runs = [];
    fake.delayMs = 20;
    try {
      const send = () => Promise.all(Array.from({ length: 24 }, (_, i) => postJson(base, '/v1/classify', { image: flat((i % 10) / 9) })));
      await send(); // opens the client's connections
      const before = server.stats().classify;
      const responses = await send();
      assert.ok(responses.every((r) => r.status === 200));
      responses.forEach((r, i) => assert.equal(r.json.results[0].label, i % 10));
      const after = server.stats().classify;
      const runs = after.runs - before.runs;
      assert.equal(after.requests - before.requests, 24);
      // Ideally 2 (16 + 8); a loaded machine spreads the arrivals, so allow some slack.
      assert.ok(runs <= 8, `24 concurrent requests took ${runs} runs: ${JSON.stringify(fake.runs)}`);
      assert.ok(fake.runs.every((r) => r.size <= 16));
      assert.ok(responses.some((r) => r.json.batch.size > 1));
      const stats = await getJson(base, '/v1/stats');
      assert.equal(stats.json.classify.runs, after.runs);
    } finally {
      fake.delayMs = 0;
    }
  });

  test('an upload larger than the body limit in total is a 413; a full queue is a 503', async () => {
    const noisy = new Float32Array(200 * 200).map((_, i) => ((i * 7919) % 255) / 255);
    const form = new FormData();
    for (let i = 0; i < 3; i++) form.append(`f${i}`, new Blob([new Uint8Array(encodePng(noisy, 200, 200, 1))], { type: 'image/png' }), `${i}.png`);
    const upload = await fetch(`${base}/v1/classify`, { method: 'POST', body: form });
    assert.equal(upload.status, 413);
    assert.equal((await upload.json()).error.code, 'BODY_TOO_LARGE');

    const slow = new FakeClassifier();
    slow.delayMs = 200;
    const s = await createServer({ classifier: slow, maxBatch: 2, maxQueue: 4, batchWaitMs: 0 });
    const url = await s.listen(0, '127.0.0.1');
    try {
      // A run of 1 or 2 in flight and 4 queued: the rest of the 8 are refused while the queue is full.
      const responses = await Promise.all(Array.from({ length: 8 }, () => postJson(url, '/v1/classify', { image: flat(1) })));
      const ok = responses.filter((r) => r.status === 200).length;
      const refusedCount = responses.filter((r) => r.status === 503).length;
      assert.ok(ok >= 5 && ok <= 6 && ok + refusedCount === 8, JSON.stringify(responses.map((r) => r.status)));
      const refused = responses.find((r) => r.status === 503)!;
      assert.equal(refused.json.error.code, 'OVERLOADED');
      assert.equal(refused.headers.get('retry-after'), '1');
      assert.equal((await postJson(url, '/v1/classify', { image: flat(1) })).status, 200);
    } finally {
      await s.close();
    }
  });

  test('close() finishes an in-flight request, then refuses new connections', async () => {
    const slow = new FakeClassifier();
    slow.delayMs = 300;
    const s = await createServer({ classifier: slow, batchWaitMs: 0 });
    const url = await s.listen(0, '127.0.0.1');
    const inFlight = postJson(url, '/v1/classify', { image: flat(1) });
    await new Promise((r) => setTimeout(r, 100));
    const closed = s.close();
    const response = await inFlight;
    assert.equal(response.status, 200);
    assert.equal(response.json.results[0].label, 9);
    await closed;
    await assert.rejects(fetch(`${url}/healthz`));
  });
});
