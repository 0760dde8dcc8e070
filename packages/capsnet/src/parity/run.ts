/**
 * `capsnet parity`: the same inputs through the tfjs reference and every ONNX Runtime backend, one matrix.
 * Devices that run in Node run in forked worker processes (parity/worker.ts); the browser ones in headless Chromium.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decoderPathFor, readModelMetadata } from '@capsnet-onnx/core';
import { refuseToReplace, writeFileAtomic } from '../files/atomic.ts';
import { type BrowserRun, runInChromium } from './browser.ts';
import { describeWebGpuAdapter, forkWorker, webGpuWorkerEnv } from './fork.ts';
import { parityInputs } from './inputs.ts';
import { type BackendRow, type Tolerances, compare, formatMatrix, median, nearTies, tolerancesFor } from './matrix.ts';
import type { MeasureRequest } from './measure.ts';
import { PARITY_BATCH, loadReferenceFromModel, loadReferenceModel, referenceOutputs } from './reference.ts';
import { type CouplingCheck, couplingParity } from './coupling.ts';
import type { WorkerReply, WorkerRequest } from './worker.ts';
import { PARITY_DEVICES, parityDevices } from './devices.ts';

export interface ParityOptions {
  model: string;
  decoder?: string;
  /** Run directory (or checkpoint.bin) the model was exported from; default: the model's directory. */
  checkpoint?: string;
  /**
   * Instead of a checkpoint: the fp32 model file of the same export, whose weights the tfjs reference runs (a
   * pretrained model of @capsnet-onnx/mnist ships its files, not its checkpoint). Its recorded checkpoint must be `model`'s.
   */
  referenceModel?: string;
  /** Parity devices (parity/devices.ts, e.g. node-cpu, chromium-wasm); default: all. */
  devices?: readonly string[];
  /** @deprecated the old name of `devices`. */
  backends?: readonly string[];
  /** Devices whose skip is a failure (e.g. node-cuda on a GPU machine). */
  require?: readonly string[];
  digits?: number;
  random?: number;
  /** Inputs for the WebGPU backends (a software adapter is slow). */
  webgpuCount?: number;
  latencyRuns?: number;
  webgpuLatencyRuns?: number;
  timeoutS?: number;
  /** Also write the report there; an existing file is an OutputExistsError unless `overwrite`. */
  json?: string;
  overwrite?: boolean;
  log?: (line: string) => void;
}

export interface ParityReport {
  model: string;
  checkpoint: string;
  /** The model file's weight precision and compute precision, which set the tolerances. */
  precision: string;
  computePrecision: string;
  tolerances: Tolerances;
  inputs: string[];
  inputNote?: string;
  /** Reference near-ties: images whose two longest capsules are within tolerances.tieGap. */
  nearTies: Array<{ image: number; gap: number }>;
  /** The reference's argmax per input. */
  referenceLabels: number[];
  /** The routing the file unrolls (the reference ran it too) and its coupling coefficients against the reference's. */
  coupling: CouplingCheck;
  rows: BackendRow[];
  failures: string[];
  ok: boolean;
}

const isWebGpu = (b: string) => b.endsWith('webgpu');

export function parseDevices(list: readonly string[] | undefined): string[] {
  if (!list || list.length === 0 || (list.length === 1 && list[0] === 'all')) return [...PARITY_DEVICES];
  const unknown = list.filter((b) => !PARITY_DEVICES.includes(b));
  if (unknown.length) throw new Error(`unknown parity device(s) ${unknown.join(', ')}: choose from ${PARITY_DEVICES.join(', ')}`);
  return PARITY_DEVICES.filter((b) => list.includes(b));
}

function findCheckpoint(model: string, checkpoint: string | undefined): string {
  if (checkpoint) return checkpoint;
  const beside = dirname(resolve(model));
  if (existsSync(join(beside, 'checkpoint.bin'))) return beside;
  throw new Error(`no checkpoint beside ${model}: pass --checkpoint RUN_DIR (the run directory it was exported from)`);
}

async function workerEnv(backend: string): Promise<{ env: NodeJS.ProcessEnv; note: string }> {
  if (backend === 'node-webgpu') {
    const { env, note } = webGpuWorkerEnv();
    const adapter = await describeWebGpuAdapter(env);
    return { env, note: adapter ? `Dawn adapter: ${adapter}; ${note}` : note };
  }
  // cuBLAS and cuDNN use TF32 (10-bit mantissa) for float32 on Ampere and later by default, which alone exceeds
  // the tolerances: parity checks the float32 result.
  if (backend === 'node-cuda') return { env: { ...process.env, NVIDIA_TF32_OVERRIDE: '0' }, note: 'TF32 off (NVIDIA_TF32_OVERRIDE=0)' };
  return { env: process.env, note: '' };
}

