// scripts/gpu-check.sh's summary (parity/gpu-table.ts) on canned results, so that its parsing and table code
// cannot break unseen on machines without a GPU.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gpuTable, readGpuCheck } from '../../packages/capsnet/src/parity/gpu-table.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'capsnet-gpu-table-'));
  dirs.push(dir);
  return dir;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Canned results shaped like a GPU machine's: CUDA and WebGPU pass, tensorflow could not load. */
function writeCanned(dir: string): void {
  const parity = {
    model: 'm.onnx',
    checkpoint: 'run',
    tolerances: {},
    inputs: [],
    nearTies: [],
    referenceLabels: [],
    failures: [],
    ok: true,
    rows: [
      { backend: 'tfjs (reference)', ranOn: 'tfjs', status: 'reference' },
      {
        backend: 'node-cuda',
        ranOn: 'cuda (onnxruntime-node)',
        status: 'pass',
        maxAbs: { lengths: 2.5e-6, capsules: 3.1e-6, reconstruction: 4e-6, decoder: 1e-6 },
        argmax: { agree: 12, compared: 12, mismatches: [], flippedTies: [] },
      },
    ],
  };
  const infer = {
    rows: [
      { backend: 'ort-node-cuda', status: 'ok', ranOn: 'cuda (onnxruntime-node)', batch1Ms: 1.234, batch: 64, imagesPerS: 9876.5, gflops: 4012.3 },
      { backend: 'ort-node-webgpu', status: 'skipped', reason: 'no adapter', ranOn: '' },
    ],
  };
  const train = {
    rows: [
      {
        backend: 'webgpu',
        detail: 'tfjs webgpu on NVIDIA H200',
        batch: 32,
        step_s: 0.0851,
        step_over_forward: 2.9,
        images_per_s: 376.0,
        step_gflops_per_s: 452.4,
        note: '',
      },
      {
        backend: 'tensorflow',
        detail: '',
        batch: null,
        step_s: null,
        step_over_forward: null,
        images_per_s: null,
        step_gflops_per_s: null,
        note: 'skipped: @tensorflow/tfjs-node-gpu is not installed',
      },
    ],
  };
  // The fp16 export with fp16 compute: CUDA passes within its tolerances, WebGPU's adapter lacks shader-f16.
  const parityFp16 = {
    ...parity,
    precision: 'fp16',
    computePrecision: 'fp16',
    rows: [
      parity.rows[0],
      {
        backend: 'node-cuda',
        ranOn: 'cuda (onnxruntime-node)',
        status: 'pass',
        maxAbs: { lengths: 3.2e-4, capsules: 2.1e-4, reconstruction: 9e-4, decoder: 8e-4 },
        argmax: { agree: 12, compared: 12, mismatches: [], flippedTies: [] },
      },
      {
        backend: 'node-webgpu',
        ranOn: '',
        status: 'skipped',
        reason:
          'device "webgpu" cannot run m.onnx: the model computes in fp16 (capsnet.compute_precision) and the ' +
          'WebGPU adapter lacks the shader-f16 feature: re-export it',
      },
    ],
  };
  const inferFp16 = {
    rows: [{ backend: 'ort-node-cuda', status: 'ok', ranOn: 'cuda (onnxruntime-node)', batch1Ms: 0.987, batch: 64, imagesPerS: 15432.1, gflops: 6270.2 }],
  };
  writeFileSync(join(dir, 'parity.json'), JSON.stringify(parity));
  writeFileSync(join(dir, 'parity-fp16.json'), JSON.stringify(parityFp16));
  writeFileSync(join(dir, 'infer-fp16.json'), JSON.stringify(inferFp16));
  writeFileSync(join(dir, 'infer.json'), JSON.stringify(infer));
  writeFileSync(join(dir, 'train.json'), JSON.stringify(train));
  mkdirSync(join(dir, 'epoch'));
  writeFileSync(
    join(dir, 'epoch', 'metrics.jsonl'),
    `${JSON.stringify({
      epoch: 1,
      step: 63,
      test_accuracy: 0.9612,
      margin_loss: 0.1,
      reconstruction_loss: 0.02,
      train_loss: 0.2,
      train_margin_loss: 0.2,
      train_reconstruction_loss: 0.03,
      images_per_second: 2104.7,
      learning_rate: 0.001,
      backend: 'webgpu',
      seconds: 4.31,
    })}\n`,
  );
  writeFileSync(join(dir, 'epoch.status'), 'backend webgpu, batch 128, exit 0\n');
}

