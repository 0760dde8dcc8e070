/** Registers `capsnet parity`. Light on purpose: everything heavy is imported inside the action. */
import type { Command } from 'commander';

const list = (value: string) => value.split(',').map((s) => s.trim()).filter(Boolean);
const count = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got "${value}"`);
  return n;
};

export function registerParityCommands(program: Command): void {
  program
    .command('parity')
    .description('run the same inputs through the tfjs reference and every ONNX Runtime backend; print the parity matrix; exit 1 past tolerance')
    .argument('<model>', 'model.onnx from `capsnet export` (its .decoder.onnx beside it)')
    .option('--checkpoint <dir>', 'run directory the model was exported from (default: the model\'s directory)')
    .option('--backends <list>', 'comma-separated: node-cpu,node-cuda,node-webgpu,node-wasm,chromium-wasm,chromium-webgpu (default: all)', list)
    .option('--require <list>', 'backends whose skip counts as a failure (e.g. node-cuda,node-webgpu on a GPU machine)', list)
    .option('--digits <n>', 'real test images', count('--digits'), 16)
    .option('--random <n>', 'uniform random images', count('--random'), 6)
    .option('--webgpu-count <n>', 'inputs for the WebGPU backends (slow on a software adapter)', count('--webgpu-count'), 4)
    .option('--latency-runs <n>', 'timed batch-1 runs per backend', count('--latency-runs'), 20)
    .option('--webgpu-latency-runs <n>', 'timed batch-1 runs for the WebGPU backends', count('--webgpu-latency-runs'), 2)
    .option('--timeout <s>', 'per-backend time limit in seconds', count('--timeout'), 300)
    .option('--json <file>', 'also write the full report as JSON')
    .action(async (model: string, opts) => {
      const { dirname } = await import('node:path');
      const { isBaselineRun, baselineParity } = await import('../parity/baseline.ts');
      const checkpoint = opts.checkpoint ?? dirname(model);
      if (isBaselineRun(checkpoint)) {
        const report = await baselineParity(model, checkpoint, { digits: opts.digits, random: opts.random });
        console.log(`baseline CNN parity, tfjs cpu vs ${report.backend}, ${report.inputs} inputs: max |logit diff| ${report.maxAbsLogitDiff.toExponential(2)} ` +
          `(tolerance ${report.tolerance}), argmax agreement ${(100 * report.argmaxAgreement).toFixed(1)}%: ${report.ok ? 'ok' : 'FAILED'}`);
        if (opts.json) {
          const { writeFileAtomic } = await import('../files/atomic.ts');
          writeFileAtomic(opts.json, JSON.stringify(report, null, 2) + '\n');
        }
        if (!report.ok) process.exitCode = 1;
        return;
      }
      const { runParity, printReport } = await import('../parity/run.ts');
      const report = await runParity({
        model,
        checkpoint: opts.checkpoint,
        backends: opts.backends,
        require: opts.require,
        digits: opts.digits,
        random: opts.random,
        webgpuCount: opts.webgpuCount,
        latencyRuns: opts.latencyRuns,
        webgpuLatencyRuns: opts.webgpuLatencyRuns,
        timeoutS: opts.timeout,
        json: opts.json,
      });
      printReport(report);
      if (!report.ok) process.exitCode = 1;
    });
}
