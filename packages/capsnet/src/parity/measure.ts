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
  /** Images per classify and decode call (default 32, reference.ts's PARITY_BATCH): memory stays flat in `count`. */
  batchSize?: number;
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
  /** Peak resident memory of the process that ran it (Node workers: process.resourceUsage().maxRSS), bytes. */
  peakRssBytes?: number;
}

const now = () => (globalThis.performance ?? Date).now();

export async function measure(model: Classifier, request: MeasureRequest, loadMs: number): Promise<MeasureResult> {
  const { count } = request;
  const pixels = request.images.length / count;
  const image = (i: number) => request.images.subarray(i * pixels, (i + 1) * pixels);
  await model.classify(image(0)); // warm-up: kernel selection, shader compilation
  const m = model.metadata;
  const caps = m.numClasses * m.digitDim;
  const outPixels = m.inputHeight * m.inputWidth * m.inputChannels;
  const lengths = new Float32Array(count * m.numClasses);
  const capsules = new Float32Array(count * caps);
  const reconstruction = new Float32Array(count * outPixels);
  const decoded = new Float32Array(count * outPixels);
  const labels: number[] = [];
  // In batches: one run over every input would hold every image's intermediate tensors at once.
  const batchSize = request.batchSize ?? 32;
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const results = await model.classify({
      data: request.images.subarray(start * pixels, (start + n) * pixels),
      shape: [n, m.inputHeight, m.inputWidth, m.inputChannels],
    });
    results.forEach((r, i) => {
      lengths.set(r.lengths, (start + i) * m.numClasses);
      capsules.set(r.capsules, (start + i) * caps);
      reconstruction.set(r.reconstruction, (start + i) * outPixels);
      labels.push(r.longest); // the argmax, whether or not it passes the presence threshold
    });
    (await model.decode(request.masked.subarray(start * caps, (start + n) * caps))).forEach((r, i) => decoded.set(r, (start + i) * outPixels));
  }
  const latenciesMs: number[] = [];
  for (let r = 0; r < request.latencyRuns; r++) {
    const start = now();
    await model.classify(image(r % count));
    latenciesMs.push(now() - start);
  }
  return { device: model.device, deviceReport: model.deviceReport, count, lengths, capsules, reconstruction, decoded, labels, latenciesMs, loadMs };
}

export interface SpeedResult {
  /** Batch-1 classify times (after one untimed warm-up). */
  latenciesMs: number[];
  /** Whole-batch classify times (after one untimed warm-up). */
  batchMs: number[];
}

/** Batch-1 latency and batch throughput of a classifier, for the benchmarks (Node worker and browser page alike). */
export async function timeClassifier(
  model: { classify(images: Float32Array): Promise<unknown> } | Classifier,
  one: Float32Array,
  batch: Float32Array,
  latencyRuns: number,
  throughputRuns: number,
): Promise<SpeedResult> {
  // A runtime Classifier takes a batch with its shape only (it does not guess one from a flat array's length).
  const run = (input: Float32Array) => {
    if (!('metadata' in model)) return model.classify(input);
    const m = model.metadata;
    return model.classify({
      data: input,
      shape: [input.length / (m.inputHeight * m.inputWidth * m.inputChannels), m.inputHeight, m.inputWidth, m.inputChannels],
    });
  };
  const timed = async (runs: number, input: Float32Array) => {
    await run(input);
    const out: number[] = [];
    for (let r = 0; r < runs; r++) {
      const start = now();
      await run(input);
      out.push(now() - start);
    }
    return out;
  };
  return { latenciesMs: await timed(latencyRuns, one), batchMs: await timed(throughputRuns, batch) };
}
