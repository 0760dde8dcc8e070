/**
 * `capsnet train`: the training loop (train/loop.ts steps, any model family in train/family.ts), seeded shuffling and
 * shifts, Adam with decay, per-epoch evaluation, atomic checkpoints, resume.
 */
import { appendFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import cliProgress from 'cli-progress';
import { type BackendName, initBackend } from './backends/backend.ts';
import {
  type BaselineCnnConfig,
  type CapsNetConfig,
  PAPER_BASELINES,
  type PresetName,
  Rng,
  baselineConfig,
  countShapes,
  narrowed,
  presetConfig,
  publicDataName,
} from '@capsnet-onnx/core';
import { MAX_ROUTING_ITERATIONS, PAPER_ROUTING } from '@capsnet-onnx/core';
import {
  type BaselineModelSpec,
  type CheckpointState,
  type EpochMetrics,
  type EpochProgress,
  checkpointPath,
  loadCheckpoint,
  saveCheckpoint,
} from '../files/checkpoint.ts';
import { DataError, type Dataset, type Split, loadDataset, protocolOverrides } from '../data/datasets.ts';
import { augmentBatch, networkView, sourceShape } from '../data/augment.ts';
import { suspiciousLabels } from './data-checks.ts';
import { CheckpointCadence, DEFAULT_CHECKPOINT_INTERVAL_S } from './checkpoint-cadence.ts';
import { type RunFlags, checkResumeFlags, checkRunDir, openRunDir, overwriteReport } from './run-dir.ts';
import { DEFAULT_EPOCHS } from './names.ts';
import { writeFileAtomic } from '../files/atomic.ts';
import { adamFor, epochOrder, gather, oneHot, readWeights, trainStep } from './loop.ts';
import { variablesFromWeights } from '../model/layers.ts';
import { type ModelFamily, type ModelName, baselineFamily, capsnetFamily, evaluate } from './family.ts';

export { oneHot, readWeights };

export interface TrainOptions {
  /** Network family: 'capsnet' (default) or 'baseline-cnn' (Table 1's CNN; `preset` small narrows it 4x). */
  model?: ModelName;
  preset: PresetName;
  data: string;
  /**
   * Epochs in total, counting resumed ones. Default: on `resume`, the total the run was started (or last resumed)
   * with, so that a resume without it finishes the run as planned; otherwise DEFAULT_EPOCHS.
   */
  epochs?: number;
  batchSize: number;
  routing?: number;
  backend: 'auto' | BackendName;
  seed: number;
  out: string;
  resume: boolean;
  /** Also checkpoint every this many steps inside an epoch (0: only at epoch ends)... */
  checkpointEvery: number;
  /**
   * ...but only once this many seconds have passed since the last checkpoint was written (train/checkpoint-cadence.ts).
   * Default 300 (`--checkpoint-interval 5m`); 0: at every `checkpointEvery` step.
   */
  checkpointIntervalS?: number;
  /** Milliseconds, monotonic, for the checkpoint interval (default performance.now; tests inject their own). */
  clock?: () => number;
  /** Called after each checkpoint write (`progress` set for a mid-epoch one). */
  onCheckpoint?: (written: { epoch: number; step: number; midEpoch: boolean }) => void;
  /** Use only the first N training images (quick runs and tests). */
  trainLimit?: number;
  /** Evaluate on only the first N test images. */
  testLimit?: number;
  configOverrides?: Partial<CapsNetConfig>;
  baselineOverrides?: Partial<BaselineCnnConfig>;
  log: (line: string) => void;
  progressBar: boolean;
  /**
   * Without a bar, a progress line through `log` at most every this many seconds (0: every step): step, images/s,
   * loss and the epoch's ETA, so a long epoch in a log file or CI is not silence. Absent: no lines.
   */
  progressLineS?: number;
  /** Replace the run already in `out` (without it, a run directory is reused only with `resume`). */
  overwrite?: boolean;
  /** Train on labels that skip classes or hold one class (see train/data-checks.ts). */
  allowSuspiciousData?: boolean;
  /** The run flags the user gave, compared with the checkpoint's on resume (default: all of the options above). */
  givenFlags?: RunFlags;
  /**
   * Stops the run before its next step (`capsnet train` aborts it on Ctrl-C / SIGTERM): the steps trained so far are
   * checkpointed (mid-epoch), so `resume` continues from there, and train returns with `interrupted` set. Aborted
   * before a step was trained: nothing is written, and a run folder this call created is removed.
   */
  signal?: AbortSignal;
}

/** What train returns. */
export interface TrainResult {
  runDir: string;
  metrics: EpochMetrics[];
  config: CapsNetConfig;
  parameters: number;
  /** Set when `signal` stopped the run: where (1-based epoch, steps done in it), and whether a checkpoint holds it. */
  interrupted?: { epoch: number; stepsDone: number; stepsPerEpoch: number; saved: boolean };
}

export const METRICS_FILE = 'metrics.jsonl';
/** Steps the progress line's ETA averages over (the oldest of them left out once the window is full). */
const ETA_WINDOW = 21;

/** 754 -> "12m 34s", 42.3 -> "42s", 3700 -> "1h 01m". */
export function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function imagesTensor(images: Float32Array, count: number, config: CapsNetConfig): tf.Tensor4D {
  return tf.tensor4d(images, [count, config.inputHeight, config.inputWidth, config.inputChannels]);
}

/** The baseline CNN a preset trains: the paper's Table 1 CNN, or 4x narrower for 'small'. */
export function baselineForPreset(preset: PresetName, shape: Dataset['shape'], overrides: Partial<BaselineCnnConfig> = {}): BaselineCnnConfig {
  const base = preset === 'small' ? narrowed(PAPER_BASELINES.mnist, 4) : PAPER_BASELINES.mnist;
  return baselineConfig('mnist', shape, { ...base, ...overrides });
}

/**
 * The numbers a library caller passes are held to the command line's rules (cli/args.ts): a NaN or fractional seed
 * would train with another seed than a resume reads back, and a NaN checkpoint interval would turn checkpoints off.
 */
function checkTrainNumbers(options: TrainOptions): void {
  const INT32 = 2 ** 31 - 1;
  const rules: Array<[name: string, value: number | undefined, min: number, max: number, optional?: boolean]> = [
    ['seed', options.seed, 0, 2 ** 32 - 1],
    ['epochs', options.epochs, 1, INT32, true],
    ['batchSize', options.batchSize, 1, INT32],
    ['checkpointEvery', options.checkpointEvery, 0, INT32],
    ['routing', options.routing, 1, MAX_ROUTING_ITERATIONS, true],
    ['trainLimit', options.trainLimit, 1, INT32, true],
    ['testLimit', options.testLimit, 1, INT32, true],
  ];
  for (const [name, value, min, max, optional] of rules) {
    if (value === undefined && optional) continue;
    if (!Number.isInteger(value) || value! < min || value! > max) throw new Error(`train: ${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

export async function train(options: TrainOptions): Promise<TrainResult> {
  const { log } = options;
  checkTrainNumbers(options);
  // Every input is checked before anything is created: the run directory, the checkpoint, the flags, the data.
  const checkpointIntervalS = options.checkpointIntervalS ?? DEFAULT_CHECKPOINT_INTERVAL_S;
  void new CheckpointCadence(options.checkpointEvery, checkpointIntervalS); // throws on a bad cadence
  checkRunDir(options.out, { resume: options.resume, overwrite: options.overwrite ?? false });
  let resumed: (CheckpointState & { sha256: string }) | undefined;
  if (options.resume) {
    resumed = loadCheckpoint(options.out);
    checkResumeFlags(options.out, runFlagsOf(resumed), options.givenFlags ?? runFlagsOf(options));
  }
  const dataset: Dataset = loadDataset(resumed?.dataset ?? options.data);
  if (resumed?.data) checkSameDataFiles(options.out, resumed.data.files, dataset.files ?? {});
  const data = { name: dataset.publicName ?? publicDataName(dataset.name), files: dataset.files ?? {} };
  const config =
    resumed?.config ??
    presetConfig(options.preset, dataset.shape, {
      ...protocolOverrides(options.data, dataset.shape, options.preset),
      ...options.configOverrides,
      ...(options.routing !== undefined ? { routing: { ...PAPER_ROUTING, iterations: options.routing } } : {}),
    });
  const seed = resumed?.seed ?? options.seed;
  const modelSpec: BaselineModelSpec | undefined = resumed
    ? resumed.model
    : options.model === 'baseline-cnn'
      ? { family: 'baseline-cnn', config: baselineForPreset(options.preset, dataset.shape, options.baselineOverrides) }
      : undefined;
  const family: ModelFamily = modelSpec ? baselineFamily(modelSpec.config, seed) : capsnetFamily(config);
  const epochs = options.epochs ?? resumed?.run.epochs ?? DEFAULT_EPOCHS;
  const run = {
    ...(resumed?.run ?? { batchSize: options.batchSize, trainLimit: options.trainLimit, testLimit: options.testLimit, preset: options.preset }),
    epochs,
  };
  const source = sourceShape(config);
  // Training batches are cut from the data set's images (the source size); the test split is seen as the network sees it.
  const pixels = source.height * source.width * source.channels;
  const train = run.trainLimit ? limitSplit(dataset.train, run.trainLimit, pixels) : dataset.train;
  const testSplit = networkView(run.testLimit ? limitSplit(dataset.test, run.testLimit, pixels) : dataset.test, config);
  // The data set's own labels are checked, not a --train-limit slice of them (a quick run may miss a class).
  const suspicious = resumed || options.allowSuspiciousData ? undefined : suspiciousLabels(dataset.train, config.numClasses);
  if (suspicious) throw new DataError(`${dataset.name}: ${suspicious}`);
  const backend = await initBackend(options.backend, log);
  log(`backend: ${backend.name} (${backend.detail})`);
  // A run that fails before its first checkpoint leaves no folder behind that it created (declared before the run
  // directory's lock, so it is disposed after the lock is released).
  let finished = false;
  const createdDir = !existsSync(options.out);
  using _cleanup = {
    [Symbol.dispose]: () => {
      if (finished || !createdDir || !existsSync(options.out) || existsSync(checkpointPath(options.out))) return;
      try {
        rmSync(options.out, { recursive: true, force: true });
      } catch {
        // best effort: the error that ended the run is the one to report
      }
    },
  };
  using runDir = openRunDir(options.out, { overwrite: options.overwrite ?? false });
  if (runDir.swept.length) log(`removed ${runDir.swept.length} temp file(s) left by a killed run: ${runDir.swept.join(', ')}`);
  const replaced = overwriteReport(runDir);
  if (replaced) log(replaced);
  if (resumed) log(`resuming from ${checkpointPath(options.out)}: epoch ${resumed.epoch}, step ${resumed.step}`);
  if (resumed && resumed.epoch >= epochs && !resumed.progress) {
    log(`the run has trained all its ${epochs} epoch${epochs === 1 ? '' : 's'}: nothing to train (--epochs N with a larger N trains further)`);
  }
  const stepsPerEpoch = Math.ceil(train.count / run.batchSize);

  const params = resumed ? variablesFromWeights(family.paramShapes, resumed.weights) : family.init(seed);
  const parameterCount = countShapes(family.paramShapes);
  log(
    modelSpec
      ? `model: baseline CNN, conv ${modelSpec.config.convChannels.join('/')} ` +
          `${modelSpec.config.kernel}x${modelSpec.config.kernel} ${modelSpec.config.padding}` +
          `${modelSpec.config.poolAfter.length ? `, pooling after conv ${modelSpec.config.poolAfter.map((p) => p + 1).join(',')}` : ', no pooling'}, ` +
          `fc ${modelSpec.config.fc.join('/')}, ` +
          `dropout ${modelSpec.config.dropout}: ${parameterCount.toLocaleString('en-US')} parameters`
      : `model: CapsNet, conv1 ${config.conv1Filters}, ${config.primaryMaps} primary maps, routing ` +
          `${config.routing.algorithm} x${config.routing.iterations}: ` +
          `${parameterCount.toLocaleString('en-US')} parameters`,
  );
  const optimizer = adamFor(config);
  if (resumed) optimizer.loadState(resumed.optimizer, params, resumed.step);
  const startStep = optimizer.step;
  const metrics: EpochMetrics[] = resumed ? [...resumed.metrics] : [];
  const metricsPath = join(options.out, METRICS_FILE);
  // The checkpoint is the source of truth: a kill between checkpoint and append must not leave a gap or a duplicate.
  // A new run starts without the file (the first epoch's line creates it): no empty metrics.jsonl.
  if (resumed) writeFileAtomic(metricsPath, metrics.map((m) => `${JSON.stringify(m)}\n`).join(''));
  else rmSync(metricsPath, { force: true });

  const cadence = new CheckpointCadence(options.checkpointEvery, checkpointIntervalS, options.clock);
  const snapshot = async (epoch: number, progress?: EpochProgress) => {
    saveCheckpoint(options.out, {
      config,
      ...(modelSpec ? { model: modelSpec } : {}),
      epoch,
      step: optimizer.step,
      seed,
      run,
      dataset: dataset.name,
      data,
      classLabels: dataset.classLabels,
      backend: backend.name,
      metrics,
      progress,
      weights: await readWeights(params),
      optimizer: await optimizer.exportState(),
      producer: 'capsnet-onnx',
    });
    cadence.wrote();
    options.onCheckpoint?.({ epoch, step: optimizer.step, midEpoch: progress !== undefined });
  };

  log(
    `data: ${dataset.name}, ${train.count} train / ${Math.min(run.testLimit ?? Infinity, dataset.test.count)} test images, ` +
      `${config.inputHeight}x${config.inputWidth}x${config.inputChannels}` +
      `${config.crop ? ` crops of ${source.height}x${source.width}` : ''}, ${config.numClasses} classes` +
      `${dataset.labelOffset ? ` (file labels ${dataset.labelOffset}-${dataset.labelOffset + config.numClasses - 1})` : ''}` +
      `${dataset.source ? `; ${dataset.source}` : ''}`,
  );
  for (let epoch = resumed?.epoch ?? 0; epoch < epochs; epoch++) {
    const saved = resumed?.progress && epoch === resumed.epoch ? resumed.progress : undefined;
    const progress: EpochProgress = saved
      ? { ...saved, parts: { ...(saved.parts ?? { margin: saved.margin ?? 0, reconstruction: saved.reconstruction ?? 0 }) } }
      : { stepsDone: 0, images: 0, loss: 0, parts: {}, seconds: 0 };
    const order = epochOrder(seed, epoch, train.count);
    const bar = options.progressBar
      ? new cliProgress.SingleBar(
          { format: `epoch ${epoch + 1}/${epochs} [{bar}] {value}/{total} steps | {ips} img/s | loss {loss} | ETA {eta_formatted}`, hideCursor: true },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
    bar?.start(stepsPerEpoch, progress.stepsDone, { ips: '-', loss: '-' });
    let lastLine = -Infinity;
    // The ETA goes by the latest steps: the first ones (warm-up: kernels compiled, sessions made) run several times
    // slower, and an average over them put a 90-second epoch's first ETA at 8 minutes.
    const recent: number[] = [];
    for (let s = progress.stepsDone; s < stepsPerEpoch; s++) {
      // A turn of the event loop: a step's awaits settle as microtasks, so without it a Ctrl-C handler (which aborts
      // `signal`) would not run until the run was over.
      await new Promise((resolve) => setImmediate(resolve));
      if (options.signal?.aborted) {
        bar?.stop();
        // Trained in this call and not yet checkpointed: saved now (an epoch end already is).
        if (progress.stepsDone > 0 && optimizer.step > startStep) await snapshot(epoch, progress);
        optimizer.dispose();
        tf.dispose(Object.values(params));
        const saved = existsSync(checkpointPath(options.out));
        return { runDir: options.out, metrics, config, parameters: parameterCount, interrupted: { epoch: epoch + 1, stepsDone: s, stepsPerEpoch, saved } };
      }
      const started = performance.now();
      const indices = order.subarray(s * run.batchSize, Math.min((s + 1) * run.batchSize, train.count));
      const batch = gather(train.images, train.labels, pixels, indices);
      const augmented = augmentBatch(batch.images, batch.count, config, new Rng(seed * 7919 + optimizer.step));
      const x = imagesTensor(augmented, batch.count, config);
      const y = oneHot(batch.labels, config.numClasses);
      const step = optimizer.step;
      const losses = await trainStep(optimizer, params, () => family.losses(params, x, y, step));
      tf.dispose([x, y]);
      const { total: loss, ...parts } = losses;
      progress.stepsDone = s + 1;
      progress.images += indices.length;
      progress.loss += loss! * indices.length;
      for (const [k, v] of Object.entries(parts)) progress.parts![k] = (progress.parts![k] ?? 0) + v * indices.length;
      const seconds = (performance.now() - started) / 1000;
      progress.seconds += seconds;
      if (recent.push(seconds) > ETA_WINDOW) recent.shift();
      bar?.update(s + 1, { ips: (progress.images / progress.seconds).toFixed(1), loss: loss.toFixed(4) });
      if (options.progressLineS !== undefined && !bar && performance.now() - lastLine >= options.progressLineS * 1000) {
        lastLine = performance.now();
        const perStep = recent.slice(1).reduce((a, b) => a + b, 0) / (recent.length - 1);
        const eta = recent.length > 2 ? `ETA ${formatSeconds(perStep * (stepsPerEpoch - s - 1))} for the epoch` : 'ETA after a few more steps';
        log(
          `epoch ${epoch + 1}/${epochs} step ${s + 1}/${stepsPerEpoch} (${Math.floor((100 * (s + 1)) / stepsPerEpoch)}%): ` +
            `${(progress.images / progress.seconds).toFixed(1)} img/s, loss ${loss.toFixed(4)}, ${eta}`,
        );
      }
      if (cadence.due(s + 1, stepsPerEpoch)) await snapshot(epoch, progress);
    }
    bar?.stop();
    const test = await evaluate(family, params, testSplit, 100);
    const record: EpochMetrics = {
      epoch: epoch + 1,
      step: optimizer.step,
      test_accuracy: test.accuracy,
      ...Object.fromEntries(Object.entries(test.losses).map(([k, v]) => [`${k}_loss`, v])),
      train_loss: progress.loss / progress.images,
      ...Object.fromEntries(Object.entries(progress.parts!).map(([k, v]) => [`train_${k}_loss`, v / progress.images])),
      images_per_second: progress.images / progress.seconds,
      learning_rate: optimizer.learningRate(),
      backend: backend.name,
      seconds: progress.seconds,
    };
    metrics.push(record);
    await snapshot(epoch + 1);
    appendFileSync(metricsPath, `${JSON.stringify(record)}\n`);
    const lossText = Object.entries(test.losses)
      .map(([k, v]) => `${k.replace('_', ' ')} ${v.toFixed(4)}`)
      .join(', ');
    log(
      `epoch ${record.epoch}: test accuracy ${(100 * record.test_accuracy).toFixed(2)}%, ${lossText}, ` +
        `${record.images_per_second.toFixed(1)} img/s, ${record.seconds.toFixed(1)} s`,
    );
  }
  optimizer.dispose();
  tf.dispose(Object.values(params));
  finished = true;
  return { runDir: options.out, metrics, config, parameters: parameterCount };
}

/**
 * A resumed run must read the same data: a file the checkpoint recorded whose SHA-256 changed is an error naming
 * it (a resume on other data would not continue the same run). Files added or renamed (e.g. gunzipped) pass.
 */
function checkSameDataFiles(runDir: string, recorded: Record<string, string>, now: Record<string, string>): void {
  const changed = Object.keys(recorded).filter((name) => now[name] !== undefined && now[name] !== recorded[name]);
  if (changed.length) {
    throw new DataError(
      `--resume: ${changed.join(', ')} changed since the run in ${runDir} started (SHA-256 differs): ` +
        'restore the files it was trained on, or start a new run (--overwrite, or another --out)',
    );
  }
}

/** The run flags a checkpoint was trained with, or that train() was called with. */
function runFlagsOf(source: TrainOptions | CheckpointState): RunFlags {
  if ('weights' in source) {
    const { run } = source;
    return {
      preset: run.preset,
      data: source.dataset,
      batchSize: run.batchSize,
      routing: source.config.routing.iterations,
      seed: source.seed,
      trainLimit: run.trainLimit,
      testLimit: run.testLimit,
      model: source.model?.family ?? 'capsnet',
      primaryCaps: source.config.primaryMaps,
      noneOfTheAbove: source.config.noneOfTheAbove ?? false,
      reconstructionWeight: source.config.reconstructionWeight,
      learningRate: source.config.learningRate,
      decayRate: source.config.decayRate,
      decaySteps: source.config.decaySteps,
    };
  }
  const overrides = source.configOverrides ?? {};
  return {
    preset: source.preset,
    data: source.data,
    batchSize: source.batchSize,
    routing: source.routing,
    seed: source.seed,
    trainLimit: source.trainLimit,
    testLimit: source.testLimit,
    model: source.model,
    primaryCaps: overrides.primaryMaps,
    noneOfTheAbove: overrides.noneOfTheAbove,
    reconstructionWeight: overrides.reconstructionWeight,
    learningRate: overrides.learningRate,
    decayRate: overrides.decayRate,
    decaySteps: overrides.decaySteps,
  };
}

function limitSplit(split: Split, limit: number, pixels: number): Split {
  const count = Math.min(limit, split.count);
  return { images: split.images.subarray(0, count * pixels), labels: split.labels.subarray(0, count), count };
}
