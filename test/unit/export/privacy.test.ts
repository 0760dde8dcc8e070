/**
 * Issue 26: what a shipped file reveals. A tiny run trained on `idx:DIR` data in a temporary directory is exported
 * every way a user ships it (model and decoder at fp32, fp16 and int8, a Triton repository, an ensemble), and every
 * artefact's bytes are searched for the data directory's and the run directory's absolute paths, the home
 * directory, the host name and the user name; so are `capsnet serve`'s /v1/model and /v1/samples. The data is
 * recorded by its name (`idx:<base name>`) and its files' SHA-256 instead. The checkpoint, a local file, keeps
 * the full spec (what --resume reloads): the same search finds the path there, which shows the search works.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { homedir, hostname, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { METADATA_KEYS, publicDataName, readModelMetadata, readOnnxHeader } from '@capsnet-onnx/core';
import { train } from '../../../packages/capsnet/src/train/trainer.ts';
import { exportCheckpoint } from '../../../packages/capsnet/src/export/exporter.ts';
import { exportEnsemble } from '../../../packages/capsnet/src/export/ensemble.ts';
import { loadCheckpoint } from '../../../packages/capsnet/src/files/checkpoint.ts';
import { cyclicLabels, tempDir, writeIdxSet } from '../../support/dataset-files.ts';
import { getJson, startServeProcess } from '../../support/serve.ts';

/** Small enough for seconds on two cores, with every layer of the paper's network present. */
const TINY = { conv1Filters: 8, primaryMaps: 4, decoderHidden: [16, 32] };

/** Names too short or too common to mean anything when found in megabytes of weights or in JSON. */
const GENERIC = new Set(['root', 'user', 'node', 'admin', 'home', 'localhost', 'runner', 'ubuntu', 'debian']);

/** The needles: each machine detail worth searching for, or the reason it is not searched. */
function machineDetails(dataDir: string, runDir: string): Array<{ what: string; value: string }> {
  const candidates = [
    { what: 'data directory', value: resolve(dataDir) },
    { what: 'run directory', value: resolve(runDir) },
    // A path under the home directory would hold "<home>/": searched with the slash, so "/root" is still a search.
    { what: 'home directory', value: `${homedir().replace(/\/+$/, '')}/` },
    { what: 'host name', value: hostname() },
    { what: 'user name', value: userInfo().username },
  ];
  return candidates.filter(({ what, value }) => {
    if (!value.startsWith('/') && (value.length < 5 || GENERIC.has(value.toLowerCase()))) {
      console.log(`not searched: ${what} "${value}" (too short or generic to find meaningfully in binary files)`);
      return false;
    }
    return true;
  });
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile());
}

/** The needles found in `bytes` (UTF-8; every string the exporter writes is UTF-8). */
function found(bytes: Uint8Array, needles: Array<{ what: string; value: string }>): string[] {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return needles.filter((n) => buffer.includes(Buffer.from(n.value, 'utf8'))).map((n) => `${n.what} (${n.value})`);
}

describe('publicDataName', () => {
  test('built-in sets unchanged; directory data by scheme and base name', () => {
    assert.equal(publicDataName('mnist-sample'), 'mnist-sample');
    assert.equal(publicDataName('fashion-mnist'), 'fashion-mnist');
    assert.equal(publicDataName('idx:/home/ann/data/mnist-full/'), 'idx:mnist-full');
    assert.equal(publicDataName('emnist-letters:/srv/emnist'), 'emnist-letters:emnist');
    assert.equal(publicDataName('cifar10:C:\\data\\cifar-10-batches-bin'), 'cifar10:cifar-10-batches-bin');
    assert.equal(publicDataName('svhn:relative/dir/svhn'), 'svhn:svhn');
    assert.equal(publicDataName('/a/path/alone'), 'alone');
  });
});

