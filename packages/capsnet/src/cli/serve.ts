/**
 * `capsnet serve`: registered here, loaded lazily (serve/main.ts pulls in Fastify and ONNX Runtime only when
 * the command runs).
 */
import { InvalidArgumentError, Option, type Command } from 'commander';

function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got "${value}"`);
    return n;
  };
}

function nonNegative(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a number >= 0, got "${value}"`);
    return n;
  };
}

/** "4mb", "512kb", "1048576" -> bytes. */
export function parseBytes(value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(b|kb|k|kib|mb|m|mib)?$/i.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`--body-limit must be a size like 4mb, 512kb or 1048576, got "${value}"`);
  const unit = (match[2] ?? 'b').toLowerCase();
  const scale = unit.startsWith('m') ? 1024 * 1024 : unit.startsWith('k') ? 1024 : 1;
  const bytes = Math.round(Number(match[1]) * scale);
  if (bytes < 1024) throw new InvalidArgumentError(`--body-limit must be at least 1kb, got "${value}"`);
  return bytes;
}

export function registerServeCommands(program: Command): void {
  program
    .command('serve')
    .description('serve a model over HTTP (JSON API with request batching) and the in-browser demo page at /')
    .argument('<model>', 'model.onnx written by `capsnet export` (its decoder beside it as model.decoder.onnx)')
    .addOption(new Option('--device <name>', 'execution provider').choices(['auto', 'cpu', 'cuda', 'webgpu', 'wasm']).default('auto'))
    .option('--port <n>', 'TCP port (0: any free port)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`--port must be 0-65535, got "${v}"`);
      return n;
    }, 8080)
    .option('--host <address>', 'address to listen on (0.0.0.0 for every interface)', '127.0.0.1')
    .option('--decoder <file>', 'decoder model (default: <model>.decoder.onnx)')
    .option('--threads <n>', 'CPU inference threads (default: one less than the cores, leaving one for HTTP and JSON)', positiveInt('--threads'))
    .option('--max-batch <n>', 'most images in one inference run, and in one request', positiveInt('--max-batch'), 32)
    .option('--batch-wait-ms <ms>', 'longest a request waits for others to share its run', nonNegative('--batch-wait-ms'), 2)
    .option('--max-queue <n>', 'most images waiting for a run; past it requests get 503 (default: 32 x --max-batch)', positiveInt('--max-queue'))
    .option('--body-limit <size>', 'largest request body', parseBytes, 4 * 1024 * 1024)
    .option('--shutdown-timeout <s>', 'on SIGTERM, seconds to finish in-flight requests before exiting anyway', nonNegative('--shutdown-timeout'), 10)
    .option('--model-name <name>', 'model name on the KServe v2 routes (/v2/models/NAME; the decoder is NAME_decoder)', 'capsnet')
    .option('--data <spec>', "data set whose test images the page offers, e.g. idx:DIR (default: the model's, when built in; exports name directory data without its path)")
    .option('--log-requests', 'log one line per request', false)
    .option('--presence-threshold <length>', "capsule length below which no class is present (default: the model's, 0.1)", (value: string) => {
      const n = Number(value);
      if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n >= 1) throw new InvalidArgumentError(`--presence-threshold must be a number in [0, 1), got "${value}"`);
      return n;
    })
    .option('--allowed-host <name>', 'also accept requests whose Host header names NAME (repeatable; loopback names and --host are always accepted)',
      (value: string, previous: string[] = []) => [...previous, value])
    .option('--cors <origin>', 'let pages from ORIGIN (e.g. https://app.example) call the API; without it cross-origin requests are refused')
    .action(async (model: string, opts) => {
      const { serve } = await import('../serve/main.ts');
      await serve({ model, ...opts });
      // Serving ends in serve's own SIGTERM/SIGINT handler; the CLI exits as soon as an action returns.
      await new Promise<never>(() => {});
    });
}
