/**
 * A parity device in its own process (forked by parity/run.ts with advanced serialization): one ONNX Runtime
 * per process, its own environment (WebGPU's Vulkan variables must be set at process start), and a crash or a
 * hang stays contained.
 */
import { readFileSync } from 'node:fs';
import type { Classifier, DeviceName } from '@capsnet-onnx/runtime';
import { type ParityDevice, parityDevices } from './devices.ts';
import { measure, type MeasureRequest, type MeasureResult } from './measure.ts';

export interface WorkerRequest {
  /** A parity device run in Node (`node-<device>`, see parity/devices.ts). */
  device: string;
  modelPath: string;
  decoderPath: string;
  request: MeasureRequest;
  threads?: number;
}

export type WorkerReply = { ok: MeasureResult } | { skipped: string } | { error: string };

async function open(req: WorkerRequest, target: ParityDevice): Promise<{ model: Classifier; loadMs: number } | { skipped: string }> {
  const start = performance.now();
  const device = target.row.name as DeviceName;
  if (target.row.runtime === 'web') {
    // onnxruntime-web in Node: loaded from bytes, as a page would.
    const { CapsNet } = await import('@capsnet-onnx/runtime/web');
    const model = await CapsNet.load(readFileSync(req.modelPath), {
      device,
      decoder: readFileSync(req.decoderPath),
      threads: req.threads,
      maxBatch: 1024,
    });
    return { model, loadMs: performance.now() - start };
  }
  const { CapsNet } = await import('@capsnet-onnx/runtime/node');
  const reason = (await CapsNet.probe())[device];
  if (reason) return { skipped: reason };
  const gpu = target.row.processor === 'gpu';
  try {
    // GPU devices must run every node themselves: a partial CPU fallback would not be that device's parity.
    const model = await CapsNet.load(req.modelPath, {
      device,
      decoder: req.decoderPath,
      threads: req.threads,
      maxBatch: 1024,
      noCpuFallback: gpu,
    });
    return { model, loadMs: performance.now() - start };
  } catch (e) {
    // No WebGPU adapter, or one without shader-f16 for an fp16-compute model, is this machine's hardware, like
    // CUDA's missing driver: not runnable here, a skip with the reason (printed in the matrix).
    if (gpu && /adapter/i.test((e as Error).message)) return { skipped: (e as Error).message };
    throw e;
  }
}

process.once('message', async (message) => {
  const req = message as WorkerRequest;
  let reply: WorkerReply;
  try {
    const target = parityDevices().find((d) => d.name === req.device && d.host === 'node');
    if (!target) throw new Error(`${req.device} is not a parity device that runs in Node`);
    const opened = await open(req, target);
    if ('skipped' in opened) reply = opened;
    else {
      try {
        const result = await measure(opened.model, req.request, opened.loadMs);
        // This process's peak resident set (maxRSS is in KiB): parity's memory, per device, in the report.
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
