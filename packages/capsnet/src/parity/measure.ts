/**
 * One backend's share of the parity check, written against the runtime's Classifier only, so the same code runs
 * in a Node worker (ORT-node, ORT-web wasm) and in the browser page (ORT-web wasm/webgpu). No tfjs here.
 */
import type { Classifier } from '@capsnet-onnx/runtime';

export interface MeasureRequest {
  /** Flat NHWC images in [0,1], `count` of them. */
  images: Float32Array;
  count: number;
  /** Masked capsules for the decoder check (the reference's, masked by its longest capsule), `count` of them. */
  masked: Float32Array;
  /** Timed batch-1 classify calls (after one untimed warm-up). */
  latencyRuns: number;
}

export interface MeasureResult {
  device: string;
  deviceReport: string;
  count: number;
  lengths: Float32Array;
  capsules: Float32Array;
  reconstruction: Float32Array;
  /** decode(masked) of the separate decoder model. */
  decoded: Float32Array;
  labels: number[];
  latenciesMs: number[];
  loadMs: number;
}

const now = () => (globalThis.performance ?? Date).now();

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

export async function measure(model: Classifier, request: MeasureRequest, loadMs: number): Promise<MeasureResult> {
  const pixels = request.images.length / request.count;
  const image = (i: number) => request.images.subarray(i * pixels, (i + 1) * pixels);
  await model.classify(image(0)); // warm-up: kernel selection, shader compilation
  const results = await model.classify(request.images.subarray(0, request.count * pixels));
  const decoded = await model.decode(request.masked);
  const latenciesMs: number[] = [];
  for (let r = 0; r < request.latencyRuns; r++) {
    const start = now();
    await model.classify(image(r % request.count));
    latenciesMs.push(now() - start);
  }
  return {
    device: model.device,
    deviceReport: model.deviceReport,
    count: request.count,
    lengths: concat(results.map((r) => r.lengths)),
    capsules: concat(results.map((r) => r.capsules)),
    reconstruction: concat(results.map((r) => r.reconstruction)),
    decoded: concat(decoded),
    labels: results.map((r) => r.label),
    latenciesMs,
    loadMs,
  };
}

export interface SpeedResult {
  /** Batch-1 classify times (after one untimed warm-up). */
  latenciesMs: number[];
  /** Whole-batch classify times (after one untimed warm-up). */
  batchMs: number[];
}

/** Batch-1 latency and batch throughput of a classifier, for the benchmarks (Node worker and browser page alike). */
export async function timeClassifier(model: { classify(images: Float32Array): Promise<unknown> }, one: Float32Array, batch: Float32Array, latencyRuns: number,
  throughputRuns: number): Promise<SpeedResult> {
  const timed = async (runs: number, input: Float32Array) => {
    await model.classify(input);
    const out: number[] = [];
    for (let r = 0; r < runs; r++) {
      const start = now();
      await model.classify(input);
      out.push(now() - start);
    }
    return out;
  };
  return { latenciesMs: await timed(latencyRuns, one), batchMs: await timed(throughputRuns, batch) };
}
