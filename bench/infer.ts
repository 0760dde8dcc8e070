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
 * FLOPs: multiply-adds count 2, from the config (conv1, primary caps, u_hat, routing sums, decoder); element-wise
 * work (squash, softmax, biases) is left out.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { type CapsNetConfig, derivedSizes, presetConfig, type PresetName, readModelMetadata } from '@capsnet-onnx/core';
import { existingPath, machineInfo, userPath, writeReport } from './report.ts';
import { describeWebGpuAdapter, forkWorker, webGpuWorkerEnv } from '../packages/capsnet/src/parity/fork.ts';
import { median } from '../packages/capsnet/src/parity/matrix.ts';
import { timeClassifier } from '../packages/capsnet/src/parity/measure.ts';
import { readEnv } from './env.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

export const BENCH_BACKENDS = [
  'ort-node-cpu-1t',
  'ort-node-cpu-2t',
  'ort-node-cuda',
  'ort-node-webgpu',
  'ort-web-wasm',
  'ort-web-wasm-mt',
  'page-wasm',
  'page-wasm-mt',
  'tfjs',
] as const;
/**
 * onnxruntime-web's wasm threads: the "-mt" rows ask for one per core; the others keep ORT's default, which is
 * half the cores (at most 4), so 1 on a 2-core machine. In the page (headless Chromium, cross-origin isolated)
 * ORT allows threads as in Node.
 */
const WASM_MT = new Set<string>(['ort-web-wasm-mt', 'page-wasm-mt']);
type BenchBackend = (typeof BENCH_BACKENDS)[number];

/** FLOPs of one image's forward pass (classify: encoder, routing, masked decoder). */
export function flopsPerImage(config: CapsNetConfig): number {
  const { conv1H, conv1W, primaryH, primaryW, numPrimaryCaps, pixels } = derivedSizes(config);
  const k = config.numClasses * config.digitDim;
  const conv1 = 2 * config.conv1Kernel ** 2 * config.inputChannels * config.conv1Filters * conv1H * conv1W;
  const primary = 2 * config.primaryKernel ** 2 * config.conv1Filters * config.primaryMaps * config.primaryDim * primaryH * primaryW;
  const uHat = 2 * numPrimaryCaps * config.primaryDim * k;
  // Each iteration: s_j = sum_i c_ij u_hat; all but the last: agreement u_hat . v_j.
  const routing = 2 * numPrimaryCaps * k * (2 * config.routingIterations - 1);
  const widths = [k, ...config.decoderHidden, pixels];
  let decoder = 0;
  for (let i = 0; i + 1 < widths.length; i++) decoder += 2 * widths[i]! * widths[i + 1]!;
  return conv1 + primary + uHat + routing + decoder;
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

function randomImages(count: number, pixels: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: count * pixels }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  });
}

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
  const one = randomImages(1, pixels, 1);
  const batch = randomImages(req.batch, pixels, 2);
  if (req.backend === 'tfjs') {
    const { initBackend } = await import('../packages/capsnet/src/train/backend.ts');
    const backend = await initBackend(readEnv('CAPSNET_BENCH_TFJS_BACKEND') as 'auto');
    const tf = backend.tf;
    const { forward, initParams } = await import('../packages/capsnet/src/train/model.ts');
    const { paramShapes } = await import('@capsnet-onnx/core');
    let params;
    if (req.checkpoint) {
      const { loadCheckpoint } = await import('../packages/capsnet/src/files/checkpoint.ts');
      const state = loadCheckpoint(req.checkpoint);
      params = Object.fromEntries(Object.entries(paramShapes(state.config)).map(([n, s]) => [n, tf.variable(tf.tensor(state.weights[n]!, s), false)]));
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
  if (req.backend === 'ort-web-wasm' || req.backend === 'ort-web-wasm-mt') {
    const { CapsNet } = await import('@capsnet-onnx/runtime/web');
    const threads = WASM_MT.has(req.backend) ? availableParallelism() : undefined;
    model = await CapsNet.load(readFileSync(req.modelPath), { device: 'wasm', maxBatch: req.batch, threads });
    const { env } = await import('onnxruntime-web');
    threadsNote = `, ${env.wasm.numThreads} thread${env.wasm.numThreads === 1 ? '' : 's'}${threads ? ' (one per core)' : " (ORT's default)"}`;
  } else {
    const { CapsNet } = await import('@capsnet-onnx/runtime/node');
    const device = req.backend === 'ort-node-cuda' ? 'cuda' : req.backend === 'ort-node-webgpu' ? 'webgpu' : 'cpu';
    const reason = (await CapsNet.probe())[device];
    if (reason) return { skipped: reason };
    const threads = req.backend === 'ort-node-cpu-1t' ? 1 : req.backend === 'ort-node-cpu-2t' ? 2 : undefined;
    try {
      model = await CapsNet.load(req.modelPath, { device, threads, maxBatch: req.batch });
    } catch (e) {
      if (device === 'webgpu' && /adapter/i.test((e as Error).message)) return { skipped: (e as Error).message };
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
  const decoder = req.modelPath.replace(/(\.onnx)?$/i, '.decoder.onnx');
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
  const tf = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-backend-cpu');
  await tf.setBackend('cpu');
  const { initParams } = await import('../packages/capsnet/src/train/model.ts');
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
  const { values } = parseArgs({
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
  });
  const log = (line: string) => console.log(line);
  values.out = userPath(values.out!);
  const prepared = values.model
    ? { model: existingPath(values.model, '--model'), checkpoint: values.checkpoint && existingPath(values.checkpoint, '--checkpoint') }
    : await prepareModel(values.preset as PresetName, log);
  const metadata = readModelMetadata(readFileSync(prepared.model));
  const config = { ...presetConfig('paper'), ...metadata.config } as CapsNetConfig;
  const checkpoint = prepared.checkpoint ?? (existsSync(join(dirname(prepared.model), 'checkpoint.bin')) ? dirname(prepared.model) : undefined);
  const flops = flopsPerImage(config);
  const batch = Number(values.batch);
  const latencyRuns = Number(values['latency-runs']);
  const throughputRuns = Number(values['throughput-runs']);
  const selected = values.backends ? values.backends.split(',').map((s) => s.trim()) : [...BENCH_BACKENDS];
  const unknown = selected.filter((b) => !(BENCH_BACKENDS as readonly string[]).includes(b));
  if (unknown.length) throw new Error(`unknown backend(s) ${unknown.join(', ')}: choose from ${BENCH_BACKENDS.join(', ')}`);
  log(
    `bench:infer: ${prepared.model} (${metadata.inputHeight}x${metadata.inputWidth}x${metadata.inputChannels}, ` +
      `${(flops / 1e6).toFixed(1)} MFLOP per image); batch-1 median of ${latencyRuns} runs, batch-${batch} median of ${throughputRuns}`,
  );
  const rows: Row[] = [];
  for (const backend of selected as BenchBackend[]) {
    const gpu = backend === 'ort-node-webgpu' ? webGpuWorkerEnv() : null;
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
    const reply = backend.startsWith('page-')
      ? await benchInPage(req, WASM_MT.has(backend), Number(values.timeout) * 1000)
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
      routingIterations: config.routingIterations,
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
  await main();
}
