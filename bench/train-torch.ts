/** `npm run bench:train`: the PyTorch reference rows (python3 with torch; Debian: python3-torch). */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CapsNetConfig } from '@capsnet-onnx/core';
import type { EpochResult } from './train-epoch-worker.ts';
import { readEnv } from './env.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface TorchResult {
  torch: string;
  threads: number;
  step_s: number[];
  step_cpu_s: number[];
  forward_s: number[];
  loss: number;
  peak_rss_mb: number;
}

/** The PyTorch epoch's result: the project's fields, plus the data handling and the step apart at every step. */
export type TorchEpochResult = EpochResult & { data_s: number[]; data_cpu_s: number[]; train_step_s: number[]; train_step_cpu_s: number[] };

let pythonFound: Promise<string | { skipped: string }> | undefined;

/** CAPSNET_PYTHON, else the first of python3 on the PATH and Debian's /usr/bin/python3 that imports torch. */
function findPython(): Promise<string | { skipped: string }> {
  pythonFound ??= (async () => {
    const { execa } = await import('execa');
    const given = readEnv('CAPSNET_PYTHON');
    const candidates = given ? [given] : ['python3', '/usr/bin/python3'];
    for (const candidate of candidates) {
      const probe = await execa(candidate, ['-c', 'import torch'], { reject: false, timeout: 120_000 });
      if (probe.exitCode === 0) return candidate;
    }
    return { skipped: `${candidates.join(' and ')} cannot import torch (Debian: apt-get install python3-torch; or set CAPSNET_PYTHON)` };
  })();
  return pythonFound;
}

/** Runs a PyTorch script with `threads` threads; its last stdout line is its JSON result. */
async function runPython<R>(script: string, args: string[], threads: number, timeoutMs: number): Promise<R | { skipped: string }> {
  const python = await findPython();
  if (typeof python !== 'string') return python;
  const { execa } = await import('execa');
  const run = await execa(python, [script, ...args], {
    reject: false,
    timeout: timeoutMs,
    env: { OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) },
  });
  if (run.exitCode !== 0) {
    const tail = String(run.stderr || run.message)
      .split('\n')
      .slice(-3)
      .join(' ');
    return { skipped: `${script.split('/').at(-1)} failed: ${tail}` };
  }
  return JSON.parse(run.stdout.trim().split('\n').at(-1)!) as R;
}

/**
 * The PyTorch reference step (scripts/bench_train_torch.py): the same model and step on the CPU at the same batch
 * and threads. `{ skipped }` with the reason when python3 cannot import torch (Debian: apt-get install python3-torch).
 */
export function runTorch(config: CapsNetConfig, batch: number, steps: number, threads: number, timeoutMs: number): Promise<TorchResult | { skipped: string }> {
  return runPython(join(ROOT, 'scripts', 'bench_train_torch.py'), [JSON.stringify(config), String(batch), String(steps), String(threads)], threads, timeoutMs);
}

/** The PyTorch epoch (bench/train_epoch_torch.py) over the first `trainImages` / `testImages` of the IDX files in `mnistDir`. */
export function runTorchEpoch(
  config: CapsNetConfig,
  mnistDir: string,
  job: { batch: number; trainImages: number; testImages: number; seed: number },
  threads: number,
  timeoutMs: number,
): Promise<TorchEpochResult | { skipped: string }> {
  const args = [JSON.stringify(config), mnistDir, ...[job.batch, job.trainImages, job.testImages, threads, job.seed].map(String)];
  return runPython(join(ROOT, 'bench', 'train_epoch_torch.py'), args, threads, timeoutMs);
}
