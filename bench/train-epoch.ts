/**
 * `npm run bench:train`'s whole-epoch rows: what a user sees. For each batch, one pass over a fixed slice of the
 * training set through the project's training loop (bench/train-epoch-worker.ts: train() itself, wasm backend) and
 * through the same model and protocol in PyTorch (bench/train_epoch_torch.py), evaluation on a fixed slice of the
 * test set and the epoch-end checkpoint included. Per row: wall and CPU time of each part (setup, train steps, data
 * handling, evaluation, checkpoint), the warm-up steps and the steady-state step (detected by the harness's
 * steadyState, not assumed), and the full-MNIST epoch (60,000 training images, the 10,000 test images evaluated)
 * extrapolated from the steady state.
 */
import type { CapsNetConfig, PresetName } from '@capsnet-onnx/core';
import { forkWorker } from '../packages/capsnet/src/parity/fork.ts';
import type { ConvolutionsName } from '../packages/capsnet/src/train/names.ts';
import { type SteadyState, busyNote, cpuBusy, fmt, median, steadyState, sum, textTable } from './harness.ts';
import type { Clocked, EpochJob, EpochResult } from './train-epoch-worker.ts';
import { type TorchEpochResult, runTorchEpoch } from './train-torch.ts';

/** The official MNIST's sizes, for the extrapolation. */
export const MNIST_TRAIN_IMAGES = 60_000;
export const MNIST_TEST_IMAGES = 10_000;

export interface EpochOptions {
  preset: PresetName;
  config: CapsNetConfig;
  data: string;
  batches: number[];
  trainImages: number;
  testImages: number;
  seed: number;
  /** Steady-state detection: window of steps and tolerance (fraction). */
  window: number;
  tolerance: number;
  torch: boolean;
  /** wasm threads (CAPSNET_WASM_THREADS) and PyTorch's; absent: the backend's default, and that for PyTorch. */
  threads?: number;
  /** The wasm rows' convolutions (CAPSNET_CONVOLUTIONS), a row each; the first is the one named plainly "wasm". */
  convolutions: ConvolutionsName[];
  timeoutMs: number;
  /** The worker script (bench/train.ts, run with --worker). */
  workerScript: string;
}

/** Full epoch on the official MNIST, extrapolated: measured warm-up + the remaining steps at the steady median. */
export interface Extrapolation {
  train_pass_s: number;
  eval_s: number;
  checkpoint_s: number;
  total_s: number;
  images_per_s: number;
  basis: string;
}

export interface EpochRow {
  framework: string;
  detail: string;
  batch: number;
  train_images: number;
  test_images: number;
  steps: number;
  /** Training images per second of the loop (sum of the steps), and of the epoch with its end (evaluation + checkpoint). */
  loop_images_per_s: number;
  epoch_images_per_s: number;
  setup: Clocked;
  loop: Clocked & { cpu_per_wall: number };
  epoch_end: Clocked;
  data_alone: Clocked;
  eval_alone: Clocked;
  checkpoint_alone: Clocked | null;
  total: Clocked;
  /** PyTorch only: the step without the data handling, per step (median) and summed. */
  train_steps_only?: Clocked;
  warmup_step_s: number[];
  steady: (SteadyState & { cpu_median: number; cpu_per_wall: number }) | null;
  full_mnist_epoch: Extrapolation | null;
  test_accuracy: number;
  train_loss: number;
  peak_rss_mb: number;
  cpu_busy_by_others: number | null;
  note: string;
  raw: { step_s: number[]; step_cpu_s: number[] };
}

