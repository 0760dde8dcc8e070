/** `npm run bench:train`: the PyTorch reference rows (python3 with torch; Debian: python3-torch). */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CapsNetConfig } from '@capsnet-onnx/core';

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

/**
 * The PyTorch reference (scripts/bench_train_torch.py): the same model and step on the CPU at the same batch and
 * threads. Returns null with the reason when python3 cannot import torch (Debian: apt-get install python3-torch).
 */
export async function runTorch(
  config: CapsNetConfig,
  batch: number,
  steps: number,
  threads: number,
  timeoutMs: number,
): Promise<TorchResult | { skipped: string }> {
  const { execa } = await import('execa');
  // CAPSNET_PYTHON, else the first of python3 on the PATH and Debian's /usr/bin/python3 that imports torch.
  const candidates = process.env.CAPSNET_PYTHON ? [process.env.CAPSNET_PYTHON] : ['python3', '/usr/bin/python3'];
  let python: string | null = null;
  for (const candidate of candidates) {
    const probe = await execa(candidate, ['-c', 'import torch'], { reject: false, timeout: 120_000 });
    if (probe.exitCode === 0) {
      python = candidate;
      break;
    }
  }
  if (python == null) {
    return { skipped: `${candidates.join(' and ')} cannot import torch (Debian: apt-get install python3-torch; or set CAPSNET_PYTHON)` };
  }
  const run = await execa(python, [join(ROOT, 'scripts', 'bench_train_torch.py'), JSON.stringify(config), String(batch), String(steps), String(threads)], {
    reject: false,
    timeout: timeoutMs,
    env: { OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) },
  });
  if (run.exitCode !== 0)
    return {
      skipped: `bench_train_torch.py failed: ${String(run.stderr || run.message)
        .split('\n')
        .slice(-3)
        .join(' ')}`,
    };
  return JSON.parse(run.stdout.trim().split('\n').at(-1)!) as TorchResult;
}
