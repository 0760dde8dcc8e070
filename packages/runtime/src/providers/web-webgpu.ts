/**
 * onnxruntime-web, WebGPU execution provider (browser only: onnxruntime-web's Node build is wasm-only; in Node,
 * WebGPU is onnxruntime-node's, see node-webgpu.ts).
 */
import { defineProvider, explainGpuFailure, webGpuSessionOptions } from './provider.ts';

interface AdapterInfo {
  vendor?: string;
  architecture?: string;
  description?: string;
  isFallbackAdapter?: boolean;
  /** The adapter has WebGPU's shader-f16 feature (half-precision shaders). */
  shaderF16?: boolean;
}
interface GpuLike {
  requestAdapter(): Promise<{ info?: AdapterInfo; isFallbackAdapter?: boolean; features?: { has(name: string): boolean } } | null>;
}

function gpu(): GpuLike | undefined {
  return (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
}

let adapterInfo: Promise<AdapterInfo | null> | undefined;

/** The adapter the browser offers (null: none), asked once. */
export function webGpuAdapterInfo(): Promise<AdapterInfo | null> {
  adapterInfo ??= (async () => {
    const adapter = await gpu()?.requestAdapter();
    if (!adapter) return null;
    // GPUAdapterInfo's fields are prototype getters: copy them one by one (a spread would copy nothing).
    const info = adapter.info;
    return {
      vendor: info?.vendor,
      architecture: info?.architecture,
      description: info?.description,
      isFallbackAdapter: info?.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false,
      shaderF16: adapter.features?.has('shader-f16') ?? false,
    };
  })().catch(() => null);
  return adapterInfo;
}

export function describeAdapter(info: AdapterInfo): string {
  return [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown adapter';
}

export const webWebGpu = defineProvider('web-webgpu', {
  async fp16Unsupported() {
    const info = await webGpuAdapterInfo();
    return info && !info.shaderF16 ? `the WebGPU adapter (${describeAdapter(info)}) lacks the shader-f16 feature` : null;
  },
  async unavailable() {
    if (!gpu()) {
      return typeof window === 'undefined'
        ? 'onnxruntime-web has no WebGPU outside a browser: in Node, load @capsnet-onnx/runtime/node (onnxruntime-node has a webgpu device)'
        : 'this browser exposes no WebGPU (navigator.gpu): use Chrome or Edge 113+ (or start Chromium with ' +
            '--enable-unsafe-webgpu) on an https or localhost page';
    }
    if (!(await webGpuAdapterInfo())) {
      return 'navigator.gpu.requestAdapter() found no adapter: enable hardware acceleration (see chrome://gpu) or update the GPU driver';
    }
    return null;
  },
  async autoSkip() {
    const info = await webGpuAdapterInfo();
    if (info && (info.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe/i.test(describeAdapter(info)))) {
      return `the WebGPU adapter is a software renderer (${describeAdapter(info)}), slower than wasm; ask for device "webgpu" to use it anyway`;
    }
    return null;
  },
  sessionOptions: webGpuSessionOptions,
  explainFailure: (error) => explainGpuFailure(error),
});

export default webWebGpu;
