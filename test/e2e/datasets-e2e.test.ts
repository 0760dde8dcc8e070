/**
 * Each data-set format end to end on small generated files: load, train one short epoch with the data set's
 * protocol, export, and `capsnet parity` on node-cpu (ONNX Runtime vs the tfjs forward pass, on the centre-cropped
 * test images). Then two CIFAR-10 runs through the real CLI (--primary-caps, section 7's protocol) become one
 * `capsnet ensemble` file, checked against its members. Tiny networks keep each run to seconds.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { execa } from 'execa';
import * as ort from 'onnxruntime-node';
import { METADATA_KEYS, paramShapes, presetConfig, readModelMetadata, readOnnxHeader } from '@capsnet-onnx/core';
import { CapsNet } from '@capsnet-onnx/runtime/node';
import { loadCheckpoint } from '../../packages/capsnet/src/files/checkpoint.ts';
import { train } from '../../packages/capsnet/src/train/trainer.ts';
import { initBackend } from '../../packages/capsnet/src/train/backends/backend.ts';
import { forward, initParams } from '../../packages/capsnet/src/model/capsnet.ts';
import { standardizePerImage } from '../../packages/capsnet/src/model/layers.ts';
import { exportCheckpoint } from '../../packages/capsnet/src/export/exporter.ts';
import { exportEnsemble } from '../../packages/capsnet/src/export/ensemble.ts';
import { runParity } from '../../packages/capsnet/src/parity/run.ts';
import { loadDataset } from '../../packages/capsnet/src/data/datasets.ts';
import { networkView } from '../../packages/capsnet/src/data/augment.ts';
import { loadSamples } from '../../packages/capsnet/src/serve/samples.ts';
import { CLI, ROOT } from '../support/fixtures.ts';
import { copySvhnV5, cyclicLabels, tempDir, writeCifar10, writeIdxSet, writeSmallNorb } from '../support/dataset-files.ts';

/** Small enough for seconds on two cores, with every layer of the paper's network present. */
const TINY = { conv1Filters: 8, primaryMaps: 4, decoderHidden: [16, 32] };

interface Case {
  name: string;
  spec: () => string;
  /** The network input and routed capsules the protocol should produce. */
  input: [number, number, number];
  classes: number;
  routed: number;
}

const CASES: Case[] = [
  {
    name: 'IDX, 4-D colour',
    spec: () => `idx:${writeIdxSet(tempDir('e2e-idx'), { h: 20, w: 20, c: 3, train: cyclicLabels(48, 3), test: cyclicLabels(12, 3) })}`,
    input: [20, 20, 3],
    classes: 3,
    routed: 3,
  },
  {
    name: 'EMNIST letters',
    spec: () => {
      const letters = { h: 20, w: 20, c: 1, train: cyclicLabels(52, 26, 1), test: cyclicLabels(26, 26, 1), emnistSplit: 'letters' } as const;
      return `emnist-letters:${writeIdxSet(tempDir('e2e-emnist'), letters)}`;
    },
    input: [20, 20, 1],
    classes: 26,
    routed: 26,
  },
  {
    name: 'CIFAR-10',
    spec: () => `cifar10:${writeCifar10(tempDir('e2e-cifar'), [cyclicLabels(24, 10), cyclicLabels(24, 10, 0, 4)], cyclicLabels(10, 10))}`,
    input: [24, 24, 3],
    classes: 10,
    routed: 11,
  },
  { name: 'SVHN (.mat v5)', spec: () => `svhn:${copySvhnV5(tempDir('e2e-svhn'))}`, input: [32, 32, 3], classes: 10, routed: 10 },
  {
    name: 'smallNORB',
    spec: () => `smallnorb:${writeSmallNorb(tempDir('e2e-norb'), cyclicLabels(30, 5), cyclicLabels(10, 5))}`,
    input: [32, 32, 2],
    classes: 5,
    routed: 5,
  },
];

