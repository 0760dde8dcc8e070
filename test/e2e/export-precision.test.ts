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
import { METADATA_KEYS, derivedSizes, readModelMetadata } from '@capsnet-onnx/core';
import { buildCapsNetModels } from '../../packages/capsnet/src/export/exporter.ts';
import { formatSummary, summarizeModel } from '../../packages/capsnet/src/export/inspect.ts';
import { DataType, encodeModel } from '../../packages/capsnet/src/export/onnx-schema.ts';
import {
  type ComputePrecision,
  computePrecisionFor,
  float16BitsToNumber,
  float32ToFloat16Bits,
  quantizeInt8PerChannel,
} from '../../packages/capsnet/src/export/precision.ts';
import { parseConfigText, writeTritonRepository } from '../../packages/capsnet/src/export/triton.ts';
import { loadCheckpoint, saveCheckpoint } from '../../packages/capsnet/src/files/checkpoint.ts';
import { loadMnistSample } from '../../packages/capsnet/src/data/datasets.ts';
import { FP16_COMPUTE_TOLERANCES } from '../../packages/capsnet/src/parity/matrix.ts';
import { CLI, ROOT, trainedSmallRun } from '../support/fixtures.ts';
import { inferredNodeTypes, pythonOnnxAvailable, runChecker } from '../support/onnx-checker.ts';
import { TINY_CONFIG, TINY_PROVENANCE, syntheticWeights } from '../support/tiny-model.ts';

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
  const build = (precision: 'fp32' | 'fp16' | 'int8', compute?: ComputePrecision) =>
    buildCapsNetModels(TINY_CONFIG, weights, { ...TINY_PROVENANCE, precision, compute });

  test('weights are stored as FLOAT16 / INT8 and widened by Cast / DequantizeLinear; metadata and inspect say so', () => {
    const fp16 = build('fp16', 'fp32').model;
    const int8 = build('int8').model;
    const types = (model: typeof fp16) => Object.fromEntries(model.graph.initializer!.map((t) => [t.name, t.data_type]));
    for (const name of ['conv1/kernel', 'primary/kernel', 'digit/W', 'decoder/dense0/kernel']) {
      assert.equal(types(fp16)[`${name}/fp16`], DataType.FLOAT16, name);
      assert.equal(types(int8)[`${name}/int8`], DataType.INT8, name);
      assert.equal(types(int8)[`${name}/scale`], DataType.FLOAT, name);
    }
    assert.equal(types(fp16)['conv1/bias'], DataType.FLOAT, 'biases stay float32 with float32 compute');
    const summary = summarizeModel(int8, encodeModel(int8).length);
    assert.equal(summary.precision, 'int8');
    assert.equal(summary.ops.DequantizeLinear, 6); // conv1, primary, W and the decoder's three dense kernels
    assert.equal(readModelMetadata(encodeModel(fp16)).precision, 'fp16');
    assert.equal(readModelMetadata(encodeModel(fp16)).computePrecision, 'fp32');
    assert.equal(readModelMetadata(encodeModel(build('fp32').model)).precision, 'fp32');
  });

  test("on ORT cpu the quantised graphs compute what the fp32 one does, within the precision's error", async () => {
    const c = TINY_CONFIG;
    const n = 6;
    const pixels = c.inputHeight * c.inputWidth * c.inputChannels;
    const images = Float32Array.from({ length: n * pixels }, (_, i) => ((i * 7919) % 101) / 100);
    const fp32 = await run(encodeModel(build('fp32').model), images, n);
    const fp16 = await run(encodeModel(build('fp16', 'fp32').model), images, n);
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
        const built = build(p, p === 'fp16' ? 'fp32' : undefined);
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

describe('fp16 compute (mixed precision)', () => {
  const weights = syntheticWeights(TINY_CONFIG, 5, (name) => (name === 'digit/W' ? 1 : 0.4));
  const build = (precision: 'fp32' | 'fp16' | 'int8', compute?: ComputePrecision) =>
    buildCapsNetModels(TINY_CONFIG, weights, { ...TINY_PROVENANCE, precision, compute });

  test('--compute: fp16 weights default to fp16 compute; fp32 and int8 weights refuse it in one line', () => {
    assert.equal(computePrecisionFor('fp16'), 'fp16');
    assert.equal(computePrecisionFor('fp16', 'fp32'), 'fp32');
    assert.equal(computePrecisionFor('fp32'), 'fp32');
    assert.equal(computePrecisionFor('int8'), 'fp32');
    assert.throws(
      () => computePrecisionFor('fp32', 'fp16'),
      /^Error: --compute applies to --precision fp16 only \(fp32 weights always compute in float32\): drop --compute, or add --precision fp16$/,
    );
    assert.throws(() => computePrecisionFor('int8', 'fp32'), /--compute applies to --precision fp16 only \(int8 weights/);
    assert.throws(() => computePrecisionFor('fp16', 'bf16'), /unknown compute precision "bf16": choose one of fp32, fp16/);
  });

  test('onnx shape inference: conv1, PrimaryCaps, u_hat and the decoder are float16; squash, routing, lengths and mask float32', (t) => {
    const missing = pythonOnnxAvailable();
    if (missing) {
      console.warn(`SKIP: ${missing}`);
      t.skip(missing);
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-fp16-compute-'));
    try {
      const half = build('fp16');
      const widened = build('fp16', 'fp32');
      const files = { model: join(dir, 'm.onnx'), decoder: join(dir, 'm.decoder.onnx'), widened: join(dir, 'w.onnx') };
      writeFileSync(files.model, encodeModel(half.model));
      writeFileSync(files.decoder, encodeModel(half.decoder));
      writeFileSync(files.widened, encodeModel(widened.model));
      const types = inferredNodeTypes(files.model);
      const layers = TINY_CONFIG.decoderHidden.length + 1;
      const halfNodes = [
        'conv1/Conv',
        'conv1/Relu',
        'primary/Conv',
        'digit/MatMul',
        ...Array.from({ length: layers }, (_, l) => [`decoder/dense${l}/MatMul`, `decoder/dense${l}/Add`]).flat(),
      ];
      for (const node of halfNodes) assert.equal(types[node], 'FLOAT16', node);
      const delicate = Object.keys(types).filter((n) => /squash\/|^routing\/|^lengths\/|^mask\//.test(n));
      assert.ok(delicate.length > 30, `${delicate.length} squash/routing/lengths/mask nodes`);
      for (const node of delicate) assert.notEqual(types[node], 'FLOAT16', node);
      assert.ok(delicate.some((n) => /Softmax$/.test(n) && types[n] === 'FLOAT'));
      assert.equal(types[`decoder/dense${layers - 1}/Sigmoid`], 'FLOAT', 'the sigmoid runs in float32');
      // Three half sections (conv1 + PrimaryCaps, u_hat, the decoder), each entered and left by a Cast; the
      // graph's inputs and outputs stay float32.
      const casts = (kind: string) =>
        Object.keys(types)
          .filter((n) => n.endsWith(`/${kind}`))
          .sort();
      assert.deepEqual(casts('ToHalf'), ['conv1/ToHalf', 'decoder/ToHalf', 'digit/ToHalf']);
      assert.deepEqual(casts('ToFloat'), ['decoder/dense2/ToFloat', 'digit/ToFloat', 'primary/ToFloat']);
      for (const v of [...half.model.graph.input, ...half.model.graph.output]) assert.equal(v.type?.tensor_type?.elem_type, DataType.FLOAT, v.name);
      const decoderTypes = inferredNodeTypes(files.decoder);
      assert.equal(decoderTypes['decoder/dense0/MatMul'], 'FLOAT16');
      assert.deepEqual(
        Object.entries(inferredNodeTypes(files.widened)).filter(([, v]) => v === 'FLOAT16'),
        [],
        '--compute fp32: no float16 node',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('metadata records the compute precision (fp32 for files without the key) and inspect shows it', () => {
    const half = build('fp16').model;
    assert.equal(readModelMetadata(encodeModel(half)).computePrecision, 'fp16');
    assert.equal(readModelMetadata(encodeModel(build('int8').model)).computePrecision, 'fp32');
    const older = { ...half, metadata_props: half.metadata_props!.filter((p) => p.key !== METADATA_KEYS.computePrecision) };
    assert.equal(readModelMetadata(encodeModel(older)).computePrecision, 'fp32');
    const summary = summarizeModel(half, encodeModel(half).length);
    assert.equal(summary.computePrecision, 'fp16');
    assert.ok(summary.nodeTypes.float16! >= 8 && summary.nodeTypes.float! > summary.nodeTypes.float16!, JSON.stringify(summary.nodeTypes));
    assert.match(
      formatSummary(summary),
      /^precision: fp16 weights \(float16 [\d.]+ KiB.*\); fp16 compute \(\d+ float nodes, \d+ float16 nodes\); inputs and outputs float32$/m,
    );
    assert.match(formatSummary(summarizeModel(build('fp16', 'fp32').model, 1)), /; fp32 compute \(\d+ float nodes\);/);
  });

  test('on a trained model, ORT cpu stays within the fp16-compute tolerance of the fp32 export, with the activations rounded to fp16 too', async () => {
    const run = await trainedSmallRun();
    const checkpoint = loadCheckpoint(run);
    const provenance = { ...TINY_PROVENANCE, classLabels: checkpoint.classLabels };
    const c = checkpoint.config;
    const digits = loadMnistSample().test;
    const n = 64;
    const pixels = c.inputHeight * c.inputWidth * c.inputChannels;
    const images = digits.images.slice(0, n * pixels);
    // ORT's CPU provider runs the half ops in float32 behind Casts it inserts; at its full optimisation level (the
    // runtime's) it also drops the fp32 -> fp16 -> fp32 Cast pairs between them, so only with optimisations off
    // are the activations really rounded to fp16 between ops: both are checked.
    const lengthsOf = async (precision: 'fp32' | 'fp16', compute?: ComputePrecision, level: 'all' | 'disabled' = 'all') => {
      const { model } = buildCapsNetModels(c, checkpoint.weights, { ...provenance, precision, compute });
      const session = await ort.InferenceSession.create(encodeModel(model), { executionProviders: ['cpu'], graphOptimizationLevel: level });
      const out = await session.run({ images: new ort.Tensor('float32', images, [n, c.inputHeight, c.inputWidth, c.inputChannels]) });
      await session.release();
      return out.lengths!.data as Float32Array;
    };
    const fp32 = await lengthsOf('fp32');
    const half = await lengthsOf('fp16');
    const rounded = await lengthsOf('fp16', undefined, 'disabled');
    const widened = await lengthsOf('fp16', 'fp32');
    const tol = FP16_COMPUTE_TOLERANCES;
    console.log(
      `fp16 compute vs fp32 on ${n} digits, max |length diff|: ORT cpu ${maxAbs(half, fp32).toExponential(2)}, ` +
        `activations rounded (optimisations off) ${maxAbs(rounded, fp32).toExponential(2)}; fp16 weights ` +
        `only ${maxAbs(widened, fp32).toExponential(2)}; tolerance ${tol.lengths}`,
    );
    assert.ok(maxAbs(rounded, half) > 0, 'with optimisations off the activations really are rounded to fp16');
    const K = c.numClasses;
    const argmax = (a: Float32Array, i: number) => Array.from(a.subarray(i * K, (i + 1) * K)).reduce((best, v, k, all) => (v > all[best]! ? k : best), 0);
    for (const [name, lengths] of [
      ['ORT cpu', half],
      ['rounded', rounded],
    ] as const) {
      assert.ok(maxAbs(lengths, fp32) <= tol.lengths, `${name}: lengths differ by ${maxAbs(lengths, fp32)}`);
      for (let i = 0; i < n; i++) {
        const sorted = Array.from(fp32.subarray(i * K, (i + 1) * K)).sort((a, b) => b - a);
        if (sorted[0]! - sorted[1]! < tol.tieGap) continue; // a near-tie may flip
        assert.equal(argmax(lengths, i), argmax(fp32, i), `${name}: digit ${i}`);
      }
    }
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
    const written = writeTritonRepository(
      { dir: repo, name: 'tiny', maxBatchSize: 8, maxQueueDelayUs: 500, instanceKind: 'gpu', instanceCount: 2 },
      TINY_CONFIG,
      TINY_PROVENANCE.classLabels,
      bytes,
      'test export',
    );
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
      version_policy: { specific: { versions: [1] } },
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
    assert.throws(
      () => writeTritonRepository({ dir: repo }, TINY_CONFIG, TINY_PROVENANCE.classLabels, bytes, 'second'),
      (e: Error) =>
        e.name === 'OutputExistsError' && /capsnet already exists: pass overwrite: true to replace it, or choose another triton\.name/.test(e.message),
    );
    assert.equal(readFileSync(join(repo, 'capsnet', 'config.pbtxt'), 'utf8'), before);
    writeTritonRepository({ dir: repo, overwrite: true }, TINY_CONFIG, TINY_PROVENANCE.classLabels, bytes, 'third');
    assert.match(readFileSync(join(repo, 'capsnet', 'config.pbtxt'), 'utf8'), /^# third/);
    assert.deepEqual(readdirSync(repo).sort(), ['capsnet', 'capsnet_decoder'], 'the replaced folders are gone, no temp folder');
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    assert.throws(() => writeTritonRepository({ dir: file }, TINY_CONFIG, [], bytes, ''), /is a file: give a directory/);
    assert.throws(() => writeTritonRepository({ dir: join(dir, 'r'), name: '../up' }, TINY_CONFIG, [], bytes, ''), /must be letters, digits/);
    assert.ok(!existsSync(join(dir, 'r')));
    assert.deepEqual(
      readdirSync(repo).filter((f) => f.startsWith('.tmp')),
      [],
    );
  });
});

describe('capsnet export --precision / --triton (CLI)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsnet-precision-cli-'));
    mkdirSync(join(dir, 'run'));
    saveCheckpoint(join(dir, 'run'), {
      config: TINY_CONFIG,
      epoch: 1,
      step: 1,
      seed: 1,
      run: { batchSize: 8 },
      dataset: 'mnist-sample',
      classLabels: TINY_PROVENANCE.classLabels,
      backend: 'cpu',
      metrics: [],
      weights: syntheticWeights(TINY_CONFIG, 4, () => 0.2),
      optimizer: { m: {}, v: {} },
    });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const cli = (...args: string[]) => execa('node', [CLI, ...args], { cwd: ROOT, reject: false });

  test('--compute: fp16 by default with --precision fp16, fp32 on request, a one-line error with fp32 or int8 weights', async () => {
    for (const [args, expected] of [
      [[], 'fp16'],
      [['--compute', 'fp32'], 'fp32'],
    ] as const) {
      const out = join(dir, `m.${expected}.onnx`);
      const exported = await cli('export', join(dir, 'run'), '--precision', 'fp16', ...args, '-o', out, '--json');
      assert.equal(exported.exitCode, 0, exported.stderr);
      assert.equal(JSON.parse(exported.stdout).computePrecision, expected);
      const inspect = await cli('inspect', out);
      assert.match(inspect.stdout, new RegExp(`^precision: fp16 weights .*; ${expected} compute \\(`, 'm'));
      assert.match(inspect.stdout, new RegExp(`^  capsnet\\.compute_precision: ${expected}$`, 'm'));
    }
    for (const args of [
      ['--compute', 'fp16'],
      ['--precision', 'int8', '--compute', 'fp32'],
    ]) {
      const refused = await cli('export', join(dir, 'run'), ...args, '-o', join(dir, 'refused.onnx'));
      assert.equal(refused.exitCode, 1, args.join(' '));
      assert.match(
        refused.stderr,
        /^capsnet: --compute applies to --precision fp16 only \((fp32|int8) weights always compute in float32\): drop --compute, or add --precision fp16$/m,
      );
      assert.doesNotMatch(refused.stderr, /\n\s+at /, 'one line, no stack');
      assert.ok(!existsSync(join(dir, 'refused.onnx')), 'nothing written');
    }
    const bad = await cli('export', join(dir, 'run'), '--precision', 'fp16', '--compute', 'bf16');
    assert.equal(bad.exitCode, 1);
    assert.match(bad.stderr, /option '--compute <p>' argument 'bf16' is invalid\. Allowed choices are fp32, fp16/);
  });

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
