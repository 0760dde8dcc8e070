/**
 * `npm run bench:serve`: a bounded load on `capsnet serve` over loopback (127.0.0.1 only). For each server
 * configuration it starts the real CLI, sends a fixed number of classify requests (one real test digit each) from a
 * fixed number of concurrent clients, checks every answer against a direct runtime classify of the same image
 * (label equal, capsule lengths within 1e-4), stops the server with SIGTERM, and reports p50/p90/p99 latency and
 * throughput. Results go to bench-results/serve.json (written atomically: temp file + rename).
 *
 *   npm run bench:serve -- [--model model.onnx] [--requests 600] [--concurrency 16] [--device cpu] [--threads N] [--rounds 2]
 *
 * Each configuration's requests are split over --rounds rounds, run alternately (A B, B A), each on a fresh server.
 *
 * Without --model it uses the small test fixture (trained and exported once, cached under test-artifacts/).
 * Exit status 1 when any answer is wrong or any request fails.
 */
import { statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import type { Classification } from '@capsnet-onnx/runtime/node';
import { exportedSmallModel, startServeProcess } from '../test/support/serve.ts';
import { benchArgs, existingPath, machineInfo, percentile, runBench, userPath, writeReport } from './harness.ts';
import { loadMnistSample } from '../packages/capsnet/src/data/datasets.ts';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');
const { values: args } = benchArgs(
  import.meta.url,
  {
    options: {
      model: { type: 'string' },
      requests: { type: 'string', default: '600' },
      concurrency: { type: 'string', default: '16' },
      device: { type: 'string', default: 'cpu' },
      images: { type: 'string', default: '200' },
      rounds: { type: 'string', default: '2' },
      threads: { type: 'string' },
      out: { type: 'string', default: join(ROOT, 'bench-results', 'serve.json') },
    },
  },
  { requests: 'count', concurrency: 'count', images: 'count', rounds: 'count', threads: 'count' },
);

const REQUESTS = Number(args.requests);
const CONCURRENCY = Number(args.concurrency);
const DISTINCT = Number(args.images);
const ROUNDS = Number(args.rounds);
if (ROUNDS > REQUESTS) throw new Error('--rounds must not exceed --requests');
for (const [name, n] of [
  ['--requests', REQUESTS],
  ['--concurrency', CONCURRENCY],
  ['--images', DISTINCT],
  ['--rounds', ROUNDS],
] as const) {
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new Error(`${name} must be an integer from 1 to 100000`);
}

interface Config {
  name: string;
  maxBatch: number;
  batchWaitMs: number;
}
// The default policy, and batching off (every request its own run) as the baseline it has to beat.
const CONFIGS: Config[] = [
  { name: 'batched', maxBatch: 32, batchWaitMs: 2 },
  { name: 'unbatched', maxBatch: 1, batchWaitMs: 0 },
];

const r2 = (x: number) => Math.round(x * 100) / 100;

async function main() {
  const model = args.model ? existingPath(args.model, '--model') : resolve(await exportedSmallModel());
  args.out = userPath(args.out!);
  const { test: split } = loadMnistSample();
  const count = Math.min(DISTINCT, split.count);
  const pixels = 28 * 28;
  const images = Array.from({ length: count }, (_, i) => split.images.slice(i * pixels, (i + 1) * pixels));
  // JSON bodies built once: float32 values written as their exact decimal, so the server sees the same floats.
  const bodies = images.map((image) => JSON.stringify({ image: Array.from(image) }));

  const { CapsNet } = await import('@capsnet-onnx/runtime/node');
  const direct = await CapsNet.load(model, { device: 'cpu', maxBatch: 256 });
  const expected: Classification[] = [];
  for (let i = 0; i < count; i += 100) expected.push(...(await direct.classify(images.slice(i, i + 100))));
  const metadata = direct.metadata;
  await direct.dispose();

  console.log(
    `bench:serve: ${REQUESTS} requests x 1 image per configuration, ${CONCURRENCY} concurrent clients, device ${args.device}, ` +
      `model ${relative(ROOT, model)}; ${ROUNDS} alternating rounds (load average ${loadavg()[0]!.toFixed(2)})`,
  );
  const loadBefore = loadavg()[0]!;
  const rounds = new Map<string, Round[]>(CONFIGS.map((c) => [c.name, []]));
  // Alternate the configurations (A B, B A, ...) so a change in the machine's load hits both alike.
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? CONFIGS : [...CONFIGS].reverse();
    for (const config of order) {
      const share = Math.floor(REQUESTS / ROUNDS) + (round < REQUESTS % ROUNDS ? 1 : 0);
      rounds.get(config.name)!.push(await runRound(model, config, share, bodies, expected, round * REQUESTS));
    }
  }
  const results = CONFIGS.map((config) => {
    const parts = rounds.get(config.name)!;
    const latencies = parts.flatMap((p) => p.latencies).sort((a, b) => a - b);
    const failures = parts.flatMap((p) => p.failures);
    const wallS = parts.reduce((t, p) => t + p.wallS, 0);
    const runs = parts.reduce((t, p) => t + p.runs, 0);
    const items = parts.reduce((t, p) => t + p.items, 0);
    const result = {
      ...config,
      requests: REQUESTS,
      concurrency: CONCURRENCY,
      correct: REQUESTS - failures.length,
      failures: failures.length,
      p50Ms: r2(percentile(latencies, 50)),
      p90Ms: r2(percentile(latencies, 90)),
      p99Ms: r2(percentile(latencies, 99)),
      meanMs: r2(latencies.reduce((a, b) => a + b, 0) / latencies.length),
      throughputRps: r2(REQUESTS / wallS),
      wallS: r2(wallS),
      inferenceRuns: runs,
      meanBatch: r2(items / runs),
      largestBatch: Math.max(...parts.map((p) => p.largestRun)),
    };
    console.log(
      `  ${config.name.padEnd(9)} (max batch ${String(config.maxBatch).padStart(2)}, wait ${config.batchWaitMs} ms): ` +
        `p50 ${result.p50Ms} ms  p99 ${result.p99Ms} ms  ${result.throughputRps} req/s  ` +
        `${runs} runs (mean batch ${result.meanBatch})  ${failures.length ? `${failures.length} FAILED` : 'all answers correct'}`,
    );
    for (const f of failures.slice(0, 5)) console.log(`    ${f}`);
    return result;
  });

  const report = {
    benchmark: 'serve',
    date: new Date().toISOString(),
    host: { ...machineInfo(), loadAverageBefore: r2(loadBefore) },
    model: {
      path: relative(ROOT, model),
      bytes: statSync(model).size,
      dataset: metadata.dataset,
      input: [metadata.inputHeight, metadata.inputWidth, metadata.inputChannels],
    },
    device: args.device,
    threads: args.threads ? Number(args.threads) : `capsnet serve's default (cores - 1 = ${Math.max(1, cpus().length - 1)})`,
    load: { requests: REQUESTS, rounds: ROUNDS, concurrency: CONCURRENCY, imagesPerRequest: 1, distinctImages: count, target: '127.0.0.1' },
    check: 'every response: label equal to a direct onnxruntime-node classify of the same image, capsule lengths within 1e-4',
    results,
    batchedSpeedup: results.length === 2 ? r2(results[0]!.throughputRps / results[1]!.throughputRps) : null,
  };
  writeReport(args.out!, report);
  console.log(`wrote ${relative(ROOT, args.out!)}${report.batchedSpeedup ? ` (batching: ${report.batchedSpeedup}x the unbatched throughput)` : ''}`);
  if (results.some((r) => r.failures > 0)) process.exitCode = 1;
}