describe('section 7 in the network', () => {
  test('per-image standardisation: zero mean, unit deviation, and a flat image stays finite', async () => {
    const { tf } = await initBackend('cpu');
    const varied = Float32Array.from({ length: 2 * 3 * 2 }, (_, i) => ((i * 7) % 5) / 4);
    const images = tf.tensor4d([...varied, ...new Array(12).fill(0.6)], [2, 3, 2, 2]);
    const out = (await standardizePerImage(images).data()) as Float32Array;
    const first = out.subarray(0, 12);
    const mean = first.reduce((a, b) => a + b, 0) / 12;
    const std = Math.sqrt(first.reduce((a, b) => a + (b - mean) ** 2, 0) / 12);
    assert.ok(Math.abs(mean) < 1e-6 && Math.abs(std - 1) < 1e-5, `mean ${mean}, std ${std}`);
    assert.deepEqual(Array.from(out.subarray(12)), new Array(12).fill(0), 'the 1/sqrt(N) floor keeps a flat image at zero');
  });

  test('"none-of-the-above" takes part in the routing softmax but is no class', async () => {
    const { tf } = await initBackend('cpu');
    const config = presetConfig(
      'small',
      { inputHeight: 12, inputWidth: 12, inputChannels: 3, numClasses: 4 },
      {
        conv1Filters: 4,
        conv1Kernel: 3,
        primaryMaps: 2,
        primaryDim: 4,
        primaryKernel: 3,
        digitDim: 6,
        decoderHidden: [8],
        noneOfTheAbove: true,
      },
    );
    assert.deepEqual(paramShapes(config)['digit/W']!.slice(2), [5 * 6]);
    const params = initParams(config, 3);
    const out = forward(params, tf.randomUniform([2, 12, 12, 3], 0, 1, 'float32', 1) as never, config);
    assert.deepEqual(out.lengths.shape, [2, 4]);
    assert.deepEqual(out.capsules.shape, [2, 4, 6]);
    assert.equal(out.coupling.shape[2], 5);
    const sums = (await tf.sum(out.coupling, -1).data()) as Float32Array;
    assert.ok(
      sums.every((v) => Math.abs(v - 1) < 1e-5),
      'each primary capsule distributes its vote over 4 classes and none-of-the-above',
    );
  });
});

describe('each format: load, train one short epoch, export, parity on node-cpu', () => {
  for (const c of CASES) {
    test(c.name, async () => {
      const spec = c.spec();
      const out = tempDir('e2e-run');
      const lines: string[] = [];
      const result = await train({
        preset: 'small',
        data: spec,
        epochs: 1,
        batchSize: 16,
        backend: 'wasm',
        seed: 5,
        out,
        resume: false,
        checkpointEvery: 0,
        configOverrides: TINY,
        log: (line) => lines.push(line),
        progressBar: false,
      });
      const { config, metrics } = result;
      assert.deepEqual([config.inputHeight, config.inputWidth, config.inputChannels], c.input, lines.join('\n'));
      assert.equal(config.numClasses, c.classes);
      assert.equal(metrics.length, 1);
      assert.ok(Number.isFinite(metrics[0]!.train_loss) && metrics[0]!.test_accuracy >= 0, JSON.stringify(metrics[0]));

      const exported = exportCheckpoint(out, { out: join(out, 'model.onnx') });
      const session = await ort.InferenceSession.create(join(out, 'model.onnx'));
      const dims = (name: string) => [...(session.outputMetadata.find((m) => m.name === name) as unknown as { shape: readonly unknown[] }).shape];
      assert.deepEqual(dims('coupling').slice(2), [c.routed], 'coupling over the routed capsules');
      assert.deepEqual(dims('lengths').slice(1), [c.classes]);
      await session.release();
      assert.ok(exported.modelBytes > 0);

      const report = await runParity({
        model: join(out, 'model.onnx'),
        backends: ['node-cpu'],
        digits: 6,
        random: 2,
        latencyRuns: 1,
        timeoutS: 120,
        log: () => {},
      });
      const row = report.rows.find((r) => r.backend === 'node-cpu')!;
      assert.equal(row.status, 'pass', `${row.reason ?? ''} ${JSON.stringify(report.failures)}`);
      assert.ok(
        report.inputs.filter((k) => k.includes('(label')).length === 6,
        `real test images in the parity run: ${report.inputNote ?? report.inputs.join(', ')}`,
      );
    });
  }
});

