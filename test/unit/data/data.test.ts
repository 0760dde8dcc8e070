import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, test } from 'node:test';
import { DataError, FASHION_MNIST_DIR, loadDataset, loadIdxDirectory, loadMnistSample, shiftImages } from '../../../packages/capsnet/src/data/datasets.ts';
import { Rng } from '@capsnet-onnx/core';
import { existsSync } from 'node:fs';

function idx(dims: number[], values: number[]): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header.writeUInt32BE(0x800 + dims.length, 0);
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(values)]);
}

function writeIdxDir(files: Partial<Record<'trainImages' | 'trainLabels' | 'testImages' | 'testLabels', Buffer>>, gzip = false): string {
  const dir = mkdtempSync(join(tmpdir(), 'capsnet-idx-'));
  const defaults = {
    trainImages: idx(
      [3, 2, 2],
      Array.from({ length: 12 }, (_, i) => i * 20),
    ),
    trainLabels: idx([3], [0, 1, 2]),
    testImages: idx([2, 2, 2], [255, 0, 0, 0, 0, 0, 0, 255]),
    testLabels: idx([2], [2, 0]),
    ...files,
  };
  const names = {
    trainImages: 'train-images-idx3-ubyte',
    trainLabels: 'train-labels-idx1-ubyte',
    testImages: 't10k-images-idx3-ubyte',
    testLabels: 't10k-labels-idx1-ubyte',
  };
  for (const [key, bytes] of Object.entries(defaults)) {
    const name = names[key as keyof typeof names];
    writeFileSync(join(dir, gzip ? `${name}.gz` : name), gzip ? gzipSync(bytes) : bytes);
  }
  return dir;
}

describe('embedded MNIST sample', () => {
  test('splits 8,000 / 2,000 the same way every time, every class in both', () => {
    const a = loadMnistSample();
    const b = loadMnistSample();
    assert.equal(a.train.count, 8000);
    assert.equal(a.test.count, 2000);
    assert.deepEqual(a.test.labels, b.test.labels);
    assert.deepEqual(a.train.images.subarray(0, 784 * 5), b.train.images.subarray(0, 784 * 5));
    for (const split of [a.train, a.test]) assert.equal(new Set(split.labels).size, 10);
    assert.ok(a.train.images.every((v) => v >= 0 && v <= 1));
  });
});

describe('IDX directories', () => {
  test('reads plain and gzipped files, scales pixels to [0,1], takes the shape from the data', () => {
    for (const gzip of [false, true]) {
      const data = loadIdxDirectory(writeIdxDir({}, gzip));
      assert.deepEqual(data.shape, { inputHeight: 2, inputWidth: 2, inputChannels: 1, numClasses: 3 });
      assert.equal(data.train.count, 3);
      assert.ok(Math.abs(data.test.images[0]! - 1) < 1e-7);
      assert.ok(Math.abs(data.train.images[1]! - 20 / 255) < 1e-7);
      assert.deepEqual([...data.test.labels], [2, 0]);
    }
  });

  test('an image file where labels belong names the file and the problem', () => {
    const dir = writeIdxDir({ trainLabels: idx([3, 1, 1], [0, 1, 2]) });
    assert.throws(
      () => loadIdxDirectory(dir),
      (e: Error) => e instanceof DataError && /train-labels-idx1-ubyte holds a 3x1x1 array: a label file must be one dimension/.test(e.message),
    );
  });

  test('truncated file', () => {
    const dir = writeIdxDir({ trainImages: idx([3, 2, 2], [1, 2, 3]) });
    assert.throws(() => loadIdxDirectory(dir), /train-images-idx3-ubyte is truncated: its header says 3x2x2 unsigned byte \(28 bytes\) but it has 19 bytes/);
  });

  test('image and label counts that differ', () => {
    const dir = writeIdxDir({ testLabels: idx([3], [0, 1, 2]) });
    assert.throws(() => loadIdxDirectory(dir), /t10k-images-idx3-ubyte has 2 images but .*t10k-labels-idx1-ubyte has 3 labels/);
  });

  test('test labels out of the training range', () => {
    const dir = writeIdxDir({ testLabels: idx([2], [7, 0]) });
    assert.throws(() => loadIdxDirectory(dir), /label 7 at index 0 is out of range/);
  });

  test('missing files and directories say what is expected', () => {
    assert.throws(() => loadIdxDirectory('/nonexistent/capsnet'), /does not exist/);
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-empty-'));
    assert.throws(() => loadDataset(`idx:${dir}`), /missing train-images-idx3-ubyte\[\.gz\]/);
    assert.throws(() => loadDataset('cifar'), /unknown data set "cifar"/);
  });

  test('Debian Fashion-MNIST loads through --data fashion-mnist', (t) => {
    if (!existsSync(FASHION_MNIST_DIR)) {
      t.skip(`${FASHION_MNIST_DIR} absent: apt-get install dataset-fashion-mnist`);
      console.log(`skipped: ${FASHION_MNIST_DIR} absent (apt-get install dataset-fashion-mnist)`);
      return;
    }
    const data = loadDataset('fashion-mnist');
    assert.equal(data.train.count, 60000);
    assert.equal(data.test.count, 10000);
    assert.equal(data.classLabels[9], 'Ankle boot');
    assert.deepEqual(data.shape, { inputHeight: 28, inputWidth: 28, inputChannels: 1, numClasses: 10 });
  });
});

describe('random shifts', () => {
  test('move the image by at most maxShift pixels with zero padding, mass preserved inside the border', () => {
    const shape = { inputHeight: 8, inputWidth: 8, inputChannels: 1, numClasses: 2 };
    const image = new Float32Array(64);
    image[3 * 8 + 4] = 1; // one lit pixel at (3, 4)
    const seen = new Set<string>();
    const rng = new Rng(5);
    for (let trial = 0; trial < 200; trial++) {
      const out = shiftImages(image, 1, shape, 2, rng);
      const at = out.indexOf(1);
      assert.equal(
        out.reduce((a, b) => a + b, 0),
        1,
      );
      const dy = Math.floor(at / 8) - 3;
      const dx = (at % 8) - 4;
      assert.ok(Math.abs(dy) <= 2 && Math.abs(dx) <= 2, `shift ${dy},${dx}`);
      seen.add(`${dy},${dx}`);
    }
    assert.equal(seen.size, 25, 'every shift in [-2, 2]^2 occurs');
  });
});