interface Round {
  latencies: number[];
  failures: string[];
  wallS: number;
  runs: number;
  items: number;
  largestRun: number;
}

/** One server process, one timed burst of `requests` requests; every answer checked against `expected`. */
async function runRound(model: string, config: Config, requests: number, bodies: string[], expected: Classification[], firstId: number): Promise<Round> {
  const threads = args.threads ? ['--threads', args.threads] : [];
  const server = await startServeProcess(model, [
    '--device',
    args.device!,
    '--max-batch',
    String(config.maxBatch),
    '--batch-wait-ms',
    String(config.batchWaitMs),
    ...threads,
  ]);
  if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(server.url)) throw new Error(`refusing to load ${server.url}: loopback only`);
  try {
    // Warm-up (not timed): opens the client's connections; the first runs of a session allocate.
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => send(server.url, bodies[i % bodies.length]!)));
    const before = (await (await fetch(`${server.url}/v1/stats`)).json()).classify;
    const latencies: number[] = [];
    const failures: string[] = [];
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < requests) {
          const i = firstId + next++;
          const k = i % bodies.length;
          const t0 = performance.now();
          let json: any;
          try {
            json = await send(server.url, bodies[k]!);
          } catch (e) {
            failures.push(`request ${i}: ${(e as Error).message}`);
            continue;
          }
          latencies.push(performance.now() - t0);
          const got = json.results?.[0];
          const want = expected[k]!;
          if (!got || got.label !== want.label) failures.push(`request ${i} (image ${k}): label ${got?.label}, direct classify says ${want.label}`);
          else {
            const diff = Math.max(...got.lengths.map((v: number, c: number) => Math.abs(v - want.lengths[c]!)));
            if (diff > 1e-4) failures.push(`request ${i} (image ${k}): capsule lengths differ by ${diff}`);
          }
        }
      }),
    );
    const wallS = (performance.now() - started) / 1000;
    const after = (await (await fetch(`${server.url}/v1/stats`)).json()).classify;
    return { latencies, failures, wallS, runs: after.runs - before.runs, items: after.items - before.items, largestRun: after.largestRun };
  } finally {
    const code = await server.stop();
    if (code !== 0) console.log(`  server exited with ${code}:\n${server.output()}`);
  }
}

async function send(base: string, body: string): Promise<any> {
  const response = await fetch(`${base}/v1/classify?reconstruction=false`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const json = await response.json();
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${JSON.stringify(json)}`);
  return json;
}

await runBench(import.meta.url, main);