function rowOf(table: string, start: string): string {
  const line = table.split('\n').find((l) => l.startsWith(start));
  assert.ok(line, `no row starting "${start}" in:\n${table}`);
  return line;
}

describe('gpu-check summary table', () => {
  test('joins parity, inference, the training steps and the epoch into one table', () => {
    const dir = tempDir();
    writeCanned(dir);
    const results = readGpuCheck(dir);
    assert.deepEqual(results.problems, {});
    const table = gpuTable(results);
    assert.match(rowOf(table, 'infer ort-node-cuda'), /pass\s+2\.5e-6\s+3\.1e-6\s+4\.0e-6\s+12\/12\s+1\.23\s+64\s+9876\.5\s+4012\.30/);
    assert.match(rowOf(table, 'infer ort-node-webgpu'), /bench skipped: no adapter/);
    assert.match(rowOf(table, 'train step webgpu'), /\s85\s+32\s+376\.0\s+452\.4\s+step\/forward 2\.90; tfjs webgpu on NVIDIA H200/);
    assert.match(rowOf(table, 'train step tensorflow'), /skipped: @tensorflow\/tfjs-node-gpu is not installed/);
    assert.match(rowOf(table, 'train epoch webgpu'), /4310\s+128\s+2104\.7\s+-\s+small preset, epoch 1 \(63 steps\), test accuracy 96\.12%/);
    assert.match(table, /^parity: OK$/m);
    assert.match(rowOf(table, 'infer fp16 ort-node-cuda'), /pass\s+3\.2e-4\s+2\.1e-4\s+9\.0e-4\s+12\/12\s+0\.99\s+64\s+15432\.1\s+6270\.20/);
    assert.match(rowOf(table, 'infer fp16 ort-node-webgpu'), /skipped\s.*parity skipped: device "webgpu" cannot run m\.onnx: .*lacks the shader-f16 feature/);
    assert.match(table, /^parity fp16: OK$/m);
  });

  test('reports missing and broken files as rows that were not run, without throwing', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'train.json'), '{ truncated');
    writeFileSync(join(dir, 'epoch.status'), 'backend webgpu, batch 128, exit 124 (out of time)\n');
    const results = readGpuCheck(dir);
    assert.match(results.problems['train.json']!, /not valid JSON/);
    assert.match(results.problems['parity.json']!, /not written/);
    const table = gpuTable(results);
    assert.match(rowOf(table, 'train step '), /not run: train\.json not valid JSON/);
    assert.match(rowOf(table, 'train epoch'), /not run: no metrics\.jsonl: backend webgpu, batch 128, exit 124 \(out of time\)/);
    assert.match(table, /^parity: not run \(parity\.json not written/m);
    assert.match(rowOf(table, 'infer fp16 '), /not run\s.*infer-fp16\.json not written/);
    assert.match(table, /^parity fp16: not run \(parity-fp16\.json not written/m);
  });

  test('the command prints the table and writes summary.json', () => {
    const dir = tempDir();
    writeCanned(dir);
    const out = execFileSync(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'packages', 'capsnet', 'src', 'parity', 'gpu-table.ts'), dir, '--json', join(dir, 'summary.json')],
      { cwd: ROOT, encoding: 'utf8' },
    );
    assert.match(out, /train epoch webgpu/);
    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
    assert.equal(summary.train.rows[0].backend, 'webgpu');
    assert.equal(summary.epoch.metrics.test_accuracy, 0.9612);
  });
});
