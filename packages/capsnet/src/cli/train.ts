import { InvalidArgumentError, Option, type Command } from 'commander';

export function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got "${value}"`);
    return n;
  };
}

function timestamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-').replace('T', '_').slice(0, 19);
}

export function registerTrainCommands(program: Command): void {
  program
    .command('train')
    .description('train a CapsNet (or the paper\'s baseline CNN); writes DIR/checkpoint.bin and appends one JSON line per epoch to DIR/metrics.jsonl')
    .addOption(new Option('--model <family>', 'network: capsnet, or baseline-cnn (Table 1\'s CNN: 35.4M parameters at --preset paper, 4x narrower at small)').choices(['capsnet', 'baseline-cnn']).default('capsnet'))
    .addOption(new Option('--preset <name>', 'model size').choices(['paper', 'small']).default('paper'))
    .option('--data <spec>', 'mnist-sample | fashion-mnist | idx:DIR', 'mnist-sample')
    .option('--epochs <n>', 'epochs to train (in total, counting resumed ones)', positiveInt('--epochs'), 10)
    .option('--batch-size <n>', 'images per step', positiveInt('--batch-size'), 128)
    .option('--routing <n>', 'routing iterations (default: 3, the paper\'s)', positiveInt('--routing'))
    .addOption(new Option('--backend <name>', 'training backend').choices(['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu']).default('auto'))
    .option('--seed <n>', 'seed for initialisation, shuffling and shifts', (v) => Number.parseInt(v, 10), 42)
    .option('--out <dir>', 'run directory (default: runs/<timestamp>)')
    .option('--resume', 'continue from the checkpoint in --out', false)
    .option('--checkpoint-every <steps>', 'also checkpoint every N steps inside an epoch (0: epoch ends only)', (v) => Number.parseInt(v, 10), 50)
    .option('--train-limit <n>', 'train on only the first N training images', positiveInt('--train-limit'))
    .option('--test-limit <n>', 'evaluate on only the first N test images', positiveInt('--test-limit'))
    .option('--no-progress', 'no progress bar')
    .action(async (opts) => {
      if (opts.resume && !opts.out) throw new Error('--resume needs --out DIR: the run directory to continue');
      if (opts.model === 'baseline-cnn' && opts.routing !== undefined) throw new Error('--routing applies to --model capsnet; the baseline CNN has no routing');
      const { train } = await import('../train/trainer.ts');
      const out = opts.out ?? `runs/${timestamp()}`;
      const result = await train({
        model: opts.model,
        preset: opts.preset,
        data: opts.data,
        epochs: opts.epochs,
        batchSize: opts.batchSize,
        routing: opts.routing,
        backend: opts.backend,
        seed: opts.seed,
        out,
        resume: opts.resume,
        checkpointEvery: opts.checkpointEvery,
        trainLimit: opts.trainLimit,
        testLimit: opts.testLimit,
        log: (line) => console.log(line),
        progressBar: opts.progress && Boolean(process.stderr.isTTY),
      });
      const last = result.metrics.at(-1);
      console.log(`done: ${out}${last ? ` (test accuracy ${(100 * last.test_accuracy).toFixed(2)}%, ${result.parameters.toLocaleString('en-US')} parameters)` : ''}`);
    });
}
