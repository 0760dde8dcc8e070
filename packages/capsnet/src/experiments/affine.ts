/**
 * Section 5.2, robustness to affine transformations, by the paper's protocol. A CapsNet and a CNN with a parameter
 * count close to the CapsNet's are trained on MNIST digits placed at random positions on a black 40x40 canvas
 * ("expanded MNIST") until each reaches the same target accuracy on held-out placed digits (the paper: 99.2%), then
 * tested on (a) test digits placed the same way, (b) test digits centred, (c) the real affNIST test set
 * (--affnist-dir; required at paper scale) and (d) only when asked for by name (--affnist-generated), an
 * affNIST-style set generated here, labelled "generated" wherever it appears.
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { Rng } from '@capsnet-onnx/core';
import { type ImageSet, loadAffnist } from './affnist.ts';
import { barChart, imageGrid, saveFigure } from './figures.ts';
import { accuracyOf, epochBatches, fit, stepsFor } from '../train/loop.ts';
import { type BaselineCnnConfig, PAPER_BASELINES, baselineParameterCount, matchedBaseline, narrowed } from '@capsnet-onnx/core';
import { type ModelFamily, baselineFamily, capsnetFamily, familyScores } from '../train/family.ts';
import { capsnetParameterCount } from '@capsnet-onnx/core';
import {
  type ExperimentOptions,
  type ExperimentResult,
  type ResultFigure,
  EPOCHS,
  type Scale,
  batchSizeFor,
  capsConfigFor,
  pct,
  resolutionNotes,
  runInfo,
  startExperiment,
  writeResult,
} from './common.ts';
import { AFFNIST_STYLE, EXPANDED_MNIST, affineSet, expandedMnist, randomlyPlaced } from './generators.ts';
import { toTensors } from './training.ts';

export interface AffineOptions extends ExperimentOptions {
  affnistDir?: string;
  /** Also test on the affNIST-style set generated here (not affNIST; labelled so). */
  affnistGenerated?: boolean;
  /** Train each model until its accuracy on held-out placed digits reaches this (default: paper 0.992, ci 0.85). */
  targetAccuracy?: number;
}

/** The section 5.2 target: both models at about 99.2% on the expanded MNIST test set. */
export const PAPER_TARGET_ACCURACY = 0.992;

/** The accuracy each scale trains both models to (--target-accuracy overrides): what its training can reach. */
export const TARGET_ACCURACY: Record<Scale, number> = { ci: 0.85, medium: 0.98, paper: PAPER_TARGET_ACCURACY };

const CANVAS = EXPANDED_MNIST.canvas;
const GENERATED_NAME = 'GENERATED affine (not affNIST)';

