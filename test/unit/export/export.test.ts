/**
 * Exporter: schema round trip, graph structure, the reference ONNX checker, ONNX Runtime vs tfjs on a tiny
 * model, argmax ties, the decoder file, the CLI (export, inspect, errors) and the paper-size model's file size.
 * Trained-checkpoint parity is in export-parity.test.ts, WebGPU placement in export-webgpu.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import * as ort from 'onnxruntime-node';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { type CapsNetConfig, derivedSizes, paperConfig, paramShapes, decoderPathFor } from '@capsnet-onnx/core';
import { loadCheckpoint, saveCheckpoint } from '../../../packages/capsnet/src/files/checkpoint.ts';
import { pythonOnnxAvailable, runChecker } from '../../support/onnx-checker.ts';
import { type CapsNetParams, forward, initParams } from '../../../packages/capsnet/src/model/capsnet.ts';
import { METADATA_KEYS, readModelMetadata } from '@capsnet-onnx/runtime/node';
import { buildCapsNetModels, exportCheckpoint } from '../../../packages/capsnet/src/export/exporter.ts';
import { DataType, type ModelProto, type NodeProto, decodeModel, encodeModel } from '../../../packages/capsnet/src/export/onnx-schema.ts';
import { GraphBuilder, buildModel } from '../../../packages/capsnet/src/export/graph-builder.ts';
import { maskLongestCapsule } from '../../../packages/capsnet/src/export/capsnet-graph.ts';
import { inspectFile } from '../../../packages/capsnet/src/export/inspect.ts';
import { cpuComputeNodes, parseNodePlacements } from '../../../packages/capsnet/src/export/placement.ts';
import { TOLERANCES } from '../../../packages/capsnet/src/parity/matrix.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';
import { syntheticWeights, SQUARE_CONFIG } from '../../support/tiny-model.ts';

const tiny = SQUARE_CONFIG;
const LABELS = ['zero', 'one', 'two', 'three'];

/** tfjs params from initParams, with digit/W scaled up so capsule lengths are well apart (clear argmax). */
function tinyParams(config: CapsNetConfig, seed: number, wScale = 30) {
  const params = initParams(config, seed);
  params['digit/W']!.assign(tf.mul(params['digit/W']!, wScale));
  const weights: Record<string, Float32Array> = {};
  for (const [name, v] of Object.entries(params)) weights[name] = v.dataSync() as Float32Array;
  return { params, weights };
}

function randomImages(n: number, config: CapsNetConfig, seed: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length: n * derivedSizes(config).pixels }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  });
}

/** model/capsnet.ts forward on the tiny config, keeping the four outputs the ONNX model has. */
function tfForward(params: CapsNetParams, images: Float32Array, n: number) {
  const [lengths, capsules, reconstruction, coupling] = tf.tidy(() => {
    const out = forward(params, tf.tensor4d(images, [n, tiny.inputHeight, tiny.inputWidth, tiny.inputChannels]), tiny);
    return [out.lengths, out.capsules, out.reconstruction, out.coupling];
  });
  return { lengths: lengths!, capsules: capsules!, reconstruction: reconstruction!, coupling: coupling! };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length mismatch');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function argmaxRows(data: ArrayLike<number>, cols: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < data.length / cols; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (data[r * cols + c]! > data[r * cols + best]!) best = c;
    out.push(best);
  }
  return out;
}

/**
 * Rows whose argmax differs between two kernels' outputs, leaving out rows where the reference's two longest
 * capsules are closer than the kernels' float32 disagreement (summation order differs between CPUs): a flip there
 * is rounding, not a wrong graph.
 */
function argmaxMismatches(got: ArrayLike<number>, ref: ArrayLike<number>, cols: number, tieGap = TOLERANCES.tieGap): number[] {
  const a = argmaxRows(got, cols);
  const b = argmaxRows(ref, cols);
  return a.flatMap((label, r) => {
    if (label === b[r]) return [];
    const row = Array.from({ length: cols }, (_, c) => ref[r * cols + c]!).sort((x, y) => y - x);
    return row[0]! - row[1]! < tieGap ? [] : [r];
  });
}

