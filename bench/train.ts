/**
 * `npm run bench:train`: wall time of one training step (forward + backward + Adam) of the CapsNet on every
 * tfjs backend that loads here, next to the forward pass alone at the same batch. Prints a table and writes
 * bench-results/train.json (temp file + rename).
 *
 *   npm run bench:train                                   # paper-size model, batch 32, all backends
 *   npm run bench:train -- --backends wasm --steps 5      # one backend, more timed steps
 *   npm run bench:train -- --preset small --batch 64
 *   npm run bench:train -- --cpu-batch 1                  # also time the cpu backend's step (minutes)
 *   npm run bench:train -- --wasm-threads 1,2             # wasm rows at these thread counts (default: auto and 1)
 *   npm run bench:train -- --wait-idle 120                # shared machine: wait (<= 120 s) for idle CPUs before each timing
 *
 * Each backend runs in its own process. "forward" is the same forward the step runs (decoder masked by the
 * label, plus the losses, on weights it has not seen before, as after each Adam update), so step/forward compares
 * like with like. On wasm the script also times the three
 * convolution kernels (forward, filter gradient, input gradient) of conv1 and PrimaryCaps at the same batch.
 * GFLOP/s counts the multiply-adds of train/flops.ts (element-wise work left out).
 *
 * Reduced runs are stated in the table, never silent: the cpu backend's convolution gradients are scalar JS
 * loops (minutes per paper-size step even at batch 1), so by default it gets the forward pass at batch 1 only;
 * WebGPU on a software adapter (SwiftShader) gets batch 1 and a time limit.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { machineInfo, userPath, writeReport } from './report.ts';
import { type BackendName, wasmThreadsWanted } from '../packages/capsnet/src/train/backend.ts';
import { BACKEND_NAMES } from '../packages/capsnet/src/train/names.ts';
import { type CapsNetConfig, presetConfig, type PresetName, convKernelFlops, countFlops, derivedSizes } from '@capsnet-onnx/core';
import { forkWorker, webGpuWorkerEnv } from '../packages/capsnet/src/parity/fork.ts';
import { readEnv } from './env.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const ALL_BACKENDS: BackendName[] = [...BACKEND_NAMES];

interface Job {
  backend: BackendName;
  /** wasm only: XNNPACK threads (CAPSNET_WASM_THREADS in the worker); absent = backend.ts's default. */
  threads?: number;
  preset: PresetName;
  batch: number;
  /** Timed repetitions of the step and of the forward pass (after one untimed warm-up of each). */
  steps: number;
  /** Skip the step (forward only), with this reason in the report. */
  stepSkipReason?: string;
  kernels: boolean;
  /** Before each timed repetition, wait up to this long for idle CPUs (0: don't). */
  waitIdleS: number;
  /** wasm: use the fused capsule kernels (train/wasm-capsule-kernels.ts); false times the composite tfjs ops. */
  fused: boolean;
  /** Time the step's parts (convolutions, u_hat, routing, decoder, losses, optimizer) too. */
  parts: boolean;
}

/** One part of the training step, timed alone at the step's shapes (best of 3 after a warm-up). */
interface PartTiming {
  part: string;
  forward_s: number | null;
  backward_s: number | null;
  total_s: number;
  /** CPU seconds (user + system, all threads) of the forward and of forward + backward. */
  forward_cpu_s: number | null;
  total_cpu_s: number;
}

interface KernelTiming {
  layer: string;
  kernel: 'forward' | 'filter gradient' | 'input gradient';
  seconds: number;
  gflops: number;
}

interface WorkerResult {
  backend: BackendName;
  detail: string;
  batch: number;
  stepSeconds: number[] | null;
  /** CPU time (user + system, all threads) of each timed step. */
  stepCpuSeconds: number[] | null;
  forwardSeconds: number[];
  kernels: KernelTiming[];
  parts: PartTiming[];
  /** Peak resident set of the worker process (MB), after all its runs. */
  peakRssMb: number;
  loss: number | null;
  leakedTensorsPerStep: number;
  /** Highest fraction of CPUs busy with other work seen just before a timed repetition (null: not checked). */
  worstBusy: number | null;
}

