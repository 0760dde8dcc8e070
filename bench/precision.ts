/**
 * `npm run bench:precision -- --checkpoint RUN_DIR`: what fp16 and int8 exports cost and save against fp32.
 * For each precision (fp16 twice: with its default fp16 compute and with `--compute fp32`): model and decoder file
 * sizes, accuracy on the checkpoint's whole test set (ORT-node cpu),
 * agreement with the fp32 export's predictions and the largest capsule-length difference from it, and latency per
 * backend (bench/infer.ts run on that file, one process per backend). Prints a table, checks the targets
 * (int8 <= 35% of the fp32 file and within 1 accuracy point; fp16 within 0.2 points), and writes
 * bench-results/precision.json (temp file + rename).
 *
 *   npm run bench:precision -- --checkpoint runs/small [--backends ort-node-cpu-1t,ort-web-wasm,ort-node-webgpu]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { CapsNet } from '@capsnet-onnx/runtime/node';
import { exportCheckpoint } from '../packages/capsnet/src/export/exporter.ts';
import type { ComputePrecision, Precision } from '../packages/capsnet/src/export/precision.ts';
import { loadCheckpoint } from '../packages/capsnet/src/files/checkpoint.ts';
import { loadDataset, loadMnistSample } from '../packages/capsnet/src/data/datasets.ts';
import { benchArgs, existingPath, machineInfo, runBench, userPath, writeReport } from './harness.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The issue's targets: file size as a fraction of fp32, and accuracy points lost at most. */
export const TARGETS: Record<Precision, { maxSizeRatio: number; maxAccuracyDropPoints: number }> = {
  fp32: { maxSizeRatio: 1, maxAccuracyDropPoints: 0 },
  fp16: { maxSizeRatio: 0.55, maxAccuracyDropPoints: 0.2 },
  int8: { maxSizeRatio: 0.35, maxAccuracyDropPoints: 1 },
};

interface LatencyRow {
  backend: string;
  status: string;
  batch1Ms?: number;
  imagesPerS?: number;
  reason?: string;
}

/** The exports compared, fp32 first (the baseline of every ratio). */
const VARIANTS: Array<{ precision: Precision; compute?: ComputePrecision }> = [
  { precision: 'fp32' },
  { precision: 'fp16', compute: 'fp32' },
  { precision: 'fp16', compute: 'fp16' },
  { precision: 'int8' },
];

interface PrecisionRow {
  precision: Precision;
  computePrecision: ComputePrecision;
  modelBytes: number;
  decoderBytes: number;
  sizeRatio: number;
  accuracy: number;
  accuracyDropPoints: number;
  agreementWithFp32: number;
  maxAbsLengthDiff: number;
  latency: LatencyRow[];
  meetsTargets: boolean;
}

async function evaluate(model: string, images: Float32Array, count: number, pixels: number) {
  const net = await CapsNet.load(model, { device: 'cpu' });
  const labels = new Int32Array(count);
  const lengths: Float32Array[] = [];
  try {
    for (let start = 0; start < count; start += 100) {
      const n = Math.min(100, count - start);
      const m = net.metadata;
      const results = await net.classify({
        data: images.subarray(start * pixels, (start + n) * pixels),
        shape: [n, m.inputHeight, m.inputWidth, m.inputChannels],
      });
      results.forEach((r, k) => {
        labels[start + k] = r.longest;
        lengths.push(r.lengths);
      });
    }
  } finally {
    await net.dispose();
  }
  return { labels, lengths };
}

const fmt = (x: number | undefined, digits: number) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits));

