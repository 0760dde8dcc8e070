/**
 * Issue 20, item 1: one client's request never fails another's. Every request is validated on its own before it
 * joins a batch (serve/batcher.ts), and a batched run that still throws is split so that only its culprit fails.
 * The mixed-traffic test is the sweep's reproduction (1 bad /v2 tensor of 0-255 values + 15 valid requests, sent
 * together, several rounds): on the old code 265 of 300 valid requests got 500.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CapsNet, type Classification, type Classifier, type ImageInput } from '@capsnet-onnx/runtime/node';
import { Batcher } from '../../../packages/capsnet/src/serve/batcher.ts';
import { createServer, type CapsNetServer } from '../../../packages/capsnet/src/serve/server.ts';
import { decodeTask } from '../../../packages/capsnet/src/serve/image-worker.ts';
import { FakeClassifier, postJson } from '../../support/serve.ts';
import { TINY_CONFIG, tinyModel } from '../../support/tiny-model.ts';

const { inputHeight: H, inputWidth: W, inputChannels: C, numClasses: K } = TINY_CONFIG;
const PIXELS = H * W * C;
/** The tolerance between a served answer and the classifier run directly (JSON keeps 7 significant digits). */
const TOLERANCE = 1e-5;

function image(seed: number): Float32Array {
  return Float32Array.from({ length: PIXELS }, (_, i) => ((i * 7 + seed * 13) % 17) / 16);
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

const v2 = (data: number[], n = 1) => ({ inputs: [{ name: 'images', shape: [n, H, W, C], datatype: 'FP32', data }] });

describe('batcher isolation (unit)', () => {
  test('a request the validator refuses gets its error alone and never joins a run', async () => {
    const runs: number[][] = [];
    const batcher = new Batcher<number, number>(
      async (xs) => {
        runs.push(xs);
        return xs.map((x) => x * 2);
      },
      { maxBatch: 8, maxWaitMs: 20 },
      (xs) => {
        if (xs.some((x) => x > 1)) throw new RangeError(`value ${xs.find((x) => x > 1)} is above 1`);
      },
    );
    const results = await Promise.allSettled([batcher.submit([0.5]), batcher.submit([255]), batcher.submit([0.25, 0.75])]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    assert.match(String((results[1] as PromiseRejectedResult).reason), /value 255 is above 1/);
    assert.deepEqual(runs, [[0.5, 0.25, 0.75]]);
    assert.equal(batcher.stats().invalidRequests, 1);
  });

  test('a batched run that throws is split: each request runs alone and only the culprit fails', async () => {
    const runs: number[][] = [];
    const batcher = new Batcher<number, number>(
      async (xs) => {
        runs.push(xs);
        if (xs.includes(13)) throw new Error('unlucky 13');
        return xs.map((x) => x + 1);
      },
      { maxBatch: 8, maxWaitMs: 20 },
    );
    const results = await Promise.allSettled([batcher.submit([1]), batcher.submit([13, 2]), batcher.submit([3, 4])]);
    assert.deepEqual((results[0] as PromiseFulfilledResult<{ outputs: number[] }>).value.outputs, [2]);
    assert.match(String((results[1] as PromiseRejectedResult).reason), /unlucky 13/);
    assert.deepEqual((results[2] as PromiseFulfilledResult<{ outputs: number[] }>).value.outputs, [4, 5]);
    assert.deepEqual(runs, [[1, 13, 2, 3, 4], [1], [13, 2], [3, 4]]);
    const stats = batcher.stats();
    assert.equal(stats.splitRuns, 1);
    assert.equal(stats.failedRequests, 1);
  });
});

describe('serving: mixed traffic on a real model (tiny CapsNet, onnxruntime-node cpu)', () => {
  let classifier: Classifier;
  let server: CapsNetServer;
  let base: string;
  before(async () => {
    const tiny = tinyModel();
    classifier = await CapsNet.load(tiny.model, { decoder: tiny.decoder, device: 'cpu', threads: 1 });
    // A batch window wide enough that the 16 requests of a round share runs on a loaded machine.
    server = await createServer({ classifier, maxBatch: 32, batchWaitMs: 50 });
    base = await server.listen(0, '127.0.0.1');
  });
  after(async () => {
    await server.close();
    await classifier.dispose();
  });

  test('1 bad /v2 tensor (0-255 values) + 15 valid requests, 20 rounds: every valid request gets 200 and the direct answer', async () => {
    const rounds = 20;
    let valid = 0;
    let ok = 0;
    const badStatuses: number[] = [];
    const before = server.stats().classify;
    for (let round = 0; round < rounds; round++) {
      const inputs = Array.from({ length: 15 }, (_, k) => image(round * 15 + k));
      const expected = await classifier.classify(inputs);
      const bad = Array.from(image(999), (v) => Math.round(v * 255));
      const requests = [
        postJson(base, `/v2/models/capsnet/infer`, v2(bad)),
        // Valid traffic on both APIs: odd k on /v2, even k on /v1 (a flat prepared image).
        ...inputs.map((x, k) =>
          k % 2 ? postJson(base, '/v2/models/capsnet/infer', v2(Array.from(x))) : postJson(base, '/v1/classify', { image: Array.from(x) }),
        ),
      ];
      const [badAnswer, ...answers] = await Promise.all(requests);
      badStatuses.push(badAnswer!.status);
      assert.equal(badAnswer!.status, 400, JSON.stringify(badAnswer!.json));
      assert.match(badAnswer!.json.error, /value 255 at flat index \d+ .*must be in \[0, 1\]: divide 0-255 values by 255 before sending/);
      assert.doesNotMatch(badAnswer!.json.error, /Uint8Array|\n/);
      answers.forEach((a, k) => {
        valid++;
        assert.equal(a.status, 200, `round ${round}, request ${k}: ${JSON.stringify(a.json).slice(0, 200)}`);
        ok++;
        const lengths: number[] = k % 2 ? a.json.outputs.find((o: { name: string }) => o.name === 'lengths').data : a.json.results[0].lengths;
        assert.equal(lengths.length, K);
        const diff = maxDiff(lengths, expected[k]!.lengths);
        assert.ok(diff < TOLERANCE, `round ${round}, request ${k}: lengths differ from the classifier's by ${diff}`);
      });
    }
    const stats = server.stats().classify;
    // The rounds shared runs (batching still works) and no run failed.
    assert.ok(stats.runs - before.runs < stats.requests - before.requests, JSON.stringify(stats));
    assert.equal(stats.failedRequests, 0);
    console.log(
      `# mixed traffic: ${ok}/${valid} valid requests 200 with the direct answer (max diff < ${TOLERANCE}); bad requests: ${badStatuses.join(', ')}; ` +
        `${stats.runs - before.runs} runs for ${stats.requests - before.requests} batched requests`,
    );
  });

  test('a batch that fails at run time is split: only the request that fails alone gets an error', async () => {
    // A classifier that fails any run holding the poison image (valid by range and shape, like a model failure
    // specific to one input): the valid requests sharing its run still get their answers.
    const poison = new Float32Array(PIXELS).fill(0.123);
    class Fussy implements Classifier {
      readonly device = classifier.device;
      readonly deviceReport = classifier.deviceReport;
      readonly metadata = classifier.metadata;
      async classify(images: ImageInput): Promise<Classification[]> {
        const list = images as Float32Array[];
        if (list.some((x) => x[0] === poison[0] && x[1] === poison[1])) throw new Error('kernel failed on this input');
        return classifier.classify(list);
      }
      decode(capsules: Float32Array | Float32Array[]) {
        return classifier.decode(capsules);
      }
      async dispose() {}
    }
    const fussy = await createServer({ classifier: new Fussy(), maxBatch: 32, batchWaitMs: 50 });
    const url = await fussy.listen(0, '127.0.0.1');
    try {
      const inputs = Array.from({ length: 7 }, (_, k) => image(500 + k));
      const expected = await classifier.classify(inputs);
      const [bad, ...good] = await Promise.all([
        postJson(url, '/v1/classify', { image: Array.from(poison) }),
        ...inputs.map((x) => postJson(url, '/v1/classify', { image: Array.from(x) })),
      ]);
      assert.equal(bad!.status, 500);
      good.forEach((a, k) => {
        assert.equal(a.status, 200, JSON.stringify(a.json).slice(0, 200));
        assert.ok(maxDiff(a.json.results[0].lengths, expected[k]!.lengths) < TOLERANCE);
      });
      const stats = fussy.stats().classify;
      assert.equal(stats.failedRequests, 1);
      assert.ok(stats.splitRuns >= 1, JSON.stringify(stats));
    } finally {
      await fussy.close();
    }
  });
});

describe('serving: third-party text as one line naming the field and the fix (issue 20, rough kinds)', () => {
  let server: CapsNetServer;
  let base: string;
  before(async () => {
    server = await createServer({ classifier: new FakeClassifier(), maxBatch: 4 });
    base = await server.listen(0, '127.0.0.1');
  });
  after(async () => {
    await server.close();
  });
  const post = async (path: string, headers: Record<string, string>, body: BodyInit) => {
    const r = await fetch(`${base}${path}`, { method: 'POST', headers, body });
    return { status: r.status, json: await r.json() };
  };
  const message = (json: any): string => (typeof json.error === 'string' ? json.error : json.error.message);

  test('zlib, busboy and Fastify texts are wrapped; the /v2 415 says what to send', async () => {
    const cases: [string, Record<string, string>, BodyInit, number, RegExp][] = [
      [
        '/v1/classify',
        { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        'not gzip at all',
        400,
        /^the body is not valid gzip data \(incorrect header check\): send the body compressed as its Content-Encoding header says, or leave the header out$/,
      ],
      [
        '/v2/models/capsnet/infer',
        { 'content-type': 'text/plain' },
        '{"inputs": []}',
        415,
        /^the body must be JSON: send Content-Type: application\/json with \{"inputs": \[\.\.\.\]\}/,
      ],
      ['/v2/models/capsnet/infer', { 'content-type': 'application/json' }, '{"inputs": [', 400, /^the body is not valid JSON \(.*\): send one JSON object/],
      ['/v1/classify', { 'content-type': 'application/json' }, '{}', 400, /a PNG or JPEG body, or PNG or JPEG files|"image"/],
    ];
    for (const [path, headers, body, status, pattern] of cases) {
      const r = await post(path, headers, body);
      assert.equal(r.status, status, `${path} ${JSON.stringify(headers)}: ${JSON.stringify(r.json)}`);
      assert.match(message(r.json), pattern);
      assert.doesNotMatch(message(r.json), /\n/);
    }
    const form = new FormData();
    for (let i = 0; i < 6; i++) form.append(`f${i}`, new Blob([new Uint8Array(8)], { type: 'image/png' }), `${i}.png`);
    const many = await fetch(`${base}/v1/classify`, { method: 'POST', body: form });
    const json = await many.json();
    assert.equal(many.status, 413, JSON.stringify(json));
    assert.match(json.error.message, /^more than 4 files in one upload \(--max-batch\): split the request$/);
    const empty = await post('/v1/classify', { 'content-type': 'application/json' }, '{"images": []}');
    assert.match(empty.json.error.message, /PNG or JPEG/);
  });

  test("V8's allocation failures in the decoding worker are a 413 naming the image, not V8's text alone", () => {
    const result = decodeTask({
      bytes: new Uint8Array(
        Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAAAAACMmsGiAAAAGUlEQVR4AWNk+M/AwPifgYGBiQEImBiAAAAgNQIFPdhLDQAAAABJRU5ErkJggg==', 'base64'),
      ),
      // A target no machine can hold: the prepared image's allocation fails.
      target: { shape: { height: 2 ** 20, width: 2 ** 20, channels: 3 }, preprocessing: { method: 'resize', polarity: 'any' } },
      polarity: 'auto',
      what: 'file 1 (huge.png)',
    });
    assert.ok('error' in result, JSON.stringify(result).slice(0, 200));
    assert.equal(result.error.statusCode, 413);
    assert.match(result.error.message, /^file 1 \(huge\.png\) needs more memory to decode than the server can give it \(.*\): send a smaller image$/);
  });
});

describe('GET /v1/stats counts every refused input', () => {
  test("each 4xx on a queue's routes (bad JSON, wrong values, an undecodable PNG, /v2) is one invalidRequest of that queue", async () => {
    const server = await createServer({ classifier: new FakeClassifier(), maxBatch: 4 });
    const base = await server.listen(0, '127.0.0.1');
    try {
      const flat = new Array(784).fill(0.5);
      const classifyBad = [
        await postJson(base, '/v1/classify', '{"image": [1, 2'),
        await postJson(base, '/v1/classify', { image: [1, 2, 3] }),
        await postJson(base, '/v1/classify', { images: [flat, flat, flat, flat, flat] }),
        await postJson(base, '/v1/classify', { image: flat.map(() => 7) }),
        await postJson(base, '/v2/models/capsnet/infer', { inputs: [] }),
      ];
      const png = await fetch(`${base}/v1/classify`, {
        method: 'POST',
        headers: { 'content-type': 'image/png' },
        body: new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2]),
      });
      await png.arrayBuffer();
      const decodeBad = [await postJson(base, '/v1/decode', { capsules: [[1]] }), await postJson(base, '/v2/models/capsnet_decoder/infer', { inputs: 3 })];
      for (const r of [...classifyBad, ...decodeBad, png]) assert.ok(r.status >= 400 && r.status < 500, String(r.status));
      const good = await postJson(base, '/v1/classify', { image: flat });
      assert.equal(good.status, 200);
      const stats = (await fetch(`${base}/v1/stats`).then((r) => r.json())) as { classify: { invalidRequests: number }; decode: { invalidRequests: number } };
      assert.equal(stats.classify.invalidRequests, classifyBad.length + 1);
      assert.equal(stats.decode.invalidRequests, decodeBad.length);
      assert.deepEqual(server.stats().classify.invalidRequests, stats.classify.invalidRequests);
    } finally {
      await server.close();
    }
  });
});