/** Analyses one epoch's result (either framework) into a row. Exported for the tests. */
export function epochRow(framework: string, r: EpochResult | TorchEpochResult, window: number, tolerance: number, busy: number | null): EpochRow {
  const loopWall = sum(r.step_s);
  const loopCpu = sum(r.step_cpu_s);
  const found = steadyState(r.step_s, window, tolerance);
  let steady: EpochRow['steady'] = null;
  let full: Extrapolation | null = null;
  const notes: string[] = [];
  if (found) {
    const cpuMedian = median(r.step_cpu_s.slice(found.warmupSteps));
    steady = { ...found, cpu_median: cpuMedian, cpu_per_wall: cpuMedian / found.stepMedian };
    const fullSteps = Math.ceil(MNIST_TRAIN_IMAGES / r.batch);
    const warm = sum(r.step_s.slice(0, found.warmupSteps));
    const trainPass = warm + (fullSteps - found.warmupSteps) * found.stepMedian;
    const evalS = (r.evalAlone.wall_s * MNIST_TEST_IMAGES) / Math.max(1, r.testImages);
    const checkpointS = r.checkpointAlone?.wall_s ?? 0;
    full = {
      train_pass_s: trainPass,
      eval_s: evalS,
      checkpoint_s: checkpointS,
      total_s: trainPass + evalS + checkpointS,
      images_per_s: MNIST_TRAIN_IMAGES / (trainPass + evalS + checkpointS),
      basis:
        `extrapolated: the ${found.warmupSteps} measured warm-up steps + ${fullSteps - found.warmupSteps} steps at the steady median, ` +
        `evaluation scaled from ${r.testImages} to ${MNIST_TEST_IMAGES} test images, one checkpoint write`,
    };
  } else {
    notes.push(`no steady state in ${r.step_s.length} steps (window ${window}, ${100 * tolerance}%): more --epoch-images, or idle cores`);
  }
  const b = busyNote(busy);
  if (b) notes.push(b);
  const torch = 'train_step_s' in r ? r : null;
  return {
    framework,
    detail: r.detail,
    batch: r.batch,
    train_images: r.trainImages,
    test_images: r.testImages,
    steps: r.step_s.length,
    loop_images_per_s: r.trainImages / loopWall,
    epoch_images_per_s: r.trainImages / (loopWall + r.epochEnd.wall_s),
    setup: r.setup,
    loop: { wall_s: loopWall, cpu_s: loopCpu, cpu_per_wall: loopCpu / loopWall },
    epoch_end: r.epochEnd,
    data_alone: r.dataAlone,
    eval_alone: r.evalAlone,
    checkpoint_alone: r.checkpointAlone,
    total: r.total,
    ...(torch ? { train_steps_only: { wall_s: sum(torch.train_step_s), cpu_s: sum(torch.train_step_cpu_s) } } : {}),
    warmup_step_s: r.step_s.slice(0, found?.warmupSteps ?? 0),
    steady,
    full_mnist_epoch: full,
    test_accuracy: r.testAccuracy,
    train_loss: r.trainLoss,
    peak_rss_mb: r.peakRssMb,
    cpu_busy_by_others: busy,
    note: notes.join('; '),
    raw: { step_s: r.step_s, step_cpu_s: r.step_cpu_s },
  };
}

/** How a wasm row whose convolutions are not the default ones is told apart: by who runs them. */
export function convolutionsLabel(convolutions: ConvolutionsName): string {
  return convolutions === 'onnxruntime' ? 'ORT convolutions' : 'XNNPACK convolutions';
}

/** Runs the epoch rows: per batch, the project (wasm) then PyTorch. Failures become rows with a note, not a crash. */
export async function runEpochRows(o: EpochOptions, log: (line: string) => void): Promise<EpochRow[]> {
  const rows: EpochRow[] = [];
  const failed = (framework: string, batch: number, reason: string): EpochRow =>
    ({ framework, batch, detail: '', note: `skipped: ${reason.replace(/\s+/g, ' ').slice(0, 400)}` }) as EpochRow;
  let mnistDir: string | null = null;
  if (o.torch && o.data === 'mnist') {
    const { mnistDataDir } = await import('../packages/capsnet/src/data/mnist.ts');
    mnistDir = mnistDataDir();
  }
  for (const batch of o.batches) {
    const job: EpochJob = { kind: 'epoch', preset: o.preset, data: o.data, batch, trainImages: o.trainImages, testImages: o.testImages, seed: o.seed };
    let threads = o.threads;
    for (const [i, convolutions] of o.convolutions.entries()) {
      const suffix = i === 0 ? '' : ` ${convolutionsLabel(convolutions)}`;
      const label = (t: number | string) => `wasm ${t}t${suffix}`;
      log(`epoch, wasm${suffix}, batch ${batch}: ${o.trainImages} training images, ${o.testImages} test images (--data ${o.data}) ...`);
      const env = { ...process.env, CAPSNET_CONVOLUTIONS: convolutions, ...(o.threads != null ? { CAPSNET_WASM_THREADS: String(o.threads) } : {}) };
      const busy = await cpuBusy(500);
      const reply = await forkWorker<EpochResult>(o.workerScript, ['--worker'], job, env, o.timeoutMs);
      if ('error' in reply) {
        log(`epoch, wasm${suffix}, batch ${batch}: skipped: ${reply.error}`);
        rows.push(failed(label('?'), batch, reply.error));
      } else {
        threads ??= reply.threads ?? undefined;
        rows.push(epochRow(label(reply.threads ?? '?'), reply, o.window, o.tolerance, busy));
        const rate = fmt(rows.at(-1)!.epoch_images_per_s, 1);
        log(`epoch, ${label(reply.threads ?? '?')}, batch ${batch}: ${rate} img/s over the epoch (${fmt(reply.total.wall_s, 0)} s in all)`);
      }
    }
    if (!o.torch) continue;
    if (mnistDir == null) {
      rows.push(failed('pytorch', batch, `the PyTorch epoch reads the official MNIST only (--data mnist), not ${o.data}`));
      continue;
    }
    const torchThreads = threads ?? 2;
    log(`epoch, pytorch ${torchThreads}t, batch ${batch} ...`);
    const busyTorch = await cpuBusy(500);
    const t = await runTorchEpoch(o.config, mnistDir, job, torchThreads, o.timeoutMs);
    if ('skipped' in t) {
      log(`epoch, pytorch, batch ${batch}: skipped: ${t.skipped}`);
      rows.push(failed('pytorch', batch, t.skipped));
      continue;
    }
    rows.push(epochRow(`pytorch ${t.threads}t`, t, o.window, o.tolerance, busyTorch));
  }
  return rows;
}

