/**
 * The GPU bundle's measuring program (`npm run gpu:bundle` bundles it with esbuild into gpu-bundle/, and
 * gpu-bundle/run.sh runs it there with the bundled node). One step per process, so a failing or hanging step
 * costs only itself; run.sh cuts each at its budget with `timeout`:
 *
 *   node check.mjs infer   --out DIR --data DIR --budget S   a. ORT WebGPU EP: parity vs ORT cpu, fp16, throughput
 *   node check.mjs train   --out DIR --data DIR --budget S   b. tfjs-backend-webgpu on Dawn: steps, a short real run
 *   node check.mjs torch   --out DIR --script PY --budget S  c. the same CapsNet in PyTorch on CUDA (python3)
 *   node check.mjs cuda-ep --out DIR --data DIR --budget S   d. ORT CUDA EP, where its provider library is found
 *   node check.mjs table   --out DIR [--wall S]              e. the table (with the ratios) and DIR/summary.json
 *   node check.mjs adapter                                   Dawn's adapter: one JSON line (name, shader-f16)
 *
 * Each step writes DIR/steps/STEP.json (rewritten atomically after every row, so a step cut at its budget
 * keeps the rows it finished). CAPSNET_GPU_CHECK_TINY=1 shrinks models, batches and runs for a software
 * adapter (SwiftShader) on a machine without a GPU; the table says so.
 *
 * Sizes: the paper's CapsNet (28x28x1, 10 classes, 8.2M weights) with seeded random weights, exported in
 * process (fp32, and fp16 weights with fp16 compute), and the bundle's small-preset checkpoint trained on the
 * embedded MNIST digits with its two exports (data/small/). Inputs are the bundle's real test digits.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type CapsNetConfig, countFlops, presetConfig } from '@capsnet-onnx/core';
import { writeFileAtomic } from '../../packages/capsnet/src/files/atomic.ts';
import { FP16_COMPUTE_TOLERANCES, TOLERANCES, type Tolerances } from '../../packages/capsnet/src/parity/matrix.ts';
import { readEnv } from '../env.ts';

export const TINY = readEnv('CAPSNET_GPU_CHECK_TINY') === '1';

/** A row of the table. status: pass/fail (parity), ok (a timing), skip (with its reason), error, cut. */
export interface Row {
  row: string;
  status: 'pass' | 'fail' | 'ok' | 'skip' | 'error' | 'cut';
  lengths?: number;
  capsules?: number;
  reconstruction?: number;
  argmax?: string;
  ms?: number;
  batch?: number;
  imagesPerS?: number;
  gflops?: number;
  note?: string;
}

export interface StepFile {
  step: string;
  title: string;
  rows: Row[];
  info: Record<string, unknown>;
  done: boolean;
}

/** The tiny stand-in for the paper's CapsNet on a software adapter: same 28x28x1 digits, few channels. */
export function tinyConfig(): CapsNetConfig {
  return presetConfig('small', undefined, { conv1Filters: 8, primaryMaps: 4, primaryDim: 4, digitDim: 8, decoderHidden: [32, 64] });
}

/** The "paper-size" model of steps a to d: the paper's, or the tiny stand-in under CAPSNET_GPU_CHECK_TINY=1. */
export function checkConfig(): CapsNetConfig {
  return TINY ? tinyConfig() : presetConfig('paper');
}

const PAPER_NAME = TINY ? 'tiny' : 'paper';
/** Batches of the training-step rows (b, c) and of the inference rows (a, d; c's forward runs the last). */
const STEP_BATCHES = TINY ? [2] : [32, 128];
const INFER_BATCHES = TINY ? [1, 4] : [1, 64, 256];
const INFER_TOP = INFER_BATCHES[INFER_BATCHES.length - 1]!;

class Step {
  readonly file: StepFile;
  private readonly path: string;
  private readonly started = performance.now();
  constructor(
    out: string,
    step: string,
    title: string,
    private readonly budgetS: number,
  ) {
    mkdirSync(join(out, 'steps'), { recursive: true });
    this.path = join(out, 'steps', `${step}.json`);
    this.file = { step, title, rows: [], info: { tiny: TINY }, done: false };
    this.flush();
  }
  add(row: Row): void {
    this.file.rows.push(row);
    const nums = [row.lengths, row.capsules, row.reconstruction].map((x) => (x == null ? '-' : x.toExponential(1)));
    console.log(
      `${row.status.padEnd(5)} ${row.row}: ${row.argmax ? `${nums.join(' ')} argmax ${row.argmax} ` : ''}` +
        `${row.ms != null ? `${row.ms.toFixed(2)} ms ` : ''}${row.imagesPerS != null ? `${row.imagesPerS.toFixed(1)} img/s ` : ''}${row.note ?? ''}`,
    );
    this.flush();
  }
  info(key: string, value: unknown): void {
    this.file.info[key] = value;
    this.flush();
  }
  /** Seconds left of this step's budget. */
  left(): number {
    return this.budgetS - (performance.now() - this.started) / 1000;
  }
  finish(): void {
    this.file.done = true;
    this.flush();
  }
  private flush(): void {
    writeFileAtomic(this.path, `${JSON.stringify(this.file, null, 2)}\n`);
  }
}

