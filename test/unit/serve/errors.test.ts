/**
 * serve/errors.ts's message hygiene: no answer names a path of the server's files, but the kernel's own paths (a
 * driver check's /proc/driver/nvidia/version) stay whole, or the sentence they are in loses its meaning.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withoutPaths } from '../../../packages/capsnet/src/serve/errors.ts';

test("withoutPaths: the server's paths reduced to their last part; /proc, /sys and /dev kept", () => {
  assert.equal(withoutPaths('cannot read /home/ana/models/model.onnx: permission denied'), 'cannot read model.onnx: permission denied');
  assert.equal(withoutPaths('C:\\Users\\ana\\model.onnx is not ONNX'), 'model.onnx is not ONNX');
  assert.equal(
    withoutPaths('no NVIDIA GPU driver found (/proc/driver/nvidia/version is missing)'),
    'no NVIDIA GPU driver found (/proc/driver/nvidia/version is missing)',
  );
  assert.equal(withoutPaths('no /dev/dri/renderD128 here'), 'no /dev/dri/renderD128 here');
  assert.equal(withoutPaths('a/relative/path stays'), 'a/relative/path stays');
});
