/**
 * What every benchmark shares: summary statistics (median, nearest-rank percentiles), the steady-state detector
 * for series of step times, seeded inputs, plain-text tables, the machine description (CPU model and ISA flags,
 * cores, load average) and the JSON writer (temp file + rename). FLOP counts come from the core
 * (`countFlops` in packages/core/src/flops.ts), never from a bench's own formula.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { writeFileAtomic } from '../packages/capsnet/src/files/atomic.ts';

// ------------------------------------------------------------------------------------------ statistics

/** Median of `xs` (the mean of the two middle values for an even count). Throws on an empty series. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of an empty series');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * The `p`th percentile (0-100) of `xs` by the nearest-rank method: the smallest sample with at least p% of the
 * samples at or below it (p = 0: the minimum). Always one of the samples. Throws on an empty series or p outside 0-100.
 */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new Error('percentile of an empty series');
  if (!(p >= 0 && p <= 100)) throw new Error(`percentile wants p from 0 to 100, got ${p}`);
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

export interface SteadyState {
  /** Steps before the steady state (the warm-up): the index of the first steady step. */
  warmupSteps: number;
  /** Median of the steps from `warmupSteps` on. */
  stepMedian: number;
  /** 10th and 90th percentiles (nearest rank) of the steady steps. */
  p10: number;
  p90: number;
  /** The window length and tolerance the detection used. */
  window: number;
  tolerance: number;
}

/**
 * The steady state of a series of step times, detected rather than assumed: the first window of `window` steps
 * whose median is within `tolerance` (a fraction: 0.1 = 10%) of the median of the `window` steps right after it.
 * That window's first step and every later one count as steady; the steps before it are the warm-up.
 * Returns null when no window qualifies (too few steps: fewer than 2 x `window`, or still drifting): the caller
 * reports that, instead of a median of warm-up steps.
 */
export function steadyState(steps: readonly number[], window = 5, tolerance = 0.1): SteadyState | null {
  if (!Number.isInteger(window) || window < 1) throw new Error(`steadyState: window must be a positive integer, got ${window}`);
  if (!(tolerance >= 0)) throw new Error(`steadyState: tolerance must be >= 0, got ${tolerance}`);
  for (let start = 0; start + 2 * window <= steps.length; start++) {
    const here = median(steps.slice(start, start + window));
    const next = median(steps.slice(start + window, start + 2 * window));
    if (Math.abs(here - next) <= tolerance * next) {
      const steady = steps.slice(start);
      return { warmupSteps: start, stepMedian: median(steady), p10: percentile(steady, 10), p90: percentile(steady, 90), window, tolerance };
    }
  }
  return null;
}

// ------------------------------------------------------------------------------------------ inputs

/** `n` floats uniform in [0, 1) from a seeded generator (mulberry32): the same inputs on every run and machine. */
export function seededUniform(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  return out;
}

// ------------------------------------------------------------------------------------------ tables

/** A number with `digits` decimals, or '-' for null, NaN and infinities. */
export function fmt(x: number | null | undefined, digits: number): string {
  return x == null || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

/** Columns padded to their widest cell, two spaces apart; the last column is not padded (free text). */
export function textTable(header: string[], body: string[][], indent = ''): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((t) => (i === header.length - 1 ? 0 : (t[i] ?? '').length))));
  const line = (cells: string[]) => indent + cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(header), ...body.map(line)].join('\n');
}

// ------------------------------------------------------------------------------------------ the machine

/** ISA extensions worth knowing for SIMD kernels (x86 names from /proc/cpuinfo; asimd etc. on ARM). */
const CPU_FLAGS = [
  'sse4_1',
  'sse4_2',
  'avx',
  'avx2',
  'fma',
  'f16c',
  'avx512f',
  'avx512bw',
  'avx512vl',
  'avx512_vnni',
  'avx512_bf16',
  'avx512_fp16',
  'avx_vnni',
  'amx_tile',
  'asimd',
  'asimdhp',
  'sve',
];

/**
 * AMD's microarchitecture from the x86 family and model numbers of /proc/cpuinfo (AMD's processor programming
 * references): family 0x17 Zen to Zen 2, 0x19 Zen 3 or Zen 4 by model range, 0x1a Zen 5. Cloud VMs often report the
 * model name as just "AMD EPYC", so the numbers are what tells a Zen 4 from a Zen 5. Null for other vendors.
 */
