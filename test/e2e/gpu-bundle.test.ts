/**
 * The GPU bundle (issue 21): `npm run gpu:bundle` builds gpu-bundle/ within 56 MiB, and gpu-bundle/run.sh runs
 * the check from it alone: no network (`unshare -n`), a PATH without node, npm, npx or pip, python3's lzma
 * instead of tar's xz, the bundled Vulkan loader, and SwiftShader's Vulkan ICD (Debian's chromium) standing in
 * for the GPU's, at tiny sizes (CAPSNET_GPU_CHECK_TINY=1). The WebGPU rows must run and pass parity; the
 * PyTorch-CUDA and CUDA-EP rows must be skips with their reasons. Needs unshare and chromium's SwiftShader:
 * where either is missing the test says so and skips.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { execa } from 'execa';
import { ROOT } from '../support/fixtures.ts';
import { SWIFTSHADER_ICD } from '../../packages/capsnet/src/export/placement.ts';
import { type Row, type StepFile, type Summary, compareOutputs, formatTable, summarize } from '../../bench/gpu-bundle/check.ts';
import { writeFileSync } from 'node:fs';

const BUNDLE = join(ROOT, 'gpu-bundle');
const FORBIDDEN = /^(node|nodejs|npm|npx|corepack|pip[0-9.]*)$/;
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A PATH of one folder: links to the system's commands, less node, npm, npx and pip; python3 is Debian's. */
function bareBin(): string {
  const bin = mkdtempSync(join(tmpdir(), 'capsnet-bare-bin-'));
  dirs.push(bin);
  for (const dir of ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin']) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      if (FORBIDDEN.test(name) || existsSync(join(bin, name))) continue;
      symlinkSync(join(dir, name), join(bin, name));
    }
  }
  return bin;
}

function unavailable(): string | null {
  if (!existsSync(SWIFTSHADER_ICD)) return `${SWIFTSHADER_ICD} missing: install Debian's chromium (SwiftShader stands in for the GPU)`;
  if (spawnSync('unshare', ['-n', 'true']).status !== 0) return 'unshare -n does not work here (it needs user or network namespaces)';
  if (!existsSync('/usr/bin/python3')) return 'no /usr/bin/python3';
  return null;
}

/** A results folder as run.sh leaves it: step files, their exit records, env.json. */
function cannedResults(steps: Record<string, { rows: Row[]; done: boolean; rc: number | null; log?: string }>): string {
  const out = mkdtempSync(join(tmpdir(), 'capsnet-gpu-summary-'));
  dirs.push(out);
  mkdirSync(join(out, 'steps'));
  for (const [step, s] of Object.entries(steps)) {
    const file: StepFile = { step, title: step, rows: s.rows, info: step === 'a' ? { adapter: { name: 'NVIDIA H100', shaderF16: true } } : {}, done: s.done };
    writeFileSync(join(out, 'steps', `${step}.json`), JSON.stringify(file));
    if (s.rc != null) writeFileSync(join(out, 'steps', `${step}.status`), `rc=${s.rc} seconds=12 budget=130\n`);
    if (s.log) writeFileSync(join(out, 'steps', `${step}.log`), s.log);
  }
  writeFileSync(join(out, 'env.json'), JSON.stringify({ icd: '/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json', loader: 'system', gpu: 'NVIDIA H100' }));
  return out;
}