export function runWorker(req: WorkerRequest, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<WorkerReply> {
  return forkWorker<WorkerReply>(fileURLToPath(new URL(`./worker.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url)), [], req, env, timeoutMs);
}

export async function runParity(options: ParityOptions): Promise<ParityReport> {
  const log = options.log ?? ((line: string) => console.log(line));
  if (options.json) refuseToReplace([options.json], options.overwrite, { option: 'json path', flag: '--json path' });
  const backends = parseDevices(options.devices ?? options.backends);
  const required = options.require?.length ? parseDevices(options.require) : [];
  const hostOf = (name: string) => parityDevices().find((d) => d.name === name)!;
  const model = resolve(options.model);
  if (!existsSync(model)) throw new Error(`model ${options.model} does not exist: create it with \`capsnet export RUN_DIR -o ${options.model}\``);
  const decoder = resolve(options.decoder ?? decoderPathFor(model));
  if (!existsSync(decoder)) throw new Error(`decoder ${decoder} does not exist: \`capsnet export\` writes it beside the model`);
  const timeoutMs = (options.timeoutS ?? 300) * 1000;
  const latencyRuns = options.latencyRuns ?? 20;
  const webgpuLatencyRuns = options.webgpuLatencyRuns ?? 2;

  const metadata = readModelMetadata(readFileSync(model));
  const tolerances = tolerancesFor(metadata.precision, metadata.computePrecision);
  const checkpoint = options.referenceModel
    ? await loadReferenceFromModel(options.referenceModel)
    : await loadReferenceModel(findCheckpoint(options.model, options.checkpoint));
  if (metadata.checkpointSha256 && metadata.checkpointSha256 !== checkpoint.sha256) {
    throw new Error(
      `${options.model} was exported from checkpoint sha256 ${metadata.checkpointSha256.slice(0, 12)}..., but ${checkpoint.path} is ` +
        `${checkpoint.sha256.slice(0, 12)}...: pass the run directory it came from, or re-export`,
    );
  }
  for (const key of ['inputHeight', 'inputWidth', 'inputChannels', 'numClasses', 'digitDim'] as const) {
    if (metadata[key] !== checkpoint.config[key]) {
      throw new Error(`${options.model} has ${key} ${metadata[key]} but the checkpoint has ${checkpoint.config[key]}: they are different models`);
    }
  }
  // The reference runs the file's routing: the weights do not depend on it, and `capsnet export --routing N`
  // re-exports them with another iteration count.
  const routing = { ...metadata.config.routing, iterations: metadata.routingIterations };
  const reference = { ...checkpoint, config: { ...checkpoint.config, routing } };
  const trained = checkpoint.config.routing;
  if (trained.algorithm !== routing.algorithm || trained.iterations !== routing.iterations) {
    log(
      `routing: the file unrolls ${routing.algorithm} x${routing.iterations} (trained with ` +
        `${trained.algorithm} x${trained.iterations}); the reference runs the file's`,
    );
  }

  const inputs = parityInputs(reference.config, reference.dataset, { digits: options.digits ?? 16, random: options.random ?? 6 });
  const webgpuCount = Math.min(inputs.count, options.webgpuCount ?? 4);
  log(`parity: ${options.model} (${metadata.precision} weights, ${metadata.computePrecision} compute) against ${reference.path} (tfjs cpu reference)`);
  log(
    `inputs: ${inputs.count} (${inputs.kinds.filter((k) => !k.startsWith('random') && k !== 'zeros' && k !== 'ones').length} real test images, ` +
      `${inputs.kinds.filter((k) => k.startsWith('random')).length} random, all-zero, all-one); WebGPU backends take the first ${webgpuCount}` +
      (inputs.note ? `; ${inputs.note}` : ''),
  );
  const ref = await referenceOutputs(reference, inputs.images, inputs.count, latencyRuns);
  const rows: BackendRow[] = [
    {
      backend: 'tfjs (reference)',
      ranOn: `${ref.backend}, float32`,
      status: 'reference',
      count: inputs.count,
      medianMs: median(ref.latenciesMs),
      latenciesMs: ref.latenciesMs,
    },
  ];
  const pixels = inputs.images.length / inputs.count;
  const capsSize = reference.config.numClasses * reference.config.digitDim;
  const requestFor = (backend: string): MeasureRequest => {
    const count = isWebGpu(backend) ? webgpuCount : inputs.count;
    return {
      images: inputs.images.slice(0, count * pixels),
      count,
      masked: ref.masked.slice(0, count * capsSize),
      latencyRuns: isWebGpu(backend) ? webgpuLatencyRuns : latencyRuns,
      batchSize: PARITY_BATCH,
    };
  };

  for (const backend of backends.filter((b) => hostOf(b).host === 'node')) {
    const { env, note } = await workerEnv(backend);
    log(`${backend}: running${note ? ` (${note})` : ''}...`);
    const started = Date.now();
    const reply = await runWorker({ device: backend, modelPath: model, decoderPath: decoder, request: requestFor(backend) }, env, timeoutMs);
    rows.push(toRow(backend, reply, ref, note, tolerances));
    log(`${backend}: ${rows.at(-1)!.status} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }

  const browserBackends = backends.filter((b) => hostOf(b).host === 'chromium');
  if (browserBackends.length) {
    const runs: BrowserRun[] = browserBackends.map((b) => {
      const req = requestFor(b);
      return { device: hostOf(b).row.name as BrowserRun['device'], count: req.count, latencyRuns: req.latencyRuns };
    });
    log(`${browserBackends.join(', ')}: running in headless Chromium...`);
    const started = Date.now();
    let replies;
    try {
      replies = await runInChromium(model, decoder, inputs.images, ref.masked, runs, log, timeoutMs);
    } catch (e) {
      replies = runs.map(() => ({ error: `Chromium: ${(e as Error).message.split('\n')[0]}` }));
    }
    browserBackends.forEach((b, i) => {
      const reply = replies[i]!;
      rows.push(toRow(b, reply, ref, 'ok' in reply && reply.adapter ? `adapter: ${reply.adapter}` : '', tolerances));
    });
    log(`chromium: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }

  log('coupling: the routing coupling coefficients on node-cpu against the reference...');
  const coupling = await couplingParity(model, inputs.images, inputs.count, ref, tolerances.lengths);

  const failures: string[] = [];
  if (!coupling.ok) failures.push(`coupling: max |diff| ${coupling.maxAbs} > ${coupling.tolerance} (${routing.algorithm} routing x${routing.iterations})`);
  for (const row of rows) {
    if (row.status === 'fail' || row.status === 'error') failures.push(`${row.backend}: ${row.reason}`);
    if (row.status === 'skipped' && (required as string[]).includes(row.backend)) failures.push(`${row.backend} is required but was skipped: ${row.reason}`);
  }
  if (!rows.some((r) => r.status === 'pass')) failures.push('no ONNX Runtime backend ran');
  // The reference row's memory is this process's: the tfjs reference ran here (maxRSS is in KiB).
  rows[0]!.peakRssBytes = process.resourceUsage().maxRSS * 1024;
  const report: ParityReport = {
    model: options.model,
    checkpoint: ref.checkpointPath,
    precision: metadata.precision,
    computePrecision: metadata.computePrecision,
    tolerances,
    inputs: inputs.kinds,
    ...(inputs.note ? { inputNote: inputs.note } : {}),
    nearTies: nearTies(ref, tolerances),
    referenceLabels: ref.labels,
    coupling,
    rows,
    failures,
    ok: failures.length === 0,
  };
  if (options.json) {
    mkdirSync(dirname(resolve(options.json)), { recursive: true });
    writeFileAtomic(options.json, `${JSON.stringify(report, null, 2)}\n`);
  }
  return report;
}

function toRow(
  backend: string,
  reply: WorkerReply | { ok: import('./measure.ts').MeasureResult; adapter?: string | null },
  ref: Awaited<ReturnType<typeof referenceOutputs>>,
  note: string,
  tol: Tolerances,
): BackendRow {
  if ('skipped' in reply) return { backend, ranOn: '', status: 'skipped', reason: reply.skipped };
  if ('error' in reply) return { backend, ranOn: '', status: 'error', reason: reply.error };
  return compare(backend, [reply.ok.deviceReport, note].filter(Boolean).join('; '), reply.ok, ref, tol);
}

export function printReport(report: ParityReport, log: (line: string) => void = console.log): void {
  log('');
  const t = report.tolerances;
  log(formatMatrix(report.rows, report.nearTies, t));
  log('');
  log(
    `tolerances (${report.precision} weights, ${report.computePrecision ?? 'fp32'} compute): lengths <= ` +
      `${t.lengths}, capsules <= ${t.capsules}, reconstruction <= ${t.reconstruction}, ` +
      `argmax identical except near-ties (top two lengths within ${t.tieGap}); max |diff| against the ` +
      'tfjs float32 reference; median ms: batch-1 classify; peak MiB: the peak resident memory of the ' +
      'process that ran the row',
  );
  const c = report.coupling;
  log(
    `coupling (${c.routing.algorithm} routing x${c.routing.iterations}, ${c.ranOn}): max |diff| ` +
      `${c.maxAbs.toExponential(2)} <= ${c.tolerance}: ${c.ok ? 'pass' : 'FAIL'}`,
  );
  log(report.ok ? 'parity: OK' : `parity: FAILED\n  ${report.failures.join('\n  ')}`);
}
