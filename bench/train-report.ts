/** `npm run bench:train`: the rows, their ratios to PyTorch, and the printed tables. */
import { fmt, textTable } from './harness.ts';
import type { KernelTiming, PartTiming } from './train-step.ts';

export interface Row {
  backend: string;
  detail: string;
  batch: number | null;
  step_s: number | null;
  forward_s: number | null;
  step_over_forward: number | null;
  images_per_s: number | null;
  step_gflops_per_s: number | null;
  forward_gflops_per_s: number | null;
  /** Median CPU seconds (user + system, all threads) per step: less sensitive to other processes than wall time. */
  step_cpu_s: number | null;
  peak_rss_mb: number | null;
  note: string;
  /** Busy processes beside the step while it was timed (`--compete`); its label ends in busyProcesses(n). */
  busy_processes?: number;
  /** Highest fraction of the CPUs busy with other work seen before a timed repetition (Linux only). */
  cpu_busy_by_others?: number | null;
  kernels?: KernelTiming[];
  parts?: PartTiming[];
  raw?: { step_s: number[] | null; forward_s: number[] };
}
/** Each tfjs row's step against the PyTorch row at the same batch (wall and CPU time). */
export function ratios(rows: Row[]): { backend: string; batch: number; step_vs_pytorch: number; step_cpu_vs_pytorch: number | null }[] {
  const out = [];
  for (const r of rows) {
    const ref = rows.find((t) => t.backend.startsWith('pytorch') && t.batch === r.batch && t.step_s != null);
    if (!ref || r === ref || r.step_s == null || r.backend.startsWith('pytorch')) continue;
    out.push({
      backend: r.backend,
      batch: r.batch!,
      step_vs_pytorch: r.step_s / ref.step_s!,
      step_cpu_vs_pytorch: r.step_cpu_s != null && ref.step_cpu_s != null ? r.step_cpu_s / ref.step_cpu_s : null,
    });
  }
  return out;
}

/** "N busy process(es)": the words a `--compete` row's label ends in (after " + ") and its note uses. */
export function busyProcesses(n: number): string {
  return `${n} busy process${n === 1 ? '' : 'es'}`;
}

/** Rows timed beside busy processes (`--compete`) against the same backend's quiet row at the same batch. */
export function contention(rows: Row[]): { backend: string; batch: number; busy_processes: number; slowdown: number; cpu_wall: number | null }[] {
  const out = [];
  for (const r of rows) {
    const n = r.busy_processes;
    if (!n || r.step_s == null) continue;
    const label = r.backend.slice(0, -` + ${busyProcesses(n)}`.length);
    const quiet = rows.find((q) => !q.busy_processes && q.backend === label && q.batch === r.batch && q.step_s != null);
    if (!quiet) continue;
    out.push({
      backend: quiet.backend,
      batch: r.batch!,
      busy_processes: n,
      slowdown: r.step_s / quiet.step_s!,
      cpu_wall: r.step_cpu_s != null ? r.step_cpu_s / r.step_s : null,
    });
  }
  return out;
}

/** The main table, the ratios to PyTorch, each row's step cut into parts, and the convolution kernels. */
export function formatReport(rows: Row[]): string {
  const out: string[] = [];
  out.push(
    textTable(
      ['backend', 'batch', 'step s', 'step CPU s', 'forward s', 'step/fwd', 'images/s', 'step GFLOP/s', 'fwd GFLOP/s', 'peak RSS MB', 'note'],
      rows.map((r) => [
        r.backend,
        r.batch == null ? '-' : String(r.batch),
        fmt(r.step_s, 3),
        fmt(r.step_cpu_s, 2),
        fmt(r.forward_s, 3),
        fmt(r.step_over_forward, 2),
        fmt(r.images_per_s, 1),
        fmt(r.step_gflops_per_s, 1),
        fmt(r.forward_gflops_per_s, 1),
        fmt(r.peak_rss_mb, 0),
        r.note,
      ]),
    ),
  );
  const rs = ratios(rows);
  if (rs.length > 0) {
    out.push('\nstep time / PyTorch step time at the same batch (same run; CPU = user + system seconds of all threads):');
    for (const r of rs) {
      out.push(
        `  ${r.backend.padEnd(22)} batch ${String(r.batch).padEnd(4)} ${r.step_vs_pytorch.toFixed(2)}x wall, ` +
          `${r.step_cpu_vs_pytorch == null ? '-' : r.step_cpu_vs_pytorch.toFixed(2)}x CPU`,
      );
    }
  }
  const shared = contention(rows);
  if (shared.length > 0) {
    out.push('\nthe step beside busy processes / the same step alone (same run; the target is <= 2.2x for one busy process on 2 cores):');
    for (const c of shared) {
      out.push(
        `  ${c.backend.padEnd(22)} batch ${String(c.batch).padEnd(4)} ${c.slowdown.toFixed(2)}x slower beside ${busyProcesses(c.busy_processes)} ` +
          `(CPU/wall ${c.cpu_wall == null ? '-' : c.cpu_wall.toFixed(2)})`,
      );
    }
  }
  for (const r of rows) {
    if (!r.parts) continue;
    const sum = r.parts.reduce((a, p) => a + p.total_s, 0);
    const ms = (x: number | null) => (x == null ? '-' : (x * 1000).toFixed(0));
    const sumCpu = r.parts.reduce((a, p) => a + p.total_cpu_s, 0);
    const body = r.parts.map((p) => [
      p.part,
      ms(p.forward_s),
      ms(p.backward_s),
      ms(p.total_s),
      r.step_s ? `${((100 * p.total_s) / r.step_s).toFixed(0)}%` : '-',
      ms(p.forward_cpu_s),
      p.forward_cpu_s == null ? '-' : ms(Math.max(0, p.total_cpu_s - p.forward_cpu_s)),
      ms(p.total_cpu_s),
      r.step_cpu_s ? `${((100 * p.total_cpu_s) / r.step_cpu_s).toFixed(0)}%` : '-',
    ]);
    body.push([
      'sum of parts',
      '',
      '',
      ms(sum),
      r.step_s ? `${((100 * sum) / r.step_s).toFixed(0)}%` : '-',
      '',
      '',
      ms(sumCpu),
      r.step_cpu_s ? `${((100 * sumCpu) / r.step_cpu_s).toFixed(0)}%` : '-',
    ]);
    out.push(
      `\n${r.backend} at batch ${r.batch}: the step in parts, each timed alone (best of 3; step median ` +
        `${ms(r.step_s)} ms wall, ${ms(r.step_cpu_s)} ms CPU):`,
    );
    out.push(textTable(['part', 'fwd ms', 'bwd ms', 'total ms', 'of step', 'fwd CPU ms', 'bwd CPU ms', 'total CPU ms', 'of step CPU'], body, '  '));
  }
  for (const r of rows) {
    if (!r.kernels) continue;
    out.push(`\n${r.backend} convolution kernels at batch ${r.batch} (best of 3 after a warm-up):`);
    for (const k of r.kernels) {
      out.push(
        `  ${k.layer.padEnd(12)} ${k.kernel.padEnd(16)} ${(k.seconds * 1000).toFixed(0).padStart(6)} ms  ` + `${k.gflops.toFixed(1).padStart(6)} GFLOP/s`,
      );
    }
  }
  return out.join('\n');
}