export function amdMicroarchitecture(vendor: string | undefined, family: number, model: number): string | null {
  if (vendor !== 'AuthenticAMD') return null;
  if (family === 0x17) return model >= 0x30 ? 'Zen 2' : 'Zen / Zen+';
  if (family === 0x19) return (model >= 0x10 && model <= 0x1f) || (model >= 0x60 && model <= 0x7f) || (model >= 0xa0 && model <= 0xaf) ? 'Zen 4' : 'Zen 3';
  if (family === 0x1a) return 'Zen 5';
  return null;
}

/**
 * The CPU model, its x86 family/model numbers and microarchitecture where known, and the SIMD flags of /proc/cpuinfo
 * (Linux; elsewhere the model from os.cpus() and no flags).
 */
export function cpuDescription(cpuinfo?: string): {
  model: string;
  flags: string[];
  family: number | null;
  modelNumber: number | null;
  microarchitecture: string | null;
} {
  let text = cpuinfo;
  if (text == null) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return { model: cpus()[0]?.model ?? 'unknown', flags: [], family: null, modelNumber: null, microarchitecture: null };
    }
  }
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim();
  const have = new Set((field('flags') ?? field('Features') ?? '').split(/\s+/));
  const family = field('cpu family') != null ? Number(field('cpu family')) : null;
  const modelNumber = field('model') != null && /^\d+$/.test(field('model')!) ? Number(field('model')) : null;
  return {
    model: field('model name') ?? cpus()[0]?.model ?? 'unknown',
    flags: CPU_FLAGS.filter((f) => have.has(f)),
    family,
    modelNumber,
    microarchitecture: family != null && modelNumber != null ? amdMicroarchitecture(field('vendor_id'), family, modelNumber) : null,
  };
}

/** Cores, CPU model and flags, platform, Node and the load averages now (timings on a loaded machine read high). */
export function machineInfo() {
  const cpu = cpuDescription();
  const [one, five, fifteen] = loadavg().map((x) => Math.round(x * 100) / 100);
  return {
    cpus: cpus().length,
    cpuModel: cpu.model,
    cpuFamily: cpu.family,
    cpuModelNumber: cpu.modelNumber,
    microarchitecture: cpu.microarchitecture,
    cpuFlags: cpu.flags,
    platform: `${process.platform}/${process.arch}`,
    node: process.version,
    loadAverage: one!,
    loadAverages: { '1m': one!, '5m': five!, '15m': fifteen! },
  };
}

/** Fraction of all CPUs busy over `ms` (Linux /proc/stat; null elsewhere). */
export async function cpuBusy(ms: number): Promise<number | null> {
  const sample = (): [number, number] | null => {
    try {
      const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
      return [(f[3] ?? 0) + (f[4] ?? 0), sum(f)];
    } catch {
      return null;
    }
  };
  const a = sample();
  await new Promise((r) => setTimeout(r, ms));
  const b = sample();
  if (a == null || b == null || b[1] === a[1]) return null;
  return 1 - (b[0] - a[0]) / (b[1] - a[1]);
}

/**
 * Waits (up to `limitS`) until under 10% of the CPUs are busy, so other processes on a shared machine do not
 * skew a timing. Returns the last busy fraction seen (null where /proc/stat is unreadable or limitS is 0).
 */
export async function waitForIdle(limitS: number, sampleMs = 1000): Promise<number | null> {
  if (limitS <= 0) return null;
  const end = Date.now() + limitS * 1000;
  let busy = await cpuBusy(sampleMs);
  while (busy != null && busy > 0.1 && Date.now() < end) busy = await cpuBusy(sampleMs);
  return busy;
}

/** One line for a row's note when other processes kept the CPUs busy (null or under 10%: empty). */
export function busyNote(busy: number | null | undefined): string {
  return busy != null && busy > 0.1 ? `other processes kept up to ${(100 * busy).toFixed(0)}% of the CPUs busy: timings inflated` : '';
}

// ------------------------------------------------------------------------------------------ paths and the JSON

/**
 * A path from a bench's command line, made absolute the way the user's shell would: `npm run` starts the script in
 * the repository's root, so a relative path is taken from the folder the command was typed in (npm's INIT_CWD).
 */
export function userPath(path: string): string {
  return resolve(process.env.INIT_CWD ?? process.cwd(), path);
}

/** A file or folder named on the command line that must exist: its absolute path, or one line naming the fix, exit 2. */
export function existingPath(path: string, flag: string): string {
  const absolute = userPath(path);
  if (!existsSync(absolute)) {
    console.error(`${flag} ${path}: not found (${absolute}); relative paths are taken from the folder you ran npm in`);
    process.exit(2);
  }
  return absolute;
}

