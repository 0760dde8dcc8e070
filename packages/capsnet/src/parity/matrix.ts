/** Compares each backend's outputs with the reference and prints the parity matrix. */
import type { MeasureResult } from './measure.ts';
import type { Reference } from './reference.ts';

export interface Tolerances {
  lengths: number;
  capsules: number;
  reconstruction: number;
  /** Reference top-two gaps below this are near-ties, where a different argmax is allowed. */
  tieGap: number;
}

/**
 * Largest |diff| from the tfjs float32 reference per weight precision of the ONNX file (`capsnet.precision`).
 * fp32 is the float32 rounding of a different op order. fp16 and int8 files compute in float32 from rounded
 * weights, so their bounds are that rounding's effect on a trained model (relative weight error 2^-11 for fp16,
 * up to 1/254 of each channel's largest weight for int8), measured on the small preset trained 3 epochs (largest
 * length difference over the 2,000 test digits: fp16 1.1e-4, int8 5.3e-3; parity's inputs: 9.6e-5 and 3.3e-3 on
 * every backend) with 3-5x headroom. int8 was measured again on the converged pretrained mnist-small (its larger
 * weights round coarser: `capsnet parity --pretrained mnist-small:int8 --digits 300` on node-cpu, 308 inputs:
 * lengths 7.3e-3, capsules 2.7e-3, reconstruction 4.2e-2, decoder 3.9e-2), and its bounds are 3.5-4x those.
 * The tie gap is the lengths bound, since a class whose length is within it of the winner's may win instead.
 */
export const TOLERANCES_BY_PRECISION: Record<string, Tolerances> = {
  fp32: { lengths: 1e-5, capsules: 1e-4, reconstruction: 1e-4, tieGap: 1e-5 },
  fp16: { lengths: 5e-4, capsules: 5e-4, reconstruction: 1e-3, tieGap: 5e-4 },
  int8: { lengths: 3e-2, capsules: 1e-2, reconstruction: 1.5e-1, tieGap: 3e-2 },
};

export const TOLERANCES: Tolerances = TOLERANCES_BY_PRECISION.fp32!;

/**
 * fp16 files with fp16 compute (`capsnet.compute_precision` fp16, export/precision.ts): besides the weights, the
 * activations of conv1, PrimaryCaps, u_hat and the decoder's dense layers are rounded to fp16 (relative 2^-11 per
 * op) before the float32 squash and routing. Measured on the small preset trained 3 epochs (97.75%): against the
 * tfjs float32 reference on parity's 24 inputs, node-cpu, node-wasm and chromium-wasm (where ORT runs the half ops
 * in float32) differ by lengths 9.4e-5, capsules 3.3e-5, reconstruction 1.2e-4, argmax 24/24; against the fp32
 * export over the 2,000 test digits, lengths by at most 1.25e-4 on ORT cpu, and 1.31e-4 with its optimisations off,
 * where the activations really are rounded to fp16 between ops (fp16 weights alone: 1.24e-4), with the same
 * accuracy and 100% agreement. GPU half kernels (CUDA; WebGPU with shader-f16) also round
 * inside each op (products, and partial sums where a kernel accumulates in half), which no machine here can
 * measure (SwiftShader has no shader-f16): the bounds are 4x fp16 weights' (about 20x the CPU measurement), and
 * the GPU check (bench/gpu-bundle, scripts/gpu-check.sh) holds CUDA and WebGPU to them. The tie gap is the lengths bound.
 */
export const FP16_COMPUTE_TOLERANCES: Tolerances = { lengths: 2e-3, capsules: 2e-3, reconstruction: 5e-3, tieGap: 2e-3 };

/**
 * The tolerances for a file's weight precision and compute precision (`capsnet.compute_precision`, fp32 for
 * files without it); an unknown precision is an error that names the known ones.
 */
export function tolerancesFor(precision: string, computePrecision = 'fp32'): Tolerances {
  if (computePrecision === 'fp16') {
    if (precision !== 'fp16') throw new Error(`the model computes in fp16 but stores ${precision} weights: only fp16 files compute in fp16; re-export it`);
    return FP16_COMPUTE_TOLERANCES;
  }
  if (computePrecision !== 'fp32') throw new Error(`the model's compute precision "${computePrecision}" has no parity tolerances: known are fp32, fp16`);
  const t = TOLERANCES_BY_PRECISION[precision];
  if (!t) throw new Error(`the model's precision "${precision}" has no parity tolerances: known are ${Object.keys(TOLERANCES_BY_PRECISION).join(', ')}`);
  return t;
}

export interface BackendRow {
  backend: string;
  /** What really ran it (device report, adapter). */
  ranOn: string;
  status: 'pass' | 'fail' | 'skipped' | 'error' | 'reference';
  /** Skip or error reason, or which tolerances failed. */
  reason?: string;
  count?: number;
  maxAbs?: { lengths: number; capsules: number; reconstruction: number; decoder: number };
  /** mismatches: argmax differs where the reference's top two are clear apart (a failure); flippedTies: differs at a near-tie (allowed, reported). */
  argmax?: { agree: number; compared: number; mismatches: number[]; flippedTies: Array<{ image: number; gap: number }> };
  medianMs?: number;
  latenciesMs?: number[];
  loadMs?: number;
  /** Peak resident memory of the process that computed the row (the reference: parity's own), bytes; absent in a browser. */
  peakRssBytes?: number;
}

