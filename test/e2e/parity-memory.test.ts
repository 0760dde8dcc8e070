/**
 * Issue 26: `capsnet parity` streams its inputs through the reference and each backend in batches, so its memory
 * stays flat in --digits. The same model is checked on 24 and on 500 inputs through the real CLI (node-cpu and
 * node-wasm: the cheap backends), and each process's peak resident memory, as the JSON report gives it (the
 * parity process, which runs the tfjs reference, and each backend's worker, from process.resourceUsage().maxRSS),
 * must stay within 1.5x of its peak at 24 inputs. Every row must also pass: batching changes no result.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { execa } from 'execa';
import { presetConfig } from '@capsnet-onnx/core';
import { saveCheckpoint } from '../../packages/capsnet/src/files/checkpoint.ts';
import { exportCheckpoint } from '../../packages/capsnet/src/export/exporter.ts';
import type { ParityReport } from '../../packages/capsnet/src/parity/run.ts';
import { CLI, ROOT } from '../support/fixtures.ts';
import { tempDir } from '../support/dataset-files.ts';
import { syntheticWeights } from '../support/tiny-model.ts';

/**
 * MNIST-sized, with the small preset's 288 primary capsules (u_hat is 288 x 10 x 16 floats, 184 KB an image: what
 * a whole-set forward pass multiplies by the input count) and a narrow conv1 so the tfjs reference stays quick.
 */
const CONFIG = presetConfig('small', { inputHeight: 28, inputWidth: 28, inputChannels: 1, numClasses: 10 }, { conv1Filters: 16 });

/** A run directory holding an untrained checkpoint on the embedded digits, and its export. */
function fixture(): { runDir: string; model: string } {
  const runDir = tempDir('parity-memory');
  saveCheckpoint(runDir, {
    config: CONFIG,
    epoch: 0,
    step: 0,
    seed: 1,
    dataset: 'mnist-sample',
    classLabels: Array.from({ length: 10 }, (_, i) => String(i)),
    backend: 'cpu',
    metrics: [],
    run: { batchSize: 32 },
    weights: syntheticWeights(CONFIG, 3, (name) => (name === 'digit/W' ? 0.5 : 0.1)),
    optimizer: { m: {}, v: {} },
  });
  mkdirSync(join(runDir, 'export'));
  const model = join(runDir, 'export', 'model.onnx');
  exportCheckpoint(runDir, { out: model });
  return { runDir, model };
}

describe('capsnet parity memory is flat in --digits', { timeout: 600_000 }, () => {
  test('500 inputs within 1.5x the peak resident memory of 24, for the parity process and each worker', async () => {
    const { runDir, model } = fixture();
    const parity = async (inputs: number): Promise<ParityReport> => {
      const json = join(runDir, `parity-${inputs}.json`);
      // --digits N --random 0: N test digits plus the all-zero and all-one images.
      const run = await execa(
        'node',
        [
          CLI,
          'parity',
          model,
          '--checkpoint',
          runDir,
          '--backends',
          'node-cpu,node-wasm',
          '--digits',
          String(inputs - 2),
          '--random',
          '0',
          '--latency-runs',
          '1',
          '--json',
          json,
        ],
        { cwd: ROOT, reject: false },
      );
      assert.equal(run.exitCode, 0, `${run.stdout}\n${run.stderr}`);
      return JSON.parse(readFileSync(json, 'utf8')) as ParityReport;
    };
    const small = await parity(24);
    const large = await parity(500);
    const peaks = (report: ParityReport) => Object.fromEntries(report.rows.map((r) => [r.backend, r.peakRssBytes]));
    const [a, b] = [peaks(small), peaks(large)];
    const mib = (bytes: number | undefined) => (bytes === undefined ? '-' : `${(bytes / 2 ** 20).toFixed(0)} MiB`);
    for (const backend of Object.keys(a)) console.log(`${backend}: peak RSS ${mib(a[backend])} at 24 inputs, ${mib(b[backend])} at 500`);
    for (const report of [small, large]) {
      for (const row of report.rows.filter((r) => r.status !== 'reference')) assert.equal(row.status, 'pass', `${row.backend}: ${row.reason}`);
    }
    assert.equal(large.rows.find((r) => r.backend === 'node-cpu')?.count, 500);
    assert.deepEqual(Object.keys(a), ['tfjs (reference)', 'node-cpu', 'node-wasm']);
    for (const backend of Object.keys(a)) {
      assert.ok(typeof a[backend] === 'number' && typeof b[backend] === 'number', `${backend} reports its peak memory`);
      assert.ok(b[backend]! <= 1.5 * a[backend]!, `${backend}: ${mib(b[backend])} at 500 inputs is more than 1.5x ${mib(a[backend])} at 24`);
    }
  });
});
