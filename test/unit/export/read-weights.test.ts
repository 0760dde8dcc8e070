/**
 * export/read-weights.ts reads a CapsNet file's weights back in tfjs's layouts (what `capsnet parity --pretrained`
 * runs as its reference, no checkpoint shipping with the pretrained models); parity on a pretrained model end to end.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { execa } from 'execa';
import { buildCapsNetModels } from '../../../packages/capsnet/src/export/exporter.ts';
import { decodeModel, encodeModel } from '../../../packages/capsnet/src/export/onnx-schema.ts';
import { weightsFromModel } from '../../../packages/capsnet/src/export/read-weights.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';
import { TINY_PROVENANCE, tinyModel } from '../../support/tiny-model.ts';

describe('weights read back from an export', () => {
  const tiny = tinyModel();

  test('an fp32 file gives back every weight exactly, the convolution kernels back in HWIO', () => {
    const { metadata, weights } = weightsFromModel(tiny.model, 'model.onnx');
    assert.deepEqual(Object.keys(weights).sort(), Object.keys(tiny.weights).sort());
    // Float32 values stored and read back unchanged: equal by construction (the file holds the same bits).
    for (const [name, values] of Object.entries(tiny.weights)) assert.deepEqual(weights[name], values, name);
    assert.equal(metadata.config.conv1Filters, tiny.config.conv1Filters);
  });

  test('an fp16 file, or one without a weight, is refused in one line with the fix', () => {
    const fp16 = encodeModel(buildCapsNetModels(tiny.config, tiny.weights, { ...TINY_PROVENANCE, precision: 'fp16' }).model);
    assert.throws(
      () => weightsFromModel(fp16, 'model.fp16.onnx'),
      /^Error: model\.fp16\.onnx stores fp16 weights \(rounded\): read the weights from the fp32 file/,
    );
    const renamed = decodeModel(tiny.model);
    for (const t of renamed.graph.initializer ?? []) if (t.name === 'digit/W') t.name = 'member1/digit/W';
    assert.throws(() => weightsFromModel(encodeModel(renamed), 'ensemble.onnx'), /ensemble\.onnx has no initializer digit\/W: it is not a CapsNet file/);
    assert.throws(() => weightsFromModel(new Uint8Array([1, 2, 3]), 'junk.onnx'), /junk\.onnx is not an ONNX model/);
  });
});

describe('capsnet parity --pretrained', () => {
  test('the int8 file against the reference of its fp32 weights passes on node-cpu; with --checkpoint it is a usage error', async () => {
    const args = ['--devices', 'node-cpu', '--digits', '8', '--random', '1', '--latency-runs', '1'];
    const r = await execa('node', [CLI, 'parity', '--pretrained', 'mnist-small:int8', ...args], { cwd: ROOT, reject: false });
    assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /model\.int8\.onnx \(int8 weights, fp32 compute\) against .*mnist-small[\\/]model\.onnx \(tfjs cpu reference\)/);
    assert.match(r.stdout, /^node-cpu +11 .* pass /m);
    assert.match(r.stdout, /^parity: OK$/m);
    const both = await execa('node', [CLI, 'parity', '--pretrained', 'mnist-small', '--checkpoint', 'runs/x'], { cwd: ROOT, reject: false });
    assert.equal(both.exitCode, 1);
    assert.equal(both.stderr.trim(), 'capsnet: parity: --pretrained brings its own reference (its fp32 weights): drop --checkpoint');
  });
});
