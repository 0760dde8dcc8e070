/**
 * Issue 26: mid-epoch checkpoints by time as well as steps. The cadence (train/checkpoint-cadence.ts) is checked
 * with an injected clock, never by sleeping: the rule itself, then `capsnet train`'s writes under a clock that
 * moves 50 s between readings, then a crash right after a time-chosen checkpoint, resumed to the same bits as an
 * uninterrupted run.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CheckpointCadence, DEFAULT_CHECKPOINT_INTERVAL_S, checkpointWritesPerEpoch } from '../../../packages/capsnet/src/train/checkpoint-cadence.ts';
import { timeSpan } from '../../../packages/capsnet/src/cli/args.ts';

const parseDuration = timeSpan('--checkpoint-interval');
import { loadCheckpoint } from '../../../packages/capsnet/src/files/checkpoint.ts';
import { tempDir } from '../../support/dataset-files.ts';
import { tinyTrain } from '../../support/tiny-train.ts';

/** The steps (1-based, within an epoch of `steps`) at which the cadence writes, steps taking `stepS` seconds. */
function writtenAt(every: number, intervalS: number, steps: number, stepS: number): number[] {
  let now = 0;
  const cadence = new CheckpointCadence(every, intervalS, () => now);
  const out: number[] = [];
  for (let s = 1; s <= steps; s++) {
    now += stepS * 1000;
    if (cadence.due(s, steps)) {
      out.push(s);
      cadence.wrote();
    }
  }
  return out;
}

describe('checkpoint cadence', () => {
  test('a candidate every N steps, written only once the interval has passed since the last write', () => {
    // 40 s steps, candidates every 2 steps, at most one write per 180 s: steps 6 (240 s), 12 (480 s), 18 (720 s).
    assert.deepEqual(writtenAt(2, 180, 20, 40), [6, 12, 18]);
    assert.deepEqual(writtenAt(2, 0, 20, 40), [2, 4, 6, 8, 10, 12, 14, 16, 18], 'interval 0: every candidate (the old cadence)');
    assert.deepEqual(writtenAt(0, 0, 20, 40), [], 'every 0: epoch ends only');
    assert.deepEqual(writtenAt(5, 1, 20, 0.1), [10], 'fast steps: the time floor, not the step count, decides');
    assert.deepEqual(writtenAt(1, 60, 4, 100), [1, 2, 3], 'never the last step: the epoch end writes that one');
    assert.throws(() => new CheckpointCadence(-1, 0), /whole number of steps >= 0/);
    assert.throws(() => new CheckpointCadence(1, Number.NaN), /seconds >= 0/);
  });

  test('--checkpoint-interval durations', () => {
    assert.equal(parseDuration('5m'), 300);
    assert.equal(parseDuration('90s'), 90);
    assert.equal(parseDuration('1.5h'), 5400);
    assert.equal(parseDuration('42'), 42);
    assert.equal(parseDuration('0'), 0);
    assert.throws(() => parseDuration('soon'), /--checkpoint-interval must be a duration like 90s, 5m or 1h/);
    assert.throws(() => parseDuration('-5m'), /got "-5m"/);
    assert.equal(DEFAULT_CHECKPOINT_INTERVAL_S, 300);
  });

  test('writes per epoch: the paper preset at batch 32 on 60,000 images (1,875 steps, --checkpoint-every 50)', () => {
    assert.equal(checkpointWritesPerEpoch(1875, 50, 0, 0.1), 38, 'before: 37 mid-epoch + the epoch end, whatever the step time');
    assert.equal(checkpointWritesPerEpoch(1875, 50, 300, 0.1), 1, '320 img/s: a 3-minute epoch needs no mid-epoch copy');
    // 32 img/s (1 s steps, a 31-minute epoch): a write at the first 50-step multiple past each 5 minutes (300 s).
    assert.equal(checkpointWritesPerEpoch(1875, 50, 300, 1), 7);
  });
});

describe('capsnet train under the cadence (injected clock)', { timeout: 300_000 }, () => {
  /** A clock whose every reading is 50 s after the previous one: time passes between the trainer's looks. */
  const ticking = () => {
    let now = 0;
    return () => (now += 50_000);
  };
  const run = tinyTrain;

  test("which steps are checkpointed, and a crash after a time-chosen one resumes bit-identical, to the run's own epochs", async () => {
    const root = tempDir('cadence');
    const writes = async (name: string, intervalS: number | undefined) => {
      const seen: string[] = [];
      await run(join(root, name), {
        ...(intervalS === undefined ? {} : { checkpointIntervalS: intervalS }),
        clock: ticking(),
        onCheckpoint: (w) => seen.push(`${w.midEpoch ? 'mid' : 'end'}@${w.step}`),
      });
      return seen;
    };
    // 48 images in batches of 16: 3 steps an epoch. Interval 0 is the old cadence: every step but the last.
    assert.deepEqual(await writes('every-step', 0), ['mid@1', 'mid@2', 'end@3', 'mid@4', 'mid@5', 'end@6']);
    // 80 s floor, 50 s between readings: the second step's reading is 100 s after the start, the epoch end resets it.
    assert.deepEqual(await writes('floor', 80), ['mid@2', 'end@3', 'mid@5', 'end@6']);
    // The default floor (5 minutes) is not reached within an epoch here: epoch ends only.
    assert.deepEqual(await writes('default', undefined), ['end@3', 'end@6']);

    // A crash right after the time-chosen checkpoint at step 5, then --resume: the same bits as uninterrupted.
    const crashed = join(root, 'crashed');
    await assert.rejects(
      run(crashed, {
        checkpointIntervalS: 80,
        clock: ticking(),
        onCheckpoint: (w) => {
          if (w.step === 5) throw new Error('simulated crash');
        },
      }),
      /simulated crash/,
    );
    const atCrash = loadCheckpoint(crashed);
    assert.equal(atCrash.step, 5);
    assert.equal(atCrash.progress?.stepsDone, 2);
    assert.equal(atCrash.run.epochs, 2, 'the checkpoint records the total the run trains to');
    // Resumed without epochs (as `capsnet train --out DIR --resume`): it finishes the run's 2, not DEFAULT_EPOCHS.
    await run(crashed, { resume: true, epochs: undefined, checkpointIntervalS: 80, clock: ticking() });
    const [a, b] = [loadCheckpoint(join(root, 'every-step')), loadCheckpoint(crashed)];
    assert.equal(b.step, a.step);
    for (const name of Object.keys(a.weights)) {
      assert.ok(Buffer.from(a.weights[name]!.buffer).equals(Buffer.from(b.weights[name]!.buffer)), `weight ${name} differs`);
      assert.ok(Buffer.from(a.optimizer.v[name]!.buffer).equals(Buffer.from(b.optimizer.v[name]!.buffer)), `Adam v of ${name} differs`);
    }
    assert.deepEqual(
      b.metrics.map((m) => m.train_loss),
      a.metrics.map((m) => m.train_loss),
    );
  });
});
