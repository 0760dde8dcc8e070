/**
 * `capsnet serve`: registered here, loaded lazily (serve/main.ts pulls in Fastify and ONNX Runtime only when
 * the command runs).
 */
import type { Command } from 'commander';
import { DEVICE_TABLE, type DeviceRow } from '@capsnet-onnx/runtime/internal';
import { byteSize, deviceOption, duration, port, positiveInt, presenceThreshold } from './args.ts';
import { chooseModel, pretrainedDimensionsPath, pretrainedOption } from './pretrained.ts';

export function registerServeCommands(program: Command, rows: readonly DeviceRow[] = DEVICE_TABLE): void {
  program
    .command('serve')
    .description('serve a model over HTTP (JSON API with request batching) and the in-browser demo page at /')
    .argument('[model]', 'model.onnx written by `capsnet export` (its decoder beside it as model.decoder.onnx); or --pretrained')
    .addOption(pretrainedOption())
    .addOption(deviceOption(rows))
    .option('--port <n>', 'TCP port (0: any free port)', port('--port'), 8080)
    .option('--host <address>', 'address to listen on (0.0.0.0 for every interface)', '127.0.0.1')
    .option('--decoder <file>', 'decoder model (default: <model>.decoder.onnx)')
    .option('--threads <n>', 'CPU inference threads (default: one less than the cores, leaving one for HTTP and JSON)', positiveInt('--threads'))
    .option('--max-batch <n>', 'most images in one inference run, and in one request', positiveInt('--max-batch'), 32)
    .option('--batch-wait-ms <ms>', 'longest a request waits for others to share its run', duration('--batch-wait-ms', 'ms'), 2)
    .option('--max-queue <n>', 'most images waiting for a run; past it requests get 503 (default: 32 x --max-batch)', positiveInt('--max-queue'))
    .option('--body-limit <size>', 'largest request body (at least 1kb)', byteSize('--body-limit', 1024), 4 * 1024 * 1024)
    .option('--shutdown-timeout <s>', 'on SIGTERM, seconds to finish in-flight requests before exiting anyway', duration('--shutdown-timeout', 's'), 10)
    .option('--model-name <name>', 'model name on the KServe v2 routes (/v2/models/NAME; the decoder is NAME_decoder)', 'capsnet')
    .option(
      '--data <spec>',
      "data set whose test images the page offers, e.g. idx:DIR (default: the model's, when built in; exports name directory data without its path)",
    )
    .option(
      '--dimensions <file>',
      "what each capsule dimension does, for the page's sliders: the dimensions.json of `capsnet experiment perturb` (default with --pretrained: the model's)",
    )
    .option('--log-requests', 'log one line per request', false)
    .option(
      '--presence-threshold <length>',
      "capsule length below which no class is present (default: the model's, 0.1)",
      presenceThreshold('--presence-threshold'),
    )
    .option(
      '--allowed-host <name>',
      'also accept requests whose Host header names NAME (repeatable; loopback names and --host are always accepted)',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option('--cors <origin>', 'let pages from ORIGIN (e.g. https://app.example) call the API; without it cross-origin requests are refused')
    .action(async (file: string | undefined, { pretrained, ...opts }) => {
      const model = chooseModel('serve', file, pretrained);
      const { checkOnnxModel, refuseNonModel } = await import('./model-file.ts');
      // An image or directory in the model's place is named as such (reading 8 bytes), before anything else.
      if (file !== undefined) refuseNonModel(file);
      const dimensions = opts.dimensions ?? (pretrained !== undefined ? pretrainedDimensionsPath(pretrained) : undefined);
      const { serve } = await import('../serve/main.ts');
      try {
        await serve({ model, ...opts, ...(dimensions ? { dimensions } : {}) });
      } catch (e) {
        // Startup failed (no <model>.decoder.onnx beside it, a load error): a file that is not ONNX at all is said in
        // the project's words first. Parsed only here, as classify does, so a good model is not read twice.
        if (file !== undefined) await checkOnnxModel(file);
        throw e;
      }
      // Serving ends in serve's own SIGTERM/SIGINT handler; the CLI exits as soon as an action returns.
      await new Promise<never>(() => {});
    });
}
