/**
 * Parity on a genuinely trained small checkpoint (test/support/fixtures.ts): `capsnet parity` runs 24 inputs (16 real
 * test digits, 6 random, all-zero, all-one) through the tfjs reference, onnxruntime-node cpu, onnxruntime-web
 * wasm in Node and in headless Chromium, and the first 4 of them (one of each kind) through the WebGPU backends
 * (SwiftShader here: seconds per run); node-cuda is skipped with its reason where there is no GPU.
 * About two minutes, most of it WebGPU on SwiftShader; plus the fixture's training the first time.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { execa } from 'execa';
import { decodeCheckpoint, encodeCheckpoint } from '../../packages/capsnet/src/files/checkpoint.ts';
import { compare, formatMatrix, FP16_COMPUTE_TOLERANCES, TOLERANCES, tolerancesFor } from '../../packages/capsnet/src/parity/matrix.ts';
import type { MeasureResult } from '../../packages/capsnet/src/parity/measure.ts';
import type { Reference } from '../../packages/capsnet/src/parity/reference.ts';
import type { ParityReport } from '../../packages/capsnet/src/parity/run.ts';
import { ARTIFACTS, CLI, ROOT, trainedSmallRun } from '../support/fixtures.ts';

function syntheticReference(): Reference {
  const lengths = Float32Array.from([0.9, 0.1, 0.3, 0.5, 0.5 + 5e-6, 0.2]); // image 1: a near-tie between classes 0 and 1
  return {
    config: { numClasses: 3, digitDim: 1 } as Reference['config'],
    dataset: '',
    classLabels: ['a', 'b', 'c'],
    checkpointSha256: '',
    checkpointPath: '',
    lengths,
    capsules: lengths.slice(),
    reconstruction: new Float32Array(4),
    coupling: new Float32Array(0),
    masked: new Float32Array(6),
    labels: [0, 1],
    topGap: [0.4, 5e-6],
    latenciesMs: [],
    backend: 'test',
  };
}

function result(ref: Reference, change: (r: MeasureResult) => void): MeasureResult {
  const r: MeasureResult = {
    device: 'cpu',
    deviceReport: 'cpu',
    count: 2,
    lengths: ref.lengths.slice(),
    capsules: ref.capsules.slice(),
    reconstruction: ref.reconstruction.slice(),
    decoded: ref.reconstruction.slice(),
    labels: [...ref.labels],
    latenciesMs: [1, 3, 2],
    loadMs: 0,
  };
  change(r);
  return r;
}

describe('parity comparison', () => {
  test('tolerances: lengths 1e-5, capsules and reconstruction 1e-4; NaN fails', () => {
    const ref = syntheticReference();
    assert.equal(
      compare(
        'x',
        '',
        result(ref, () => {}),
        ref,
      ).status,
      'pass',
    );
    assert.equal(
      compare(
        'x',
        '',
        result(ref, (r) => (r.lengths[2]! += 0.9e-5)),
        ref,
      ).status,
      'pass',
    );
    const bad = compare(
      'x',
      '',
      result(ref, (r) => (r.lengths[2]! += 2e-5)),
      ref,
    );
    assert.equal(bad.status, 'fail');
    assert.match(bad.reason!, /lengths 2\.0e-5 > 0\.00001/);
    assert.equal(
      compare(
        'x',
        '',
        result(ref, (r) => (r.capsules[0]! += 2e-4)),
        ref,
      ).status,
      'fail',
    );
    assert.equal(
      compare(
        'x',
        '',
        result(ref, (r) => (r.decoded[1] = 2e-4)),
        ref,
      ).status,
      'fail',
    );
    assert.equal(
      compare(
        'x',
        '',
        result(ref, (r) => (r.reconstruction[0] = Number.NaN)),
        ref,
      ).status,
      'fail',
    );
    assert.equal(
      compare(
        'x',
        '',
        result(ref, () => {}),
        ref,
      ).medianMs,
      2,
    );
  });

  test('argmax must agree except at near-ties, which are reported', () => {
    const ref = syntheticReference();
    const flippedTie = compare(
      'x',
      '',
      result(ref, (r) => (r.labels[1] = 0)),
      ref,
    );
    assert.equal(flippedTie.status, 'pass');
    assert.deepEqual(flippedTie.argmax!.flippedTies, [{ image: 1, gap: 5e-6 }]);
    assert.match(formatMatrix([flippedTie], [{ image: 1, gap: 5e-6 }]), /near-ties in the reference.*\n.*x picked another class at near-tie image\(s\) 1/);
    const flipped = compare(
      'x',
      '',
      result(ref, (r) => (r.labels[0] = 2)),
      ref,
    );
    assert.equal(flipped.status, 'fail');
    assert.match(flipped.reason!, /argmax differs on image\(s\) 0/);
    assert.equal(TOLERANCES.tieGap, 1e-5);
  });

  test('fp16 and int8 files are held to their own, wider tolerances', () => {
    const ref = syntheticReference();
    const off = result(ref, (r) => (r.lengths[2]! += 3e-4));
    assert.equal(compare('x', '', off, ref).status, 'fail');
    assert.equal(compare('x', '', off, ref, tolerancesFor('fp16')).status, 'pass');
    const coarse = result(ref, (r) => (r.lengths[2]! += 5e-3));
    assert.equal(compare('x', '', coarse, ref, tolerancesFor('fp16')).status, 'fail');
    assert.equal(compare('x', '', coarse, ref, tolerancesFor('int8')).status, 'pass');
    assert.ok(tolerancesFor('int8').lengths > tolerancesFor('fp16').lengths && tolerancesFor('fp16').lengths > tolerancesFor('fp32').lengths);
    assert.throws(() => tolerancesFor('bf16'), /precision "bf16" has no parity tolerances: known are fp32, fp16, int8/);
  });

  test("fp16 files with fp16 compute get the fp16-compute tolerances; older files (no compute key) their weights' ones", () => {
    const ref = syntheticReference();
    const off = result(ref, (r) => (r.lengths[2]! += 1e-3));
    assert.equal(compare('x', '', off, ref, tolerancesFor('fp16', 'fp32')).status, 'fail');
    assert.equal(compare('x', '', off, ref, tolerancesFor('fp16', 'fp16')).status, 'pass');
    assert.deepEqual(tolerancesFor('fp16', 'fp16'), FP16_COMPUTE_TOLERANCES);
    assert.deepEqual(tolerancesFor('fp16'), tolerancesFor('fp16', 'fp32'));
    assert.ok(FP16_COMPUTE_TOLERANCES.lengths > tolerancesFor('fp16').lengths && FP16_COMPUTE_TOLERANCES.lengths < tolerancesFor('int8').lengths);
    assert.throws(() => tolerancesFor('int8', 'fp16'), /computes in fp16 but stores int8 weights/);
    assert.throws(() => tolerancesFor('fp16', 'bf16'), /compute precision "bf16" has no parity tolerances: known are fp32, fp16/);
  });
});

describe('capsnet parity on a trained checkpoint', () => {
  let runDir: string;
  let model: string;
  let work: string;

  before(async () => {
    const fixture = await trainedSmallRun();
    work = join(ARTIFACTS, 'parity', basename(fixture));
    // A private copy of the checkpoint: the model and its reference stay a pair even if the shared fixture is rewritten.
    runDir = join(work, 'run');
    mkdirSync(runDir, { recursive: true });
    copyFileSync(join(fixture, 'checkpoint.bin'), join(runDir, 'checkpoint.bin'));
    model = join(work, 'model.onnx');
    await execa('node', [CLI, 'export', runDir, '-o', model, '--overwrite'], { cwd: ROOT }); // this test's own file, kept between runs
  });

  test('every backend that runs matches the tfjs reference; cuda is skipped with its reason', async () => {
    const json = join(work, 'parity.json');
    const run = await execa('node', [CLI, 'parity', model, '--checkpoint', runDir, '--json', json, '--latency-runs', '5', '--webgpu-count', '4'], {
      cwd: ROOT,
      reject: false,
      all: true,
    });
    const report = JSON.parse(readFileSync(json, 'utf8')) as ParityReport;
    assert.equal(run.exitCode, 0, run.all);
    assert.equal(report.ok, true);
    assert.match(run.stdout, /backend\s+n\s+lengths\s+capsules\s+recon\s+decoder\s+argmax\s+median ms/);
    assert.match(run.stdout, /parity: OK/);
    assert.deepEqual(report.coupling.routing, { algorithm: 'dynamic', iterations: 3 });
    assert.ok(report.coupling.ok && report.coupling.maxAbs <= 1e-5, `coupling ${report.coupling.maxAbs}`);
    assert.match(run.stdout, /coupling \(dynamic routing x3, onnxruntime-node, cpu execution provider\): max \|diff\| \S+ <= 0\.00001: pass/);
    const rows = Object.fromEntries(report.rows.map((r) => [r.backend, r]));
    assert.deepEqual(Object.keys(rows), ['tfjs (reference)', 'node-cpu', 'node-cuda', 'node-webgpu', 'node-wasm', 'chromium-wasm', 'chromium-webgpu']);
    for (const name of ['node-cpu', 'node-wasm', 'chromium-wasm']) {
      assert.equal(rows[name]!.status, 'pass', `${name}: ${rows[name]!.reason}`);
      assert.equal(rows[name]!.count, 24);
    }
    for (const name of ['node-webgpu', 'chromium-webgpu']) {
      // WebGPU runs here on SwiftShader; a machine with neither GPU nor SwiftShader reports a skip with the reason.
      assert.ok(rows[name]!.status === 'pass' || rows[name]!.status === 'skipped', `${name}: ${rows[name]!.reason}`);
      if (rows[name]!.status === 'pass') assert.equal(rows[name]!.count, 4);
    }
    const cuda = rows['node-cuda']!;
    assert.ok(
      cuda.status === 'pass' || (cuda.status === 'skipped' && /ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node|NVIDIA/.test(cuda.reason!)),
      cuda.reason,
    );
    for (const row of report.rows.filter((r) => r.status === 'pass')) {
      assert.ok(row.maxAbs!.lengths <= 1e-5 && row.maxAbs!.capsules <= 1e-4 && row.maxAbs!.reconstruction <= 1e-4, row.backend);
      assert.ok(row.medianMs! > 0);
    }
    // The reference is a trained model: it reads most of the real digits correctly.
    const digits = report.inputs.flatMap((kind, i) => {
      const m = kind.match(/\(label (\d+)\)/);
      return m ? [{ i, label: Number(m[1]) }] : [];
    });
    assert.equal(digits.length, 16);
    const correct = digits.filter((d) => report.referenceLabels[d.i] === d.label).length;
    assert.ok(correct >= 11, `reference got ${correct}/16 digits`);
  });

  test('a model re-exported with --routing 2 is checked at its own iteration count, coupling included', async () => {
    const routed = join(work, 'routing2.onnx');
    const exported = await execa('node', [CLI, 'export', runDir, '-o', routed, '--routing', '2'], { cwd: ROOT, reject: false, all: true });
    assert.equal(exported.exitCode, 0, exported.all);
    const json = join(work, 'parity-routing2.json');
    const run = await execa('node', [CLI, 'parity', routed, '--checkpoint', runDir, '--backends', 'node-cpu', '--json', json, '--latency-runs', '1'], {
      cwd: ROOT,
      reject: false,
      all: true,
    });
    assert.equal(run.exitCode, 0, run.all);
    const report = JSON.parse(readFileSync(json, 'utf8')) as ParityReport;
    assert.equal(report.ok, true, report.failures.join('; '));
    assert.match(run.stdout, /routing: the file unrolls dynamic x2 \(trained with dynamic x3\); the reference runs the file's/);
    assert.deepEqual(report.coupling.routing, { algorithm: 'dynamic', iterations: 2 });
    assert.ok(report.coupling.maxAbs <= 1e-5, `coupling ${report.coupling.maxAbs}`);
    const cpu = report.rows.find((r) => r.backend === 'node-cpu')!;
    assert.equal(cpu.status, 'pass', cpu.reason);
  });

  test('a model checked against the wrong checkpoint is refused', async () => {
    const state = decodeCheckpoint(readFileSync(join(runDir, 'checkpoint.bin')));
    state.weights['primary/bias']![0]! += 1e-3;
    const other = join(work, 'other-run');
    mkdirSync(other, { recursive: true });
    writeFileSync(join(other, 'checkpoint.bin'), encodeCheckpoint(state));
    const run = await execa('node', [CLI, 'parity', model, '--checkpoint', other, '--backends', 'node-cpu'], { cwd: ROOT, reject: false });
    assert.equal(run.exitCode, 1);
    assert.match(run.stderr, /was exported from checkpoint sha256 .* pass the run directory it came from/);
  });
});
