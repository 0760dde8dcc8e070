/**
 * How far this machine's cores add up on native GEMMs: one onnxruntime-node MatMul on one thread, timed alone and
 * then as `cores` copies in separate processes at once. Two vCPUs that share one physical core, or a memory or
 * power limit, show here as a scaling well under the core count; the bench prints it next to the training step's
 * CPU/wall ratio, which cannot buy more than this on GEMM-bound work.
 *
 * Worker mode (forked by parallelGemmScaling): waits for the start time it is sent, multiplies 1024x1024 matrices
 * for `seconds`, replies with its GFLOP/s.
 */
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { forkWorker } from '../packages/capsnet/src/parity/fork.ts';
import { GraphBuilder, buildModel } from '../packages/capsnet/src/export/graph-builder.ts';
import { encodeModel } from '../packages/capsnet/src/export/onnx-schema.ts';

const SIZE = 1024;
const SELF = fileURLToPath(import.meta.url);
const WORKER_FLAG = '--gemm-probe-worker';

interface ProbeJob {
  startAt: number;
  seconds: number;
}

export interface GemmScaling {
  /** GFLOP/s of one single-threaded GEMM with the machine otherwise idle. */
  alone_gflops: number;
  /** GFLOP/s of each of `copies` such GEMMs run at once, one process each. */
  together_gflops: number[];
  copies: number;
  /** sum(together) / alone: 2.0 where two cores add up fully. */
  scaling: number;
}

async function runProbe(job: ProbeJob): Promise<{ gflops: number }> {
  const b = new GraphBuilder('gemm-probe');
  const x = b.input('a', [SIZE, SIZE], 'A');
  const y = b.input('b', [SIZE, SIZE], 'B');
  b.output(b.matMul(x, y, { output: 'c' }), [SIZE, SIZE], 'C');
  const model = encodeModel(buildModel(b.graph(), { producerName: 'capsnet-onnx bench', producerVersion: '1' }));
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const matrix = () =>
    new ort.Tensor(
      'float32',
      Float32Array.from({ length: SIZE * SIZE }, (_, i) => (i % 97) / 97),
      [SIZE, SIZE],
    );
  const feeds = { a: matrix(), b: matrix() };
  await session.run(feeds);
  await new Promise((r) => setTimeout(r, Math.max(0, job.startAt - Date.now())));
  const start = performance.now();
  let runs = 0;
  while (performance.now() - start < job.seconds * 1000) {
    await session.run(feeds);
    runs++;
  }
  const seconds = (performance.now() - start) / 1000;
  await session.release();
  return { gflops: (2 * SIZE ** 3 * runs) / seconds / 1e9 };
}

/** One single-threaded GEMM alone, then `copies` at once (default: one per core). Null where a probe failed. */
export async function parallelGemmScaling(copies: number, seconds = 4): Promise<GemmScaling | null> {
  const run = async (n: number) => {
    const job: ProbeJob = { startAt: Date.now() + 4000, seconds };
    const replies = await Promise.all(Array.from({ length: n }, () => forkWorker<{ gflops: number }>(SELF, [WORKER_FLAG], job, process.env, 60_000)));
    return replies.map((r) => ('error' in r ? null : r.gflops));
  };
  const [alone] = await run(1);
  const together = await run(copies);
  if (alone == null || together.some((g) => g == null)) return null;
  const sum = (together as number[]).reduce((a, b) => a + b, 0);
  return { alone_gflops: alone, together_gflops: together as number[], copies, scaling: sum / alone };
}

// Its own flag: bench/train.ts imports this module, and its workers are forked with '--worker'.
if (process.argv.includes(WORKER_FLAG)) {
  process.once('message', async (job: ProbeJob) => {
    try {
      process.send!(await runProbe(job));
    } catch (e) {
      process.send!({ error: e instanceof Error ? e.message : String(e) });
    }
    process.disconnect();
  });
}