/** The epoch table, the parts table and the steady-state lines. */
export function formatEpochReport(rows: EpochRow[]): string {
  const s = (c: Clocked | null | undefined) => (c ? `${fmt(c.wall_s, 1)} / ${fmt(c.cpu_s, 1)}` : '-');
  const ok = rows.filter((r) => r.steps != null);
  const out: string[] = [];
  out.push(
    textTable(
      [
        'framework',
        'batch',
        'train/test imgs',
        'loop img/s',
        'epoch img/s',
        'steady step s',
        'CPU/wall',
        'warm-up steps (s)',
        'full MNIST epoch',
        'test acc',
        'note',
      ],
      rows.map((r) =>
        r.steps == null
          ? [r.framework, String(r.batch), '-', '-', '-', '-', '-', '-', '-', '-', r.note]
          : [
              r.framework,
              String(r.batch),
              `${r.train_images}/${r.test_images}`,
              fmt(r.loop_images_per_s, 1),
              fmt(r.epoch_images_per_s, 1),
              r.steady ? `${fmt(r.steady.stepMedian, 3)} (p10-p90 ${fmt(r.steady.p10, 2)}-${fmt(r.steady.p90, 2)})` : 'not reached',
              r.steady ? fmt(r.steady.cpu_per_wall, 2) : fmt(r.loop.cpu_per_wall, 2),
              r.steady ? `${r.warmup_step_s.length}: ${r.warmup_step_s.map((x) => x.toFixed(2)).join(', ') || '-'}` : '-',
              r.full_mnist_epoch ? `${fmt(r.full_mnist_epoch.total_s / 60, 1)} min (extrapolated)` : '-',
              `${fmt(100 * r.test_accuracy, 1)}%`,
              r.note,
            ],
      ),
    ),
  );
  if (ok.length) {
    out.push('\nwall / CPU seconds per part (CPU = user + system of all threads; "alone": the same code timed by itself after the epoch):');
    out.push(
      textTable(
        ['framework', 'batch', 'setup', 'train loop', 'data alone', 'steps w/o data', 'epoch end', 'eval alone', 'checkpoint alone', 'total'],
        ok.map((r) => [
          r.framework,
          String(r.batch),
          s(r.setup),
          s(r.loop),
          s(r.data_alone),
          s(r.train_steps_only ?? { wall_s: r.loop.wall_s - r.data_alone.wall_s, cpu_s: r.loop.cpu_s - r.data_alone.cpu_s }),
          s(r.epoch_end),
          s(r.eval_alone),
          s(r.checkpoint_alone),
          s(r.total),
        ]),
        '  ',
      ),
    );
    for (const r of ok) {
      if (!r.full_mnist_epoch) continue;
      const f = r.full_mnist_epoch;
      out.push(
        `  ${r.framework} batch ${r.batch}: full MNIST epoch ${fmt(f.total_s, 0)} s = train pass ${fmt(f.train_pass_s, 0)} s + evaluation ` +
          `${fmt(f.eval_s, 0)} s + checkpoint ${fmt(f.checkpoint_s, 1)} s, ${fmt(f.images_per_s, 1)} img/s (${f.basis})`,
      );
    }
  }
  return out.join('\n');
}
