/**
 * The routing appendix (appendix A, figure A.1) and Table 1's 1-vs-3 comparison.
 *
 * Models are trained with 1, 2, 3, 5 and 7 routing iterations. During each one's training a fixed probe batch of
 * test images is routed with the model's own iteration count, and for each iteration r = 1..R we record:
 *   - logit change      mean |b(r) - b(r-1)| (b(0) = 0; b(R) is the update the next iteration would make);
 *   - coupling change   mean |c(r+1) - c(r)|, c(r) = softmax(b(r-1)): how much iteration r's update re-routes;
 *   - capsule change    mean |v(r) - v(r-1)| (r >= 2): how much the output still moves.
 * Because b(r) - b(r-1) = u_hat . v(r) exactly, the logit change tends to the constant mean |u_hat . v*| once the
 * outputs settle (v(r) -> v*); it does not go to zero. The coupling and capsule changes do go to zero as routing
 * converges, so they are the quantities that show the paper's "decreases with more iterations" on a log axis.
 * Then 1 vs 3 iterations is repeated over `seeds` seeds (mean and standard deviation of the test error).
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import type { CapsNetConfig } from '@capsnet-onnx/core';
import { type CapsNetParams, encode } from '../model/capsnet.ts';
import { capsnetFamily } from '../train/family.ts';
import { type FigureSpec, linePlot, saveFigure } from './figures.ts';
import {
  type ExperimentOptions,
  type ExperimentResult,
  type ResultFigure,
  EPOCHS,
  batchSizeFor,
  capsConfigFor,
  resolutionNotes,
  runInfo,
  startExperiment,
  writeResult,
} from './common.ts';
import { meanStd } from './mnist-table.ts';
import { trainShifted } from './training.ts';

export interface RoutingOptions extends ExperimentOptions {
  /** Routing iterations of the traced models (default 1, 2, 3, 5, 7). */
  iterations?: number[];
  /** Seeds for the 1-vs-3 comparison (default 3). */
  seeds?: number;
}

export interface RoutingTrace {
  /** Mean |b(r) - b(r-1)|, r = 1..R. */
  logits: number[];
  /** Mean |c(r+1) - c(r)|, r = 1..R. */
  coupling: number[];
  /** Mean |v(r) - v(r-1)|, r = 2..R (empty for R = 1). */
  capsules: number[];
}

/** The three per-iteration changes of routing with `iterations` iterations on a probe batch. */
export async function routingTrace(params: CapsNetParams, config: CapsNetConfig, probe: tf.Tensor4D, iterations: number): Promise<RoutingTrace> {
  const [logitT, couplingT, capsuleT] = tf.tidy(() => {
    const { logitHistory: b, capsuleHistory: v } = encode(params, probe, { ...config, routing: { ...config.routing, iterations } }, true);
    const c = [tf.softmax(tf.zerosLike(b[0]!), -1), ...b.map((logits) => tf.softmax(logits, -1))];
    const meanAbs = (t: tf.Tensor) => tf.mean(tf.abs(t));
    return [
      b.map((logits, r) => meanAbs(r === 0 ? logits : tf.sub(logits, b[r - 1]!))),
      b.map((_, r) => meanAbs(tf.sub(c[r + 1]!, c[r]!))),
      v.slice(1).map((caps, r) => meanAbs(tf.sub(caps, v[r]!))),
    ];
  });
  const read = (ts: tf.Tensor[]) => Promise.all(ts.map(async (t) => (await t.data())[0]!));
  const out = { logits: await read(logitT), coupling: await read(couplingT), capsules: await read(capsuleT) };
  tf.dispose([...logitT, ...couplingT, ...capsuleT]);
  return out;
}

