/**
 * Run directories (issue 11): reuse only with resume/overwrite, resume refuses changed flags, one trainer per
 * directory with a lock that a crash does not leave stuck, orphaned temp files swept, suspicious labels refused,
 * and nothing created before the inputs are checked. Trains a tiny CapsNet in-process on 16 images.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { type TrainOptions, train } from '../../../packages/capsnet/src/train/trainer.ts';
import { LOCK_FILE } from '../../../packages/capsnet/src/train/run-dir.ts';
import { exportRun } from '../../../packages/capsnet/src/export/exporter.ts';
import { defaultModelFile } from '../../../packages/capsnet/src/export/names.ts';
import { plotRun } from '../../../packages/capsnet/src/experiments/curves.ts';
import { FAULT_CONFIG } from '../../support/fault-child.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';

const options = (out: string, extra: Partial<TrainOptions> = {}): TrainOptions => ({
  preset: 'small',
  data: 'mnist-sample',
  epochs: 1,
  batchSize: 16,
  backend: 'wasm',
  seed: 7,
  out,
  resume: false,
  checkpointEvery: 0,
  trainLimit: 16,
  testLimit: 16,
  configOverrides: FAULT_CONFIG,
  log: () => {},
  progressBar: false,
  ...extra,
});

/** Four IDX files of 28x28 blank images with the given training labels (test labels: 0). */
function idxDir(dir: string, trainLabels: number[]): string {
  mkdirSync(dir, { recursive: true });
  const images = (n: number) => Buffer.concat([Buffer.from([0, 0, 8, 3, 0, 0, 0, n, 0, 0, 0, 28, 0, 0, 0, 28]), Buffer.alloc(n * 784, 40)]);
  const labels = (l: number[]) => Buffer.concat([Buffer.from([0, 0, 8, 1, 0, 0, 0, l.length]), Buffer.from(l)]);
  writeFileSync(join(dir, 'train-images-idx3-ubyte'), images(trainLabels.length));
  writeFileSync(join(dir, 'train-labels-idx1-ubyte'), labels(trainLabels));
  writeFileSync(join(dir, 't10k-images-idx3-ubyte'), images(4));
  writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), labels([0, 0, 0, 0]));
  return dir;
}

