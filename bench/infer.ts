/**
 * `npm run bench:infer`: batch-1 latency and batch-64 throughput of the exported CapsNet per backend, with the
 * tfjs forward pass for comparison. Prints a table and writes bench-results/infer.json (temp file + rename).
 *
 *   npm run bench:infer                                  # paper-size model (untrained weights: same cost), all backends
 *   npm run bench:infer -- --model m.onnx --checkpoint RUN_DIR --backends ort-node-cpu-1t,tfjs
 *
 * onnxruntime-web's wasm provider runs in Node (ort-web-wasm*) and in the page (page-wasm*: headless Chromium,
 * cross-origin isolated), each with ORT's default thread count (half the cores, at most 4) and with one thread per
 * core (-mt). CPU/wall (Node rows) is CPU time over wall time during the timed runs: the cores actually kept busy.
 *
 * Each backend runs in its own process (one ONNX Runtime or tfjs per process). WebGPU on a software adapter
 * (SwiftShader, where there is no GPU) takes seconds per image, so it gets small counts there.
 * FLOPs: the core's count of one image's forward pass (`countFlops` in packages/core/src/flops.ts: multiply-adds
 * count 2; element-wise work such as squash, softmax and biases is left out).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type CapsNetConfig, countFlops, presetConfig, type PresetName, readModelMetadata, decoderPathFor } from '@capsnet-onnx/core';
import type { DeviceName } from '@capsnet-onnx/runtime';
import { benchArgs, existingPath, machineInfo, median, runBench, seededUniform, userPath, writeReport } from './harness.ts';
import { describeWebGpuAdapter, forkWorker, webGpuWorkerEnv } from '../packages/capsnet/src/parity/fork.ts';
import { timeClassifier } from '../packages/capsnet/src/parity/measure.ts';
import { type BenchTarget, benchTargets } from '../packages/capsnet/src/parity/devices.ts';
import { readEnv } from './env.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

/**
 * The rows, from the runtime's device table (parity/devices.ts's benchTargets): ort-node-cpu-1t, ort-node-cpu-2t,
 * ort-node-cuda, ort-node-webgpu, ort-web-wasm, ort-web-wasm-mt, page-wasm, page-wasm-mt, tfjs today. onnxruntime-web's
 * wasm threads: the "-mt" rows ask for one per core; the others keep ORT's default, which is half the cores (at most
 * 4), so 1 on a 2-core machine. In the page (headless Chromium, cross-origin isolated) ORT allows threads as in Node.
 */
export const BENCH_TARGETS: readonly BenchTarget[] = benchTargets();
export const BENCH_BACKENDS: readonly string[] = BENCH_TARGETS.map((t) => t.name);
type BenchBackend = string;

function targetOf(name: string): BenchTarget {
  const target = BENCH_TARGETS.find((t) => t.name === name);
  if (!target) throw new Error(`unknown backend ${name}: choose from ${BENCH_BACKENDS.join(', ')}`);
  return target;
}

/** A target's thread count: one per core for `per-core`, else its own (undefined: ONNX Runtime's default). */
function threadsOf(target: BenchTarget): number | undefined {
  return target.threads === 'per-core' ? availableParallelism() : target.threads;
}

interface BenchRequest {
  backend: BenchBackend;
  modelPath: string;
  checkpoint?: string;
  config: CapsNetConfig;
  batch: number;
  latencyRuns: number;
  throughputRuns: number;
}

interface BenchResult {
  ranOn: string;
  latenciesMs: number[];
  batchMs: number[];
  /** CPU seconds per wall second over the timed runs (all threads): how many cores the backend kept busy. */
  cpuPerWall?: number;
}

type Reply = { ok: BenchResult } | { skipped: string } | { error: string };