async function main(): Promise<void> {
  const { values } = benchArgs(
    import.meta.url,
    {
      options: {
        checkpoint: { type: 'string' },
        backends: { type: 'string', default: 'ort-node-cpu-1t,ort-web-wasm,ort-node-webgpu' },
        batch: { type: 'string', default: '16' },
        'latency-runs': { type: 'string', default: '10' },
        'test-limit': { type: 'string' },
        out: { type: 'string', default: join(ROOT, 'bench-results', 'precision.json') },
      },
    },
    { batch: 'count', 'latency-runs': 'count', 'test-limit': 'count' },
  );
  if (!values.checkpoint)
    throw new Error('give --checkpoint RUN_DIR: a trained run (accuracy needs trained weights), e.g. from `capsnet train --preset small`');
  values.checkpoint = existingPath(values.checkpoint, '--checkpoint');
  values.out = userPath(values.out!);
  const checkpoint = loadCheckpoint(values.checkpoint);
  const data = checkpoint.dataset === 'mnist-sample' ? loadMnistSample() : loadDataset(checkpoint.dataset);
  const pixels = data.shape.inputHeight * data.shape.inputWidth * data.shape.inputChannels;
  const count = Math.min(data.test.count, values['test-limit'] ? Number(values['test-limit']) : Infinity);
  const dir = mkdtempSync(join(tmpdir(), 'capsnet-bench-precision-'));
  const log = (line: string) => console.log(line);
  log(`bench:precision: ${values.checkpoint} (${checkpoint.dataset}, ${count} test images); latency: ${values.backends}`);
  const rows: PrecisionRow[] = [];
  try {
    let fp32: { labels: Int32Array; lengths: Float32Array[]; bytes: number } | undefined;
    for (const { precision, compute } of VARIANTS) {
      const out = join(dir, `model.${precision}${compute ? `-${compute}` : ''}.onnx`);
      const exported = exportCheckpoint(values.checkpoint, { out, precision, compute });
      const { labels, lengths } = await evaluate(out, data.test.images, count, pixels);
      const correct = labels.reduce((a, l, i) => a + (l === data.test.labels[i] ? 1 : 0), 0);
      const accuracy = correct / count;
      fp32 ??= { labels, lengths, bytes: exported.modelBytes };
      const agree = labels.reduce((a, l, i) => a + (l === fp32!.labels[i] ? 1 : 0), 0) / count;
      let maxAbs = 0;
      lengths.forEach((row, i) => row.forEach((v, j) => (maxAbs = Math.max(maxAbs, Math.abs(v - fp32!.lengths[i]![j]!)))));
      log(`${precision} weights, ${exported.computePrecision} compute: ${exported.modelBytes} bytes, accuracy ${(100 * accuracy).toFixed(2)}%; latency...`);
      const inferJson = join(dir, `infer.${precision}-${exported.computePrecision}.json`);
      await execa(
        'node',
        [
          '--conditions=capsnet-source',
          '--import',
          'tsx',
          join(ROOT, 'bench', 'infer.ts'),
          '--model',
          out,
          '--checkpoint',
          values.checkpoint,
          '--backends',
          values.backends!,
          '--batch',
          values.batch!,
          '--latency-runs',
          values['latency-runs']!,
          '--throughput-runs',
          '3',
          '--out',
          inferJson,
        ],
        { cwd: ROOT, stdio: 'inherit' },
      );
      const infer = JSON.parse(readFileSync(inferJson, 'utf8')) as { rows: LatencyRow[] };
      const fp32Accuracy = rows[0]?.accuracy ?? accuracy;
      const drop = 100 * (fp32Accuracy - accuracy);
      const sizeRatio = exported.modelBytes / fp32.bytes;
      const target = TARGETS[precision];
      rows.push({
        precision,
        computePrecision: exported.computePrecision,
        modelBytes: exported.modelBytes,
        decoderBytes: exported.decoderBytes,
        sizeRatio,
        accuracy,
        accuracyDropPoints: drop,
        agreementWithFp32: agree,
        maxAbsLengthDiff: maxAbs,
        latency: infer.rows.map((r) => ({
          backend: r.backend,
          status: r.status,
          batch1Ms: r.batch1Ms,
          imagesPerS: r.imagesPerS,
          ...(r.reason ? { reason: r.reason } : {}),
        })),
        meetsTargets: sizeRatio <= target.maxSizeRatio && drop <= target.maxAccuracyDropPoints,
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const backends = rows[0]!.latency.map((l) => l.backend);
  const header = [
    'precision',
    'compute',
    'model bytes',
    '% of fp32',
    'decoder bytes',
    'accuracy %',
    'drop (pts)',
    'agree fp32 %',
    'max |d len|',
    ...backends.map((b) => `${b} ms (b1)`),
    ...backends.map((b) => `${b} img/s`),
    'targets',
  ];
  const body = rows.map((r) => [
    r.precision,
    r.computePrecision,
    String(r.modelBytes),
    fmt(100 * r.sizeRatio, 1),
    String(r.decoderBytes),
    fmt(100 * r.accuracy, 2),
    fmt(r.accuracyDropPoints, 2),
    fmt(100 * r.agreementWithFp32, 2),
    r.maxAbsLengthDiff.toExponential(1),
    ...backends.map((b) => fmt(r.latency.find((l) => l.backend === b)?.batch1Ms, 2)),
    ...backends.map((b) => fmt(r.latency.find((l) => l.backend === b)?.imagesPerS, 1)),
    r.precision === 'fp32' ? '-' : r.meetsTargets ? 'met' : 'MISSED',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  log('');
  log([line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n'));
  // A backend that could not run a file (WebGPU without shader-f16 for fp16 compute) is '-' above; say why.
  for (const r of rows) {
    for (const l of r.latency)
      if (l.status !== 'ok') log(`${r.precision} weights, ${r.computePrecision} compute, ${l.backend}: ${l.status}: ${l.reason ?? ''}`);
  }
  log(
    `targets: int8 <= ${100 * TARGETS.int8.maxSizeRatio}% of the fp32 file and within ${TARGETS.int8.maxAccuracyDropPoints} point; ` +
      `fp16 within ${TARGETS.fp16.maxAccuracyDropPoints} points. Latency: median batch-1 ms and batch-${values.batch} images/s (bench/infer.ts).`,
  );
  const report = {
    checkpoint: values.checkpoint,
    dataset: checkpoint.dataset,
    testImages: count,
    targets: TARGETS,
    machine: machineInfo(),
    date: new Date().toISOString(),
    rows,
  };
  writeReport(values.out!, report);
  log(`\nwrote ${values.out}`);
  if (rows.some((r) => !r.meetsTargets)) process.exitCode = 1;
}

await runBench(import.meta.url, main);
