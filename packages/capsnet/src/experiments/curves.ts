/**
 * `capsnet plot RUN_DIR`: a training run's curves from its metrics.jsonl (one JSON line per epoch, written by
 * train/trainer.ts; fields in files/checkpoint.ts's EpochMetrics) as one SVG figure: the loss parts per epoch
 * (training averages solid, test dashed) beside the test accuracy per epoch.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { asFileSystemError, refuseToReplace, sweepTempFiles, writeFileAtomic } from '../files/atomic.ts';
import { CURVES_FILE } from '../train/run-dir.ts';
import { CONFIG, type FigureSpec, SCHEMA, renderSvg } from './figures.ts';

/** The run directory's metrics file (train/trainer.ts's METRICS_FILE; not imported, which would load TensorFlow.js). */
export const METRICS_FILE = 'metrics.jsonl';

/** One epoch's line: the epoch number, test accuracy (a fraction) and any number of `*_loss` fields. */
export interface EpochRecord {
  epoch: number;
  test_accuracy: number;
  [field: string]: unknown;
}

/**
 * The epoch records of RUN_DIR/metrics.jsonl, in file order. Throws a one-line error naming the problem and the fix
 * for a missing directory, a file instead of one, no metrics.jsonl, an empty file, and a line that is not JSON or
 * lacks a numeric `epoch` and `test_accuracy` (with its line number).
 */
export function readMetrics(runDir: string): EpochRecord[] {
  if (!existsSync(runDir)) throw new Error(`${runDir} does not exist: pass the run directory that \`capsnet train --out DIR\` wrote`);
  if (!statSync(runDir).isDirectory()) throw new Error(`${runDir} is not a directory: pass the run directory (capsnet train's --out), not a file`);
  const path = join(runDir, METRICS_FILE);
  if (!existsSync(path)) {
    throw new Error(`${runDir} has no ${METRICS_FILE}: it is not a capsnet train run directory, or its first epoch has not finished yet`);
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw asFileSystemError(e, path);
  }
  const records: EpochRecord[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      throw new Error(`${path} line ${i + 1} is not valid JSON (${(e as Error).message}): the file is damaged; remove that line or re-run the training`);
    }
    const record = value as Partial<EpochRecord> | null;
    if (typeof record !== 'object' || record === null || typeof record.epoch !== 'number' || typeof record.test_accuracy !== 'number') {
      throw new Error(`${path} line ${i + 1} is not an epoch record (numeric "epoch" and "test_accuracy"): the file is damaged; remove that line`);
    }
    records.push(record as EpochRecord);
  });
  if (records.length === 0) throw new Error(`${path} is empty: the run has not finished an epoch yet; plot it after its first epoch`);
  return records;
}

/** `train_margin_loss` -> margin, train; `margin_loss` -> margin, test; `train_loss` -> total, train. */
function lossSeries(key: string): { part: string; split: 'train' | 'test' } {
  const train = key.startsWith('train_');
  const part = (train ? key.slice('train_'.length) : key).replace(/_?loss$/, '').replace(/_/g, ' ');
  return { part: part === '' ? 'total' : part, split: train ? 'train' : 'test' };
}

/** The curves of a run as a Vega-Lite spec: loss parts (log scale when all are positive) and test accuracy (%), per epoch. */
export function curvesFigure(records: EpochRecord[], title: string): FigureSpec {
  const lossKeys = [...new Set(records.flatMap((r) => Object.keys(r).filter((k) => k.endsWith('_loss') && typeof r[k] === 'number')))];
  const losses = records.flatMap((r) =>
    lossKeys.filter((k) => Number.isFinite(r[k])).map((k) => ({ epoch: r.epoch, ...lossSeries(k), series: k, value: r[k] as number })),
  );
  const log = losses.length > 0 && losses.every((l) => l.value > 0);
  const accuracy = records.filter((r) => Number.isFinite(r.test_accuracy)).map((r) => ({ epoch: r.epoch, value: 100 * r.test_accuracy }));
  const point = records.length <= 30 ? { size: 30 } : false;
  const epochAxis = { field: 'epoch', type: 'quantitative', title: 'epoch', scale: { zero: false }, axis: { tickMinStep: 1, format: 'd' } } as const;
  const last = accuracy.at(-1);
  return {
    $schema: SCHEMA,
    config: CONFIG,
    title: {
      text: title,
      subtitle: `${records.length} epoch${records.length === 1 ? '' : 's'}${last ? `, final test accuracy ${last.value.toFixed(2)}%` : ''}`,
    },
    hconcat: [
      {
        title: { text: 'Loss per epoch', subtitle: 'solid: training average, dashed: test set' },
        width: 360,
        height: 260,
        data: { values: losses },
        // one line per loss field: colour by part, dashed for the test set
        mark: { type: 'line', strokeWidth: 2, point },
        encoding: {
          x: epochAxis,
          y: { field: 'value', type: 'quantitative', title: log ? 'loss (log scale)' : 'loss', scale: log ? { type: 'log' } : { zero: false } },
          color: { field: 'part', type: 'nominal', title: 'loss', scale: { scheme: 'tableau10' }, legend: { symbolType: 'stroke', symbolStrokeWidth: 2 } },
          strokeDash: {
            field: 'split',
            type: 'nominal',
            title: 'data',
            sort: ['train', 'test'],
            // vega draws this legend's symbols without a stroke: the panel's subtitle says which is which
            legend: null,
          },
          detail: { field: 'series', type: 'nominal' },
        },
      },
      {
        title: 'Test accuracy per epoch',
        width: 360,
        height: 260,
        data: { values: accuracy },
        mark: { type: 'line', strokeWidth: 2, point, color: '#4c78a8' },
        encoding: { x: epochAxis, y: { field: 'value', type: 'quantitative', title: 'test accuracy (%)', scale: { zero: false } } },
      },
    ],
    resolve: { scale: { x: 'independent', y: 'independent' } },
  };
}

export interface PlotOptions {
  /** The SVG file to write (default RUN_DIR/curves.svg). */
  out?: string;
  /** Replace `out` if it exists (without it, an existing file is an error). */
  overwrite?: boolean;
}

/** Draw RUN_DIR's curves to an SVG file, written atomically; returns the path, the size in px and what it holds. */
export async function plotRun(
  runDir: string,
  options: PlotOptions = {},
): Promise<{ path: string; width: number; height: number; epochs: number; lossSeries: number }> {
  const records = readMetrics(runDir);
  const path = options.out ?? join(runDir, CURVES_FILE);
  if (extname(path).toLowerCase() !== '.svg') throw new Error(`${path}: the figure is SVG; name the output FILE.svg`);
  refuseToReplace([path], options.overwrite, { option: 'out', flag: '-o FILE.svg' });
  const figure = await renderSvg(curvesFigure(records, `Training curves: ${basename(resolve(runDir))}`));
  sweepTempFiles(dirname(resolve(path)), [basename(path)]);
  writeFileAtomic(path, figure.svg);
  const lossKeys = new Set(records.flatMap((r) => Object.keys(r).filter((k) => k.endsWith('_loss') && typeof r[k] === 'number')));
  return { path, width: figure.width, height: figure.height, epochs: records.length, lossSeries: lossKeys.size };
}
