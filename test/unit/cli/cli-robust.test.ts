/**
 * The CLI never dies natively and never shows a raw system error (issue 11): 2,000 files with long paths (past
 * the command-line length at which onnxruntime-node 1.30 segfaults), directories and `-` as file lists, system
 * errors as one line naming the path and the fix, and a runtime that can be disposed twice.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { encodePng } from '../../../packages/capsnet/src/serve/images.ts';
import { systemErrorLine, writeFileAtomic } from '../../../packages/capsnet/src/files/atomic.ts';
import { encodeCheckpoint } from '../../../packages/capsnet/src/files/checkpoint.ts';
import { CapsNet } from '@capsnet-onnx/runtime/node';
import { CLI, ROOT } from '../../support/fixtures.ts';
import { TINY_CONFIG, tinyModel } from '../../support/tiny-model.ts';

describe('capsnet classify with very long file lists', () => {
  let dir: string;
  let model: string;
  let files: string[];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsnet-many-'));
    const tiny = tinyModel();
    model = join(dir, 'model.onnx');
    writeFileSync(model, tiny.model);
    writeFileSync(join(dir, 'model.decoder.onnx'), tiny.decoder);
    // 2,000 paths of about 190 bytes: some 380 KB of arguments, ten times what onnxruntime-node survives.
    const images = join(dir, `images-${'long-directory-name-'.repeat(5)}`);
    mkdirSync(images);
    const png = encodePng(
      new Float32Array(12 * 10).map((_, i) => (i % 7) / 7),
      12,
      10,
      1,
    );
    files = Array.from({ length: 2000 }, (_, i) => join(images, `digit-${String(i).padStart(4, '0')}-${'x'.repeat(60)}.png`));
    for (const f of files) writeFileSync(f, png);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('2,000 files with long paths on the command line are all classified (no native crash)', async () => {
    const argBytes = files.reduce((n, f) => n + f.length + 1, 0);
    assert.ok(argBytes > 300_000, `${argBytes} bytes of arguments`);
    const r = await execa('node', [CLI, 'classify', model, ...files, '--json', '--device', 'cpu'], { cwd: ROOT, reject: false });
    assert.equal(r.exitCode, 0, `exit ${r.exitCode} signal ${r.signal}: ${r.stderr.slice(0, 500)}`);
    const out = JSON.parse(r.stdout);
    assert.equal(out.results.length, 2000);
    assert.equal(out.results[1999].image, files[1999]);
  });

  test("a directory's walk skips node_modules and hidden folders (packages' icons are not the user's images)", async () => {
    const walk = join(dir, 'walk');
    for (const sub of ['node_modules/pkg', '.cache', 'sub']) mkdirSync(join(walk, sub), { recursive: true });
    for (const f of ['a.png', 'node_modules/pkg/icon.png', '.cache/b.png', 'sub/c.png']) writeFileSync(join(walk, f), readFileSync(files[0]!));
    const r = JSON.parse((await execa('node', [CLI, 'classify', model, walk, '--json', '--device', 'cpu'], { cwd: ROOT })).stdout);
    assert.deepEqual(
      r.results.map((x: { image: string }) => x.image),
      [join(walk, 'a.png'), join(walk, 'sub', 'c.png')],
    );
  });

  test('a directory and `-` (names on stdin) are file lists too', async () => {
    const images = join(files[0]!, '..');
    const fromDir = JSON.parse((await execa('node', [CLI, 'classify', model, images, '--json', '--device', 'cpu'], { cwd: ROOT })).stdout);
    assert.equal(fromDir.results.length, 2000);
    const fromStdin = JSON.parse(
      (await execa('node', [CLI, 'classify', model, '-', '--json', '--device', 'cpu'], { cwd: ROOT, input: files.slice(0, 50).join('\n') })).stdout,
    );
    assert.deepEqual(
      fromStdin.results.map((r: { image: string }) => r.image),
      files.slice(0, 50),
    );
  });
});

describe('system errors are one line naming the path and the fix', () => {
  test('the mapping names the path and the fix for each code', () => {
    const error = (code: string) => Object.assign(new Error(`${code}: raw`), { code, path: '/tmp/.checkpoint.bin.tmp-1-0' });
    const cases: [string, RegExp][] = [
      ['ENOSPC', /the disk holding \/runs\/a\/checkpoint\.bin is full: free some space/],
      ['EROFS', /\/runs\/a\/checkpoint\.bin is on a read-only file system: write somewhere writable/],
      ['EACCES', /permission denied for \/runs\/a\/checkpoint\.bin: choose a path you can write to/],
      ['EEXIST', /\/runs\/a\/checkpoint\.bin already exists: remove it or choose another path/],
      ['EISDIR', /\/runs\/a\/checkpoint\.bin is a directory, not a file/],
    ];
    for (const [code, expected] of cases) {
      const line = systemErrorLine(error(code), '/runs/a/checkpoint.bin')!;
      assert.match(line, expected);
      assert.ok(!line.includes('\n') && !line.includes('.tmp-'), line);
    }
    assert.equal(systemErrorLine(new Error('not a system error')), undefined);
  });

  test('a failed atomic write names the target, not its temp file, and leaves no temp file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-eisdir-'));
    mkdirSync(join(dir, 'model.onnx'));
    assert.throws(
      () => writeFileAtomic(join(dir, 'model.onnx'), 'x'),
      (e: Error) => /model\.onnx is a directory, not a file/.test(e.message) && !/tmp/.test(e.message.split(' is a directory')[0]!.slice(-12)),
    );
    rmSync(dir, { recursive: true, force: true });
  });

  test('train and export into places the system refuses give one line, no stack trace', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-syserr-'));
    try {
      // /sys refuses writes even to root (EPERM/EACCES); a file where a directory is needed gives ENOTDIR.
      writeFileSync(join(dir, 'a-file'), 'x');
      const run = join(dir, 'run');
      mkdirSync(run);
      writeFileSync(
        join(run, 'checkpoint.bin'),
        encodeCheckpoint({
          config: TINY_CONFIG,
          epoch: 1,
          step: 1,
          seed: 1,
          run: { batchSize: 1 },
          dataset: 'tiny',
          classLabels: ['a', 'b', 'c', 'd'],
          backend: 'cpu',
          metrics: [],
          weights: tinyModel().weights,
          optimizer: { m: {}, v: {} },
        }),
      );
      const cases: [string[], RegExp][] = [
        [
          ['export', run, '-o', '/sys/capsnet-model.onnx'],
          /^capsnet: (permission denied for|operation not permitted on) \/sys\/capsnet-model(\.decoder)?\.onnx: .*\((EACCES|EPERM)\)$/m,
        ],
        [
          ['train', '--preset', 'small', '--train-limit', '64', '--backend', 'cpu', '--no-progress', '--out', '/sys/capsnet-run'],
          /^capsnet: (permission denied for|operation not permitted on) \/sys\/capsnet-run: .*\((EACCES|EPERM)\)$/m,
        ],
        [
          ['train', '--preset', 'small', '--train-limit', '64', '--backend', 'cpu', '--no-progress', '--out', join(dir, 'a-file', 'run')],
          /^capsnet: a parent of .*a-file\/run is a file, not a directory/m,
        ],
      ];
      for (const [args, expected] of cases) {
        const r = await execa('node', [CLI, ...args], { cwd: ROOT, reject: false });
        assert.equal(r.exitCode, 1, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, expected);
        assert.doesNotMatch(r.stderr, /\n\s+at /);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('runtime', () => {
  test('dispose() twice does not throw', async () => {
    const tiny = tinyModel();
    const model = await CapsNet.load(tiny.model, { decoder: tiny.decoder, device: 'cpu' });
    await model.dispose();
    await model.dispose();
  });

  test('a decoder from another export is refused with the fix', async () => {
    const a = tinyModel();
    const b = tinyModel({ 'capsnet.dataset': 'another export' });
    await assert.rejects(
      CapsNet.load(a.model, { decoder: b.decoder, device: 'cpu' }),
      /the decoder does not belong to the model: .*run `capsnet export` again/,
    );
  });
});

describe('capsnet serve through npx', () => {
  test('SIGTERM to npx stops the server too (npm exec ends its shell, not the command: no orphan left serving)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'capsnet-npx-'));
    let npx: ReturnType<typeof execa> | undefined;
    try {
      const tiny = tinyModel();
      writeFileSync(join(dir, 'model.onnx'), tiny.model);
      writeFileSync(join(dir, 'model.decoder.onnx'), tiny.decoder);
      // A user's shell: no npm_* variables from `npm test`, no NODE_OPTIONS.
      const env: NodeJS.ProcessEnv = {};
      for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k) && k !== 'NODE_OPTIONS') env[k] = v;
      const child = execa('npx', ['capsnet', 'serve', join(dir, 'model.onnx'), '--port', '0', '--threads', '1'], {
        cwd: ROOT,
        env,
        extendEnv: false,
        all: true,
        reject: false,
      });
      npx = child;
      let text = '';
      await new Promise<void>((resolve, reject) => {
        child.all!.on('data', (chunk: Buffer) => {
          text += chunk.toString();
          if (text.includes('listening on')) resolve();
        });
        setTimeout(() => reject(new Error(`serve did not start: ${text}`)), 120_000);
      });
      const port = /listening on http:\/\/[^:]+:(\d+)/.exec(text)![1]!;
      child.kill('SIGTERM');
      // Not `await child`: an orphaned server would hold its output open.
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
      // The server notices its shell is gone, finishes in-flight requests and exits.
      const deadline = Date.now() + 20_000;
      const serving = async () =>
        fetch(`http://127.0.0.1:${port}/healthz`).then(
          () => true,
          () => false,
        );
      while ((await serving()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
      assert.equal(await serving(), false, `the server on port ${port} still answers after npx got SIGTERM`);
    } finally {
      npx?.all?.destroy();
      await execa('pkill', ['-f', dir], { reject: false }); // an orphan, if the test failed
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