describe('CIFAR-10 through the CLI, and capsnet ensemble', () => {
  test("two runs with --primary-caps become one graph whose lengths are the mean of its members'", async () => {
    const data = writeCifar10(tempDir('ens-cifar'), [cyclicLabels(32, 10)], cyclicLabels(10, 10, 0, 2));
    const runs = [tempDir('ens-a'), tempDir('ens-b')];
    for (const [k, out] of runs.entries()) {
      const trained = await execa(
        'node',
        [
          CLI,
          'train',
          '--data',
          `cifar10:${data}`,
          '--preset',
          'small',
          '--primary-caps',
          '3',
          '--epochs',
          '1',
          '--batch-size',
          '16',
          '--backend',
          'wasm',
          '--seed',
          String(k + 1),
          '--no-progress',
          '--out',
          out,
        ],
        { cwd: ROOT },
      );
      assert.match(trained.stdout, /24x24x3 crops of 32x32, 10 classes/);
      exportCheckpoint(out, { out: join(out, 'model.onnx') });
    }
    const config = loadCheckpoint(runs[0]!).config;
    assert.equal(config.primaryMaps, 3);
    assert.equal(config.noneOfTheAbove, true);
    assert.equal(config.reconstructionWeight, 0);

    const ensemblePath = join(runs[0]!, 'ensemble.onnx');
    const made = await execa('node', [CLI, 'ensemble', ...runs, '-o', ensemblePath], { cwd: ROOT });
    assert.match(made.stdout, /2 members/);
    const header = readOnnxHeader(readFileSync(ensemblePath));
    assert.equal(readModelMetadata(readFileSync(ensemblePath)).numClasses, 10);
    assert.equal(JSON.parse(header.props[METADATA_KEYS.ensemble] ?? 'null')?.members, 2);

    const dataset = loadDataset(`cifar10:${data}`);
    const view = networkView(dataset.test, config);
    const feeds = { images: new ort.Tensor('float32', view.images, [view.count, 24, 24, 3]) };
    const run = async (path: string) => {
      const s = await ort.InferenceSession.create(path);
      const out = await s.run(feeds);
      await s.release();
      return out;
    };
    const [a, b, ens] = await Promise.all([join(runs[0]!, 'model.onnx'), join(runs[1]!, 'model.onnx'), ensemblePath].map(run));
    const la = a!.lengths!.data as Float32Array;
    const lb = b!.lengths!.data as Float32Array;
    const le = ens!.lengths!.data as Float32Array;
    for (let i = 0; i < le.length; i++) assert.ok(Math.abs(le[i]! - (la[i]! + lb[i]!) / 2) < 1e-5, `lengths[${i}]`);
    const ca = a!.capsules!.data as Float32Array;
    const ce = ens!.capsules!.data as Float32Array;
    for (let i = 0; i < ce.length; i++) assert.ok(Math.abs(ce[i]! - ca[i]!) < 1e-5, `capsules[${i}] are member 1's`);

    // The server's sample strip shows a crop-trained model the centre crops it is fed (the export names the data
    // by its base name only, so the strip reads the directory given as `capsnet serve --data`).
    const samples = await loadSamples(readModelMetadata(readFileSync(join(runs[0]!, 'model.onnx'))), 1, `cifar10:${data}`);
    assert.equal(samples.samples.length, 10, samples.note);
    assert.deepEqual(
      samples.samples.find((x) => x.index === 0)!.pixels,
      Array.from(view.images.subarray(0, 24 * 24 * 3), (v) => Math.round(v * 1000) / 1000),
    );

    // The runtime loads the ensemble like any export.
    const classifier = await CapsNet.load(ensemblePath, { device: 'cpu' });
    const results = await classifier.classify({ data: view.images.subarray(0, 3 * 24 * 24 * 3), shape: [3, 24, 24, 3] });
    assert.equal(results.length, 3);
    for (let n = 0; n < 3; n++) {
      let best = 0;
      for (let j = 1; j < 10; j++) if (le[n * 10 + j]! > le[n * 10 + best]!) best = j;
      assert.equal(results[n]!.longest, best); // label is null below the presence threshold: this briefly trained model is unsure
    }
    await classifier.dispose();

    // Members must take the same input and score the same classes: an SVHN run cannot join CIFAR-10 ones.
    const mismatch = tempDir('ens-svhn');
    await train({
      preset: 'small',
      data: `svhn:${copySvhnV5(tempDir('ens-svhn-data'))}`,
      epochs: 1,
      batchSize: 20,
      backend: 'wasm',
      seed: 1,
      out: mismatch,
      resume: false,
      checkpointEvery: 0,
      configOverrides: TINY,
      log: () => {},
      progressBar: false,
    });
    assert.throws(() => exportEnsemble([runs[0]!, mismatch], { out: join(mismatch, 'bad.onnx') }), /does not take the same input or score the same classes/);
    assert.throws(() => exportEnsemble([runs[0]!], { out: join(mismatch, 'bad.onnx') }), /an ensemble needs at least 2 members/);
    assert.ok(!existsSync(join(mismatch, 'bad.onnx')));
  });
});