describe('GPU check summary (canned results)', () => {
  test('ratios pair the tfjs-webgpu and PyTorch rows of the same batch; a cut step and a crashed step get rows', () => {
    const out = cannedResults({
      a: {
        done: true,
        rc: 0,
        rows: [
          { row: 'a ort-webgpu paper fp32 parity', status: 'pass', lengths: 2e-7, capsules: 1e-7, reconstruction: 3e-7, argmax: '32/32', batch: 32 },
          { row: 'a ort-webgpu paper fp32 b256', status: 'ok', ms: 40, batch: 256, imagesPerS: 6400, gflops: 1000 },
        ],
      },
      b: { done: false, rc: 124, rows: [{ row: 'b tfjs-webgpu step paper b32', status: 'ok', ms: 90, batch: 32, imagesPerS: 355 }] },
      c: {
        done: true,
        rc: 0,
        rows: [
          { row: 'c pytorch-cuda paper step b32', status: 'ok', ms: 10, batch: 32, imagesPerS: 3200 },
          { row: 'c pytorch-cuda paper forward b256', status: 'ok', ms: 8, batch: 256, imagesPerS: 32000 },
        ],
      },
      d: { done: false, rc: 1, rows: [], log: 'starting\nError: libcublasLt.so.12: cannot open shared object file\n' },
    });
    const s = summarize(out, 300);
    const find = (re: RegExp) => [...s.rows, ...s.ratios].find((r) => re.test(r.row));
    assert.match(find(/^b \(/)!.note!, /cut at its budget of 130 s; the rows above are what it finished/);
    assert.equal(find(/^b \(/)!.status, 'cut');
    assert.equal(find(/^d \(/)!.status, 'error');
    assert.match(find(/^d \(/)!.note!, /exit 1: .*libcublasLt/);
    assert.match(find(/^e tfjs-webgpu step \/ pytorch-cuda step b32$/)!.note!, /^9\.00 /);
    assert.equal(find(/^e tfjs-webgpu step \/ pytorch-cuda step b128$/)!.status, 'skip');
    assert.match(find(/^e ort-webgpu img\/s \/ pytorch-cuda img\/s b256$/)!.note!, /^0\.20 /);
    assert.equal(s.ok, false);
    const table = formatTable(s);
    assert.match(table, /adapter NVIDIA H100, shader-f16 yes/);
    assert.match(table, /a ort-webgpu paper fp32 parity\s+pass\s+2\.0e-7\s+1\.0e-7\s+3\.0e-7\s+32\/32/);
    assert.match(table, /result: FAILED .*wall 300 s/);
  });

  test('a step that never ran is an error row, not a crash', () => {
    const out = cannedResults({ a: { done: true, rc: 0, rows: [] } });
    const s = summarize(out);
    assert.match(s.rows.find((r) => r.row.startsWith('c '))!.note!, /did not run/);
  });

  test('compareOutputs allows a different argmax only at a near-tie', () => {
    const ref = { lengths: Float32Array.of(0.5, 0.5000001, 0.9, 0.1), capsules: new Float32Array(4), reconstruction: new Float32Array(2) };
    const flipped = { lengths: Float32Array.of(0.5000002, 0.5, 0.9, 0.1), capsules: new Float32Array(4), reconstruction: Float32Array.of(1, 0) };
    const tol = { lengths: 1e-5, capsules: 1e-4, reconstruction: 1e-4, tieGap: 1e-5 };
    const r = compareOutputs(ref, flipped, 2, 2, tol);
    assert.equal(r.argmax, '1/2');
    assert.deepEqual(r.failed, [], 'image 0 is a near-tie, and its reconstruction is not compared');
    const wrong = { ...flipped, lengths: Float32Array.of(0.5000002, 0.5, 0.1, 0.9) };
    assert.match(compareOutputs(ref, wrong, 2, 2, tol).failed.join(), /lengths 8\.0e-1 > 0\.00001.*argmax differs beyond a near-tie on image\(s\) 1/);
  });
});

describe('GPU bundle', () => {
  test('npm run gpu:bundle builds it within 56 MiB, and run.sh runs offline without node, npm or pip', { timeout: 900_000 }, async (t) => {
    const why = unavailable();
    if (why) {
      console.warn(`SKIP: ${why}`);
      t.skip(why);
      return;
    }
    const built = await execa('npm', ['run', 'gpu:bundle'], { cwd: ROOT, reject: false, all: true });
    assert.equal(built.exitCode, 0, built.all);
    const parts = readdirSync(BUNDLE);
    const sizes = Object.fromEntries(parts.map((f) => [f, statSync(join(BUNDLE, f)).size]));
    const total = Object.values(sizes).reduce((a, b) => a + b, 0);
    console.log(`bundle: ${(total / 2 ** 20).toFixed(2)} MiB: ${parts.map((f) => `${f} ${(sizes[f]! / 2 ** 20).toFixed(2)}`).join(', ')}`);
    assert.ok(total <= 56 * 2 ** 20, `bundle is ${total} bytes`);
    for (const part of ['node.tar.xz', 'ort.tar.xz', 'dawn.tar.xz', 'app.tar.xz', 'data.tar.xz', 'run.sh', 'BUNDLE.json'])
      assert.ok(parts.includes(part), `no ${part}`);
    assert.ok(
      parts.some((f) => /^libvulkan1_.*_amd64\.deb$/.test(f)),
      'no Vulkan loader .deb',
    );
    // Nothing for other platforms, and no npm client or package manager inside.
    const listing = spawnSync('sh', ['-c', `for f in "${BUNDLE}"/*.tar.xz; do tar -tJf "$f"; done`], { encoding: 'utf8' }).stdout;
    assert.doesNotMatch(listing, /darwin|win32|linux-arm64|\/npm\/|npx/, 'files for other platforms or npm in the bundle');
    assert.match(listing, /dist\/linux-x64\/dawn\.node/);
    assert.match(listing, /libonnxruntime\.so\.1/);

    const bin = bareBin();
    const out = mkdtempSync(join(tmpdir(), 'capsnet-gpu-check-'));
    dirs.push(out);
    const env = {
      PATH: bin,
      HOME: out,
      LANG: 'C.UTF-8',
      CAPSNET_GPU_CHECK_TINY: '1',
      CAPSNET_GPU_BUNDLE_UNPACK: 'python',
      VK_ICD_FILENAMES: SWIFTSHADER_ICD,
      XDG_RUNTIME_DIR: '/tmp',
    };
    const probe = spawnSync('sh', ['-c', 'for c in node npm npx pip pip3; do command -v $c && exit 1; done; exit 0'], { env, encoding: 'utf8' });
    assert.equal(probe.status, 0, `the bare PATH still has ${probe.stdout}`);
    const started = performance.now();
    const run = await execa('unshare', ['-n', join(BUNDLE, 'run.sh'), join(out, 'result')], {
      env,
      extendEnv: false,
      reject: false,
      all: true,
      timeout: 600_000,
    });
    const seconds = (performance.now() - started) / 1000;
    console.log(run.all);
    console.log(`run.sh: exit ${run.exitCode} in ${seconds.toFixed(0)} s`);
    const summary = JSON.parse(readFileSync(join(out, 'result', 'summary.json'), 'utf8')) as Summary;
    const row = (re: RegExp) => {
      const r = summary.rows.find((x) => re.test(x.row));
      assert.ok(r, `no row ${re} in:\n${run.all}`);
      return r;
    };
    // Unpacked with python3's lzma, the Vulkan loader from the bundle's .deb, SwiftShader as the adapter.
    assert.match(run.all!, /unpacking into .* \(python3's lzma\)/);
    assert.match(summary.env.loader ?? '', /^bundled libvulkan1_/);
    assert.match(JSON.stringify(summary.adapter), /SwiftShader/i);
    // a. WebGPU inference: parity with ORT cpu, timings; fp16 compute is a skip on an adapter without shader-f16.
    for (const name of [/^a ort-webgpu tiny fp32 parity$/, /^a ort-webgpu small \(trained\) fp32 parity$/]) {
      const r = row(name);
      assert.equal(r.status, 'pass', r.note);
      assert.ok(r.lengths! <= 1e-5, `lengths differ by ${r.lengths}`);
    }
    for (const b of [1, 4]) assert.ok(row(new RegExp(`^a ort-webgpu tiny fp32 b${b}$`)).imagesPerS! > 0);
    const fp16 = row(/^a ort-webgpu tiny fp16 parity$/);
    assert.ok(fp16.status === 'pass' || (fp16.status === 'skip' && /shader-f16/.test(fp16.note!)), JSON.stringify(fp16));
    // b. tfjs-webgpu: the trained checkpoint's forward matches its export, a step was timed, a short run trained.
    assert.equal(row(/^b tfjs-webgpu forward \(small, trained\)$/).status, 'pass');
    assert.equal(row(/^b tfjs-webgpu step tiny b2$/).status, 'ok');
    const short = row(/^b tfjs-webgpu train tiny/);
    assert.equal(short.status, 'ok', short.note);
    assert.match(short.note!, /test accuracy \d+\.\d+% on 8 test digits/);
    // c and d: skips with reasons, never failures.
    for (const r of summary.rows.filter((x) => x.row.startsWith('c '))) assert.match(`${r.status}: ${r.note}`, /^skip: .*(torch|python3|CUDA)/);
    assert.match(`${row(/^d ort-cuda$/).status}: ${row(/^d ort-cuda$/).note}`, /^skip: libonnxruntime_providers_cuda\.so not found/);
    assert.ok(summary.ratios.length > 0 && summary.ratios.every((r) => r.status === 'skip' && /needs/.test(r.note!)));
    assert.equal(summary.ok, true, run.all);
    assert.equal(run.exitCode, 0);
    // Everything it wrote is under OUT_DIR; the bundle is as it was.
    assert.deepEqual(readdirSync(BUNDLE).sort(), [...parts].sort());
    assert.ok(existsSync(join(out, 'result', 'table.txt')));
  });
});
