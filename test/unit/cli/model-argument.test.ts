/**
 * A forgotten model argument: the first image (or any file that is not ONNX) in the model's place is named as what
 * it is, with how to give a model, by classify and serve alike, instead of "no images given", a protobuf wire type
 * or a missing <image>.decoder.onnx.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { pretrained } from '@capsnet-onnx/mnist';
import { encodePng } from '../../../packages/capsnet/src/serve/images.ts';
import { refuseNonModel } from '../../../packages/capsnet/src/cli/model-file.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';

const cli = (...args: string[]) => execa('node', [CLI, ...args], { cwd: ROOT, reject: false, timeout: 120_000 });
const FIX = /give a model\.onnx from `capsnet export` first, or use --pretrained mnist-[a-z]+$/;

describe('the model argument is checked for what it is', () => {
  let dir: string;
  let png: string;
  let png2: string;
  let text: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsnet-model-arg-'));
    const pixels = new Float32Array(28 * 28).map((_, i) => (i % 5) / 5);
    png = join(dir, 'digit3.png');
    png2 = join(dir, 'digit7.png');
    writeFileSync(png, encodePng(pixels, 28, 28, 1));
    writeFileSync(png2, encodePng(pixels, 28, 28, 1));
    text = join(dir, 'notes.txt');
    writeFileSync(text, 'hello\n'.repeat(20));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('refuseNonModel: PNG by content, IDX by magic, .jpg by name, a directory; a real model passes', () => {
    assert.throws(
      () => refuseNonModel(png),
      (e: Error) => e.message.startsWith(`${png} is a PNG image, not a model: `) && FIX.test(e.message),
    );
    const idx = join(dir, 'data.bin');
    writeFileSync(idx, new Uint8Array([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28]));
    assert.throws(() => refuseNonModel(idx), /data\.bin is an IDX image file, not a model/);
    const jpg = join(dir, 'cut.jpg');
    writeFileSync(jpg, new Uint8Array([1, 2, 3]));
    assert.throws(() => refuseNonModel(jpg), /cut\.jpg is an image \(\.jpg\), not a model/);
    assert.throws(() => refuseNonModel(dir), /is a directory, not a model/);
    refuseNonModel(pretrained('mnist-small').model);
    refuseNonModel(join(dir, 'missing.onnx')); // left to the loader's own message
  });

  for (const [name, args] of [
    ['classify IMAGE', () => ['classify', png]],
    ['classify IMAGE IMAGE', () => ['classify', png, png2]],
    ['classify --json IMAGE IMAGE', () => ['classify', '--json', png, png2]],
    ['serve IMAGE', () => ['serve', png, '--port', '0']],
  ] as const) {
    test(`${name}: one line naming the image as an image, and the fix`, async () => {
      const r = await cli(...args());
      assert.equal(r.exitCode, 1);
      const out = name.includes('--json') ? JSON.parse(r.stdout).error.message : r.stderr.replace(/^capsnet: /, '').trim();
      assert.equal(out.split('\n').length, 1, out);
      assert.ok(out.startsWith(`${png} is a PNG image, not a model: `), out);
      assert.match(out, FIX);
    });
  }

  test('a file that is not ONNX (nor an image) is named, with the fix, by classify and serve', async () => {
    for (const args of [
      ['classify', text, png],
      ['serve', text, '--port', '0'],
    ]) {
      const r = await cli(...args);
      assert.equal(r.exitCode, 1);
      assert.match(r.stderr.trim(), new RegExp(`^capsnet: ${text.replace(/[.]/g, '\\.')} is not an ONNX model \\(it does not parse as one\\): `));
      assert.match(r.stderr.trim(), FIX);
      assert.doesNotMatch(r.stderr, /wire type|decoder/);
    }
  });

  test('a real model file still classifies', async () => {
    const r = await cli('classify', pretrained('mnist-small').model, png);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /digit3\.png\s+\S/);
  });
});
