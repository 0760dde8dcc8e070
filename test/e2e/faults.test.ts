/**
 * Fault tests (issue 11): SIGKILL at random points of `train` (from outside at random times, and from inside in
 * the middle of a checkpoint write or between its write and rename) and of `export`, several times in a row, then
 * resume / re-export. The results must be bit-identical to an uninterrupted run and no temp file may be left.
 * Kept lean: a tiny CapsNet, 48 images, 2 epochs of 3 steps (test/support/fault-child.ts).
 *
 * The random points come from CAPSNET_FAULT_SEED (default: the clock); a failure prints the seed to replay.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { loadCheckpoint } from '../../packages/capsnet/src/files/checkpoint.ts';
import { Rng, decoderPathFor } from '@capsnet-onnx/core';
import { CapsNet } from '@capsnet-onnx/runtime/node';
import { ROOT } from '../support/fixtures.ts';
import { tinyModel } from '../support/tiny-model.ts';
import { readEnv } from '../support/env.ts';

const CHILD = join(ROOT, 'test', 'support', 'fault-child.ts');
const SEED = Number(readEnv('CAPSNET_FAULT_SEED') ?? Date.now() % 1_000_000);
const rng = new Rng(SEED);
const EPOCHS = '2';

/** Run the child; `fault` kills it from inside, `killAfterMs` from outside. Resolves with how it ended. */
async function child(args: string[], options: { fault?: string; killAfterMs?: number } = {}) {
  const run = execa('node', ['--import', 'tsx', CHILD, ...args], {
    cwd: ROOT,
    reject: false,
    env: { FAULT_BACKEND: 'wasm', ...(options.fault ? { CAPSNET_FAULT: options.fault } : {}) },
  });
  const timer = options.killAfterMs === undefined ? undefined : setTimeout(() => run.kill('SIGKILL'), options.killAfterMs);
  const result = await run;
  clearTimeout(timer);
  if (result.signal !== 'SIGKILL') assert.equal(result.exitCode, 0, `seed ${SEED}: ${args.join(' ')} ${options.fault ?? ''}: ${result.stderr.slice(-800)}`);
  return result.signal === 'SIGKILL' ? 'killed' : 'finished';
}

const leftovers = (dir: string) => readdirSync(dir).filter((f) => f.includes('.tmp-') || f === 'train.lock');

describe('SIGKILL during train, then resume', { timeout: 600_000 }, () => {
  let base: string;
  before(() => (base = mkdtempSync(join(tmpdir(), 'capsnet-faults-'))));
  after(() => rmSync(base, { recursive: true, force: true }));

  test('several kills at random points (checkpoint writes included) end bit-identical to an uninterrupted run, with no temp file', async () => {
    const reference = join(base, 'reference');
    const started = performance.now();
    await child(['train', reference, EPOCHS]);
    const fullMs = performance.now() - started;
    const killed = join(base, 'killed');
    // Two kills in a checkpoint write (half-written temp file; written but not renamed), two from outside at
    // random times. 11 checkpoint writes happen in a full run (lock, metrics, 6 steps' checkpoints...).
    const faults: { fault?: string; killAfterMs?: number }[] = [
      { fault: `write:${2 + Math.floor(rng.next() * 4)}` },
      { killAfterMs: Math.round(fullMs * (0.3 + 0.5 * rng.next())) },
      { fault: `rename:${2 + Math.floor(rng.next() * 3)}` },
      { killAfterMs: Math.round(fullMs * (0.3 + 0.5 * rng.next())) },
    ];
    const outcomes: string[] = [];
    for (const f of faults) outcomes.push(await child(['train', killed, EPOCHS], f));
    assert.ok(outcomes.filter((o) => o === 'killed').length >= 2, `seed ${SEED}: only ${outcomes.join(', ')}`);
    await child(['train', killed, EPOCHS]);

    const [a, b] = [loadCheckpoint(reference), loadCheckpoint(killed)];
    assert.equal(b.epoch, 2);
    assert.equal(b.step, a.step);
    for (const name of Object.keys(a.weights)) {
      assert.ok(Buffer.from(a.weights[name]!.buffer).equals(Buffer.from(b.weights[name]!.buffer)), `seed ${SEED}: weight ${name} differs`);
      assert.ok(Buffer.from(a.optimizer.v[name]!.buffer).equals(Buffer.from(b.optimizer.v[name]!.buffer)), `seed ${SEED}: Adam v of ${name} differs`);
    }
    const metrics = (dir: string) =>
      readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
    const [ma, mb] = [metrics(reference), metrics(killed)];
    assert.deepEqual(
      mb.map((m) => m.epoch),
      [1, 2],
    );
    for (const key of ['test_accuracy', 'margin_loss', 'train_loss', 'step'])
      assert.deepEqual(
        mb.map((m) => m[key]),
        ma.map((m) => m[key]),
        `seed ${SEED}: ${key}`,
      );
    assert.deepEqual(leftovers(killed), [], `seed ${SEED}`);
    assert.deepEqual(leftovers(reference), []);
  });

  test('SIGKILL during export, several times, then re-export: the same bytes, never a mismatched pair loaded, no temp file', async () => {
    const reference = join(base, 'reference');
    if (!existsSync(join(reference, 'checkpoint.bin'))) await child(['train', reference, EPOCHS]);
    const clean = join(base, 'clean.onnx');
    await child(['export', reference, clean]);
    const out = join(base, 'export', 'model.onnx');
    const decoderOf = decoderPathFor;
    // An older pair in place, so a kill between the two renames leaves a new decoder beside an old model.
    const old = tinyModel();
    rmSync(join(base, 'export'), { recursive: true, force: true });
    mkdirSync(join(base, 'export'));
    writeFileSync(out, old.model);
    writeFileSync(decoderOf(out), old.decoder);
    const faults: { fault?: string; killAfterMs?: number }[] = [
      { fault: 'write:1' },
      { fault: 'write:2' },
      { fault: 'rename:1' },
      { fault: 'rename:2' },
      { killAfterMs: 300 + Math.round(rng.next() * 1500) },
    ];
    for (const f of faults) {
      await child(['export', reference, out], f);
      const pair = [readFileSync(out), readFileSync(decoderOf(out))];
      try {
        const model = await CapsNet.load(pair[0]!, { decoder: pair[1]!, device: 'cpu' });
        await model.dispose();
        // It loaded, so it must be a whole pair: the old one or the new one.
        const isOld = pair[0]!.equals(old.model) && pair[1]!.equals(old.decoder);
        const isNew = pair[0]!.equals(readFileSync(clean)) && pair[1]!.equals(readFileSync(decoderOf(clean)));
        assert.ok(isOld || isNew, `seed ${SEED}: ${JSON.stringify(f)} left a pair that loads but is neither the old nor the new one`);
      } catch (e) {
        assert.match((e as Error).message, /the decoder does not belong to the model: .*run `capsnet export` again/, `seed ${SEED}: ${JSON.stringify(f)}`);
      }
    }
    await child(['export', reference, out]);
    assert.ok(readFileSync(out).equals(readFileSync(clean)), `seed ${SEED}: the re-exported model differs from a clean export`);
    assert.ok(readFileSync(decoderOf(out)).equals(readFileSync(decoderOf(clean))), `seed ${SEED}: the re-exported decoder differs`);
    assert.deepEqual(leftovers(join(base, 'export')), [], `seed ${SEED}`);
  });
});