function errorLine(e: unknown): string {
  return (
    (e instanceof Error ? e.message : String(e))
      .split('\n')
      .find((l) => l.trim())
      ?.trim()
      .slice(0, 300) ?? String(e)
  );
}

// ------------------------------------------------------------------------------------------------- data

export interface Digits {
  images: Float32Array;
  labels: Int32Array;
  count: number;
}

/** The bundle's digits (data/digits-SPLIT.u16: pixels x 1000 as uint16; .labels: one byte each). */
export function readDigits(dataDir: string, split: 'test' | 'train'): Digits {
  const raw = readFileSync(join(dataDir, `digits-${split}.u16`));
  const u16 = new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
  const images = Float32Array.from(u16, (v) => v / 1000);
  const labels = Int32Array.from(readFileSync(join(dataDir, `digits-${split}.labels`)));
  return { images, labels, count: labels.length };
}

/** `n` images (repeating the set when it has fewer) as one NHWC batch. */
function batchOf(d: Digits, n: number, pixels: number): Float32Array {
  const out = new Float32Array(n * pixels);
  for (let i = 0; i < n; i++) out.set(d.images.subarray((i % d.count) * pixels, ((i % d.count) + 1) * pixels), i * pixels);
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// ---------------------------------------------------------------------------------------------- parity

interface Outputs {
  lengths: Float32Array;
  capsules: Float32Array;
  reconstruction: Float32Array;
}

/**
 * Largest |diff| of each output and the argmax agreement of `got` against `ref` over `n` images of `k` classes.
 * An argmax may differ only where the reference's two longest capsules are within tol.tieGap; the
 * reconstruction (masked by the argmax) is compared on the images whose argmax agrees.
 */
export function compareOutputs(ref: Outputs, got: Outputs, n: number, k: number, tol: Tolerances) {
  const per = { capsules: ref.capsules.length / n, reconstruction: ref.reconstruction.length / n };
  const argmax = (l: Float32Array, i: number) => {
    let best = 0;
    for (let j = 1; j < k; j++) if (l[i * k + j]! > l[i * k + best]!) best = j;
    return best;
  };
  let agree = 0;
  const mismatches: number[] = [];
  const same: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const a = argmax(ref.lengths, i),
      b = argmax(got.lengths, i);
    same.push(a === b);
    if (a === b) {
      agree++;
      continue;
    }
    const sorted = Array.from(ref.lengths.subarray(i * k, (i + 1) * k)).sort((x, y) => y - x);
    if (sorted[0]! - sorted[1]! >= tol.tieGap) mismatches.push(i);
  }
  const maxAbs = (a: Float32Array, b: Float32Array, width: number, only?: boolean[]) => {
    let worst = 0;
    for (let i = 0; i < n; i++) {
      if (only && !only[i]) continue;
      for (let j = i * width; j < (i + 1) * width; j++) {
        const d = Math.abs(a[j]! - b[j]!);
        if (Number.isNaN(d)) return NaN;
        if (d > worst) worst = d;
      }
    }
    return worst;
  };
  const lengths = maxAbs(ref.lengths, got.lengths, k);
  const capsules = maxAbs(ref.capsules, got.capsules, per.capsules);
  const reconstruction = maxAbs(ref.reconstruction, got.reconstruction, per.reconstruction, same);
  const failed: string[] = [];
  if (!(lengths <= tol.lengths)) failed.push(`lengths ${lengths.toExponential(1)} > ${tol.lengths}`);
  if (!(capsules <= tol.capsules)) failed.push(`capsules ${capsules.toExponential(1)} > ${tol.capsules}`);
  if (!(reconstruction <= tol.reconstruction)) failed.push(`reconstruction ${reconstruction.toExponential(1)} > ${tol.reconstruction}`);
  if (mismatches.length) failed.push(`argmax differs beyond a near-tie on image(s) ${mismatches.join(', ')}`);
  return { lengths, capsules, reconstruction, argmax: `${agree}/${n}`, failed };
}

// ------------------------------------------------------------------------------------------ ORT (a, d)

type Ort = typeof import('onnxruntime-node');
type Session = Awaited<ReturnType<Ort['InferenceSession']['create']>>;
const FETCHES = ['lengths', 'capsules', 'reconstruction'];

async function runSession(ort: Ort, session: Session, images: Float32Array, n: number, c: CapsNetConfig): Promise<Outputs> {
  const feeds = { images: new ort.Tensor('float32', images, [n, c.inputHeight, c.inputWidth, c.inputChannels]) };
  const out = await session.run(feeds, FETCHES);
  return { lengths: out.lengths!.data as Float32Array, capsules: out.capsules!.data as Float32Array, reconstruction: out.reconstruction!.data as Float32Array };
}

interface OrtModel {
  label: string;
  path: string;
  config: CapsNetConfig;
  fp16: boolean;
  /** Time it at these batches (parity only when empty). */
  batches: number[];
}