let dir: string;
before(async () => {
  await tf.setBackend('cpu');
  dir = mkdtempSync(join(tmpdir(), 'capsnet-export-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const provenance = {
  classLabels: LABELS,
  dataset: 'unit-test',
  testAccuracy: 0.5,
  checkpointSha256: 'f'.repeat(64),
  exportedAt: new Date('2024-01-02T03:04:05Z'),
};

describe('ONNX schema and graph', () => {
  const { weights } = tinyParams(tiny, 1);
  const { model, decoder } = buildCapsNetModels(tiny, weights, provenance);

  test('decoding the written bytes gives back every node, initializer and metadata entry', () => {
    for (const original of [model, decoder]) {
      const back = decodeModel(encodeModel(original));
      assert.equal(back.ir_version, original.ir_version);
      assert.deepEqual(back.opset_import, original.opset_import);
      assert.equal(back.producer_name, original.producer_name);
      assert.equal(back.producer_version, original.producer_version);
      assert.equal(back.graph.name, original.graph.name);
      assert.equal(back.graph.doc_string, original.graph.doc_string);
      assert.equal(back.graph.node.length, original.graph.node.length);
      const norm = (n: NodeProto) => ({
        name: n.name,
        op_type: n.op_type,
        input: n.input,
        output: n.output,
        attribute: (n.attribute ?? []).map((a) => ({ name: a.name, type: a.type, f: a.f, i: a.i, ints: a.ints ?? [], floats: a.floats ?? [] })),
      });
      original.graph.node.forEach((n, k) => assert.deepEqual(norm(back.graph.node[k]!), norm(n), `node ${n.name}`));
      assert.equal(back.graph.initializer!.length, original.graph.initializer!.length);
      original.graph.initializer!.forEach((t, k) => {
        const b = back.graph.initializer![k]!;
        assert.equal(b.name, t.name);
        assert.deepEqual(b.dims, t.dims);
        assert.equal(b.data_type, t.data_type);
        assert.ok(Buffer.from(b.raw_data!).equals(Buffer.from(t.raw_data!)), `initializer ${t.name} bytes`);
      });
      assert.deepEqual(back.metadata_props, original.metadata_props);
      for (const side of ['input', 'output'] as const) {
        assert.deepEqual(
          back.graph[side].map((v) => [v.name, v.doc_string, v.type]),
          original.graph[side].map((v) => [v.name, v.doc_string, v.type]),
        );
      }
    }
  });

  test('ops: opset 17, routing unrolled, float-only compute, int64 only as shape/axes constants', () => {
    assert.equal(model.ir_version, 8);
    assert.deepEqual(model.opset_import, [{ domain: '', version: 17 }]);
    const ops = new Set(model.graph.node.map((n) => n.op_type));
    for (const banned of ['Loop', 'If', 'Scan', 'ArgMax', 'OneHot', 'Equal', 'Shape', 'Gather', 'Expand', 'ConstantOfShape', 'Tile']) {
      assert.ok(!ops.has(banned), `${banned} must not appear`);
    }
    assert.equal(model.graph.node.filter((n) => n.op_type === 'Softmax').length, tiny.routing.iterations);
    const int64 = new Set(model.graph.initializer!.filter((t) => t.data_type === DataType.INT64).map((t) => t.name));
    for (const node of model.graph.node) {
      node.input.forEach((input, k) => {
        if (int64.has(input!)) assert.ok(['Reshape', 'Unsqueeze', 'ReduceSum'].includes(node.op_type) && k === 1, `${node.name} reads int64 ${input}`);
      });
      if (node.op_type === 'Cast')
        assert.deepEqual(
          node.attribute?.map((a) => [a.name, a.i]),
          [['to', DataType.FLOAT]],
        );
    }
  });

  test('weights are stored once, with the checkpoint names, transposed to OIHW for Conv', () => {
    const shapes = paramShapes(tiny);
    const inits = new Map(model.graph.initializer!.map((t) => [t.name!, t]));
    assert.equal(inits.size, model.graph.initializer!.length, 'initializer names are unique');
    for (const [name, shape] of Object.entries(shapes)) {
      const t = inits.get(name);
      assert.ok(t, `${name} present`);
      const expected = name.endsWith('/kernel') && shape.length === 4 ? [shape[3], shape[2], shape[0], shape[1]] : shape;
      assert.deepEqual(t!.dims, expected, name);
    }
    const weightFloats = Object.values(shapes).reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
    const allFloats = model.graph.initializer!.filter((t) => t.data_type === DataType.FLOAT).reduce((n, t) => n + t.dims.reduce((a, b) => a * b, 1), 0);
    assert.ok(allFloats - weightFloats <= 2 + tiny.numClasses * (tiny.numClasses + 1), `only tiny constants besides the weights (${allFloats - weightFloats})`);
  });

  test('inputs, outputs, doc strings and metadata follow runtime/contract.ts', () => {
    const { numPrimaryCaps, pixels } = derivedSizes(tiny);
    const io = (v: ModelProto['graph']['input'][number]) => [
      v.name,
      v.type!.tensor_type!.elem_type,
      v.type!.tensor_type!.shape!.dim.map((d) => d.dim_value ?? d.dim_param),
    ];
    assert.deepEqual(model.graph.input.map(io), [['images', DataType.FLOAT, ['N', 20, 20, 1]]]);
    assert.deepEqual(model.graph.output.map(io), [
      ['lengths', DataType.FLOAT, ['N', 4]],
      ['capsules', DataType.FLOAT, ['N', 4, 6]],
      ['reconstruction', DataType.FLOAT, ['N', pixels]],
      ['coupling', DataType.FLOAT, ['N', numPrimaryCaps, 4]],
    ]);
    assert.deepEqual(decoder.graph.input.map(io), [['masked_capsules', DataType.FLOAT, ['N', 4, 6]]]);
    assert.deepEqual(decoder.graph.output.map(io), [['reconstruction', DataType.FLOAT, ['N', pixels]]]);
    for (const g of [model.graph, decoder.graph]) {
      assert.ok(g.doc_string && g.doc_string.length > 20);
      for (const v of [...g.input, ...g.output]) assert.ok(v.doc_string && v.doc_string.length > 10, `doc for ${v.name}`);
    }
    assert.match(model.graph.input[0]!.doc_string!, /NHWC/);
    assert.equal(model.producer_name, 'capsnet-onnx');
    assert.match(model.producer_version!, /^\d+\.\d+\.\d+/);
    const meta = Object.fromEntries(model.metadata_props!.map((e) => [e.key, e.value]));
    assert.deepEqual(JSON.parse(meta[METADATA_KEYS.config]!), tiny);
    assert.equal(meta[METADATA_KEYS.routingIterations], '3');
    assert.deepEqual(JSON.parse(meta[METADATA_KEYS.classLabels]!), LABELS);
    assert.equal(meta[METADATA_KEYS.dataset], 'unit-test');
    assert.equal(Number(meta[METADATA_KEYS.testAccuracy]), 0.5);
    assert.equal(meta[METADATA_KEYS.checkpointSha256], 'f'.repeat(64));
    assert.equal(meta[METADATA_KEYS.exportedAt], '2024-01-02T03:04:05.000Z');
  });
});

describe('ONNX Runtime', () => {
  const { params, weights } = tinyParams(tiny, 2);
  const { model, decoder } = buildCapsNetModels(tiny, weights, provenance);
  const modelPath = () => join(dir, 'tiny.onnx');

  test('passes onnx.checker.check_model(full_check=True)', (t) => {
    writeFileSync(modelPath(), encodeModel(model));
    writeFileSync(decoderPathFor(modelPath()), encodeModel(decoder));
    const missing = pythonOnnxAvailable();
    if (missing) {
      console.warn(`SKIP checker: ${missing}`);
      t.skip(missing);
      return;
    }
    const results = runChecker(modelPath(), decoderPathFor(modelPath()));
    assert.equal(results.length, 2);
    for (const r of results) assert.ok(r.ok, `checker: ${r.error}`);
  });

  test('matches the tfjs forward pass for batch sizes 1 and 3, and the decoder file matches its reconstruction', async () => {
    const session = await ort.InferenceSession.create(encodeModel(model));
    const decoderSession = await ort.InferenceSession.create(encodeModel(decoder));
    assert.deepEqual(session.inputNames, ['images']);
    assert.deepEqual(session.outputNames, ['lengths', 'capsules', 'reconstruction', 'coupling']);
    for (const n of [1, 3]) {
      const images = randomImages(n, tiny, 10 + n);
      const out = await session.run({ images: new ort.Tensor('float32', images, [n, 20, 20, 1]) });
      const ref = tfForward(params, images, n);
      assert.ok(maxAbsDiff(out.lengths!.data as Float32Array, ref.lengths.dataSync()) <= 1e-5);
      assert.ok(maxAbsDiff(out.capsules!.data as Float32Array, ref.capsules.dataSync()) <= 1e-4);
      assert.ok(maxAbsDiff(out.reconstruction!.data as Float32Array, ref.reconstruction.dataSync()) <= 1e-4);
      assert.ok(maxAbsDiff(out.coupling!.data as Float32Array, ref.coupling.dataSync()) <= 1e-5);
      assert.deepEqual(argmaxMismatches(out.lengths!.data as Float32Array, ref.lengths.dataSync(), 4), []);
      assert.deepEqual(out.coupling!.dims, [n, derivedSizes(tiny).numPrimaryCaps, 4]);
      // Decoder file on the capsules masked by the prediction gives the model's reconstruction.
      const caps = out.capsules!.data as Float32Array;
      const masked = new Float32Array(caps.length);
      argmaxRows(out.lengths!.data as Float32Array, 4).forEach((j, row) => {
        for (let d = 0; d < 6; d++) masked[(row * 4 + j) * 6 + d] = caps[(row * 4 + j) * 6 + d]!;
      });
      const rec = await decoderSession.run({ masked_capsules: new ort.Tensor('float32', masked, [n, 4, 6]) });
      assert.ok(maxAbsDiff(rec.reconstruction!.data as Float32Array, out.reconstruction!.data as Float32Array) <= 1e-6);
      tf.dispose(Object.values(ref));
    }
    await session.release();
    await decoderSession.release();
  });

  test('ties in the capsule lengths mask exactly one capsule, the first, like tf.argMax', async () => {
    // The mask subgraph on its own, fed lengths that tie by construction: a tie computed by MatMul kernels is not
    // exact on every CPU (AVX2 and AVX-512 sum in different orders), so the exact rule is tested on chosen values.
    const J = 4,
      D = 3;
    const g = new GraphBuilder('mask_only');
    const lengthsIn = g.input('lengths', ['N', J], 'chosen capsule lengths');
    const capsulesIn = g.input('capsules', ['N', J, D], 'capsules');
    g.output(
      g.scope('mask', () => maskLongestCapsule(g, lengthsIn, capsulesIn, J)),
      ['N', J, D],
      'masked',
    );
    const session = await ort.InferenceSession.create(encodeModel(buildModel(g.graph(), { producerName: 'test', producerVersion: '0', metadata: {} })));
    const rows = [
      [0.5, 0.5, 0.2, 0.5], // three-way tie: the first wins
      [0.1, 0.3, 0.3, 0.2], // tie in the middle
      [0.9, 0.1, 0.1, 0.1], // no tie
      [0.2, 0.2, 0.2, 0.7], // the last
      [0.25, 0.25, 0.25, 0.25], // all equal
    ];
    const expected = [0, 1, 0, 3, 0];
    const n = rows.length;
    const caps = Float32Array.from({ length: n * J * D }, (_, k) => k + 1);
    const out = await session.run({
      lengths: new ort.Tensor('float32', Float32Array.from(rows.flat()), [n, J]),
      capsules: new ort.Tensor('float32', caps, [n, J, D]),
    });
    const masked = out[Object.keys(out)[0]!]!.data as Float32Array;
    for (let r = 0; r < n; r++) {
      for (let j = 0; j < J; j++)
        for (let d = 0; d < D; d++) {
          const k = (r * J + j) * D + d;
          assert.equal(masked[k], j === expected[r] ? caps[k] : 0, `row ${r} class ${j}`);
        }
      assert.equal(tf.argMax(tf.tensor1d(rows[r]!), 0).dataSync()[0], expected[r], 'tf.argMax picks the same class');
    }
    await session.release();
  });
});

describe('node placement log parser', () => {
  const prefix = '2026-01-01 00:00:00.0 [V:onnxruntime:, session_state.cc:1377 VerifyEachNodeIsAssignedToAnEp]';
  test('reads both forms ORT 1.30 prints', () => {
    const all = parseNodePlacements(`${prefix} Node placements\n${prefix}  All nodes placed on [WebGpuExecutionProvider]. Number of nodes: 81\n`);
    assert.deepEqual(all, [{ provider: 'WebGpuExecutionProvider', count: 81, nodes: [] }]);
    assert.deepEqual(cpuComputeNodes(all!), []);
    const mixed = parseNodePlacements(
      [
        `${prefix} Node placements`,
        `${prefix}  Node(s) placed on [CPUExecutionProvider]. Number of nodes: 2`,
        `${prefix}   Equal (mask/Equal)`,
        `${prefix}   MemcpyToHost (Memcpy_token_0)`,
        `${prefix}  Node(s) placed on [WebGpuExecutionProvider]. Number of nodes: 1`,
        `${prefix}   Relu (conv1/Relu)`,
      ].join('\n'),
    );
    assert.deepEqual(cpuComputeNodes(mixed!), [{ opType: 'Equal', name: 'mask/Equal' }]);
    assert.equal(parseNodePlacements('no placements here'), null);
  });
});

describe('capsnet export / inspect', () => {
  const run = () => join(dir, 'run');
  const cli = (...args: string[]) => execa('node', [CLI, ...args], { cwd: ROOT, reject: false });
  const listing = (d: string) => readdirSync(d).sort();

  before(() => {
    mkdirSync(run(), { recursive: true });
    saveCheckpoint(run(), {
      config: tiny,
      epoch: 1,
      step: 5,
      seed: 1,
      run: { batchSize: 32 },
      dataset: 'mnist-sample',
      classLabels: LABELS,
      backend: 'cpu',
      metrics: [{ epoch: 1, step: 5, test_accuracy: 0.875 } as never],
      weights: syntheticWeights(tiny, 5, () => 0.05),
      optimizer: { m: {}, v: {} },
    });
  });

  test('export writes model and decoder atomically; inspect reports them', async () => {
    const out = join(dir, 'cli', 'model.onnx');
    mkdirSync(join(dir, 'cli'));
    const result = await cli('export', run(), '-o', out);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.match(result.stdout, /wrote .*model\.onnx .*model\.decoder\.onnx/);
    assert.deepEqual(listing(join(dir, 'cli')), ['model.decoder.onnx', 'model.onnx'], 'no temp files left');
    const summary = JSON.parse((await cli('inspect', out, '--json')).stdout);
    assert.equal(summary.fileSize, statSync(out).size);
    assert.deepEqual(summary.opset, [{ domain: 'ai.onnx', version: 17 }]);
    assert.deepEqual(
      summary.inputs.map((i: { name: string; shape: unknown[] }) => [i.name, i.shape]),
      [['images', ['N', 20, 20, 1]]],
    );
    assert.deepEqual(
      summary.outputs.map((o: { name: string }) => o.name),
      ['lengths', 'capsules', 'reconstruction', 'coupling'],
    );
    assert.equal(summary.metadata[METADATA_KEYS.testAccuracy], '0.875');
    assert.equal(summary.metadata[METADATA_KEYS.dataset], 'mnist-sample');
    assert.match(summary.metadata[METADATA_KEYS.checkpointSha256], /^[0-9a-f]{64}$/);
    assert.equal(summary.ops.Softmax, 3);
    const weightCount = Object.values(paramShapes(tiny)).reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
    assert.ok(summary.parameters >= weightCount && summary.parameters < weightCount + 100);
    const text = (await cli('inspect', decoderPathFor(out))).stdout;
    assert.match(text, /masked_capsules: float \[N, 4, 6\]/);
    assert.match(text, /MatMul x3/);
  });

  test('an existing model or decoder is replaced only with --overwrite (export and ensemble; overwrite: true in the API)', async () => {
    const target = join(dir, 'keep');
    mkdirSync(target);
    const out = join(target, 'model.onnx');
    const decoder = decoderPathFor(out);
    const stamp = (p: string) => [readFileSync(p, 'utf8'), statSync(p).mtimeMs];
    const refused = async (args: string[], path: string) => {
      const result = await cli(...args);
      assert.equal(result.exitCode, 1, `${args.join(' ')}: ${result.stdout}`);
      assert.equal(result.stderr.trim(), `capsnet: ${path} already exists: pass --overwrite to replace it, or choose another -o path`);
    };
    // The user's own files, each alone and together, under the names export would write.
    for (const mine of [[out], [decoder], [out, decoder]]) {
      for (const p of [out, decoder]) rmSync(p, { force: true });
      for (const p of mine) writeFileSync(p, `mine: ${p}`);
      const before = mine.map(stamp);
      await refused(['export', run(), '-o', out], mine[0]!);
      await refused(['ensemble', run(), run(), '-o', out], mine[0]!);
      assert.throws(
        () => exportCheckpoint(run(), { out }),
        (e: Error) =>
          e.name === 'OutputExistsError' && e.message === `${mine[0]} already exists: pass overwrite: true to replace it, or choose another out path`,
      );
      assert.deepEqual(mine.map(stamp), before, 'nothing was touched');
      assert.deepEqual(listing(target), mine.map((p) => p.slice(target.length + 1)).sort(), 'no temp file, no half pair');
    }
    // The default output (RUN_DIR/model.onnx) is guarded the same way.
    const defaultRun = join(dir, 'default-run');
    mkdirSync(defaultRun);
    writeFileSync(join(defaultRun, 'checkpoint.bin'), readFileSync(join(run(), 'checkpoint.bin')));
    writeFileSync(join(defaultRun, 'model.onnx'), 'mine');
    await refused(['export', defaultRun], join(defaultRun, 'model.onnx'));
    // Asked: replaced, and the result is a loadable pair. (An ensemble's members must be different checkpoints.)
    const second = join(dir, 'second-run');
    mkdirSync(second, { recursive: true });
    saveCheckpoint(second, { ...loadCheckpoint(run()), seed: 12345 });
    for (const args of [
      ['export', run(), '-o', out, '--overwrite'],
      ['ensemble', run(), second, '-o', out, '--overwrite'],
    ]) {
      const result = await cli(...args);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.equal(inspectFile(out).metadata[METADATA_KEYS.dataset], 'mnist-sample');
      assert.notEqual(readFileSync(decoder, 'utf8').slice(0, 5), 'mine:');
    }
    assert.equal(exportCheckpoint(run(), { out, overwrite: true }).modelPath, out);
    assert.deepEqual(listing(target), ['model.decoder.onnx', 'model.onnx']);
  });

  test("exportCheckpoint's errors (the capsnet-onnx API) name no command-line flag", () => {
    const file = join(dir, 'plain-file');
    writeFileSync(file, 'x');
    const calls: (() => unknown)[] = [
      () => exportCheckpoint(run(), {}),
      () => exportCheckpoint(run(), { out: dir }),
      () => exportCheckpoint(run(), { out: join(dir, 'no-such-dir', 'm.onnx') }),
      () => exportCheckpoint(run(), { triton: { dir: file } }),
      () => exportCheckpoint(run(), { triton: { dir: join(dir, 'no-such-dir', 'models') } }),
      () => exportCheckpoint(run(), { triton: { dir: join(dir, 'models'), name: '../up' } }),
      () => exportCheckpoint(run(), { out: join(dir, 'x.txt') }),
      () => exportCheckpoint(run(), { out: join(dir, 'big.onnx'), routingIterations: 2 ** 31 - 1 }),
    ];
    for (const call of calls) {
      assert.throws(call, (e: Error) => {
        assert.doesNotMatch(e.message, /(^|[\s(`])--?[a-z]/, `a CLI flag in a library error: ${e.message}`);
        return true;
      });
    }
  });

  test('--routing re-exports the same weights with another iteration count', () => {
    const out = join(dir, 'routing5.onnx');
    const result = exportCheckpoint(run(), { out, routingIterations: 5 });
    assert.equal(result.routingIterations, 5);
    const summary = inspectFile(out);
    assert.equal(summary.ops.Softmax, 5);
    assert.equal(summary.metadata[METADATA_KEYS.routingIterations], '5');
    assert.deepEqual(JSON.parse(summary.metadata[METADATA_KEYS.config]!).routing, { algorithm: 'dynamic', iterations: 5 });
    // Each iteration is unrolled: an int32-sized count is refused at once instead of building until memory runs out.
    const big = join(dir, 'routing-big.onnx');
    assert.throws(
      () => exportCheckpoint(run(), { out: big, routingIterations: 2 ** 31 - 1 }),
      /^Error: routing iterations must be an integer from 1 to 32 \(the paper's is 3\), got 2147483647$/,
    );
    assert.ok(!existsSync(big));
  });

  test('a checkpoint and an ONNX file written before `routing` existed read routingIterations as dynamic routing', () => {
    const old = join(dir, 'old-run');
    mkdirSync(old, { recursive: true });
    const { routing: _routing, ...rest } = tiny;
    const state = loadCheckpoint(run());
    saveCheckpoint(old, { ...state, config: { ...rest, routingIterations: 2 } as unknown as CapsNetConfig });
    assert.deepEqual(loadCheckpoint(old).config.routing, { algorithm: 'dynamic', iterations: 2 });
    assert.equal('routingIterations' in loadCheckpoint(old).config, false);
    const out = join(dir, 'old-run.onnx');
    assert.equal(exportCheckpoint(old, { out }).routingIterations, 2);
    assert.equal(inspectFile(out).ops.Softmax, 2);
    // An older export's capsnet.config (routingIterations) and its capsnet.routing_iterations key.
    const bytes = readFileSync(out);
    const model = decodeModel(bytes);
    const entry = model.metadata_props!.find((p) => p.key === METADATA_KEYS.config)!;
    entry.value = JSON.stringify({ ...rest, routingIterations: 2 });
    const meta = readModelMetadata(encodeModel(model));
    assert.deepEqual(meta.config.routing, { algorithm: 'dynamic', iterations: 2 });
    assert.equal(meta.routingIterations, 2);
    entry.value = JSON.stringify({ ...rest, routing: { algorithm: 'em', iterations: 2 } });
    assert.throws(
      () => readModelMetadata(encodeModel(model)),
      /^ModelFormatError: metadata "capsnet.config": config.routing.algorithm must be one of "dynamic", got "em": re-export the model$/,
    );
  });

  test('missing, corrupted and mismatched checkpoints and bad -o paths fail with one line and leave no file', async () => {
    const outDir = join(dir, 'errors');
    mkdirSync(outDir);
    const corrupted = join(dir, 'corrupted');
    mkdirSync(corrupted);
    const good = readFileSync(join(run(), 'checkpoint.bin'));
    writeFileSync(join(corrupted, 'checkpoint.bin'), good.subarray(0, good.length - 100));
    // A header claiming conv1 has 16 filters over tensors stored for 8.
    const mismatched = join(dir, 'mismatched');
    mkdirSync(mismatched);
    const headerLength = good.readUInt32LE(8);
    const header = JSON.parse(good.subarray(12, 12 + headerLength).toString('utf8'));
    header.config.conv1Filters = 16;
    const json = Buffer.from(JSON.stringify(header));
    const dataStart = Math.ceil((12 + headerLength) / 4) * 4;
    const start = Math.ceil((12 + json.length) / 4) * 4;
    const bytes = Buffer.alloc(start + good.length - dataStart);
    good.copy(bytes, 0, 0, 8);
    bytes.writeUInt32LE(json.length, 8);
    json.copy(bytes, 12);
    good.copy(bytes, start, dataStart);
    writeFileSync(join(mismatched, 'checkpoint.bin'), bytes);

    const cases: [string[], RegExp][] = [
      [[join(dir, 'nope'), '-o', join(outDir, 'm.onnx')], /no checkpoint at .*nope/],
      [[corrupted, '-o', join(outDir, 'm.onnx')], /truncated or corrupted/],
      [[mismatched, '-o', join(outDir, 'm.onnx')], /do not match the config/],
      [[run(), '-o', join(dir, 'no-such-dir', 'm.onnx')], /output directory .*no-such-dir does not exist/],
      [[run(), '-o', outDir], /is a directory/],
      // Not x.txt beside x.txt.decoder.onnx, which no loader would pair: the .onnx name is suggested.
      [[run(), '-o', join(outDir, 'x.txt')], /output .*errors\/x\.txt does not end in \.onnx: name the model file .*errors\/x\.onnx \(its decoder/],
      [[run(), '-o', join(outDir, 'model')], /does not end in \.onnx: name the model file .*errors\/model\.onnx/],
    ];
    for (const [args, message] of cases) {
      const result = await cli('export', ...args);
      assert.equal(result.exitCode, 1, `${args.join(' ')}: exit code`);
      const lines = result.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line: ${result.stderr}`);
      assert.match(lines[0]!, /^capsnet: /);
      assert.match(lines[0]!, message);
      assert.deepEqual(listing(outDir), [], `${args.join(' ')} left files behind`);
    }
    assert.ok(!existsSync(join(dir, 'no-such-dir')));
    const notOnnx = await cli('inspect', join(corrupted, 'checkpoint.bin'));
    assert.equal(notOnnx.exitCode, 1);
    assert.match(notOnnx.stderr, /^capsnet: .*not an ONNX model \(it does not parse as one\): pass the model\.onnx that `capsnet export` wrote$/);
    assert.doesNotMatch(notOnnx.stderr, /index out of range/, "protobufjs's own words stay out of it");
    const missing = await cli('inspect', join(dir, 'nope.onnx'));
    assert.match(missing.stderr, /^capsnet: no file at .*nope\.onnx: check the path/);
    // --pretrained in place of a file, as classify and serve take it; neither, or both, is a one-line usage error.
    const pretrained = JSON.parse((await cli('inspect', '--pretrained', 'mnist-small:int8', '--json')).stdout) as { path: string };
    assert.match(pretrained.path, /mnist-small[\\/]model\.int8\.onnx$/);
    assert.match((await cli('inspect')).stderr, /^capsnet: inspect needs a model: a model\.onnx from `capsnet export`, or --pretrained mnist-[a-z]+$/);
    assert.match(
      (await cli('inspect', 'x.onnx', '--pretrained', 'mnist-small')).stderr,
      /^capsnet: inspect: give a model file or --pretrained mnist-small, not both$/,
    );
  });
});

describe('paper-size model', () => {
  test('the file is within 1% of 4 bytes x parameters (export time reported, not asserted: speed lives in benchmarks)', (t) => {
    const config = paperConfig();
    const weights = syntheticWeights(config, 7, () => 0.05);
    const parameters = Object.values(weights).reduce((n, w) => n + w.length, 0);
    const started = performance.now();
    const { model } = buildCapsNetModels(config, weights, provenance);
    const bytes = encodeModel(model);
    const file = join(dir, 'paper.onnx');
    writeFileSync(file, bytes);
    const seconds = (performance.now() - started) / 1000;
    const ratio = bytes.length / (4 * parameters);
    t.diagnostic(
      `paper model: ${parameters} parameters, ${bytes.length} bytes (${(100 * ratio).toFixed(3)}% of 4 x ` +
        `params), built+encoded+written in ${seconds.toFixed(3)} s`,
    );
    console.log(
      `paper model: ${parameters} parameters, file ${bytes.length} bytes = ${(100 * ratio).toFixed(3)}% of 4 x params, export ${seconds.toFixed(3)} s`,
    );
    assert.equal(parameters, 8215568);
    assert.ok(Math.abs(ratio - 1) < 0.01, `file size ratio ${ratio}`);
    if (!pythonOnnxAvailable()) {
      const [r] = runChecker(file);
      assert.ok(r!.ok, `checker: ${r!.error}`);
    }
  });
});
