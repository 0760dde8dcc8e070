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
 * label, plus the losses), so step/forward compares like with like. On wasm the script also times the three
 * convolution kernels (forward, filter gradient, input gradient) of conv1 and PrimaryCaps at the same batch.
 * GFLOP/s counts the multiply-adds of train/flops.ts (element-wise work left out).
 *
 * Reduced runs are stated in the table, never silent: the cpu backend's convolution gradients are scalar JS
 * loops (minutes per paper-size step even at batch 1), so by default it gets the forward pass at batch 1 only;
 * WebGPU on a software adapter (SwiftShader) gets batch 1 and a time limit.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { writeFileAtomic } from '../packages/capsnet/src/files/atomic.ts';
import { type BackendName, wasmThreadsWanted } from '../packages/capsnet/src/train/backend.ts';
import { type CapsNetConfig, presetConfig, type PresetName, convKernelFlops, countFlops } from '@capsnet-onnx/core';
import { forkWorker, webGpuWorkerEnv } from '../packages/capsnet/src/parity/fork.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const ALL_BACKENDS: BackendName[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

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
  forwardSeconds: number[];
  kernels: KernelTiming[];
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
  note: string;
  /** Highest fraction of the CPUs busy with other work seen before a timed repetition (Linux only). */
  cpu_busy_by_others?: number | null;
  kernels?: KernelTiming[];
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
    { layer: 'conv1', h: config.inputHeight, w: config.inputWidth, c: config.inputChannels, k: config.conv1Kernel,
      o: config.conv1Filters, s: 1 },
    { layer: 'primaryCaps', h: config.inputHeight - config.conv1Kernel + 1, w: config.inputWidth - config.conv1Kernel + 1,
      c: config.conv1Filters, k: config.primaryKernel, o: config.primaryMaps * config.primaryDim, s: config.primaryStride },
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
      ['filter gradient', [x, dy], (a, b) =>
        tf.engine().runKernel('Conv2DBackpropFilter', { x: a, dy: b }, { ...attrs, filterShape: fShape }) as tf.Tensor,
      flops.filterGrad],
      ['input gradient', [dy, f], (a, b) =>
        tf.engine().runKernel('Conv2DBackpropInput', { dy: a, filter: b }, { ...attrs, inputShape: xShape }) as tf.Tensor,
      flops.inputGrad],
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

async function runWorker(job: Job): Promise<WorkerResult> {
  const { initBackend } = await import('../packages/capsnet/src/train/backend.ts');
  const { initParams, trainingLosses } = await import('../packages/capsnet/src/train/model.ts');
  const { Adam } = await import('../packages/capsnet/src/train/adam.ts');
  const b = await initBackend(job.backend);
  const config = presetConfig(job.preset);
  const params = initParams(config, 1);
  const pixels = config.inputHeight * config.inputWidth * config.inputChannels;
  const x = tf.tensor4d(seededUniform(job.batch * pixels, 7),
    [job.batch, config.inputHeight, config.inputWidth, config.inputChannels]);
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

  let worstBusy: number | null = null;
  const gate = async (): Promise<void> => {
    const busy = await waitForIdle(job.waitIdleS, 300);
    if (busy != null) worstBusy = Math.max(worstBusy ?? 0, busy);
  };
  const forwardSeconds: number[] = [];
  await forward();
  for (let i = 0; i < job.steps; i++) {
    await gate();
    const t0 = performance.now();
    await forward();
    forwardSeconds.push((performance.now() - t0) / 1000);
  }
  let stepSeconds: number[] | null = null;
  let loss: number | null = null;
  let leaked = 0;
  if (job.stepSkipReason == null) {
    stepSeconds = [];
    loss = await step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < job.steps; i++) {
      await gate();
      const t0 = performance.now();
      loss = await step();
      stepSeconds.push((performance.now() - t0) / 1000);
    }
    // Adam's moments are created on the warm-up step, so any growth here is a leak.
    leaked = (tf.memory().numTensors - before) / job.steps;
  }
  const kernels = job.kernels ? await timeKernels(config, job.batch, gate) : [];
  return { backend: b.name, detail: b.detail, batch: job.batch, stepSeconds, forwardSeconds, kernels, loss,
    leakedTensorsPerStep: leaked, worstBusy };
}

