/**
 * scripts/gpu-check.sh's summary: the parity report, the inference benchmark (of the fp32 model, and of its fp16
 * export with fp16 compute), and the training timings (a paper-size step per tfjs backend from bench:train, and
 * one small-preset epoch from `capsnet train`), joined into one table and one JSON file.
 *   node --import tsx parity/gpu-table.ts DIR [--json OUT]
 * reads DIR/parity.json, DIR/infer.json, DIR/parity-fp16.json, DIR/infer-fp16.json, DIR/train.json and
 * DIR/epoch/metrics.jsonl (+ DIR/epoch.status, the epoch run's exit line); a missing or unreadable file gives rows
 * marked "not run" with the reason, never a crash.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { writeFileAtomic } from '../files/atomic.ts';
import { fmt } from './matrix.ts';
import type { ParityReport } from './run.ts';
import { benchTargets } from './devices.ts';

interface BenchRow {
  backend: string;
  status: string;
  reason?: string;
  ranOn: string;
  batch1Ms?: number;
  batch?: number;
  imagesPerS?: number;
  gflops?: number;
}

/** The parts of a bench:train row (bench/train.ts) the summary shows. */
interface TrainRow {
  backend: string;
  detail: string;
  batch: number | null;
  step_s: number | null;
  step_over_forward: number | null;
  images_per_s: number | null;
  step_gflops_per_s: number | null;
  note: string;
}

/** One line of a run's metrics.jsonl (files/checkpoint.ts's EpochMetrics), the fields shown here. */
interface EpochLine {
  epoch: number;
  step: number;
  test_accuracy: number;
  images_per_second: number;
  backend: string;
  seconds: number;
}

export interface GpuCheckResults {
  parity: ParityReport | null;
  infer: { rows: BenchRow[] } | null;
  /** The same for the fp16 export with fp16 compute (its parity held to the fp16-compute tolerances). */
  parityFp16: ParityReport | null;
  inferFp16: { rows: BenchRow[] } | null;
  train: { rows: TrainRow[] } | null;
  /** The small-preset epoch: its metrics line, or why there is none. */
  epoch: { metrics: EpochLine; batch: number | null } | { missing: string };
  /** Why a file was unreadable, by file name. */
  problems: Record<string, string>;
}

/**
 * Benchmark row -> parity row, from the device table (parity/devices.ts): tfjs with the reference, each Node bench
 * row with its device's node-* parity row. A thread variant the bench did not run (ort-web-wasm-mt) is left out
 * when another row already shows that device's parity.
 */
const PAIRS: Array<[string, string]> = benchTargets()
  .filter((t) => t.parity !== null)
  .sort((a, b) => Number(a.row !== null) - Number(b.row !== null))
  .map((t) => [t.name, t.parity!]);

function readJson<T>(path: string, problems: Record<string, string>, name: string): T | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    problems[name] = 'not written (that step did not run or did not finish)';
    return null;
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    problems[name] = `not valid JSON (${(e as Error).message})`;
    return null;
  }
}