interface Row {
  backend: string;
  detail: string;
  batch: number | null;
  step_s: number | null;
  forward_s: number | null;
  step_over_forward: number | null;
  images_per_s: number | null;
  step_gflops_per_s: number | null;
  forward_gflops_per_s: number | null;
  /** Median CPU seconds (user + system, all threads) per step: less sensitive to other processes than wall time. */
  step_cpu_s: number | null;
  peak_rss_mb: number | null;
  note: string;
  /** Highest fraction of the CPUs busy with other work seen before a timed repetition (Linux only). */
  cpu_busy_by_others?: number | null;
  kernels?: KernelTiming[];
  parts?: PartTiming[];
  raw?: { step_s: number[] | null; forward_s: number[] };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// ------------------------------------------------------------------------------------------ worker side

/** Fraction of all CPUs busy over `ms` (Linux /proc/stat; null elsewhere). */
async function cpuBusy(ms: number): Promise<number | null> {
  const sample = (): [number, number] | null => {
    try {
      const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
      return [f[3]! + (f[4] ?? 0), f.reduce((a, b) => a + b, 0)];
    } catch {
      return null;
    }
  };
  const a = sample();
  await new Promise((r) => setTimeout(r, ms));
  const b = sample();
  if (a == null || b == null || b[1] === a[1]) return null;
  return 1 - (b[0] - a[0]) / (b[1] - a[1]);
}

/**
 * Waits (up to `limitS`) until under 10% of the CPUs are busy, so other processes on a shared machine do not
 * skew a timing. Returns the last busy fraction seen (null where /proc/stat is unreadable).
 */
async function waitForIdle(limitS: number, sampleMs = 1000): Promise<number | null> {
  if (limitS <= 0) return null;
  const end = Date.now() + limitS * 1000;
  let busy = await cpuBusy(sampleMs);
  while (busy != null && busy > 0.1 && Date.now() < end) busy = await cpuBusy(sampleMs);
  return busy;
}

function fmt(x: number | null, digits: number): string {
  return x == null || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

function seededUniform(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  return out;
}

async function timeKernels(config: CapsNetConfig, batch: number, gate: () => Promise<void>): Promise<KernelTiming[]> {
  const layers = [
    { layer: 'conv1', h: config.inputHeight, w: config.inputWidth, c: config.inputChannels, k: config.conv1Kernel, o: config.conv1Filters, s: 1 },
    {
      layer: 'primaryCaps',
      h: config.inputHeight - config.conv1Kernel + 1,
      w: config.inputWidth - config.conv1Kernel + 1,
      c: config.conv1Filters,
      k: config.primaryKernel,
      o: config.primaryMaps * config.primaryDim,
      s: config.primaryStride,
    },
  ];
  const out: KernelTiming[] = [];
  for (const L of layers) {
    const xShape: [number, number, number, number] = [batch, L.h, L.w, L.c];
    const fShape: [number, number, number, number] = [L.k, L.k, L.c, L.o];
    const x = tf.tensor4d(seededUniform(batch * L.h * L.w * L.c, 1), xShape);
    const f = tf.tensor4d(seededUniform(L.k * L.k * L.c * L.o, 2), fShape);
    const y = tf.conv2d(x, f, L.s, 'valid');
    const dy = tf.tensor4d(seededUniform(y.size, 3), y.shape);
    const attrs = { strides: L.s, pad: 'valid', dataFormat: 'NHWC' };
    const flops = convKernelFlops(batch, L.h, L.w, L.c, L.k, L.o, L.s);
    // Fresh copies of the operands for every run, as in training: XNNPACK caches packed weights per tensor id,
    // so re-running on the same tensors would leave the packing out of the timing.
    const runs: [KernelTiming['kernel'], [tf.Tensor, tf.Tensor], (a: tf.Tensor, b: tf.Tensor) => tf.Tensor, number][] = [
      ['forward', [x, f], (a, b) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, L.s, 'valid'), flops.forward],
      [
        'filter gradient',
        [x, dy],
        (a, b) => tf.engine().runKernel('Conv2DBackpropFilter', { x: a, dy: b }, { ...attrs, filterShape: fShape }) as tf.Tensor,
        flops.filterGrad,
      ],
      [
        'input gradient',
        [dy, f],
        (a, b) => tf.engine().runKernel('Conv2DBackpropInput', { dy: a, filter: b }, { ...attrs, inputShape: xShape }) as tf.Tensor,
        flops.inputGrad,
      ],
    ];
    for (const [kernel, operands, run, fl] of runs) {
      const times: number[] = [];
      for (let i = 0; i < 4; i++) {
        const [a, b] = operands.map((t) => tf.add(t, 0));
        await Promise.all([a!.data(), b!.data()]);
        if (i > 0) await gate();
        const t0 = performance.now();
        const r = run(a!, b!);
        await r.data();
        if (i > 0) times.push((performance.now() - t0) / 1000); // first run: warm-up
        tf.dispose([r, a!, b!]);
      }
      const seconds = Math.min(...times);
      out.push({ layer: L.layer, kernel, seconds, gflops: fl / seconds / 1e9 });
    }
    tf.dispose([x, f, y, dy]);
  }
  return out;
}

/**
 * Best of `runs` timings of `run` (after one warm-up), each on fresh operands from `prepare` (disposed after):
 * wall seconds and CPU seconds (user + system, all threads; what other processes on a shared machine inflate least).
 */
async function bestOf(
  runs: number,
  gate: () => Promise<void>,
  prepare: () => tf.Tensor[],
  run: (operands: tf.Tensor[]) => tf.Tensor[],
): Promise<{ wall: number; cpu: number }> {
  let wall = Infinity,
    cpu = Infinity;
  for (let i = 0; i <= runs; i++) {
    const operands = prepare();
    await Promise.all(operands.map((t) => t.data()));
    if (i > 0) await gate();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const outs = run(operands);
    await Promise.all(outs.map((t) => t.data()));
    if (i > 0) {
      wall = Math.min(wall, (performance.now() - t0) / 1000);
      const c = process.cpuUsage(c0);
      cpu = Math.min(cpu, (c.user + c.system) / 1e6);
    }
    tf.dispose([...outs, ...operands]);
  }
  return { wall, cpu };
}

/**
 * The step cut into its parts, each timed alone at the step's shapes: forward, then forward + backward (the
 * gradients the step needs: weights, and the input where an earlier part needs it), backward = the difference.
 * The parts follow train/model.ts: convolutions (conv1, PrimaryCaps), u_hat (with the primary squash),
 * routing, decoder (masked by the label), losses (margin + reconstruction), then Adam.
 */
async function timeParts(
  config: CapsNetConfig,
  params: Record<string, tf.Variable>,
  x: tf.Tensor4D,
  y: tf.Tensor2D,
  gate: () => Promise<void>,
): Promise<PartTiming[]> {
  const model = await import('../packages/capsnet/src/train/model.ts');
  const { Adam } = await import('../packages/capsnet/src/train/adam.ts');
  const { numPrimaryCaps } = derivedSizes(config);
  const batch = x.shape[0];
  // Inputs of each part: what the part before it produces in the step.
  const primaryConv = tf.tidy(() => model.convolutions(params, x, config));
  const uHat = tf.tidy(() =>
    model.predictionVectors(
      model.squash(tf.reshape(primaryConv, [batch, numPrimaryCaps, config.primaryDim]), config.squashEpsilon) as tf.Tensor3D,
      params['digit/W'] as tf.Tensor3D,
      config,
    ),
  );
  const capsules = tf.tidy(() => model.dynamicRouting(uHat, config.routingIterations, config.squashEpsilon).capsules);
  const reconstruction = tf.tidy(() => model.decode(params, model.maskCapsules(capsules, y), config));
  const decoderNames = Object.keys(params).filter((n) => n.startsWith('decoder/'));
  const convNames = ['conv1/kernel', 'conv1/bias', 'primary/kernel', 'primary/bias'];
  const fresh = (ts: tf.Tensor[]) => () => ts.map((t) => tf.add(t, 0));
  const asParams = (names: string[], ts: tf.Tensor[]) => Object.fromEntries(names.map((n, i) => [n, ts[i]!])) as unknown as Record<string, tf.Variable>;

  interface Part {
    part: string;
    inputs: tf.Tensor[];
    f: (ts: tf.Tensor[]) => tf.Tensor;
    wrt: number[];
  }
  const parts: Part[] = [
    { part: 'convolutions', inputs: convNames.map((n) => params[n]!), wrt: [0, 1, 2, 3], f: (ts) => model.convolutions(asParams(convNames, ts), x, config) },
    {
      part: 'u_hat',
      inputs: [primaryConv, params['digit/W']!],
      wrt: [0, 1],
      f: ([p, W]) =>
        model.predictionVectors(
          model.squash(tf.reshape(p!, [batch, numPrimaryCaps, config.primaryDim]), config.squashEpsilon) as tf.Tensor3D,
          W as tf.Tensor3D,
          config,
        ),
    },
    { part: 'routing', inputs: [uHat], wrt: [0], f: ([u]) => model.dynamicRouting(u as tf.Tensor4D, config.routingIterations, config.squashEpsilon).capsules },
    {
      part: 'decoder',
      inputs: [capsules, ...decoderNames.map((n) => params[n]!)],
      wrt: decoderNames.map((_, i) => i + 1).concat([0]),
      f: ([c, ...w]) => model.decode(asParams(decoderNames, w), model.maskCapsules(c as tf.Tensor3D, y), config),
    },
    {
      part: 'losses',
      inputs: [capsules, reconstruction],
      wrt: [0, 1],
      f: ([c, r]) =>
        tf.add(
          model.marginLoss(model.capsuleLengths(c!, config.squashEpsilon) as tf.Tensor2D, y, config),
          model.reconstructionLoss(r as tf.Tensor2D, x, config),
        ),
    },
  ];
  const out: PartTiming[] = [];
  for (const [index, p] of parts.entries()) {
    const forward = await bestOf(3, gate, fresh(p.inputs), (ts) => [p.f(ts)]);
    const probe = tf.tidy(() => p.f(p.inputs));
    const outShape = probe.shape;
    probe.dispose();
    // The gradient arriving from the next part (a scalar loss needs none).
    const dyValues =
      outShape.length === 0
        ? null
        : seededUniform(
            outShape.reduce((a, b) => a * b, 1),
            50 + index,
          );
    const total = await bestOf(
      3,
      gate,
      () => [...fresh(p.inputs)(), ...(dyValues ? [tf.tensor(dyValues, outShape)] : [])],
      (ops) =>
        tf.tidy(() => {
          const ts = ops.slice(0, p.inputs.length);
          const g = tf.grads((...wrt: tf.Tensor[]) => {
            const all = [...ts];
            p.wrt.forEach((k, i) => {
              all[k] = wrt[i]!;
            });
            return p.f(all);
          });
          return g(
            p.wrt.map((k) => ts[k]!),
            dyValues ? ops[p.inputs.length] : undefined,
          );
        }),
    );
    out.push({
      part: p.part,
      forward_s: forward.wall,
      backward_s: Math.max(0, total.wall - forward.wall),
      total_s: total.wall,
      forward_cpu_s: forward.cpu,
      total_cpu_s: total.cpu,
    });
  }
  // Adam over every weight, with its moments already created (as after the first step).
  const optimizer = new Adam({ learningRate: config.learningRate, decayRate: config.decayRate, decaySteps: config.decaySteps });
  const copies = Object.fromEntries(Object.entries(params).map(([n, v]) => [n, tf.variable(tf.add(v, 0), false)]));
  const names = Object.keys(copies);
  const grads = () => names.map((n, i) => tf.tensor(seededUniform(copies[n]!.size, 100 + i), copies[n]!.shape));
  const apply = (gs: tf.Tensor[]) => {
    optimizer.apply(copies, Object.fromEntries(names.map((n, i) => [n, gs[i]!])));
    return Object.values(copies)
      .map((v) => tf.add(v, 0))
      .slice(0, 1);
  };
  await bestOf(0, gate, grads, apply);
  const adam = await bestOf(3, gate, grads, apply);
  out.push({ part: 'optimizer (Adam)', forward_s: null, backward_s: null, total_s: adam.wall, forward_cpu_s: null, total_cpu_s: adam.cpu });
  optimizer.dispose();
  tf.dispose([primaryConv, uHat, capsules, reconstruction, ...Object.values(copies)]);
  return out;
}

async function runWorker(job: Job): Promise<WorkerResult> {
  const { initBackend } = await import('../packages/capsnet/src/train/backend.ts');
  const { initParams, trainingLosses } = await import('../packages/capsnet/src/train/model.ts');
  const { Adam } = await import('../packages/capsnet/src/train/adam.ts');
  const { setFusedKernels } = await import('../packages/capsnet/src/train/fused.ts');
  const b = await initBackend(job.backend);
  setFusedKernels(job.fused);
  const config = presetConfig(job.preset);
  const params = initParams(config, 1);
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  const x = tf.tensor4d(seededUniform(job.batch * pixels, 7), [job.batch, config.inputHeight, config.inputWidth, config.inputChannels]);
  const labels = Int32Array.from({ length: job.batch }, (_, i) => i % config.numClasses);
  const y = tf.cast(tf.oneHot(tf.tensor1d(labels, 'int32'), config.numClasses), 'float32') as tf.Tensor2D;
  const optimizer = new Adam({ learningRate: config.learningRate, decayRate: config.decayRate, decaySteps: config.decaySteps });
  const byVarName = new Map(Object.entries(params).map(([name, v]) => [v.name, name]));

  // The trainer's step (train/trainer.ts): loss and gradients of every weight, then Adam.
  const step = async (): Promise<number> => {
    const { value, grads } = tf.variableGrads(() => trainingLosses(params, x, y, config).total, Object.values(params));
    const named: Record<string, tf.Tensor> = {};
    for (const [varName, g] of Object.entries(grads)) named[byVarName.get(varName)!] = g;
    optimizer.apply(params, named);
    const loss = (await value.data())[0]!;
    tf.dispose([value, ...Object.values(grads)]);
    return loss;
  };
  const forward = async (): Promise<void> => {
    const total = tf.tidy(() => trainingLosses(params, x, y, config).total);
    await total.data();
    total.dispose();
  };
  // In training every forward meets weights that Adam has just replaced, so XNNPACK (which caches packed weights
  // per tensor) packs them again; PyTorch's forward has no such cache either. So each timed forward gets fresh
  // copies of the weights, made before its clock starts, as the step's own forward does.
  const renewWeights = async (): Promise<void> => {
    for (const v of Object.values(params)) {
      const copy = tf.add(v, 0);
      v.assign(copy);
      copy.dispose();
    }
    await Promise.all(Object.values(params).map((v) => v.data()));
  };

  let worstBusy: number | null = null;
  const gate = async (): Promise<void> => {
    const busy = await waitForIdle(job.waitIdleS, 300);
    if (busy != null) worstBusy = Math.max(worstBusy ?? 0, busy);
  };
  const forwardSeconds: number[] = [];
  await forward();
  for (let i = 0; i < job.steps; i++) {
    await renewWeights();
    await gate();
    const t0 = performance.now();
    await forward();
    forwardSeconds.push((performance.now() - t0) / 1000);
  }
  let stepSeconds: number[] | null = null;
  let stepCpuSeconds: number[] | null = null;
  let loss: number | null = null;
  let leaked = 0;
  if (job.stepSkipReason == null) {
    stepSeconds = [];
    stepCpuSeconds = [];
    loss = await step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < job.steps; i++) {
      await gate();
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      loss = await step();
      stepSeconds.push((performance.now() - t0) / 1000);
      const cpu = process.cpuUsage(cpu0);
      stepCpuSeconds.push((cpu.user + cpu.system) / 1e6);
    }
    // Adam's moments are created on the warm-up step, so any growth here is a leak.
    leaked = (tf.memory().numTensors - before) / job.steps;
  }
  const parts = job.parts && job.stepSkipReason == null ? await timeParts(config, params, x, y, gate) : [];
  const kernels = job.kernels ? await timeKernels(config, job.batch, gate) : [];
  return {
    backend: b.name,
    detail: b.detail,
    batch: job.batch,
    stepSeconds,
    stepCpuSeconds,
    forwardSeconds,
    kernels,
    parts,
    loss,
    leakedTensorsPerStep: leaked,
    worstBusy,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  };
}

