/**
 * The KServe v2 / Open Inference Protocol routes (serve/kserve.ts) against the fake Classifier: spec-shaped
 * requests in, spec-shaped answers and errors out, and v2 requests batched with /v1 ones.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createServer, type CapsNetServer } from '../../../packages/capsnet/src/serve/server.ts';
import { FakeClassifier, getJson, postJson } from '../../support/serve.ts';

const image = (value: number) => new Array(784).fill(value);

describe('KServe v2 protocol', () => {
  const fake = new FakeClassifier();
  let server: CapsNetServer;
  let base: string;
  before(async () => {
    // A batch window wide enough that two requests sent together share a run even on a loaded 2-core machine
    // (25 ms was missed there once); every lone request waits it out, which costs this suite a few seconds.
    server = await createServer({ classifier: fake, maxBatch: 4, batchWaitMs: 250, modelName: 'digits' });
    base = await server.listen(0, '127.0.0.1');
  });
  after(async () => {
    await server.close();
  });

  test('server metadata, liveness and readiness', async () => {
    const meta = await getJson(base, '/v2');
    assert.equal(meta.status, 200);
    assert.equal(meta.json.name, 'capsnet-onnx');
    assert.match(meta.json.version, /^\d+\.\d+\.\d+/);
    assert.deepEqual(meta.json.extensions, []);
    assert.deepEqual((await getJson(base, '/v2/health/live')).json, { live: true });
    assert.deepEqual((await getJson(base, '/v2/health/ready')).json, { ready: true });
    const ready = await getJson(base, '/v2/models/digits/ready');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.json, { name: 'digits', ready: true });
    assert.equal((await getJson(base, '/v2/models/digits/versions/1/ready')).status, 200);
  });

  test('model metadata names the tensors with datatype and shape (-1: the batch)', async () => {
    const { status, json } = await getJson(base, '/v2/models/digits');
    assert.equal(status, 200);
    assert.deepEqual(json, {
      name: 'digits',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [{ name: 'images', datatype: 'FP32', shape: [-1, 28, 28, 1] }],
      outputs: [
        { name: 'lengths', datatype: 'FP32', shape: [-1, 10] },
        { name: 'capsules', datatype: 'FP32', shape: [-1, 10, 16] },
        { name: 'reconstruction', datatype: 'FP32', shape: [-1, 784] },
      ],
    });
    const decoder = await getJson(base, '/v2/models/digits_decoder/versions/1');
    assert.deepEqual(decoder.json.inputs, [{ name: 'masked_capsules', datatype: 'FP32', shape: [-1, 10, 16] }]);
    assert.deepEqual(decoder.json.outputs, [{ name: 'reconstruction', datatype: 'FP32', shape: [-1, 784] }]);
  });

  test('infer: flat data, outputs by name, id echoed', async () => {
    const request = {
      id: 'req-7',
      inputs: [{ name: 'images', shape: [2, 28, 28, 1], datatype: 'FP32', data: [...image(0), ...image(1)] }],
      outputs: [{ name: 'lengths' }, { name: 'capsules' }],
    };
    const { status, json } = await postJson(base, '/v2/models/digits/infer', request);
    assert.equal(status, 200, JSON.stringify(json));
    assert.equal(json.model_name, 'digits');
    assert.equal(json.model_version, '1');
    assert.equal(json.id, 'req-7');
    assert.deepEqual(
      json.outputs.map((o: { name: string }) => o.name),
      ['lengths', 'capsules'],
    );
    const [lengths, capsules] = json.outputs;
    assert.equal(lengths.datatype, 'FP32');
    assert.deepEqual(lengths.shape, [2, 10]);
    assert.equal(lengths.data.length, 20);
    // The fake labels an all-zero image 0 and an all-one image 9 (length 0.9, others 0.05).
    assert.equal(lengths.data[0], 0.9);
    assert.equal(lengths.data[10 + 9], 0.9);
    assert.deepEqual(capsules.shape, [2, 10, 16]);
    assert.equal(capsules.data.length, 320);
  });

  test('infer: nested data as the shape; no outputs named returns every output', async () => {
    const nested = [Array.from({ length: 28 }, () => Array.from({ length: 28 }, () => [0.5]))];
    const { status, json } = await postJson(base, '/v2/models/digits/versions/1/infer', {
      inputs: [{ name: 'images', shape: [1, 28, 28, 1], datatype: 'FP32', data: nested }],
    });
    assert.equal(status, 200, JSON.stringify(json));
    assert.equal(json.id, undefined);
    assert.deepEqual(
      json.outputs.map((o: { name: string; shape: number[] }) => [o.name, o.shape]),
      [
        ['lengths', [1, 10]],
        ['capsules', [1, 10, 16]],
        ['reconstruction', [1, 784]],
      ],
    );
    assert.ok(
      json.outputs[2].data.every((v: number) => v === 0.5),
      'the fake reconstructs its input',
    );
  });

  test('the decoder model runs masked capsules through the decode batcher', async () => {
    const before = fake.runs.filter((r) => r.kind === 'decode').length;
    const { status, json } = await postJson(base, '/v2/models/digits_decoder/infer', {
      inputs: [{ name: 'masked_capsules', shape: [1, 10, 16], datatype: 'FP32', data: new Array(160).fill(0.5) }],
    });
    assert.equal(status, 200, JSON.stringify(json));
    assert.deepEqual(json.outputs[0].shape, [1, 784]);
    assert.equal(json.outputs[0].data[0], 0.8); // fake decode: sum 80 / 100
    assert.equal(fake.runs.filter((r) => r.kind === 'decode').length, before + 1);
  });

  test('v2 and v1 requests arriving together share one inference run', async () => {
    fake.runs.length = 0;
    const v2 = postJson(base, '/v2/models/digits/infer', { inputs: [{ name: 'images', shape: [1, 28, 28, 1], datatype: 'FP32', data: image(0.2) }] });
    const v1 = postJson(base, '/v1/classify', { image: image(0.4) });
    const [a, b] = await Promise.all([v2, v1]);
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
    assert.deepEqual(fake.runs, [{ kind: 'classify', size: 2 }]);
  });

  test('errors are {"error": message} with 4xx statuses, naming the problem', async () => {
    const infer = (body: unknown, path = '/v2/models/digits/infer') => postJson(base, path, body);
    const good = { name: 'images', shape: [1, 28, 28, 1], datatype: 'FP32', data: image(0) };
    const cases: Array<[string, Promise<{ status: number; json: any }>, number, RegExp]> = [
      ['unknown model', infer({ inputs: [good] }, '/v2/models/nope/infer'), 404, /unknown model "nope"/],
      ['unknown version', getJson(base, '/v2/models/digits/versions/2'), 404, /no version "2"/],
      ['unknown route', getJson(base, '/v2/nothing'), 404, /no route GET \/v2\/nothing/],
      ['no inputs', infer({}), 400, /"inputs" must be a list of one tensor/],
      ['wrong input name', infer({ inputs: [{ ...good, name: 'x' }] }), 400, /unknown input "x".*its input is "images"/],
      ['wrong datatype', infer({ inputs: [{ ...good, datatype: 'INT64' }] }), 400, /datatype "INT64"; the model takes FP32/],
      ['wrong shape', infer({ inputs: [{ ...good, shape: [1, 784] }] }), 400, /shape \[1, 784\]; the model takes \[N, 28, 28, 1\]/],
      [
        'batch too large',
        infer({ inputs: [{ ...good, shape: [5, 28, 28, 1], data: new Array(5 * 784).fill(0) }] }),
        400,
        /batch of 5; the most in one request is 4/,
      ],
      ['too few values', infer({ inputs: [{ ...good, data: new Array(783).fill(0) }] }), 400, /783 values/],
      ['not finite', infer({ inputs: [{ ...good, data: [...new Array(783).fill(0), 'x'] }] }), 400, /finite numbers/],
      ['unknown output', infer({ inputs: [good], outputs: [{ name: 'coupling' }] }), 400, /unknown output\(s\) "coupling".*does not return it/],
      ['binary data', infer({ inputs: [{ ...good, parameters: { binary_data_size: 3136 } }] }), 400, /binary tensor data is not supported/],
      ['bad JSON', infer('{"inputs": ['), 400, /JSON/],
    ];
    for (const [what, response, status, message] of cases) {
      const { status: got, json } = await response;
      assert.equal(got, status, `${what}: ${JSON.stringify(json)}`);
      assert.equal(typeof json.error, 'string', `${what}: the error is a string: ${JSON.stringify(json)}`);
      assert.match(json.error, message, what);
    }
  });
});
