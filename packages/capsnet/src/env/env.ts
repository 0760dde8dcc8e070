/**
 * The `CAPSNET_*` environment variables of the capsnet-onnx toolchain: the one place in the package that reads them
 * (issue 23 item 6), each with its default. They are read when asked for, not at import, so that a test or a parent
 * process may set them first. docs/environment.md lists these with the benchmarks', the tests' and the GPU bundle's;
 * test/unit/repo/env.test.ts keeps the list and the code in step.
 *
 * `CAPSNET_ARGV_FROM_STDIN` is not here: it passes between bin/capsnet.js and the child it starts, and bin/capsnet.js
 * runs before any TypeScript can load.
 */

/** One variable: its default when unset or empty (undefined: none, the feature is off), and what it does. */
export interface EnvVariable {
  default: string | undefined;
  meaning: string;
}

/** Every variable this package reads, with its default and meaning (docs/environment.md renders the same). */
export const VARIABLES = {
  CAPSNET_WASM_THREADS: {
    default: undefined,
    meaning:
      "threads of tfjs's wasm backend (XNNPACK's pool and the fused capsule kernels), a whole number from 1; " +
      '1 loads the single-threaded build; unset: every core, at most 8',
  },
  CAPSNET_CONVOLUTIONS: {
    default: 'onnxruntime',
    meaning:
      "who runs the wasm backend's convolutions and their gradients: onnxruntime (onnxruntime-node's CPU provider, " +
      "native AVX2/AVX-512 GEMMs; train/backends/ort-conv.ts) or wasm (XNNPACK's wasm SIMD, and this package's kernels)",
  },
  CAPSNET_WASM_START_TIMEOUT_S: {
    default: '60',
    meaning: 'seconds the threaded wasm backend may take to start (workers and compile) before training falls back to one thread',
  },
  CAPSNET_CHROMIUM: {
    default: '/usr/bin/chromium',
    meaning: 'the Chromium binary that playwright-core drives for the browser backends of capsnet parity (never a downloaded browser)',
  },
  CAPSNET_DEBUG: { default: undefined, meaning: 'any value: the capsnet command prints the stack trace under its one-line error' },
  CAPSNET_DEBUG_BACKEND: {
    default: undefined,
    meaning: 'any value: print the messages tfjs writes while a training backend is tried (held back by default, as a failed try is expected)',
  },
} as const satisfies Record<string, EnvVariable>;

export type VariableName = keyof typeof VARIABLES;

/** The variable's value, or its default when unset or empty. */
export function readEnv(name: VariableName): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? VARIABLES[name].default : value;
}

/** Whether a flag variable (no default) is set to anything but the empty string. */
export function envFlag(name: 'CAPSNET_DEBUG' | 'CAPSNET_DEBUG_BACKEND'): boolean {
  return readEnv(name) !== undefined;
}
