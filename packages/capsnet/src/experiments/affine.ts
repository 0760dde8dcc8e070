/**
 * Section 5.2, robustness to affine transformations. A CapsNet and the baseline CNN are trained on MNIST digits
 * placed at random positions on a black 40x40 canvas, then tested on (a) test digits placed the same way, (b) test
 * digits centred, (c) an affNIST-style set generated here (rotation, shear, scale, translation on 40x40), and (d)
 * the real affNIST test set when --affnist-dir is given.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { Rng } from '@capsnet-onnx/core';
import { type ImageSet, loadAffnist } from './affnist.ts';
import { setupBackend } from './backend.ts';
import { barChart, imageGrid } from './charts.ts';
import { type CnnConfig, PAPER_CNN, cnnForward, cnnLoss, cnnScores, initCnn } from './cnn.ts';
import {
  type ExperimentOptions, type ExperimentResult, type ResultFigure, capsConfigFor, commandLine, loadData, pct, timer, writeResult,
} from './common.ts';
import { AFFNIST_STYLE, affineSet, randomlyPlaced } from './generators.ts';
import { accuracyOf, capsNetAccuracy, epochBatches, fit, stepsFor, toTensors, trainCapsNet } from './training.ts';

export interface AffineOptions extends ExperimentOptions {
  affnistDir?: string;
}

const CANVAS = 40;

export async function runAffine(options: AffineOptions): Promise<ExperimentResult> {
  const elapsed = timer();
  const startedAt = new Date().toISOString();
  mkdirSync(options.out, { recursive: true });
  const backend = await setupBackend(options.backend, options.log);
  const ci = options.scale === 'ci';
  const loaded = loadData(options.data, options.trainLimit ?? (ci ? 4000 : undefined), options.testLimit ?? (ci ? 1000 : undefined));
  const { dataset, test } = loaded;
  // validation digits (for matching the two models' accuracy): training digits beyond --train-limit when there are
  // enough, else the last tenth of the training digits, which are then left out of training
  const digitPixels = dataset.shape.inputHeight * dataset.shape.inputWidth;
  const spare = dataset.train.count - loaded.train.count;
  const valCount = spare >= 200 ? Math.min(1000, spare, test.count) : Math.max(1, Math.floor(loaded.train.count / 10));
  const valStart = spare >= 200 ? loaded.train.count : loaded.train.count - valCount;
  const train = { images: dataset.train.images.subarray(0, Math.min(valStart, loaded.train.count) * digitPixels), labels: dataset.train.labels.subarray(0, Math.min(valStart, loaded.train.count)), count: Math.min(valStart, loaded.train.count) };
  const validationDigits = {
    images: dataset.train.images.subarray(valStart * digitPixels, (valStart + valCount) * digitPixels), labels: dataset.train.labels.subarray(valStart, valStart + valCount), count: valCount,
  };
  const digit = dataset.shape.inputHeight;
  if (dataset.shape.inputWidth !== digit || digit > CANVAS || dataset.shape.inputChannels !== 1) {
    throw new Error(`the affine experiment needs square single-channel digits of at most ${CANVAS}px; ${dataset.name} has ${digit}x${dataset.shape.inputWidth}x${dataset.shape.inputChannels}`);
  }
  const epochs = options.epochs ?? (ci ? 1 : 50);
  const batchSize = options.batchSize ?? (ci ? 32 : 128);
  const shape = { inputHeight: CANVAS, inputWidth: CANVAS, inputChannels: 1, numClasses: dataset.shape.numClasses };
  const capsConfig = capsConfigFor(options.scale, shape);
  const cnnConfig: CnnConfig = {
    ...shape,
    ...(ci ? { convChannels: [32, 32, 16], kernel: 5, poolAfter: [0, 1], fc: [64, 32], dropout: 0.5 } : { ...PAPER_CNN, convChannels: [...PAPER_CNN.convChannels], poolAfter: [...PAPER_CNN.poolAfter], fc: [...PAPER_CNN.fc] }),
    learningRate: 1e-3, decayRate: capsConfig.decayRate, decaySteps: capsConfig.decaySteps,
  } as CnnConfig;
  const steps = stepsFor(train.count, batchSize, epochs);
  // each batch places its digits at fresh random positions on the 40x40 canvas (the same for both models)
  const placed = (seedOffset: number) => epochBatches(train.images, train.labels, train.count, digit * digit, batchSize, options.seed, (batch, step) => {
    const set = randomlyPlaced({ images: batch.images, labels: batch.labels, count: batch.count }, batch.count, digit, CANVAS, new Rng(options.seed * 15485863 + step + seedOffset));
    return { images: set.images, labels: set.labels, count: set.count };
  });

  options.log(`affine: training CapsNet on ${train.count} digits placed at random on ${CANVAS}x${CANVAS}, ${epochs} epoch(s), ${steps} steps`);
  const caps = await trainCapsNet({ config: capsConfig, seed: options.seed, steps, nextBatch: placed(0), log: options.log, label: 'affine capsnet' });

  // The paper compares models of matching accuracy on expanded MNIST: the CNN trains epoch by epoch until its accuracy
  // on randomly placed validation digits reaches the CapsNet's, or for at most `cnnMaxEpochs` epochs.
  const validation = randomlyPlaced(validationDigits, validationDigits.count, digit, CANVAS, new Rng(options.seed + 303));
  const capsValidation = await capsNetAccuracy(caps.params, capsConfig, validation.images, validation.labels, validation.count);
  const cnnMaxEpochs = ci ? 3 * epochs : 2 * epochs;
  const stepsPerEpoch = stepsFor(train.count, batchSize, 1);
  // check four times per epoch, so the CNN stops close to the CapsNet's accuracy rather than overshooting it
  const checkEvery = Math.max(1, Math.ceil(stepsPerEpoch / 4));
  options.log(`affine: CapsNet validation accuracy ${pct(capsValidation)}; training the baseline CNN (conv ${cnnConfig.convChannels.join('/')}, ` +
    `fc ${cnnConfig.fc.join('/')}) the same way until it matches, at most ${cnnMaxEpochs} epoch(s)`);
  const cnnParams = initCnn(cnnConfig, options.seed);
  const cnnBatches = placed(0);
  let cnnValidation = 0;
  let cnnEpochs = 0;
  const cnnFit = await fit({
    params: cnnParams, steps: stepsPerEpoch * cnnMaxEpochs, learningRate: cnnConfig.learningRate, decayRate: cnnConfig.decayRate, decaySteps: cnnConfig.decaySteps,
    stopAfter: async (step) => {
      if ((step + 1) % checkEvery !== 0 && step + 1 !== stepsPerEpoch * cnnMaxEpochs) return false;
      cnnEpochs = Number(((step + 1) / stepsPerEpoch).toFixed(2));
      cnnValidation = accuracyOf(await cnnScores(cnnParams, cnnConfig, validation.images, validation.count), validation.labels, cnnConfig.numClasses);
      options.log(`affine: CNN epoch ${cnnEpochs}: validation accuracy ${pct(cnnValidation)} (CapsNet ${pct(capsValidation)})`);
      return cnnValidation >= capsValidation;
    },
    loss: (step) => {
      const batch = cnnBatches(step);
      const { x, y } = toTensors(batch, cnnConfig);
      return { total: cnnLoss(cnnForward(cnnParams, x, cnnConfig, options.seed * 31 + step), y), count: batch.count };
    },
    log: options.log,
    label: 'affine cnn',
  });

  // test sets
  const testSets: Array<ImageSet & { name: string; description: string }> = [];
  const translated = randomlyPlaced(test, test.count, digit, CANVAS, new Rng(options.seed + 101));
  testSets.push({ ...translated, source: 'generated', name: 'translated MNIST', description: `test digits at random positions on ${CANVAS}x${CANVAS} (the training distribution; the paper's "expanded MNIST" test set)` });
  const centred = randomlyPlaced(test, test.count, digit, CANVAS, new Rng(0), true);
  testSets.push({ ...centred, source: 'generated', name: 'centred MNIST', description: `test digits centred on ${CANVAS}x${CANVAS} (untransformed, like affNIST's "just centered" set)` });
  const affine = affineSet(test, test.count, digit, AFFNIST_STYLE, new Rng(options.seed + 202));
  testSets.push({ ...affine, source: 'generated', name: 'affNIST-style', description: `test digits with random rotation (+-${AFFNIST_STYLE.rotationDegrees} deg), shear (+-${AFFNIST_STYLE.shear}), scale (${AFFNIST_STYLE.scaleMin}-${AFFNIST_STYLE.scaleMax} per axis) and translation keeping the digit on ${CANVAS}x${CANVAS}` });
  const notes: string[] = [];
  if (options.affnistDir) {
    const real = loadAffnist(options.affnistDir);
    if (real.size !== CANVAS) throw new Error(`${real.source}: affNIST images should be ${CANVAS}x${CANVAS}, found ${real.size}x${real.size}`);
    const limit = Math.min(real.count, options.testLimit ?? (ci ? 1000 : real.count));
    testSets.push({
      images: real.images.subarray(0, limit * CANVAS * CANVAS), labels: real.labels.subarray(0, limit), count: limit, size: CANVAS, source: real.source,
      name: 'affNIST (real)', description: `the real affNIST test set from ${real.source} (${limit} of ${real.count} images)`,
    });
  } else {
    notes.push('The real affNIST test set was not used (pass --affnist-dir); "affNIST-style" is generated here with similar ranges.');
  }

  const rows: Array<Array<string | number | null>> = [];
  const capsAcc: number[] = [];
  const cnnAcc: number[] = [];
  for (const set of testSets) {
    const capsAccuracy = await capsNetAccuracy(caps.params, capsConfig, set.images, set.labels, set.count);
    const cnnAccuracy = accuracyOf(await cnnScores(cnnParams, cnnConfig, set.images, set.count), set.labels, cnnConfig.numClasses);
    capsAcc.push(capsAccuracy);
    cnnAcc.push(cnnAccuracy);
    rows.push([set.name, set.count, pct(capsAccuracy), pct(cnnAccuracy), set.description]);
    options.log(`affine: ${set.name}: CapsNet ${pct(capsAccuracy)}, CNN ${pct(cnnAccuracy)} (${set.count} images)`);
  }
  rows.unshift(['validation (placed training digits)', validation.count, pct(capsValidation), pct(cnnValidation),
    'held-out training digits at random positions: the CNN trains until it matches the CapsNet here']);
  tf.dispose([...Object.values(caps.params), ...Object.values(cnnParams)]);

  const figures: ResultFigure[] = [];
  const chart = barChart({
    title: 'Accuracy on translated vs affine-transformed digits',
    yLabel: 'test accuracy (%)',
    categories: testSets.map((s) => s.name),
    series: [{ name: 'CapsNet', values: capsAcc.map((v) => 100 * v) }, { name: 'baseline CNN', values: cnnAcc.map((v) => 100 * v) }],
    format: (v) => v.toFixed(1),
    yMax: 100,
  });
  chart.save(join(options.out, 'affine-accuracy.png'));
  figures.push({ file: 'affine-accuracy.png', caption: 'Test accuracy of the CapsNet and the baseline CNN, both trained on randomly placed MNIST digits.', width: chart.width, height: chart.height });
  const shown = Math.min(12, test.count);
  const cells = (set: { images: Float32Array }) => Array.from({ length: shown }, (_, i) => ({
    width: CANVAS, height: CANVAS, layers: [{ pixels: set.images.subarray(i * CANVAS * CANVAS, (i + 1) * CANVAS * CANVAS) }],
  }));
  const sampleRows = [cells(centred), cells(translated), cells(affine)];
  const sampleLabels = ['centred', 'translated', 'affine'];
  const real = testSets.find((s) => s.name === 'affNIST (real)');
  if (real) {
    sampleRows.push(cells(real).slice(0, Math.min(shown, real.count)));
    sampleLabels.push('affNIST');
  }
  const samples = imageGrid({
    title: 'Affine test sets (same test digits per column)',
    rows: sampleRows,
    rowLabels: sampleLabels,
    scale: 2,
    gap: 4,
    footer: affine.params.slice(0, 3).map((p, i) =>
      `#${i}: rot ${((p.rotation * 180) / Math.PI).toFixed(1)} deg, shear ${p.shear.toFixed(2)}, scale ${p.scaleX.toFixed(2)}x${p.scaleY.toFixed(2)}, shift ${p.tx.toFixed(1)},${p.ty.toFixed(1)}`),
  });
  samples.save(join(options.out, 'affine-samples.png'));
  figures.push({ file: 'affine-samples.png', caption: 'The same test digits centred, randomly translated (training distribution) and affNIST-style transformed.', width: samples.width, height: samples.height });

  const metrics: Record<string, number> = {
    capsnet_translated: capsAcc[0]!, cnn_translated: cnnAcc[0]!, capsnet_affine: capsAcc[2]!, cnn_affine: cnnAcc[2]!,
    capsnet_centred: capsAcc[1]!, cnn_centred: cnnAcc[1]!, capsnet_validation: capsValidation, cnn_validation: cnnValidation,
  };
  if (real) {
    metrics.capsnet_affnist = capsAcc.at(-1)!;
    metrics.cnn_affnist = cnnAcc.at(-1)!;
  }
  if (ci) notes.push(`ci scale: narrow CapsNet (conv1 ${capsConfig.conv1Filters}, ${capsConfig.primaryMaps} primary maps) and CNN (conv ${cnnConfig.convChannels.join('/')}, fc ${cnnConfig.fc.join('/')}) instead of the paper's 256/32 and 256/256/128, 328/192; ${train.count} training digits.`);
  notes.push('Baseline CNN: 5x5 stride-1 "same" convolutions with ReLU, 2x2 max pooling after the first two (the paper does not specify pooling), two ReLU fully connected layers, dropout 0.5 before the softmax, cross entropy, Adam.');
  notes.push(`As in the paper, the models are compared at matching accuracy on randomly placed digits: the CNN trained until its accuracy on ${validation.count} randomly placed validation digits reached the CapsNet's (${pct(capsValidation)}); it got ${pct(cnnValidation)} after ${cnnEpochs} epoch(s)${cnnValidation < capsValidation ? ` (stopped at the ${cnnMaxEpochs}-epoch cap without matching)` : ''}. Compare the drop from translated to affine.`);
  const result: ExperimentResult = {
    experiment: 'affine',
    title: 'Robustness to affine transformations (section 5.2)',
    paper: 'Trained on randomly placed MNIST on 40x40: CapsNet 99.23% on the expanded MNIST test set and 79% on affNIST; the baseline CNN 99.22% and 66%.',
    scale: options.scale,
    seed: options.seed,
    backend,
    data: dataset.name,
    command: options.command ?? commandLine(),
    startedAt,
    seconds: elapsed(),
    metrics,
    settings: {
      canvas: CANVAS, trainImages: train.count, testImages: test.count, epochs, batchSize, steps, affine: AFFNIST_STYLE,
      capsnet: { conv1Filters: capsConfig.conv1Filters, primaryMaps: capsConfig.primaryMaps, decoderHidden: capsConfig.decoderHidden, seconds: Number(caps.fit.seconds.toFixed(1)) },
      cnn: {
        convChannels: cnnConfig.convChannels, fc: cnnConfig.fc, dropout: cnnConfig.dropout, poolAfter: cnnConfig.poolAfter, seconds: Number(cnnFit.seconds.toFixed(1)),
        epochs: cnnEpochs, steps: cnnFit.steps, maxEpochs: cnnMaxEpochs,
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
