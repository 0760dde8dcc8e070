/**
 * bench/harness.ts on synthetic series: median, nearest-rank percentiles, the steady-state detector, seeded inputs,
 * the CPU description; and bench/train-epoch.ts's analysis of an epoch (steady state, extrapolation). No timings.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { cpuDescription, median, percentile, seededUniform, steadyState, textTable, withBusyProcesses } from '../../../bench/harness.ts';
import { type Row, contention, formatReport } from '../../../bench/train-report.ts';
import { MNIST_TEST_IMAGES, MNIST_TRAIN_IMAGES, epochRow } from '../../../bench/train-epoch.ts';
import type { EpochResult } from '../../../bench/train-epoch-worker.ts';

describe('median and percentile', () => {
  test('median of odd and even counts, unsorted input left unsorted', () => {
    const xs = [5, 1, 4, 2, 3];
    assert.equal(median(xs), 3);
    assert.deepEqual(xs, [5, 1, 4, 2, 3]);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([7]), 7);
    assert.throws(() => median([]), /empty/);
  });

  test('nearest-rank percentiles are samples: p0 the minimum, p100 the maximum', () => {
    const xs = Array.from({ length: 10 }, (_, i) => 10 - i); // 10..1
    assert.equal(percentile(xs, 0), 1);
    assert.equal(percentile(xs, 10), 1);
    assert.equal(percentile(xs, 11), 2);
    assert.equal(percentile(xs, 50), 5);
    assert.equal(percentile(xs, 90), 9);
    assert.equal(percentile(xs, 91), 10);
    assert.equal(percentile(xs, 100), 10);
    // 1..100: the pth percentile is p itself.
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    for (const p of [1, 25, 50, 75, 99]) assert.equal(percentile(hundred, p), p);
    assert.throws(() => percentile(xs, 101), /0 to 100/);
    assert.throws(() => percentile([], 50), /empty/);
  });
});

describe('steadyState', () => {
  test('a warm-up of slow steps is found and left out of the median', () => {
    // Four slow steps (the shape issue 25 reports), then steady steps around 1.4 s.
    const steady = [1.4, 1.46, 1.38, 1.42, 1.41, 1.39, 1.44, 1.4, 1.43, 1.37, 1.42, 1.4];
    const series = [3.23, 2.53, 2.1, 1.8, ...steady];
    const s = steadyState(series, 3, 0.1)!;
    assert.ok(s);
    // Window [1.8, 1.4, 1.46] has median 1.46, within 10% of the next window's 1.41: step 3 (1.8) starts it.
    assert.equal(s.warmupSteps, 3);
    assert.equal(s.stepMedian, median(series.slice(3)));
    assert.ok(s.p10 <= s.stepMedian && s.stepMedian <= s.p90);
    // A tighter tolerance moves the start past the 1.8 s step.
    assert.equal(steadyState(series, 3, 0.02)!.warmupSteps, 4);
    assert.equal(steadyState(series, 3, 0.02)!.stepMedian, median(steady));
  });

  test('a series steady from the start has no warm-up', () => {
    const flat = Array.from({ length: 12 }, (_, i) => 1 + 0.01 * (i % 3));
    const s = steadyState(flat, 5, 0.05)!;
    assert.equal(s.warmupSteps, 0);
    assert.equal(s.stepMedian, median(flat));
  });

  test('a series still drifting, or too short for two windows, has no steady state', () => {
    const drifting = Array.from({ length: 30 }, (_, i) => 10 * 0.8 ** i);
    assert.equal(steadyState(drifting, 3, 0.1), null);
    assert.equal(steadyState([1, 1, 1, 1, 1], 3, 0.1), null);
    assert.ok(steadyState([1, 1, 1, 1, 1, 1], 3, 0.1));
  });

  test('one outlier inside a window does not move a median-based detection', () => {
    const series = [5, 4, 1, 1, 9, 1, 1, 1, 1, 1, 1];
    assert.equal(steadyState(series, 3, 0.1)!.warmupSteps, 1); // [4, 1, 1] has median 1, like [9, 1, 1]
    assert.equal(steadyState(series, 3, 0.1)!.stepMedian, 1);
  });

  test('bad parameters are errors', () => {
    assert.throws(() => steadyState([1, 2], 0, 0.1), /window/);
    assert.throws(() => steadyState([1, 2], 2, -1), /tolerance/);
  });
});

describe('inputs, tables and the machine', () => {
  test('seededUniform repeats per seed, differs across seeds, stays in [0, 1)', () => {
    const a = seededUniform(1000, 7);
    assert.deepEqual(a, seededUniform(1000, 7));
    assert.notDeepEqual(a, seededUniform(1000, 8));
    assert.ok(a.every((x) => x >= 0 && x < 1));
    const mean = a.reduce((s, x) => s + x, 0) / a.length;
    assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
  });

  test('textTable pads every column but the last', () => {
    assert.equal(textTable(['a', 'bb', 'note'], [['xyz', '1', 'free text']]), 'a    bb  note\nxyz  1   free text');
  });

  test('cpuDescription reads the model and the SIMD flags of /proc/cpuinfo text', () => {
    const text =
      'processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n' +
      'flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni xsave\n';
    assert.deepEqual(cpuDescription(text), {
      model: 'AMD EPYC',
      flags: ['sse4_2', 'avx', 'avx2', 'fma', 'avx512f', 'avx512_vnni'],
      family: 26,
      modelNumber: 2,
      microarchitecture: 'Zen 5',
    });
    assert.equal(cpuDescription(text.replace('cpu family\t: 26\nmodel\t\t: 2', 'cpu family\t: 25\nmodel\t\t: 17')).microarchitecture, 'Zen 4');
    assert.equal(cpuDescription(text.replace('cpu family\t: 26\nmodel\t\t: 2', 'cpu family\t: 25\nmodel\t\t: 1')).microarchitecture, 'Zen 3');
    assert.equal(cpuDescription(text.replace('AuthenticAMD', 'GenuineIntel')).microarchitecture, null);
    const arm = 'processor\t: 0\nFeatures\t: fp asimd evtstrm asimdhp\n';
    assert.deepEqual(cpuDescription(arm).flags, ['asimd', 'asimdhp']);
  });
});

describe('epochRow', () => {
  const clocked = (wall: number, cpu: number) => ({ wall_s: wall, cpu_s: cpu });
  const result = (steps: number[]): EpochResult => ({
    detail: 'wasm: synthetic',
    threads: 2,
    batch: 32,
    trainImages: 32 * steps.length,
    testImages: 200,
    setup: clocked(5, 4),
    step_s: steps,
    step_cpu_s: steps.map((s) => 1.8 * s),
    epochEnd: clocked(3, 5),
    dataAlone: clocked(0.5, 0.5),
    evalAlone: clocked(2, 3.6),
    checkpointAlone: clocked(0.4, 0.1),
    total: clocked(5 + steps.reduce((a, b) => a + b, 0) + 3, 0),
    testAccuracy: 0.9,
    trainLoss: 0.2,
    peakRssMb: 100,
  });

  test('warm-up measured, the rest of a full MNIST epoch at the steady median, evaluation scaled to 10,000', () => {
    // [2, 1, 1] is the first window whose median is within 10% of the next one's: the 2 s step counts as steady.
    const steps = [3, 2.5, 2, 1, 1, 1, 1, 1, 1, 1, 1];
    const row = epochRow('wasm 2t', result(steps), 3, 0.1, null);
    assert.equal(row.steady!.warmupSteps, 2);
    assert.deepEqual(row.warmup_step_s, [3, 2.5]);
    assert.equal(row.steady!.stepMedian, 1);
    assert.ok(Math.abs(row.steady!.cpu_per_wall - 1.8) < 1e-12);
    const fullSteps = Math.ceil(MNIST_TRAIN_IMAGES / 32);
    const f = row.full_mnist_epoch!;
    assert.equal(f.train_pass_s, 3 + 2.5 + (fullSteps - 2) * 1);
    assert.equal(f.eval_s, (2 * MNIST_TEST_IMAGES) / 200);
    assert.equal(f.total_s, f.train_pass_s + f.eval_s + 0.4);
    assert.match(f.basis, /extrapolated/);
    assert.equal(row.loop_images_per_s, (32 * steps.length) / 15.5);
    assert.equal(row.epoch_images_per_s, (32 * steps.length) / 18.5);
    assert.equal(row.note, '');
  });

  test('no steady state: no extrapolation, and the note says so; a busy machine is noted', () => {
    const row = epochRow('wasm 2t', result([8, 4, 2, 1]), 3, 0.1, 0.6);
    assert.equal(row.steady, null);
    assert.equal(row.full_mnist_epoch, null);
    assert.match(row.note, /no steady state in 4 steps/);
    assert.match(row.note, /60% of the CPUs busy/);
  });
});

describe('the step beside busy processes (--compete)', () => {
  const row = (backend: string, batch: number, step: number | null, cpu: number | null, busy = 0): Row => ({
    ...(busy > 0 ? { busy_processes: busy } : {}),
    backend,
    detail: '',
    batch,
    step_s: step,
    forward_s: 0.1,
    step_over_forward: null,
    images_per_s: null,
    step_gflops_per_s: null,
    forward_gflops_per_s: null,
    step_cpu_s: cpu,
    peak_rss_mb: null,
    note: '',
  });
  test('each competing row is set against the quiet row of the same backend and batch', () => {
    const rows = [
      row('wasm 2t fused', 32, 0.8, 1.5),
      row('wasm 2t fused', 128, 3.2, 6),
      row('wasm 2t fused + 1 busy process', 32, 1.2, 1.4, 1),
      row('wasm 2t fused + 2 busy processes', 128, 6.4, null, 2),
      row('wasm 2t composite + 1 busy process', 32, 2, 2, 1), // no quiet composite row: left out
    ];
    const got = contention(rows);
    assert.deepEqual(
      got.map((c) => [c.backend, c.batch, c.busy_processes]),
      [
        ['wasm 2t fused', 32, 1],
        ['wasm 2t fused', 128, 2],
      ],
    );
    assert.ok(Math.abs(got[0]!.slowdown - 1.5) < 1e-12);
    assert.ok(Math.abs(got[0]!.cpu_wall! - 1.4 / 1.2) < 1e-12);
    assert.equal(got[1]!.slowdown, 2);
    assert.equal(got[1]!.cpu_wall, null);
    assert.match(formatReport(rows), /1\.50x slower beside 1 busy process/);
  });

  test('withBusyProcesses returns what the function returns, and rethrows what it throws', async () => {
    assert.equal(await withBusyProcesses(1, async () => 7), 7);
    await assert.rejects(
      withBusyProcesses(1, async () => {
        throw new Error('inside');
      }),
      /inside/,
    );
  });
});

describe("every bench's command line (benchArgs, runBench)", () => {
  const BENCHES = ['train', 'infer', 'serve', 'page-load', 'precision', 'install'];
  const run = (bench: string, ...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', '--conditions=capsnet-source', `bench/${bench}.ts`, ...args], { encoding: 'utf8', timeout: 60_000 });

  for (const bench of BENCHES) {
    test(`bench/${bench}.ts: an unknown option is one line and exit code 2; --help prints its usage`, () => {
      const bad = run(bench, '--no-such-option');
      assert.equal(bad.status, 2, bad.stderr);
      assert.equal(bad.stderr.trim(), `bench/${bench}.ts: Unknown option '--no-such-option' (--help lists the options)`);
      const help = run(bench, '--help');
      assert.equal(help.status, 0, help.stderr);
      assert.match(help.stdout, /npm run bench:/);
      assert.match(help.stdout, /\noptions:\n {2}--/, 'the options are listed');
      assert.doesNotMatch(help.stdout, /^\s*\*/m, 'the comment markers are stripped');
    });
  }

  test('a bad number is one line and exit code 2 before anything runs; a bad value main finds is one line and exit 1', () => {
    for (const [bench, flag, value, wants] of [
      ['train', '--steps', 'abc', 'a whole number >= 1'],
      ['train', '--batch', '32,x', 'whole numbers >= 1, comma-separated'],
      ['infer', '--batch', '0', 'a whole number >= 1'],
      ['serve', '--concurrency=-3', '', 'a whole number >= 1'],
    ] as const) {
      // --flag=value: a value starting with '-' is taken for an option otherwise.
      const [name, given] = value ? [flag, value] : (flag.split('=') as [string, string]);
      const bad = run(bench, ...(value ? [flag, value] : [flag]));
      assert.equal(bad.status, 2, bad.stderr);
      assert.equal(bad.stderr.trim(), `bench/${bench}.ts: ${name} wants ${wants}, got '${given}' (--help lists the options)`);
    }
    const late = run('train', '--steady-tolerance', '120', '--no-epoch');
    assert.equal(late.status, 1, late.stderr);
    assert.equal(late.stderr.trim(), "bench/train.ts: --steady-tolerance wants a percentage from 0 to 100, got '120'");
  });
});
