/**
 * Section 6, segmenting highly overlapping digits. MultiMNIST pairs (two digits of different classes, each shifted
 * up to 4 px, on 36x36) train a CapsNet with two targets: the margin loss with both labels present, and one
 * reconstruction per digit, the decoder masked by that digit's capsule and scored against that digit alone.
 * A test pair counts as right when the two longest capsules are exactly its two labels. The figure draws the two
 * reconstructions in red and green over the input, as in the paper's figure 5. The MultiMNIST baseline CNN
 * (model/baseline-cnn.ts, sigmoid cross entropy on the two labels) trains on the same pairs and is scored the
 * same way (its two largest logits).
 */
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import { type CapsNetParams, decode, encode, initParams, marginLoss, maskCapsules, reconstructionLoss } from '../model/capsnet.ts';
import { capsuleLengths } from '../model/layers.ts';
import { type CapsNetConfig, Rng } from '@capsnet-onnx/core';
import { COLORS, type GridCell, imageGrid, saveFigure } from './figures.ts';
import {
  type ExperimentOptions,
  type ExperimentResult,
  type ResultFigure,
  EPOCHS,
  LIMITS,
  batchSizeFor,
  capsConfigFor,
  pct,
  resolutionNotes,
  runInfo,
  startExperiment,
  writeResult,
} from './common.ts';
import { MULTIMNIST, type MultiMnistSet, type Overlay, TEST_CHUNK, multiMnist, multiMnistBatch, multiMnistTestChunk } from './generators.ts';
import { fit, scoresInBatches } from '../train/loop.ts';
import { PAPER_BASELINES, baselineConfig, baselineParameterCount, capsnetParameterCount, narrowed } from '@capsnet-onnx/core';
import { baselineFamily } from '../train/family.ts';
import { maskedCapsulesOf, refineDecoder } from './training.ts';

export interface MultiMnistRunOptions extends ExperimentOptions {
  overlay?: Overlay;
}

function pairTensors(set: MultiMnistSet, config: CapsNetConfig) {
  const shape: [number, number, number, number] = [set.count, config.inputHeight, config.inputWidth, 1];
  const hot = (labels: Int32Array) => tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), config.numClasses), 'float32') as tf.Tensor2D;
  return {
    x: tf.tensor4d(set.images, shape),
    first: tf.tensor4d(set.first, shape),
    second: tf.tensor4d(set.second, shape),
    yA: hot(set.labelsA),
    yB: hot(set.labelsB),
  };
}

/** Margin loss with both labels present plus a reconstruction loss for each digit, masked by its own capsule. */
export function multiMnistLosses(params: CapsNetParams, set: MultiMnistSet, config: CapsNetConfig) {
  const { x, first, second, yA, yB } = pairTensors(set, config);
  const { capsules } = encode(params, x, config);
  const lengths = capsuleLengths(capsules, config.squashEpsilon) as tf.Tensor2D;
  const margin = marginLoss(lengths, tf.add(yA, yB) as tf.Tensor2D, config);
  const reconA = reconstructionLoss(decode(params, maskCapsules(capsules, yA), config), first, config);
  const reconB = reconstructionLoss(decode(params, maskCapsules(capsules, yB), config), second, config);
  const reconstruction = tf.add(reconA, reconB) as tf.Scalar;
  return { total: tf.add(margin, reconstruction) as tf.Scalar, margin, reconstruction };
}

/** Indices of the two largest entries of each row. */
export function topTwo(scores: Float32Array, classes: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let i = 0; i < scores.length / classes; i++) {
    const row = Array.from(scores.subarray(i * classes, (i + 1) * classes));
    const order = row.map((v, k) => [v, k] as const).sort((a, b) => b[0] - a[0]);
    out.push([order[0]![1], order[1]![1]]);
  }
  return out;
}

