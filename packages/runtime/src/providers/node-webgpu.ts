/**
 * onnxruntime-node, WebGPU execution provider (Dawn, built into onnxruntime-node): Vulkan on Linux, D3D12 on
 * Windows, Metal on macOS. Dawn chooses the adapter; ORT does not say which, so it may be a software one
 * (SwiftShader), which is why Node's `auto` does not pick WebGPU.
 */
import { ortNode } from '../ort-node.ts';
import { defineProvider, explainGpuFailure, webGpuSessionOptions } from './provider.ts';
import { swiftShaderEnv } from './swiftshader.ts';

export const nodeWebGpu = defineProvider('node-webgpu', {
  async unavailable() {
    const { listSupportedBackends } = await ortNode();
    if (!listSupportedBackends().some((b) => b.name === 'webgpu')) {
      return `this onnxruntime-node build (${process.platform}/${process.arch}) has no WebGPU execution provider: use device "cpu"`;
    }
    return null;
  },
  sessionOptions: webGpuSessionOptions,
  explainFailure(error) {
    return explainGpuFailure(error, (message) => {
      if (!/adapter/i.test(message) || process.platform !== 'linux') return message;
      const sw = swiftShaderEnv();
      return (
        `${message}. onnxruntime-node's WebGPU runs on Dawn over Vulkan: install the Vulkan loader (libvulkan1) and your GPU's ` +
        'Vulkan driver (the NVIDIA driver with its Vulkan ICD, or mesa-vulkan-drivers)' +
        (sw
          ? `; without a GPU, Chromium's software SwiftShader works: ${Object.entries(sw)
              .map(([k, v]) => `${k}=${v}`)
              .join(' ')}`
          : '')
      );
    });
  },
});

export default nodeWebGpu;
