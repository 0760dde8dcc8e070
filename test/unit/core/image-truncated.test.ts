/**
 * One picture gets one answer everywhere (docs/images.md): a truncated PNG is "its data ends early: truncated"
 * whether its bytes are a whole buffer (a file the CLI read) or a view into a larger one (an upload's body), through
 * core, the CLI's loader and the server's decoder alike; no message ends a parenthesis on a dangling colon; and an
 * empty file is called empty.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { decodeImage } from '@capsnet-onnx/core';
import { decoderProblem } from '../../../packages/core/src/jpeg.ts';
import { loadSource } from '../../../packages/capsnet/src/cli/image-files.ts';
import { decodeTask } from '../../../packages/capsnet/src/serve/image-worker.ts';
import { encodePng } from '../../../packages/capsnet/src/serve/images.ts';
import { FAKE_METADATA } from '../../support/serve.ts';

const TARGET = { shape: { height: 28, width: 28, channels: 1 }, preprocessing: FAKE_METADATA.preprocessing };
const coreMessage = (bytes: Uint8Array, what: string) => {
  try {
    decodeImage(bytes, undefined, what);
    return 'decoded';
  } catch (e) {
    return (e as Error).message;
  }
};
const serverMessage = (bytes: Uint8Array, what: string) => {
  const r = decodeTask({ bytes, target: TARGET, polarity: 'auto', what });
  return 'error' in r ? r.error.message : 'decoded';
};
/** The same bytes as a view into a larger buffer, followed by other data (as a request body is). */
const asView = (bytes: Uint8Array) => {
  const big = new Uint8Array(bytes.length + 4096).fill(0x5a);
  big.set(bytes, 100);
  return big.subarray(100, 100 + bytes.length);
};

describe('a truncated or empty image file: one message on every path', () => {
  test('each cut inside the pixel data: the same text from a file, a view, the CLI loader and the server', () => {
    const png = encodePng(
      new Float32Array(40 * 40).map((_, i) => ((i * 7919) % 13) / 13),
      40,
      40,
      1,
    );
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-truncated-'));
    try {
      const file = join(dir, 'cut.png');
      let cuts = 0;
      for (let n = 40; n < png.length - 12; n += 7) {
        const whole = png.slice(0, n);
        const expected = 'cut.png: cannot decode the PNG (its data ends early: truncated): the file is corrupt';
        assert.equal(coreMessage(whole, 'cut.png'), expected, `cut at ${n}`);
        assert.equal(coreMessage(asView(whole), 'cut.png'), expected, `view cut at ${n}`);
        assert.equal(serverMessage(asView(whole), 'cut.png'), expected, `server cut at ${n}`);
        writeFileSync(file, whole);
        assert.equal(
          loadSource({ path: file }, FAKE_METADATA)[0]!.error?.message,
          `${file}: cannot decode the PNG (its data ends early: truncated): the file is corrupt`,
        );
        cuts++;
      }
      assert.ok(cuts > 10);
      assert.equal(coreMessage(png, 'whole.png'), 'decoded');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a decoder message is one line without the punctuation it ends with', () => {
    assert.equal(decoderProblem(new Error('Error while decompressing the data:')), 'Error while decompressing the data');
    assert.equal(decoderProblem(new Error('bad tree; \nmore')), 'bad tree');
    assert.equal(decoderProblem(new Error(':')), 'no reason given');
    assert.equal(decoderProblem(new RangeError('Offset is outside the bounds of the DataView')), 'its data ends early: truncated');
  });

  test('a 0-byte file is called empty, with the same code, by core, the CLI loader and the server', () => {
    const expected = 'empty.png is empty (0 bytes): it holds no image; check that it was saved or copied whole';
    assert.equal(coreMessage(new Uint8Array(0), 'empty.png'), expected);
    assert.equal(serverMessage(new Uint8Array(0), 'empty.png'), expected);
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-empty-'));
    try {
      writeFileSync(join(dir, 'empty.png'), '');
      const [row] = loadSource({ path: join(dir, 'empty.png') }, FAKE_METADATA);
      assert.deepEqual(row!.error, { code: 'NOT_AN_IMAGE', message: expected.replace('empty.png', join(dir, 'empty.png')) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