// ------------------------------------------------------------------------------------------ parent side

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
      'wasm-threads': { type: 'string' },
      'wait-idle': { type: 'string', default: '0' },
    },
  });
  const preset = values.preset as PresetName;
  const config = presetConfig(preset);
  const batch = Number(values.batch);
  const steps = Math.max(1, Number(values.steps));
  const timeoutMs = Number(values['timeout-s']) * 1000;
  const flops = countFlops(config);
  const backends = values.backends!.split(',').map((s) => s.trim()).filter(Boolean) as BackendName[];
  for (const name of backends) {
    if (!ALL_BACKENDS.includes(name)) throw new Error(`unknown backend '${name}' (choose from ${ALL_BACKENDS.join(', ')})`);
  }

  console.log(`CapsNet ${preset} preset: ${(flops.forward.total / 1e6).toFixed(0)} MFLOP forward, ` +
    `${(flops.trainStep / 1e6).toFixed(0)} MFLOP per training image (train/flops.ts); batch ${batch}, ` +
    `${steps} timed step(s) after a warm-up; ${os.cpus().length} CPU cores, load average ${os.loadavg()[0]!.toFixed(2)}`);

  // wasm runs once per thread count: by default backend.ts's choice (all cores) and, for comparison, 1 thread.
  const wasmThreads: (number | undefined)[] = values['wasm-threads'] != null
    ? values['wasm-threads'].split(',').map((t) => Number(t))
    : (wasmThreadsWanted() > 1 ? [undefined, 1] : [undefined]);
  const jobs: Job[] = [];
  for (const backend of backends) {
    for (const threads of backend === 'wasm' ? wasmThreads : [undefined]) {
      jobs.push({ backend, preset, batch, steps, kernels: backend === 'wasm' && !values['no-kernels'],
        waitIdleS: Number(values['wait-idle']), ...(threads != null ? { threads } : {}) });
    }
  }

  const rows: Row[] = [];
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
        job.stepSkipReason = "step skipped: tfjs-backend-cpu's Conv2DBackpropFilter/Input are scalar JS loops, minutes " +
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
    const label = job.threads != null ? `${backend} (${job.threads} thread${job.threads === 1 ? '' : 's'})` : backend;
    process.stdout.write(`${label}: running${note ? ` (${note})` : ''} ...\n`);
    const busyBefore = await cpuBusy(500);
    const started = performance.now();
    const reply = await forkWorker<WorkerResult>(SELF, ['--worker'], job, env, jobTimeoutMs);
    const wall = (performance.now() - started) / 1000;
    if ('error' in reply) {
      const reason = reply.error.replace(/\s+/g, ' ').slice(0, 400);
      console.log(`${label}: skipped: ${reason}`);
      rows.push({ backend: label, detail: '', batch: null, step_s: null, forward_s: null, step_over_forward: null,
        images_per_s: null, step_gflops_per_s: null, forward_gflops_per_s: null, note: `skipped: ${reason}` });
      continue;
    }
    const worst = reply.worstBusy ?? busyBefore;
    const busyNote = worst != null && worst > 0.1
      ? `other processes kept up to ${(100 * worst).toFixed(0)}% of the CPUs busy: timings inflated` : '';
    const stepS = reply.stepSeconds ? median(reply.stepSeconds) : null;
    const fwdS = median(reply.forwardSeconds);
    const threadsUsed = /(\d+) threads?/.exec(reply.detail)?.[1];
    const row: Row = {
      backend: backend === 'wasm' && threadsUsed ? `wasm ${threadsUsed}t` : backend, detail: reply.detail, batch: reply.batch, step_s: stepS, forward_s: fwdS,
      step_over_forward: stepS != null ? stepS / fwdS : null,
      images_per_s: stepS != null ? reply.batch / stepS : null,
      step_gflops_per_s: stepS != null ? (flops.trainStep * reply.batch) / stepS / 1e9 : null,
      forward_gflops_per_s: (flops.forward.total * reply.batch) / fwdS / 1e9,
      note: [note, job.stepSkipReason, reply.leakedTensorsPerStep > 0 ? `LEAK: ${reply.leakedTensorsPerStep} tensors/step` : '',
        busyNote].filter(Boolean).join('; '),
      cpu_busy_by_others: worst,
      raw: { step_s: reply.stepSeconds, forward_s: reply.forwardSeconds },
    };
    if (reply.kernels.length > 0) row.kernels = reply.kernels;
    rows.push(row);
    console.log(`${label}: ${reply.detail} (${wall.toFixed(0)} s in all)`);
  }

  console.log('');
  const header = ['backend', 'batch', 'step s', 'forward s', 'step/fwd', 'images/s', 'step GFLOP/s', 'fwd GFLOP/s', 'note'];
  const table = rows.map((r) => [r.backend, r.batch == null ? '-' : String(r.batch), fmt(r.step_s, 3), fmt(r.forward_s, 3),
    fmt(r.step_over_forward, 2), fmt(r.images_per_s, 1), fmt(r.step_gflops_per_s, 1), fmt(r.forward_gflops_per_s, 1), r.note]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => (i === header.length - 1 ? 0 : t[i]!.length))));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  console.log(line(header));
  for (const t of table) console.log(line(t));
  for (const r of rows) {
    if (!r.kernels) continue;
    console.log(`\n${r.backend} convolution kernels at batch ${r.batch} (best of 3 after a warm-up):`);
    for (const k of r.kernels) {
      console.log(`  ${k.layer.padEnd(12)} ${k.kernel.padEnd(16)} ${(k.seconds * 1000).toFixed(0).padStart(6)} ms  ` +
        `${k.gflops.toFixed(1).padStart(6)} GFLOP/s`);
    }
  }

  const outPath = resolve(values.out!);
  mkdirSync(dirname(outPath), { recursive: true });
  writeFileAtomic(outPath, JSON.stringify({
    created: new Date().toISOString(),
    preset,
    config,
    flops_per_image: { forward: flops.forward, backward: flops.backward, train_step: flops.trainStep },
    machine: { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model ?? '', node: process.version,
      load_average_at_end: os.loadavg() },
    rows,
  }, null, 2) + '\n');
  console.log(`\nwrote ${outPath}`);
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
