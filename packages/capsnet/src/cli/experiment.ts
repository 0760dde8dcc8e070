/**
 * `capsnet experiment perturb|affine|multimnist|routing|all [options]` and `capsnet experiment report DIR`.
 * Light on purpose: each experiment's module (and TensorFlow.js) loads only when its command runs.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';

function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got "${value}"`);
    return n;
  };
}

function digitList(value: string): number[] {
  const digits = value.split(',').map((d) => Number(d.trim()));
  if (digits.length === 0 || digits.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new InvalidArgumentError(`--digits takes comma-separated class indices such as 0,3,7, got "${value}"`);
  }
  return digits;
}

const SCALE_HELP = 'ci: minutes on a 2-core CPU (narrow nets, a few thousand images); paper: the paper\'s sizes and data, for a GPU machine';

interface CommonOpts {
  scale: 'ci' | 'paper';
  out: string;
  seed: number;
  backend: 'auto' | 'wasm' | 'cpu' | 'tensorflow' | 'webgpu';
  data: string;
  trainLimit?: number;
  testLimit?: number;
  epochs?: number;
  batchSize?: number;
}

function withCommonOptions(command: Command): Command {
  return command
    .addOption(new Option('--scale <scale>', SCALE_HELP).choices(['ci', 'paper']).default('ci'))
    .option('--out <dir>', 'directory for the figures (PNG) and the result table (JSON)', 'runs/experiments')
    .option('--seed <n>', 'seed for initialisation, data generation and shuffling', (v) => Number.parseInt(v, 10), 42)
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend').choices(['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu']).default('auto'))
    .option('--data <spec>', 'MNIST source: mnist-sample (10k embedded digits) or idx:DIR (the full MNIST, for --scale paper)', 'mnist-sample')
    .option('--train-limit <n>', 'override the scale: use at most N training images', positiveInt('--train-limit'))
    .option('--test-limit <n>', 'override the scale: use at most N test images', positiveInt('--test-limit'))
    .option('--epochs <n>', 'override the scale: training epochs', positiveInt('--epochs'))
    .option('--batch-size <n>', 'override the scale: images per step', positiveInt('--batch-size'));
}

function baseOptions(opts: CommonOpts) {
  return {
    scale: opts.scale, out: opts.out, seed: opts.seed, backend: opts.backend, data: opts.data, trainLimit: opts.trainLimit,
    testLimit: opts.testLimit, epochs: opts.epochs, batchSize: opts.batchSize, log: (line: string) => console.log(line),
  };
}

function summary(result: { experiment: string; metrics: Record<string, number>; seconds: number; figures: { file: string }[] }, out: string): void {
  const metrics = Object.entries(result.metrics).map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toFixed(4)}`).join(', ');
  console.log(`${result.experiment}: ${metrics || 'done'} (${result.seconds.toFixed(0)} s); wrote ${out}/${result.experiment}.json and ${result.figures.length} figure(s)`);
}

export function registerExperimentCommands(program: Command): void {
  const experiment = program
    .command('experiment')
    .description('reproduce the paper\'s experiments: figures (PNG) and tables (JSON) in --out; `experiment report DIR` writes DIR/REPORT.md');

  withCommonOptions(experiment.command('perturb'))
    .description('figure 4: decode the winning capsule with each of its 16 dimensions tweaked by -0.25..+0.25 (via the ONNX decoder)')
    .option('--run <dir>', 'use this trained run directory (exported to ONNX here) instead of training one')
    .option('--model <file>', 'use this exported model.onnx (and model.decoder.onnx beside it) instead of training one')
    .option('--digits <list>', 'classes to show, e.g. 0,3,7 (default: all)', digitList)
    .action(async (opts: CommonOpts & { run?: string; model?: string; digits?: number[] }) => {
      if (opts.run && opts.model) throw new Error('pass either --run or --model, not both');
      const { runPerturb } = await import('../experiments/perturb.ts');
      summary(await runPerturb({ ...baseOptions(opts), run: opts.run, model: opts.model, digits: opts.digits }), opts.out);
    });

  withCommonOptions(experiment.command('affine'))
    .description('section 5.2: CapsNet and the baseline CNN trained on MNIST placed at random on 40x40, tested on translated MNIST and affNIST-style digits')
    .option('--affnist-dir <path>', 'also test on the real affNIST: a .mat file, a directory of .mat files, or a directory with the IDX pair test-images-idx3-ubyte/test-labels-idx1-ubyte (40x40)')
    .action(async (opts: CommonOpts & { affnistDir?: string }) => {
      const { runAffine } = await import('../experiments/affine.ts');
      summary(await runAffine({ ...baseOptions(opts), affnistDir: opts.affnistDir }), opts.out);
    });

  withCommonOptions(experiment.command('multimnist'))
    .description('section 6: overlapping digit pairs on 36x36, two-target training, both-labels accuracy, two-colour reconstructions')
    .addOption(new Option('--overlay <mode>', 'how the two digits combine').choices(['max', 'add']).default('max'))
    .action(async (opts: CommonOpts & { overlay: 'max' | 'add' }) => {
      const { runMultiMnist } = await import('../experiments/multimnist.ts');
      summary(await runMultiMnist({ ...baseOptions(opts), overlay: opts.overlay }), opts.out);
    });

  withCommonOptions(experiment.command('routing'))
    .description('appendix: mean |change| of the routing logits per iteration over training, and test accuracy with 1, 2 and 3 iterations')
    .option('--probe-iterations <n>', 'routing iterations run on the probe batch when tracking logit changes', positiveInt('--probe-iterations'))
    .action(async (opts: CommonOpts & { probeIterations?: number }) => {
      const { runRouting } = await import('../experiments/routing.ts');
      summary(await runRouting({ ...baseOptions(opts), probeIterations: opts.probeIterations }), opts.out);
    });

  withCommonOptions(experiment.command('all'))
    .description('run perturb, affine, multimnist and routing one after another, then write the report')
    .action(async (opts: CommonOpts) => {
      const base = baseOptions(opts);
      const { runPerturb } = await import('../experiments/perturb.ts');
      summary(await runPerturb(base), opts.out);
      const { runAffine } = await import('../experiments/affine.ts');
      summary(await runAffine(base), opts.out);
      const { runMultiMnist } = await import('../experiments/multimnist.ts');
      summary(await runMultiMnist({ ...base, overlay: 'max' }), opts.out);
      const { runRouting } = await import('../experiments/routing.ts');
      summary(await runRouting(base), opts.out);
      const { writeReport } = await import('../experiments/report.ts');
      console.log(`wrote ${writeReport(opts.out)}`);
    });

  experiment
    .command('report')
    .description('assemble the JSON tables and PNG figures in DIR into DIR/REPORT.md')
    .argument('<dir>', 'directory the experiments wrote into (--out)')
    .action(async (dir: string) => {
      const { writeReport } = await import('../experiments/report.ts');
      console.log(`wrote ${writeReport(dir)}`);
    });
}
