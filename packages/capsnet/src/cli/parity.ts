/** Registers `capsnet parity`. Light on purpose: everything heavy is imported inside the action. */
import { type Command, Option } from 'commander';
import { DEVICE_TABLE, type DeviceRow } from '@capsnet-onnx/runtime/internal';
import { parityDevices } from '../parity/devices.ts';
import { TIMER_MAX_MS, deprecatedFlag, integer, nameList, nonNegativeInt } from './args.ts';
import { UsageError, chooseModel, pretrainedOption, pretrainedReferencePath } from './pretrained.ts';

export function registerParityCommands(program: Command, rows: readonly DeviceRow[] = DEVICE_TABLE): void {
  const devices = parityDevices(rows);
  const names = devices.map((d) => d.name);
  program
    .command('parity')
    .description('run the same inputs through the tfjs reference and every ONNX Runtime device; print the parity matrix; exit 1 past tolerance')
    .argument('[model]', 'model.onnx from `capsnet export` (its .decoder.onnx beside it); or --pretrained')
    .addOption(pretrainedOption())
    .option('--checkpoint <dir>', "run directory the model was exported from (default: the model's directory)")
    .option('--devices <list>', `comma-separated: ${names.join(',')} (default: all)`, nameList('--devices', names, 'devices'))
    .addOption(new Option('--backends <list>', 'the old name of --devices').argParser(nameList('--backends', names, 'devices')).hideHelp())
    .option('--require <list>', 'devices whose skip counts as a failure (e.g. node-cuda,node-webgpu on a GPU machine)', nameList('--require', names, 'devices'))
    .option('--digits <n>', 'real test images', nonNegativeInt('--digits'), 16)
    .option('--random <n>', 'uniform random images', nonNegativeInt('--random'), 6)
    .option('--webgpu-count <n>', 'inputs for the WebGPU devices (slow on a software adapter)', nonNegativeInt('--webgpu-count'), 4)
    .option('--latency-runs <n>', 'timed batch-1 runs per device', nonNegativeInt('--latency-runs'), 20)
    .option('--webgpu-latency-runs <n>', 'timed batch-1 runs for the WebGPU devices', nonNegativeInt('--webgpu-latency-runs'), 2)
    .option('--timeout <s>', 'per-device time limit in seconds', integer('--timeout', { min: 1, max: Math.floor(TIMER_MAX_MS / 1000) }), 300)
    .option('--json <file>', 'also write the full report as JSON')
    .option('--overwrite', 'replace the --json file if it exists (without it, an existing one is an error, before anything runs)', false)
    .addHelpText('after', `\nDevices:\n${devices.map((d) => `  ${d.name.padEnd(16)} ${d.description}`).join('\n')}`)
    .action(async (file: string | undefined, opts) => {
      if (opts.backends) deprecatedFlag('parity', '--backends', '--devices');
      const model = chooseModel('parity', file, opts.pretrained);
      // A pretrained model ships its files, not its checkpoint: the reference runs the fp32 file's weights.
      const referenceModel = opts.pretrained === undefined ? undefined : pretrainedReferencePath(opts.pretrained);
      if (referenceModel && opts.checkpoint) throw new UsageError('parity: --pretrained brings its own reference (its fp32 weights): drop --checkpoint');
      // Refused before minutes of parity runs, not after: the report file may be a user's (or an earlier report).
      const { refuseToReplace } = await import('../files/atomic.ts');
      if (opts.json) refuseToReplace([opts.json], opts.overwrite, { option: 'json path', flag: '--json path' });
      const { dirname } = await import('node:path');
      const { isBaselineRun, baselineParity } = await import('../parity/baseline.ts');
      const checkpoint = opts.checkpoint ?? dirname(model);
      if (!referenceModel && isBaselineRun(checkpoint)) {
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
        referenceModel,
        devices: opts.devices ?? opts.backends,
        require: opts.require,
        digits: opts.digits,
        random: opts.random,
        webgpuCount: opts.webgpuCount,
        latencyRuns: opts.latencyRuns,
        webgpuLatencyRuns: opts.webgpuLatencyRuns,
        timeoutS: opts.timeout,
        json: opts.json,
        overwrite: opts.overwrite,
      });
      printReport(report);
      if (!report.ok) process.exitCode = 1;
    });
}
