/** `capsnet export` and `capsnet inspect`. Light on purpose: the exporter loads only when a command runs. */
import { dirname, join } from 'node:path';
import { type Command, Option } from 'commander';
import { COMPUTE_PRECISIONS, type ComputePrecision, INSTANCE_KINDS, type InstanceKind, PRECISIONS, type Precision, defaultModelFile } from '../export/names.ts';
import { MAX_ROUTING_ITERATIONS } from '@capsnet-onnx/core';
import { INT32_MAX, integer, routingIterations } from './args.ts';
import { chooseModel, pretrainedOption } from './pretrained.ts';

export function registerExportCommands(program: Command): void {
  program
    .command('export')
    .description(
      'export a checkpoint to ONNX: a CapsNet with routing unrolled (NAME.onnx and its decoder ' +
        'NAME.decoder.onnx), or a baseline CNN run (NAME.onnx: logits, probabilities)',
    )
    .argument('<run-dir>', 'run directory written by `capsnet train --out` (or a checkpoint file, whatever its name)')
    .option('-o, --out <file>', 'model file to write (default: RUN_DIR/model.onnx)')
    .option(
      '--routing <n>',
      `routing iterations to unroll, 1-${MAX_ROUTING_ITERATIONS}: each adds its nodes to the graph (default: the checkpoint's)`,
      routingIterations('--routing'),
    )
    .addOption(
      new Option('--precision <p>', 'weight storage: fp32, fp16 (half the file) or int8 (per-channel DequantizeLinear, a quarter)')
        .choices(PRECISIONS)
        .default('fp32'),
    )
    .addOption(
      new Option(
        '--compute <p>',
        'with --precision fp16: fp16 (default: convolutions, u_hat and the decoder in half, squash and routing ' +
          'in float32) or fp32 (float32 maths, for WebGPU adapters without shader-f16)',
      ).choices(COMPUTE_PRECISIONS),
    )
    .option(
      '--triton <dir>',
      'write a Triton model repository there (DIR/NAME/config.pbtxt, DIR/NAME/1/model.onnx, and NAME_decoder); ' + 'without -o, only the repository',
    )
    .option('--triton-name <name>', 'model name in the Triton repository', 'capsnet')
    .option(
      '--max-batch-size <n>',
      'Triton max_batch_size',
      integer('--max-batch-size', { min: 1, max: INT32_MAX, field: "Triton's int32 max_batch_size" }),
      32,
    )
    .option(
      '--max-queue-delay-us <n>',
      'Triton dynamic_batching.max_queue_delay_microseconds',
      integer('--max-queue-delay-us', { min: 1, field: "Triton's uint64, as a JavaScript safe integer" }),
      2000,
    )
    .addOption(new Option('--instance-kind <kind>', 'Triton instance_group kind').choices(INSTANCE_KINDS).default('auto'))
    .option(
      '--instances <n>',
      'Triton instance_group count',
      integer('--instances', { min: 1, max: INT32_MAX, field: "Triton's int32 instance_group count" }),
      1,
    )
    .option('--overwrite', 'replace the model, its decoder and Triton model folders if they exist (without it, an existing one is an error)', false)
    .option('--json', 'print the result as JSON', false)
    .action(
      async (
        runDir: string,
        opts: {
          out?: string;
          routing?: number;
          precision: Precision;
          compute?: ComputePrecision;
          triton?: string;
          tritonName: string;
          maxBatchSize: number;
          maxQueueDelayUs: number;
          instanceKind: InstanceKind;
          instances: number;
          json: boolean;
          overwrite: boolean;
        },
      ) => {
        const { exportRun } = await import('../export/exporter.ts');
        const defaultOut = join(runDir.endsWith('.bin') ? dirname(runDir) : runDir, defaultModelFile(opts.precision));
        const result = exportRun(runDir, {
          out: opts.out ?? (opts.triton ? undefined : defaultOut),
          overwrite: opts.overwrite,
          routingIterations: opts.routing,
          precision: opts.precision,
          compute: opts.compute,
          ...(opts.triton
            ? {
                triton: {
                  dir: opts.triton,
                  name: opts.tritonName,
                  maxBatchSize: opts.maxBatchSize,
                  maxQueueDelayUs: opts.maxQueueDelayUs,
                  instanceKind: opts.instanceKind,
                  instanceCount: opts.instances,
                },
              }
            : {}),
        });
        if (result.family === 'baseline-cnn') {
          const summary = {
            family: result.family,
            model: result.modelPath,
            modelBytes: result.modelBytes,
            parameters: result.parameters,
            seconds: Number(result.seconds.toFixed(3)),
          };
          console.log(
            opts.json
              ? JSON.stringify(summary, null, 2)
              : `wrote ${result.modelPath} (baseline CNN, ${result.modelBytes} bytes, ` +
                  `${result.parameters.toLocaleString('en-US')} parameters) in ${result.seconds.toFixed(2)} s`,
          );
          return;
        }
        const summary = {
          ...(result.modelPath ? { model: result.modelPath, decoder: result.decoderPath } : {}),
          ...(result.triton ? { triton: result.triton } : {}),
          precision: result.precision,
          computePrecision: result.computePrecision,
          modelBytes: result.modelBytes,
          decoderBytes: result.decoderBytes,
          parameters: result.parameters,
          routingIterations: result.routingIterations,
          seconds: Number(result.seconds.toFixed(3)),
        };
        if (opts.json) {
          console.log(JSON.stringify(summary, null, 2));
          return;
        }
        const what =
          `${result.precision} weights, ${result.computePrecision} compute, ` +
          `${result.parameters.toLocaleString('en-US')} parameters, routing unrolled ` +
          `x${result.routingIterations}`;
        if (result.modelPath) {
          console.log(
            `wrote ${result.modelPath} (${result.modelBytes} bytes, ${what}) and ${result.decoderPath} ` +
              `(${result.decoderBytes} bytes) in ${result.seconds.toFixed(2)} s`,
          );
        }
        if (result.triton) {
          console.log(`wrote the Triton model repository ${opts.triton}: ${result.triton.files.join(', ')}${result.modelPath ? '' : ` (${what})`}`);
        }
      },
    );

  program
    .command('ensemble')
    .description('export N trained runs as one ONNX graph whose class scores are the mean of their capsule lengths (section 7: CIFAR-10 used 7)')
    .argument('<run-dirs...>', 'two or more run directories (or checkpoint.bin files) trained on the same data set')
    .requiredOption('-o, --out <file>', "model file to write (its decoder, member 1's, goes beside it as NAME.decoder.onnx)")
    .option('--overwrite', 'replace the model and its decoder if they exist (without it, an existing one is an error)', false)
    .option('--json', 'print the result as JSON', false)
    .action(async (runDirs: string[], opts: { out: string; json: boolean; overwrite: boolean }) => {
      const { exportEnsemble } = await import('../export/ensemble.ts');
      const result = exportEnsemble(runDirs, { out: opts.out, overwrite: opts.overwrite });
      const summary = {
        model: result.modelPath,
        decoder: result.decoderPath,
        members: runDirs.length,
        modelBytes: result.modelBytes,
        parameters: result.parameters,
      };
      if (opts.json) console.log(JSON.stringify(summary, null, 2));
      else
        console.log(
          `wrote ${result.modelPath} (${runDirs.length} members, ${result.modelBytes} bytes, ` +
            `${result.parameters.toLocaleString('en-US')} parameters) and ${result.decoderPath}`,
        );
    });

  program
    .command('inspect')
    .description("show an ONNX file's inputs, outputs, opset, metadata, op histogram, parameter count and size")
    .argument('[model]', '.onnx file; or --pretrained')
    .addOption(pretrainedOption())
    .option('--json', 'print as JSON', false)
    .action(async (file: string | undefined, opts: { json: boolean; pretrained?: string }) => {
      const { inspectFile, formatSummary } = await import('../export/inspect.ts');
      const summary = inspectFile(chooseModel('inspect', file, opts.pretrained));
      console.log(opts.json ? JSON.stringify(summary, null, 2) : formatSummary(summary));
    });
}
