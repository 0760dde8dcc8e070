/**
 * fp16 and int8 exports (export/precision.ts) and the Triton model repository (export/triton.ts): the number
 * conversions on values built so the right answer is known exactly, the stored graphs on ONNX Runtime's CPU
 * provider against the fp32 export, and config.pbtxt parsed back with protobufjs's text-format parser.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { execa } from 'execa';
import { derivedSizes, readModelMetadata } from '@capsnet-onnx/core';
import { buildCapsNetModels } from '../packages/capsnet/src/export/exporter.ts';
import { summarizeModel } from '../packages/capsnet/src/export/inspect.ts';
import { DataType, encodeModel } from '../packages/capsnet/src/export/onnx-schema.ts';
import { float16BitsToNumber, float32ToFloat16Bits, quantizeInt8PerChannel } from '../packages/capsnet/src/export/precision.ts';
import { parseConfigText, writeTritonRepository } from '../packages/capsnet/src/export/triton.ts';
import { saveCheckpoint } from '../packages/capsnet/src/files/checkpoint.ts';
import { CLI, ROOT } from './support/fixtures.ts';
import { pythonOnnxAvailable, runChecker } from './support/onnx-checker.ts';
import { TINY_CONFIG, TINY_PROVENANCE, syntheticWeights } from './support/tiny-model.ts';

describe('fp16 conversion', () => {
  test('exact values stay exact; halfway cases round to even; range ends', () => {
    // Values with at most 11 significant bits inside half's range are exact.
    for (const v of [0, 1, -2, 0.5, 1.5, 65504, -65504, 2 ** -14, 2 ** -24, 1023 * 2 ** -24, 1 + 2 ** -10]) {
      assert.equal(float16BitsToNumber(float32ToFloat16Bits(v)), v, `${v}`);
    }
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1); 1 + 3*2^-11 goes up.
    assert.equal(float16BitsToNumber(float32ToFloat16Bits(1 + 2 ** -11)), 1);
    assert.equal(float16BitsToNumber(float32ToFloat16Bits(1 + 3 * 2 ** -11)), 1 + 2 * 2 ** -10);
    assert.equal(float16BitsToNumber(float32ToFloat16Bits(3 * 2 ** -25)), 2 * 2 ** -24); // subnormal tie -> even
    assert.equal(float16BitsToNumber(float32ToFloat16Bits(2 ** -26)), 0);
    assert.equal(float16BitsToNumber(float32ToFloat16Bits(70000)), Infinity);
    assert.equal(float32ToFloat16Bits(-0), 0x8000);
    assert.ok(Number.isNaN(float16BitsToNumber(float32ToFloat16Bits(Number.NaN))));
  });
});

describe('int8 per-channel quantisation', () => {
  test('each channel scales its largest magnitude to 127; zero channels stay zero', () => {
    // [2 channels, 3] along axis 0, and the same data seen per column (axis 1).
    const data = Float32Array.from([1.27, -0.64, 0, 0, 0, 0]);
    const rows = quantizeInt8PerChannel(data, [2, 3], 0);
    assert.deepEqual([...rows.values], [127, -64, 0, 0, 0, 0]);
    assert.ok(Math.abs(rows.scales[0]! - 0.01) < 1e-9);
    assert.equal(rows.scales[1], 1);
    const cols = quantizeInt8PerChannel(data, [2, 3], 1);
    assert.deepEqual([...cols.values], [127, -127, 0, 0, 0, 0]);
    assert.equal(cols.scales.length, 3);
  });
});

async function run(bytes: Uint8Array, images: Float32Array, n: number) {
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'] });
  const c = TINY_CONFIG;
  const out = await session.run({ images: new ort.Tensor('float32', images, [n, c.inputHeight, c.inputWidth, c.inputChannels]) });
  await session.release();
  return { lengths: out.lengths!.data as Float32Array, reconstruction: out.reconstruction!.data as Float32Array };
}

const maxAbs = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

describe('fp16 and int8 exports', () => {
  const weights = syntheticWeights(TINY_CONFIG, 1, (name) => (name === 'digit/W' ? 1 : 0.4));
  const build = (precision: 'fp32' | 'fp16' | 'int8') => buildCapsNetModels(TINY_CONFIG, weights, { ...TINY_PROVENANCE, precision });

  test('weights are stored as FLOAT16 / INT8 and widened by Cast / DequantizeLinear; metadata and inspect say so', () => {
    const fp16 = build('fp16').model;
    const int8 = build('int8').model;
    const types = (model: typeof fp16) => Object.fromEntries(model.graph.initializer!.map((t) => [t.name, t.data_type]));
    for (const name of ['conv1/kernel', 'primary/kernel', 'digit/W', 'decoder/dense0/kernel']) {
      assert.equal(types(fp16)[`${name}/fp16`], DataType.FLOAT16, name);
      assert.equal(types(int8)[`${name}/int8`], DataType.INT8, name);
      assert.equal(types(int8)[`${name}/scale`], DataType.FLOAT, name);
    }
    assert.equal(types(fp16)['conv1/bias'], DataType.FLOAT, 'biases stay float32');
    const summary = summarizeModel(int8, encodeModel(int8).length);
    assert.equal(summary.precision, 'int8');
    assert.equal(summary.ops.DequantizeLinear, 6); // conv1, primary, W and the decoder's three dense kernels
    assert.equal(readModelMetadata(encodeModel(fp16)).precision, 'fp16');
    assert.equal(readModelMetadata(encodeModel(build('fp32').model)).precision, 'fp32');
  });

  test('on ORT cpu the quantised graphs compute what the fp32 one does, within the precision\'s error', async () => {
    const c = TINY_CONFIG;
    const n = 6;
    const pixels = c.inputHeight * c.inputWidth * c.inputChannels;
    const images = Float32Array.from({ length: n * pixels }, (_, i) => ((i * 7919) % 101) / 100);
    const fp32 = await run(encodeModel(build('fp32').model), images, n);
    const fp16 = await run(encodeModel(build('fp16').model), images, n);
    const int8 = await run(encodeModel(build('int8').model), images, n);
    const scale = Math.max(...fp32.lengths);
    // fp16 keeps 11 significant bits (relative error 2^-11 per weight); int8 keeps ~7.
    assert.ok(maxAbs(fp16.lengths, fp32.lengths) < 2e-3 * scale, `fp16 lengths differ by ${maxAbs(fp16.lengths, fp32.lengths)}`);
    assert.ok(maxAbs(int8.lengths, fp32.lengths) < 5e-2 * scale, `int8 lengths differ by ${maxAbs(int8.lengths, fp32.lengths)}`);
    assert.ok(maxAbs(fp16.lengths, fp32.lengths) > 0, 'fp16 rounding changes the result a little (the weights really are fp16)');
    assert.ok(maxAbs(int8.lengths, fp32.lengths) > maxAbs(fp16.lengths, fp32.lengths), 'int8 is coarser than fp16');
  });

  test('onnx.checker (full check, strict shape inference) accepts the fp16 and int8 models and decoders', (t) => {
    const missing = pythonOnnxAvailable();
    if (missing) {
      console.warn(`SKIP: ${missing}`);
      t.skip(missing);
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-precision-check-'));
    try {
      const files = (['fp16', 'int8'] as const).flatMap((p) => {
        const built = build(p);
        const pair = [join(dir, `${p}.onnx`), join(dir, `${p}.decoder.onnx`)];
        writeFileSync(pair[0]!, encodeModel(built.model));
        writeFileSync(pair[1]!, encodeModel(built.decoder));
        return pair;
      });
      const results = runChecker(...files);
      assert.equal(results.length, 4);
      for (const r of results) assert.ok(r.ok, JSON.stringify(r));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('file sizes: fp16 about half, int8 about a quarter of fp32', () => {
    const size = (p: 'fp32' | 'fp16' | 'int8') => encodeModel(build(p).model).length;
    // The tiny model's fixed overhead (graph, metadata) is large next to its weights, so the bounds are loose;
    // the real ratios are in the precision benchmark (bench/precision.ts).
    assert.ok(size('fp16') < 0.8 * size('fp32'), `${size('fp16')} vs ${size('fp32')}`);
    assert.ok(size('int8') < size('fp16'), `${size('int8')} vs ${size('fp16')}`);
  });
});

describe('Triton model repository', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsnet-triton-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const weights = syntheticWeights(TINY_CONFIG, 2, () => 0.3);
  const built = buildCapsNetModels(TINY_CONFIG, weights, TINY_PROVENANCE);
  const bytes = { model: encodeModel(built.model), decoder: encodeModel(built.decoder) };

  test('config.pbtxt parses as ModelConfig text format with the inputs, outputs, dims, batching and instances written', () => {
    const repo = join(dir, 'repo');
    const written = writeTritonRepository({ dir: repo, name: 'tiny', maxBatchSize: 8, maxQueueDelayUs: 500, instanceKind: 'gpu', instanceCount: 2 },
      TINY_CONFIG, TINY_PROVENANCE.classLabels, bytes, 'test export');
    assert.deepEqual(readdirSync(repo).sort(), ['tiny', 'tiny_decoder']);
    assert.deepEqual(readFileSync(join(repo, 'tiny', '1', 'model.onnx')), Buffer.from(bytes.model));
    assert.deepEqual(readFileSync(join(repo, 'tiny_decoder', '1', 'model.onnx')), Buffer.from(bytes.decoder));
    assert.equal(readFileSync(join(repo, 'tiny', 'labels.txt'), 'utf8'), 'class0\nclass1\nclass2\nclass3\n');
    assert.equal(written.files.length, 5);

    const text = readFileSync(join(repo, 'tiny', 'config.pbtxt'), 'utf8');
    assert.match(text, /^# test export\n/);
    const c = TINY_CONFIG;
    const I = derivedSizes(c).numPrimaryCaps;
    assert.deepEqual(parseConfigText(text), {
      name: 'tiny',
      platform: 'onnxruntime_onnx',
      backend: 'onnxruntime',
      max_batch_size: 8,
      input: [{ name: 'images', data_type: 'TYPE_FP32', dims: [12, 10, 1] }],
      output: [
        { name: 'lengths', data_type: 'TYPE_FP32', dims: [4], label_filename: 'labels.txt' },
        { name: 'capsules', data_type: 'TYPE_FP32', dims: [4, 6] },
        { name: 'reconstruction', data_type: 'TYPE_FP32', dims: [120] },
        { name: 'coupling', data_type: 'TYPE_FP32', dims: [I, 4] },
      ],
      instance_group: [{ count: 2, kind: 'KIND_GPU' }],
      dynamic_batching: { max_queue_delay_microseconds: 500 },
    });
    const decoder = parseConfigText(readFileSync(join(repo, 'tiny_decoder', 'config.pbtxt'), 'utf8'));
    assert.equal(decoder.name, 'tiny_decoder');
    assert.deepEqual(decoder.input, [{ name: 'masked_capsules', data_type: 'TYPE_FP32', dims: [4, 6] }]);
    assert.deepEqual(decoder.output, [{ name: 'reconstruction', data_type: 'TYPE_FP32', dims: [120] }]);
  });

  test('the text parser rejects fields ModelConfig does not have', () => {
    assert.throws(() => parseConfigText('name: "x"\nmax_batch: 4\n'), /max_batch/);
  });

  test('an existing model folder is replaced only with overwrite, and a failed write leaves nothing', () => {
    const repo = join(dir, 'again');
    writeTritonRepository({ dir: repo }, TINY_CONFIG, TINY_PROVENANCE.classLabels, bytes, 'first');
    const before = readFileSync(join(repo, 'capsnet', 'config.pbtxt'), 'utf8');
    assert.throws(() => writeTritonRepository({ dir: repo }, TINY_CONFIG, TINY_PROVENANCE.classLabels, bytes, 'second'),
      (e: Error) => e.name === 'OutputExistsError' && /capsnet already exists: pass overwrite: true to replace it, or choose another triton\.name/.test(e.message));
    assert.equal(readFileSync(join(repo, 'capsnet', 'config.pbtxt'), 'utf8'), before);
    writeTritonRepository({ dir: repo, overwrite: true }, TINY_CONFIG, TINY_PROVENANCE.classLabels, bytes, 'third');
    assert.match(readFileSync(join(repo, 'capsnet', 'config.pbtxt'), 'utf8'), /^# third/);
    assert.deepEqual(readdirSync(repo).sort(), ['capsnet', 'capsnet_decoder'], 'the replaced folders are gone, no temp folder');
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    assert.throws(() => writeTritonRepository({ dir: file }, TINY_CONFIG, [], bytes, ''), /is a file: give a directory/);
    assert.throws(() => writeTritonRepository({ dir: join(dir, 'r'), name: '../up' }, TINY_CONFIG, [], bytes, ''), /must be letters, digits/);
    assert.ok(!existsSync(join(dir, 'r')));
    assert.deepEqual(readdirSync(repo).filter((f) => f.startsWith('.tmp')), []);
  });
});

describe('capsnet export --precision / --triton (CLI)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsnet-precision-cli-'));
    mkdirSync(join(dir, 'run'));
    saveCheckpoint(join(dir, 'run'), {
      config: TINY_CONFIG, epoch: 1, step: 1, seed: 1, run: { batchSize: 8 }, dataset: 'mnist-sample', classLabels: TINY_PROVENANCE.classLabels,
      backend: 'cpu', metrics: [], weights: syntheticWeights(TINY_CONFIG, 4, () => 0.2), optimizer: { m: {}, v: {} },
    });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const cli = (...args: string[]) => execa('node', [CLI, ...args], { cwd: ROOT, reject: false });

  test('int8 to a Triton repository only; inspect reads the precision; a second export refuses to overwrite', async () => {
    const repo = join(dir, 'models');
    const first = await cli('export', join(dir, 'run'), '--precision', 'int8', '--triton', repo, '--instance-kind', 'cpu', '--json');
    assert.equal(first.exitCode, 0, first.stderr);
    const summary = JSON.parse(first.stdout);
    assert.equal(summary.precision, 'int8');
    assert.equal(summary.model, undefined, 'no -o: only the repository is written');
    assert.ok(!existsSync(join(dir, 'run', 'model.onnx')));
    assert.deepEqual(parseConfigText(readFileSync(join(repo, 'capsnet', 'config.pbtxt'), 'utf8')).instance_group, [{ count: 1, kind: 'KIND_CPU' }]);
    const inspect = await cli('inspect', join(repo, 'capsnet', '1', 'model.onnx'));
    assert.equal(inspect.exitCode, 0, inspect.stderr);
    assert.match(inspect.stdout, /precision: int8 weights \(int8 [\d.]+ KiB, float/);
    const again = await cli('export', join(dir, 'run'), '--triton', repo);
    assert.equal(again.exitCode, 1);
    assert.match(again.stderr, /^capsnet: .*capsnet already exists: pass --overwrite to replace it, or choose another --triton-name or --triton directory$/m);
    assert.doesNotMatch(again.stderr, /\n\s+at /, 'one line, no stack');
    const replaced = await cli('export', join(dir, 'run'), '--triton', repo, '--overwrite');
    assert.equal(replaced.exitCode, 0, replaced.stderr);
    assert.match(readFileSync(join(repo, 'capsnet', 'config.pbtxt'), 'utf8'), /fp32 weights/);
  });
});
