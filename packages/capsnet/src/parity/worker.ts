/**
 * A parity backend in its own process (forked by parity/run.ts with advanced serialization): one ONNX Runtime
 * per process, its own environment (WebGPU's Vulkan variables must be set at process start), and a crash or a
 * hang stays contained.
 */
import { readFileSync } from 'node:fs';
import type { Classifier } from '@capsnet-onnx/runtime';
import { measure, type MeasureRequest, type MeasureResult } from './measure.ts';

export type NodeBackend = 'node-cpu' | 'node-cuda' | 'node-webgpu' | 'node-wasm';

export interface WorkerRequest {
  backend: NodeBackend;
  modelPath: string;
  decoderPath: string;
  request: MeasureRequest;
  threads?: number;
}

export type WorkerReply = { ok: MeasureResult } | { skipped: string } | { error: string };

async function open(req: WorkerRequest): Promise<{ model: Classifier; loadMs: number } | { skipped: string }> {
  const start = performance.now();
  if (req.backend === 'node-wasm') {
    const { CapsNet } = await import('@capsnet-onnx/runtime/web');
    const model = await CapsNet.load(readFileSync(req.modelPath), {
      device: 'wasm',
      decoder: readFileSync(req.decoderPath),
      threads: req.threads,
      maxBatch: 1024,
    });
    return { model, loadMs: performance.now() - start };
  }
  const { CapsNet } = await import('@capsnet-onnx/runtime/node');
  const device = req.backend.slice('node-'.length) as 'cpu' | 'cuda' | 'webgpu';
  const reason = (await CapsNet.probe())[device];
  if (reason) return { skipped: reason };
  try {
    // GPU devices must run every node themselves: a partial CPU fallback would not be that device's parity.
    const model = await CapsNet.load(req.modelPath, {
      device,
      decoder: req.decoderPath,
      threads: req.threads,
      maxBatch: 1024,
      noCpuFallback: device !== 'cpu',
    });
    return { model, loadMs: performance.now() - start };
  } catch (e) {
    // No WebGPU adapter, or one without shader-f16 for an fp16-compute model, is this machine's hardware, like
    // CUDA's missing driver: not runnable here, a skip with the reason (printed in the matrix).
    if (device === 'webgpu' && /adapter/i.test((e as Error).message)) return { skipped: (e as Error).message };
    throw e;
  }
}

process.once('message', async (message) => {
  const req = message as WorkerRequest;
  let reply: WorkerReply;
  try {
    const opened = await open(req);
    if ('skipped' in opened) reply = opened;
    else {
      try {
        const result = await measure(opened.model, req.request, opened.loadMs);
        // This process's peak resident set (maxRSS is in KiB): parity's memory, per backend, in the report.
        reply = { ok: { ...result, peakRssBytes: process.resourceUsage().maxRSS * 1024 } };
      } finally {
        await opened.model.dispose();
      }
    }
  } catch (e) {
    reply = { error: (e as Error).message };
  }
  process.send!(reply, () => process.exit(0));
});