describe('run directories', { timeout: 300_000 }, () => {
  let base: string;
  let sleeper: ChildProcess;
  before(() => {
    base = mkdtempSync(join(tmpdir(), 'capsnet-rundir-'));
    sleeper = spawn('sleep', ['120'], { stdio: 'ignore' });
  });
  after(() => {
    sleeper.kill();
    rmSync(base, { recursive: true, force: true });
  });

  test('a run is reused only with resume or overwrite; resume refuses changed flags but not --epochs', async () => {
    const out = join(base, 'run');
    await train(options(out));
    const before = readFileSync(join(out, 'checkpoint.bin'));
    await assert.rejects(
      train(options(out)),
      /already holds a run \(checkpoint\.bin, metrics\.jsonl\): continue it with --resume, replace it with --overwrite/,
    );
    assert.ok(readFileSync(join(out, 'checkpoint.bin')).equals(before), 'the refused run must not touch the checkpoint');
    await assert.rejects(
      train(options(out, { resume: true, seed: 8, batchSize: 8, epochs: 2 })),
      /--resume would change the run in .*: --batch-size 8 \(the run has 16\), --seed 8 \(the run has 7\)\. Drop these flags/,
    );
    await train(options(out, { resume: true, epochs: 2 }));
    assert.equal(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 2);
    await train(options(out, { overwrite: true }));
    assert.equal(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 1);
    assert.deepEqual(readdirSync(out).sort(), ['checkpoint.bin', 'metrics.jsonl']);
  });

  test("--overwrite removes the previous run's exports and figure too, names them in one line, and keeps the user's files", async () => {
    const out = join(base, 'replaced');
    await train(options(out));
    // What the follow-up commands write into the run without -o: exports at two precisions and the figure.
    exportRun(out, { out: join(out, defaultModelFile('fp32')) });
    exportRun(out, { out: join(out, defaultModelFile('int8')), precision: 'int8' });
    await plotRun(out);
    // And the user's own files, which the project never names.
    writeFileSync(join(out, 'notes.txt'), 'mine');
    writeFileSync(join(out, 'other.onnx'), 'mine');
    mkdirSync(join(out, 'mine'));
    const lines: string[] = [];
    await train(options(out, { overwrite: true, seed: 8, log: (l) => lines.push(l) }));
    assert.deepEqual(readdirSync(out).sort(), ['checkpoint.bin', 'metrics.jsonl', 'mine', 'notes.txt', 'other.onnx']);
    assert.deepEqual(
      lines.filter((l) => l.startsWith('--overwrite')),
      [
        "--overwrite: removed the previous run's checkpoint.bin, metrics.jsonl, model.onnx, model.decoder.onnx, model.int8.onnx, " +
          "model.int8.decoder.onnx, curves.svg; kept mine, notes.txt, other.onnx, which capsnet did not name (check that none is the old run's)",
      ],
    );
    assert.equal(readFileSync(join(out, 'notes.txt'), 'utf8'), 'mine');
    // The follow-up commands now run on the new run, without --overwrite and without a stale file beside it.
    assert.equal((await plotRun(out)).epochs, 1);
    assert.equal(exportRun(out, { out: join(out, defaultModelFile('fp32')) }).modelPath, join(out, 'model.onnx'));
    // Nothing of a previous run, nothing to say.
    const fresh: string[] = [];
    await train(options(join(base, 'fresh'), { overwrite: true, log: (l) => fresh.push(l) }));
    assert.deepEqual(
      fresh.filter((l) => l.startsWith('--overwrite')),
      [],
    );
  });

  test('without a terminal, a progress line per interval (issue 22): step, images/s, loss, ETA', async () => {
    const lines: string[] = [];
    await train(options(join(base, 'progress'), { trainLimit: 48, log: (l) => lines.push(l), progressLineS: 0 }));
    const progress = lines.filter((l) => l.startsWith('epoch 1/1 step'));
    assert.equal(progress.length, 3, lines.join('\n'));
    for (const [k, line] of progress.entries()) {
      assert.match(
        line,
        // The ETA needs a few steps past the first (warm-up) one: the first two lines say so.
        new RegExp(
          `^epoch 1/1 step ${k + 1}/3 \\(${Math.floor((100 * (k + 1)) / 3)}%\\): \\d+\\.\\d img/s, loss \\d+\\.\\d{4}, ` +
            (k < 2 ? 'ETA after a few more steps$' : 'ETA \\d+s for the epoch$'),
        ),
      );
    }
    const quiet: string[] = [];
    await train(options(join(base, 'quiet'), { trainLimit: 48, log: (l) => quiet.push(l) }));
    assert.deepEqual(
      quiet.filter((l) => l.includes(' step ')),
      [],
      'no lines unless asked',
    );
  });

  test('the CLI compares only the flags typed with the checkpoint', async () => {
    const out = join(base, 'run');
    const r = await execa('node', [CLI, 'train', '--out', out, '--resume', '--seed', '3', '--epochs', '5'], { cwd: ROOT, reject: false });
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /^capsnet: --resume would change the run in .*: --seed 3 \(the run has 7\)\. Drop these flags/m);
    // --epochs 5 was typed too, and the defaulted --preset, --data, --batch-size differ from nothing: only --seed is listed.
    assert.equal(/\/run: (--.*?)\. Drop these flags/.exec(r.stderr)?.[1], '--seed 3 (the run has 7)');
  });

  test('the learning-rate flags set the decay the run trains with, and --resume keeps them', async () => {
    const out = join(base, 'schedule');
    const common = ['--preset', 'small', '--data', 'mnist-sample', '--train-limit', '32', '--test-limit', '16', '--batch-size', '16', '--out', out];
    const schedule = ['--learning-rate', '0.002', '--decay-rate', '0.5', '--decay-steps', '4'];
    const first = await execa('node', [CLI, 'train', ...common, ...schedule, '--epochs', '1', '--no-progress'], { cwd: ROOT, reject: false });
    assert.equal(first.exitCode, 0, first.stderr);
    const rates = () =>
      readFileSync(join(out, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).learning_rate);
    // 2 steps an epoch: 0.002 x 0.5^(2/4) after the first, and the resumed epoch goes on from step 2 (0.002 x 0.5^1).
    assert.deepEqual(
      rates().map((r: number) => r.toPrecision(6)),
      [(0.002 * 0.5 ** 0.5).toPrecision(6)],
    );
    const resumed = await execa('node', [CLI, 'train', '--out', out, '--resume', '--epochs', '2', '--no-progress'], { cwd: ROOT, reject: false });
    assert.equal(resumed.exitCode, 0, resumed.stderr);
    assert.deepEqual(
      rates().map((r: number) => r.toPrecision(6)),
      [(0.002 * 0.5 ** 0.5).toPrecision(6), (0.001).toPrecision(6)],
    );
    const changed = await execa('node', [CLI, 'train', '--out', out, '--resume', '--decay-steps', '8'], { cwd: ROOT, reject: false });
    assert.equal(changed.exitCode, 1);
    assert.match(changed.stderr, /^capsnet: --resume would change the run in .*: --decay-steps 8 \(the run has 4\)\. Drop these flags/m);
  });

  test('one trainer per directory: a live lock refuses, a crashed one is taken over; orphaned temp files are swept', async () => {
    const out = join(base, 'locked');
    mkdirSync(out);
    const lock = (pid: number) => writeFileSync(join(out, LOCK_FILE), JSON.stringify({ pid, host: hostname(), startedAt: '2024-01-01T00:00:00Z' }));
    lock(sleeper.pid!);
    await assert.rejects(train(options(out)), new RegExp(`in use by another trainer \\(pid ${sleeper.pid} on `));
    // A trainer that was SIGKILLed: its pid is gone, its lock and temp files stay behind.
    const dead = spawn('true');
    await new Promise((r) => dead.once('exit', r));
    lock(dead.pid!);
    writeFileSync(join(out, `.checkpoint.bin.tmp-${dead.pid}-0`), 'half a checkpoint');
    writeFileSync(join(out, `.checkpoint.bin.tmp-${sleeper.pid}-0`), "a live writer's temp file");
    await train(options(out));
    assert.deepEqual(readdirSync(out).sort(), [`.checkpoint.bin.tmp-${sleeper.pid}-0`, 'checkpoint.bin', 'metrics.jsonl']);
  });

  test('suspicious labels stop the run before anything is created, unless allowed', async () => {
    const oneClass = idxDir(join(base, 'one-class'), new Array(16).fill(0));
    const out = join(base, 'never');
    await assert.rejects(
      train(options(out, { data: `idx:${oneClass}` })),
      /all 16 training labels are 0: a classifier needs examples of at least two classes; .*--allow-suspicious-data/,
    );
    const skipping = idxDir(join(base, 'skipping'), [0, 1, 2, 5, 0, 1, 2, 5]);
    await assert.rejects(train(options(out, { data: `idx:${skipping}` })), /2 of the 6 classes have no training example \(classes 3, 4\).*labels skip classes/);
    await assert.rejects(train(options(out, { data: `idx:${join(base, 'missing')}` })), /does not exist/);
    assert.equal(existsSync(out), false, 'a refused run must not create --out');
    const result = await train(options(out, { data: `idx:${skipping}`, allowSuspiciousData: true, trainLimit: 8 }));
    assert.equal(result.config.numClasses, 6);
    assert.ok(existsSync(join(out, 'checkpoint.bin')));
  });
});
