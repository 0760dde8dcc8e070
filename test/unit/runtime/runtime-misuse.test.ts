/**
 * Issue 20, the runtime's share of the sweep ("found in public reports against peers", and the rough kinds): calls
 * after dispose(), a sparse capsule array, detached buffers, a file whose metadata a graph tool stripped, and
 * ONNX Runtime's multi-line run errors. Each is one line naming the problem and the fix; ORT's text is the cause.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CapsNet, ClassifierDisposedError, InputError, ModelFormatError, type Classifier } from '@capsnet-onnx/runtime/node';
import { METADATA_KEYS, readModelMetadata } from '@capsnet-onnx/core';
import { TINY_CONFIG, tinyModel } from '../../support/tiny-model.ts';

const { inputHeight: H, inputWidth: W, inputChannels: C, numClasses: K, digitDim: D } = TINY_CONFIG;
const PIXELS = H * W * C;
const oneLine = (e: unknown) => !String((e as Error).message).includes('\n');

/** A view whose ArrayBuffer has been transferred away (what postMessage(x, [x.buffer]) leaves behind). */
function detached<T extends Float32Array>(view: T): T {
  structuredClone(view.buffer, { transfer: [view.buffer as ArrayBuffer] });
  return view;
}

describe('runtime misuse (tiny CapsNet, onnxruntime-node cpu)', () => {
  const tiny = tinyModel();
  let model: Classifier;
  before(async () => {
    model = await CapsNet.load(tiny.model, { decoder: tiny.decoder, device: 'cpu', threads: 1 });
  });
  after(async () => {
    await model.dispose();
  });

  test('decode([ , capsules]) is refused like classify refuses a sparse array (it decoded the hole as zeros)', async () => {
    const sparse = [, new Float32Array(K * D)] as unknown as Float32Array[];
    await assert.rejects(model.decode(sparse), (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.match((e as Error).message, /^capsules is a sparse array \(index 0 is empty\): pass one Float32Array per example$/);
      return true;
    });
    await assert.rejects(model.classify([, new Float32Array(PIXELS)] as unknown as Float32Array[]), /sparse array \(index 0 is empty\)/);
  });

  test('a detached buffer is named as such, not "empty batch"', async () => {
    for (const call of [
      () => model.classify(detached(new Float32Array(PIXELS))),
      () => model.classify([detached(new Float32Array(PIXELS))]),
      () => model.decode(detached(new Float32Array(K * D))),
      () => model.decode([detached(new Float32Array(K * D))]),
    ]) {
      await assert.rejects(call(), (e: unknown) => {
        assert.ok(e instanceof InputError);
        assert.match((e as Error).message, /ArrayBuffer is detached .*: pass a copy made before the transfer/);
        assert.doesNotMatch((e as Error).message, /empty batch/);
        return true;
      });
    }
    // A genuinely empty input still says "empty batch".
    await assert.rejects(model.classify(new Float32Array(0)), /empty batch/);
  });

  test('classify and decode after dispose() are one line naming the fix (they were ORT\'s "invalid session id" and a TypeError)', async () => {
    const short = await CapsNet.load(tiny.model, { decoder: tiny.decoder, device: 'cpu', threads: 1 });
    await short.classify(new Float32Array(PIXELS));
    await short.dispose();
    await short.dispose(); // twice is fine
    for (const [name, call] of [
      ['classify', () => short.classify(new Float32Array(PIXELS))],
      ['decode', () => short.decode(new Float32Array(K * D))],
    ] as const) {
      await assert.rejects(call(), (e: unknown) => {
        assert.ok(e instanceof ClassifierDisposedError, String(e));
        assert.equal(
          (e as Error).message,
          `${name}() was called after dispose(): this classifier has released its model; load it again with CapsNet.load(...)`,
        );
        return true;
      });
    }
  });

  test("ONNX Runtime's multi-line shape error is one line naming the input, its shape and the fix, ORT's text kept as the cause", async () => {
    // Metadata that claims 14 rows for a graph built for 12: the runtime feeds [1, 14, 10, 1] and ORT refuses it.
    const liar = tinyModel({ [METADATA_KEYS.config]: JSON.stringify({ ...TINY_CONFIG, inputHeight: H + 2 }) });
    const wrong = await CapsNet.load(liar.model, { decoder: liar.decoder, device: 'cpu', threads: 1 });
    try {
      await assert.rejects(wrong.classify(new Float32Array((H + 2) * W * C)), (e: unknown) => {
        assert.ok(e instanceof ModelFormatError, String(e));
        assert.ok(oneLine(e), (e as Error).message);
        assert.match(
          (e as Error).message,
          new RegExp(
            `^classify: ONNX Runtime could not run the model on "images" \\[1, ${H + 2}, ${W}, ${C}\\] \\(.*dimensions.*\\): ` +
              'the graph does not take the shape its metadata promises; re-export it',
          ),
        );
        assert.match(String(((e as Error).cause as Error).message), /\n/); // ORT's own text, several lines
        return true;
      });
    } finally {
      await wrong.dispose();
    }
  });
});

describe('a CapsNet export whose metadata a graph tool stripped', () => {
  test('is named as ours with its metadata missing, not "not a CapsNet export"', async () => {
    const keys = Object.fromEntries(Object.values(METADATA_KEYS).map((k) => [k, undefined]));
    const stripped = tinyModel(keys);
    const message = new RegExp(
      /^the ONNX file was written by capsnet-onnx [^ ]+ but its CapsNet metadata \("capsnet\.config"\)/.source +
        / is missing \(it has no metadata_props at all\): a graph tool .* dropped it; .*export again with `capsnet export`$/.source,
    );
    assert.throws(
      () => readModelMetadata(stripped.model),
      (e: unknown) => e instanceof ModelFormatError && message.test((e as Error).message),
    );
    await assert.rejects(
      CapsNet.load(stripped.model, { decoder: stripped.decoder, device: 'cpu' }),
      (e: unknown) => e instanceof ModelFormatError && message.test((e as Error).message),
    );
  });

  test('a file from another producer without our metadata is still "not a CapsNet export"', () => {
    const keys = Object.fromEntries(Object.values(METADATA_KEYS).map((k) => [k, undefined]));
    const { model } = tinyModel(keys);
    const foreign = replaceProducer(model, 'pytorch');
    assert.throws(() => readModelMetadata(foreign), /so it is not a CapsNet export/);
  });
});

/** The same ModelProto with another producer_name (field 2, length-delimited, before the graph). */
function replaceProducer(bytes: Uint8Array, producer: string): Uint8Array {
  // Field 2 is written right after ir_version (field 1, a varint) by the exporter's schema.
  assert.equal(bytes[0], 0x08);
  let pos = 1;
  while (bytes[pos]! & 0x80) pos++;
  pos++;
  assert.equal(bytes[pos], 0x12);
  const length = bytes[pos + 1]!;
  const name = new TextEncoder().encode(producer);
  return Uint8Array.from([...bytes.subarray(0, pos), 0x12, name.length, ...name, ...bytes.subarray(pos + 2 + length)]);
}