// ------------------------------------------------------------------------------------------ parent side

interface TorchResult {
  torch: string;
  threads: number;
  step_s: number[];
  step_cpu_s: number[];
  forward_s: number[];
  loss: number;
  peak_rss_mb: number;
}

/**
 * The PyTorch reference (scripts/bench_train_torch.py): the same model and step on the CPU at the same batch and
 * threads. Returns null with the reason when python3 cannot import torch (Debian: apt-get install python3-torch).
 */
async function runTorch(config: CapsNetConfig, batch: number, steps: number, threads: number, timeoutMs: number): Promise<TorchResult | { skipped: string }> {
  const { execa } = await import('execa');
  // CAPSNET_PYTHON, else the first of python3 on the PATH and Debian's /usr/bin/python3 that imports torch.
  const given = readEnv('CAPSNET_PYTHON');
  const candidates = given ? [given] : ['python3', '/usr/bin/python3'];
  let python: string | null = null;
  for (const candidate of candidates) {
    const probe = await execa(candidate, ['-c', 'import torch'], { reject: false, timeout: 120_000 });
    if (probe.exitCode === 0) {
      python = candidate;
      break;
    }
  }
  if (python == null) {
    return { skipped: `${candidates.join(' and ')} cannot import torch (Debian: apt-get install python3-torch; or set CAPSNET_PYTHON)` };
  }
  const run = await execa(python, [join(ROOT, 'scripts', 'bench_train_torch.py'), JSON.stringify(config), String(batch), String(steps), String(threads)], {
    reject: false,
    timeout: timeoutMs,
    env: { OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) },
  });
  if (run.exitCode !== 0)
    return {
      skipped: `bench_train_torch.py failed: ${String(run.stderr || run.message)
        .split('\n')
        .slice(-3)
        .join(' ')}`,
    };
  return JSON.parse(run.stdout.trim().split('\n').at(-1)!) as TorchResult;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      backends: { type: 'string', default: ALL_BACKENDS.join(',') },
      preset: { type: 'string', default: 'paper' },
      batch: { type: 'string', default: '32' },
      steps: { type: 'string', default: '3' },
      'cpu-batch': { type: 'string' },
      'timeout-s': { type: 'string', default: '900' },
      out: { type: 'string', default: join(ROOT, 'bench-results', 'train.json') },
      'no-kernels': { type: 'boolean', default: false },
      'no-parts': { type: 'boolean', default: false },
      'no-unfused': { type: 'boolean', default: false },
      'no-torch': { type: 'boolean', default: false },
      'wasm-threads': { type: 'string' },
      'wait-idle': { type: 'string', default: '0' },
    },
  });
  const preset = values.preset as PresetName;
  const config = presetConfig(preset);
  const batches = values.batch!.split(',').map((b) => Number(b.trim()));
  if (!batches.every((b) => Number.isInteger(b) && b > 0)) throw new Error(`--batch wants positive integers, got '${values.batch}'`);
  const steps = Math.max(1, Number(values.steps));
  const timeoutMs = Number(values['timeout-s']) * 1000;
  const flops = countFlops(config);
  const backends = values
    .backends!.split(',')
    .map((s) => s.trim())
    .filter(Boolean) as BackendName[];
  for (const name of backends) {
    if (!ALL_BACKENDS.includes(name)) throw new Error(`unknown backend '${name}' (choose from ${ALL_BACKENDS.join(', ')})`);
  }

  console.log(
    `CapsNet ${preset} preset: ${(flops.forward.total / 1e6).toFixed(0)} MFLOP forward, ` +
      `${(flops.trainStep / 1e6).toFixed(0)} MFLOP per training image (train/flops.ts); batch ${batches.join(', ')}, ` +
      `${steps} timed step(s) after a warm-up; ${os.cpus().length} CPU cores, load average ${os.loadavg()[0]!.toFixed(2)}`,
  );

  // wasm runs once per thread count (default: backend.ts's choice, all cores), with the fused capsule kernels and,
  // for comparison in the same run, without them (the composite tfjs ops).
  const wasmThreads: (number | undefined)[] = values['wasm-threads'] != null ? values['wasm-threads'].split(',').map((t) => Number(t)) : [undefined];
  const jobs: Job[] = [];
  for (const batch of batches) {
    for (const backend of backends) {
      for (const threads of backend === 'wasm' ? wasmThreads : [undefined]) {
        for (const fused of backend === 'wasm' && !values['no-unfused'] ? [false, true] : [true]) {
          jobs.push({
            backend,
            preset,
            batch,
            steps,
            kernels: backend === 'wasm' && fused && !values['no-kernels'],
            parts: backend === 'wasm' && !values['no-parts'],
            fused,
            waitIdleS: Number(values['wait-idle']),
            ...(threads != null ? { threads } : {}),
          });
        }
      }
    }
  }

  const rows: Row[] = [];
  const skippedRow = (backend: string, batch: number | null, reason: string): Row => ({
    backend,
    detail: '',
    batch,
    step_s: null,
    forward_s: null,
    step_over_forward: null,
    images_per_s: null,
    step_gflops_per_s: null,
    forward_gflops_per_s: null,
    step_cpu_s: null,
    peak_rss_mb: null,
    note: `skipped: ${reason}`,
  });
  for (const job of jobs) {
    const backend = job.backend;
    let env = process.env;
    let note = '';
    if (job.threads != null) env = { ...process.env, CAPSNET_WASM_THREADS: String(job.threads) };
    if (backend === 'cpu') {
      if (values['cpu-batch'] != null) {
        job.batch = Number(values['cpu-batch']);
        job.steps = 1;
        note = `reduced: batch ${job.batch}, 1 timed step`;
      } else {
        job.batch = 1;
        job.steps = 1;
        job.stepSkipReason =
          "step skipped: tfjs-backend-cpu's Conv2DBackpropFilter/Input are scalar JS loops, minutes " +
          'per paper-size step even at batch 1 (pass --cpu-batch 1 to time it anyway)';
        note = 'reduced: forward only, batch 1';
      }
    }
    if (backend === 'webgpu') {
      const w = webGpuWorkerEnv();
      env = w.env;
      if (w.software) {
        job.batch = 1;
        job.steps = 1;
        note = `reduced: batch 1, 1 timed step, on ${w.note}`;
      }
    }
    // A software WebGPU adapter emulates the GPU on the CPU: give it a bounded time, then report it as skipped.
    const jobTimeoutMs = backend === 'webgpu' && note.includes('software') ? Math.min(timeoutMs, 300_000) : timeoutMs;
    const variant = backend === 'wasm' ? (job.fused ? ' fused' : ' composite') : '';
    const label = (job.threads != null ? `${backend} (${job.threads} thread${job.threads === 1 ? '' : 's'})` : backend) + variant;
    process.stdout.write(`${label}, batch ${job.batch}: running${note ? ` (${note})` : ''} ...\n`);
    const busyBefore = await cpuBusy(500);
    const started = performance.now();
    const reply = await forkWorker<WorkerResult>(SELF, ['--worker'], job, env, jobTimeoutMs);
    const wall = (performance.now() - started) / 1000;
    if ('error' in reply) {
      const reason = reply.error.replace(/\s+/g, ' ').slice(0, 400);
      console.log(`${label}: skipped: ${reason}`);
      rows.push(skippedRow(label, job.batch, reason));
      continue;
    }
    const worst = reply.worstBusy ?? busyBefore;
    const busyNote = worst != null && worst > 0.1 ? `other processes kept up to ${(100 * worst).toFixed(0)}% of the CPUs busy: timings inflated` : '';
    const stepS = reply.stepSeconds ? median(reply.stepSeconds) : null;
    const fwdS = median(reply.forwardSeconds);
    const threadsUsed = /(\d+) threads?/.exec(reply.detail)?.[1];
    const row: Row = {
      backend: (backend === 'wasm' && threadsUsed ? `wasm ${threadsUsed}t` : backend) + variant,
      detail: reply.detail,
      batch: reply.batch,
      step_s: stepS,
      forward_s: fwdS,
      step_over_forward: stepS != null ? stepS / fwdS : null,
      images_per_s: stepS != null ? reply.batch / stepS : null,
      step_gflops_per_s: stepS != null ? (flops.trainStep * reply.batch) / stepS / 1e9 : null,
      forward_gflops_per_s: (flops.forward.total * reply.batch) / fwdS / 1e9,
      step_cpu_s: reply.stepCpuSeconds ? median(reply.stepCpuSeconds) : null,
      peak_rss_mb: reply.peakRssMb,
      note: [
        note,
        backend === 'wasm' && !job.fused ? 'fused capsule kernels off (setFusedKernels(false))' : '',
        job.stepSkipReason,
        reply.leakedTensorsPerStep > 0 ? `LEAK: ${reply.leakedTensorsPerStep} tensors/step` : '',
        busyNote,
      ]
        .filter(Boolean)
        .join('; '),
      cpu_busy_by_others: worst,
      raw: { step_s: reply.stepSeconds, forward_s: reply.forwardSeconds },
    };
    if (reply.kernels.length > 0) row.kernels = reply.kernels;
    if (reply.parts.length > 0) row.parts = reply.parts;
    rows.push(row);
    console.log(`${label}: ${reply.detail} (${wall.toFixed(0)} s in all)`);
  }

  // The PyTorch reference at each batch, with as many threads as the wasm rows used.
  if (!values['no-torch']) {
    const wasmRow = rows.find((r) => r.backend.startsWith('wasm ') && r.step_s != null);
    const threads = Number(/^wasm (\d+)t/.exec(wasmRow?.backend ?? '')?.[1] ?? wasmThreadsWanted());
    for (const batch of batches) {
      process.stdout.write(`pytorch cpu (${threads} thread${threads === 1 ? '' : 's'}), batch ${batch}: running ...\n`);
      const busyBefore = await cpuBusy(500);
      const t = await runTorch(config, batch, steps, threads, timeoutMs);
      if ('skipped' in t) {
        console.log(`pytorch: skipped: ${t.skipped}`);
        rows.push(skippedRow('pytorch cpu', batch, t.skipped));
        continue;
      }
      const stepS = median(t.step_s),
        fwdS = median(t.forward_s);
      rows.push({
        backend: `pytorch ${t.threads}t`,
        detail: `PyTorch ${t.torch} on the CPU, ${t.threads} threads (scripts/bench_train_torch.py)`,
        batch,
        step_s: stepS,
        forward_s: fwdS,
        step_over_forward: stepS / fwdS,
        images_per_s: batch / stepS,
        step_gflops_per_s: (flops.trainStep * batch) / stepS / 1e9,
        forward_gflops_per_s: (flops.forward.total * batch) / fwdS / 1e9,
        step_cpu_s: median(t.step_cpu_s),
        peak_rss_mb: t.peak_rss_mb,
        note: busyBefore != null && busyBefore > 0.1 ? `other processes kept up to ${(100 * busyBefore).toFixed(0)}% of the CPUs busy: timings inflated` : '',
        cpu_busy_by_others: busyBefore,
        raw: { step_s: t.step_s, forward_s: t.forward_s },
      });
    }
  }

  console.log('');
  console.log(formatReport(rows));

  const outPath = userPath(values.out!);
  writeReport(outPath, {
    created: new Date().toISOString(),
    preset,
    config,
    flops_per_image: { forward: flops.forward, backward: flops.backward, train_step: flops.trainStep },
    machine: machineInfo(),
    rows,
    ratios: ratios(rows),
  });
  console.log(`\nwrote ${outPath}`);
}