/** Write a benchmark's report as indented JSON at `path`, atomically (temp file + rename), making its folder. */
export function writeReport(path: string, report: object): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, `${JSON.stringify(report, null, 2)}\n`);
}

/**
 * Runs `f` while `count` other processes each keep one CPU busy (a JavaScript busy loop in a child Node process, at
 * the default priority), then stops them: how a benchmark measures a step on a machine it shares. The children
 * are killed even when `f` throws, and die with this process.
 */
export async function withBusyProcesses<T>(count: number, f: () => Promise<T>): Promise<T> {
  const children: ChildProcess[] = [];
  for (let i = 0; i < count; i++) {
    // The child exits by itself when its parent is gone (an orphan's stdin closes), so none outlive the bench.
    const child = spawn(
      process.execPath,
      [
        '-e',
        "process.stdin.on('close', () => process.exit(0)); " +
          'setImmediate(function spin() { const t = Date.now(); while (Date.now() - t < 50); setImmediate(spin); });',
      ],
      {
        stdio: ['pipe', 'ignore', 'ignore'],
        env: { PATH: process.env.PATH ?? '' },
      },
    );
    children.push(child);
  }
  try {
    // Let them start spinning before anything is timed.
    await new Promise((r) => setTimeout(r, 500));
    return await f();
  } finally {
    for (const child of children) child.kill('SIGKILL');
  }
}

// ------------------------------------------------------------------------------------------ command line

/** The bench's name for messages: bench/train.ts. */
const benchName = (scriptUrl: string) => `bench/${basename(fileURLToPath(scriptUrl))}`;

/** What a numeric option of a bench accepts; checked by benchArgs before anything runs. */
export type NumberRule = 'count' | 'count0' | 'seconds' | 'seconds0' | 'counts';
const RULES: Record<NumberRule, { ok: (v: string) => boolean; wants: string }> = {
  count: { ok: (v) => /^\d+$/.test(v) && Number(v) >= 1, wants: 'a whole number >= 1' },
  count0: { ok: (v) => /^\d+$/.test(v), wants: 'a whole number >= 0' },
  seconds: { ok: (v) => /^\d+(\.\d+)?$/.test(v) && Number(v) > 0, wants: 'a number of seconds > 0' },
  seconds0: { ok: (v) => /^\d+(\.\d+)?$/.test(v), wants: 'a number of seconds >= 0' },
  counts: { ok: (v) => v.split(',').every((x) => /^\d+$/.test(x.trim()) && Number(x) >= 1), wants: 'whole numbers >= 1, comma-separated' },
};

/**
 * parseArgs for a bench script (`scriptUrl`: its import.meta.url). `--help` prints the script's header comment and
 * its options with their defaults, and exits 0; an unknown option, or a value `numbers` rules out, is one line on
 * stderr and exit code 2, before anything runs.
 */
export function benchArgs<T extends ParseArgsConfig>(scriptUrl: string, config: T, numbers: Record<string, NumberRule> = {}): ReturnType<typeof parseArgs<T>> {
  const argv = config.args ?? process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    const header = /^\/\*\*([\s\S]*?)\*\//.exec(readFileSync(fileURLToPath(scriptUrl), 'utf8'))?.[1] ?? '';
    const options = Object.entries(config.options ?? {}).map(([name, o]) => {
      const rule = numbers[name] ? `: ${RULES[numbers[name]].wants}` : '';
      const given = o.default === undefined || o.default === false ? '' : ` (default: ${String(o.default)})`;
      return `  --${name}${o.type === 'string' ? ' <value>' : ''}${rule}${given}`;
    });
    console.log(`${header.replace(/^ \* ?/gm, '').trim()}\n\noptions:\n${options.join('\n')}`);
    process.exit(0);
  }
  const fail = (message: string): never => {
    console.error(`${benchName(scriptUrl)}: ${message} (--help lists the options)`);
    process.exit(2);
  };
  let parsed: ReturnType<typeof parseArgs<T>>;
  try {
    parsed = parseArgs(config);
  } catch (e) {
    return fail(e instanceof Error ? e.message : String(e));
  }
  for (const [name, rule] of Object.entries(numbers)) {
    const value = (parsed.values as Record<string, unknown>)[name];
    if (typeof value === 'string' && !RULES[rule].ok(value)) fail(`--${name} wants ${RULES[rule].wants}, got '${value}'`);
  }
  return parsed;
}

/** Runs a bench's main: an error (a bad option value, a run that failed) is one line on stderr and exit code 1. */
export async function runBench(scriptUrl: string, main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    console.error(`${benchName(scriptUrl)}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
    process.exitCode = 1;
  }
}
