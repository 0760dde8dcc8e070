/**
 * The rough kinds of issue 20 (item 8) in the CLI, the data readers and the exporter: messages that name the real
 * problem, refusals that come before anything is created, odd input that is refused instead of taken silently,
 * system errors as one line naming the file and the fix, and an export past protobuf's 2 GiB limit refused before
 * it is built.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { presetConfig } from '@capsnet-onnx/core';
import { loadCheckpoint, saveCheckpoint } from '../../../packages/capsnet/src/files/checkpoint.ts';
import { checkProtobufLimit, estimateModelBytes, exportCheckpoint } from '../../../packages/capsnet/src/export/exporter.ts';
import { exportEnsemble } from '../../../packages/capsnet/src/export/ensemble.ts';
import { train } from '../../../packages/capsnet/src/train/trainer.ts';
import { FAULT_CONFIG } from '../../support/fault-child.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';
import { TINY_CONFIG, syntheticWeights } from '../../support/tiny-model.ts';

const cli = (...args: string[]) => execa('node', [CLI, ...args], { cwd: ROOT, reject: false });
const oneLine = (stderr: string) => stderr.split('\n').filter(Boolean).length === 1 && !/\n\s+at /.test(stderr);

describe('refusals name the problem and create nothing', { timeout: 300_000 }, () => {
  let dir: string;
  let run: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsnet-refusals-'));
    run = join(dir, 'run');
    mkdirSync(run);
    saveCheckpoint(run, {
      config: TINY_CONFIG,
      epoch: 1,
      step: 1,
      seed: 1,
      run: { batchSize: 8 },
      dataset: 'tiny',
      classLabels: ['a', 'b', 'c', 'd'],
      backend: 'cpu',
      metrics: [],
      weights: syntheticWeights(TINY_CONFIG, 1, () => 0.3),
      optimizer: { m: {}, v: {} },
    });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('an empty or cut checkpoint is called empty or truncated, not "bad magic"; a directory in its place is named', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    writeFileSync(join(empty, 'checkpoint.bin'), '');
    assert.throws(
      () => loadCheckpoint(empty),
      (e: Error) =>
        /checkpoint\.bin: the file is empty \(0 bytes\): .*train again \(--overwrite\) or restore the file/.test(e.message) && !/magic/.test(e.message),
    );
    writeFileSync(join(empty, 'checkpoint.bin'), 'CAPS');
    assert.throws(() => loadCheckpoint(empty), /checkpoint\.bin: truncated at 4 bytes, inside its header/);
    const folder = join(dir, 'folder');
    mkdirSync(join(folder, 'checkpoint.bin'), { recursive: true });
    const r = await cli('export', folder);
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /^capsnet: .*folder\/checkpoint\.bin is a directory, not a checkpoint: pass the run directory that `capsnet train --out DIR` wrote/);
    assert.ok(oneLine(r.stderr), r.stderr);
  });

  test('a checkpoint file under another name is read as the checkpoint, not as a run directory', () => {
    const renamed = join(dir, 'ck.dat');
    cpSync(join(run, 'checkpoint.bin'), renamed);
    const state = loadCheckpoint(renamed);
    assert.equal(state.path, renamed);
    assert.equal(state.sha256, loadCheckpoint(run).sha256);
  });

  test('the same checkpoint twice in an ensemble is refused, by content, not by path', () => {
    const copy = join(dir, 'run-copy');
    cpSync(run, copy, { recursive: true });
    const out = join(dir, 'ensemble.onnx');
    assert.throws(
      () => exportEnsemble([run, copy], { out }),
      /run-copy holds the same checkpoint as .*run \(SHA-256 [0-9a-f]{12}\): each ensemble member must be a different trained run/,
    );
    assert.ok(!existsSync(out));
  });

  test('a refused Triton export creates no repository folder', () => {
    const repo = join(dir, 'models');
    assert.throws(
      () => exportCheckpoint(run, { triton: { dir: repo, maxBatchSize: 2 ** 31 } }),
      /Triton maxBatchSize must be an integer from 1 to 2147483647, got 2147483648/,
    );
    assert.throws(() => exportCheckpoint(run, { triton: { dir: repo, instanceCount: 1.5 } }), /Triton instanceCount must be an integer/);
    assert.throws(() => exportCheckpoint(run, { triton: { dir: repo, name: '../x' } }), /must be letters, digits/);
    assert.ok(!existsSync(repo));
  });

  test('parity --json refuses an existing file before anything runs, as export and plot do; --overwrite lets it through', async () => {
    const report = join(dir, 'report.json');
    writeFileSync(report, 'mine');
    const refused = await cli('parity', join(dir, 'missing.onnx'), '--json', report);
    assert.equal(refused.exitCode, 1);
    assert.equal(refused.stderr.trim(), `capsnet: ${report} already exists: pass --overwrite to replace it, or choose another --json path`);
    assert.equal(readFileSync(report, 'utf8'), 'mine');
    // Asked: the refusal is gone (here the next check, the missing model, stops it).
    const asked = await cli('parity', join(dir, 'missing.onnx'), '--json', report, '--overwrite');
    assert.equal(asked.exitCode, 1);
    assert.match(asked.stderr, /^capsnet: model .*missing\.onnx does not exist/);
    const { runParity } = await import('../../../packages/capsnet/src/parity/run.ts');
    await assert.rejects(runParity({ model: join(dir, 'missing.onnx'), json: report }), { name: 'OutputExistsError' });
  });

  test('corpus score on a directory: one line naming it and the fix', async () => {
    const r = await cli('corpus', 'score', dir);
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /^capsnet: .* is a directory, not a file: give a file path \(EISDIR\)$/m);
    assert.ok(oneLine(r.stderr), r.stderr);
  });

  test('experiments refuse a missing model or the wrong data before creating --out', async () => {
    const out = join(dir, 'exp');
    const missing = await cli('experiment', 'perturb', '--model', join(dir, 'missing.onnx'), '--out', out, '--backend', 'cpu');
    assert.equal(missing.exitCode, 1);
    assert.match(missing.stderr, /--model .*missing\.onnx does not exist/);
    const paper = await cli('experiment', 'affine', '--scale', 'paper', '--data', 'mnist-sample', '--out', out, '--backend', 'cpu');
    assert.equal(paper.exitCode, 1);
    assert.match(paper.stderr, /^capsnet: --scale paper needs the full MNIST/m);
    assert.ok(!existsSync(out), '--out was not created');
  });

  test('a run that fails before its first checkpoint leaves no folder it created and no empty metrics.jsonl', async () => {
    const options = (out: string) => ({
      preset: 'small' as const,
      data: 'mnist-sample',
      epochs: 1,
      batchSize: 16,
      backend: 'cpu' as const,
      seed: 7,
      out,
      resume: false,
      checkpointEvery: 0,
      trainLimit: 16,
      testLimit: 16,
      configOverrides: FAULT_CONFIG,
      progressBar: false,
      // Fails once the run directory is open (after the "model:" line), as a failing first step would.
      log: (line: string) => {
        if (line.startsWith('model:')) throw new Error('stopped by the test');
      },
    });
    const created = join(dir, 'new-run');
    await assert.rejects(train(options(created)), /stopped by the test/);
    assert.ok(!existsSync(created), 'the folder the run created is gone');
    const given = join(dir, 'given-run');
    mkdirSync(given);
    await assert.rejects(train(options(given)), /stopped by the test/);
    assert.deepEqual(readdirSync(given), [], 'a folder the user made stays, empty (no metrics.jsonl, no lock)');
  });
});

describe("protobuf's 2 GiB limit", () => {
  test('3,755 classes at paper size are refused before building, naming the limit and the precisions that fit', () => {
    const config = presetConfig('paper', { inputHeight: 28, inputWidth: 28, inputChannels: 1, numClasses: 3755 });
    assert.throws(
      () => checkProtobufLimit(config, 'fp32'),
      new RegExp(
        /^Error: the model would be about 2\.\d\d GiB of fp32 weights, past protobuf's 2 GiB limit on an ONNX file/.source +
          /: export with --precision fp16 \(about 1\.\d\d GiB\) or --precision int8 \(about 0\.\d\d GiB\)$/.source,
      ),
    );
    checkProtobufLimit(config, 'fp16');
    checkProtobufLimit(config, 'int8');
    const huge = presetConfig('paper', { inputHeight: 28, inputWidth: 28, inputChannels: 1, numClasses: 10000 });
    assert.throws(() => checkProtobufLimit(huge, 'fp32'), /export with --precision int8 \(about 1\.\d\d GiB\)$/);
    assert.throws(() => checkProtobufLimit(huge, 'int8', 2 ** 30), /no precision brings it under the limit: train a smaller model/);
  });

  test("the estimate is the file's size within a few kilobytes", () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-estimate-'));
    try {
      const run = join(dir, 'run');
      mkdirSync(run);
      saveCheckpoint(run, {
        config: TINY_CONFIG,
        epoch: 1,
        step: 1,
        seed: 1,
        run: { batchSize: 8 },
        dataset: 'tiny',
        classLabels: ['a', 'b', 'c', 'd'],
        backend: 'cpu',
        metrics: [],
        weights: syntheticWeights(TINY_CONFIG, 1, () => 0.3),
        optimizer: { m: {}, v: {} },
      });
      for (const precision of ['fp32', 'fp16'] as const) {
        const result = exportCheckpoint(run, { out: join(dir, `m.${precision}.onnx`), precision });
        const estimate = estimateModelBytes(TINY_CONFIG, precision);
        assert.ok(result.modelBytes >= estimate && result.modelBytes < estimate + 64 * 1024, `${precision}: ${result.modelBytes} bytes, estimated ${estimate}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