/** Both-labels-right rate and per-digit rate (fraction of the 2 labels found in the top two). */
export function pairAccuracy(top: Array<[number, number]>, labelsA: Int32Array, labelsB: Int32Array): { both: number; digits: number } {
  let both = 0;
  let digits = 0;
  top.forEach(([p, q], i) => {
    const a = labelsA[i]!;
    const b = labelsB[i]!;
    const hits = Number(p === a || q === a) + Number(p === b || q === b);
    digits += hits;
    if (hits === 2) both++;
  });
  return { both: both / top.length, digits: digits / (2 * top.length) };
}

export async function runMultiMnist(options: MultiMnistRunOptions): Promise<ExperimentResult> {
  // Pairs are drawn fresh for every batch; "train limit" is the number of pairs per epoch, so the digits load whole.
  const { dataset, train, test, backend, ci, startedAt, elapsed } = await startExperiment(options);
  const overlay = options.overlay ?? MULTIMNIST.overlay;
  const generator = { ...MULTIMNIST, overlay };
  // Pairs per epoch: the paper's 60,000 (every training digit once as the first digit) unless the scale or --train-limit says.
  const limits = LIMITS.multimnist[options.scale];
  const pairsPerEpoch = options.trainLimit ?? limits.train ?? train.count;
  // The paper tests on 1,000 pairs per test digit (10M); the scale or --test-limit caps it.
  const testPairs = options.testLimit ?? limits.test ?? 1000 * test.count;
  const epochs = options.epochs ?? EPOCHS.multimnist[options.scale];
  const batchSize = batchSizeFor(options);
  const config = capsConfigFor(options.scale, {
    inputHeight: generator.canvas,
    inputWidth: generator.canvas,
    inputChannels: 1,
    numClasses: dataset.shape.numClasses,
  });
  const digitSize = dataset.shape.inputHeight;
  const steps = Math.max(1, Math.ceil(pairsPerEpoch / batchSize) * epochs);
  options.log(
    `multimnist: ${steps} steps of ${batchSize} fresh ${generator.canvas}x${generator.canvas} pairs ` +
      `(${overlay} overlay) from ${train.count} ${dataset.name} digits`,
  );

  const params = initParams(config, options.seed);
  const fitResult = await fit({
    params,
    steps,
    optimizer: config,
    loss: (step) => {
      const set = multiMnistBatch(train, step, batchSize, pairsPerEpoch, options.seed, generator, digitSize);
      const losses = multiMnistLosses(params, set, config);
      return { total: losses.total, parts: { margin: losses.margin, reconstruction: losses.reconstruction }, count: set.count };
    },
    log: options.log,
    label: 'multimnist',
  });

  // The MultiMNIST baseline CNN: the same number of steps on the same kind of fresh pairs, both labels as targets.
  const cnnConfig = baselineConfig('multimnist', config, options.scale === 'paper' ? {} : narrowed(PAPER_BASELINES.multimnist, 8));
  const cnn = baselineFamily(cnnConfig, options.seed);
  const cnnParams = cnn.init(options.seed);
  options.log(
    `multimnist: training the baseline CNN (conv ${cnnConfig.convChannels.join('/')}, fc ` +
      `${cnnConfig.fc.join('/')}, ${baselineParameterCount(cnnConfig).toLocaleString('en-US')} parameters)`,
  );
  const cnnFit = await fit({
    params: cnnParams,
    steps,
    optimizer: config,
    loss: (step) => {
      const set = multiMnistBatch(train, step, batchSize, pairsPerEpoch, options.seed, generator, digitSize);
      const x = tf.tensor4d(set.images, [set.count, config.inputHeight, config.inputWidth, 1]);
      const hot = (labels: Int32Array) => tf.oneHot(tf.tensor1d(labels, 'int32'), config.numClasses);
      const y = tf.cast(tf.add(hot(set.labelsA), hot(set.labelsB)), 'float32') as tf.Tensor2D;
      return { ...cnn.losses(cnnParams, x, y, step), count: set.count };
    },
    log: options.log,
    label: 'multimnist cnn',
  });

  // ci: the decoder alone learns a little longer on frozen capsules of fixed training pairs (each digit masked by its capsule)
  const decoderSteps = ci ? Math.min(600, Math.ceil(pairsPerEpoch / 10)) : 0;
  if (decoderSteps > 0) {
    const refinePairs = Math.min(2000, pairsPerEpoch);
    options.log(`multimnist: refining the decoder alone for ${decoderSteps} steps on the frozen capsules of ${refinePairs} training pairs`);
    const set = multiMnist(train, refinePairs, digitSize, generator, new Rng(options.seed * 7 + 1));
    const per = config.numClasses * config.digitDim;
    const masked = new Float32Array(2 * refinePairs * per);
    masked.set(await maskedCapsulesOf(params, config, set.images, set.labelsA, refinePairs), 0);
    masked.set(await maskedCapsulesOf(params, config, set.images, set.labelsB, refinePairs), refinePairs * per);
    const targets = new Float32Array(2 * refinePairs * set.size * set.size);
    targets.set(set.first, 0);
    targets.set(set.second, set.first.length);
    await refineDecoder(params, config, masked, targets, 2 * refinePairs, decoderSteps, 64, options.seed, options.log, 'multimnist decoder');
  }

  // test: pairs whose first digit runs through the test split in order, generated and scored 1,000 at a time (the
  // paper's 10M pairs would not fit in memory at once)
  const area = generator.canvas * generator.canvas;
  const capsTotals = { both: 0, digits: 0 };
  const cnnTotals = { both: 0, digits: 0 };
  let testSet: MultiMnistSet | undefined;
  let top: Array<[number, number]> = [];
  for (let start = 0; start < testPairs; start += TEST_CHUNK) {
    const chunk = multiMnistTestChunk(test, start, Math.min(TEST_CHUNK, testPairs - start), options.seed, generator, digitSize);
    const lengths = new Float32Array(chunk.count * config.numClasses);
    for (let offset = 0; offset < chunk.count; offset += 100) {
      const n = Math.min(100, chunk.count - offset);
      const l = tf.tidy(() => {
        const x = tf.tensor4d(chunk.images.subarray(offset * area, (offset + n) * area), [n, config.inputHeight, config.inputWidth, 1]);
        return capsuleLengths(encode(params, x, config).capsules, config.squashEpsilon);
      });
      lengths.set((await l.data()) as Float32Array, offset * config.numClasses);
      l.dispose();
    }
    const chunkTop = topTwo(lengths, config.numClasses);
    const caps = pairAccuracy(chunkTop, chunk.labelsA, chunk.labelsB);
    const cnnLogits = await scoresInBatches((x) => cnn.scores(cnnParams, x), cnnConfig, chunk.images, chunk.count);
    const cnnChunk = pairAccuracy(topTwo(cnnLogits, config.numClasses), chunk.labelsA, chunk.labelsB);
    for (const [totals, a] of [
      [capsTotals, caps],
      [cnnTotals, cnnChunk],
    ] as const) {
      totals.both += a.both * chunk.count;
      totals.digits += a.digits * chunk.count;
    }
    // the first chunk is kept for the figures
    if (!testSet) {
      testSet = chunk;
      top = chunkTop;
    }
  }
  if (!testSet) throw new Error('multimnist needs at least one test pair (--test-limit)');
  const acc = { both: capsTotals.both / testPairs, digits: capsTotals.digits / testPairs };
  const cnnAcc = { both: cnnTotals.both / testPairs, digits: cnnTotals.digits / testPairs };
  tf.dispose(Object.values(cnnParams));
  const capsParameters = capsnetParameterCount(config);
  const cnnParameters = baselineParameterCount(cnnConfig);
  options.log(`multimnist: baseline CNN: both labels right on ${pct(cnnAcc.both)}; ${pct(cnnAcc.digits)} of digits found`);
  options.log(`multimnist: both labels right on ${pct(acc.both)} of ${testPairs} test pairs; ${pct(acc.digits)} of digits found`);

  // figure: input, then the two reconstructions (each masked by one true label's capsule) in red and green over it
  const shown = Math.min(10, testSet.count);
  const [reconA, reconB] = tf.tidy(() => {
    const x = tf.tensor4d(testSet.images.subarray(0, shown * area), [shown, config.inputHeight, config.inputWidth, 1]);
    const hot = (labels: Int32Array) => tf.cast(tf.oneHot(tf.tensor1d(labels.subarray(0, shown), 'int32'), config.numClasses), 'float32') as tf.Tensor2D;
    const { capsules } = encode(params, x, config);
    return [decode(params, maskCapsules(capsules, hot(testSet.labelsA)), config), decode(params, maskCapsules(capsules, hot(testSet.labelsB)), config)];
  });
  const ra = (await reconA.data()) as Float32Array;
  const rb = (await reconB.data()) as Float32Array;
  tf.dispose([reconA, reconB]);
  const size = generator.canvas;
  const inputRow: GridCell[] = [];
  const reconRow: GridCell[] = [];
  for (let i = 0; i < shown; i++) {
    const input = testSet.images.subarray(i * area, (i + 1) * area);
    const right = new Set(top[i]).has(testSet.labelsA[i]!) && new Set(top[i]).has(testSet.labelsB[i]!);
    inputRow.push({ width: size, height: size, layers: [{ pixels: input }], caption: `L:${testSet.labelsA[i]},${testSet.labelsB[i]}` });
    reconRow.push({
      width: size,
      height: size,
      layers: [
        { pixels: Float32Array.from(input, (v) => 0.3 * v) },
        { pixels: ra.subarray(i * area, (i + 1) * area), tint: COLORS.red },
        { pixels: rb.subarray(i * area, (i + 1) * area), tint: COLORS.green },
      ],
      caption: `P:${top[i]![0]},${top[i]![1]}`,
      captionColor: right ? COLORS.black : COLORS.red,
    });
  }
  const canvas = await saveFigure(
    join(options.out, 'multimnist-reconstructions.svg'),
    imageGrid({
      title: 'MultiMNIST: inputs and two-colour reconstructions',
      rows: [inputRow, reconRow],
      rowLabels: ['input', 'recon'],
      scale: 3,
      gap: 6,
      footer: [
        'L: true labels (first, second). P: two longest capsules (red caption = wrong).',
        "Red: decoder masked by the first digit's capsule; green: by the second's; over the dimmed input.",
      ],
    }),
  );
  const samples = await saveFigure(
    join(options.out, 'multimnist-samples.svg'),
    imageGrid({
      title: 'MultiMNIST generator samples',
      rows: [0, 1]
        .map((r) =>
          Array.from({ length: Math.min(10, testSet.count - 10 * r) }, (_, k) => {
            const i = 10 * r + k;
            return {
              width: size,
              height: size,
              layers: [{ pixels: testSet.images.subarray(i * area, (i + 1) * area) }],
              caption: `${testSet.labelsA[i]}+${testSet.labelsB[i]}`,
            };
          }),
        )
        .filter((row) => row.length > 0),
      scale: 2,
      gap: 4,
    }),
  );
  const figures: ResultFigure[] = [
    {
      file: 'multimnist-reconstructions.svg',
      caption:
        "Top: MultiMNIST test inputs with their labels. Bottom: the reconstructions masked by each digit's " +
        'capsule, red for the first and green for the second, over the input; captions give the two longest ' +
        'capsules.',
      ...canvas,
    },
    {
      file: 'multimnist-samples.svg',
      caption: `Generated test pairs: two digits of different classes, each shifted up to ${generator.maxShift} px, ${overlay} overlay on ${size}x${size}.`,
      ...samples,
    },
  ];
  tf.dispose(Object.values(params));

  const result: ExperimentResult = {
    experiment: 'multimnist',
    title: 'MultiMNIST: recognising and segmenting overlapping digits (section 6)',
    paper:
      'Table 1 / section 6: CapsNet 5.2% error on MultiMNIST (3 routing iterations, with reconstruction; ' +
      '7.5% with 1 iteration), 11.36M parameters, trained on 60M generated pairs and tested on 10M; the ' +
      'baseline CNN 8.1% error, 24.56M parameters.',
    ...runInfo(options, backend, dataset.name, startedAt, elapsed()),
    metrics: {
      both_labels_accuracy: acc.both,
      digit_accuracy: acc.digits,
      train_seconds: Number(fitResult.seconds.toFixed(1)),
      cnn_both_labels_accuracy: cnnAcc.both,
      cnn_digit_accuracy: cnnAcc.digits,
      capsnet_parameters: capsParameters,
      cnn_parameters: cnnParameters,
    },
    settings: {
      canvas: generator.canvas,
      maxShift: generator.maxShift,
      overlay,
      pairsPerEpoch,
      epochs,
      batchSize,
      steps,
      testPairs,
      decoderRefineSteps: decoderSteps,
      config: {
        conv1Filters: config.conv1Filters,
        primaryMaps: config.primaryMaps,
        decoderHidden: config.decoderHidden,
        routingIterations: config.routing.iterations,
      },
    },
    tables: [
      {
        title: 'MultiMNIST test accuracy',
        columns: [
          'model',
          'parameters',
          'test pairs',
          'both labels right (top two = the two labels)',
          'digits found',
          'error (both)',
          'paper error',
          'training pairs seen',
          'train seconds',
        ],
        rows: [
          [
            'CapsNet',
            capsParameters,
            testPairs,
            pct(acc.both),
            pct(acc.digits),
            pct(1 - acc.both),
            '5.2% (11.36M parameters)',
            steps * batchSize,
            Number(fitResult.seconds.toFixed(1)),
          ],
          [
            'baseline CNN',
            cnnParameters,
            testPairs,
            pct(cnnAcc.both),
            pct(cnnAcc.digits),
            pct(1 - cnnAcc.both),
            '8.1% (24.56M parameters)',
            steps * batchSize,
            Number(cnnFit.seconds.toFixed(1)),
          ],
        ],
      },
    ],
    figures,
    notes: [
      `Training pairs are generated for every batch from the ${train.count} training digits, each digit ` +
        `the first of a pair once per ${pairsPerEpoch}-pair epoch (second digit at random from another ` +
        `class); test pairs from the ${test.count} test digits (first digit in order, ` +
        `${testPairs >= test.count ? `${Math.floor(testPairs / test.count)} pair(s) per test digit` : `the first ${testPairs}`}); ` +
        'both deterministic in --seed.',
      `Baseline CNN: conv ${cnnConfig.convChannels.join('/')} 5x5 same with 2x2 max pooling after each, ` +
        `fc ${cnnConfig.fc.join('/')}, sigmoid cross entropy on the two labels (the authors' ConvModel; ` +
        '24.54M parameters at paper size by our count, the paper says 24.56M).',
      'Loss: margin loss with both labels present + 0.0005 x (reconstruction of digit A masked by capsule A vs digit A alone + the same for B).',
      ...(options.scale === 'medium'
        ? [
            `medium scale: the small preset CapsNet and the CNN at 1/8 of the paper's widths, ${epochs} x ` +
              `${pairsPerEpoch} pairs (the paper: 60M); the paper's 5.2% vs 8.1% gap (2.9 points) is above this ` +
              `run's resolution, but such short training leaves both models far from the paper's errors.`,
          ]
        : []),
      ...resolutionNotes(options.scale, testPairs, 1 - acc.both, 'both-labels error'),
      ...(decoderSteps > 0
        ? [
            `ci scale: after the joint training, the decoder alone was trained ${decoderSteps} more steps on ` +
              'the frozen capsules of fixed training pairs (each digit masked by its own capsule), for legible ' +
              'reconstructions; the classification numbers are untouched by it.',
          ]
        : []),
    ],
  };
  writeResult(options.out, result);
  return result;
}
