/** `capsnet export` and `capsnet inspect`. Light on purpose: the exporter loads only when a command runs. */
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { positiveInt } from './train.ts';

export function registerExportCommands(program: Command): void {
  program
    .command('export')
    .description('export a checkpoint to ONNX: a CapsNet with routing unrolled (NAME.onnx and its decoder NAME.decoder.onnx), or a baseline CNN run (NAME.onnx: logits, probabilities)')
    .argument('<run-dir>', 'run directory written by `capsnet train --out` (or its checkpoint.bin)')
    .option('-o, --out <file>', 'model file to write (default: RUN_DIR/model.onnx)')
    .option('--routing <n>', 'routing iterations to unroll (default: the checkpoint\'s)', positiveInt('--routing'))
    .option('--json', 'print the result as JSON', false)
    .action(async (runDir: string, opts: { out?: string; routing?: number; json: boolean }) => {
      const { exportRun } = await import('../export/exporter.ts');
      const defaultOut = join(runDir.endsWith('.bin') ? dirname(runDir) : runDir, 'model.onnx');
      const result = exportRun(runDir, { out: opts.out ?? defaultOut, routingIterations: opts.routing });
      if (result.family === 'baseline-cnn') {
        const summary = { family: result.family, model: result.modelPath, modelBytes: result.modelBytes, parameters: result.parameters, seconds: Number(result.seconds.toFixed(3)) };
        console.log(opts.json ? JSON.stringify(summary, null, 2)
          : `wrote ${result.modelPath} (baseline CNN, ${result.modelBytes} bytes, ${result.parameters.toLocaleString('en-US')} parameters) in ${result.seconds.toFixed(2)} s`);
        return;
      }
      const summary = {
        model: result.modelPath,
        decoder: result.decoderPath,
        modelBytes: result.modelBytes,
        decoderBytes: result.decoderBytes,
        parameters: result.parameters,
        routingIterations: result.routingIterations,
        seconds: Number(result.seconds.toFixed(3)),
      };
      if (opts.json) {
        console.log(JSON.stringify(summary, null, 2));
      } else {
        console.log(`wrote ${result.modelPath} (${result.modelBytes} bytes, ${result.parameters.toLocaleString('en-US')} parameters, ` +
          `routing unrolled x${result.routingIterations}) and ${result.decoderPath} (${result.decoderBytes} bytes) in ${result.seconds.toFixed(2)} s`);
      }
    });

  program
    .command('inspect')
    .description('show an ONNX file\'s inputs, outputs, opset, metadata, op histogram, parameter count and size')
    .argument('<model>', '.onnx file')
    .option('--json', 'print as JSON', false)
    .action(async (path: string, opts: { json: boolean }) => {
      const { inspectFile, formatSummary } = await import('../export/inspect.ts');
      const summary = inspectFile(path);
      console.log(opts.json ? JSON.stringify(summary, null, 2) : formatSummary(summary));
    });
}