/** The paper-size (or tiny) model exported in process: fp32, and fp16 weights with fp16 compute. */
async function exportCheckModels(workDir: string): Promise<{ fp32: string; fp16: string; config: CapsNetConfig }> {
  const { buildCapsNetModels } = await import('../../packages/capsnet/src/export/exporter.ts');
  const { encodeModel } = await import('../../packages/capsnet/src/export/onnx-schema.ts');
  const { paramShapes, Rng } = await import('@capsnet-onnx/core');
  const config = checkConfig();
  // Glorot-like scales so that the capsule lengths spread out (an untrained model: its argmax are near-ties).
  const rng = new Rng(21);
  const weights: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(paramShapes(config))) {
    const size = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length > 1 ? size / shape[shape.length - 1]! : 1;
    const scale = name.endsWith('bias') ? 0.01 : name === 'digit/W' ? 0.5 : Math.sqrt(3 / fanIn);
    weights[name] = Float32Array.from({ length: size }, () => (2 * rng.next() - 1) * scale);
  }
  mkdirSync(workDir, { recursive: true });
  const paths = { fp32: join(workDir, `${PAPER_NAME}.onnx`), fp16: join(workDir, `${PAPER_NAME}.fp16.onnx`) };
  for (const precision of ['fp32', 'fp16'] as const) {
    const built = buildCapsNetModels(config, weights, {
      classLabels: Array.from({ length: config.numClasses }, (_, i) => String(i)),
      dataset: 'mnist-sample',
      testAccuracy: null,
      checkpointSha256: '0'.repeat(64),
      precision,
    });
    writeFileSync(paths[precision], encodeModel(built.model));
    writeFileSync(paths[precision].replace(/\.onnx$/, '.decoder.onnx'), built.decoderBytes);
  }
  return { ...paths, config };
}

/** The bundled small-preset checkpoint's config (data/small/manifest.json). */
function smallManifest(dataDir: string): { config: CapsNetConfig; testAccuracy: number; trainedOn: string } {
  return JSON.parse(readFileSync(join(dataDir, 'small', 'manifest.json'), 'utf8'));
}

/**
 * Parity of `ep` against ORT cpu on the same inputs (fp32 tolerances, or the fp16-compute ones for an fp16
 * file), then the time per run at each of `model.batches` (median after a warm-up; ms, img/s, GFLOP/s of
 * core/flops.ts's forward count).
 */
async function epRows(step: Step, ort: Ort, ep: 'webgpu' | 'cuda', model: OrtModel, digits: Digits, prefix: string): Promise<void> {
  const c = model.config;
  const pixels = c.inputHeight * c.inputWidth * c.inputChannels;
  const n = TINY ? 8 : 32;
  const images = batchOf(digits, n, pixels);
  const tol = model.fp16 ? FP16_COMPUTE_TOLERANCES : TOLERANCES;
  const label = `${prefix} ${model.label}`;
  let gpu: Session;
  let got: Outputs;
  try {
    gpu = await ort.InferenceSession.create(model.path, { executionProviders: [ep] });
    got = await runSession(ort, gpu, images, n, c);
  } catch (e) {
    const why = errorLine(e);
    if (model.fp16 && /requires f16|shader-f16|f16 but the device/i.test(why)) {
      step.add({ row: `${label} parity`, status: 'skip', note: 'the adapter lacks shader-f16, so fp16 compute cannot run on it (ORT: a shader requires f16)' });
    } else {
      step.add({ row: `${label} parity`, status: 'error', note: why });
    }
    return;
  }
  const cpu = await ort.InferenceSession.create(model.path, { executionProviders: ['cpu'] });
  const ref = await runSession(ort, cpu, images, n, c);
  await cpu.release();
  const r = compareOutputs(ref, got, n, c.numClasses, tol);
  step.add({
    row: `${label} parity`,
    status: r.failed.length ? 'fail' : 'pass',
    lengths: r.lengths,
    capsules: r.capsules,
    reconstruction: r.reconstruction,
    argmax: r.argmax,
    batch: n,
    note: r.failed.length ? r.failed.join('; ') : `vs ORT cpu on ${n} test digits (${model.fp16 ? 'fp16-compute' : 'fp32'} tolerances: lengths ${tol.lengths})`,
  });
  const flops = countFlops(c).forward.total;
  for (const batch of model.batches) {
    if (step.left() < 10) {
      step.add({ row: `${label} b${batch}`, status: 'skip', note: `not timed: ${step.left().toFixed(0)} s of the step's budget left` });
      continue;
    }
    try {
      const x = batchOf(digits, batch, pixels);
      await runSession(ort, gpu, x, batch, c); // warm-up: shaders, buffers
      const times: number[] = [];
      const until = performance.now() + (TINY ? 0 : Math.min(8000, (step.left() - 8) * 300));
      while (times.length < 3 || (times.length < 20 && performance.now() < until)) {
        const t0 = performance.now();
        await runSession(ort, gpu, x, batch, c);
        times.push(performance.now() - t0);
        if (times.length >= 3 && performance.now() > until) break;
      }
      const ms = median(times);
      step.add({
        row: `${label} b${batch}`,
        status: 'ok',
        ms,
        batch,
        imagesPerS: (batch / ms) * 1000,
        gflops: (flops * batch) / ms / 1e6,
        note: `median of ${times.length} runs (host copies included)`,
      });
    } catch (e) {
      step.add({ row: `${label} b${batch}`, status: 'error', note: errorLine(e) });
    }
  }
  await gpu.release();
}

