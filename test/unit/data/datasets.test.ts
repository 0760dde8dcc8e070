/**
 * The data-set readers on small generated files (train/data/*), the data-set table's protocols, and the
 * augmentation that feeds the network (data/augment.ts). No tfjs: these run in a second or two.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, test } from 'node:test';
import { Rng, presetConfig } from '@capsnet-onnx/core';
import { DataError, loadDataset, protocolOverrides } from '../../../packages/capsnet/src/data/datasets.ts';
import { readMatArrays } from '../../../packages/capsnet/src/data/matlab.ts';
import { augmentBatch, networkView } from '../../../packages/capsnet/src/data/augment.ts';
import { imagesFromIdx } from '../../../packages/capsnet/src/cli/image-files.ts';
import {
  CIFAR_CLASSES,
  cifarRecords,
  copySvhnV5,
  cyclicLabels,
  idxFile,
  norbMatrix,
  patternByte,
  svhnFixturePixel,
  tempDir,
  writeCifar10,
  writeIdxSet,
  writeSmallNorb,
  writeSvhnV73,
} from '../../support/dataset-files.ts';

const near = (a: number, b: number) => Math.abs(a - b) < 1e-6;

describe('IDX with channels, float32 and EMNIST names', () => {
  test('a 4-D N x H x W x 3 file loads as colour, pixel for pixel', () => {
    const dir = writeIdxSet(tempDir('idx4'), { h: 5, w: 4, c: 3, train: cyclicLabels(6, 3), test: cyclicLabels(3, 3) });
    const data = loadDataset(`idx:${dir}`);
    assert.deepEqual(data.shape, { inputHeight: 5, inputWidth: 4, inputChannels: 3, numClasses: 3 });
    // image 4 (label 1), y 2, x 3, channel 2
    assert.ok(near(data.train.images[((4 * 5 + 2) * 4 + 3) * 3 + 2]!, patternByte(1, 4, 2, 3, 2) / 255));
  });

  test('float32 IDX pixels are taken as they are; out of [0, 1] is an error naming the file and pixel', () => {
    const dir = writeIdxSet(tempDir('idxf'), { h: 3, w: 3, c: 1, train: cyclicLabels(4, 2), test: cyclicLabels(2, 2), float: true, gzip: true });
    const data = loadDataset(`idx:${dir}`);
    assert.ok(near(data.test.images[4]!, patternByte(0, 0, 1, 1, 0) / 255));
    const bad = tempDir('idxbad');
    writeIdxSet(bad, { h: 1, w: 2, c: 1, train: [0], test: [0] });
    writeFileSync(join(bad, 'train-images-idx3-ubyte'), idxFile([1, 1, 2], [0.5, 3], 0x0d));
    assert.throws(
      () => loadDataset(`idx:${bad}`),
      (e: Error) =>
        e instanceof DataError && /train-images-idx3-ubyte: float32 pixel 1 \(image 0\) is 3: float32 IDX pixels must lie in \[0, 1\]/.test(e.message),
    );
  });

  test('channels-first and gzipped-under-a-plain-name files get errors that say what to do', () => {
    const dir = writeIdxSet(tempDir('idxcf'), { h: 1, w: 1, c: 1, train: [0, 1], test: [0] });
    writeFileSync(join(dir, 'train-images-idx3-ubyte'), idxFile([2, 3, 8, 8], new Array(2 * 3 * 64).fill(1)));
    assert.throws(() => loadDataset(`idx:${dir}`), /is 2x3x8x8, which looks channels-first: IDX images must be N x H x W x C \(channels last\)/);
    writeFileSync(join(dir, 'train-images-idx3-ubyte'), gzipSync(idxFile([2, 1, 1], [1, 2])));
    assert.throws(() => loadDataset(`idx:${dir}`), /gzipped under a plain name, so gunzip it or add \.gz/);
  });

  test('EMNIST letters by NIST file names: labels 1-26 become classes 0-25 named from the mapping, images transposed upright', () => {
    const dir = writeIdxSet(tempDir('emnist'), { h: 4, w: 6, c: 1, train: cyclicLabels(52, 26, 1), test: cyclicLabels(10, 26, 1, 5), emnistSplit: 'letters' });
    writeFileSync(join(dir, 'emnist-letters-mapping.txt'), `${Array.from({ length: 26 }, (_, k) => `${k + 1} ${65 + k} ${97 + k}`).join('\n')}\n`);
    for (const spec of [`emnist-letters:${dir}`, `idx:${dir}`, `emnist:${dir}`]) {
      const data = loadDataset(spec);
      assert.equal(data.shape.numClasses, 26, spec);
      assert.equal(data.labelOffset, 1);
      assert.deepEqual(
        [...new Set(data.train.labels)].sort((a, b) => a - b),
        Array.from({ length: 26 }, (_, k) => k),
        'contiguous classes from 0',
      );
      assert.equal(data.classLabels[0], 'A/a');
      assert.equal(data.classLabels[25], 'Z/z');
      assert.equal(data.test.labels[0], 5);
      // The file holds 4x6 images stored transposed: the network sees them 6x4, file (y, x) at (x, y).
      assert.deepEqual([data.shape.inputHeight, data.shape.inputWidth], [6, 4]);
      assert.ok(near(data.train.images[(3 * 6 + 5) * 4 + 2]!, patternByte(4, 3, 2, 5, 0) / 255));
    }
  });

  test('a directory of several EMNIST splits asks for one; an absent split lists those present', () => {
    const dir = tempDir('emnist2');
    for (const split of ['balanced', 'digits']) writeIdxSet(dir, { h: 2, w: 2, c: 1, train: [0, 1], test: [1], emnistSplit: split });
    assert.throws(() => loadDataset(`idx:${dir}`), /holds the EMNIST splits balanced, digits: pick one with --data emnist-<split>:/);
    assert.throws(() => loadDataset(`emnist-letters:${dir}`), /no EMNIST split "letters" .*: it holds balanced, digits/);
    assert.equal(loadDataset(`emnist-digits:${dir}`).shape.numClasses, 2);
  });
});

describe('CIFAR-10 binary batches', () => {
  test('batches concatenate, planar RGB becomes NHWC, class names come from batches.meta.txt', () => {
    const dir = writeCifar10(tempDir('cifar'), [cyclicLabels(7, 10), cyclicLabels(5, 10, 0, 3)], cyclicLabels(4, 10, 0, 1));
    const data = loadDataset(`cifar10:${dir}`);
    assert.deepEqual(data.shape, { inputHeight: 32, inputWidth: 32, inputChannels: 3, numClasses: 10 });
    assert.equal(data.train.count, 12);
    assert.equal(data.test.count, 4);
    assert.deepEqual(data.classLabels, CIFAR_CLASSES);
    assert.equal(data.train.labels[7], 3, 'second batch follows the first');
    assert.ok(near(data.train.images[((8 * 32 + 5) * 32 + 9) * 3 + 1]!, patternByte(4, 1, 5, 9, 1) / 255));
  });

  test('truncated records, CIFAR-100 files, bad labels and missing files are named', () => {
    const dir = writeCifar10(tempDir('cifarbad'), [[1, 2]], [3]);
    writeFileSync(join(dir, 'data_batch_1.bin'), cifarRecords([1, 2]).subarray(0, 5000));
    assert.throws(() => loadDataset(`cifar10:${dir}`), /data_batch_1\.bin has 5000 bytes, not a whole number of 3,073-byte CIFAR-10 records/);
    writeFileSync(join(dir, 'data_batch_1.bin'), Buffer.alloc(3074 * 2));
    assert.throws(() => loadDataset(`cifar10:${dir}`), /fits CIFAR-100's 3,074-byte records/);
    const labels = cifarRecords([1]);
    labels[0] = 12;
    writeFileSync(join(dir, 'data_batch_1.bin'), labels);
    assert.throws(() => loadDataset(`cifar10:${dir}`), /record 0 has label 12; CIFAR-10 labels are 0-9/);
    assert.throws(() => loadDataset(`cifar10:${tempDir('empty')}`), /no data_batch_N\.bin in .*: pass --data cifar10:DIR/);
    assert.throws(() => loadDataset('cifar10:/nonexistent/cifar'), /data directory \/nonexistent\/cifar does not exist/);
  });
});

describe('SVHN .mat files', () => {
  test('SciPy-written v5 files, compressed and not: MATLAB column-major X becomes NHWC, label 10 becomes 0', () => {
    const data = loadDataset(`svhn:${copySvhnV5(tempDir('svhn'))}`);
    assert.deepEqual(data.shape, { inputHeight: 32, inputWidth: 32, inputChannels: 3, numClasses: 10 });
    assert.equal(data.train.count, 20);
    assert.equal(data.test.count, 10);
    // make.py: image i has label (i + seed) % 10 + 1; train seed 0, test seed 3.
    assert.deepEqual([...data.train.labels.subarray(0, 11)], [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    assert.equal(data.test.labels[6], 0);
    for (const [split, i, label] of [
      [data.train, 9, 10],
      [data.test, 2, 6],
    ] as const) {
      for (const [y, x, c] of [
        [0, 0, 0],
        [31, 2, 1],
        [7, 30, 2],
      ]) {
        assert.ok(near(split.images[((i * 32 + y!) * 32 + x!) * 3 + c!]!, svhnFixturePixel(label, i, y!, x!, c!)), `image ${i} (${y}, ${x}, ${c})`);
      }
    }
  });

  test('a v7.3 (HDF5) file with the same arrays reads the same', async () => {
    const dir = copySvhnV5(tempDir('svhn73'));
    const v5 = readMatArrays(join(dir, 'test_32x32.mat'), ['X', 'y']);
    await writeSvhnV73(join(dir, 'test_32x32.mat'), v5.get('X')!, v5.get('y')!.data);
    const v73 = readMatArrays(join(dir, 'test_32x32.mat'), ['X', 'y']);
    assert.deepEqual(v73.get('X')!.dims, v5.get('X')!.dims);
    assert.deepEqual(Array.from(v73.get('X')!.data), Array.from(v5.get('X')!.data));
    assert.deepEqual(Array.from(v73.get('y')!.data), Array.from(v5.get('y')!.data));
    assert.equal(loadDataset(`svhn:${dir}`).test.labels[6], 0);
  });

  test('not a MAT-file, a missing variable and a missing file are named', () => {
    const dir = copySvhnV5(tempDir('svhnbad'));
    writeFileSync(join(dir, 'test_32x32.mat'), 'hello');
    assert.throws(() => loadDataset(`svhn:${dir}`), /test_32x32\.mat is not a MATLAB \.mat file/);
    assert.throws(() => readMatArrays(join(copySvhnV5(tempDir('svhnv')), 'train_32x32.mat'), ['X', 'Z']), /has no numeric variable "Z"/);
    assert.throws(() => loadDataset(`svhn:${tempDir('svhnnone')}`), /missing .*train_32x32\.mat: pass --data svhn:DIR/);
  });
});

describe('smallNORB', () => {
  test('96x96 stereo pairs become 48x48x2 (2x2 mean), categories 0-4, gzipped or not', () => {
    for (const gzip of [false, true]) {
      const data = loadDataset(`smallnorb:${writeSmallNorb(tempDir('norb'), cyclicLabels(6, 5), cyclicLabels(5, 5, 0, 2), 96, gzip)}`);
      assert.deepEqual(data.shape, { inputHeight: 48, inputWidth: 48, inputChannels: 2, numClasses: 5 });
      assert.equal(data.classLabels[2], 'airplane');
      assert.deepEqual([...data.test.labels], [2, 3, 4, 0, 1]);
      // Image 3 (label 3), output (y 10, x 20), right view: the mean of the 2x2 block at (20, 40), each + 60.
      const block = [
        [20, 40],
        [20, 41],
        [21, 40],
        [21, 41],
      ].map(([y, x]) => (patternByte(3, 3, y!, x!, 0) + 60) % 256);
      assert.ok(near(data.train.images[((3 * 48 + 10) * 48 + 20) * 2 + 1]!, block.reduce((a, b) => a + b, 0) / 4 / 255));
    }
  });

  test('wrong magic, mismatched counts and bad categories are named', () => {
    const dir = writeSmallNorb(tempDir('norbbad'), [0, 1], [1]);
    const dat = join(dir, 'smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat');
    const cat = join(dir, 'smallnorb-5x46789x9x18x6x2x96x96-training-cat.mat');
    writeFileSync(cat, norbMatrix('int32', [3], [0, 1, 2]));
    assert.throws(() => loadDataset(`smallnorb:${dir}`), /has 2 image pairs but .*training-cat\.mat has 3 categories/);
    writeFileSync(cat, norbMatrix('int32', [2], [0, 7]));
    assert.throws(() => loadDataset(`smallnorb:${dir}`), /category 7 at index 1; smallNORB categories are 0-4/);
    writeFileSync(dat, Buffer.alloc(64));
    assert.throws(() => loadDataset(`smallnorb:${dir}`), /training-dat\.mat has magic 0x0: not a smallNORB byte or int32 matrix/);
    assert.throws(() => loadDataset(`smallnorb:${tempDir('norbnone')}`), /missing smallnorb-\*-training-dat\.mat\[\.gz\]/);
  });
});

describe('geometry: images whose size disagrees with the format are refused (issue 20, item 5)', () => {
  test('smallNORB: 96x64 and 95x95 pairs name the file, the size found and 96x96', () => {
    for (const [h, w] of [
      [96, 64],
      [95, 95],
      [48, 48],
    ] as const) {
      const dir = writeSmallNorb(tempDir('norbgeo'), cyclicLabels(5, 5), cyclicLabels(5, 5), h, false, w);
      assert.throws(
        () => loadDataset(`smallnorb:${dir}`),
        (e: Error) =>
          e instanceof DataError &&
          new RegExp(`smallnorb-5x46789x9x18x6x2x${h}x${w}-training-dat\\.mat holds ${h}x${w} image pairs .*found ${h}x${w}, expected 96x96`).test(e.message),
        `${h}x${w}`,
      );
    }
    // A header whose sizes do not account for the bytes (read at them, the stride would be wrong).
    const dir = writeSmallNorb(tempDir('norblong'), cyclicLabels(5, 5), cyclicLabels(5, 5));
    const dat = join(dir, 'smallnorb-5x01235x9x18x6x2x96x96-testing-dat.mat');
    writeFileSync(dat, Buffer.concat([norbMatrix('byte', [5, 2, 96, 96], new Array(5 * 2 * 96 * 96).fill(1)), Buffer.alloc(96)]));
    assert.throws(
      () => loadDataset(`smallnorb:${dir}`),
      /testing-dat\.mat has 92280 bytes but its header says 5x2x96x96 \(92184 bytes\): the header's sizes do not match the data/,
    );
  });

  test('CIFAR-10: records of other image sizes name the size found and 32x32', () => {
    const dir = writeCifar10(tempDir('cifargeo'), [[1, 2]], [3]);
    writeFileSync(join(dir, 'data_batch_1.bin'), Buffer.alloc(3 * (1 + 3 * 28 * 28)));
    assert.throws(
      () => loadDataset(`cifar10:${dir}`),
      (e: Error) =>
        e instanceof DataError &&
        new RegExp(
          /data_batch_1\.bin has 7059 bytes, not a whole number of 3,073-byte CIFAR-10 records \(a label byte and a 32x32x3 image\)/.source +
            /: its size fits records of 28x28 RGB images \(found 28x28, expected 32x32\)/.source,
        ).test(e.message),
    );
  });

  test('SVHN: X of another size names the size found and 32x32x3; doubles that are not bytes are refused', async () => {
    const dir = copySvhnV5(tempDir('svhngeo'));
    const y = Array.from({ length: 4 }, (_, i) => i + 1);
    await writeSvhnV73(join(dir, 'test_32x32.mat'), { dims: [28, 28, 3, 4], data: new Array(28 * 28 * 3 * 4).fill(7) }, y);
    assert.throws(() => loadDataset(`svhn:${dir}`), /test_32x32\.mat: X is 28x28x3x4, found 28x28x3 images, expected 32x32x3 x N/);
    await writeSvhnV73(join(dir, 'test_32x32.mat'), { dims: [32, 32, 3, 4], data: new Array(32 * 32 * 3 * 4).fill(0.25) }, y, 'double');
    assert.throws(() => loadDataset(`svhn:${dir}`), /test_32x32\.mat: X holds 0\.25 at element 1: SVHN's X holds bytes 0-255 \(uint8\)/);
    // Doubles that hold whole bytes read as the bytes they are.
    await writeSvhnV73(join(dir, 'test_32x32.mat'), { dims: [32, 32, 3, 4], data: new Array(32 * 32 * 3 * 4).fill(51) }, y, 'double');
    assert.ok(near(loadDataset(`svhn:${dir}`).test.images[5]!, 0.2));
  });

  test('a broken EMNIST mapping file is refused with its line, not silently half-applied', () => {
    const dir = writeIdxSet(tempDir('emnistmap'), { h: 2, w: 2, c: 1, train: cyclicLabels(6, 3, 1), test: cyclicLabels(3, 3, 1), emnistSplit: 'letters' });
    const mapping = join(dir, 'emnist-letters-mapping.txt');
    writeFileSync(mapping, '1 65 97\n2 66 98\n3 C c\n');
    assert.throws(
      () => loadDataset(`emnist-letters:${dir}`),
      /emnist-letters-mapping\.txt line 3 is "3 C c": an EMNIST mapping line is "label code \[code\.\.\.\]"/,
    );
    writeFileSync(mapping, '1 65 97\n3 67 99\n');
    assert.throws(
      () => loadDataset(`emnist-letters:${dir}`),
      /emnist-letters-mapping\.txt has no line for label\(s\) 2 of the data: fix the file or remove it/,
    );
    writeFileSync(mapping, '1 65 97\n2 66 98\n2 67 99\n3 67 99\n');
    assert.throws(() => loadDataset(`emnist-letters:${dir}`), /line 3 maps label 2 a second time/);
    writeFileSync(mapping, '1 65 97\r\n2 66 98\r\n3 67 99\r\n\r\n');
    assert.deepEqual(loadDataset(`emnist-letters:${dir}`).classLabels, ['A/a', 'B/b', 'C/c']);
  });

  test('IDX: more bytes than the header says, and zero-sized images, name the file and both sizes', () => {
    const dir = writeIdxSet(tempDir('idxgeo'), { h: 4, w: 4, c: 1, train: cyclicLabels(4, 2), test: cyclicLabels(2, 2) });
    // 4 images of 4x6 under a header that says 4x4: read at 4x4, every image after the first is cut in the wrong place.
    writeFileSync(join(dir, 'train-images-idx3-ubyte'), Buffer.concat([idxFile([4, 4, 4], new Array(64).fill(9)), Buffer.alloc(32)]));
    assert.throws(
      () => loadDataset(`idx:${dir}`),
      /train-images-idx3-ubyte has 112 bytes but its header says 4x4x4 unsigned byte \(80 bytes\): the sizes in the header do not match the data/,
    );
    writeFileSync(join(dir, 'train-images-idx3-ubyte'), idxFile([4, 0, 4], []));
    assert.throws(
      () => loadDataset(`idx:${dir}`),
      /train-images-idx3-ubyte holds 4x0x4 images: found 0x4x1, expected a height, width and channel count of at least 1/,
    );
    // classify's IDX reader is the same parser (data/idx.ts), with the same line.
    const metadata = { inputHeight: 4, inputWidth: 4, inputChannels: 1 } as Parameters<typeof imagesFromIdx>[1];
    assert.throws(
      () => imagesFromIdx(Buffer.concat([idxFile([4, 4, 4], new Array(64).fill(9)), Buffer.alloc(32)]), metadata, 'digits-idx3-ubyte'),
      /^InputError: digits-idx3-ubyte has 112 bytes but its header says 4x4x4 unsigned byte \(80 bytes\): the sizes in the header do not match the data/,
    );
    const ok = imagesFromIdx(idxFile([4, 4, 4], new Array(64).fill(51)), metadata, 'ok');
    assert.equal(ok.count, 4);
    assert.equal(ok.images[63], Math.fround(51 / 255));
    assert.equal(imagesFromIdx(idxFile([4, 4, 4], new Array(64).fill(51)), metadata, 'ok', 2).images.length, 32);
  });
});

describe('section-7 protocols and augmentation', () => {
  const cifarShape = { inputHeight: 32, inputWidth: 32, inputChannels: 3, numClasses: 10 };

  test('each data set brings its protocol; the paper architecture only with the paper preset; flags win', () => {
    const paper = presetConfig('paper', cifarShape, protocolOverrides('cifar10:/x', cifarShape, 'paper'));
    assert.equal(paper.primaryMaps, 64);
    assert.deepEqual([paper.inputHeight, paper.inputWidth], [24, 24]);
    assert.deepEqual(paper.crop, { sourceHeight: 32, sourceWidth: 32 });
    assert.equal(paper.standardize, 'per-image');
    assert.equal(paper.noneOfTheAbove, true);
    assert.equal(paper.reconstructionWeight, 0);
    assert.equal(paper.maxShift, 0, 'no MNIST shift on CIFAR-10');
    assert.equal(presetConfig('small', cifarShape, protocolOverrides('cifar10:/x', cifarShape, 'small')).primaryMaps, 8);
    const svhn = presetConfig('paper', cifarShape, protocolOverrides('svhn:/x', cifarShape, 'paper'));
    assert.deepEqual([svhn.conv1Filters, svhn.primaryMaps, svhn.primaryDim, svhn.digitDim, svhn.maxShift], [64, 16, 6, 8, 0]);
    const norbShape = { inputHeight: 48, inputWidth: 48, inputChannels: 2, numClasses: 5 };
    const norb = presetConfig('paper', norbShape, protocolOverrides('smallnorb:/x', norbShape, 'paper'));
    assert.deepEqual([norb.inputHeight, norb.crop?.sourceHeight, norb.standardize, norb.primaryMaps], [32, 48, 'per-image', 32]);
    const mnist = presetConfig('paper', undefined, protocolOverrides('mnist-sample', cifarShape, 'paper'));
    assert.equal(mnist.maxShift, 2);
    assert.equal(mnist.crop, undefined);
    assert.throws(() => protocolOverrides('cifar100:/x', cifarShape, 'paper'), /unknown data set "cifar100:\/x"/);
  });

  test('random crops stay inside the image and flips mirror it; the test view is the centre crop', () => {
    const config = presetConfig(
      'small',
      { inputHeight: 6, inputWidth: 6, inputChannels: 1, numClasses: 2 },
      {
        inputHeight: 4,
        inputWidth: 4,
        crop: { sourceHeight: 6, sourceWidth: 6 },
        jitter: { flip: true, brightness: 0, contrast: 0 },
        maxShift: 0,
        conv1Kernel: 1,
        primaryKernel: 1,
      },
    );
    // Pixel value = 10 y + x, so every crop's origin and orientation can be read back from its corner.
    const source = Float32Array.from({ length: 36 * 40 }, (_, i) => {
      const p = i % 36;
      return (10 * Math.floor(p / 6) + (p % 6)) / 100;
    });
    const out = augmentBatch(source, 40, config, new Rng(3));
    assert.equal(out.length, 40 * 16);
    let flipped = 0;
    const origins = new Set<string>();
    for (let n = 0; n < 40; n++) {
      const img = out.subarray(n * 16, (n + 1) * 16);
      const top = Math.floor(Math.round(100 * Math.min(...img)) / 10);
      const left = Math.round(100 * Math.min(...img)) % 10;
      assert.ok(top <= 2 && left <= 2, `crop origin (${top}, ${left}) inside the 6x6 image`);
      origins.add(`${top},${left}`);
      const mirrored = img[0]! > img[3]!;
      if (mirrored) flipped++;
      for (let y = 0; y < 4; y++)
        for (let x = 0; x < 4; x++) {
          const sx = mirrored ? left + 3 - x : left + x;
          assert.ok(near(img[y * 4 + x]!, (10 * (top + y) + sx) / 100));
        }
    }
    assert.ok(flipped > 5 && flipped < 35, `${flipped} of 40 flipped`);
    assert.ok(origins.size > 4, `${origins.size} distinct crop origins`);
    const centre = networkView({ images: source.subarray(0, 36), labels: new Int32Array(1), count: 1 }, config);
    assert.deepEqual(
      Array.from(centre.images.subarray(0, 4), (v) => Math.round(v * 100)),
      [11, 12, 13, 14],
    );
  });

  test('brightness and contrast jitter move the image mean and spread within their bounds', () => {
    const config = presetConfig(
      'small',
      { inputHeight: 4, inputWidth: 4, inputChannels: 1, numClasses: 2 },
      {
        jitter: { flip: false, brightness: 0.25, contrast: 0.5 },
        maxShift: 0,
        conv1Kernel: 1,
        primaryKernel: 1,
      },
    );
    const source = Float32Array.from({ length: 16 * 50 }, (_, i) => 0.3 + 0.2 * ((i % 16) / 15));
    const out = augmentBatch(source, 50, config, new Rng(1));
    const deltas: number[] = [];
    for (let n = 0; n < 50; n++) {
      const img = out.subarray(n * 16, (n + 1) * 16);
      const mean = img.reduce((a, b) => a + b, 0) / 16;
      const spread = img[15]! - img[0]!;
      deltas.push(mean - 0.4);
      assert.ok(Math.abs(mean - 0.4) <= 0.25 + 1e-6, `brightness delta ${mean - 0.4}`);
      assert.ok(spread >= 0.1 - 1e-6 && spread <= 0.3 + 1e-6, `contrast spread ${spread}`);
    }
    assert.ok(Math.max(...deltas) - Math.min(...deltas) > 0.2, 'the deltas vary');
  });
});