/** Each tfjs row's step against the PyTorch row at the same batch (wall and CPU time). */
function ratios(rows: Row[]): { backend: string; batch: number; step_vs_pytorch: number; step_cpu_vs_pytorch: number | null }[] {
  const out = [];
  for (const r of rows) {
    const ref = rows.find((t) => t.backend.startsWith('pytorch') && t.batch === r.batch && t.step_s != null);
    if (!ref || r === ref || r.step_s == null || r.backend.startsWith('pytorch')) continue;
    out.push({
      backend: r.backend,
      batch: r.batch!,
      step_vs_pytorch: r.step_s / ref.step_s!,
      step_cpu_vs_pytorch: r.step_cpu_s != null && ref.step_cpu_s != null ? r.step_cpu_s / ref.step_cpu_s : null,
    });
  }
  return out;
}

function textTable(header: string[], body: string[][], indent = ''): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((t) => (i === header.length - 1 ? 0 : t[i]!.length))));
  const line = (cells: string[]) => indent + cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(header), ...body.map(line)].join('\n');
}

/** The main table, the ratios to PyTorch, each row's step cut into parts, and the convolution kernels. */
function formatReport(rows: Row[]): string {
  const out: string[] = [];
  out.push(
    textTable(
      ['backend', 'batch', 'step s', 'step CPU s', 'forward s', 'step/fwd', 'images/s', 'step GFLOP/s', 'fwd GFLOP/s', 'peak RSS MB', 'note'],
      rows.map((r) => [
        r.backend,
        r.batch == null ? '-' : String(r.batch),
        fmt(r.step_s, 3),
        fmt(r.step_cpu_s, 2),
        fmt(r.forward_s, 3),
        fmt(r.step_over_forward, 2),
        fmt(r.images_per_s, 1),
        fmt(r.step_gflops_per_s, 1),
        fmt(r.forward_gflops_per_s, 1),
        fmt(r.peak_rss_mb, 0),
        r.note,
      ]),
    ),
  );
  const rs = ratios(rows);
  if (rs.length > 0) {
    out.push('\nstep time / PyTorch step time at the same batch (same run; CPU = user + system seconds of all threads):');
    for (const r of rs) {
      out.push(
        `  ${r.backend.padEnd(22)} batch ${String(r.batch).padEnd(4)} ${r.step_vs_pytorch.toFixed(2)}x wall, ` +
          `${r.step_cpu_vs_pytorch == null ? '-' : r.step_cpu_vs_pytorch.toFixed(2)}x CPU`,
      );
    }
  }
  for (const r of rows) {
    if (!r.parts) continue;
    const sum = r.parts.reduce((a, p) => a + p.total_s, 0);
    const ms = (x: number | null) => (x == null ? '-' : (x * 1000).toFixed(0));
    const sumCpu = r.parts.reduce((a, p) => a + p.total_cpu_s, 0);
    const body = r.parts.map((p) => [
      p.part,
      ms(p.forward_s),
      ms(p.backward_s),
      ms(p.total_s),
      r.step_s ? `${((100 * p.total_s) / r.step_s).toFixed(0)}%` : '-',
      ms(p.forward_cpu_s),
      p.forward_cpu_s == null ? '-' : ms(Math.max(0, p.total_cpu_s - p.forward_cpu_s)),
      ms(p.total_cpu_s),
      r.step_cpu_s ? `${((100 * p.total_cpu_s) / r.step_cpu_s).toFixed(0)}%` : '-',
    ]);
    body.push([
      'sum of parts',
      '',
      '',
      ms(sum),
      r.step_s ? `${((100 * sum) / r.step_s).toFixed(0)}%` : '-',
      '',
      '',
      ms(sumCpu),
      r.step_cpu_s ? `${((100 * sumCpu) / r.step_cpu_s).toFixed(0)}%` : '-',
    ]);
    out.push(
      `\n${r.backend} at batch ${r.batch}: the step in parts, each timed alone (best of 3; step median ` +
        `${ms(r.step_s)} ms wall, ${ms(r.step_cpu_s)} ms CPU):`,
    );
    out.push(textTable(['part', 'fwd ms', 'bwd ms', 'total ms', 'of step', 'fwd CPU ms', 'bwd CPU ms', 'total CPU ms', 'of step CPU'], body, '  '));
  }
  for (const r of rows) {
    if (!r.kernels) continue;
    out.push(`\n${r.backend} convolution kernels at batch ${r.batch} (best of 3 after a warm-up):`);
    for (const k of r.kernels) {
      out.push(
        `  ${k.layer.padEnd(12)} ${k.kernel.padEnd(16)} ${(k.seconds * 1000).toFixed(0).padStart(6)} ms  ` + `${k.gflops.toFixed(1).padStart(6)} GFLOP/s`,
      );
    }
  }
  return out.join('\n');
}

if (process.argv.includes('--worker')) {
  process.once('message', (job: Job) => {
    runWorker(job).then(
      (result) => process.send!(result, () => process.exit(0)),
      (e: unknown) => {
        const message = e instanceof Error ? e.message : String(e);
        process.send!({ error: message }, () => process.exit(0));
      },
    );
  });
} else {
  await main();
}
