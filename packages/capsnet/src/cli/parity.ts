/** Registers `capsnet parity`. Light on purpose: everything heavy is imported inside the action. */
import { InvalidArgumentError, type Command } from 'commander';
import { ALL_BACKENDS, BACKEND_DESCRIPTIONS } from '../parity/backends.ts';
import { TIMER_MAX_MS, integer, nonNegativeInt } from './args.ts';

/** A comma-separated list of backends (or `all`), checked against the parity harness's list when parsed. */
const backendList =
  (flag: string) =>
  (value: string): string[] => {
    const names = value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (names.length === 1 && names[0] === 'all') return [...ALL_BACKENDS];
    const unknown = names.filter((b) => !(ALL_BACKENDS as readonly string[]).includes(b));
    if (names.length === 0 || unknown.length) {
      throw new InvalidArgumentError(
        `${flag} takes comma-separated backends from ${ALL_BACKENDS.join(', ')} (or all)${unknown.length ? `; unknown: ${unknown.join(', ')}` : ''}`,
      );
    }
    return names;
  };

export function registerParityCommands(program: Command): void {
  program
    .command('parity')
    .description('run the same inputs through the tfjs reference and every ONNX Runtime backend; print the parity matrix; exit 1 past tolerance')
    .argument('<model>', 'model.onnx from `capsnet export` (its .decoder.onnx beside it)')
    .option('--checkpoint <dir>', "run directory the model was exported from (default: the model's directory)")
    .option('--backends <list>', `comma-separated: ${ALL_BACKENDS.join(',')} (default: all)`, backendList('--backends'))
    .option('--require <list>', 'backends whose skip counts as a failure (e.g. node-cuda,node-webgpu on a GPU machine)', backendList('--require'))
    .option('--digits <n>', 'real test images', nonNegativeInt('--digits'), 16)
    .option('--random <n>', 'uniform random images', nonNegativeInt('--random'), 6)
    .option('--webgpu-count <n>', 'inputs for the WebGPU backends (slow on a software adapter)', nonNegativeInt('--webgpu-count'), 4)
    .option('--latency-runs <n>', 'timed batch-1 runs per backend', nonNegativeInt('--latency-runs'), 20)
    .option('--webgpu-latency-runs <n>', 'timed batch-1 runs for the WebGPU backends', nonNegativeInt('--webgpu-latency-runs'), 2)
    .option('--timeout <s>', 'per-backend time limit in seconds', integer('--timeout', { min: 1, max: Math.floor(TIMER_MAX_MS / 1000) }), 300)
    .option('--json <file>', 'also write the full report as JSON')
    .addHelpText('after', `\nBackends:\n${ALL_BACKENDS.map((b) => `  ${b.padEnd(16)} ${BACKEND_DESCRIPTIONS[b]}`).join('\n')}`)
    .action(async (model: string, opts) => {
      const { dirname } = await import('node:path');
      const { isBaselineRun, baselineParity } = await import('../parity/baseline.ts');
      const checkpoint = opts.checkpoint ?? dirname(model);
      if (isBaselineRun(checkpoint)) {
        const report = await baselineParity(model, checkpoint, { digits: opts.digits, random: opts.random });
        console.log(
          `baseline CNN parity, tfjs cpu vs ${report.backend}, ${report.inputs} inputs: max |logit diff| ${report.maxAbsLogitDiff.toExponential(2)} ` +
            `(tolerance ${report.tolerance}), argmax agreement ${(100 * report.argmaxAgreement).toFixed(1)}%: ${report.ok ? 'ok' : 'FAILED'}`,
        );
        if (opts.json) {
          const { writeFileAtomic } = await import('../files/atomic.ts');
          writeFileAtomic(opts.json, `${JSON.stringify(report, null, 2)}\n`);
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