/** Dawn's adapter (dawn.node, run in a child so that it never shares a process with ORT's own Dawn). */
function adapterInfo(): { name?: string; shaderF16?: boolean; error?: string } {
  const child = spawnSync(process.execPath, [process.argv[1]!, 'adapter'], { encoding: 'utf8', timeout: 30_000 });
  const line = (child.stdout ?? '').split('\n').find((l) => l.startsWith('{'));
  if (!line) return { error: `adapter probe gave no answer (exit ${child.status ?? child.signal}): ${(child.stderr ?? '').trim().split('\n').pop() ?? ''}` };
  return JSON.parse(line);
}

async function stepInfer(out: string, dataDir: string, budget: number): Promise<void> {
  const step = new Step(out, 'a', 'a. inference: onnxruntime-node WebGPU EP (Dawn over Vulkan)', budget);
  const adapter = adapterInfo();
  step.info('adapter', adapter);
  const ort = await import('onnxruntime-node');
  const digits = readDigits(dataDir, 'test');
  const paper = await exportCheckModels(join(out, 'work'));
  const batches = INFER_BATCHES;
  const small = smallManifest(dataDir);
  const models: OrtModel[] = [
    { label: `${PAPER_NAME} fp32`, path: paper.fp32, config: paper.config, fp16: false, batches },
    { label: `${PAPER_NAME} fp16`, path: paper.fp16, config: paper.config, fp16: true, batches },
    { label: 'small (trained) fp32', path: join(dataDir, 'small', 'model.onnx'), config: small.config, fp16: false, batches: [] },
    { label: 'small (trained) fp16', path: join(dataDir, 'small', 'model.fp16.onnx'), config: small.config, fp16: true, batches: [] },
  ];
  for (const m of models) await epRows(step, ort, 'webgpu', m, digits, 'a ort-webgpu');
  step.finish();
}

/** Where onnxruntime-node loads its providers from: the directory of its binding. */
function ortBinDir(): string {
  return dirname(resolve(dirname(process.argv[1]!), 'node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node'));
}

async function stepCudaEp(out: string, dataDir: string, budget: number): Promise<void> {
  const step = new Step(out, 'd', 'd. inference: onnxruntime-node CUDA EP', budget);
  const lib = 'libonnxruntime_providers_cuda.so';
  const bin = ortBinDir();
  const extra = readEnv('CAPSNET_ORT_CUDA_DIR');
  const dirs = [bin, ...(extra ? [extra] : [])];
  const found = dirs.map((d) => join(d, lib)).find((p) => existsSync(p));
  if (!found) {
    step.add({
      row: 'd ort-cuda',
      status: 'skip',
      note:
        `${lib} not found in ${dirs.join(', ')}: onnxruntime-node's npm package has no CUDA provider ` +
        '(NuGet Microsoft.ML.OnnxRuntime.Gpu.Linux of the same version has it); put it with libonnxruntime_providers_shared.so in a folder ' +
        'named by CAPSNET_ORT_CUDA_DIR',
    });
    step.finish();
    return;
  }
  // ORT loads its providers from beside libonnxruntime.so.1.
  if (dirname(found) !== bin) {
    for (const f of readdirSync(dirname(found)).filter((f) => f.startsWith('libonnxruntime_providers_'))) {
      if (!existsSync(join(bin, f))) symlinkSync(join(dirname(found), f), join(bin, f));
    }
  }
  const ldd = spawnSync('ldd', [join(bin, lib)], { encoding: 'utf8' });
  const missing = (ldd.stdout ?? '')
    .split('\n')
    .filter((l) => /not found/.test(l))
    .map((l) => l.trim().split(/\s/)[0]);
  if (missing.length) {
    step.add({
      row: 'd ort-cuda',
      status: 'skip',
      note: `${found} is here but its libraries are not: ${missing.join(', ')} (CUDA 12 and cuDNN 9; add their folders to LD_LIBRARY_PATH)`,
    });
    step.finish();
    return;
  }
  const ort = await import('onnxruntime-node');
  const digits = readDigits(dataDir, 'test');
  const paper = await exportCheckModels(join(out, 'work-cuda'));
  const batches = INFER_BATCHES;
  for (const m of [
    { label: `${PAPER_NAME} fp32`, path: paper.fp32, config: paper.config, fp16: false, batches },
    { label: `${PAPER_NAME} fp16`, path: paper.fp16, config: paper.config, fp16: true, batches },
  ])
    await epRows(step, ort, 'cuda', m, digits, 'd ort-cuda');
  step.finish();
}

// ------------------------------------------------------------------------------------------- tfjs (b)

