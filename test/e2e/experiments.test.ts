import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { loadMnistSample } from '../../packages/capsnet/src/data/datasets.ts';
import { Rng, checkDimensionFindings } from '@capsnet-onnx/core';
import { encodeAffnistMat } from '../support/affnist-mat.ts';
import { AffnistError, affnistFromMat, loadAffnist, parseMat } from '../../packages/capsnet/src/experiments/affnist.ts';
import { EXPERIMENTS, type ExperimentResult } from '../../packages/capsnet/src/experiments/common.ts';
import { conv2dFilterGradient } from '../../packages/capsnet/src/train/backends/cpu-kernels.ts';
import {
  AFFNIST_STYLE,
  MULTIMNIST,
  affineSet,
  inkBox,
  multiMnist,
  placeOnCanvas,
  randomlyPlaced,
  warpAffine,
} from '../../packages/capsnet/src/experiments/generators.ts';
import { pairAccuracy, topTwo } from '../../packages/capsnet/src/experiments/multimnist.ts';
import { PERTURB_STEPS, perturbedCapsules } from '../../packages/capsnet/src/experiments/perturb.ts';
import { writeReport } from '../../packages/capsnet/src/experiments/report.ts';
import { CLI, ROOT } from '../support/fixtures.ts';
import { svgInfo } from '../support/svg.ts';

const mnist = loadMnistSample();
const sum = (a: ArrayLike<number>) => Array.from(a).reduce((s, v) => s + v, 0);
let scratch: string;

before(async () => {
  await tf.setBackend('cpu');
  scratch = mkdtempSync(join(tmpdir(), 'capsnet-experiments-'));
});

after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

describe('generators', () => {
  test('MultiMNIST pairs: 36x36, classes differ, shifts within 4 px, overlay is the max of the two digits', () => {
    // the default is the authors' generator (sum clipped to 1); max is the option
    assert.equal(MULTIMNIST.overlay, 'add');
    const set = multiMnist(mnist.test, 200, 28, { ...MULTIMNIST, overlay: 'max' }, new Rng(3));
    assert.equal(set.size, 36);
    assert.equal(set.images.length, 200 * 36 * 36);
    for (let i = 0; i < set.count; i++) {
      assert.notEqual(set.labelsA[i], set.labelsB[i], `pair ${i} has two digits of class ${set.labelsA[i]}`);
      for (let k = 0; k < 4; k++) assert.ok(Math.abs(set.shifts[4 * i + k]!) <= 4, `shift ${set.shifts[4 * i + k]} out of bounds`);
    }
    const shifts = new Set(set.shifts);
    assert.ok(shifts.has(-4) && shifts.has(4) && shifts.has(0), 'shifts should cover the whole -4..4 range');
    for (let k = 0; k < set.images.length; k++) assert.equal(set.images[k], Math.max(set.first[k]!, set.second[k]!));
    // each digit keeps all its ink on the canvas
    const area = 36 * 36;
    for (let i = 0; i < 20; i++) {
      assert.ok(sum(set.first.subarray(i * area, (i + 1) * area)) > 10 && sum(set.second.subarray(i * area, (i + 1) * area)) > 10);
    }
  });

  test('MultiMNIST clipped-add overlay and the shift offsets match where the ink is', () => {
    const set = multiMnist(mnist.test, 50, 28, { ...MULTIMNIST, overlay: 'add' }, new Rng(4));
    for (let k = 0; k < set.images.length; k++) assert.equal(set.images[k], Math.fround(Math.min(1, set.first[k]! + set.second[k]!)));
    // the first digit, shifted by (dx, dy) from the centre offset 4, is exactly the source digit there
    const i = 7;
    const [dx, dy] = [set.shifts[4 * i]!, set.shifts[4 * i + 1]!];
    const box = inkBox(set.first.subarray(i * 36 * 36, (i + 1) * 36 * 36), 36, 36)!;
    assert.ok(box.x0 >= 4 + dx && box.y0 >= 4 + dy && box.x1 < 32 + dx && box.y1 < 32 + dy);
  });

  test('random placement keeps the digit whole inside the 40x40 canvas', () => {
    const set = randomlyPlaced(mnist.train, 100, 28, 40, new Rng(5));
    assert.equal(set.images.length, 100 * 1600);
    const xs = new Set<number>();
    for (let i = 0; i < set.count; i++) {
      const [x, y] = [set.offsets[2 * i]!, set.offsets[2 * i + 1]!];
      assert.ok(x >= 0 && x <= 12 && y >= 0 && y <= 12);
      xs.add(x);
      const source = sum(mnist.train.images.subarray(i * 784, (i + 1) * 784));
      assert.ok(Math.abs(sum(set.images.subarray(i * 1600, (i + 1) * 1600)) - source) < 1e-3);
    }
    assert.ok(xs.size > 5, 'positions should vary');
  });

  test('the identity warp is the centred placement; the affNIST-style set is 40x40 and really transformed', () => {
    const digit = mnist.test.images.subarray(0, 784);
    const identity = warpAffine(digit, 28, 28, 40, { rotation: 0, shear: 0, scaleX: 1, scaleY: 1, tx: 0, ty: 0 });
    const centred = placeOnCanvas(digit, 28, 28, 40, 6, 6);
    for (let k = 0; k < 1600; k++) assert.ok(Math.abs(identity[k]! - centred[k]!) < 1e-6);

    const set = affineSet(mnist.test, 100, 28, AFFNIST_STYLE, new Rng(6));
    assert.equal(set.size, 40);
    assert.equal(set.images.length, 100 * 1600);
    const centredSet = randomlyPlaced(mnist.test, 100, 28, 40, new Rng(0), true);
    let changed = 0;
    let maxRotation = 0;
    let maxShift = 0;
    for (let i = 0; i < set.count; i++) {
      const p = set.params[i]!;
      assert.ok(
        Math.abs(p.rotation) <= (20 * Math.PI) / 180 + 1e-9 &&
          Math.abs(p.shear) <= 0.2 &&
          p.scaleX >= 0.8 &&
          p.scaleX <= 1.2 &&
          p.scaleY >= 0.8 &&
          p.scaleY <= 1.2,
      );
      maxRotation = Math.max(maxRotation, Math.abs(p.rotation));
      maxShift = Math.max(maxShift, Math.abs(p.tx), Math.abs(p.ty));
      const img = set.images.subarray(i * 1600, (i + 1) * 1600);
      const ref = centredSet.images.subarray(i * 1600, (i + 1) * 1600);
      let diff = 0;
      for (let k = 0; k < 1600; k++) diff += Math.abs(img[k]! - ref[k]!);
      if (diff > 0.2 * sum(ref)) changed++;
      // the digit stays on the canvas: its ink mass is kept up to the area scale
      const ratio = sum(img) / sum(ref);
      assert.ok(ratio > 0.5 && ratio < 1.6, `ink ratio ${ratio} for example ${i}`);
      assert.equal(set.labels[i], mnist.test.labels[i]);
    }
    assert.ok(changed >= 95, `only ${changed} of 100 transformed images differ from the centred digit`);
    assert.ok(maxRotation > (10 * Math.PI) / 180, 'rotations should reach beyond 10 degrees');
    assert.ok(maxShift > 3, 'translations should be substantial');
  });
});