export async function runAffine(options: AffineOptions): Promise<ExperimentResult> {
  const loaded = await startExperiment(options, 'affine');
  const { dataset, test, backend, ci, startedAt, elapsed } = loaded;
  // validation digits (for matching the two models' accuracy): training digits beyond --train-limit when there are
  // enough, else the last tenth of the training digits, which are then left out of training
  const digitPixels = dataset.shape.inputHeight * dataset.shape.inputWidth;
  const spare = dataset.train.count - loaded.train.count;
  const valCount = spare >= 200 ? Math.min(1000, spare, test.count) : Math.max(1, Math.floor(loaded.train.count / 10));
  const valStart = spare >= 200 ? loaded.train.count : loaded.train.count - valCount;
  const train = {
    images: dataset.train.images.subarray(0, Math.min(valStart, loaded.train.count) * digitPixels),
    labels: dataset.train.labels.subarray(0, Math.min(valStart, loaded.train.count)),
    count: Math.min(valStart, loaded.train.count),
  };
  const validationDigits = {
    images: dataset.train.images.subarray(valStart * digitPixels, (valStart + valCount) * digitPixels),
    labels: dataset.train.labels.subarray(valStart, valStart + valCount),
    count: valCount,
  };
  const digit = dataset.shape.inputHeight;
  if (dataset.shape.inputWidth !== digit || digit > CANVAS || dataset.shape.inputChannels !== 1) {
    throw new Error(
      `the affine experiment needs square single-channel digits of at most ${CANVAS}px; ${dataset.name} ` +
        `has ${digit}x${dataset.shape.inputWidth}x${dataset.shape.inputChannels}`,
    );
  }
  if (options.scale === 'paper' && !options.affnistDir) {
    throw new Error(
      '--scale paper tests on the real affNIST test set: download it (the test batches, .mat) and pass --affnist-dir PATH; ' +
        'the generated affNIST-style set is not affNIST (use --scale ci --affnist-generated to see it)',
    );
  }
  const maxEpochs = options.epochs ?? EPOCHS.affine[options.scale];
  const target = options.targetAccuracy ?? TARGET_ACCURACY[options.scale];
  const batchSize = batchSizeFor(options);
  const shape = { inputHeight: CANVAS, inputWidth: CANVAS, inputChannels: 1, numClasses: dataset.shape.numClasses };
  const capsConfig = capsConfigFor(options.scale, shape);
  const capsParameters = capsnetParameterCount(capsConfig);
  // "a traditional convolutional model with a similar number of parameters": Table 1's architecture, pooled twice,
  // its first fully connected layer sized to bring the total to the CapsNet's (ci: the widths divided by 8 first).
  const paper = options.scale === 'paper';
  const cnnConfig: BaselineCnnConfig = matchedBaseline(shape, capsParameters, paper ? PAPER_BASELINES.mnist : narrowed(PAPER_BASELINES.mnist, 8));
  const cnnParameters = baselineParameterCount(cnnConfig);
  const stepsPerEpoch = stepsFor(train.count, batchSize, 1);
  // each batch places its digits at fresh random positions on the 40x40 canvas (the same for both models)
  const placed = (seedOffset: number) =>
    epochBatches(train.images, train.labels, train.count, digit * digit, batchSize, options.seed, (batch, step) => {
      const set = expandedMnist(
        { images: batch.images, labels: batch.labels, count: batch.count },
        options.seed * 15485863 + step + seedOffset,
        batch.count,
        0,
        digit,
      );
      return { images: set.images, labels: set.labels, count: set.count };
    });
  const validation = expandedMnist(validationDigits, options.seed + 303, validationDigits.count, 0, digit);
  // check four times per epoch, so each model stops close to the target rather than overshooting it
  const checkEvery = Math.max(1, Math.ceil(stepsPerEpoch / 4));

  /** Train one family on placed digits until its validation accuracy reaches the target (or the epoch cap). */
  const trainToTarget = async (family: ModelFamily, name: string) => {
    const params = family.init(options.seed);
    const batches = placed(0);
    let accuracy = 0;
    let epochsRun = 0;
    const total = stepsPerEpoch * maxEpochs;
    const result = await fit({
      params,
      steps: total,
      optimizer: capsConfig,
      label: `affine ${name}`,
      log: options.log,
      loss: (step) => {
        const { x, y } = toTensors(batches(step), shape);
        return { ...family.losses(params, x, y, step), count: x.shape[0] };
      },
      stopAfter: async (step) => {
        if ((step + 1) % checkEvery !== 0 && step + 1 !== total) return false;
        epochsRun = Number(((step + 1) / stepsPerEpoch).toFixed(2));
        accuracy = accuracyOf(await familyScores(family, params, validation.images, validation.count), validation.labels, shape.numClasses);
        options.log(`affine: ${name} epoch ${epochsRun}: validation accuracy ${pct(accuracy)} (target ${pct(target)})`);
        return accuracy >= target;
      },
    });
    return { params, accuracy, epochs: epochsRun, fit: result, reached: accuracy >= target };
  };
  const capsFamily = capsnetFamily(capsConfig);
  const cnnFamily = baselineFamily(cnnConfig, options.seed);
  options.log(
    `affine: training CapsNet (${capsParameters.toLocaleString('en-US')} parameters) and the CNN (conv ${cnnConfig.convChannels.join('/')}, ` +
      `fc ${cnnConfig.fc.join('/')}, ${cnnParameters.toLocaleString('en-US')} parameters) on ${train.count} digits placed at random on ${CANVAS}x${CANVAS}, ` +
      `each until ${pct(target)} on ${validation.count} held-out placed digits (at most ${maxEpochs} epochs)`,
  );
  const caps = await trainToTarget(capsFamily, 'capsnet');
  const cnn = await trainToTarget(cnnFamily, 'cnn');
  const capsValidation = caps.accuracy;
  const cnnValidation = cnn.accuracy;
  const cnnParams = cnn.params;

  // test sets
  const testSets: Array<ImageSet & { name: string; description: string }> = [];
  const translated = expandedMnist(test, options.seed + 101, test.count, 0, digit);
  testSets.push({
    ...translated,
    source: 'generated',
    name: 'translated MNIST',
    description: `test digits at random positions on ${CANVAS}x${CANVAS} (the training distribution; the paper's "expanded MNIST" test set)`,
  });
  const centred = randomlyPlaced(test, test.count, digit, CANVAS, new Rng(0), true);
  testSets.push({
    ...centred,
    source: 'generated',
    name: 'centred MNIST',
    description: `test digits centred on ${CANVAS}x${CANVAS} (untransformed, like affNIST's "just centered" set)`,
  });
  const notes: string[] = [];
  const affine = options.affnistGenerated ? affineSet(test, test.count, digit, AFFNIST_STYLE, new Rng(options.seed + 202)) : undefined;
  if (affine) {
    testSets.push({
      ...affine,
      source: 'generated',
      name: GENERATED_NAME,
      description:
        `GENERATED here, not affNIST: test digits with random rotation (+-${AFFNIST_STYLE.rotationDegrees} ` +
        `deg), shear (+-${AFFNIST_STYLE.shear}), scale (${AFFNIST_STYLE.scaleMin}-${AFFNIST_STYLE.scaleMax} ` +
        `per axis) and translation keeping the digit on ${CANVAS}x${CANVAS}`,
    });
    notes.push(
      `"${GENERATED_NAME}" is generated by this project with similar ranges; it is not the affNIST test ` +
        `set and its numbers are not comparable with the paper's 79% / 66%.`,
    );
  }
  if (options.affnistDir) {
    const real = loadAffnist(options.affnistDir);
    if (real.size !== CANVAS) throw new Error(`${real.source}: affNIST images should be ${CANVAS}x${CANVAS}, found ${real.size}x${real.size}`);
    const limit = Math.min(real.count, options.testLimit ?? (ci ? 1000 : real.count));
    testSets.push({
      images: real.images.subarray(0, limit * CANVAS * CANVAS),
      labels: real.labels.subarray(0, limit),
      count: limit,
      size: CANVAS,
      source: real.source,
      name: 'affNIST (real)',
      description: `the real affNIST test set from ${real.source} (${limit} of ${real.count} images)`,
    });
  } else {
    notes.push(
      'The real affNIST test set was not used (pass --affnist-dir PATH); without it this run shows translation only' +
        (affine ? ' and the generated set.' : '; add --affnist-generated for a generated affine set.'),
    );
  }

  const rows: Array<Array<string | number | null>> = [];
  const capsAcc: number[] = [];
  const cnnAcc: number[] = [];
  for (const set of testSets) {
    const capsAccuracy = accuracyOf(await familyScores(capsFamily, caps.params, set.images, set.count), set.labels.subarray(0, set.count), shape.numClasses);
    const cnnAccuracy = accuracyOf(await familyScores(cnnFamily, cnnParams, set.images, set.count), set.labels.subarray(0, set.count), shape.numClasses);
    capsAcc.push(capsAccuracy);
    cnnAcc.push(cnnAccuracy);
    rows.push([set.name, set.count, pct(capsAccuracy), pct(cnnAccuracy), set.description]);
    options.log(`affine: ${set.name}: CapsNet ${pct(capsAccuracy)}, CNN ${pct(cnnAccuracy)} (${set.count} images)`);
  }
  rows.unshift([
    'validation (placed training digits)',
    validation.count,
    pct(capsValidation),
    pct(cnnValidation),
    `held-out training digits at random positions: each model trains until ${pct(target)} here`,
  ]);
  tf.dispose([...Object.values(caps.params), ...Object.values(cnnParams)] as tf.Tensor[]);

  const figures: ResultFigure[] = [];
  const chart = await saveFigure(
    join(options.out, 'affine-accuracy.svg'),
    barChart({
      title: 'Accuracy on translated vs affine-transformed digits',
      yLabel: 'test accuracy (%)',
      categories: testSets.map((s) => s.name),
      series: [
        { name: 'CapsNet', values: capsAcc.map((v) => 100 * v) },
        { name: 'baseline CNN', values: cnnAcc.map((v) => 100 * v) },
      ],
      format: (v) => v.toFixed(1),
      yMax: 100,
    }),
  );
  figures.push({
    file: 'affine-accuracy.svg',
    caption: 'Test accuracy of the CapsNet and the baseline CNN, both trained on randomly placed MNIST digits.',
    ...chart,
  });
  const shown = Math.min(12, test.count);
  const cells = (set: { images: Float32Array }) =>
    Array.from({ length: shown }, (_, i) => ({
      width: CANVAS,
      height: CANVAS,
      layers: [{ pixels: set.images.subarray(i * CANVAS * CANVAS, (i + 1) * CANVAS * CANVAS) }],
    }));
  const sampleRows = [cells(centred), cells(translated), ...(affine ? [cells(affine)] : [])];
  const sampleLabels = ['centred', 'translated', ...(affine ? ['GENERATED affine'] : [])];
  const real = testSets.find((s) => s.name === 'affNIST (real)');
  if (real) {
    sampleRows.push(cells(real).slice(0, Math.min(shown, real.count)));
    sampleLabels.push('affNIST');
  }
  const samples = await saveFigure(
    join(options.out, 'affine-samples.svg'),
    imageGrid({
      title: 'Affine test sets (same test digits per column)',
      rows: sampleRows,
      rowLabels: sampleLabels,
      scale: 2,
      gap: 4,
      footer: (affine?.params ?? [])
        .slice(0, 3)
        .map(
          (p, i) =>
            `#${i}: rot ${((p.rotation * 180) / Math.PI).toFixed(1)} deg, shear ${p.shear.toFixed(2)}, scale ` +
            `${p.scaleX.toFixed(2)}x${p.scaleY.toFixed(2)}, shift ${p.tx.toFixed(1)},${p.ty.toFixed(1)}`,
        ),
    }),
  );
  figures.push({
    file: 'affine-samples.svg',
    caption:
      'The same test digits centred and randomly translated (training ' +
      `distribution)${affine ? ', and in the GENERATED affine set (not affNIST)' : ''}${real ? ', and real affNIST digits' : ''}.`,
    ...samples,
  });

  const metrics: Record<string, number> = {
    capsnet_translated: capsAcc[0]!,
    cnn_translated: cnnAcc[0]!,
    capsnet_centred: capsAcc[1]!,
    cnn_centred: cnnAcc[1]!,
    capsnet_validation: capsValidation,
    cnn_validation: cnnValidation,
    target_accuracy: target,
    capsnet_parameters: capsParameters,
    cnn_parameters: cnnParameters,
    capsnet_epochs: caps.epochs,
    cnn_epochs: cnn.epochs,
  };
  if (affine) {
    metrics.capsnet_generated_affine = capsAcc[2]!;
    metrics.cnn_generated_affine = cnnAcc[2]!;
  }
  if (real) {
    metrics.capsnet_affnist = capsAcc.at(-1)!;
    metrics.cnn_affnist = cnnAcc.at(-1)!;
  }
  if (ci)
    notes.push(
      `ci scale: narrow CapsNet (conv1 ${capsConfig.conv1Filters}, ${capsConfig.primaryMaps} primary ` +
        `maps) and CNN; ${train.count} training digits; target ${pct(target)} instead of the paper's ` +
        `${pct(PAPER_TARGET_ACCURACY)}.`,
    );
  if (options.scale === 'medium')
    notes.push(
      `medium scale: the small preset CapsNet (conv1 ${capsConfig.conv1Filters}, ` +
        `${capsConfig.primaryMaps} primary maps) and a CNN of the same size, ${train.count} training digits ` +
        `placed at random on ${CANVAS}x${CANVAS} (shifts up to ${(CANVAS - digit) / 2} px from the centre), ` +
        `target ${pct(target)} instead of the paper's ${pct(PAPER_TARGET_ACCURACY)}. ` +
        "The paper's effect (79% vs 66% on affNIST, 13 points) is far above this scale's resolution, but it " +
        'needs the real affNIST test set (--affnist-dir); without it the run shows the translated and ' +
        'centred sets only.',
    );
  notes.push(...resolutionNotes(options.scale, test.count, 1 - (capsAcc[0] ?? 0), 'translated-MNIST test error'));
  notes.push(
    `CNN: ${cnnConfig.convChannels.join('/')} 5x5 "same" convolutions with 2x2 max pooling after the ` +
      `first two, fc ${cnnConfig.fc.join('/')} (fc1 sized so the CNN has ` +
      `${cnnParameters.toLocaleString('en-US')} parameters, the CapsNet ` +
      `${capsParameters.toLocaleString('en-US')}), dropout ${cnnConfig.dropout}, softmax cross entropy, ` +
      'Adam.',
  );
  for (const [name, m] of [
    ['CapsNet', caps],
    ['CNN', cnn],
  ] as const) {
    const stopped = m.reached
      ? ''
      : ` (stopped at the ${maxEpochs}-epoch cap WITHOUT reaching the target ${pct(target)}: raise --epochs or lower --target-accuracy)`;
    notes.push(`${name}: ${pct(m.accuracy)} on the held-out placed digits after ${m.epochs} epoch(s)${stopped}.`);
  }
  const result: ExperimentResult = {
    experiment: 'affine',
    title: 'Robustness to affine transformations (section 5.2)',
    paper:
      'Section 5.2: trained on MNIST placed at random on 40x40 until 99.23% (CapsNet) and 99.22% (a CNN ' +
      'with a similar number of parameters) on the expanded MNIST test set; on the affNIST test set ' +
      'CapsNet 79%, the CNN 66%.',
    ...runInfo(options, backend, dataset.name, startedAt, elapsed()),
    metrics,
    settings: {
      canvas: CANVAS,
      trainImages: train.count,
      testImages: test.count,
      maxEpochs,
      targetAccuracy: target,
      batchSize,
      generatedAffine: options.affnistGenerated ? AFFNIST_STYLE : null,
      capsnet: {
        conv1Filters: capsConfig.conv1Filters,
        primaryMaps: capsConfig.primaryMaps,
        decoderHidden: capsConfig.decoderHidden,
        parameters: capsParameters,
        epochs: caps.epochs,
        seconds: Number(caps.fit.seconds.toFixed(1)),
      },
      cnn: {
        convChannels: cnnConfig.convChannels,
        fc: cnnConfig.fc,
        dropout: cnnConfig.dropout,
        poolAfter: cnnConfig.poolAfter,
        parameters: cnnParameters,
        epochs: cnn.epochs,
        seconds: Number(cnn.fit.seconds.toFixed(1)),
      },
      validationImages: validation.count,
    },
    tables: [{ title: 'Test accuracy', columns: ['test set', 'images', 'CapsNet', 'baseline CNN', 'what it is'], rows }],
    figures,
    notes,
  };
  writeResult(options.out, result);
  return result;
}