async function stepTrain(out: string, dataDir: string, budget: number): Promise<void> {
  const step = new Step(out, 'b', 'b. training: tfjs-backend-webgpu in Node through Dawn', budget);
  const { initBackend, releaseWebgpu } = await import('../../packages/capsnet/src/train/backends/backend.ts');
  const model = await import('../../packages/capsnet/src/model/capsnet.ts');
  const loop = await import('../../packages/capsnet/src/train/loop.ts');
  const layers = await import('../../packages/capsnet/src/model/layers.ts');
  const { loadCheckpoint } = await import('../../packages/capsnet/src/files/checkpoint.ts');
  let backend: Awaited<ReturnType<typeof initBackend>>;
  try {
    backend = await initBackend('webgpu', () => {});
  } catch (e) {
    step.add({ row: 'b tfjs-webgpu', status: 'error', note: errorLine(e) });
    step.finish();
    return;
  }
  const tf = backend.tf;
  step.info('backend', backend.detail);
  const train = readDigits(dataDir, 'train');
  const test = readDigits(dataDir, 'test');

  // 1. The bundled checkpoint's forward on tfjs-webgpu against its fp32 export on ORT cpu (computed when the
  //    bundle was built, data/small/reference.json): the training backend computes the same network.
  try {
    const ckpt = loadCheckpoint(join(dataDir, 'small'));
    const ref = JSON.parse(readFileSync(join(dataDir, 'small', 'reference.json'), 'utf8')) as {
      count: number;
      lengths: number[];
      capsules: number[];
      reconstruction: number[];
    };
    const c = ckpt.config;
    const { paramShapes } = await import('@capsnet-onnx/core');
    const params = layers.variablesFromWeights(paramShapes(c), ckpt.weights);
    const pixels = c.inputHeight * c.inputWidth * c.inputChannels;
    const x = tf.tensor4d(test.images.slice(0, ref.count * pixels), [ref.count, c.inputHeight, c.inputWidth, c.inputChannels]);
    const f = model.forward(params, x, c);
    const got = {
      lengths: (await f.lengths.data()) as Float32Array,
      capsules: (await f.capsules.data()) as Float32Array,
      reconstruction: (await f.reconstruction.data()) as Float32Array,
    };
    const r = compareOutputs(
      { lengths: Float32Array.from(ref.lengths), capsules: Float32Array.from(ref.capsules), reconstruction: Float32Array.from(ref.reconstruction) },
      got,
      ref.count,
      c.numClasses,
      TOLERANCES,
    );
    step.add({
      row: 'b tfjs-webgpu forward (small, trained)',
      status: r.failed.length ? 'fail' : 'pass',
      lengths: r.lengths,
      capsules: r.capsules,
      reconstruction: r.reconstruction,
      argmax: r.argmax,
      batch: ref.count,
      note: r.failed.length ? r.failed.join('; ') : `vs its fp32 export on ORT cpu (fp32 tolerances), ${ref.count} test digits`,
    });
    tf.dispose([x, f.lengths, f.capsules, f.reconstruction, f.coupling, ...Object.values(params)]);
  } catch (e) {
    step.add({ row: 'b tfjs-webgpu forward (small, trained)', status: 'error', note: errorLine(e) });
  }

  // 2. A paper-size step (forward + backward + Adam) at two batches: median of 5 after a warm-up.
  const config = checkConfig();
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  const stepFlops = countFlops(config).trainStep;
  for (const batch of STEP_BATCHES) {
    const row = `b tfjs-webgpu step ${PAPER_NAME} b${batch}`;
    if (step.left() < 20) {
      step.add({ row, status: 'skip', note: `not timed: ${step.left().toFixed(0)} s of the step's budget left` });
      continue;
    }
    try {
      const params = model.initParams(config, 1);
      const optimizer = loop.adamFor(config);
      const x = tf.tensor4d(batchOf(train, batch, pixels), [batch, config.inputHeight, config.inputWidth, config.inputChannels]);
      const y = loop.oneHot(
        Int32Array.from({ length: batch }, (_, i) => train.labels[i % train.count]!),
        config.numClasses,
      );
      const once = () => loop.trainStep(optimizer, params, () => model.trainingLosses(params, x, y, config));
      await once();
      const times: number[] = [];
      const runs = TINY ? 1 : 5;
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        await once();
        times.push(performance.now() - t0);
      }
      const ms = median(times);
      step.add({
        row,
        status: 'ok',
        ms,
        batch,
        imagesPerS: (batch / ms) * 1000,
        gflops: (stepFlops * batch) / ms / 1e6,
        note: `median of ${runs} steps after a warm-up (forward + backward + Adam)`,
      });
      optimizer.dispose();
      tf.dispose([x, y, ...Object.values(params)]);
    } catch (e) {
      step.add({ row, status: 'error', note: errorLine(e) });
    }
  }

  // 3. A short real run: the small preset (tiny: the tiny model) for a fixed number of steps on the bundle's
  //    training digits, then its accuracy on the test digits.
  {
    const c = TINY ? tinyConfig() : presetConfig('small');
    // Tiny: the step rows' batch again, so that a software adapter compiles no new shaders.
    const batch = TINY ? STEP_BATCHES[0]! : 128;
    const steps = TINY ? 2 : 300;
    const testCount = TINY ? 8 : test.count;
    const row = `b tfjs-webgpu train ${TINY ? 'tiny' : 'small'} (${steps} steps)`;
    try {
      const params = model.initParams(c, 1);
      const px = c.inputHeight * c.inputWidth * c.inputChannels;
      const next = loop.epochBatches(train.images, train.labels, train.count, px, batch, 1);
      const optimizer = loop.adamFor(c);
      const t0 = performance.now();
      let done = 0;
      let loss = NaN;
      // Stop early (and say so) when the step's budget runs low, leaving time for the evaluation.
      const reserve = TINY ? 30 : 25;
      for (; done < steps && step.left() > reserve; done++) {
        const b = next(done);
        const x = tf.tensor4d(b.images, [b.count, c.inputHeight, c.inputWidth, c.inputChannels]);
        const y = loop.oneHot(b.labels, c.numClasses);
        loss = (await loop.trainStep(optimizer, params, () => model.trainingLosses(params, x, y, c)))!.total!;
        tf.dispose([x, y]);
      }
      const seconds = (performance.now() - t0) / 1000;
      optimizer.dispose();
      // Class scores are the capsule lengths: the decoder is not needed (nor, on a software adapter, compiled again).
      const scores = await loop.scoresInBatches(
        (x) => layers.capsuleLengths(model.encode(params, x, c).capsules, c.squashEpsilon) as import('@tensorflow/tfjs-core').Tensor2D,
        c,
        test.images,
        testCount,
        TINY ? batch : 250,
      );
      const accuracy = loop.accuracyOf(scores, test.labels.subarray(0, testCount), c.numClasses);
      step.add({
        row,
        status: done === steps ? 'ok' : 'cut',
        ms: (seconds * 1000) / Math.max(done, 1),
        batch,
        imagesPerS: (done * batch) / seconds,
        gflops: (countFlops(c).trainStep * done * batch) / seconds / 1e9,
        note:
          `${done}/${steps} steps on ${train.count} training digits in ${seconds.toFixed(1)} s (final loss ${loss.toFixed(4)}); ` +
          `test accuracy ${(100 * accuracy).toFixed(2)}% on ${testCount} test digits${done === steps ? '' : '; stopped early: the step budget ran low'}`,
      });
      step.info('trainAccuracy', accuracy);
      tf.dispose(Object.values(params));
    } catch (e) {
      step.add({ row, status: 'error', note: errorLine(e) });
    }
  }
  step.finish();
  releaseWebgpu();
}

