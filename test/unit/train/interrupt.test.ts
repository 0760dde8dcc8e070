/**
 * Stopping a run (TrainOptions.signal; `capsnet train` aborts it on Ctrl-C / SIGTERM): the steps trained so far are
 * checkpointed and `--resume` continues to the same bits as an uninterrupted run; stopped before any step, nothing is
 * written and the run folder it created is gone. Then the CLI itself: SIGINT prints where it stopped and how to go on.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { execa } from 'execa';
import { loadCheckpoint } from '../../../packages/capsnet/src/files/checkpoint.ts';
import { tempDir } from '../../support/dataset-files.ts';
import { tinyTrain } from '../../support/tiny-train.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';

// Epoch ends only (checkpointEvery 0): what a stop saves is its own checkpoint.
const run = (out: string, extra: Parameters<typeof tinyTrain>[1]) => tinyTrain(out, { checkpointEvery: 0, ...extra });

describe('stopping a training run', { timeout: 300_000 }, () => {
  test('stopped after 4 steps: checkpointed there, and --resume ends bit-identical to an uninterrupted run', async () => {
    const root = tempDir('interrupt');
    const whole = await run(join(root, 'whole'), {});
    assert.equal(whole.interrupted, undefined);

    const stopped = join(root, 'stopped');
    const controller = new AbortController();
    // A progress line after every step (progressLineS 0): abort once the 4th step (epoch 2, step 1) is done.
    const result = await run(stopped, {
      progressLineS: 0,
      signal: controller.signal,
      log: (line) => {
        if (line.startsWith('epoch 2/2 step 1/')) controller.abort();
      },
    });
    assert.deepEqual(result.interrupted, { epoch: 2, stepsDone: 1, stepsPerEpoch: 3, saved: true });
    const atStop = loadCheckpoint(stopped);
    assert.equal(atStop.step, 4);
    assert.equal(atStop.epoch, 1);
    assert.equal(atStop.progress?.stepsDone, 1, 'a mid-epoch checkpoint of the step the stop came after');

    await run(stopped, { resume: true, epochs: undefined });
    const [a, b] = [loadCheckpoint(join(root, 'whole')), loadCheckpoint(stopped)];
    assert.equal(b.step, a.step);
    for (const name of Object.keys(a.weights)) {
      assert.ok(Buffer.from(a.weights[name]!.buffer).equals(Buffer.from(b.weights[name]!.buffer)), `weight ${name} differs`);
    }
  });

  test('stopped before the first step: nothing written, and the run folder it created is removed', async () => {
    const out = join(tempDir('interrupt-early'), 'run');
    const controller = new AbortController();
    controller.abort();
    const result = await run(out, { signal: controller.signal });
    assert.deepEqual(result.interrupted, { epoch: 1, stepsDone: 0, stepsPerEpoch: 3, saved: false });
    assert.ok(!existsSync(out), `${out} is left behind`);
  });

  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    test(`capsnet train: ${signal} saves, prints where it stopped and the resume command, exit code ${code} (128 + the signal)`, async () => {
      const out = join(tempDir('interrupt-cli'), 'run');
      const args = ['train', '--preset', 'small', '--data', 'mnist-sample', '--train-limit', '6400', '--test-limit', '64', '--batch-size', '32'];
      const child = execa('node', [CLI, ...args, '--out', out, '--progress-interval', '0'], { cwd: ROOT, reject: false });
      // Not a terminal, so a progress line after every step: the signal once the first one is out.
      child.stdout!.on('data', (chunk: Buffer) => {
        if (/epoch 1\/\d+ step \d+\//.test(chunk.toString())) child.kill(signal);
      });
      const r = await child;
      assert.equal(r.exitCode, code, `exit ${r.exitCode}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`${signal}: stopping after this step and saving a checkpoint`));
      const line = /interrupted at epoch 1, step (\d+)\/200: saved in (.+); continue with: capsnet train --out (.+) --resume/.exec(r.stdout);
      assert.ok(line, r.stdout);
      assert.equal(line[2], out);
      assert.equal(loadCheckpoint(out).progress?.stepsDone, Number(line[1]));
    });
  }
});