export async function runRouting(options: RoutingOptions): Promise<ExperimentResult> {
  const { dataset, train, test, backend, ci, startedAt, elapsed } = await startExperiment(options, 'routing');
  const iterationsList = options.iterations ?? [1, 2, 3, 5, 7];
  const seeds = Array.from({ length: options.seeds ?? 3 }, (_, k) => options.seed + k);
  const batchSize = batchSizeFor(options);
  const epochs = options.epochs ?? EPOCHS.routing[options.scale];
  const base = capsConfigFor(options.scale, dataset.shape);
  const pixels = base.inputHeight * base.inputWidth * base.inputChannels;
  const probeCount = Math.min(test.count, ci ? 64 : 256);
  const probe = tf.tensor4d(test.images.slice(0, probeCount * pixels), [probeCount, base.inputHeight, base.inputWidth, base.inputChannels]);
  const stepsPerRun = Math.max(1, Math.ceil(train.count / batchSize) * epochs);
  // probes per traced run: 20 at ci, 50 at medium (each routes the probe batch: a forward pass of 256 images), 200 at paper
  const probeEvery = Math.max(1, Math.floor(stepsPerRun / { ci: 20, medium: 50, paper: 200 }[options.scale]));

  const traces: Record<number, Array<{ step: number; trace: RoutingTrace }>> = {};
  // test errors by iterations, one per seed it was trained with
  const errors: Record<number, Array<{ seed: number; error: number }>> = {};
  const runOne = async (r: number, seed: number, traced: boolean) => {
    const config = { ...base, routing: { ...base.routing, iterations: r } };
    const history: Array<{ step: number; trace: RoutingTrace }> = [];
    const run = await trainShifted({
      family: capsnetFamily(config),
      seed,
      train,
      test,
      epochs,
      batchSize,
      maxShift: config.maxShift,
      optimizer: config,
      label: `routing r=${r} seed ${seed}`,
      log: options.log,
      afterStep: traced
        ? async (step, params) => {
            if (step === 0 || (step + 1) % probeEvery === 0 || step + 1 === stepsPerRun) {
              history.push({ step: step + 1, trace: await routingTrace(params, config, probe, r) });
            }
          }
        : undefined,
    });
    tf.dispose(Object.values(run.params));
    (errors[r] ??= []).push({ seed, error: 1 - run.accuracy });
    options.log(`routing: r=${r}, seed ${seed}: test error ${(100 * (1 - run.accuracy)).toFixed(2)}%`);
    if (traced) traces[r] = history;
  };
  for (const r of iterationsList) await runOne(r, seeds[0]!, true);
  for (const seed of seeds.slice(1)) for (const r of [1, 3]) await runOne(r, seed, false);
  probe.dispose();

  const finalTrace = (r: number) => traces[r]!.at(-1)!.trace;
  const figures: ResultFigure[] = [];
  const save = async (file: string, caption: string, spec: FigureSpec) => {
    figures.push({ file, caption, ...(await saveFigure(join(options.out, file), spec)) });
  };
  // End of training, by routing iteration: one line per trained model (figure A.1, right).
  for (const [key, label, file] of [
    ['coupling', 'mean |c(r+1) - c(r)|', 'routing-coupling-change.svg'],
    ['logits', 'mean |b(r) - b(r-1)|', 'routing-logit-change.svg'],
  ] as const) {
    await save(
      file,
      `End of training: ${label} by routing iteration r, one line per model (trained and probed with R iterations), log scale.`,
      linePlot({
        title: `Routing: ${label} per iteration, end of training`,
        xLabel: 'routing iteration r',
        yLabel: `${label} (log scale)`,
        logY: true,
        markers: true,
        series: iterationsList.map((r) => ({ name: `R=${r}`, points: finalTrace(r)[key].map((v, k) => [k + 1, v] as [number, number]) })),
      }),
    );
  }
  // During training (figure A.1, left): the deepest model's per-iteration coupling change over steps.
  const deepest = Math.max(...iterationsList);
  await save(
    'routing-during-training.svg',
    `Coupling change of each routing iteration over the training of the R=${deepest} model (probe of ${probeCount} test images), log scale.`,
    linePlot({
      title: `Coupling change per iteration during training (R=${deepest})`,
      xLabel: 'training step',
      yLabel: 'mean |c(r+1) - c(r)| (log scale)',
      logY: true,
      series: Array.from({ length: deepest }, (_, k) => ({
        name: `r=${k + 1}`,
        points: traces[deepest]!.map((h) => [h.step, h.trace.coupling[k]!] as [number, number]),
      })),
    }),
  );

  const stats = (r: number) => meanStd(errors[r]!.map((e) => e.error));
  const metrics: Record<string, number> = {};
  for (const r of iterationsList) {
    const t = finalTrace(r);
    metrics[`r${r}_error_seed${seeds[0]}`] = errors[r]!.find((e) => e.seed === seeds[0])!.error;
    metrics[`r${r}_final_coupling_change_last`] = t.coupling.at(-1)!;
    metrics[`r${r}_final_logit_change_last`] = t.logits.at(-1)!;
  }
  for (const r of [1, 3]) {
    if (!errors[r]) continue;
    metrics[`r${r}_error_mean`] = stats(r).mean;
    metrics[`r${r}_error_std`] = stats(r).std;
  }
  const sci = (v: number | undefined) => (v === undefined ? null : Number(v.toExponential(3)));
  const maxR = Math.max(...iterationsList);
  const result: ExperimentResult = {
    experiment: 'routing',
    title: 'Routing iterations: convergence of routing during training (appendix A) and 1 vs 3 iterations (Table 1)',
    paper:
      'Appendix A: after 500 epochs on MNIST the average change of the routing logits per iteration has ' +
      'stabilised, and it decreases almost linearly in log scale with more routing iterations; 3 ' +
      'iterations recommended. ' +
      'Table 1 (with reconstruction): routing 1 gives 0.29 +- 0.011% error, routing 3 gives 0.25 +- ' +
      '0.005% (without reconstruction: 0.34 +- 0.032% vs 0.35 +- 0.036%).',
    ...runInfo(options, backend, dataset.name, startedAt, elapsed()),
    metrics,
    settings: {
      iterations: iterationsList,
      seeds,
      probeImages: probeCount,
      probeEvery,
      trainImages: train.count,
      testImages: test.count,
      epochs,
      batchSize,
      steps: stepsPerRun,
      config: { conv1Filters: base.conv1Filters, primaryMaps: base.primaryMaps, decoderHidden: base.decoderHidden },
    },
    tables: [
      {
        title: 'End of training: mean |c(r+1) - c(r)| (coupling change) per routing iteration r; rows = models trained with R iterations',
        columns: ['R', ...Array.from({ length: maxR }, (_, k) => `r=${k + 1}`), `test error (seed ${seeds[0]})`],
        rows: iterationsList.map((r) => [
          r,
          ...Array.from({ length: maxR }, (_, k) => sci(finalTrace(r).coupling[k])),
          `${(100 * metrics[`r${r}_error_seed${seeds[0]}`]!).toFixed(2)}%`,
        ]),
      },
      {
        title: 'End of training: mean |b(r) - b(r-1)| (logit change) per routing iteration r',
        columns: ['R', ...Array.from({ length: maxR }, (_, k) => `r=${k + 1}`)],
        rows: iterationsList.map((r) => [r, ...Array.from({ length: maxR }, (_, k) => sci(finalTrace(r).logits[k]))]),
      },
      {
        title: 'End of training: mean |v(r) - v(r-1)| (capsule change) per routing iteration r',
        columns: ['R', ...Array.from({ length: maxR }, (_, k) => `r=${k + 1}`)],
        rows: iterationsList.map((r) => [r, ...Array.from({ length: maxR }, (_, k) => (k === 0 ? null : sci(finalTrace(r).capsules[k - 1])))]),
      },
      {
        title: `Test error (%), routing 1 vs 3, mean +- std over seeds ${seeds.join(', ')}`,
        columns: ['routing iterations', 'seeds', 'errors %', 'mean +- std %', 'paper (with reconstruction) %'],
        rows: [1, 3]
          .filter((r) => errors[r])
          .map((r) => [
            r,
            errors[r]!.length,
            errors[r]!.map((e) => (100 * e.error).toFixed(2)).join(', '),
            `${(100 * stats(r).mean).toFixed(2)} +- ${(100 * stats(r).std).toFixed(2)}`,
            r === 1 ? '0.29 +- 0.011' : '0.25 +- 0.005',
          ]),
      },
    ],
    figures,
    notes: [
      `Each model: ${train.count} ${dataset.name} images with shifts up to ${base.maxShift} px, ${epochs} ` +
        `epoch(s) (${stepsPerRun} steps of ${batchSize}); traced every ${probeEvery} step(s) on ` +
        `${probeCount} test images.`,
      'b(r) - b(r-1) = u_hat . v(r) exactly, so the logit change levels off at mean |u_hat . v*| once the ' +
        'outputs settle; it cannot decay to zero. The coupling change (and the capsule change) is what ' +
        'decays as routing converges.',
      ...(ci
        ? [
            'ci scale: a few minutes of training; the 1 vs 3 difference the paper reports (0.04 points) is far ' +
              'below the seed-to-seed spread of ci runs and needs paper scale (full MNIST, hundreds of epochs).',
          ]
        : []),
      ...resolutionNotes(options.scale, test.count, errors[3] ? stats(3).mean : (errors[iterationsList[0]!]?.[0]?.error ?? 0)),
    ],
  };
  writeResult(options.out, result);
  return result;
}