// ---------------------------------------------------------------------------------------- PyTorch (c)

interface TorchLine {
  torch: string;
  step_s: number[];
  forward_s: number[];
  device: string;
}

function stepTorch(out: string, script: string, budget: number): void {
  const step = new Step(out, 'c', "c. anchor: the same CapsNet in PyTorch on CUDA (the machine's python3)", budget);
  const python = readEnv('CAPSNET_PYTHON') ?? 'python3';
  const probe = spawnSync(
    python,
    ['-c', 'import json, torch; print(json.dumps({"torch": torch.__version__, "cuda": torch.cuda.is_available(), "built": torch.version.cuda}))'],
    { encoding: 'utf8', timeout: 60_000 },
  );
  const skip = (note: string) => {
    for (const row of [...STEP_BATCHES.map((b) => `step b${b}`), `forward b${INFER_TOP}`])
      step.add({ row: `c pytorch-cuda ${PAPER_NAME} ${row}`, status: 'skip', note });
    step.finish();
  };
  if (probe.error) return skip(`no ${python} to run PyTorch (${errorLine(probe.error)})`);
  const line = (probe.stdout ?? '').split('\n').find((l) => l.startsWith('{'));
  if (probe.status !== 0 || !line) {
    return skip(`${python} cannot import torch (${(probe.stderr ?? '').trim().split('\n').pop() ?? `exit ${probe.status}`})`);
  }
  const info = JSON.parse(line) as { torch: string; cuda: boolean; built: string | null };
  step.info('torch', info);
  if (!info.cuda) return skip(`torch ${info.torch} (CUDA ${info.built ?? 'none'}) sees no CUDA device`);
  const config = checkConfig();
  const flops = countFlops(config);
  for (const [batch, kind] of [...STEP_BATCHES.map((b) => [b, 'step'] as const), [INFER_TOP, 'forward'] as const]) {
    const row = `c pytorch-cuda ${PAPER_NAME} ${kind} b${batch}`;
    const left = step.left() - 5;
    if (left < 10) {
      step.add({ row, status: 'skip', note: `not run: ${step.left().toFixed(0)} s of the step's budget left` });
      continue;
    }
    const run = spawnSync(python, [script, JSON.stringify(config), String(batch), '5', '4', '--device', 'cuda'], { encoding: 'utf8', timeout: left * 1000 });
    const result = (run.stdout ?? '').split('\n').find((l) => l.startsWith('{'));
    if (run.status !== 0 || !result) {
      step.add({
        row,
        status: 'error',
        note: `bench_train_torch.py ${run.error ? errorLine(run.error) : `exit ${run.status}`}: ${(run.stderr ?? '').trim().split('\n').pop() ?? ''}`,
      });
      continue;
    }
    const r = JSON.parse(result) as TorchLine;
    const s = median(kind === 'step' ? r.step_s : r.forward_s);
    const f = kind === 'step' ? flops.trainStep : flops.forward.total;
    step.add({
      row,
      status: 'ok',
      ms: s * 1000,
      batch,
      imagesPerS: batch / s,
      gflops: (f * batch) / s / 1e9,
      note: `torch ${r.torch} on ${r.device}, median of 5 after a warm-up${kind === 'forward' ? ' (no_grad forward, decoder masked by the label)' : ''}`,
    });
  }
  step.finish();
}