describe('affNIST reader', () => {
  const side = 40;
  const count = 5;
  const images = Uint8Array.from({ length: side * side * count }, (_, i) => (i * 7) % 256);
  const labels = Uint8Array.from([3, 1, 4, 1, 5]);

  test('reads the affNIST .mat layout, compressed and plain', () => {
    for (const compress of [true, false]) {
      const set = affnistFromMat(parseMat(encodeAffnistMat(images, labels, side, compress)), 'x.mat');
      assert.equal(set.count, count);
      assert.equal(set.size, side);
      assert.deepEqual(Array.from(set.labels), [3, 1, 4, 1, 5]);
      assert.ok(Math.abs(set.images[1600 + 5]! - images[1600 + 5]! / 255) < 1e-6);
    }
  });

  test('loads a directory of .mat batches in numeric order, or an IDX pair', () => {
    const dir = join(scratch, 'affnist-mat');
    mkdirSync(dir);
    writeFileSync(join(dir, '10.mat'), encodeAffnistMat(images.subarray(0, 1600), labels.subarray(0, 1), side));
    writeFileSync(join(dir, '2.mat'), encodeAffnistMat(images.subarray(1600), labels.subarray(1), side));
    const set = loadAffnist(dir);
    assert.equal(set.count, 5);
    assert.deepEqual(Array.from(set.labels), [1, 4, 1, 5, 3]);

    const idx = join(scratch, 'affnist-idx');
    mkdirSync(idx);
    const head = Buffer.alloc(16);
    head.writeUInt32BE(0x803, 0);
    head.writeUInt32BE(count, 4);
    head.writeUInt32BE(side, 8);
    head.writeUInt32BE(side, 12);
    writeFileSync(join(idx, 'test-images-idx3-ubyte.gz'), gzipSync(Buffer.concat([head, Buffer.from(images)])));
    const lhead = Buffer.alloc(8);
    lhead.writeUInt32BE(0x801, 0);
    lhead.writeUInt32BE(count, 4);
    writeFileSync(join(idx, 'test-labels-idx1-ubyte'), Buffer.concat([lhead, Buffer.from(labels)]));
    const fromIdx = loadAffnist(idx);
    assert.equal(fromIdx.size, 40);
    assert.deepEqual(Array.from(fromIdx.labels), [3, 1, 4, 1, 5]);
  });

  test('explains unsupported inputs', () => {
    const hdf5 = Buffer.concat([Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(600)]);
    assert.throws(
      () => parseMat(hdf5, 'v73.mat'),
      (e: Error) => e instanceof AffnistError && /v7\.3/.test(e.message),
    );
    const empty = join(scratch, 'empty');
    mkdirSync(empty);
    assert.throws(() => loadAffnist(empty), /no \.mat files and no IDX pair/);
    assert.throws(() => loadAffnist(join(scratch, 'nope')), /does not exist/);
  });
});