/** Reads a gpu-check results folder; never throws for missing or broken files (they are listed in `problems`). */
export function readGpuCheck(dir: string): GpuCheckResults {
  const problems: Record<string, string> = {};
  const parity = readJson<ParityReport>(join(dir, 'parity.json'), problems, 'parity.json');
  const infer = readJson<{ rows: BenchRow[] }>(join(dir, 'infer.json'), problems, 'infer.json');
  const parityFp16 = readJson<ParityReport>(join(dir, 'parity-fp16.json'), problems, 'parity-fp16.json');
  const inferFp16 = readJson<{ rows: BenchRow[] }>(join(dir, 'infer-fp16.json'), problems, 'infer-fp16.json');
  const train = readJson<{ rows: TrainRow[] }>(join(dir, 'train.json'), problems, 'train.json');
  let epoch: GpuCheckResults['epoch'];
  let status = '';
  try {
    status = readFileSync(join(dir, 'epoch.status'), 'utf8').trim();
  } catch {
    // No status line: the epoch step did not run.
  }
  const batch = Number(/batch (\d+)/.exec(status)?.[1] ?? NaN);
  try {
    const lines = readFileSync(join(dir, 'epoch', 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.trim());
    const last = lines.at(-1);
    epoch = last
      ? { metrics: JSON.parse(last) as EpochLine, batch: Number.isFinite(batch) ? batch : null }
      : { missing: `no epoch finished${status ? ` (${status})` : ''}` };
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no metrics.jsonl' : `metrics.jsonl unreadable (${(e as Error).message})`;
    epoch = { missing: `${why}${status ? `: ${status}` : ': the epoch step did not run'}` };
  }
  return { parity, infer, parityFp16, inferFp16, train, epoch, problems };
}

/**
 * One table: a row per inference backend (parity columns, batch-1 latency, throughput), a row per training
 * backend (a paper-size step: ms is the step, img/s the training images per second) and the small-preset epoch
 * (ms is the whole epoch with its evaluation).
 */
export function gpuTable(r: GpuCheckResults): string {
  const { parity, infer, parityFp16, inferFp16 } = r;
  const header = ['row', 'parity', 'lengths', 'capsules', 'recon', 'argmax', 'ms', 'batch', 'img/s', 'GFLOP/s', 'ran on / reason'];
  const rows: string[][] = [];
  const num = (x: number | null | undefined, d = 1) => (x == null || !Number.isFinite(x) ? '-' : x.toFixed(d));
  const inferRows = (label: string, par: ParityReport | null, inf: { rows: BenchRow[] } | null, file: string, pairs = PAIRS) => {
    const shown = new Set<string>();
    for (const [benchName, parityName] of pairs) {
      const p = par?.rows.find((row) => row.backend === parityName);
      const b = inf?.rows.find((row) => row.backend === benchName);
      if (!p && !b) continue;
      if (!b && shown.has(parityName)) continue;
      shown.add(parityName);
      const reasons = [
        p && p.status !== 'pass' && p.status !== 'reference' ? `parity ${p.status}: ${p.reason}` : '',
        b && b.status !== 'ok' ? `bench ${b.status}: ${b.reason}` : '',
      ]
        .filter(Boolean)
        .join('; ');
      rows.push([
        `${label} ${benchName}`,
        p?.status ?? 'not run',
        fmt(p?.maxAbs?.lengths),
        fmt(p?.maxAbs?.capsules),
        fmt(p?.maxAbs?.reconstruction),
        p?.argmax ? `${p.argmax.agree}/${p.argmax.compared}` : '-',
        num(b?.batch1Ms, 2),
        b?.batch ? String(b.batch) : '-',
        num(b?.imagesPerS),
        num(b?.gflops, 2),
        reasons || (b?.ranOn ?? p?.ranOn ?? ''),
      ]);
    }
    if (!inf && !par) rows.push([label, 'not run', '-', '-', '-', '-', '-', '-', '-', '-', `${file} ${r.problems[file]}`]);
  };
  inferRows('infer', parity, infer, 'infer.json');
  // The fp16 parity's tfjs reference row is the fp32 one's again.
  inferRows(
    'infer fp16',
    parityFp16,
    inferFp16,
    'infer-fp16.json',
    PAIRS.filter(([bench]) => bench !== 'tfjs'),
  );
  for (const t of r.train?.rows ?? []) {
    rows.push([
      `train step ${t.backend}`,
      '-',
      '-',
      '-',
      '-',
      '-',
      num(t.step_s == null ? null : t.step_s * 1000, 0),
      t.batch == null ? '-' : String(t.batch),
      num(t.images_per_s),
      num(t.step_gflops_per_s, 1),
      [t.note, t.step_over_forward != null ? `step/forward ${t.step_over_forward.toFixed(2)}` : '', t.detail].filter(Boolean).join('; '),
    ]);
  }
  if (!r.train) rows.push(['train step', '-', '-', '-', '-', '-', '-', '-', '-', '-', `not run: train.json ${r.problems['train.json']}`]);
  if ('metrics' in r.epoch) {
    const m = r.epoch.metrics;
    rows.push([
      `train epoch ${m.backend}`,
      '-',
      '-',
      '-',
      '-',
      '-',
      num(m.seconds * 1000, 0),
      r.epoch.batch == null ? '-' : String(r.epoch.batch),
      num(m.images_per_second),
      '-',
      `small preset, epoch ${m.epoch} (${m.step} steps), test accuracy ${(100 * m.test_accuracy).toFixed(2)}%`,
    ]);
  } else {
    rows.push(['train epoch', '-', '-', '-', '-', '-', '-', '-', '-', '-', `not run: ${r.epoch.missing}`]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (i === header.length - 1 ? 0 : row[i]!.length))));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  const out = [line(header), line(widths.map((w, i) => '-'.repeat(i === widths.length - 1 ? 15 : w))), ...rows.map(line)];
  out.push(
    '',
    'ms: batch-1 latency (infer), one training step (train step), the whole epoch with its evaluation (train epoch); ' +
      'infer fp16: the fp16 export with fp16 compute, its parity held to the fp16-compute tolerances',
  );
  for (const [name, report, file] of [
    ['parity', parity, 'parity.json'],
    ['parity fp16', parityFp16, 'parity-fp16.json'],
  ] as const) {
    if (report) out.push(report.ok ? `${name}: OK` : `${name}: FAILED: ${report.failures.join('; ')}`);
    else out.push(`${name}: not run (${file} ${r.problems[file]})`);
  }
  return out.join('\n');
}

if (process.argv[1]?.endsWith('gpu-table.ts')) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { json: { type: 'string' } } });
  if (positionals.length !== 1) {
    console.error('usage: node --import tsx parity/gpu-table.ts RESULTS_DIR [--json OUT]');
    process.exit(2);
  }
  const results = readGpuCheck(positionals[0]!);
  console.log(gpuTable(results));
  if (values.json) writeFileAtomic(values.json, `${JSON.stringify(results, null, 2)}\n`);
}
