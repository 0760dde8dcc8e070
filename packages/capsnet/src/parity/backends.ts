/**
 * The backends `capsnet parity` compares with the tfjs reference, in a module with no imports so that the command
 * line can list and check them without loading the parity harness.
 */
export const ALL_BACKENDS = ['node-cpu', 'node-cuda', 'node-webgpu', 'node-wasm', 'chromium-wasm', 'chromium-webgpu'] as const;
export type Backend = (typeof ALL_BACKENDS)[number];

/** One line per backend: the runtime package, where it runs and the execution provider (`capsnet parity --help`). */
export const BACKEND_DESCRIPTIONS: Record<Backend, string> = {
  'node-cpu': 'onnxruntime-node, cpu execution provider',
  'node-cuda': 'onnxruntime-node, cuda execution provider',
  'node-webgpu': 'onnxruntime-node, webgpu execution provider (Dawn over Vulkan; SwiftShader where there is no GPU)',
  'node-wasm': 'onnxruntime-web, wasm, in Node',
  'chromium-wasm': 'onnxruntime-web, wasm, in headless Chromium',
  'chromium-webgpu': 'onnxruntime-web, webgpu, in headless Chromium',
};
