/**
 * `npm run gpu:bundle`: writes gpu-bundle/ (git-ignored, at most 56 MiB), everything the GPU check needs on a
 * bare linux-x64 machine without network: `gpu-bundle/run.sh OUT_DIR` runs it (see the README, "Checking a GPU").
 *
 *   node.tar.xz     this machine's node binary (linux x86-64)
 *   ort.tar.xz      onnxruntime-node (its JS, the linux-x64 binding and libonnxruntime.so.1, WebGPU EP built in)
 *   dawn.tar.xz     the `webgpu` package's linux-x64 dawn.node (Dawn, for tfjs-backend-webgpu)
 *   app.tar.xz      bench/gpu-bundle/check.ts bundled by esbuild (tfjs-core, tfjs-backend-webgpu, the exporter,
 *                   the training code), and scripts/bench_train_torch.py
 *   data.tar.xz     a small-preset checkpoint trained on the embedded digits (weights only), its fp32 and fp16
 *                   exports, its ORT cpu outputs on 16 test digits, and the digits (8,000 training, 2,000 test)
 *   libvulkan1_*.deb  the Vulkan loader (Debian's), unpacked by run.sh where the machine has none
 *   run.sh, BUNDLE.json (what is inside, and each part's size)
 *
 * The archives are cached in node_modules/.cache/capsnet-gpu-bundle/ by the hash of what they hold, so a rebuild
 * takes seconds. The bundle is assembled in a temporary folder and renamed into place; a gpu-bundle/ that this
 * command did not write (no BUNDLE.json) is never replaced. Needs xz, tar and (once, for the .deb) apt-get
 * download, or CAPSNET_VULKAN_DEB=FILE.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { IO_NAMES, paramShapes } from '@capsnet-onnx/core';
import { processAlive } from '../../packages/capsnet/src/files/atomic.ts';
import { encodeCheckpoint, loadCheckpoint } from '../../packages/capsnet/src/files/checkpoint.ts';
import { buildCapsNetModels } from '../../packages/capsnet/src/export/exporter.ts';
import { encodeModel } from '../../packages/capsnet/src/export/onnx-schema.ts';
import { loadMnistSample } from '../../packages/capsnet/src/data/datasets.ts';
import { trainedSmallRun } from '../../test/support/fixtures.ts';
import { readEnv } from '../env.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const HERE = fileURLToPath(new URL('.', import.meta.url));
export const BUNDLE_DIR = join(ROOT, 'gpu-bundle');
export const MAX_BYTES = 56 * 1024 * 1024;
const CACHE = join(ROOT, 'node_modules', '.cache', 'capsnet-gpu-bundle');
const STAGE_PREFIX = '.tmp-gpu-bundle-';

class BundleError extends Error {}

function log(line: string): void {
  console.log(`gpu:bundle: ${line}`);
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => statSync(join(dir, f)).isFile())
    .sort();
}

/** DIR's files as NAME.tar.xz in `stage`, from the cache when the same bytes were packed before. */
function packXz(name: string, dir: string, stage: string): void {
  const hash = createHash('sha256');
  for (const f of filesUnder(dir))
    hash
      .update(f)
      .update('\0')
      .update(readFileSync(join(dir, f)))
      .update(String(statSync(join(dir, f)).mode & 0o111));
  const cached = join(CACHE, `${name}-${hash.digest('hex').slice(0, 16)}.tar.xz`);
  if (!existsSync(cached)) {
    const t0 = performance.now();
    mkdirSync(CACHE, { recursive: true });
    const tmp = `${cached}.${process.pid}.tmp`;
    // -T2: the two cores here; -6: about 4:1 on the binaries, and python3's lzma reads it too.
    execFileSync('sh', ['-c', 'tar -cf - -C "$1" . | xz -T2 -6 > "$2"', 'sh', dir, tmp], { stdio: ['ignore', 'inherit', 'inherit'] });
    renameSync(tmp, cached);
    log(`packed ${name}.tar.xz in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  copyFileSync(cached, join(stage, `${name}.tar.xz`));
}

/** The Vulkan loader .deb: CAPSNET_VULKAN_DEB, the cache, or `apt-get download libvulkan1` into the cache. */
function vulkanDeb(): string {
  const given = readEnv('CAPSNET_VULKAN_DEB');
  if (given) {
    if (!existsSync(given) || !/libvulkan1_.*_amd64\.deb$/.test(basename(given))) {
      throw new BundleError(`CAPSNET_VULKAN_DEB=${given} is not a libvulkan1_*_amd64.deb file: give the path of one (apt-get download libvulkan1)`);
    }
    return given;
  }
  mkdirSync(CACHE, { recursive: true });
  const find = () => readdirSync(CACHE).find((f) => /^libvulkan1_.*_amd64\.deb$/.test(f));
  if (!find()) {
    log('apt-get download libvulkan1 (the Vulkan loader, once)');
    const r = spawnSync('apt-get', ['download', 'libvulkan1:amd64'], { cwd: CACHE, encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0 || !find()) {
      const why = r.error ? r.error.message : (r.stderr || r.stdout).trim().split('\n').pop();
      throw new BundleError(
        `could not get the Vulkan loader: apt-get download libvulkan1 failed (${why}); ` +
          `put a libvulkan1_*_amd64.deb in ${relative(ROOT, CACHE)}/ or set CAPSNET_VULKAN_DEB=FILE`,
      );
    }
  }
  return join(CACHE, find()!);
}

/** check.ts as one ES module, with the native packages left outside (they travel as files beside it). */
async function bundleApp(outfile: string): Promise<void> {
  await build({
    entryPoints: [join(HERE, 'check.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minify: true,
    legalComments: 'none',
    conditions: ['capsnet-source'],
    // onnxruntime-node loads its binding by a computed path: it travels as files beside check.mjs.
    external: ['onnxruntime-node'],
    plugins: [
      {
        // Backends the check never starts (train/backends/backend.ts's wasm and tensorflow): empty modules, so that their
        // native or wasm files are not needed.
        name: 'absent-backends',
        setup(b) {
          b.onResolve({ filter: /^@tensorflow\/tfjs-(node|node-gpu|backend-wasm)(\/.*)?$/ }, (a) => ({ path: a.path, namespace: 'absent' }));
          b.onLoad({ filter: /.*/, namespace: 'absent' }, () => ({ contents: 'module.exports = {};', loader: 'js' }));
        },
      },
    ],
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    logLevel: 'warning',
  });
}

function copyInto(src: string, dest: string): void {
  mkdirSync(dirname(dest), { recursive: true });
  cpSync(src, dest, { recursive: true });
}

/** The trained small checkpoint (weights only), its two exports and its ORT cpu outputs on 16 test digits. */
async function smallModel(dir: string, testImages: Float32Array): Promise<Record<string, unknown>> {
  const run = await trainedSmallRun();
  const state = loadCheckpoint(run);
  const slim = { ...state, optimizer: { m: {}, v: {} } };
  const { sha256: _s, path: _p, ...plain } = slim;
  const bytes = encodeCheckpoint(plain);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'checkpoint.bin'), bytes);
  const sha = createHash('sha256').update(bytes).digest('hex');
  const accuracy = state.metrics.at(-1)?.test_accuracy ?? null;
  for (const precision of ['fp32', 'fp16'] as const) {
    const built = buildCapsNetModels(state.config, state.weights, {
      classLabels: state.classLabels,
      dataset: state.dataset,
      testAccuracy: accuracy,
      checkpointSha256: sha,
      precision,
      // The training time, not now: the same checkpoint exports to the same bytes, so the packed data is cached.
      exportedAt: new Date(statSync(state.path).mtimeMs),
    });
    const base = precision === 'fp32' ? 'model' : 'model.fp16';
    writeFileSync(join(dir, `${base}.onnx`), encodeModel(built.model));
    writeFileSync(join(dir, `${base}.decoder.onnx`), built.decoderBytes);
  }
  // The reference for step b's tfjs-webgpu forward: ORT cpu on the fp32 export.
  const ort = await import('onnxruntime-node');
  const c = state.config;
  const count = 16;
  const pixels = c.inputHeight * c.inputWidth * c.inputChannels;
  const session = await ort.InferenceSession.create(join(dir, 'model.onnx'), { executionProviders: ['cpu'] });
  const outs = await session.run(
    { [IO_NAMES.images]: new ort.Tensor('float32', testImages.slice(0, count * pixels), [count, c.inputHeight, c.inputWidth, c.inputChannels]) },
    ['lengths', 'capsules', 'reconstruction'],
  );
  await session.release();
  writeFileSync(
    join(dir, 'reference.json'),
    JSON.stringify({
      count,
      lengths: Array.from(outs.lengths!.data as Float32Array),
      capsules: Array.from(outs.capsules!.data as Float32Array),
      reconstruction: Array.from(outs.reconstruction!.data as Float32Array),
    }),
  );
  const manifest = {
    config: c,
    testAccuracy: accuracy,
    trainedOn: `${state.dataset}, ${state.run.trainLimit ?? 'all'} training digits, ${state.epoch} epoch(s)`,
    parameters: Object.values(paramShapes(c)).reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0),
  };
  writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** Digits as pixel x 1000 in uint16 (the embedded MNIST values have three decimals: lossless) and byte labels. */
function writeDigits(dir: string, split: 'train' | 'test', images: Float32Array, labels: Int32Array): void {
  const u16 = Uint16Array.from(images, (v) => Math.round(v * 1000));
  for (let i = 0; i < images.length; i++) {
    if (Math.abs(u16[i]! / 1000 - images[i]!) > 1e-6)
      throw new BundleError(`digit pixel ${images[i]} is not a multiple of 0.001: the uint16 packing would change it`);
  }
  writeFileSync(join(dir, `digits-${split}.u16`), new Uint8Array(u16.buffer));
  writeFileSync(join(dir, `digits-${split}.labels`), Uint8Array.from(labels));
}

export async function buildBundle(): Promise<{ dir: string; parts: Record<string, number>; total: number }> {
  const t0 = performance.now();
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new BundleError(
      `the bundle carries this machine's node binary and the linux-x64 native libraries: build it on linux x64 (this is ${process.platform} ${process.arch})`,
    );
  }
  if (existsSync(BUNDLE_DIR) && !existsSync(join(BUNDLE_DIR, 'BUNDLE.json'))) {
    throw new BundleError(`${BUNDLE_DIR} exists and was not written by npm run gpu:bundle (no BUNDLE.json): move it away first`);
  }
  for (const f of readdirSync(ROOT).filter((f) => f.startsWith(STAGE_PREFIX))) {
    const pid = Number(f.slice(STAGE_PREFIX.length).split('-')[0]);
    if (!processAlive(pid)) rmSync(join(ROOT, f), { recursive: true, force: true });
  }
  const stage = join(ROOT, `${STAGE_PREFIX}${process.pid}`);
  const src = join(stage, '.src');
  mkdirSync(src, { recursive: true });
  try {
    const nm = join(ROOT, 'node_modules');
    // node
    copyInto(process.execPath, join(src, 'node', 'node', 'bin', 'node'));
    packXz('node', join(src, 'node'), stage);
    // onnxruntime-node (+ onnxruntime-common), linux x64 only
    const ortSrc = join(src, 'ort', 'node_modules');
    for (const f of ['package.json', 'dist']) copyInto(join(nm, 'onnxruntime-node', f), join(ortSrc, 'onnxruntime-node', f));
    for (const f of ['libonnxruntime.so.1', 'onnxruntime_binding.node']) {
      copyInto(join(nm, 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'x64', f), join(ortSrc, 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'x64', f));
    }
    for (const f of ['package.json', 'dist/cjs']) copyInto(join(nm, 'onnxruntime-common', f), join(ortSrc, 'onnxruntime-common', f));
    packXz('ort', join(src, 'ort'), stage);
    // dawn.node, where the bundled `webgpu` package looks: beside check.mjs, dist/linux-x64/
    copyInto(join(nm, 'webgpu', 'dist', 'linux-x64', 'dawn.node'), join(src, 'dawn', 'dist', 'linux-x64', 'dawn.node'));
    packXz('dawn', join(src, 'dawn'), stage);
    // the app
    await bundleApp(join(src, 'app', 'check.mjs'));
    copyInto(join(ROOT, 'scripts', 'bench_train_torch.py'), join(src, 'app', 'bench_train_torch.py'));
    packXz('app', join(src, 'app'), stage);
    // data: digits and the small trained model
    const mnist = loadMnistSample();
    const data = join(src, 'data', 'data');
    mkdirSync(data, { recursive: true });
    writeDigits(data, 'train', mnist.train.images, mnist.train.labels);
    writeDigits(data, 'test', mnist.test.images, mnist.test.labels);
    const small = await smallModel(join(data, 'small'), mnist.test.images);
    packXz('data', join(src, 'data'), stage);
    // the Vulkan loader and the launcher
    const deb = vulkanDeb();
    copyFileSync(deb, join(stage, basename(deb)));
    copyFileSync(join(HERE, 'run.sh'), join(stage, 'run.sh'));
    chmodSync(join(stage, 'run.sh'), 0o755);
    rmSync(src, { recursive: true, force: true });

    const parts = Object.fromEntries(
      readdirSync(stage)
        .sort()
        .map((f) => [f, statSync(join(stage, f)).size]),
    );
    const manifest = {
      builtAt: new Date().toISOString(),
      node: process.version,
      onnxruntimeNode: JSON.parse(readFileSync(join(nm, 'onnxruntime-node', 'package.json'), 'utf8')).version,
      webgpu: JSON.parse(readFileSync(join(nm, 'webgpu', 'package.json'), 'utf8')).version,
      vulkanLoader: basename(deb),
      digits: { train: mnist.train.count, test: mnist.test.count },
      small,
      parts,
    };
    writeFileSync(join(stage, 'BUNDLE.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    parts['BUNDLE.json'] = statSync(join(stage, 'BUNDLE.json')).size;
    const total = Object.values(parts).reduce((a, b) => a + b, 0);
    if (total > MAX_BYTES) {
      throw new BundleError(
        `the bundle would be ${(total / 2 ** 20).toFixed(1)} MiB, over the 56 MiB that travels to the GPU machine: ` +
          Object.entries(parts)
            .map(([k, v]) => `${k} ${(v / 2 ** 20).toFixed(1)}`)
            .join(', '),
      );
    }
    rmSync(BUNDLE_DIR, { recursive: true, force: true });
    renameSync(stage, BUNDLE_DIR);
    log(`wrote ${relative(process.cwd(), BUNDLE_DIR) || BUNDLE_DIR}/ in ${((performance.now() - t0) / 1000).toFixed(0)} s:`);
    for (const [k, v] of Object.entries(parts)) console.log(`  ${k.padEnd(32)} ${(v / 2 ** 20).toFixed(2).padStart(6)} MiB`);
    console.log(`  ${'total'.padEnd(32)} ${(total / 2 ** 20).toFixed(2).padStart(6)} MiB (limit 56)`);
    console.log('run it on the GPU machine: gpu-bundle/run.sh OUT_DIR');
    return { dir: BUNDLE_DIR, parts, total };
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  buildBundle().then(
    () => process.exit(0),
    (e: unknown) => {
      if (e instanceof BundleError) console.error(`gpu:bundle: ${e.message}`);
      else console.error(e);
      process.exit(1);
    },
  );
}