// The figure functions (figures.ts) are tested in plot.test.ts.

describe('experiment pieces', () => {
  test('perturbation grid: 16 x 11 copies of the winning capsule, one dimension moved per row, others masked', () => {
    const classes = 10;
    const dim = 16;
    const capsule = Float32Array.from({ length: classes * dim }, (_, i) => i / 100);
    const grid = perturbedCapsules(capsule, 3, classes, dim);
    assert.equal(grid.length, dim * PERTURB_STEPS.length * classes * dim);
    assert.deepEqual(PERTURB_STEPS.length, 11);
    const per = classes * dim;
    for (const [d, s] of [
      [0, 0],
      [5, 10],
      [15, 3],
    ] as const) {
      const row = grid.subarray((d * 11 + s) * per, (d * 11 + s + 1) * per);
      for (let k = 0; k < per; k++) {
        const inWinner = k >= 3 * dim && k < 4 * dim;
        const expected = inWinner ? capsule[k]! + (k - 3 * dim === d ? PERTURB_STEPS[s]! : 0) : 0;
        assert.ok(Math.abs(row[k]! - expected) < 1e-6);
      }
    }
  });

  test('MultiMNIST accuracy counts a pair only when the top two are exactly its labels', () => {
    const scores = Float32Array.from([0.9, 0.8, 0.1, 0.0, /* */ 0.9, 0.1, 0.8, 0.0, /* */ 0.1, 0.2, 0.9, 0.8]);
    const top = topTwo(scores, 4);
    assert.deepEqual(top, [
      [0, 1],
      [0, 2],
      [2, 3],
    ]);
    const acc = pairAccuracy(top, Int32Array.from([1, 0, 0]), Int32Array.from([0, 1, 1]));
    assert.equal(acc.both, 1 / 3);
    assert.equal(acc.digits, 3 / 6);
  });

  test('the fast filter gradient matches a direct sum (stride 2, padding 1)', async () => {
    const rng = new Rng(9);
    const xShape = [2, 7, 6, 3];
    const filterShape = [3, 3, 3, 4];
    const x = Float32Array.from({ length: 2 * 7 * 6 * 3 }, () => rng.normal());
    const outH = Math.floor((7 + 2 - 3) / 2) + 1;
    const outW = Math.floor((6 + 2 - 3) / 2) + 1;
    const dyShape = [2, outH, outW, 4];
    const dy = Float32Array.from({ length: 2 * outH * outW * 4 }, () => rng.normal());
    const got = conv2dFilterGradient(x, xShape, dy, dyShape, filterShape, 2, 2, 1, 1);
    for (let ky = 0; ky < 3; ky++)
      for (let kx = 0; kx < 3; kx++)
        for (let ci = 0; ci < 3; ci++)
          for (let co = 0; co < 4; co++) {
            let want = 0;
            for (let n = 0; n < 2; n++)
              for (let oy = 0; oy < outH; oy++)
                for (let ox = 0; ox < outW; ox++) {
                  const iy = oy * 2 + ky - 1;
                  const ix = ox * 2 + kx - 1;
                  if (iy < 0 || iy >= 7 || ix < 0 || ix >= 6) continue;
                  want += x[((n * 7 + iy) * 6 + ix) * 3 + ci]! * dy[((n * outH + oy) * outW + ox) * 4 + co]!;
                }
            assert.ok(Math.abs(got[((ky * 3 + kx) * 3 + ci) * 4 + co]! - want) < 1e-4);
          }
  });
});

