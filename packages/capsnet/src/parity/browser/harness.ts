/**
 * The parity page's script (bundled by web/build.ts with @capsnet-onnx/runtime/web and onnxruntime-web). The
 * Node side (parity/browser.ts) drives it through `globalThis.capsnetHarness`. Also loaded by onnxruntime-web
 * as its pthread worker script, so the top level only defines things.
 */
import { CapsNet, describeAdapter, webGpuAdapterInfo, type DeviceRequest } from '@capsnet-onnx/runtime/web';
import { env as ortEnv } from 'onnxruntime-web';
import { measure, type MeasureResult, type SpeedResult, timeClassifier } from '../measure.ts';

export interface HarnessRun {
  device: DeviceRequest;
  modelUrl: string;
  inputsUrl: string;
  maskedUrl: string;
  count: number;
  latencyRuns: number;
  threads?: number;
}

type Encoded<T> = { [K in keyof T]: T[K] extends Float32Array ? string : T[K] };

function toBase64(array: Float32Array): string {
  const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

async function floats(url: string): Promise<Float32Array> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return new Float32Array(await response.arrayBuffer());
}

const harness = {
  async environment() {
    const info = await webGpuAdapterInfo();
    return {
      userAgent: navigator.userAgent,
      crossOriginIsolated: globalThis.crossOriginIsolated === true,
      hardwareConcurrency: navigator.hardwareConcurrency,
      webgpu: info ? describeAdapter(info) : null,
      probe: await CapsNet.probe(),
    };
  },

  async run(request: HarnessRun): Promise<Encoded<MeasureResult>> {
    const [images, masked] = await Promise.all([floats(request.inputsUrl), floats(request.maskedUrl)]);
    const start = performance.now();
    const model = await CapsNet.load(request.modelUrl, {
      device: request.device,
      threads: request.threads,
      maxBatch: 1024,
      // A named WebGPU must run every node itself: a partial CPU (wasm) fallback would not be WebGPU's parity.
      noCpuFallback: request.device === 'webgpu',
    });
    const loadMs = performance.now() - start;
    try {
      const pixels = images.length / Math.max(1, masked.length / (model.metadata.numClasses * model.metadata.digitDim));
      const result = await measure(
        model,
        {
          images: images.subarray(0, request.count * pixels),
          count: request.count,
          masked: masked.subarray(0, request.count * model.metadata.numClasses * model.metadata.digitDim),
          latencyRuns: request.latencyRuns,
        },
        loadMs,
      );
      return {
        ...result,
        lengths: toBase64(result.lengths),
        capsules: toBase64(result.capsules),
        reconstruction: toBase64(result.reconstruction),
        decoded: toBase64(result.decoded),
      };
    } finally {
      await model.dispose();
    }
  },

  /**
   * bench:infer's page rows: batch-1 latency and batch throughput on random images. onnxruntime-web fixes its
   * thread count at its first session, so the Node side opens a fresh page for each thread count.
   */
  async bench(request: {
    modelUrl: string;
    threads?: number;
    batch: number;
    pixels: number;
    latencyRuns: number;
    throughputRuns: number;
  }): Promise<SpeedResult & { deviceReport: string; threads: number; crossOriginIsolated: boolean }> {
    const model = await CapsNet.load(request.modelUrl, { device: 'wasm', threads: request.threads, maxBatch: request.batch });
    try {
      const random = (n: number) => Float32Array.from({ length: n }, () => Math.random());
      const speed = await timeClassifier(model, random(request.pixels), random(request.batch * request.pixels), request.latencyRuns, request.throughputRuns);
      return { ...speed, deviceReport: model.deviceReport, threads: ortEnv.wasm.numThreads ?? 1, crossOriginIsolated: globalThis.crossOriginIsolated === true };
    } finally {
      await model.dispose();
    }
  },
};

(globalThis as { capsnetHarness?: typeof harness }).capsnetHarness = harness;
