/**
 * scripts/gpu-check.sh's summary: the parity report and the inference benchmark, joined into one table.
 *   node --import tsx parity/gpu-table.ts PARITY.json BENCH.json
 */
import { readFileSync } from 'node:fs';
import { fmt } from './matrix.ts';
import type { ParityReport } from './run.ts';

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

/** Benchmark backend -> parity backend. */
const PAIRS: Array<[string, string]> = [
  ['tfjs', 'tfjs (reference)'],
  ['ort-node-cpu-1t', 'node-cpu'],
  ['ort-node-cpu-2t', 'node-cpu'],
  ['ort-node-cuda', 'node-cuda'],
  ['ort-node-webgpu', 'node-webgpu'],
  ['ort-web-wasm', 'node-wasm'],
];

export function gpuTable(parity: ParityReport | null, bench: { rows: BenchRow[] } | null): string {
  const header = ['backend', 'parity', 'lengths', 'capsules', 'recon', 'argmax', 'batch-1 ms', 'batch', 'img/s', 'GFLOP/s', 'ran on / reason'];
  const rows: string[][] = [];
  for (const [benchName, parityName] of PAIRS) {
    const p = parity?.rows.find((r) => r.backend === parityName);
    const b = bench?.rows.find((r) => r.backend === benchName);
    if (!p && !b) continue;
    const num = (x: number | undefined, d = 1) => (x === undefined ? '-' : x.toFixed(d));
    const reasons = [p && p.status !== 'pass' && p.status !== 'reference' ? `parity ${p.status}: ${p.reason}` : '', b && b.status !== 'ok' ? `bench ${b.status}: ${b.reason}` : '']
      .filter(Boolean).join('; ');
    rows.push([
      benchName,
      p?.status ?? 'not run',
      fmt(p?.maxAbs?.lengths), fmt(p?.maxAbs?.capsules), fmt(p?.maxAbs?.reconstruction),
      p?.argmax ? `${p.argmax.agree}/${p.argmax.compared}` : '-',
      num(b?.batch1Ms, 2), b?.batch ? String(b.batch) : '-', num(b?.imagesPerS), num(b?.gflops, 2),
      reasons || (b?.ranOn ?? p?.ranOn ?? ''),
    ]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (i === header.length - 1 ? 0 : r[i]!.length))));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  const out = [line(header), line(widths.map((w, i) => '-'.repeat(i === widths.length - 1 ? 15 : w))), ...rows.map(line)];
  if (parity) out.push('', parity.ok ? 'parity: OK' : `parity: FAILED: ${parity.failures.join('; ')}`);
  return out.join('\n');
}

if (process.argv[1]?.endsWith('gpu-table.ts')) {
  const read = (path: string | undefined) => {
    try {
      return path ? JSON.parse(readFileSync(path, 'utf8')) : null;
    } catch {
      return null;
    }
  };
  console.log(gpuTable(read(process.argv[2]), read(process.argv[3])));
}
