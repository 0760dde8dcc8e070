/**
 * The `CAPSNET_*` environment variables of the benchmarks and the GPU bundle's check: the one place under bench/
 * that reads them, each with its default (docs/environment.md lists them; test/unit/repo/env.test.ts keeps both in step).
 * bench/gpu-bundle/run.sh, a shell script, reads its own two (CAPSNET_GPU_BUNDLE_UNPACK, CAPSNET_GPU_CHECK_BUDGET_S).
 */

/** Every variable bench/ reads: its default when unset or empty (undefined: none) and what it does. */
export const VARIABLES = {
  CAPSNET_BENCH_TFJS_BACKEND: { default: 'auto', meaning: "the tfjs backend of bench:infer's TensorFlow.js rows (auto, tensorflow, wasm, cpu, webgpu)" },
  CAPSNET_PYTHON: {
    default: undefined,
    meaning: 'the python3 that runs the PyTorch reference (bench:train, the GPU check); unset: python3 on the PATH, then /usr/bin/python3',
  },
  CAPSNET_VULKAN_DEB: {
    default: undefined,
    meaning: 'npm run gpu:bundle: a libvulkan1_*_amd64.deb to carry instead of the cached or apt-get-downloaded one',
  },
  CAPSNET_GPU_CHECK_TINY: { default: undefined, meaning: '1: the GPU check runs tiny sizes (for a software adapter such as SwiftShader)' },
  CAPSNET_ORT_CUDA_DIR: {
    default: undefined,
    meaning: "the GPU check: a folder holding onnxruntime-node's libonnxruntime_providers_cuda.so (the npm package has none), for step d",
  },
} as const satisfies Record<string, { default: string | undefined; meaning: string }>;

/** The variable's value, or its default when unset or empty. */
export function readEnv(name: keyof typeof VARIABLES): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? VARIABLES[name].default : value;
}
