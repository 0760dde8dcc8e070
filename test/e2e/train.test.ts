import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { execa } from 'execa';
import { presetConfig, paramShapes } from '@capsnet-onnx/core';
import { CheckpointError, decodeCheckpoint, encodeCheckpoint, loadCheckpoint } from '../../packages/capsnet/src/files/checkpoint.ts';
import { CLI, ROOT, trainedSmallRun } from '../support/fixtures.ts';

const tinyShape = { inputHeight: 28, inputWidth: 28, inputChannels: 1, numClasses: 10 };
/** A run small enough to take seconds: 256 training images, 200 test images. */
const QUICK = ['--preset', 'small', '--train-limit', '256', '--test-limit', '200', '--batch-size', '32', '--no-progress', '--backend', 'wasm'];

function readMetrics(dir: string) {
  return readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
}

describe('checkpoints', () => {
  const config = presetConfig('small', tinyShape);
  const weights = Object.fromEntries(
    Object.entries(paramShapes(config)).map(([n, s]) => [n, Float32Array.from({ length: s.reduce((a, b) => a * b, 1) }, (_, i) => i % 7)]),
  );
  const state = {
    config,
    epoch: 2,
    step: 10,
    seed: 3,
    run: { batchSize: 32 },
    dataset: 'mnist-sample',
    classLabels: ['0'],
    backend: 'cpu',
    metrics: [],
    weights,
    optimizer: { m: weights, v: weights },
  };

  test('round trip keeps every weight and moment', () => {
    const back = decodeCheckpoint(encodeCheckpoint(state));
    assert.equal(back.epoch, 2);
    assert.deepEqual(back.config, config);
    for (const name of Object.keys(weights)) {
      assert.deepEqual(back.weights[name], weights[name]);
      assert.deepEqual(back.optimizer.v[name], weights[name]);
    }
  });

  test('truncated, corrupted and mismatched files give clear errors', () => {
    const bytes = encodeCheckpoint(state);
    assert.throws(
      () => decodeCheckpoint(bytes.subarray(0, bytes.length - 8)),
      (e: Error) => e instanceof CheckpointError && /truncated or corrupted/.test(e.message),
    );
    assert.throws(() => decodeCheckpoint(new TextEncoder().encode('hello world, not a checkpoint')), /bad magic/);
    const wrongConfig = encodeCheckpoint({
      ...state,
      config: { ...config, conv1Filters: 32 },
      weights: Object.fromEntries(
        Object.entries(paramShapes({ ...config, conv1Filters: 32 })).map(([n, s]) => [n, new Float32Array(s.reduce((a, b) => a * b, 1))]),
      ),
      optimizer: { m: {}, v: {} },
    });
    // Swap in a header that claims a different architecture than the stored tensors.
    const header = JSON.parse(new TextDecoder().decode(wrongConfig.subarray(12, 12 + new DataView(wrongConfig.buffer).getUint32(8, true))));
    header.config.conv1Filters = 64;
    const json = new TextEncoder().encode(JSON.stringify(header));
    assert.equal(json.length, new DataView(wrongConfig.buffer).getUint32(8, true));
    const tampered = wrongConfig.slice();
    tampered.set(json, 12);
    assert.throws(() => decodeCheckpoint(tampered), /weight conv1\/kernel has shape \[9,9,1,32\] but the config implies \[9,9,1,64\]/);
    assert.throws(() => loadCheckpoint(mkdtempSync(join(tmpdir(), 'capsnet-none-'))), /no checkpoint at/);
  });
});

describe('capsnet train', () => {
  test('same seed, same backend: same losses; metrics.jsonl has the documented fields', async () => {
    const a = mkdtempSync(join(tmpdir(), 'capsnet-a-'));
    const b = mkdtempSync(join(tmpdir(), 'capsnet-b-'));
    for (const out of [a, b]) await execa('node', [CLI, 'train', ...QUICK, '--epochs', '1', '--seed', '9', '--out', out], { cwd: ROOT });
    const [ma, mb] = [readMetrics(a), readMetrics(b)];
    assert.equal(ma.length, 1);
    for (const key of ['epoch', 'test_accuracy', 'margin_loss', 'reconstruction_loss', 'images_per_second', 'backend']) assert.ok(key in ma[0], key);
    assert.equal(ma[0].backend, 'wasm');
    assert.equal(ma[0].train_loss, mb[0].train_loss);
    assert.equal(ma[0].test_accuracy, mb[0].test_accuracy);
    assert.ok(Number.isFinite(ma[0].train_loss) && ma[0].images_per_second > 0);
  });

  test('one epoch on 3,000 embedded digits learns: the shared fixture run scores well above chance', async () => {
    const metrics = readMetrics(await trainedSmallRun());
    assert.equal(metrics.length, 1);
    assert.ok(metrics[0].test_accuracy > 0.75, `test accuracy ${metrics[0].test_accuracy}`);
    assert.ok(metrics[0].margin_loss < 0.3, `test margin loss ${metrics[0].margin_loss}`);
  });

  test('SIGKILL mid-run, then --resume continues from what is on disk and leaves no temp file', async () => {
    const out = mkdtempSync(join(tmpdir(), 'capsnet-kill-'));
    const args = [CLI, 'train', ...QUICK, '--epochs', '3', '--seed', '4', '--checkpoint-every', '2', '--checkpoint-interval', '0', '--out', out];
    const child = execa('node', args, { cwd: ROOT, reject: false, buffer: true });
    // Kill once a mid-epoch checkpoint exists, while training is still going.
    const deadline = Date.now() + 120_000;
    while (!existsSync(join(out, 'checkpoint.bin')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 700));
    child.kill('SIGKILL');
    const killed = await child;
    assert.equal(killed.signal, 'SIGKILL', `the child should still be training when killed: ${killed.stdout}`);
    const before = loadCheckpoint(out);
    assert.ok(before.step > 0 && before.epoch < 3, `checkpoint at step ${before.step}, epoch ${before.epoch}`);
    const resumed = await execa(
      'node',
      [
        CLI,
        'train',
        '--out',
        out,
        '--resume',
        '--epochs',
        '3',
        '--no-progress',
        '--backend',
        'wasm',
        '--train-limit',
        '256',
        '--test-limit',
        '200',
        '--batch-size',
        '32',
      ],
      { cwd: ROOT },
    );
    assert.match(resumed.stdout, new RegExp(`resuming from .*: epoch ${before.epoch}, step ${before.step}`));
    const after = loadCheckpoint(out);
    assert.equal(after.epoch, 3);
    assert.equal(after.step, 3 * 8);
    assert.deepEqual(
      readMetrics(out).map((m) => m.epoch),
      [1, 2, 3],
    );
    assert.deepEqual(
      readdirSync(out).filter((f) => f.includes('tmp')),
      [],
    );
  });

  test('bad input is one clear line, not a stack trace', async () => {
    const bad = await execa('node', [CLI, 'train', '--data', 'idx:/nonexistent', '--backend', 'cpu', '--out', mkdtempSync(join(tmpdir(), 'capsnet-bad-'))], {
      cwd: ROOT,
      reject: false,
    });
    assert.equal(bad.exitCode, 1);
    assert.match(bad.stderr, /^capsnet: data directory \/nonexistent does not exist/m);
    assert.doesNotMatch(bad.stderr, /\n\s+at /);
    const resumeNothing = await execa('node', [CLI, 'train', '--resume', '--out', mkdtempSync(join(tmpdir(), 'capsnet-empty-'))], { cwd: ROOT, reject: false });
    assert.match(resumeNothing.stderr, /--resume: no checkpoint in/);
  });
});