describe('report', () => {
  test('assembles the JSON tables and figures of a directory into REPORT.md', () => {
    const dir = join(scratch, 'report');
    mkdirSync(dir);
    writeFileSync(join(dir, 'a.svg'), '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>');
    const result: ExperimentResult = {
      experiment: 'routing',
      title: 'Routing | test',
      paper: 'paper says',
      scale: 'ci',
      seed: 1,
      backend: 'cpu',
      data: 'mnist-sample',
      command: 'capsnet experiment routing',
      startedAt: '2024-01-01T00:00:00Z',
      seconds: 12,
      metrics: { accuracy_trained_3_tested_3: 0.9 },
      settings: { a: 1 },
      tables: [{ title: 'T1', columns: ['x', 'y'], rows: [[1, 'a|b']] }],
      figures: [
        { file: 'a.svg', caption: 'fig A', width: 10, height: 10 },
        { file: 'gone.svg', caption: 'fig B', width: 1, height: 1 },
      ],
      notes: ['a note'],
    };
    writeFileSync(join(dir, 'routing.json'), JSON.stringify(result));
    const path = writeReport(dir);
    const md = readFileSync(path, 'utf8');
    assert.match(md, /## Routing \| test/);
    assert.match(md, /\| 1 \| a\\\|b \|/);
    assert.match(md, /!\[fig A\]\(a\.svg\)/);
    assert.match(md, /fig B\* \(file missing\)/);
    assert.match(md, /90\.00%/);
    assert.match(md, /- a note/);
    const empty = join(scratch, 'empty-report');
    mkdirSync(empty);
    assert.throws(() => writeReport(empty), /no experiment results/);
  });
});

describe('end to end (ci scale, cut down)', () => {
  test('each experiment command runs at a tiny ci scale and `experiment report` assembles them', { timeout: 900_000 }, async () => {
    const out = join(scratch, 'e2e', 'nested');
    const tiny = ['--scale', 'ci', '--train-limit', '96', '--test-limit', '64', '--batch-size', '32', '--out', out];
    const env = { CAPSNET_WASM_THREADS: '1' };
    // routing first: every command must create --out itself
    const extra: Record<string, string[]> = {
      routing: ['--iterations', '1,3', '--seeds', '2'],
      affine: ['--epochs', '1'],
      'mnist-table': ['--seeds', '2', '--train-limit', '32', '--test-limit', '32'],
    };
    for (const name of ['routing', 'perturb', 'affine', 'multimnist', 'mnist-table']) {
      const run = await execa('node', [CLI, 'experiment', name, ...tiny, ...(extra[name] ?? [])], { cwd: ROOT, env, reject: false });
      assert.equal(run.exitCode, 0, `experiment ${name} failed:\n${run.stderr}`);
      assert.match(run.stdout, new RegExp(`${name}: .*wrote`));
    }
    const { stdout } = await execa('node', [CLI, 'experiment', 'report', out], { cwd: ROOT });
    for (const name of EXPERIMENTS) {
      const result = JSON.parse(readFileSync(join(out, `${name}.json`), 'utf8')) as ExperimentResult;
      assert.equal(result.experiment, name);
      assert.equal(result.scale, 'ci');
      assert.ok(result.figures.length >= 1, `${name} wrote no figures`);
      assert.ok(result.tables[0]!.rows.length >= 1, `${name} has an empty table`);
      for (const figure of result.figures) {
        assert.match(figure.file, /\.svg$/);
        const svg = svgInfo(join(out, figure.file));
        assert.equal(svg.width, figure.width);
        assert.equal(svg.height, figure.height);
        assert.ok(
          svg.texts.some((t) => t.trim().length > 0),
          `${figure.file} has no text (title, axes, labels)`,
        );
      }
    }
    const perturb = JSON.parse(readFileSync(join(out, 'perturb.json'), 'utf8')) as ExperimentResult;
    assert.match(String(perturb.settings.decoder), /^onnx/, 'perturb should decode through the exported ONNX decoder');
    assert.ok(perturb.metrics.onnx_vs_tfjs_max_abs_diff! < 1e-4);
    // one 16 x 11 grid per class
    assert.equal(perturb.figures.length, 10);
    const grid = svgInfo(join(out, 'perturb-digit-0.svg'));
    assert.equal(grid.images, 16 * 11);
    assert.ok(grid.height > 16 * 56 && grid.width > 11 * 56);
    // what each dimension does: every class measured, every dimension labelled
    const dimensions = checkDimensionFindings(JSON.parse(readFileSync(join(out, 'dimensions.json'), 'utf8')), 'dimensions.json', {
      digitDim: 16,
      numClasses: 10,
    });
    // Measured per class of the perturbed (winning) capsule: a model trained this briefly may never predict some classes.
    const measuredClasses = dimensions.perClass.map((c) => c.class);
    assert.ok(measuredClasses.length >= 1 && measuredClasses.length <= 10, `classes measured: ${measuredClasses.join(', ')}`);
    assert.equal(new Set(measuredClasses).size, measuredClasses.length, `a class is measured twice: ${measuredClasses.join(', ')}`);
    for (const e of dimensions.overall)
      assert.ok(e.label.length > 0 && Number.isFinite(e.change) && Number.isFinite(e.shiftX), `dimension ${e.dimension}: ${JSON.stringify(e)}`);
    const routing = JSON.parse(readFileSync(join(out, 'routing.json'), 'utf8')) as ExperimentResult;
    // one row per traced model; 1 vs 3 over two seeds
    assert.equal(routing.tables[0]!.rows.length, 2);
    assert.deepEqual(
      routing.tables.at(-1)!.rows.map((r) => r[1]),
      [2, 2],
    );
    const multi = JSON.parse(readFileSync(join(out, 'multimnist.json'), 'utf8')) as ExperimentResult;
    assert.ok(multi.metrics.both_labels_accuracy! >= 0 && multi.metrics.both_labels_accuracy! <= 1);
    assert.ok(multi.metrics.cnn_both_labels_accuracy! >= 0 && multi.metrics.cnn_both_labels_accuracy! <= 1, 'the MultiMNIST baseline was scored');
    const affine = JSON.parse(readFileSync(join(out, 'affine.json'), 'utf8')) as ExperimentResult;
    assert.ok(!JSON.stringify(affine.tables).includes('GENERATED'), 'the generated affine set is used only when asked for');
    const table = JSON.parse(readFileSync(join(out, 'mnist-table.json'), 'utf8')) as {
      rows: Array<{ model: string; parameters: number; error_mean: number; error_std: number; errors: number[] }>;
    };
    assert.equal(table.rows.length, 5);
    for (const row of table.rows) {
      assert.equal(row.errors.length, 2);
      assert.ok(row.parameters > 0 && row.error_mean >= 0 && row.error_mean <= 1 && row.error_std >= 0, JSON.stringify(row));
    }
    assert.equal(table.rows[0]!.model, 'baseline CNN');
    const report = readFileSync(join(out, 'REPORT.md'), 'utf8');
    for (const name of EXPERIMENTS) assert.match(report, new RegExp(`<a id="${name}"></a>`));
    assert.match(stdout, /wrote .*REPORT\.md/);
  });

  test('the CLI rejects bad options with one line', async () => {
    const bad = await execa('node', [CLI, 'experiment', 'perturb', '--scale', 'huge'], { cwd: ROOT, reject: false });
    assert.notEqual(bad.exitCode, 0);
    assert.match(bad.stderr, /huge/);
    const both = await execa('node', [CLI, 'experiment', 'perturb', '--run', 'a', '--model', 'b'], { cwd: ROOT, reject: false });
    assert.match(both.stderr, /either --run or --model/);
    const report = await execa('node', [CLI, 'experiment', 'report', join(scratch, 'missing-dir')], { cwd: ROOT, reject: false });
    assert.match(report.stderr, /does not exist/);
    // medium and paper scale are measured on the official test set: the embedded sample is refused, in one line
    for (const scale of ['medium', 'paper']) {
      const sample = await execa('node', [CLI, 'experiment', 'mnist-table', '--scale', scale, '--data', 'mnist-sample', '--out', join(scratch, scale)], {
        cwd: ROOT,
        reject: false,
      });
      assert.notEqual(sample.exitCode, 0);
      assert.match(sample.stderr, new RegExp(`--scale ${scale} needs the full MNIST.*leave --data out .*--data idx:DIR`));
      assert.doesNotMatch(sample.stderr, /\n\s+at /, 'no stack trace');
    }
    // --help names the three scales and says what the middle one can and cannot resolve
    const help = await execa('node', [CLI, 'experiment', 'mnist-table', '--help'], { cwd: ROOT });
    assert.match(help.stdout.replace(/\s+/g, ' '), /medium: under an hour .* resolves differences of about 0\.4 points .* not Table 1's/);
  });
});