function availableParallelism(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

function cpuPerWall(cpu0: NodeJS.CpuUsage, t0: number): number {
  const c = process.cpuUsage(cpu0);
  return (c.user + c.system) / 1000 / (performance.now() - t0);
}

/** Worker side: one backend, warm-up, then timed batch-1 and batch-N runs. */
async function benchInWorker(req: BenchRequest): Promise<Reply> {
  const pixels = req.config.inputHeight * req.config.inputWidth * req.config.inputChannels;
  const one = seededUniform(pixels, 1);
  const batch = seededUniform(req.batch * pixels, 2);
  const target = targetOf(req.backend);
  if (!target.row) {
    const { initBackend } = await import('../packages/capsnet/src/train/backends/backend.ts');
    const backend = await initBackend(readEnv('CAPSNET_BENCH_TFJS_BACKEND') as 'auto');
    const tf = backend.tf;
    const { forward, initParams } = await import('../packages/capsnet/src/model/capsnet.ts');
    const { paramShapes } = await import('@capsnet-onnx/core');
    let params;
    if (req.checkpoint) {
      const { loadCheckpoint } = await import('../packages/capsnet/src/files/checkpoint.ts');
      const state = loadCheckpoint(req.checkpoint);
      const { variablesFromWeights } = await import('../packages/capsnet/src/model/layers.ts');
      params = variablesFromWeights(paramShapes(state.config), state.weights, false);
    } else params = initParams(req.config, 0);
    const c = req.config;
    const run = async (images: Float32Array, n: number) => {
      const [l, r] = tf.tidy(() => {
        const out = forward(params, tf.tensor4d(images, [n, c.inputHeight, c.inputWidth, c.inputChannels]), c);
        return [out.lengths, out.reconstruction];
      });
      await l!.data();
      await r!.data();
      tf.dispose([l!, r!]);
    };
    const cpu0 = process.cpuUsage(),
      t0 = performance.now();
    const speed = await timeClassifier({ classify: (x: Float32Array) => run(x, x.length / pixels) }, one, batch, req.latencyRuns, req.throughputRuns);
    return { ok: { ranOn: `tfjs ${backend.name}: ${backend.detail}`, ...speed, cpuPerWall: cpuPerWall(cpu0, t0) } };
  }
  let model;
  let threadsNote = '';
  const device = target.row.name as DeviceName;
  const threads = threadsOf(target);
  if (target.row.runtime === 'web') {
    const { CapsNet } = await import('@capsnet-onnx/runtime/web');
    model = await CapsNet.load(readFileSync(req.modelPath), { device, maxBatch: req.batch, threads });
    const { env } = await import('onnxruntime-web');
    threadsNote = `, ${env.wasm.numThreads} thread${env.wasm.numThreads === 1 ? '' : 's'}${threads ? ' (one per core)' : " (ORT's default)"}`;
  } else {
    const { CapsNet } = await import('@capsnet-onnx/runtime/node');
    const reason = (await CapsNet.probe())[device];
    if (reason) return { skipped: reason };
    try {
      model = await CapsNet.load(req.modelPath, { device, threads, maxBatch: req.batch });
    } catch (e) {
      // No WebGPU adapter here is this machine's hardware: a skip with the reason.
      if (target.row.processor === 'gpu' && /adapter/i.test((e as Error).message)) return { skipped: (e as Error).message };
      throw e;
    }
  }
  try {
    const cpu0 = process.cpuUsage(),
      t0 = performance.now();
    const speed = await timeClassifier(model, one, batch, req.latencyRuns, req.throughputRuns);
    return { ok: { ranOn: model.deviceReport + threadsNote, ...speed, cpuPerWall: cpuPerWall(cpu0, t0) } };
  } finally {
    await model.dispose();
  }
}

/** The page rows: onnxruntime-web wasm in headless Chromium (parity/browser.ts), threads as `mt` says. */
async function benchInPage(req: BenchRequest, mt: boolean, timeoutMs: number): Promise<Reply> {
  const { benchWasmInChromium } = await import('../packages/capsnet/src/parity/browser.ts');
  const decoder = decoderPathFor(req.modelPath);
  const pixels = req.config.inputHeight * req.config.inputWidth * req.config.inputChannels;
  const [reply] = await benchWasmInChromium(
    req.modelPath,
    decoder,
    [
      {
        // One per core of the page's machine (navigator.hardwareConcurrency there; the same machine here).
        threads: mt ? availableParallelism() : undefined,
        batch: req.batch,
        pixels,
        latencyRuns: req.latencyRuns,
        throughputRuns: req.throughputRuns,
      },
    ],
    timeoutMs,
  );
  if (!reply || !('ok' in reply)) return reply ?? { error: 'no reply from the page' };
  const r = reply.ok;
  const threads = `${r.threads} thread${r.threads === 1 ? '' : 's'}${mt ? ' (one per core)' : " (ORT's default)"}`;
  return {
    ok: {
      ranOn: `${r.deviceReport} in ${r.browser}, ${threads}, crossOriginIsolated=${r.crossOriginIsolated}`,
      latenciesMs: r.latenciesMs,
      batchMs: r.batchMs,
    },
  };
}

interface Row {
  backend: string;
  ranOn: string;
  status: 'ok' | 'skipped' | 'error';
  reason?: string;
  batch1Ms?: number;
  batch1ImagesPerS?: number;
  batch?: number;
  batchMs?: number;
  imagesPerS?: number;
  gflops?: number;
  latenciesMs?: number[];
  batchRunsMs?: number[];
  /** CPU seconds per wall second over the timed runs (Node workers): how many cores the backend kept busy. */
  cpuPerWall?: number;
}

/** A paper- or small-size model with seeded untrained weights (inference cost does not depend on the values). */
async function prepareModel(preset: PresetName, log: (l: string) => void): Promise<{ model: string; checkpoint: string }> {
  const dir = join(ROOT, 'bench-results', 'models', preset);
  const model = join(dir, 'model.onnx');
  if (existsSync(model) && existsSync(join(dir, 'checkpoint.bin'))) return { model, checkpoint: dir };
  log(`bench: writing an untrained ${preset} checkpoint and exporting it to ${model}`);
  // The project's way to the cpu backend: without tfjs's "install the node backend" banner.
  const { setCpuBackend } = await import('../packages/capsnet/src/train/backends/backend.ts');
  await setCpuBackend();
  const { initParams } = await import('../packages/capsnet/src/model/capsnet.ts');
  const { saveCheckpoint } = await import('../packages/capsnet/src/files/checkpoint.ts');
  const config = presetConfig(preset);
  const weights: Record<string, Float32Array> = {};
  for (const [name, v] of Object.entries(initParams(config, 1))) weights[name] = (await v.data()) as Float32Array;
  mkdirSync(dir, { recursive: true });
  saveCheckpoint(dir, {
    config,
    epoch: 0,
    step: 0,
    seed: 1,
    dataset: 'mnist-sample',
    classLabels: Array.from({ length: 10 }, (_, i) => String(i)),
    backend: 'cpu',
    metrics: [],
    run: { batchSize: 1 },
    weights,
    optimizer: { m: {}, v: {} },
    producer: 'capsnet-onnx bench-infer',
  });
  const { execa } = await import('execa');
  await execa('node', [join(ROOT, 'packages', 'capsnet', 'bin', 'capsnet.js'), 'export', dir, '-o', model], { cwd: ROOT, stdio: 'inherit' });
  return { model, checkpoint: dir };
}

const num = (x: number | undefined, digits = 1) => (x === undefined || !Number.isFinite(x) ? '-' : x >= 1000 ? x.toFixed(0) : x.toFixed(digits));

function table(rows: Row[]): string {
  const header = ['backend', 'batch-1 ms', 'batch-1 img/s', 'batch', 'batch ms', 'img/s', 'GFLOP/s', 'CPU/wall', 'ran on / reason'];
  const body = rows.map((r) => [
    r.backend,
    num(r.batch1Ms, 2),
    num(r.batch1ImagesPerS),
    r.batch ? String(r.batch) : '-',
    num(r.batchMs),
    num(r.imagesPerS),
    num(r.gflops, 2),
    num(r.cpuPerWall, 2),
    r.status === 'ok' ? r.ranOn : `${r.status}: ${r.reason}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => (i === header.length - 1 ? 0 : row[i]!.length))));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(header), line(widths.map((w, i) => '-'.repeat(i === widths.length - 1 ? 15 : w))), ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  const { values } = benchArgs(
    import.meta.url,
    {
      options: {
        model: { type: 'string' },
        checkpoint: { type: 'string' },
        preset: { type: 'string', default: 'paper' },
        backends: { type: 'string' },
        batch: { type: 'string', default: '64' },
        'latency-runs': { type: 'string', default: '20' },
        'throughput-runs': { type: 'string', default: '3' },
        out: { type: 'string', default: join(ROOT, 'bench-results', 'infer.json') },
        timeout: { type: 'string', default: '600' },
      },
    },
    { batch: 'count', 'latency-runs': 'count', 'throughput-runs': 'count', timeout: 'seconds' },
  );
  const log = (line: string) => console.log(line);
  values.out = userPath(values.out!);
  const prepared = values.model
    ? { model: existingPath(values.model, '--model'), checkpoint: values.checkpoint && existingPath(values.checkpoint, '--checkpoint') }
    : await prepareModel(values.preset as PresetName, log);
  const metadata = readModelMetadata(readFileSync(prepared.model));
  const config = metadata.config;
  const checkpoint = prepared.checkpoint ?? (existsSync(join(dirname(prepared.model), 'checkpoint.bin')) ? dirname(prepared.model) : undefined);
  const flops = countFlops(config).forward.total;
  const batch = Number(values.batch);
  const latencyRuns = Number(values['latency-runs']);
  const throughputRuns = Number(values['throughput-runs']);
  const selected = values.backends ? values.backends.split(',').map((s) => s.trim()) : [...BENCH_BACKENDS];
  const unknown = selected.filter((b) => !BENCH_BACKENDS.includes(b));
  if (unknown.length) throw new Error(`unknown backend(s) ${unknown.join(', ')}: choose from ${BENCH_BACKENDS.join(', ')}`);
  log(
    `bench:infer: ${prepared.model} (${metadata.inputHeight}x${metadata.inputWidth}x${metadata.inputChannels}, ` +
      `${(flops / 1e6).toFixed(1)} MFLOP per image); batch-1 median of ${latencyRuns} runs, batch-${batch} median of ${throughputRuns}`,
  );
  const rows: Row[] = [];
  for (const backend of selected as BenchBackend[]) {
    const target = targetOf(backend);
    // onnxruntime-node's WebGPU (Dawn over Vulkan) needs its Vulkan variables at process start.
    const gpu = target.row?.provider === 'node-webgpu' ? webGpuWorkerEnv() : null;
    if (gpu) {
      const adapter = await describeWebGpuAdapter(gpu.env);
      if (adapter) gpu.note = `Dawn adapter: ${adapter}; ${gpu.note}`;
    }
    // A software WebGPU adapter takes seconds per image: a few runs at a small batch.
    const small = gpu?.software ?? false;
    const req: BenchRequest = {
      backend,
      modelPath: prepared.model,
      checkpoint,
      config,
      batch: small ? Math.min(batch, 4) : batch,
      latencyRuns: small ? Math.min(latencyRuns, 2) : latencyRuns,
      throughputRuns: small ? 1 : throughputRuns,
    };
    log(`${backend}: running${gpu ? ` (${gpu.note})` : ''}...`);
    const started = Date.now();
    const reply =
      target.host === 'chromium'
        ? await benchInPage(req, target.threads === 'per-core', Number(values.timeout) * 1000)
        : await forkWorker<Reply>(SELF, ['--worker'], req, gpu?.env ?? process.env, Number(values.timeout) * 1000);
    if ('ok' in reply) {
      const b1 = median(reply.ok.latenciesMs);
      const bm = median(reply.ok.batchMs);
      const ips = (req.batch * 1000) / bm;
      rows.push({
        backend,
        ranOn: [reply.ok.ranOn, gpu?.note].filter(Boolean).join('; '),
        status: 'ok',
        batch1Ms: b1,
        batch1ImagesPerS: 1000 / b1,
        batch: req.batch,
        batchMs: bm,
        imagesPerS: ips,
        gflops: (ips * flops) / 1e9,
        latenciesMs: reply.ok.latenciesMs,
        batchRunsMs: reply.ok.batchMs,
        ...(reply.ok.cpuPerWall != null ? { cpuPerWall: reply.ok.cpuPerWall } : {}),
      });
    } else if ('skipped' in reply) rows.push({ backend, ranOn: '', status: 'skipped', reason: reply.skipped });
    else rows.push({ backend, ranOn: '', status: 'error', reason: reply.error });
    log(`${backend}: ${rows.at(-1)!.status} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  log('');
  log(table(rows));
  const report = {
    model: prepared.model,
    config: {
      inputHeight: config.inputHeight,
      inputWidth: config.inputWidth,
      inputChannels: config.inputChannels,
      conv1Filters: config.conv1Filters,
      primaryMaps: config.primaryMaps,
      routingIterations: config.routing.iterations,
    },
    flopsPerImage: flops,
    batch,
    latencyRuns,
    throughputRuns,
    machine: machineInfo(),
    date: new Date().toISOString(),
    rows,
  };
  writeReport(values.out!, report);
  log(`\nwrote ${values.out}`);
}

if (process.argv.includes('--worker')) {
  process.once('message', async (message) => {
    let reply: Reply;
    try {
      reply = await benchInWorker(message as BenchRequest);
    } catch (e) {
      reply = { error: (e as Error).message };
    }
    process.send!(reply, () => process.exit(0));
  });
} else if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runBench(import.meta.url, main);
}