export function median(values: number[]): number {
  if (!values.length) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Largest |a-b| over the elements of the images in `images`; NaN anywhere gives NaN. */
function maxAbsDiff(a: Float32Array, b: Float32Array, per: number, images: number[]): number {
  let worst = 0;
  for (const n of images) {
    for (let i = n * per; i < (n + 1) * per; i++) {
      const d = Math.abs(a[i]! - b[i]!);
      if (Number.isNaN(d)) return Number.NaN;
      if (d > worst) worst = d;
    }
  }
  return worst;
}

export function compare(backend: string, ranOn: string, result: MeasureResult, ref: Reference, tol: Tolerances = TOLERANCES): BackendRow {
  const { numClasses: k, digitDim: d } = ref.config;
  const pixels = ref.reconstruction.length / ref.labels.length;
  const n = result.count;
  const all = Array.from({ length: n }, (_, i) => i);
  const mismatches: number[] = [];
  const flippedTies: Array<{ image: number; gap: number }> = [];
  for (const i of all) {
    if (result.labels[i] === ref.labels[i]) continue;
    if (ref.topGap[i]! < tol.tieGap) flippedTies.push({ image: i, gap: ref.topGap[i]! });
    else mismatches.push(i);
  }
  // The reconstruction is masked by the longest capsule: where a near-tie flipped it, it cannot match.
  const sameMask = all.filter((i) => result.labels[i] === ref.labels[i]);
  const maxAbs = {
    lengths: maxAbsDiff(result.lengths, ref.lengths, k, all),
    capsules: maxAbsDiff(result.capsules, ref.capsules, k * d, all),
    reconstruction: maxAbsDiff(result.reconstruction, ref.reconstruction, pixels, sameMask),
    decoder: maxAbsDiff(result.decoded, ref.reconstruction, pixels, all),
  };
  const failed: string[] = [];
  if (!(maxAbs.lengths <= tol.lengths)) failed.push(`lengths ${fmt(maxAbs.lengths)} > ${tol.lengths}`);
  if (!(maxAbs.capsules <= tol.capsules)) failed.push(`capsules ${fmt(maxAbs.capsules)} > ${tol.capsules}`);
  if (!(maxAbs.reconstruction <= tol.reconstruction)) failed.push(`reconstruction ${fmt(maxAbs.reconstruction)} > ${tol.reconstruction}`);
  if (!(maxAbs.decoder <= tol.reconstruction)) failed.push(`decoder ${fmt(maxAbs.decoder)} > ${tol.reconstruction}`);
  if (mismatches.length) failed.push(`argmax differs on image(s) ${mismatches.join(', ')}`);
  return {
    backend,
    ranOn,
    status: failed.length ? 'fail' : 'pass',
    ...(failed.length ? { reason: failed.join('; ') } : {}),
    count: n,
    maxAbs,
    argmax: { agree: all.filter((i) => result.labels[i] === ref.labels[i]).length, compared: n, mismatches, flippedTies },
    medianMs: median(result.latenciesMs),
    latenciesMs: result.latenciesMs,
    loadMs: result.loadMs,
    ...(result.peakRssBytes === undefined ? {} : { peakRssBytes: result.peakRssBytes }),
  };
}

export function fmt(x: number | undefined): string {
  if (x === undefined) return '-';
  if (Number.isNaN(x)) return 'NaN';
  if (x === 0) return '0';
  return x.toExponential(1);
}

function ms(x: number | undefined): string {
  if (x === undefined || Number.isNaN(x)) return '-';
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** Images whose two longest reference capsules are within the tie tolerance. */
export function nearTies(ref: Reference, tol: Tolerances = TOLERANCES): Array<{ image: number; gap: number }> {
  return ref.topGap.flatMap((gap, image) => (gap < tol.tieGap ? [{ image, gap }] : []));
}

/** A plain-text table: one row per backend, then the near-ties (reference) and where a backend's argmax flipped on one. */
export function formatMatrix(rows: BackendRow[], ties: Array<{ image: number; gap: number }> = [], tol: Tolerances = TOLERANCES): string {
  const header = ['backend', 'n', 'lengths', 'capsules', 'recon', 'decoder', 'argmax', 'median ms', 'peak MiB', 'status', 'ran on / reason'];
  const body = rows.map((r) => [
    r.backend,
    r.count === undefined ? '-' : String(r.count),
    fmt(r.maxAbs?.lengths),
    fmt(r.maxAbs?.capsules),
    fmt(r.maxAbs?.reconstruction),
    fmt(r.maxAbs?.decoder),
    r.argmax ? `${r.argmax.agree}/${r.argmax.compared}` : '-',
    ms(r.medianMs),
    r.peakRssBytes === undefined ? '-' : (r.peakRssBytes / 2 ** 20).toFixed(0),
    r.status,
    r.status === 'pass' || r.status === 'reference' ? r.ranOn : `${r.reason ?? ''}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.filter(() => i < header.length - 1).map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  const out = [line(header), line(widths.map((w, i) => (i === widths.length - 1 ? '-'.repeat(15) : '-'.repeat(w)))), ...body.map(line)];
  if (ties.length) {
    const shown = ties
      .slice(0, 12)
      .map((t) => `${t.image} (gap ${fmt(t.gap)})`)
      .join(', ');
    out.push(
      '',
      `near-ties in the reference (top two lengths within ${tol.tieGap}; argmax may differ there): ` +
        `${ties.length} image(s): ${shown}${ties.length > 12 ? ', ...' : ''}`,
    );
    for (const r of rows) {
      if (r.argmax?.flippedTies.length)
        out.push(`  ${r.backend} picked another class at near-tie image(s) ${r.argmax.flippedTies.map((t) => t.image).join(', ')}`);
    }
  }
  return out.join('\n');
}