describe('exports carry no path or machine detail', () => {
  test('model, fp16, int8, Triton repository, ensemble and /v1/model', async () => {
    const root = tempDir('privacy');
    const dataDir = writeIdxSet(join(root, 'private-digits'), { h: 20, w: 20, c: 1, train: cyclicLabels(48, 3), test: cyclicLabels(12, 3) });
    const runDir = join(root, 'run');
    // Two runs (seeds 3 and 4): an ensemble's members must be different trained runs.
    const secondRun = join(root, 'run-2');
    for (const [out, seed] of [
      [runDir, 3],
      [secondRun, 4],
    ] as const) {
      await train({
        preset: 'small',
        data: `idx:${dataDir}`,
        epochs: 1,
        batchSize: 16,
        backend: 'wasm',
        seed,
        out,
        resume: false,
        checkpointEvery: 0,
        configOverrides: TINY,
        log: () => {},
        progressBar: false,
      });
    }
    const shipped = join(root, 'shipped');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(shipped);
    exportCheckpoint(runDir, { out: join(shipped, 'model.onnx'), triton: { dir: join(shipped, 'triton') } });
    exportCheckpoint(runDir, { out: join(shipped, 'model.fp16.onnx'), precision: 'fp16' });
    exportCheckpoint(runDir, { out: join(shipped, 'model.int8.onnx'), precision: 'int8' });
    exportEnsemble([runDir, secondRun], { out: join(shipped, 'ensemble.onnx') });

    const needles = machineDetails(dataDir, runDir);
    assert.ok(
      needles.some((n) => n.what === 'data directory'),
      'the data directory is always searched',
    );
    // The search works: the checkpoint (local, what --resume reads) holds the data directory's path.
    assert.deepEqual(
      found(
        readFileSync(join(runDir, 'checkpoint.bin')),
        needles.filter((n) => n.what === 'data directory'),
      ),
      [`data directory (${resolve(dataDir)})`],
    );

    const artefacts = filesUnder(shipped);
    const names = artefacts.map((f) => f.slice(shipped.length + 1)).sort();
    assert.deepEqual(names, [
      'ensemble.decoder.onnx',
      'ensemble.onnx',
      'model.decoder.onnx',
      'model.fp16.decoder.onnx',
      'model.fp16.onnx',
      'model.int8.decoder.onnx',
      'model.int8.onnx',
      'model.onnx',
      'triton/capsnet/1/model.onnx',
      'triton/capsnet/config.pbtxt',
      'triton/capsnet/labels.txt',
      'triton/capsnet_decoder/1/model.onnx',
      'triton/capsnet_decoder/config.pbtxt',
    ]);
    for (const file of artefacts) assert.deepEqual(found(readFileSync(file), needles), [], `${file} reveals the machine it was made on`);
    console.log(`searched ${artefacts.length} artefacts (${names.join(', ')}) for ${needles.map((n) => n.what).join(', ')}: none found`);

    // What is recorded instead: the name and the files' SHA-256, as sha256sum prints them.
    const expectedFiles = Object.fromEntries(
      readdirSync(dataDir).map((f) => [
        f,
        createHash('sha256')
          .update(readFileSync(join(dataDir, f)))
          .digest('hex'),
      ]),
    );
    for (const file of artefacts.filter((f) => f.endsWith('.onnx') && !f.includes('decoder'))) {
      const props = readOnnxHeader(readFileSync(file)).props;
      assert.equal(props[METADATA_KEYS.dataset], 'idx:private-digits', file);
      assert.deepEqual(JSON.parse(props[METADATA_KEYS.datasetFiles]!), expectedFiles, file);
      assert.deepEqual(readModelMetadata(readFileSync(file)).datasetFiles, expectedFiles);
    }
    const checkpoint = loadCheckpoint(runDir);
    assert.equal(checkpoint.dataset, `idx:${dataDir}`, 'the checkpoint keeps the spec --resume reloads');
    assert.deepEqual(checkpoint.data, { name: 'idx:private-digits', files: expectedFiles });

    // The server: /v1/model names the data without its path; /v1/samples reads the test images from --data.
    const server = await startServeProcess(join(shipped, 'model.onnx'), ['--device', 'cpu', '--data', `idx:${dataDir}`]);
    try {
      const model = await getJson(server.url, '/v1/model');
      assert.equal(model.status, 200);
      assert.equal(model.json.metadata.dataset, 'idx:private-digits');
      assert.deepEqual(model.json.metadata.datasetFiles, expectedFiles);
      const samples = await getJson(server.url, '/v1/samples');
      assert.equal(samples.json.samples.length, 9, JSON.stringify(samples.json).slice(0, 300));
      for (const [route, body] of [
        ['/v1/model', model.json],
        ['/v1/samples', samples.json],
      ] as const) {
        assert.deepEqual(found(Buffer.from(JSON.stringify(body)), needles), [], `${route} reveals the machine`);
      }
    } finally {
      await server.stop();
    }
    // Without --data a base name is no folder to read: the strip is empty and says what to pass.
    const bare = await startServeProcess(join(shipped, 'model.onnx'), ['--device', 'cpu']);
    try {
      const samples = await getJson(bare.url, '/v1/samples');
      assert.equal(samples.json.samples.length, 0);
      assert.match(samples.json.note, /pass --data idx:DIR/);
    } finally {
      await bare.stop();
    }

    // --resume reloads the same data: a file whose SHA-256 changed stops it before anything is written.
    const labels = join(dataDir, 't10k-labels-idx1-ubyte');
    const bytes = readFileSync(labels);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1]! + 1) % 3;
    writeFileSync(labels, bytes);
    const before = readFileSync(join(runDir, 'checkpoint.bin'));
    await assert.rejects(
      train({
        preset: 'small',
        data: `idx:${dataDir}`,
        epochs: 2,
        batchSize: 16,
        backend: 'wasm',
        seed: 3,
        out: runDir,
        resume: true,
        checkpointEvery: 0,
        configOverrides: TINY,
        log: () => {},
        progressBar: false,
        givenFlags: {},
      }),
      /t10k-labels-idx1-ubyte changed since the run .* started \(SHA-256 differs\): restore the files/,
    );
    assert.ok(readFileSync(join(runDir, 'checkpoint.bin')).equals(before));
  });
});
