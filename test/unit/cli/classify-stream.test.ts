/**
 * `capsnet classify` writes results as each batch finishes, so Ctrl-C (or SIGTERM) keeps what was finished: it stops
 * after the batch in flight, says so on stderr and exits 128 + the signal; --json stays one parseable object. And
 * with --json, an error that stops the whole run carries a stable code, as each image's error does.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { encodePng } from '../../../packages/capsnet/src/serve/images.ts';
import { runErrorCode } from '../../../packages/capsnet/src/cli/classify.ts';
import { CLI, ROOT } from '../../support/fixtures.ts';

const cli = (...args: string[]) => execa('node', [CLI, ...args], { cwd: ROOT, reject: false, timeout: 120_000 });

/** N random 28x28 digits-ish images as one IDX file. */
function idxFile(path: string, count: number): void {
  const bytes = new Uint8Array(16 + count * 784);
  const view = new DataView(bytes.buffer);
  [0x803, count, 28, 28].forEach((v, i) => view.setUint32(4 * i, v));
  let seed = 7;
  for (let i = 16; i < bytes.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    bytes[i] = seed >>> 24 < 50 ? seed & 0xff : 0;
  }
  writeFileSync(path, bytes);
}

/** Start classify on the IDX file, send `signal` (`copies` times, 20 ms apart) once it reports progress, and return what it wrote. */
async function interrupt(args: string[], signal: NodeJS.Signals, copies = 1) {
  const child = execa('node', [CLI, 'classify', '--pretrained', 'mnist-small', '--max-batch', '32', ...args], {
    cwd: ROOT,
    reject: false,
    timeout: 120_000,
  });
  let sent = false;
  child.stderr!.on('data', (chunk: Buffer) => {
    if (!sent && /classified \d+\/\d+ images/.test(chunk.toString())) {
      sent = true;
      for (let i = 0; i < copies; i++) setTimeout(() => child.kill(signal), 20 * i);
    }
  });
  const r = await child;
  assert.ok(sent, `no progress line to interrupt on: ${r.stderr}`);
  const done = Number(/interrupted by (?:SIGINT|SIGTERM) after (\d+) of \d+ images: the results written are those \d+/.exec(r.stderr)?.[1]);
  assert.ok(Number.isInteger(done) && done > 0 && done < 8000, r.stderr);
  return { ...r, done };
}

describe('capsnet classify: streamed results and interruption', { timeout: 300_000 }, () => {
  let dir: string;
  let idx: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'capsnet-stream-'));
    idx = join(dir, 'many-images-idx3-ubyte');
    idxFile(idx, 8000);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('Ctrl-C (SIGINT): every finished image is on stdout, in order, and the exit status is 130', async () => {
    const r = await interrupt([idx], 'SIGINT');
    assert.equal(r.exitCode, 130, r.stderr);
    const lines = r.stdout.split('\n').filter(Boolean);
    assert.equal(lines.length, r.done);
    lines.forEach((line, i) => assert.ok(line.startsWith(`${idx}[${i}] `), line));
  });

  test('SIGTERM with --json: one valid JSON object with the finished results and "interrupted"; exit status 143', async () => {
    const r = await interrupt(['--json', idx], 'SIGTERM');
    assert.equal(r.exitCode, 143, r.stderr);
    const json = JSON.parse(r.stdout);
    assert.equal(json.results.length, r.done);
    assert.equal(json.results.at(-1).image, `${idx}[${r.done - 1}]`);
    assert.match(json.interrupted, /^interrupted by SIGTERM after \d+ of 8000 images/);
  });

  test('SIGINT twice at once (a process-group kill reaches the launcher and classify: one signal) still stops cleanly', async () => {
    const r = await interrupt(['--json', idx], 'SIGINT', 2);
    assert.equal(r.exitCode, 130, r.stderr);
    const json = JSON.parse(r.stdout);
    assert.equal(json.results.length, r.done);
    assert.match(json.interrupted, /^interrupted by SIGINT after \d+ of 8000 images/);
  });

  test('a whole --json run is laid out as JSON.stringify(value, null, 2), error rows included', async () => {
    const png = join(dir, 'one.png');
    writeFileSync(
      png,
      encodePng(
        new Float32Array(784).map((_, i) => (i % 3) / 3),
        28,
        28,
        1,
      ),
    );
    const r = await cli('classify', '--pretrained', 'mnist-small', '--json', png, join(dir, 'missing.png'));
    assert.equal(r.exitCode, 1);
    const json = JSON.parse(r.stdout);
    assert.equal(r.stdout, JSON.stringify(json, null, 2));
    assert.deepEqual(
      json.results.map((row: { image: string; error?: { code: string } }) => [row.image, row.error?.code]),
      [
        [png, undefined],
        [join(dir, 'missing.png'), 'NOT_FOUND'],
      ],
    );
    assert.equal(json.interrupted, undefined);
  });
});

describe('capsnet classify --json: errors that stop the run have a code', () => {
  test('usage, a missing model and a bad option each give {"error": {"code", "message"}}', async () => {
    for (const [args, code] of [
      [['classify', '--json'], 'USAGE'],
      [['classify', '--json', '--top', 'x', 'm.onnx', 'a.png'], 'USAGE'],
      [['classify', '--json', '--pretrained', 'mnist-small'], 'USAGE'],
      [['classify', '--json', '/nonexistent/model.onnx', 'a.png'], 'MODEL_NOT_FOUND'],
    ] as const) {
      const r = await cli(...args);
      assert.equal(r.exitCode, 1, args.join(' '));
      const json = JSON.parse(r.stdout);
      assert.equal(json.error.code, code, `${args.join(' ')}: ${r.stdout}`);
      assert.equal(typeof json.error.message, 'string');
    }
  });

  test('the code follows the error class, by name', () => {
    const named = (name: string, code?: string) => Object.assign(new Error('x'), { name, ...(code ? { code } : {}) });
    assert.equal(runErrorCode(named('NotAModelError')), 'NOT_A_MODEL');
    assert.equal(runErrorCode(named('ModelFormatError')), 'NOT_A_MODEL');
    assert.equal(runErrorCode(named('ModelFileError', 'UNREADABLE')), 'MODEL_UNREADABLE');
    assert.equal(runErrorCode(named('DeviceUnavailableError')), 'DEVICE_UNAVAILABLE');
    assert.equal(runErrorCode(named('InputError')), 'BAD_INPUT');
    assert.equal(runErrorCode(new Error('anything else')), 'FAILED');
  });
});