// ------------------------------------------------------------------------------------------- table (e)

const STEPS: Array<[string, string]> = [
  ['a', 'a. inference on ORT WebGPU'],
  ['b', 'b. training on tfjs-webgpu'],
  ['c', 'c. PyTorch CUDA'],
  ['d', 'd. ORT CUDA EP'],
];

/** run.sh's record of a step's process: exit code, seconds, budget. */
function statusOf(out: string, step: string): { rc: number; seconds: number; budget: number } | null {
  try {
    const text = readFileSync(join(out, 'steps', `${step}.status`), 'utf8');
    const get = (k: string) => Number(new RegExp(`${k}=(\\d+)`).exec(text)?.[1]);
    return { rc: get('rc'), seconds: get('seconds'), budget: get('budget') };
  } catch {
    return null;
  }
}

function logTail(out: string, step: string): string {
  try {
    const lines = readFileSync(join(out, 'steps', `${step}.log`), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    return lines.slice(-2).join(' | ').slice(0, 300);
  } catch {
    return 'no log';
  }
}

export interface Summary {
  tiny: boolean;
  adapter: unknown;
  env: Record<string, string>;
  steps: Array<{ step: string; title: string; process: ReturnType<typeof statusOf>; done: boolean; info: Record<string, unknown> }>;
  rows: Row[];
  ratios: Row[];
  ok: boolean;
  wallSeconds: number | null;
}

/** Reads OUT/steps, adds the rows of steps that were cut or failed, and the ratios (e). Never throws on bad files. */
export function summarize(out: string, wallSeconds: number | null = null): Summary {
  const rows: Row[] = [];
  const steps: Summary['steps'] = [];
  let adapter: unknown = null;
  for (const [name, title] of STEPS) {
    let file: StepFile | null = null;
    try {
      file = JSON.parse(readFileSync(join(out, 'steps', `${name}.json`), 'utf8')) as StepFile;
    } catch {
      /* not written */
    }
    const proc = statusOf(out, name);
    steps.push({ step: name, title: file?.title ?? title, process: proc, done: file?.done ?? false, info: file?.info ?? {} });
    if (file?.info.adapter) adapter = file.info.adapter;
    rows.push(...(file?.rows ?? []));
    if (!proc) {
      if (!file?.done) rows.push({ row: `${name} (${title})`, status: 'error', note: 'did not run (no status from run.sh)' });
    } else if (proc.rc === 124 || proc.rc === 137) {
      rows.push({
        row: `${name} (${title})`,
        status: 'cut',
        note: `cut at its budget of ${proc.budget} s${file?.rows.length ? '; the rows above are what it finished' : ''}`,
      });
    } else if (proc.rc === 125) {
      rows.push({ row: `${name} (${title})`, status: 'skip', note: 'not started: the 8-minute budget was spent' });
    } else if (proc.rc !== 0 || !file?.done) {
      rows.push({ row: `${name} (${title})`, status: 'error', note: `exit ${proc.rc}: ${logTail(out, name)}` });
    }
  }
  const find = (re: RegExp) => rows.find((r) => re.test(r.row) && r.status === 'ok');
  const ratios: Row[] = [];
  const ratio = (label: string, num: Row | undefined, den: Row | undefined, value: (n: Row, d: Row) => number, unit: string, needs: string) => {
    if (num && den) ratios.push({ row: `e ${label}`, status: 'ok', note: `${value(num, den).toFixed(2)} (${unit})` });
    else ratios.push({ row: `e ${label}`, status: 'skip', note: `needs ${needs}` });
  };
  for (const b of STEP_BATCHES) {
    ratio(
      `tfjs-webgpu step / pytorch-cuda step b${b}`,
      find(new RegExp(`^b tfjs-webgpu step \\S+ b${b}$`)),
      find(new RegExp(`^c pytorch-cuda \\S+ step b${b}$`)),
      (n, d) => n.ms! / d.ms!,
      'time per step; above 1: tfjs-webgpu is slower',
      `rows "b tfjs-webgpu step b${b}" and "c pytorch-cuda step b${b}"`,
    );
  }
  ratio(
    `ort-webgpu img/s / pytorch-cuda img/s b${INFER_TOP}`,
    find(new RegExp(`^a ort-webgpu \\S+ fp32 b${INFER_TOP}$`)),
    find(new RegExp(`^c pytorch-cuda \\S+ forward b${INFER_TOP}$`)),
    (n, d) => n.imagesPerS! / d.imagesPerS!,
    'inference throughput; below 1: ORT WebGPU is slower',
    `rows "a ort-webgpu fp32 b${INFER_TOP}" and "c pytorch-cuda forward b${INFER_TOP}"`,
  );
  let env: Record<string, string> = {};
  try {
    env = JSON.parse(readFileSync(join(out, 'env.json'), 'utf8'));
  } catch {
    /* run.sh did not write it */
  }
  const ok = rows.every((r) => r.status !== 'fail' && r.status !== 'error' && r.status !== 'cut');
  return { tiny: TINY, adapter, env, steps, rows, ratios, ok, wallSeconds };
}

export function formatTable(s: Summary): string {
  const header = ['row', 'status', 'lengths', 'capsules', 'recon', 'argmax', 'ms', 'batch', 'img/s', 'GFLOP/s', 'note'];
  const e = (x: number | undefined) => (x == null ? '-' : Number.isNaN(x) ? 'NaN' : x === 0 ? '0' : x.toExponential(1));
  const f = (x: number | undefined, d: number) => (x == null || !Number.isFinite(x) ? '-' : x.toFixed(d));
  const cells = [...s.rows, ...s.ratios].map((r) => [
    r.row,
    r.status,
    e(r.lengths),
    e(r.capsules),
    e(r.reconstruction),
    r.argmax ?? '-',
    f(r.ms, 2),
    r.batch == null ? '-' : String(r.batch),
    f(r.imagesPerS, 1),
    f(r.gflops, 1),
    r.note ?? '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (i === header.length - 1 ? 0 : c[i]!.length))));
  const line = (c: string[]) => c.map((x, i) => (i === c.length - 1 ? x : x.padEnd(widths[i]!))).join('  ');
  const a = s.adapter as { name?: string; shaderF16?: boolean; error?: string } | null;
  const head = [
    `GPU check${s.tiny ? ' (CAPSNET_GPU_CHECK_TINY=1: tiny sizes)' : ''}: adapter ${a?.name ?? `unknown (${a?.error ?? 'step a did not probe it'})`}` +
      `${a?.shaderF16 != null ? `, shader-f16 ${a.shaderF16 ? 'yes' : 'no'}` : ''}`,
    `Vulkan: ICD ${s.env.icd ?? '?'}; loader ${s.env.loader ?? '?'}${s.env.gpu ? `; GPU ${s.env.gpu}` : ''}`,
    '',
  ];
  const tail = [
    '',
    'parity: vs ORT cpu on the same inputs (max |diff| of lengths, capsules, reconstruction; argmax agreement); ms: per run or step; ' +
      'GFLOP/s: core/flops.ts multiply-adds',
    `result: ${s.ok ? 'OK' : 'FAILED (a row is fail, error or cut)'}${s.wallSeconds != null ? `; wall ${s.wallSeconds} s` : ''}`,
  ];
  return [...head, line(header), line(widths.map((w, i) => '-'.repeat(i === widths.length - 1 ? 4 : w))), ...cells.map(line), ...tail].join('\n');
}

// ---------------------------------------------------------------------------------------------- main

async function probeAdapter(): Promise<void> {
  try {
    const webgpu = (await import('webgpu')) as unknown as {
      create: (o: string[]) => { requestAdapter(): Promise<{ info?: Record<string, string>; features: Set<string> } | null> };
    };
    const adapter = await webgpu.create([]).requestAdapter();
    if (!adapter) {
      console.log(JSON.stringify({ error: 'no WebGPU adapter (Dawn found no Vulkan device: check the ICD and the loader)' }));
    } else {
      const i = adapter.info ?? {};
      const name = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ') || 'unnamed adapter';
      console.log(JSON.stringify({ name, shaderF16: adapter.features.has('shader-f16') }));
    }
  } catch (e) {
    console.log(JSON.stringify({ error: errorLine(e) }));
  }
  process.exit(0);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      data: { type: 'string' },
      budget: { type: 'string' },
      script: { type: 'string' },
      wall: { type: 'string' },
    },
  });
  const cmd = positionals[0];
  if (cmd === 'adapter') return probeAdapter();
  const out = values.out;
  if (!out) throw new Error('--out DIR is required');
  const budget = Number(values.budget ?? 120);
  const data = values.data ?? '';
  switch (cmd) {
    case 'infer':
      await stepInfer(out, data, budget);
      break;
    case 'train':
      await stepTrain(out, data, budget);
      break;
    case 'torch':
      stepTorch(out, values.script ?? 'bench_train_torch.py', budget);
      break;
    case 'cuda-ep':
      await stepCudaEp(out, data, budget);
      break;
    case 'table': {
      const s = summarize(out, values.wall ? Number(values.wall) : null);
      console.log(formatTable(s));
      writeFileAtomic(join(out, 'summary.json'), `${JSON.stringify(s, null, 2)}\n`);
      return process.exit(s.ok ? 0 : 1);
    }
    default:
      throw new Error(`unknown step "${cmd}": use infer, train, torch, cuda-ep, table or adapter`);
  }
  process.exit(0);
}

if (process.argv[1] && /check\.(m?js|ts)$/.test(process.argv[1])) {
  main().catch((e) => {
    console.error(`gpu check: ${errorLine(e)}`);
    process.exit(1);
  });
}
