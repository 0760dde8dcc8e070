/**
 * `npm run bench:train`, the step rows' worker (one process per backend, forked by bench/train.ts): one training
 * step (forward + backward + Adam) of the CapsNet on seeded inputs, timed after a warm-up, next to the forward pass
 * alone; on wasm also the step cut into parts and the convolution kernels.
 */
import * as tf from '@tensorflow/tfjs-core';
import { type CapsNetConfig, convKernelFlops, derivedSizes, type PresetName, presetConfig } from '@capsnet-onnx/core';
import type { BackendName } from '../packages/capsnet/src/train/backends/backend.ts';
import type { ConvolutionsName } from '../packages/capsnet/src/train/names.ts';
import { seededUniform, waitForIdle } from './harness.ts';

export interface Job {
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
  /** wasm: use the fused capsule kernels (train/backends/wasm-capsule-kernels.ts); false times the composite tfjs ops. */
  fused: boolean;
  /** Time the step's parts (convolutions, u_hat, routing, decoder, losses, optimizer) too. */
  parts: boolean;
  /** Other busy processes (one CPU each) running beside the worker while it is timed (bench/train.ts --compete). */
  compete?: number;
  /** wasm: who runs the convolutions when not --convolutions' first value (the row is labelled by it). */
  convolutions?: ConvolutionsName;
}

/** One part of the training step, timed alone at the step's shapes (best of 3 after a warm-up). */
export interface PartTiming {
  part: string;
  forward_s: number | null;
  backward_s: number | null;
  total_s: number;
  /** CPU seconds (user + system, all threads) of the forward and of forward + backward. */
  forward_cpu_s: number | null;
  total_cpu_s: number;
}

export interface KernelTiming {
  layer: string;
  kernel: 'forward' | 'filter gradient' | 'input gradient';
  seconds: number;
  gflops: number;
}

export interface WorkerResult {
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
 * The parts follow model/capsnet.ts: convolutions (conv1, PrimaryCaps), u_hat (with the primary squash),
 * routing, decoder (masked by the label), losses (margin + reconstruction), then Adam.
 */
async function timeParts(
  config: CapsNetConfig,
  params: Record<string, tf.Variable>,
  x: tf.Tensor4D,
  y: tf.Tensor2D,
  gate: () => Promise<void>,
): Promise<PartTiming[]> {
  const model = await import('../packages/capsnet/src/model/capsnet.ts');
  const routing = await import('../packages/capsnet/src/model/routing.ts');
  const layers = await import('../packages/capsnet/src/model/layers.ts');
  const { Adam } = await import('../packages/capsnet/src/train/adam.ts');
  const { numPrimaryCaps } = derivedSizes(config);
  const batch = x.shape[0];
  // Inputs of each part: what the part before it produces in the step.
  const primaryConv = tf.tidy(() => model.convolutions(params, x, config));
  const uHat = tf.tidy(() =>
    model.predictionVectors(
      layers.squash(tf.reshape(primaryConv, [batch, numPrimaryCaps, config.primaryDim]), config.squashEpsilon) as tf.Tensor3D,
      params['digit/W'] as tf.Tensor3D,
      config,
    ),
  );
  const capsules = tf.tidy(() => routing.route(uHat, config.routing, config.squashEpsilon).capsules);
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
          layers.squash(tf.reshape(p!, [batch, numPrimaryCaps, config.primaryDim]), config.squashEpsilon) as tf.Tensor3D,
          W as tf.Tensor3D,
          config,
        ),
    },
    { part: 'routing', inputs: [uHat], wrt: [0], f: ([u]) => routing.route(u as tf.Tensor4D, config.routing, config.squashEpsilon).capsules },
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
          model.marginLoss(layers.capsuleLengths(c!, config.squashEpsilon) as tf.Tensor2D, y, config),
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

export async function runStepWorker(job: Job): Promise<WorkerResult> {
  const { initBackend } = await import('../packages/capsnet/src/train/backends/backend.ts');
  const { initParams, trainingLosses } = await import('../packages/capsnet/src/model/capsnet.ts');
  const { Adam } = await import('../packages/capsnet/src/train/adam.ts');
  const { setFusedKernels } = await import('../packages/capsnet/src/model/fused.ts');
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
