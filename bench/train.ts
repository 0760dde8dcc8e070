/**
 * `npm run bench:train`: wall time of one training step (forward + backward + Adam) of the CapsNet on every
 * tfjs backend that loads here, next to the forward pass alone at the same batch; then whole epochs as a user
 * sees them (train-epoch.ts: one pass over a slice of the official MNIST through `capsnet train`'s loop on wasm,
 * next to PyTorch). Prints the tables and writes bench-results/train.json (temp file + rename).
 *
 *   npm run bench:train                                   # paper-size model, batch 32, all backends; epochs at 32 and 128
 *   npm run bench:train -- --only-epoch --epoch-images 768 --epoch-test 200 --steady-window 3   # the epoch rows, quick
 *   npm run bench:train -- --no-epoch                     # the step rows only
 *   npm run bench:train -- --backends wasm --steps 5      # one backend, more timed steps
 *   npm run bench:train -- --preset small --batch 64
 *   npm run bench:train -- --cpu-batch 1                  # also time the cpu backend's step (minutes)
 *   npm run bench:train -- --wasm-threads 1,2             # wasm rows at these thread counts (default: auto and 1)
 *   npm run bench:train -- --wait-idle 120                # shared machine: wait (<= 120 s) for idle CPUs before each timing
 *   npm run bench:train -- --compete 0                    # no wasm row beside a busy process (default: 1 busy process)
 *   npm run bench:train -- --convolutions onnxruntime,wasm   # wasm rows with ORT's and with XNNPACK's convolutions
 *   npm run bench:train -- --no-probe                     # skip the native-GEMM core-scaling probe (bench/gemm-probe.ts)
 *
 * `--compete N` (default 1) times the wasm step once more at each batch while N other processes each keep a CPU
 * busy, and reports how much slower the step got (the target: a second busy process must not make it more than 2.2x
 * slower on 2 cores; with 3 busy threads on 2 cores an even share is 1.5x).
 *
 * Each backend runs in its own process. "forward" is the same forward the step runs (decoder masked by the
 * label, plus the losses, on weights it has not seen before, as after each Adam update), so step/forward compares
 * like with like. On wasm the script also times the three
 * convolution kernels (forward, filter gradient, input gradient) of conv1 and PrimaryCaps at the same batch.
 * GFLOP/s counts the multiply-adds of the core's countFlops (packages/core/src/flops.ts; element-wise work left out).
 *
 * Reduced runs are stated in the table, never silent: the cpu backend's convolution gradients are scalar JS
 * loops (minutes per paper-size step even at batch 1), so by default it gets the forward pass at batch 1 only;
 * WebGPU on a software adapter (SwiftShader) gets batch 1 and a time limit.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type PresetName, countFlops, presetConfig } from '@capsnet-onnx/core';
import { type BackendName, wasmThreadsWanted } from '../packages/capsnet/src/train/backends/backend.ts';
import { BACKEND_NAMES, CONVOLUTIONS_NAMES, type ConvolutionsName } from '../packages/capsnet/src/train/names.ts';
import { forkWorker, webGpuWorkerEnv } from '../packages/capsnet/src/parity/fork.ts';
import { parallelGemmScaling } from './gemm-probe.ts';
import { benchArgs, busyNote, cpuBusy, machineInfo, median, runBench, userPath, withBusyProcesses, writeReport } from './harness.ts';
import { type Row, busyProcesses, contention, formatReport, ratios } from './train-report.ts';
import { type Job, type WorkerResult, runStepWorker } from './train-step.ts';
import { type EpochJob, runEpochWorker } from './train-epoch-worker.ts';
import { runTorch } from './train-torch.ts';
import { type EpochRow, convolutionsLabel, formatEpochReport, runEpochRows } from './train-epoch.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const ALL_BACKENDS: BackendName[] = [...BACKEND_NAMES];

async function main(): Promise<void> {
  const { values } = benchArgs(
    import.meta.url,
    {
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
        compete: { type: 'string', default: '1' },
        convolutions: { type: 'string', default: 'onnxruntime' },
        'no-epoch': { type: 'boolean', default: false },
        'only-epoch': { type: 'boolean', default: false },
        data: { type: 'string', default: 'mnist' },
        'epoch-batch': { type: 'string', default: '32,128' },
        'epoch-images': { type: 'string', default: '3200' },
        'epoch-test': { type: 'string', default: '1000' },
        'steady-window': { type: 'string', default: '5' },
        'steady-tolerance': { type: 'string', default: '10' },
        'no-probe': { type: 'boolean', default: false },
      },
    },
    {
      steps: 'count',
      'cpu-batch': 'count',
      'timeout-s': 'seconds',
      'wait-idle': 'seconds0',
      compete: 'count0',
      batch: 'counts',
      'epoch-batch': 'counts',
      'epoch-images': 'count',
      'epoch-test': 'count',
      'steady-window': 'count',
      'wasm-threads': 'counts',
    },
  );
  const positive = (flag: string): number => {
    const n = Number(values[flag as keyof typeof values]);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} wants a positive integer, got '${values[flag as keyof typeof values]}'`);
    return n;
  };
  const epochBatches = values['epoch-batch']!.split(',').map((b) => Number(b.trim()));
  if (!epochBatches.every((b) => Number.isInteger(b) && b > 0)) throw new Error(`--epoch-batch wants positive integers, got '${values['epoch-batch']}'`);
  const tolerance = Number(values['steady-tolerance']);
  if (!(tolerance >= 0 && tolerance <= 100)) throw new Error(`--steady-tolerance wants a percentage from 0 to 100, got '${values['steady-tolerance']}'`);
  const epochImages = positive('epoch-images');
  const epochTest = positive('epoch-test');
  const steadyWindow = positive('steady-window');
  if (values['no-epoch'] && values['only-epoch']) throw new Error('--no-epoch and --only-epoch exclude each other: pass one');
  const preset = values.preset as PresetName;
  const config = presetConfig(preset);
  const batches = values.batch!.split(',').map((b) => Number(b.trim()));
  if (!batches.every((b) => Number.isInteger(b) && b > 0)) throw new Error(`--batch wants positive integers, got '${values.batch}'`);
  const steps = Number(values.steps);
  const timeoutMs = Number(values['timeout-s']) * 1000;
  const flops = countFlops(config);
  const backends = values
    .backends!.split(',')
    .map((s) => s.trim())
    .filter(Boolean) as BackendName[];
  for (const name of backends) {
    if (!ALL_BACKENDS.includes(name)) throw new Error(`unknown backend '${name}' (choose from ${ALL_BACKENDS.join(', ')})`);
  }

  const machine = machineInfo();
  console.log(
    `CapsNet ${preset} preset: ${(flops.forward.total / 1e6).toFixed(0)} MFLOP forward, ` +
      `${(flops.trainStep / 1e6).toFixed(0)} MFLOP per training image (packages/core/src/flops.ts)` +
      `${values['only-epoch'] ? '' : `; step rows at batch ${batches.join(', ')}, ${steps} timed step(s) after a warm-up`}\n` +
      `${machine.cpuModel}${machine.microarchitecture ? ` (${machine.microarchitecture}, family ${machine.cpuFamily} model ${machine.cpuModelNumber})` : ''} ` +
      `(${machine.cpuFlags.join(' ') || 'no SIMD flags read'}), ${machine.cpus} cores, ` +
      `load average ${machine.loadAverages['1m']} / ${machine.loadAverages['5m']} / ${machine.loadAverages['15m']} (1 / 5 / 15 min)`,
  );

  // How far the cores add up on native GEMMs: the ceiling of the CPU/wall ratios below (bench/gemm-probe.ts).
  const gemmScaling = values['no-probe'] ? null : await parallelGemmScaling(machine.cpus);
  if (gemmScaling) {
    console.log(
      `native GEMM on ${gemmScaling.copies} cores at once: ${gemmScaling.scaling.toFixed(2)}x one core's throughput ` +
        `(1 thread alone ${gemmScaling.alone_gflops.toFixed(0)} GFLOP/s; ${gemmScaling.copies} processes together ` +
        `${gemmScaling.together_gflops.map((g) => g.toFixed(0)).join(' + ')}): the most a CPU/wall ratio can buy on GEMM-bound work`,
    );
  }

  const convolutions = values.convolutions!.split(',') as ConvolutionsName[];
  for (const c of convolutions) {
    if (!CONVOLUTIONS_NAMES.includes(c)) throw new Error(`--convolutions wants ${CONVOLUTIONS_NAMES.join(' and/or ')}, got '${c}'`);
  }
  // wasm runs once per thread count (default: backend.ts's choice, all cores), with the fused capsule kernels and,
  // for comparison in the same run, without them (the composite tfjs ops).
  const wasmThreads: (number | undefined)[] = values['wasm-threads'] != null ? values['wasm-threads'].split(',').map((t) => Number(t)) : [undefined];
  const jobs: Job[] = [];
  for (const batch of batches) {
    for (const backend of backends) {
      for (const threads of backend === 'wasm' ? wasmThreads : [undefined]) {
        for (const fused of backend === 'wasm' && !values['no-unfused'] ? [false, true] : [true]) {
          // The fused rows once per --convolutions value (the first is the plain "wasm" row), the composite one once.
          for (const [i, convolution] of (backend === 'wasm' && fused ? convolutions : [convolutions[0]!]).entries()) {
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
              ...(i > 0 ? { convolutions: convolution } : {}),
            });
          }
        }
      }
    }
  }

  // The same wasm step beside busy processes: how it shares the machine (the default thread count, fused kernels).
  const compete = Number(values.compete);
  if (!Number.isInteger(compete) || compete < 0) throw new Error(`--compete wants a whole number of busy processes, got '${values.compete}'`);
  if (compete > 0 && backends.includes('wasm')) {
    for (const batch of batches) {
      jobs.push({ backend: 'wasm', preset, batch, steps, kernels: false, parts: false, fused: true, waitIdleS: 0, compete });
    }
  }

  if (values['only-epoch']) jobs.length = 0;
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
    if (job.threads != null) env = { ...env, CAPSNET_WASM_THREADS: String(job.threads) };
    env = { ...env, CAPSNET_CONVOLUTIONS: job.convolutions ?? convolutions[0]! };
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
    const competing = job.compete ? ` + ${busyProcesses(job.compete)}` : '';
    const variant =
      (backend === 'wasm' ? (job.fused ? ' fused' : ' composite') : '') + (job.convolutions ? `, ${convolutionsLabel(job.convolutions)}` : '') + competing;
    const label = (job.threads != null ? `${backend} (${job.threads} thread${job.threads === 1 ? '' : 's'})` : backend) + variant;
    process.stdout.write(`${label}, batch ${job.batch}: running${note ? ` (${note})` : ''} ...\n`);
    const busyBefore = job.compete ? null : await cpuBusy(500);
    const started = performance.now();
    const fork = () => forkWorker<WorkerResult>(SELF, ['--worker'], job, env, jobTimeoutMs);
    const reply = job.compete ? await withBusyProcesses(job.compete, fork) : await fork();
    const wall = (performance.now() - started) / 1000;
    if ('error' in reply) {
      const reason = reply.error.replace(/\s+/g, ' ').slice(0, 400);
      console.log(`${label}: skipped: ${reason}`);
      rows.push(skippedRow(label, job.batch, reason));
      continue;
    }
    // Beside its own busy processes the load is the point of the row, not a caveat.
    const worst = job.compete ? null : (reply.worstBusy ?? busyBefore);
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
        job.compete ? `${busyProcesses(job.compete)} beside it (--compete)` : '',
        busyNote(worst),
      ]
        .filter(Boolean)
        .join('; '),
      cpu_busy_by_others: worst,
      ...(job.compete ? { busy_processes: job.compete } : {}),
      raw: { step_s: reply.stepSeconds, forward_s: reply.forwardSeconds },
    };
    if (reply.kernels.length > 0) row.kernels = reply.kernels;
    if (reply.parts.length > 0) row.parts = reply.parts;
    rows.push(row);
    console.log(`${label}: ${reply.detail} (${wall.toFixed(0)} s in all)`);
  }

  // The PyTorch reference at each batch, with as many threads as the wasm rows used.
  if (!values['no-torch'] && !values['only-epoch']) {
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
        note: busyNote(busyBefore),
        cpu_busy_by_others: busyBefore,
        raw: { step_s: t.step_s, forward_s: t.forward_s },
      });
    }
  }

  if (rows.length > 0) {
    console.log('');
    console.log(formatReport(rows));
  }

  // Whole-epoch rows (train-epoch.ts): what a user's `capsnet train` sees, next to PyTorch.
  let epochRows: EpochRow[] = [];
  if (!values['no-epoch']) {
    console.log(`\nwhole epochs: ${epochImages} training and ${epochTest} test images of --data ${values.data}, batch ${epochBatches.join(', ')}`);
    epochRows = await runEpochRows(
      {
        preset,
        config,
        data: values.data!,
        batches: epochBatches,
        trainImages: epochImages,
        testImages: epochTest,
        seed: 42,
        window: steadyWindow,
        tolerance: tolerance / 100,
        torch: !values['no-torch'],
        ...(wasmThreads[0] != null ? { threads: wasmThreads[0] } : {}),
        convolutions,
        timeoutMs,
        workerScript: SELF,
      },
      (line) => console.log(line),
    );
    console.log('');
    console.log(formatEpochReport(epochRows));
  }

  const outPath = userPath(values.out!);
  writeReport(outPath, {
    created: new Date().toISOString(),
    preset,
    config,
    flops_per_image: { forward: flops.forward, backward: flops.backward, train_step: flops.trainStep },
    machine: { ...machine, gemm_scaling: gemmScaling },
    machine_at_end: { loadAverages: machineInfo().loadAverages },
    rows,
    ratios: ratios(rows),
    contention: contention(rows),
    epoch: values['no-epoch']
      ? null
      : {
          data: values.data,
          train_images: epochImages,
          test_images: epochTest,
          steady_window: steadyWindow,
          steady_tolerance: tolerance / 100,
          rows: epochRows,
        },
  });
  console.log(`\nwrote ${outPath}`);
}

if (process.argv.includes('--worker')) {
  // One job per process: a step job (train-step.ts) or an epoch job (train-epoch.ts).
  process.once('message', (job: Job | EpochJob) => {
    const run = 'kind' in job && job.kind === 'epoch' ? runEpochWorker(job) : runStepWorker(job as Job);
    (run as Promise<unknown>).then(
      (result) => process.send!(result, () => process.exit(0)),
      (e: unknown) => {
        const message = e instanceof Error ? e.message : String(e);
        process.send!({ error: message }, () => process.exit(0));
      },
    );
  });
} else {
  await runBench(import.meta.url, main);
}
